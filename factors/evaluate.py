"""Evaluate factor expressions over a panel: float32 (days x stocks) torch tensors on CPU, computed by the
numba kernels of :mod:`factors.kernels` (zero-copy), with cached subtrees.

Semantics (see :mod:`factors.ops` for each operator's NaN rule):

* Features are the panel's fields, NaN wherever ``panel.valid`` is False (a day a stock has no row is
  missing in every window; nothing is forward-filled).
* After every operator the result is NaN where the stock is not valid that day and wherever it is not
  finite: division by zero, ``Log(0)`` and float32 overflow give NaN, never inf.
* Cross-sectional operators rank/standardise among ``panel.in_universe`` names only.
* Factors never look ahead: ``Ref`` with a negative window is rejected unless the expression is a target
  (:meth:`Evaluator.target`); every kernel at day t reads only days <= t (tested for every operator).

The subexpression cache maps a subtree's canonical postfix hash to its (D, S) tensor; it is shared by
every expression evaluated with the same :class:`Evaluator` and never holds more than ``cache_bytes``
(least recently used results are evicted first). It keeps the results of window (``ts``, ``ts_pair``)
and cross-sectional operators, the ones that cost real work (a ``Ref``/``Delta`` of an input inside an
element-wise tree is not one of them: the fused pass reads it in place, see :mod:`factors.fuse`).
Element-wise results are not kept: one is a single memory-bound pass over its (cached) inputs, cheaper
than keeping it, because a kept result needs fresh memory and faulting in fresh memory costs more than
that pass (2-3 ms per 11 MB on a shared 2-vCPU VM, against about 1 ms for the pass), while a dropped one
is recycled (:func:`factors.kernels.empty`). One exception, within a single expression: an element-wise
subtree that feeds two window operators (``M`` in ``Div(Std(M, 20), Mean(M, 20))``) is kept until the
expression is done, so it is computed once (:func:`shared_regions`).

Speed: the kernels (:mod:`factors.ops`, :mod:`factors.kernels`) return clean results (valid mask and
inf -> NaN fused in), so a node costs one kernel pass into one array and no extra copies, and a tree of
element-wise operators (``Div(Sub($close, $open), $open)``) runs as one fused pass (:mod:`factors.fuse`),
inside the kernel of a window input when that window has to be computed (an epilogue).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from factors import fuse
from factors import kernels as K
from factors.expr import Expr, Node, from_postfix, parse, to_expr
from factors.ops import OPS, Epilogue

if TYPE_CHECKING:
    from factors.panel import Panel


class Evaluator:
    """Evaluate expressions on one :class:`factors.panel.Panel` (``values`` (D, S, F), ``valid`` and
    ``in_universe`` (D, S))."""

    def __init__(self, panel: Panel, cache_bytes: int = 1 << 30):
        self.panel = panel
        self.valid: Tensor = torch.as_tensor(panel.valid, dtype=torch.bool).contiguous()
        uni = getattr(panel, "in_universe", None)
        self.universe: Tensor = self.valid if uni is None else (torch.as_tensor(uni, dtype=torch.bool) & self.valid)
        self.features: tuple[str, ...] = tuple(f"${f}" for f in panel.fields)
        vals = torch.as_tensor(panel.values)
        if vals.dtype != torch.float32:
            vals = vals.to(torch.float32)
        self._feat: dict[str, Tensor] = {}
        for i, f in enumerate(self.features):
            raw = torch.from_numpy(K.empty(tuple(vals.shape[:2])))  # dies after cleaning: recycled memory
            self._feat[f] = self._clean(raw.copy_(vals[:, :, i]))
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self._shared: frozenset[str] = frozenset()  # see shared_regions; set while an expression runs
        self._memo: dict[str, Tensor] = {}

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.valid.shape)  # type: ignore[return-value]

    # -- public -----------------------------------------------------------------------------------

    def parse(self, expr: Expr | str | Sequence[str], allow_future: bool = False) -> Expr:
        """Coerce to an :class:`Expr` with this panel's features (raises ExpressionError)."""
        if isinstance(expr, Expr):
            missing = [f for f in expr.features if f not in self._feat]
            if missing:
                # re-validate against this panel's fields to get a positioned error
                return from_postfix(expr.tokens, self.features, allow_future=allow_future)
        return to_expr(expr, self.features, allow_future=allow_future)

    def evaluate(self, expr: Expr | str | Sequence[str]) -> Tensor:
        """Factor values (D, S) float32, NaN outside ``panel.valid``. Never looks ahead.

        A fresh tensor is returned each time (the cached copy is never handed out)."""
        return self._run(self.parse(expr))

    def target(self, expr: Expr | str | Sequence[str]) -> Tensor:
        """A target (label) expression, which may use ``Ref(x, -h)`` to look forward. (D, S)."""
        return self._run(self.parse(expr, allow_future=True))

    def forward_return(self, horizon: int = 20) -> Tensor:
        """``close[t + h] / close[t] - 1`` (D, S): the default target; NaN where either is missing."""
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        return self.target(target_expr(horizon))

    def cache_info(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "bytes": self._bytes, "entries": len(self._cache),
                "max_bytes": self.cache_bytes}

    def clear_cache(self) -> None:
        self._cache.clear()
        self._sizes.clear()
        self._bytes = 0

    # -- internals --------------------------------------------------------------------------------

    def _clean(self, x: Tensor) -> Tensor:
        """NaN where not valid or not finite (so +-inf never escapes an operator)."""
        xa = x.to(torch.float32).contiguous().numpy()
        out = K.empty(xa.shape)
        K.run(K.clean, xa.shape[0], xa, self.valid.numpy(), out, parallel=False)
        return torch.from_numpy(out)

    @staticmethod
    def _cached(spec: Any) -> bool:
        """Whether results of this operator are kept in the cache (see the module docstring)."""
        return spec.category in ("ts", "ts_pair", "cs")

    def _owned(self, node: Node, x: Tensor) -> Tensor:
        """``x`` if nothing else holds it (an operator's result the cache does not keep), else a copy."""
        if node.kind == "op" and node.key not in self._cache:
            return x
        xa = x.numpy()
        out = K.empty(xa.shape)  # recycled memory where there is some
        K.run(K.copy, xa.shape[0], xa, out)
        return torch.from_numpy(out)

    def _run(self, e: Expr) -> Tensor:
        self._shared = shared_regions(e.root)
        try:
            return self._owned(e.root, self._eval(e.root))
        finally:
            self._shared, self._memo = frozenset(), {}

    def _get(self, key: str) -> Tensor | None:
        t = self._cache.get(key)
        if t is not None:
            self._cache.move_to_end(key)
            self.hits += 1
        return t

    def _put(self, key: str, t: Tensor) -> None:
        size = t.element_size() * t.nelement()
        if size > self.cache_bytes:
            return
        while self._bytes + size > self.cache_bytes and self._cache:
            old = next(iter(self._cache))  # least recently used
            del self._cache[old]
            self._bytes -= self._sizes.pop(old)
        self._cache[key] = t
        self._sizes[key] = size
        self._bytes += size

    def _eval(self, node: Node, epi: Epilogue | None = None) -> Tensor:
        """``node``'s values (D, S). ``epi``: an element-wise program for ``node``'s kernel to run on each
        row it writes (:mod:`factors.fuse`), if ``node`` is a window operator that has to be computed;
        ``epi.done`` tells whether it ran."""
        if node.kind == "feature":
            return self._feat[node.token]
        key = node.key
        hit = self._get(key)
        if hit is None:
            hit = self._memo.get(key)
        if hit is not None:
            return hit
        self.misses += 1
        spec = OPS[node.token]
        cat = spec.category
        if spec.fuse is not None:  # an element-wise tree: one fused pass when it has several operators
            fused = fuse.run(node, self._eval, self.valid)
            if fused is not None:  # element-wise results are not cached (see the module docstring) ...
                if key in self._shared:  # ... but kept while this expression needs them again
                    self._memo[key] = fused
                return fused
        if cat == "binary":
            args = [c.value if c.kind == "const" else self._eval(c) for c in node.children]
            out = spec.fn(*args)
        elif cat in ("ts", "ts_pair"):
            *xs, wnode = node.children
            out = spec.fn(*[self._eval(c) for c in xs], int(wnode.value), self.valid, epi=epi)
        elif cat == "cs":
            out = spec.fn(self._eval(node.children[0]), self.universe)
        else:
            out = spec.fn(self._eval(node.children[0]))
        if self._cached(spec):
            self._put(key, out)  # kernels return clean results: NaN outside valid, never +-inf
        elif key in self._shared:
            self._memo[key] = out
        return out


def shared_regions(root: Node) -> frozenset[str]:
    """Keys of the element-wise subtrees that feed two or more non-element-wise parents in ``root``'s tree,
    e.g. ``M`` in ``Div(Std(M, 20), Mean(M, 20))``. The evaluator keeps such a result while the expression
    runs (not in the cache): it is computed once, not once per parent. Inside one fused region a repeated
    subtree is computed once anyway (:func:`factors.fuse.compile_tree`), so only region roots count."""
    seen: set[str] = set()
    visited: set[str] = set()
    twice: set[str] = set()

    def walk(n: Node, in_region: bool) -> None:
        if n.kind != "op":
            return
        spec = OPS[n.token]
        elementwise = spec.category in ("unary", "binary")
        if elementwise and not in_region:
            (twice if n.key in seen else seen).add(n.key)
        if n.key in visited:
            return
        visited.add(n.key)
        for c in n.children:
            walk(c, elementwise and spec.fuse is not None)

    walk(root, False)
    return frozenset(twice)


def target_expr(horizon: int = 20, field: str = "$close") -> str:
    """The infix of the ``horizon``-day forward return target."""
    return f"Sub(Div(Ref({field}, -{horizon}), {field}), 1)"


__all__ = ["Evaluator", "from_postfix", "parse", "shared_regions", "target_expr"]
