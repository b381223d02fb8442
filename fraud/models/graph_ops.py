"""Prepared graph operators shared by the GNNs: weighted sparse adjacency matrices (CSR) and edge lists.

Messages flow ``src -> dst`` along ``edge_index`` (the data layer stores both directions). Every operator
honours an optional per-edge weight ``w`` in [0, 1]: a weight of 0 is the same as removing the edge.
Adjacency products are CSR x dense products, so no (E, H) message tensor is materialised (what lets a
10M-edge graph train full-batch on a CPU). Building the CSR (a counting sort, O(E)) and the product
itself are small numba kernels: on the 1M-node / 10M-edge bench graph (one thread) they are ~4-5x and ~2x
faster than ``argsort`` + ``torch.sparse.mm`` (torch's CPU CSR kernel), with the same sums.
"""

from __future__ import annotations

import warnings

import numba
import numpy as np
import torch

from finllm.parallel import run_ranges

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")


class GraphOps:
    """Operators of one graph. Built once per (graph, edge_weight); cached per relation."""

    def __init__(self, edge_index: torch.Tensor, num_nodes: int, *, edge_type: torch.Tensor | None = None,
                 edge_weight: torch.Tensor | None = None, num_relations: int = 1) -> None:
        self.edge_index = edge_index.long()
        self.num_nodes = int(num_nodes)
        e = self.edge_index.size(1)
        self._edge_type = edge_type.long().reshape(-1) if edge_type is not None else None
        self._unweighted = edge_weight is None
        if edge_weight is None:
            edge_weight = torch.ones(e)
        else:
            edge_weight = edge_weight.detach().float().reshape(-1)
            if edge_weight.numel() != e:
                raise ValueError(f"edge_weight has {edge_weight.numel()} entries, the graph has {e} edges")
            if not torch.isfinite(edge_weight).all() or (edge_weight < 0).any():
                raise ValueError("edge_weight must be finite and >= 0")
        self.edge_weight = edge_weight
        self.num_relations = max(int(num_relations), 1)
        self._cache: dict = {}

    @property
    def edge_type(self) -> torch.Tensor:
        """(E,) long relation id of every edge (all 0 when the graph has one relation)."""
        if self._edge_type is None:
            self._edge_type = torch.zeros(self.edge_index.size(1), dtype=torch.long)
        return self._edge_type

    def _csr(self, relation: int | None, norm: str) -> SparseOp:
        src, dst = self.edge_index.numpy()
        etype = self.edge_type.numpy() if relation is not None else np.empty(0, dtype=np.int64)
        crow, col, val = _build_csr(dst, src, self.edge_weight.numpy(), etype,
                                    -1 if relation is None else int(relation), self.num_nodes,
                                    {"mean": 0, "sym": 1, "sum": 2}[norm])
        return SparseOp(torch.from_numpy(crow), torch.from_numpy(col), torch.from_numpy(val), self.num_nodes)

    def mean_adj(self, relation: int | None = None) -> SparseOp:
        """Row-normalised weighted adjacency (N,N) CSR: ``A @ h`` = weighted mean over in-neighbours."""
        key = ("mean", relation)
        if key not in self._cache:
            self._cache[key] = self._csr(relation, "mean")
        return self._cache[key]

    def sym_adj(self) -> SparseOp:
        """Symmetric normalised weighted adjacency S (N,N) CSR; the Laplacian is L = I - S."""
        if "sym" not in self._cache:
            self._cache["sym"] = self._csr(None, "sym")
        return self._cache["sym"]

    def sum_adj(self, relation: int | None = None) -> SparseOp:
        """Weighted adjacency (N,N) CSR without normalisation: ``A @ h`` = weighted sum over in-neighbours."""
        key = ("sum", relation)
        if key not in self._cache:
            self._cache[key] = self._csr(relation, "sum")
        return self._cache[key]

    def weighted_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(edge_index (2,E'), log_weight (E',)) of the edges with weight > 0 (for attention models)."""
        if "edges" not in self._cache:
            if self._unweighted:
                self._cache["edges"] = (self.edge_index, torch.zeros(self.edge_index.size(1)))
            else:
                keep = self.edge_weight > 0
                self._cache["edges"] = (self.edge_index[:, keep], self.edge_weight[keep].log())
        return self._cache["edges"]


class SparseOp:
    """A constant sparse (N,N) matrix in CSR arrays (``crow`` (N+1,), ``col`` (nnz,), ``val`` (nnz,) float32).

    ``a`` is the same matrix as a torch CSR tensor (shares memory); ``at`` is the transpose (for the
    backward pass), built on first use so inference never pays for it.
    """

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, n: int) -> None:
        self.crow, self.col, self.val, self.n = crow, col, val, int(n)
        self._a: torch.Tensor | None = None
        self._t: SparseOp | None = None

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.n, self.n))

    @property
    def nnz(self) -> int:
        return int(self.col.numel())

    @property
    def a(self) -> torch.Tensor:
        if self._a is None:
            with warnings.catch_warnings():  # torch flags CSR as "beta" on every construction
                warnings.simplefilter("ignore", UserWarning)
                self._a = torch.sparse_csr_tensor(self.crow, self.col, self.val, (self.n, self.n))
        return self._a

    def transpose(self) -> SparseOp:
        if self._t is None:
            crow, col, val = _transpose_csr(self.crow.numpy(), self.col.numpy(), self.val.numpy(), self.n)
            self._t = SparseOp(torch.from_numpy(crow), torch.from_numpy(col), torch.from_numpy(val), self.n)
            self._t._t = self
        return self._t

    @property
    def at(self) -> torch.Tensor:
        return self.transpose().a

    def reduce(self, h: torch.Tensor, mode: str) -> torch.Tensor:
        """Per row i, the element-wise ``max`` or ``min`` of ``h[j]`` over the row's stored columns j (the
        in-neighbours with weight > 0; the weight's size is not used); 0 for a row with none. (N,H) float32."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        h = h.detach().float().contiguous()
        out = torch.empty(self.n, h.size(1), dtype=torch.float32)
        run_ranges(_csr_extreme, self.n, self.crow.numpy(), self.col.numpy(), h.numpy(), out.numpy(),
                   mode == "max", min_span=4096)
        return out

    def nearest(self, h: torch.Tensor) -> torch.Tensor:
        """Per row i and column k, ``min_j |h[i,k] - h[j,k]|`` over the row's stored columns j (the
        in-neighbours with weight > 0): how close the most similar neighbour comes on that column. NaN for a
        row with none (0 would read as "a neighbour with the same value"). (N,H) float32."""
        h = h.detach().float().contiguous()
        out = torch.empty(self.n, h.size(1), dtype=torch.float32)
        run_ranges(_csr_nearest, self.n, self.crow.numpy(), self.col.numpy(), h.numpy(), out.numpy(), min_span=4096)
        return out

    def degree(self) -> torch.Tensor:
        """(N,) float32: the number of stored columns of every row (in-neighbours with weight > 0)."""
        return (self.crow[1:] - self.crow[:-1]).float()

    def to_dense(self) -> torch.Tensor:
        return self.a.to_dense()

    def matmul(self, h: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``self @ h`` for dense float32 ``h`` (N,H) (no autograd); ``out`` (N,H) is reused if given."""
        h = h.detach().contiguous()
        if out is None:
            out = torch.empty(self.n, h.size(1), dtype=h.dtype)
        args = (self.crow.numpy(), self.col.numpy(), self.val.numpy(), h.numpy(), out.numpy())
        run_ranges(_csr_mm, self.n, *args, min_span=4096)  # rows split across threads (a row is never split)
        return out


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, op: SparseOp) -> torch.Tensor:  # type: ignore[override]
        ctx.op = op
        return op.matmul(h.detach())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return ctx.op.transpose().matmul(grad), None


def spmm(a: SparseOp, h: torch.Tensor) -> torch.Tensor:
    """``a @ h`` for a constant sparse ``a`` (N,N) and dense ``h`` (N,H) or (N,); differentiable in ``h``
    (the backward multiplies by the cached transpose)."""
    if h.dim() == 1:
        return spmm(a, h.unsqueeze(1)).squeeze(1)
    if h.dtype != torch.float32:  # the kernels are float32; anything else takes torch's own CSR product
        return torch.sparse.mm(a.a.to(h.dtype), h)
    if h.requires_grad and torch.is_grad_enabled():
        return _SpMM.apply(h, a)
    return a.matmul(h)


def powers(a: SparseOp, x: torch.Tensor, k: int) -> list[torch.Tensor]:
    """``[a x, a^2 x, ..., a^k x]`` for a constant sparse ``a`` (N,N) and ``x`` (N,F): the multi-hop
    neighbourhood features of XGBGraph-style baselines and of HSIGN."""
    out, h = [], x
    for _ in range(k):
        h = spmm(a, h)
        out.append(h)
    return out


def warm_up() -> None:
    """Compile the graph kernels (the first time after an install, a few seconds) or load them from
    numba's disk cache: a 3-node graph, both normalisations, a per-relation CSR, a product and its
    transpose (the backward), the max/min reductions and the nearest-neighbour distances of the tree
    features."""
    g = GraphOps(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3, edge_type=torch.tensor([0, 0, 1]), num_relations=2)
    h = torch.ones(3, 2, requires_grad=True)
    for a in (g.mean_adj(), g.mean_adj(0), g.sym_adj()):
        spmm(a, h).sum().backward()
        a.reduce(h, "max")
        a.nearest(h)


# ---- kernels ---------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _build_csr(row, col, w, etype, relation, n, norm):  # pragma: no cover - compiled
    """CSR (rows grouped by ``row``, edge order kept within a row) of the edges with ``w > 0`` (and
    ``etype == relation`` when ``relation >= 0``). norm 0: ``w / rowsum``; 1: ``w * d[row]^-1/2 *
    d[col]^-1/2`` with d the weighted row sums (0 where d = 0); 2: ``w`` as is."""
    e = row.shape[0]
    deg = np.zeros(n, dtype=np.float32)
    cnt = np.zeros(n + 1, dtype=np.int64)
    for i in range(e):
        if w[i] > 0 and (relation < 0 or etype[i] == relation):
            cnt[row[i] + 1] += 1
            deg[row[i]] += w[i]
    for i in range(n):
        cnt[i + 1] += cnt[i]
    nnz = cnt[n]
    out_col = np.empty(nnz, dtype=np.int64)
    out_val = np.empty(nnz, dtype=np.float32)
    pos = cnt[:n].copy()
    if norm == 1:
        dinv = np.zeros(n, dtype=np.float32)
        for i in range(n):
            if deg[i] > 0:
                dinv[i] = np.float32(1.0) / np.sqrt(deg[i])
    for i in range(e):
        if w[i] > 0 and (relation < 0 or etype[i] == relation):
            r = row[i]
            p = pos[r]
            pos[r] = p + 1
            out_col[p] = col[i]
            if norm == 0:
                out_val[p] = w[i] / deg[r]
            elif norm == 2:
                out_val[p] = w[i]
            else:
                out_val[p] = dinv[r] * w[i] * dinv[col[i]]
    return cnt, out_col, out_val


@numba.njit(cache=True, nogil=True)
def _transpose_csr(crow, col, val, n):  # pragma: no cover - compiled
    cnt = np.zeros(n + 1, dtype=np.int64)
    for j in range(col.shape[0]):
        cnt[col[j] + 1] += 1
    for i in range(n):
        cnt[i + 1] += cnt[i]
    pos = cnt[:n].copy()
    out_col = np.empty(col.shape[0], dtype=np.int64)
    out_val = np.empty(col.shape[0], dtype=np.float32)
    for r in range(n):
        for j in range(crow[r], crow[r + 1]):
            c = col[j]
            p = pos[c]
            pos[c] = p + 1
            out_col[p] = r
            out_val[p] = val[j]
    return cnt, out_col, out_val


@numba.njit(cache=True, nogil=True)
def _csr_mm(crow, col, val, h, out, lo, hi):  # pragma: no cover - compiled
    """Rows ``lo:hi`` of out (N,H) = CSR (N,N) @ h (N,H); each row's sum in CSR order."""
    f = h.shape[1]
    for i in range(lo, hi):
        for k in range(f):
            out[i, k] = 0.0
        for j in range(crow[i], crow[i + 1]):
            c = col[j]
            v = val[j]
            for k in range(f):
                out[i, k] += v * h[c, k]


@numba.njit(cache=True, nogil=True)
def _csr_extreme(crow, col, h, out, take_max, lo, hi):  # pragma: no cover - compiled
    """Rows ``lo:hi`` of out (N,H): element-wise max (``take_max``) or min of h over each row's columns;
    0 for an empty row."""
    f = h.shape[1]
    for i in range(lo, hi):
        a, b = crow[i], crow[i + 1]
        if a == b:
            for k in range(f):
                out[i, k] = 0.0
            continue
        c = col[a]
        for k in range(f):
            out[i, k] = h[c, k]
        for j in range(a + 1, b):
            c = col[j]
            for k in range(f):
                v = h[c, k]
                if (v > out[i, k]) if take_max else (v < out[i, k]):
                    out[i, k] = v


@numba.njit(cache=True, nogil=True)
def _csr_nearest(crow, col, h, out, lo, hi):  # pragma: no cover - compiled
    """Rows ``lo:hi`` of out (N,H): element-wise min over each row's columns j of |h[i] - h[j]|; NaN for an
    empty row."""
    f = h.shape[1]
    for i in range(lo, hi):
        for k in range(f):
            out[i, k] = np.inf if crow[i + 1] > crow[i] else np.nan
        for j in range(crow[i], crow[i + 1]):
            c = col[j]
            for k in range(f):
                d = abs(h[i, k] - h[c, k])
                if d < out[i, k]:
                    out[i, k] = d
