"""Graph data layer: every loader on the real shipped files and on broken copies of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.io as sio
import scipy.sparse as sp
import torch

from finllm.errors import DataError
from fraud.datasets import TRUST_FEATURES, load_graph

from .conftest import AMAZON, BITCOIN


def test_amazon_mat_real(amazon):
    d = amazon.data
    assert (amazon.num_nodes, d.x.shape[1]) == (10224, 25)
    assert int((d.y == 1).sum()) == 693 and int((d.y == -1).sum()) == 0
    assert amazon.report["undirected_edges"] == 351216 // 2
    assert d.edge_index.shape == (2, 351216)
    # stored in both directions, no self-loops
    assert not bool((d.edge_index[0] == d.edge_index[1]).any())
    assert amazon.relations == ["homo"] and d.x.dtype == torch.float32


def test_care_gnn_keys_multi_relation(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    nets = {f"net_{r}": sp.random(n, n, density=0.1, random_state=i, format="csc") for i, r in enumerate("abc")}
    path = tmp_path / "care.mat"
    sio.savemat(path, {"features": sp.csc_matrix(rng.random((n, 4))), "label": rng.integers(0, 2, (1, n)),
                       "homo": sp.random(n, n, density=0.3, random_state=9, format="csc"), **nets})
    ds = load_graph(path)
    assert ds.relations == ["a", "b", "c"]  # net_* used, homo ignored when relations exist
    et = ds.data.edge_type
    assert set(et.tolist()) == {0, 1, 2}
    # relation a as undirected pairs without self-loops
    a = sp.coo_matrix(nets["net_a"])
    pairs = {(min(i, j), max(i, j)) for i, j in zip(a.row, a.col) if i != j}
    got = ds.data.edge_index[:, et == 0]
    assert {(min(i, j), max(i, j)) for i, j in got.T.tolist()} == pairs
    assert got.size(1) == 2 * len(pairs)
    hetero = ds.to_hetero()
    assert hetero["node", "b", "node"].edge_index.size(1) == int((et == 1).sum())


def test_mat_unknown_keys_is_one_line_error(tmp_path):
    m = sio.loadmat(AMAZON)
    bad = tmp_path / "broken.mat"
    sio.savemat(bad, {"feats": m["Attributes"], "labels": m["Label"], "graph": m["Network"]})
    with pytest.raises(DataError) as err:
        load_graph(bad)
    msg = str(err.value)
    assert "broken.mat" in msg and "unknown .mat keys" in msg and "\n" not in msg


def test_npz_with_masks_and_bad_edges(tmp_path, amazon_slice_path):
    z = dict(np.load(amazon_slice_path))
    n = z["node_features"].shape[0]
    rng = np.random.default_rng(1)
    masks = np.zeros((3, 3, n), bool)  # (split kind, rows, N)
    for r in range(3):
        perm = rng.permutation(n)
        masks[0, r, perm[:1000]], masks[1, r, perm[1000:1500]], masks[2, r, perm[1500:]] = True, True, True
    good = tmp_path / "with_masks.npz"
    np.savez(good, **z, train_masks=masks[0], val_masks=masks[1], test_masks=masks[2])
    ds = load_graph(good)
    assert ds.has_masks() and ds.data.train_masks.shape == (3, n)

    e = z["edges"].copy()
    e[7, 1] = n + 5
    bad = tmp_path / "past.npz"
    np.savez(bad, node_features=z["node_features"], node_labels=z["node_labels"], edges=e)
    with pytest.raises(DataError) as err:
        load_graph(bad)
    msg = str(err.value)
    assert "past.npz" in msg and "row 7" in msg and "node count" in msg


def _write_csv_graph(tmp_path, edges: list[tuple[str, str]], nodes: pd.DataFrame):
    ep, npth = tmp_path / "edges.csv", tmp_path / "nodes.csv"
    pd.DataFrame(edges, columns=["src", "dst"]).to_csv(ep, index=False)
    nodes.to_csv(npth, index=False)
    return ep, npth


def test_csv_repairs_are_counted(tmp_path):
    nodes = pd.DataFrame({"node": ["a", "b", "c", "d", "e"], "f1": [1.0, np.nan, 3.0, 4.0, 5.0],
                          "f2": [0.5, 0.1, 0.2, np.inf, 0.3], "label": [1, 0, None, 0, 1]})
    edges = [("a", "b"), ("b", "a"), ("a", "b"), ("c", "c"), ("b", "c"), ("a", "c")]
    ep, npth = _write_csv_graph(tmp_path, edges, nodes)
    ds = load_graph(ep, nodes=npth)
    r = ds.report
    assert r["self_loops_removed"] == 1
    assert r["duplicate_edges_merged"] == 1 and r["reciprocal_pairs_merged"] == 1
    assert r["undirected_edges"] == 3 and ds.data.edge_index.size(1) == 6
    assert r["isolated_nodes"] == 2  # d and e
    assert r["unlabelled_nodes"] == 1 and ds.data.y.tolist() == [1, 0, -1, 0, 1]
    assert r["nan_features_imputed"] == 2
    assert torch.isfinite(ds.data.x).all()
    assert ds.data.x[1, 0].item() == pytest.approx((1 + 3 + 4 + 5) / 4)  # column mean of finite values
    assert ds.node_ids == ["a", "b", "c", "d", "e"] and ds.feature_names == ["f1", "f2"]
    # the same directory layout loads too
    assert load_graph(tmp_path).summary()["nodes"] == 5
    with pytest.raises(DataError, match="not finite"):
        load_graph(ep, nodes=npth, nan="error")


def test_csv_unknown_node_names_the_row(tmp_path):
    nodes = pd.DataFrame({"node": ["a", "b", "c"], "f": [1, 2, 3], "label": [0, 1, 0]})
    ep, npth = _write_csv_graph(tmp_path, [("a", "b"), ("b", "c"), ("c", "zz")], nodes)
    with pytest.raises(DataError) as err:
        load_graph(ep, nodes=npth)
    assert "row 3" in str(err.value) and "'zz'" in str(err.value) and "edges.csv" in str(err.value)


def test_csv_bad_label_and_missing_node_table(tmp_path):
    nodes = pd.DataFrame({"node": ["a", "b"], "f": [1, 2], "label": [0, 7]})
    ep, npth = _write_csv_graph(tmp_path, [("a", "b")], nodes)
    with pytest.raises(DataError, match="label"):
        load_graph(ep, nodes=npth)
    with pytest.raises(DataError, match="node table"):
        load_graph(ep)


def test_bitcoin_label_rule(bitcoin):
    y = bitcoin.data.y
    assert int((y >= 0).sum()) == 2389 and int((y == 1).sum()) == 301
    assert bitcoin.feature_names == TRUST_FEATURES
    assert bitcoin.relations == ["rated_by", "rates"]
    # both relations together are the undirected who-rated-whom graph: 35,592 ratings each way
    assert bitcoin.data.edge_index.size(1) == 2 * 35592
    assert "rating" in bitcoin.report["label_rule"]


def test_bitcoin_features_do_not_depend_on_ratings(bitcoin, tmp_path):
    """Leak guard: shuffle every rating value -> labels change, features stay bit-identical."""
    df = pd.read_csv(BITCOIN, header=None)
    df[2] = np.random.default_rng(0).permutation(df[2].to_numpy())
    shuffled = tmp_path / "shuffled.csv"
    df.to_csv(shuffled, header=False, index=False)
    ds = load_graph(shuffled)
    assert torch.equal(ds.data.x, bitcoin.data.x)
    assert not torch.equal(ds.data.y, bitcoin.data.y)
