"""Prepared graph operators shared by the GNNs: weighted sparse adjacency matrices (CSR) and edge lists.

Messages flow ``src -> dst`` along ``edge_index`` (the data layer stores both directions). Every operator
honours an optional per-edge weight ``w`` in [0, 1]: a weight of 0 is the same as removing the edge.
Adjacency products use ``torch.sparse.mm`` on CSR matrices, so no (E, H) message tensor is materialised
(what lets a 10M-edge graph train full-batch on a CPU).
"""

from __future__ import annotations

import warnings

import torch

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")


class GraphOps:
    """Operators of one graph. Built once per (graph, edge_weight); cached per relation."""

    def __init__(self, edge_index: torch.Tensor, num_nodes: int, *, edge_type: torch.Tensor | None = None,
                 edge_weight: torch.Tensor | None = None, num_relations: int = 1) -> None:
        self.edge_index = edge_index.long()
        self.num_nodes = int(num_nodes)
        e = self.edge_index.size(1)
        self.edge_type = edge_type.long() if edge_type is not None else torch.zeros(e, dtype=torch.long)
        if edge_weight is None:
            edge_weight = torch.ones(e)
        edge_weight = edge_weight.detach().float().reshape(-1)
        if edge_weight.numel() != e:
            raise ValueError(f"edge_weight has {edge_weight.numel()} entries, the graph has {e} edges")
        if not torch.isfinite(edge_weight).all() or (edge_weight < 0).any():
            raise ValueError("edge_weight must be finite and >= 0")
        self.edge_weight = edge_weight
        self.num_relations = max(int(num_relations), 1)
        self._cache: dict = {}

    def _csr(self, mask: torch.Tensor | None, norm: str) -> "SparseOp":
        src, dst = self.edge_index
        w = self.edge_weight
        if mask is not None:
            src, dst, w = src[mask], dst[mask], w[mask]
        keep = w > 0
        src, dst, w = src[keep], dst[keep], w[keep]
        n = self.num_nodes
        deg = torch.zeros(n).index_add_(0, dst, w)
        if norm == "mean":
            val = w / deg[dst]
        else:  # symmetric D^-1/2 W D^-1/2 (degrees from the weighted, undirected graph)
            dinv = deg.pow(-0.5)
            dinv[torch.isinf(dinv)] = 0.0
            val = dinv[dst] * w * dinv[src]
        return SparseOp(_csr(dst, src, val, n), lambda: _csr(src, dst, val, n))

    def mean_adj(self, relation: int | None = None) -> "SparseOp":
        """Row-normalised weighted adjacency (N,N) CSR: ``A @ h`` = weighted mean over in-neighbours."""
        key = ("mean", relation)
        if key not in self._cache:
            mask = None if relation is None else self.edge_type == relation
            self._cache[key] = self._csr(mask, "mean")
        return self._cache[key]

    def sym_adj(self) -> "SparseOp":
        """Symmetric normalised weighted adjacency S (N,N) CSR; the Laplacian is L = I - S."""
        if "sym" not in self._cache:
            self._cache["sym"] = self._csr(None, "sym")
        return self._cache["sym"]

    def weighted_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(edge_index (2,E'), log_weight (E',)) of the edges with weight > 0 (for attention models)."""
        if "edges" not in self._cache:
            keep = self.edge_weight > 0
            self._cache["edges"] = (self.edge_index[:, keep], self.edge_weight[keep].log())
        return self._cache["edges"]


def _csr(row: torch.Tensor, col: torch.Tensor, val: torch.Tensor, n: int) -> torch.Tensor:
    """(N,N) CSR matrix from COO triples (duplicates kept: spmm sums them, as coalescing would)."""
    order = torch.argsort(row * n + col)
    crow = torch.zeros(n + 1, dtype=torch.long)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=n), 0)
    with warnings.catch_warnings():  # torch flags CSR as "beta" on every construction
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col[order], val[order], (n, n))


class SparseOp:
    """A constant sparse matrix (CSR); its transpose (for a fast backward pass) is built on first use,
    so inference never pays for it."""

    def __init__(self, a: torch.Tensor, make_at) -> None:
        self.a, self._make_at, self._at = a, make_at, None

    @property
    def at(self) -> torch.Tensor:
        if self._at is None:
            self._at = self._make_at()
        return self._at

    @property
    def shape(self) -> torch.Size:
        return self.a.shape

    def to_dense(self) -> torch.Tensor:
        return self.a.to_dense()


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, op: SparseOp) -> torch.Tensor:  # type: ignore[override]
        ctx.op = op
        return torch.sparse.mm(op.a, h)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return torch.sparse.mm(ctx.op.at, grad.contiguous()), None


def spmm(a: SparseOp, h: torch.Tensor) -> torch.Tensor:
    """``a @ h`` for a constant sparse ``a`` (N,N) and dense ``h`` (N,H); differentiable in ``h``
    (the backward multiplies by the cached transpose: torch's own CSR backward is ~10x slower)."""
    if h.requires_grad:
        return _SpMM.apply(h, a)
    return torch.sparse.mm(a.a, h)
