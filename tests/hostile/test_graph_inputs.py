"""Graph files that must be refused with one DataError line (never a traceback, never a blow-up), and
the official split masks that must be accepted (any orientation, plural or singular keys)."""

from __future__ import annotations

import io
import resource
import tracemalloc
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psutil
import pytest
import scipy.io as sio
import scipy.sparse as sp

from finllm.errors import DataError
from fraud import graph_guard
from fraud.datasets import load_graph
from fraud.splits import make_split


def _refused(path, *needles: str) -> str:
    with pytest.raises(DataError) as err:
        load_graph(path)
    msg = str(err.value)
    assert "\n" not in msg and path.name in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


@contextmanager
def _address_space_cap(extra: int) -> Iterator[None]:
    """Cap this process's address space at its current size + ``extra`` bytes while the block runs,
    so that a regression fails with MemoryError instead of eating the shared machine's memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = psutil.Process().memory_info().vms + extra
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_huge_edge_type_is_refused_before_allocation(write_npz, graph_arrays):
    et = np.zeros(len(graph_arrays["edges"]), np.int64)
    et[5] = 10**12  # once: one relation name per id up to 10**12 (21 GB, then the OOM killer)
    path = write_npz("bigtype", edge_type=et)
    tracemalloc.start()
    try:
        with _address_space_cap(512 * 2**20):
            _refused(path, "relation count", "edge_type row 5")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # the refusal costs about the file's own arrays, nothing sized by the id


@pytest.mark.parametrize("case,needles", [
    ("negative", ("edge_type row 3 is negative",)),
    ("short", ("edge_type has 10 entries", "rows")),
    ("fractional", ("non-integer",)),
])
def test_bad_edge_types(write_npz, graph_arrays, case, needles):
    e = len(graph_arrays["edges"])
    et = {"negative": np.where(np.arange(e) == 3, -1, 0), "short": np.zeros(10, np.int64),
          "fractional": np.full(e, 0.5)}[case]
    _refused(write_npz(case, edge_type=et), *needles)


def test_text_and_object_features_are_refused(write_npz, tmp_path, graph_arrays):
    n = len(graph_arrays["node_labels"])
    _refused(write_npz("text", node_features=np.array([["1.5", "abc"]] * n)), "node_features holds text")
    obj = tmp_path / "pickled.npz"  # written with pickle; the loader never unpickles it
    np.savez(obj, **{**graph_arrays, "node_features": np.array([[{"a": 1}]] * n, dtype=object)})
    _refused(obj, "Python objects", "never unpickled")


def test_declared_shape_larger_than_stored_data(tmp_path, graph_arrays):
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("node_features.npy", head.getvalue() + b"\0" * 64)
        for k in ("node_labels", "edges"):
            buf = io.BytesIO()
            np.save(buf, graph_arrays[k])
            z.writestr(f"{k}.npy", buf.getvalue())
    _refused(path, "declares (1000000, 1000000)", "corrupt or truncated")


def test_decoded_size_cap_npz_and_mat(write_npz, tmp_path, graph_arrays, monkeypatch):
    monkeypatch.setattr(graph_guard, "MAX_DECODED_BYTES", 2**20)
    n = 2000  # 2000 x 200 float64 zeros: 3.2 MB decoded from a few KB
    _refused(write_npz("zeros", node_features=np.zeros((n, 200)), node_labels=np.zeros(n, np.int64)),
             "decode to more than 1 MB")
    mat = tmp_path / "zeros.mat"
    sio.savemat(mat, {"Attributes": np.zeros((n, 200)), "Label": np.zeros((1, n)),
                      "Network": sp.eye(n, format="csc")}, do_compression=True)
    _refused(mat, "decode to more than 1 MB")


def test_float32_overflow_is_named(write_npz, graph_arrays):
    x = graph_arrays["node_features"].astype(np.float64)
    x[7, 3] = 1e39  # finite in float64, inf in the float32 tensor: training would "diverge"
    _refused(write_npz("overflow", node_features=x), "node 7", "feature '3'", "overflows float32")


def test_node_ids_must_match_node_count(write_npz, graph_arrays):
    _refused(write_npz("shortids", node_ids=np.arange(10)), "node_ids has 10 entries")
    n = len(graph_arrays["node_labels"])
    _refused(write_npz("longids", node_ids=np.array(["x" * 65] * n)), "65 characters")
    _refused(write_npz("dupids", node_ids=np.zeros(n, np.int64)), "appears twice")


def test_mat_text_and_cell_matrices(tmp_path):
    n = 30
    net = sp.random(n, n, density=0.1, random_state=0, format="csc")
    cases = {"text": np.array(["abcd"] * n), "cell": np.array([[object()]] * n, dtype=object)}
    cases["cell"][:] = "x"
    for name, feats in cases.items():
        path = tmp_path / f"{name}.mat"
        sio.savemat(path, {"Attributes": feats, "Label": np.zeros((1, n)), "Network": net})
        _refused(path, "'Attributes'")


def test_non_utf8_graph_csv(tmp_path):
    edges, nodes = tmp_path / "edges.csv", tmp_path / "nodes.csv"
    edges.write_bytes(b"src,dst\na,b\n")
    nodes.write_bytes(b"node,f,label\na,1,0\n\xff\xfeb,2,1\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_graph(edges, nodes=nodes)
    trust = tmp_path / "trust.csv"
    trust.write_bytes(b"\xff\xfe1,2,3,4\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_graph(trust)


# ---- official split masks ---------------------------------------------------------------------
def _masks(y: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k disjoint 50/25/25 splits of the nodes as (k, N) bool masks."""
    rng = np.random.default_rng(seed)
    n = len(y)
    tr, va, te = (np.zeros((k, n), bool) for _ in range(3))
    for r in range(k):
        p = rng.permutation(n)
        tr[r, p[: n // 2]], va[r, p[n // 2: 3 * n // 4]], te[r, p[3 * n // 4:]] = True, True, True
    return tr, va, te


def test_overlapping_masks_are_refused(write_npz, graph_arrays):
    tr, va, te = _masks(graph_arrays["node_labels"], 2)
    msg = _refused(write_npz("same", train_masks=tr, val_masks=tr, test_masks=tr), "split masks overlap")
    assert "row 0" in msg and f"{int(tr[0].sum()):,} node(s)" in msg
    te2 = te.copy()
    te2[1, np.flatnonzero(va[1])[:3]] = True  # three validation nodes also in test, in row 1 only
    msg = _refused(write_npz("three", train_masks=tr, val_masks=va, test_masks=te2), "split masks overlap")
    assert "3 node(s) of row 1" in msg


@pytest.mark.parametrize("layout", ["plural_kxn", "singular_nxk", "singular_vector"])
def test_official_masks_any_orientation(write_npz, graph_arrays, layout):
    y = graph_arrays["node_labels"]
    k = 1 if layout == "singular_vector" else 3
    tr, va, te = _masks(y, k)
    if layout == "plural_kxn":
        path = write_npz(layout, train_masks=tr, val_masks=va, test_masks=te)
    elif layout == "singular_nxk":
        path = write_npz(layout, train_mask=tr.T.astype(np.uint8), val_mask=va.T.astype(np.uint8),
                         test_mask=te.T.astype(np.uint8))
    else:
        path = write_npz(layout, train_mask=tr[0], val_mask=va[0], test_mask=te[0])
    ds = load_graph(path)
    assert ds.data.train_masks.shape == (k, len(y))
    for seed in (0, 1, 4):
        split = make_split(ds, "full", seed)
        row = seed % k
        assert split.source == "file_masks" and split.mask_row == row and split.mask_rows == k
        assert set(split.train.tolist()) == set(np.flatnonzero(tr[row] & (y >= 0)).tolist())
        assert set(split.test.tolist()) == set(np.flatnonzero(te[row] & (y >= 0)).tolist())
        assert split.describe()["mask_row"] == row


def test_mask_aliases_and_values(write_npz, graph_arrays):
    tr, va, te = _masks(graph_arrays["node_labels"], 2)
    _refused(write_npz("both", train_masks=tr, train_mask=tr, val_masks=va, test_masks=te), "both train_masks")
    _refused(write_npz("partial", train_mask=tr, val_mask=va), "must come together")
    _refused(write_npz("rows", train_masks=tr, val_masks=va[:1], test_masks=te), "different numbers of rows")
    idx = np.flatnonzero(tr[0])[None, :]  # index lists are not masks
    _refused(write_npz("index", train_masks=idx, val_masks=va[:1], test_masks=te[:1]), "other than 0/1")
