"""Fraud graphs from files -> validated ``torch_geometric.data.Data``.

Formats (chosen by suffix, see :func:`load_graph`):

* ``.mat`` — Amazon keys ``Attributes``/``Label``/``Network`` or CARE-GNN keys
  ``features``/``label``/``homo``/``net_*`` (each ``net_*`` becomes one relation; ``homo`` is used only
  when there is no ``net_*``).
* ``.npz`` — ``node_features`` (N,F), ``node_labels`` (N,), ``edges`` (E,2), optional
  ``train_masks``/``val_masks``/``test_masks`` (or singular ``train_mask``..., k x N or N x k, see
  :func:`fraud.splits.read_masks`), optional ``edge_type`` (E,) and ``node_ids`` (N,). Sizes and dtypes
  are checked from the array headers before anything is read (:mod:`fraud.graph_guard`).
* CSV — an edge list (header with ``src``/``dst``, aliases ``source``/``target``; optional ``relation``
  column) plus a node table (``nodes=PATH`` option, or a directory holding ``edges.csv`` and
  ``nodes.csv``) with a ``node`` (or ``id``) column, an optional ``label`` column and numeric features.
* A signed trust network CSV without header (``source,target,rating,time``, e.g. SNAP Bitcoin OTC):
  see :func:`signed_trust_graph` for the documented fraud-label rule and the leak-free features.

Validation and repairs (all counted in ``GraphDataset.report``):

* edges naming a node missing from the node table -> :class:`DataError` naming the row;
* the graph is treated as undirected: every edge is stored in both directions (except the signed trust
  graph, which stores the two directions as two relations, ``rated_by`` and ``rates``);
* self-loops are removed; duplicate edges (same relation, same unordered pair) are merged;
* missing labels (blank/NaN/-1) -> ``y = -1`` (unlabelled, never used for training or metrics);
* NaN/inf features -> replaced by the column mean of the finite values (``nan="error"`` raises instead);
* isolated nodes are kept and counted.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from finllm.errors import DataError
from fraud import graph_guard as guard
from fraud.splits import MASK_KEYS, read_masks

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

AMAZON_KEYS = {"Attributes", "Label", "Network"}
CARE_KEYS = {"features", "label"}


@dataclass
class GraphDataset:
    """A loaded fraud graph.

    ``data.x`` (N,F) float32, ``data.edge_index`` (2,E) long (both directions), ``data.y`` (N,) long with
    -1 = unlabelled, optional ``data.edge_type`` (E,) long, optional ``data.train_masks`` /
    ``val_masks`` / ``test_masks`` (S,N) bool from the file.
    """

    data: Data
    name: str
    node_ids: list[str]
    feature_names: list[str] | None
    relations: list[str]
    report: dict = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return int(self.data.num_nodes)

    def has_masks(self) -> bool:
        return getattr(self.data, "train_masks", None) is not None

    def summary(self) -> dict:
        y = self.data.y
        labelled = int((y >= 0).sum())
        fraud = int((y == 1).sum())
        return {
            "name": self.name,
            "nodes": self.num_nodes,
            "edges": int(self.data.edge_index.size(1)),  # directed count (each undirected edge twice)
            "features": int(self.data.x.size(1)),
            "relations": list(self.relations),
            "labelled": labelled,
            "fraud": fraud,
            "fraud_rate": round(fraud / labelled, 4) if labelled else None,
            "has_split_masks": self.has_masks(),
            "report": dict(self.report),
        }

    def to_hetero(self):
        """The same graph as a ``HeteroData`` with one edge type ``('node', rel, 'node')`` per relation."""
        from torch_geometric.data import HeteroData

        h = HeteroData()
        h["node"].x, h["node"].y = self.data.x, self.data.y
        et = getattr(self.data, "edge_type", None)
        for r, rel in enumerate(self.relations):
            sel = slice(None) if et is None else et == r
            h["node", rel, "node"].edge_index = self.data.edge_index[:, sel]
        return h


# ---------------------------------------------------------------------------------------------
def load_graph(path: str | Path, **opts: Any) -> GraphDataset:
    """Load a fraud graph; see the module docstring for formats and repairs.

    Options: ``nodes`` (node-table CSV for an edge-list CSV), ``nan`` ("impute" | "error"),
    ``name`` (dataset name, default the file stem), ``min_ratings`` / ``fraud_mean`` (signed trust rule).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        if (p / "edges.csv").is_file() and (p / "nodes.csv").is_file():
            return _load_csv(p / "edges.csv", nodes=p / "nodes.csv", **opts)
        raise DataError(f"{p}: a graph directory needs edges.csv and nodes.csv")
    suffix = p.suffix.lower()
    if suffix == ".mat":
        return _load_mat(p, **opts)
    if suffix == ".npz":
        return _load_npz(p, **opts)
    if suffix in {".csv", ".txt", ".gz"}:
        return _load_csv(p, **opts)
    raise DataError(f"{p}: unsupported graph format {suffix!r} (use .mat, .npz or .csv)")


# ---- .mat ------------------------------------------------------------------------------------
def _load_mat(p: Path, **opts: Any) -> GraphDataset:
    import scipy.sparse as sp

    guard.mat_decoded_bytes(p)  # refuses a file that inflates past the cap before scipy allocates it
    m = guard.read_mat(p)  # in a child process: scipy can crash on corrupt files
    keys = set(m)
    nets = sorted(k for k in keys if k.startswith("net_"))
    if AMAZON_KEYS <= keys:
        feats, labels, rel_mats, rel_names = m["Attributes"], m["Label"], [m["Network"]], ["homo"]
    elif CARE_KEYS <= keys and (nets or "homo" in keys):
        feats, labels = m["features"], m["label"]
        rel_names = [k.removeprefix("net_") for k in nets] if nets else ["homo"]
        rel_mats = [m[k] for k in nets] if nets else [m["homo"]]
    else:
        raise DataError(f"{p}: unknown .mat keys {sorted(keys)} (expected Attributes/Label/Network "
                        f"or features/label/homo/net_*)")
    guard.check_count(p, "relation count", len(rel_mats), guard.MAX_RELATIONS)
    fkey, lkey = ("Attributes", "Label") if AMAZON_KEYS <= keys else ("features", "label")
    rkeys = ["Network"] if AMAZON_KEYS <= keys else (nets or ["homo"])
    for key, v in ((fkey, feats), (lkey, labels), *zip(rkeys, rel_mats)):
        if not (sp.issparse(v) or isinstance(v, np.ndarray)) or v.ndim != 2:
            raise DataError(f"{p}: {key!r} is not a 2-D numeric matrix")
        guard.check_numeric(p, repr(key), v.dtype)
    guard.check_count(p, "node count", feats.shape[0], guard.MAX_NODES)
    guard.check_count(p, "feature width", feats.shape[1], guard.MAX_FEATURES)
    x = feats.toarray() if sp.issparse(feats) else np.asarray(feats)
    y = np.asarray(labels.toarray() if sp.issparse(labels) else labels).reshape(-1)
    n = x.shape[0]
    if y.shape[0] != n:
        raise DataError(f"{p}: label has {y.shape[0]} entries but features have {n} rows")
    srcs, dsts, types = [], [], []
    for r, (rel, a) in enumerate(zip(rel_names, rel_mats)):
        a = sp.coo_matrix(a)
        if a.shape != (n, n):
            raise DataError(f"{p}: relation {rel!r} is {a.shape[0]}x{a.shape[1]}, expected {n}x{n}")
        keep = a.data != 0
        srcs.append(a.row[keep]), dsts.append(a.col[keep]), types.append(np.full(int(keep.sum()), r))
    return _finalize(p, x=x, y=y, src=np.concatenate(srcs), dst=np.concatenate(dsts),
                     etype=np.concatenate(types), relations=rel_names, node_ids=None,
                     feature_names=None, masks=None, **opts)


# ---- .npz ------------------------------------------------------------------------------------
def _npz_array(z: Any, p: Path, key: str) -> np.ndarray:
    try:
        return np.asarray(z[key])
    except Exception as exc:  # noqa: BLE001 - zlib/zip/numpy errors on corrupt members
        raise DataError(f"{p}: array {key!r} is unreadable ({type(exc).__name__}: {str(exc)[:120]})") from None


def _load_npz(p: Path, **opts: Any) -> GraphDataset:
    heads = guard.npz_headers(p)  # shapes and dtypes checked before any array is read
    keys = set(heads)
    need = {"node_features", "node_labels", "edges"}
    if not need <= keys:
        raise DataError(f"{p}: missing keys {sorted(need - keys)} (has {sorted(keys)})")
    for k in ("node_features", "node_labels", "edges", "edge_type", *MASK_KEYS):
        if k in heads:
            guard.check_numeric(p, k, heads[k][1])
    fshape = heads["node_features"][0]
    if len(fshape) != 2:
        raise DataError(f"{p}: node_features must be 2-D (N,F), got shape {fshape}")
    n = fshape[0]
    guard.check_count(p, "node count", n, guard.MAX_NODES)
    guard.check_count(p, "feature width", fshape[1], guard.MAX_FEATURES)
    eshape = heads["edges"][0]
    if len(eshape) != 2 or 2 not in eshape:
        raise DataError(f"{p}: edges must be (E,2), got shape {eshape}")
    n_edges = eshape[0] if eshape[1] == 2 else eshape[1]
    guard.check_count(p, "edge count", n_edges, guard.MAX_EDGES)
    if "edge_type" in heads and int(np.prod(heads["edge_type"][0])) != n_edges:
        raise DataError(f"{p}: edge_type has {int(np.prod(heads['edge_type'][0])):,} entries but edges has "
                        f"{n_edges:,} rows")
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{p}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    with z:
        x = _npz_array(z, p, "node_features")
        y = _npz_array(z, p, "node_labels").reshape(-1)
        e = _npz_array(z, p, "edges")
        etype_raw = _npz_array(z, p, "edge_type").reshape(-1) if "edge_type" in keys else None
        raw_masks = {k: _npz_array(z, p, k) for k in MASK_KEYS if k in keys}
        ids_raw = _npz_array(z, p, "node_ids") if "node_ids" in keys else None
    if y.shape[0] != n:
        raise DataError(f"{p}: node_labels has {y.shape[0]} entries but node_features has {n} rows")
    if e.shape[1] != 2:
        e = e.T
    if e.dtype.kind == "f":
        e = e.astype(np.float64)
    if e.dtype.kind == "f" and not np.array_equal(e, np.round(e)):
        raise DataError(f"{p}: edges hold non-integer node indices")
    if e.dtype.kind == "f" and len(e) and np.abs(e).max() >= 2**62:
        raise DataError(f"{p}: edges hold node indices far past the node count {n}")
    e = e.astype(np.int64)
    bad = np.flatnonzero((e < 0).any(1) | (e >= n).any(1))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{p}: edges row {i} = ({e[i, 0]}, {e[i, 1]}) points past the node count {n} "
                        f"({bad.size} bad edges)")
    etype = _edge_types(p, etype_raw, len(e))
    masks = read_masks(p, raw_masks, n)
    n_rel = int(etype.max()) + 1 if len(etype) else 1
    node_ids = None
    if ids_raw is not None:
        if ids_raw.dtype.kind not in "USbiu":
            raise DataError(f"{p}: node_ids must be text or integers, got dtype {ids_raw.dtype.str}")
        ids_raw = ids_raw.reshape(-1)
        if len(ids_raw) != n:
            raise DataError(f"{p}: node_ids has {len(ids_raw):,} entries but node_features has {n:,} rows")
        node_ids = [str(v) for v in ids_raw]
        guard.check_names(p, "node_ids", node_ids)
    rel_names = ["homo"] if n_rel == 1 else [f"rel{r}" for r in range(n_rel)]
    return _finalize(p, x=x, y=y, src=e[:, 0], dst=e[:, 1], etype=etype, relations=rel_names,
                     node_ids=node_ids, feature_names=None, masks=masks, **opts)


def _edge_types(p: Path, raw: np.ndarray | None, n_edges: int) -> np.ndarray:
    """(E,) int64 relation ids in [0, MAX_RELATIONS): checked before a name is made per id."""
    if raw is None:
        return np.zeros(n_edges, np.int64)
    if len(raw) != n_edges:
        raise DataError(f"{p}: edge_type has {len(raw):,} entries but edges has {n_edges:,} rows")
    if not len(raw):
        return np.zeros(0, np.int64)
    if raw.dtype.kind == "f" and not (np.isfinite(raw).all() and np.array_equal(raw, np.round(raw))):
        raise DataError(f"{p}: edge_type holds non-integer values")
    lo, hi = raw.min(), raw.max()
    if lo < 0:
        raise DataError(f"{p}: edge_type row {int(np.argmin(raw))} is negative ({lo}); relation ids start at 0")
    guard.check_count(p, "relation count (max edge_type + 1)", int(hi) + 1, guard.MAX_RELATIONS,
                      f"; edge_type row {int(np.argmax(raw))} = {hi}")
    return raw.astype(np.int64)


# ---- CSV ---------------------------------------------------------------------------------------
_SRC = ("src", "source", "u", "from")
_DST = ("dst", "target", "v", "to")


def _first_row(p: Path) -> list[str]:
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            return next(csv.reader(fh), [])
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text (byte {exc.start} of the first line); save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{p}: not a readable CSV file ({exc})") from None


def _read_table(p: Path, **kw: Any) -> Any:
    """pandas.read_csv with every parse/encoding error as one DataError line naming the file."""
    import pandas as pd

    try:
        return pd.read_csv(p, encoding="utf-8", **kw)
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text (byte {exc.start} of a chunk); save the CSV as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OverflowError) as exc:
        raise DataError(f"{p}: not a readable CSV file ({str(exc).strip().splitlines()[0][:160]})") from None


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _load_csv(p: Path, nodes: str | Path | None = None, **opts: Any) -> GraphDataset:
    import pandas as pd

    first = _first_row(p)
    if not first:
        raise DataError(f"{p}: empty CSV")
    if nodes is None:
        if len(first) == 4 and all(_is_number(c) for c in first):
            return signed_trust_graph(p, **opts)
        raise DataError(f"{p}: an edge-list CSV needs a node table (nodes=PATH, or a directory with "
                        f"edges.csv and nodes.csv); a headerless source,target,rating,time CSV is read "
                        f"as a signed trust network")
    edges = _read_table(p, dtype=str, keep_default_na=False)
    cols = {c.lower().strip(): c for c in edges.columns}
    sc = next((cols[c] for c in _SRC if c in cols), None)
    dc = next((cols[c] for c in _DST if c in cols), None)
    if sc is None or dc is None:
        raise DataError(f"{p}: edge list needs src and dst columns (has {list(edges.columns)})")
    relc = next((cols[c] for c in ("relation", "etype", "edge_type", "type") if c in cols), None)

    npath = Path(nodes)
    if not npath.is_file():
        raise DataError(f"{npath}: no such node table")
    table = _read_table(npath, dtype=str, keep_default_na=False)
    ncols = {c.lower().strip(): c for c in table.columns}
    idc = next((ncols[c] for c in ("node", "id", "node_id") if c in ncols), None)
    if idc is None:
        raise DataError(f"{npath}: node table needs a 'node' (or 'id') column (has {list(table.columns)})")
    labc = next((ncols[c] for c in ("label", "y", "fraud", "flag") if c in ncols), None)
    ids = table[idc].astype(str).str.strip().tolist()
    guard.check_count(npath, "node count", len(ids), guard.MAX_NODES)
    guard.check_names(npath, f"column {idc!r}", ids)
    dup = pd.Series(ids).duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"{npath}: row {i + 1}: node {ids[i]!r} appears twice")
    index = {v: i for i, v in enumerate(ids)}
    feat_cols = [c for c in table.columns if c not in (idc, labc)]
    guard.check_count(npath, "feature width", len(feat_cols), guard.MAX_FEATURES)
    x = np.zeros((len(ids), len(feat_cols)))
    for j, c in enumerate(feat_cols):
        col = pd.to_numeric(table[c].replace("", np.nan), errors="coerce")
        bad = col.isna() & (table[c].str.strip() != "") & ~table[c].str.strip().str.lower().isin(["nan", "na"])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{npath}: row {i + 1}, column {c!r}: {table[c].iloc[i]!r} is not a number")
        x[:, j] = col.to_numpy(dtype=float)
    if labc is not None:
        lab = pd.to_numeric(table[labc].replace("", np.nan), errors="coerce")
        bad = lab.isna() & (table[labc].str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{npath}: row {i + 1}, column {labc!r}: {table[labc].iloc[i]!r} is not a label")
        y = lab.to_numpy(dtype=float)
    else:
        y = np.full(len(ids), np.nan)

    s_ids = edges[sc].astype(str).str.strip()
    d_ids = edges[dc].astype(str).str.strip()
    src = s_ids.map(index)
    dst = d_ids.map(index)
    missing = src.isna() | dst.isna()
    if missing.any():
        i = int(np.flatnonzero(missing.to_numpy())[0])
        who = s_ids.iloc[i] if np.isnan(src.iloc[i]) else d_ids.iloc[i]
        raise DataError(f"{p}: row {i + 1}: edge ({s_ids.iloc[i]}, {d_ids.iloc[i]}) names node {who!r} "
                        f"that is not in {npath.name} ({int(missing.sum())} such edges)")
    if relc is not None:
        rel_names = sorted(edges[relc].unique().tolist())
        guard.check_count(p, f"relation count (distinct {relc!r} values)", len(rel_names), guard.MAX_RELATIONS)
        guard.check_names(p, f"column {relc!r}", rel_names)
        etype = edges[relc].map({r: i for i, r in enumerate(rel_names)}).to_numpy(np.int64)
    else:
        rel_names, etype = ["homo"], np.zeros(len(edges), np.int64)
    return _finalize(p, x=x, y=y, src=src.to_numpy(np.int64), dst=dst.to_numpy(np.int64), etype=etype,
                     relations=rel_names, node_ids=ids, feature_names=[str(c) for c in feat_cols],
                     masks=None, **opts)


# ---- signed trust network (Bitcoin OTC / Alpha) ------------------------------------------------
TRUST_FEATURES = [
    "log_in_degree", "log_out_degree", "log_undirected_degree", "reciprocity_out", "reciprocity_in",
    "first_seen_days", "last_seen_days", "active_span_days", "first_in_days", "in_span_days",
    "log_mean_in_gap_days", "first_out_days", "out_span_days", "log_mean_neighbour_degree",
    "frac_in_from_new_raters",
]


def signed_trust_graph(p: str | Path, *, min_ratings: int = 3, fraud_mean: float = -2.0,
                       **opts: Any) -> GraphDataset:
    """A who-rates-whom CSV (``source,target,rating,time``, no header) -> user graph with fraud labels.

    Label rule (documented in data/PROVENANCE.md): a user who received at least ``min_ratings`` ratings
    is labelled; fraud (1) when the mean rating received is ``<= fraud_mean``, else normal (0). Users with
    fewer ratings stay in the graph unlabelled (-1). On SNAP Bitcoin OTC: 2,389 labelled, 301 fraud.

    Leak guard: node features are structural and temporal only (degrees, reciprocity, activity times);
    no rating value enters any feature, so neither the node's own received ratings nor a neighbour's
    given ratings (which include the rating to the target) can reveal the label. Rating values are used
    for the label only. Edges: two directed relations, ``rated_by`` (rater -> rated user: a user hears
    from its raters) and ``rates`` (the reverse); their union is the undirected who-rated-whom graph.
    """
    import pandas as pd

    p = Path(p)
    df = _read_table(p, header=None, names=["source", "target", "rating", "time"])
    for c in df.columns:
        v = pd.to_numeric(df[c], errors="coerce")
        if v.isna().any():
            i = int(np.flatnonzero(v.isna().to_numpy())[0])
            raise DataError(f"{p}: row {i + 1}, column {c}: {df[c].iloc[i]!r} is not a number")
        df[c] = v
    users = np.unique(np.concatenate([df.source.to_numpy(), df.target.to_numpy()]))
    idx = {u: i for i, u in enumerate(users)}
    s = df.source.map(idx).to_numpy(np.int64)
    t = df.target.map(idx).to_numpy(np.int64)
    n = len(users)
    r = df.rating.to_numpy(float)
    tm = (df.time.to_numpy(float) - float(df.time.min())) / 86400.0  # days since network start

    # label: uses rating values (received) only here
    n_in = np.bincount(t, minlength=n).astype(float)
    sum_in = np.bincount(t, weights=r, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in = sum_in / n_in
    y = np.full(n, -1, np.int64)
    lab = n_in >= min_ratings
    y[lab] = (mean_in[lab] <= fraud_mean).astype(np.int64)

    # features: structure and time only
    n_out = np.bincount(s, minlength=n).astype(float)
    pairs = set(zip(s.tolist(), t.tolist()))
    recip = np.array([(b, a) in pairs for a, b in zip(s.tolist(), t.tolist())], dtype=float)
    rec_out = np.bincount(s, weights=recip, minlength=n) / np.maximum(n_out, 1)
    rec_in = np.bincount(t, weights=recip, minlength=n) / np.maximum(n_in, 1)
    und = np.unique(np.sort(np.stack([s, t], 1), axis=1), axis=0)
    deg_u = np.bincount(und.ravel(), minlength=n).astype(float)
    nb_deg = (np.bincount(und[:, 0], weights=deg_u[und[:, 1]], minlength=n)
              + np.bincount(und[:, 1], weights=deg_u[und[:, 0]], minlength=n)) / np.maximum(deg_u, 1)

    def agg(node: np.ndarray, val: np.ndarray, fn: str) -> np.ndarray:
        out = np.full(n, np.nan)
        ser = pd.Series(val).groupby(node).agg(fn)
        out[ser.index.to_numpy()] = ser.to_numpy()
        return out

    first_all = np.fmin(agg(s, tm, "min"), agg(t, tm, "min"))
    last_all = np.fmax(agg(s, tm, "max"), agg(t, tm, "max"))
    first_in, last_in = agg(t, tm, "min"), agg(t, tm, "max")
    first_out, last_out = agg(s, tm, "min"), agg(s, tm, "max")
    in_span = last_in - first_in
    mean_gap = np.where(n_in > 1, in_span / np.maximum(n_in - 1, 1), np.nan)
    # share of ratings received from raters whose first activity was < 7 days before the rating
    rater_first = first_all[s]
    new_rater = ((tm - rater_first) < 7.0).astype(float)
    frac_new = np.bincount(t, weights=new_rater, minlength=n) / np.maximum(n_in, 1)
    fill = lambda a, v=-1.0: np.where(np.isnan(a), v, a)  # noqa: E731 - "never" marker for no activity
    x = np.stack([
        np.log1p(n_in), np.log1p(n_out), np.log1p(deg_u), rec_out, rec_in,
        first_all, last_all, last_all - first_all, fill(first_in), fill(in_span, 0.0),
        np.log1p(fill(mean_gap, 0.0)), fill(first_out), fill(last_out - first_out, 0.0),
        np.log1p(nb_deg), frac_new,
    ], 1)
    # two directed relations whose union is the undirected trust graph
    ds = _finalize(p, x=x, y=y, src=np.concatenate([s, t]), dst=np.concatenate([t, s]),
                   etype=np.r_[np.zeros(len(s), np.int64), np.ones(len(s), np.int64)],
                   relations=["rated_by", "rates"], directed=True,
                   node_ids=[str(int(u)) if float(u).is_integer() else str(u) for u in users],
                   feature_names=list(TRUST_FEATURES), masks=None, **opts)
    ds.report["label_rule"] = (f"labelled if >= {min_ratings} ratings received; fraud if mean received "
                               f"rating <= {fraud_mean}; features exclude all rating values")
    return ds


# ---- shared validation -------------------------------------------------------------------------
def _unique_triples(r: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Sorted unique rows of (r, a, b) as an (K,3) array, via one int64 key (fast for 10M edges)."""
    if len(a) == 0:
        return np.zeros((0, 3), np.int64)
    key = np.sort((r * n + a) * n + b)  # fits int64 for n up to ~3e6 with thousands of relations
    key = key[np.r_[True, key[1:] != key[:-1]]]  # sort-based unique (np.unique's hash path is slow here)
    rb, b2 = np.divmod(key, n)
    r2, a2 = np.divmod(rb, n)
    return np.stack([r2, a2, b2], 1)


def _finalize(p: Path, *, x: np.ndarray, y: np.ndarray, src: np.ndarray, dst: np.ndarray,
              etype: np.ndarray, relations: list[str], node_ids: list[str] | None,
              feature_names: list[str] | None, masks: dict[str, np.ndarray] | None,
              nan: str = "impute", name: str | None = None, directed: bool = False, **_: Any) -> GraphDataset:
    n = x.shape[0]
    report: dict[str, Any] = {}
    if n == 0:
        raise DataError(f"{p}: the graph has no nodes")
    # labels
    yf = np.asarray(y, dtype=float)
    missing = np.isnan(yf) | (yf == -1)
    bad = ~missing & ~np.isin(yf, [0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{p}: node {i}: label {yf[i]!r} is not 0, 1 or missing")
    y_out = np.where(missing, -1, yf).astype(np.int64)
    report["unlabelled_nodes"] = int(missing.sum())
    # features
    x = np.asarray(x, dtype=np.float64)
    nonfinite = ~np.isfinite(x)
    if nonfinite.any():
        i, j = (int(v[0]) for v in np.nonzero(nonfinite))
        col = feature_names[j] if feature_names else str(j)
        if nan == "error":
            raise DataError(f"{p}: node {i}, feature {col!r}: value {x[i, j]} is not finite "
                            f"({int(nonfinite.sum())} non-finite values)")
        with warnings.catch_warnings():  # an all-NaN column: its mean is NaN, set to 0 below
            warnings.simplefilter("ignore", RuntimeWarning)
            colmean = np.nanmean(np.where(nonfinite, np.nan, x), axis=0)
        colmean = np.where(np.isnan(colmean), 0.0, colmean)
        x = np.where(nonfinite, colmean[None, :], x)
    report["nan_features_imputed"] = int(nonfinite.sum())
    big = np.abs(x) > np.finfo(np.float32).max
    if big.any():
        i, j = (int(v[0]) for v in np.nonzero(big))
        col = feature_names[j] if feature_names else str(j)
        raise DataError(f"{p}: node {i}, feature {col!r}: value {x[i, j]:.4g} overflows float32 (max 3.4e38; "
                        f"{int(big.sum())} such values); rescale the feature")
    # edges
    src, dst, etype = (np.asarray(a, dtype=np.int64) for a in (src, dst, etype))
    guard.check_count(p, "edge count", len(src), guard.MAX_EDGES)
    if len(relations) * n * n >= 2**63:  # the (relation, a, b) dedup key must fit int64
        raise DataError(f"{p}: {n:,} nodes x {len(relations)} relations is too large to index")
    oob = (src < 0) | (src >= n) | (dst < 0) | (dst >= n)
    if oob.any():
        i = int(np.flatnonzero(oob)[0])
        raise DataError(f"{p}: edge {i} = ({src[i]}, {dst[i]}) points past the node count {n}")
    loops = src == dst
    report["self_loops_removed"] = int(loops.sum())
    src, dst, etype = src[~loops], dst[~loops], etype[~loops]
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    dkey, key = _unique_triples(etype, src, dst, n), _unique_triples(etype, lo, hi, n)
    report["duplicate_edges_merged"] = int(len(src) - len(dkey))  # same (relation, src, dst) again
    report["reciprocal_pairs_merged"] = int(len(dkey) - len(key))  # a->b and b->a: one undirected edge
    report["undirected_edges"] = int(len(key))
    if directed:  # the caller supplies both directions itself (as separate relations)
        report["reciprocal_pairs_merged"] = 0
        report.pop("undirected_edges")
        report["directed_edges"] = int(len(dkey))
        et, a, b = dkey[:, 0], dkey[:, 1], dkey[:, 2]
        edge_index = torch.from_numpy(np.stack([a, b]))
        edge_type = torch.from_numpy(et.copy())
    else:
        et, a, b = key[:, 0], key[:, 1], key[:, 2]
        edge_index = torch.from_numpy(np.stack([np.concatenate([a, b]), np.concatenate([b, a])]))
        edge_type = torch.from_numpy(np.concatenate([et, et]))
    deg = np.bincount(np.concatenate([a, b]), minlength=n)
    report["isolated_nodes"] = int((deg == 0).sum())
    data = Data(x=torch.from_numpy(x.astype(np.float32)), edge_index=edge_index,
                y=torch.from_numpy(y_out), num_nodes=n)
    if len(relations) > 1:
        data.edge_type = edge_type
    if masks:
        for split, mk in masks.items():
            setattr(data, f"{split}_masks", torch.from_numpy(mk))
    return GraphDataset(data=data, name=name or p.stem, node_ids=node_ids or [str(i) for i in range(n)],
                        feature_names=feature_names, relations=list(relations), report=report)
