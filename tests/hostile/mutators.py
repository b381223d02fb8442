"""Mutations of real input files for the fuzz suite (tests/hostile/test_fuzz.py) and the fuzz bench
(bench/bench_fuzz.py): byte-wise (flips, truncation, insertion, zeroed runs) and structural (keys
dropped, dtypes and shapes changed, hostile values and names), plus the invariants a file that loads
must satisfy (a load that breaks one is a *silent wrong answer*).

Seeds are slices of the shipped data: the Amazon graph (.npz with official masks and relations, a
CARE-style .mat, an edge/node CSV pair), the Bitcoin trust CSV, and the US market (parquet and CSV).
"""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
AMAZON = REPO / "data/fraud/amazon_upu.mat"
BITCOIN = REPO / "data/fraud/soc-sign-bitcoinotc.csv"
US = REPO / "data/market/us_sp500_daily.parquet"

SEED_NAMES = ("graph.npz", "graph.mat", "graph_csv", "trust.csv", "market.parquet", "market.csv")
HOSTILE_TEXT = ["[/bold]x", "\x1b]0;t\x07\x1b[31m", "", " ", "x" * 200, "é\u202e", "../../etc", "1e400", "nan"]


# ---- seeds ------------------------------------------------------------------------------------
def build_seeds(folder: Path) -> dict[str, Path]:
    """Write the seed files into ``folder``; returns {seed name: path} (a folder for graph_csv)."""
    import pandas as pd
    import polars as pl
    import scipy.io as sio
    import scipy.sparse as sp

    folder.mkdir(parents=True, exist_ok=True)
    m = sio.loadmat(AMAZON)
    lo, hi = 2400, 2640
    a = sp.coo_matrix(sp.csr_matrix(m["Network"])[lo:hi, lo:hi])
    keep = a.row < a.col
    feats = m["Attributes"]
    x = np.asarray(feats.toarray() if sp.issparse(feats) else feats)[lo:hi].astype(np.float32)
    y = np.asarray(m["Label"]).reshape(-1)[lo:hi].astype(np.int64)
    e = np.stack([a.row[keep], a.col[keep]], 1).astype(np.int64)
    n = len(y)
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 2, n), bool)
    for r in range(2):
        p = rng.permutation(n)
        masks[0, r, p[: n // 2]], masks[1, r, p[n // 2: 3 * n // 4]], masks[2, r, p[3 * n // 4:]] = 1, 1, 1
    out = {"graph.npz": folder / "graph.npz", "graph.mat": folder / "graph.mat", "graph_csv": folder / "graph_csv",
           "trust.csv": folder / "trust.csv", "market.parquet": folder / "market.parquet",
           "market.csv": folder / "market.csv"}
    np.savez_compressed(out["graph.npz"], node_features=x, node_labels=y, edges=e,
                        edge_type=(np.arange(len(e)) % 2).astype(np.int64), train_masks=masks[0],
                        val_masks=masks[1], test_masks=masks[2], node_ids=np.array([f"u{i}" for i in range(n)]))
    half = len(e) // 2
    nets = {f"net_{r}": sp.csc_matrix((np.ones(len(s)), (s[:, 0], s[:, 1])), shape=(n, n))
            for r, s in (("upu", e[:half]), ("usu", e[half:]))}
    sio.savemat(out["graph.mat"], {"features": sp.csc_matrix(x), "label": y[None, :], **nets},
                do_compression=True)
    out["graph_csv"].mkdir(exist_ok=True)
    pd.DataFrame({"src": [f"u{i}" for i in e[:, 0]], "dst": [f"u{j}" for j in e[:, 1]],
                  "relation": np.where(np.arange(len(e)) % 2, "a", "b")}).to_csv(out["graph_csv"] / "edges.csv",
                                                                                  index=False)
    nodes = pd.DataFrame(x[:, :6], columns=[f"f{j}" for j in range(6)])
    nodes.insert(0, "node", [f"u{i}" for i in range(n)])
    nodes["label"] = y
    nodes.to_csv(out["graph_csv"] / "nodes.csv", index=False)
    with open(BITCOIN) as src:
        out["trust.csv"].write_text("".join(src.readline() for _ in range(600)))
    lf = pl.scan_parquet(US).filter((pl.col("date").dt.year() == 2019) & (pl.col("date").dt.month() <= 2))
    first = lf.select(pl.col("ticker").unique().sort().head(12)).collect()["ticker"]
    mk = lf.filter(pl.col("ticker").is_in(first.implode())).collect()
    mk.write_parquet(out["market.parquet"])
    mk.write_csv(out["market.csv"])
    return out


# ---- loading and invariants ----------------------------------------------------------------------
def load(path: Path, seed: str):
    """Load ``path`` the way the CLI does for a file of kind ``seed``; returns the dataset/panel."""
    if seed.startswith("market"):
        from factors.panel import load_panel

        return load_panel(path)
    from fraud.datasets import load_graph

    return load_graph(path)


def violations(obj) -> list[str]:
    """The invariants a loaded graph / panel breaks (empty: consistent)."""
    import torch

    bad: list[str] = []
    if hasattr(obj, "data"):  # GraphDataset
        d, n = obj.data, obj.num_nodes
        if n < 1 or d.x.shape[0] != n or d.x.dtype != torch.float32 or not bool(torch.isfinite(d.x).all()):
            bad.append("features not a finite float32 (N,F) matrix")
        ei = d.edge_index
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n or bool((ei[0] == ei[1]).any())):
            bad.append("edge out of range or self-loop")
        if not set(d.y.unique().tolist()) <= {-1, 0, 1}:
            bad.append("labels outside {-1, 0, 1}")
        if len(obj.node_ids) != n or len(set(obj.node_ids)) != n or any(len(s) > 64 for s in obj.node_ids):
            bad.append("node ids not N unique names of <= 64 characters")
        et = getattr(d, "edge_type", None)
        if et is not None and et.numel() and (int(et.min()) < 0 or int(et.max()) >= len(obj.relations)):
            bad.append("edge_type outside the relations")
        if obj.has_masks():
            tr, va, te = d.train_masks, d.val_masks, d.test_masks
            if not (tr.shape == va.shape == te.shape and tr.shape[1] == n):
                bad.append("mask shapes")
            elif bool(((tr.int() + va.int() + te.int()) > 1).any()):
                bad.append("overlapping masks accepted")
        return bad
    v, valid, uni = obj.values, obj.valid, obj.in_universe
    if v.dtype != torch.float32 or v.shape[:2] != valid.shape:
        bad.append("panel tensor shape/dtype")
    if bool(torch.isfinite(v[~valid]).any()):
        bad.append("values on invalid rows")
    if bool((uni & ~valid).any()):
        bad.append("in_universe outside valid rows")
    f = {name: v[:, :, i] for i, name in enumerate(obj.fields)}
    px = torch.stack([f[k][valid] for k in ("open", "high", "low", "close")])
    if px.numel() and (not bool(torch.isfinite(px).all()) or bool((px <= 0).any())):
        bad.append("non-finite or non-positive price on a valid row")
    if px.numel() and bool((f["high"][valid] < f["low"][valid]).any()):
        bad.append("high < low on a valid row")
    if len(obj.dates) > 1 and not bool((np.diff(obj.dates.astype("int64")) > 0).all()):
        bad.append("dates not increasing")
    if len(set(obj.tickers)) != len(obj.tickers):
        bad.append("duplicate tickers")
    return bad


# ---- byte-wise mutations ---------------------------------------------------------------------------
def mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """One random byte-level mutation of ``data``."""
    b = bytearray(data)
    n = len(b)
    kind = rng.integers(6)
    if kind == 0 and n:  # flip 1-16 random bytes
        for i in rng.integers(0, n, rng.integers(1, 17)):
            b[i] = int(rng.integers(256))
    elif kind == 1:  # truncate
        b = b[: int(rng.integers(0, max(n, 1)))]
    elif kind == 2:  # insert junk
        i = int(rng.integers(0, n + 1))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif kind == 3 and n:  # zero a run
        i = int(rng.integers(0, n))
        b[i: i + int(rng.integers(1, 256))] = bytes(min(n - i, 255))
    elif kind == 4 and n:  # duplicate a chunk
        i = int(rng.integers(0, n))
        b[i:i] = b[i: i + int(rng.integers(1, 512))]
    else:  # set one byte to 0xff / 0x00 (lengths, counts, UTF-8 breakers)
        if n:
            b[int(rng.integers(0, n))] = 0xFF if rng.random() < 0.5 else 0
    return bytes(b)


# ---- structural mutations ----------------------------------------------------------------------------
def _value(rng: np.random.Generator, n: int) -> float:
    return [np.nan, np.inf, -np.inf, 1e39, -1.0, 10.0**12, float(n + 5), 0.5, -(2.0**63)][int(rng.integers(9))]


def mutate_arrays(arrays: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A structurally mutated copy of a graph's .npz / .mat arrays."""
    a = {k: np.array(v) for k, v in arrays.items()}
    keys = sorted(a)
    k = keys[int(rng.integers(len(keys)))]
    n = len(next(iter(v for kk, v in a.items() if kk in ("node_labels", "label"))).reshape(-1))
    kind = int(rng.integers(9))
    if kind == 0:
        del a[k]
    elif kind == 1:  # dtype change
        a[k] = a[k].astype([np.float16, np.int8, bool, "U3", np.float64, np.uint64][int(rng.integers(6))])
    elif kind == 2 and a[k].ndim == 2:
        a[k] = a[k].T
    elif kind == 3 and a[k].size:  # drop or add rows
        a[k] = a[k][: int(rng.integers(0, len(a[k])))] if rng.random() < 0.5 else np.concatenate([a[k], a[k][:3]])
    elif kind == 4 and a[k].size:  # a hostile value somewhere
        flat = a[k].astype(np.float64).reshape(-1)
        flat[int(rng.integers(flat.size))] = _value(rng, n)
        with np.errstate(invalid="ignore", over="ignore"):
            a[k] = flat.reshape(a[k].shape).astype(a[k].dtype) if a[k].dtype.kind == "f" else flat.reshape(a[k].shape)
    elif kind == 5:  # extra / hostile keys
        extra = [("edge_type", np.full(len(a.get("edges", np.zeros((5, 2)))), 10**12)),
                 ("node_ids", np.array(HOSTILE_TEXT * (n // len(HOSTILE_TEXT) + 1))[:n]),
                 ("node_ids", np.arange(max(n - 3, 0))),
                 ("train_mask", np.ones(n, bool)), ("val_mask", np.ones((n, 1), np.uint8)),
                 ("test_mask", np.zeros((1, n), bool)),
                 ("train_masks", np.arange(n) % 2), ("val_masks", np.arange(n) % 3 == 0)]
        key, val = extra[int(rng.integers(len(extra)))]
        a[key] = val
    elif kind == 6:  # object array (pickled) or empty array
        a[k] = np.array([], dtype=np.float64) if rng.random() < 0.5 else np.array([[1, "a"]] * 3, dtype=object)
    elif kind == 7 and a[k].ndim >= 1:  # add a dimension
        a[k] = a[k][None]
    else:  # scalars
        a[k] = np.array(_value(rng, n))
    return a


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez (pickles object arrays, as a hostile writer would)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def mutate_table(text: str, rng: np.random.Generator, market: bool) -> str:
    """A structurally mutated CSV text: columns dropped/renamed/duplicated, cells replaced, rows doubled."""
    lines = text.splitlines()
    if not lines:
        return text
    rows = [ln.split(",") for ln in lines]
    kind = int(rng.integers(6))
    j = int(rng.integers(len(rows[0])))
    if kind == 0:  # drop a column
        rows = [r[:j] + r[j + 1:] for r in rows]
    elif kind == 1:  # rename / duplicate a header
        rows[0][j] = ["date", "ticker", "close", "", "src", "node", "label", "Date"][int(rng.integers(8))]
    elif kind == 2 and len(rows) > 1:  # hostile cells
        for _ in range(int(rng.integers(1, 6))):
            r = rows[int(rng.integers(1, len(rows)))]
            c = int(rng.integers(len(r)))
            r[c] = [*HOSTILE_TEXT, "-1", "1e39", "inf", "2019-13-45", "0"][int(rng.integers(len(HOSTILE_TEXT) + 5))]
    elif kind == 3 and len(rows) > 1:  # duplicate rows
        i = int(rng.integers(1, len(rows)))
        rows.insert(i, list(rows[i]))
    elif kind == 4:  # ragged rows
        i = int(rng.integers(0, len(rows)))
        rows[i] = rows[i] + ["extra"] if rng.random() < 0.5 else rows[i][:-1]
    else:  # header only / one row
        rows = rows[: int(rng.integers(1, 3))]
    return "\n".join(",".join(r) for r in rows) + "\n"


def mutate_market_frame(src: Path, dst: Path, rng: np.random.Generator) -> None:
    """A structurally mutated parquet market file (column types, names, nulls, duplicates, hostile tickers)."""
    import polars as pl

    df = pl.read_parquet(src)
    kind = int(rng.integers(6))
    col = df.columns[int(rng.integers(len(df.columns)))]
    if kind == 0:
        df = df.drop(col)
    elif kind == 1:
        df = df.with_columns(pl.col(col).cast(pl.String))
    elif kind == 2:  # nulls in a column
        df = df.with_columns(pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col(col)).alias(col))
    elif kind == 3:
        df = pl.concat([df, df.head(3)])
    elif kind == 4:  # hostile tickers
        df = df.with_columns(pl.col("ticker").replace({df["ticker"][0]: HOSTILE_TEXT[int(rng.integers(len(HOSTILE_TEXT)))]}))
    else:  # hostile numbers
        v = _value(rng, 10)
        num = [c for c in df.columns if df[c].dtype.is_numeric()]
        c = num[int(rng.integers(len(num)))]
        df = df.with_columns(pl.when(pl.int_range(pl.len()) == int(rng.integers(df.height))).then(
            pl.lit(v if math.isfinite(v) or df[c].dtype.is_float() else 0)).otherwise(pl.col(c)).alias(c))
    df.write_parquet(dst)


def make_case(seeds: dict[str, Path], seed: str, rng: np.random.Generator, work: Path) -> Path:
    """Write one mutated copy of seed file ``seed`` under ``work``; returns the path to load."""
    src = seeds[seed]
    structural = rng.random() < 0.5
    if seed == "graph_csv":
        dst = work / "g"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        f = dst / ("edges.csv" if rng.random() < 0.5 else "nodes.csv")
        f.write_bytes(mutate_table(f.read_text(), rng, False).encode() if structural
                      else mutate_bytes(f.read_bytes(), rng))
        return dst
    dst = work / f"case{src.suffix}"
    try:
        _structural(src, dst, seed, rng) if structural else dst.write_bytes(mutate_bytes(src.read_bytes(), rng))
    except Exception:  # noqa: BLE001 - a mutant the writer library cannot produce: a byte mutant instead
        dst.write_bytes(mutate_bytes(src.read_bytes(), rng))
    return dst


def _structural(src: Path, dst: Path, seed: str, rng: np.random.Generator) -> None:
    if seed == "graph.npz":
        with np.load(src) as z:
            write_npz(dst, mutate_arrays({k: z[k] for k in z.files}, rng))
    elif seed == "graph.mat":
        import scipy.io as sio

        m = {k: v for k, v in sio.loadmat(src).items() if not k.startswith("__")}
        sio.savemat(dst, mutate_arrays({k: (v.toarray() if hasattr(v, "toarray") else v) for k, v in m.items()}, rng))
    elif seed == "market.parquet":
        mutate_market_frame(src, dst, rng)
    else:
        dst.write_text(mutate_table(src.read_text(), rng, seed.startswith("market")))


def classify(path: Path, seed: str) -> tuple[str, str]:
    """("ok" | "refused" | "wrong" | "crash", detail) of loading ``path``: refused = one DataError line."""
    from finllm.errors import FinllmError

    try:
        obj = load(path, seed)
    except FinllmError as exc:
        msg = str(exc)
        return ("refused", msg) if "\n" not in msg else ("crash", f"multi-line message: {msg[:200]!r}")
    except BaseException as exc:  # noqa: BLE001 - everything else is a traceback for the user
        if isinstance(exc, KeyboardInterrupt):
            raise
        return "crash", f"{type(exc).__name__}: {str(exc)[:200]}"
    bad = violations(obj)
    return ("wrong", "; ".join(bad)) if bad else ("ok", "")
