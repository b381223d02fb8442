"""Units of a factor: does its cross-sectional ranking depend on each stock's arbitrary price scale?

A stock's price level is an accident of history: in the shipped US panel it is the price on the ticker's
first row times its total return since (see ``data/PROVENANCE.md``); a split, or a different first row,
rescales it. Redefining a stock's share unit by ``s > 0`` multiplies its prices by ``s`` and its volume by
``1 / s``; dollar volume is unchanged. A factor is **scale-free** when that change, made to any stock,
leaves the factor's value unchanged, so that its cross-sectional ranking is the same for any such choice.
``Div(Mean($close, 20), $close)``, ``Corr($close, $volume, 10)``, ``Log(Mul($close, $volume))`` are;
``$close``, ``Less(5, $close)``, ``Add($close, 1)`` and ``Std($volume, 20)`` are not: they rank stocks by
the scale of their prices (issue 17: "mined formulas lean on raw price levels and nonsense constants").

The check is dimensional analysis on the expression tree, exact (no evaluation): each sub-expression has
a :class:`Unit`, either ``scale(d)`` (the value is multiplied by ``s ** d``) or ``offset(d)`` (a logarithm:
``d * log(s)`` is added to it), or it is *mixed* (None: neither, e.g. a price plus a constant). Prices have
``d = 1``, ``$volume`` ``d = -1``; constants, windows and any other column (market cap, an index-membership
flag, ...) are taken as scale-free (``d = 0``). An expression is scale-free iff its unit is ``scale(0)``.
The rules follow each operator's algebra for ``s > 0``: ``Add`` needs equal units, ``Mul`` adds exponents,
``Log`` turns a scale into an offset, ``Delta``/``Std``/``Slope`` of a logarithm drop the offset, ``Corr``,
``Skew``, ``Kurt``, ``Rank``, ``IdxMax`` are scale- and shift-free, cross-sectional operators need a
scale-free input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from factors.expr import Expr, Node, from_postfix
from finllm.errors import ExpressionError

PRICE_FEATURES = frozenset({"$open", "$high", "$low", "$close", "$vwap"})
VOLUME_FEATURES = frozenset({"$volume"})

# window operators whose value scales with x (c x in, c times the value out) and is shifted with it
_LINEAR_TS = frozenset({"Ref", "Mean", "Max", "Min", "Med", "WMA", "EMA"})
# window operators whose value is unchanged by a shift of x and scales with it: c x + b -> c times the value
_SPREAD_TS = frozenset({"Delta", "Std", "Mad", "Slope"})
# window operators unchanged by any positive scale and any shift of x
_FREE_TS = frozenset({"Skew", "Kurt", "Rank", "IdxMax", "IdxMin"})


@dataclass(frozen=True)
class Unit:
    """``log=False``: the value is multiplied by ``s ** d``; ``log=True``: ``d * log(s)`` is added to it."""

    d: float
    log: bool = False

    @property
    def free(self) -> bool:
        """Scale-free: unchanged by any share-unit choice."""
        return not self.log and self.d == 0


FREE = Unit(0.0)


def _feature_unit(name: str) -> Unit:
    return Unit(1.0) if name in PRICE_FEATURES else Unit(-1.0) if name in VOLUME_FEATURES else FREE


def unit(node: Node) -> Unit | None:
    """The unit of a sub-expression, or None when it is mixed (no single rule: a price plus a constant)."""
    if node.kind == "feature":
        return _feature_unit(node.token)
    if node.kind == "const":
        return FREE
    op = node.token
    kids = node.children
    if op in _LINEAR_TS or op in _SPREAD_TS or op in _FREE_TS or op in ("Sum", "Var"):
        x = unit(kids[0])
        if x is None:
            return None
        if op in _FREE_TS:
            return FREE
        if op in _LINEAR_TS:
            return x
        if op in _SPREAD_TS:
            return Unit(x.d) if not x.log else FREE
        if op == "Var":
            return Unit(2 * x.d) if not x.log else FREE
        return x if not x.log else None  # Sum of an offset adds it once per day present: mixed
    if op in ("Corr", "Cov"):
        a, b = unit(kids[0]), unit(kids[1])
        if a is None or b is None:
            return None
        if op == "Corr":
            return FREE
        return Unit((0.0 if a.log else a.d) + (0.0 if b.log else b.d))
    if op in ("CSRank", "CSZScore"):
        x = unit(kids[0])
        return FREE if x is not None and x.free else None
    if op == "Abs":
        x = unit(kids[0])
        return x if x is not None and not x.log else None
    if op == "Sign":
        x = unit(kids[0])
        return FREE if x is not None and not x.log else None
    if op == "Log":
        x = unit(kids[0])
        if x is None or x.log:
            return None
        return Unit(x.d, log=True) if x.d else FREE
    if op == "Pow":
        x, k = unit(kids[0]), kids[1].value
        return Unit(x.d * float(k)) if x is not None and not x.log and k is not None else None
    if op in ("Add", "Sub", "Greater", "Less"):
        return _sum_unit(op, unit(kids[0]), unit(kids[1]))
    if op in ("Mul", "Div"):
        return _product_unit(op, kids[0], kids[1])
    return None  # an operator without a rule here: treated as mixed


def _sum_unit(op: str, a: Unit | None, b: Unit | None) -> Unit | None:
    if a is None or b is None:
        return None
    if not a.log and not b.log:
        return a if a.d == b.d else None
    if op in ("Greater", "Less"):  # max(x + o, y + o) = max(x, y) + o: only the same offset
        return a if a == b else None
    if a.log and b.log:  # offsets add (subtract)
        d = a.d + b.d if op == "Add" else a.d - b.d
        return Unit(d, log=True) if d else FREE
    plain, off = (b, a) if a.log else (a, b)
    if plain.d != 0:
        return None
    # an offset plus (minus) a scale-free term keeps the offset; a scale-free term minus an offset negates it
    return Unit(-off.d, log=True) if op == "Sub" and b.log else off


def _product_unit(op: str, x: Node, y: Node) -> Unit | None:
    a, b = unit(x), unit(y)
    if a is None or b is None:
        return None
    if not a.log and not b.log:
        return Unit(a.d + b.d if op == "Mul" else a.d - b.d)
    # an offset times a constant k is an offset k times as large; times anything else it is mixed
    if a.log and not b.log and y.kind == "const" and y.value:
        k = float(y.value) if op == "Mul" else 1.0 / float(y.value)
        return Unit(a.d * k, log=True)
    if b.log and not a.log and op == "Mul" and x.kind == "const" and x.value:
        return Unit(b.d * float(x.value), log=True)
    return None


def is_scale_free(expr: Expr) -> bool:
    """Whether ``expr``'s value is unchanged when any stock's share unit is redefined (module doc)."""
    u = unit(expr.root)
    return u is not None and u.free


def tokens_scale_free(tokens: Sequence[str]) -> bool | None:
    """:func:`is_scale_free` of a stored postfix token list (its features read from the tokens); None when the
    tokens do not parse."""
    feats = sorted({t for t in tokens if isinstance(t, str) and t.startswith("$")})
    try:
        return is_scale_free(from_postfix(list(tokens), feats, max_len=max(len(tokens), 1)))
    except ExpressionError:
        return None


def scale_free_share(members: Sequence[dict]) -> dict[str, float | None]:
    """Share of a pool's members (``{"tokens", "weight", ...}`` dicts) that are scale-free, by count and by
    absolute weight (None for an empty pool): how much of a mined signal ranks stocks by their price scale."""
    if not members:
        return {"members": None, "weight": None}
    free = [bool(m["scale_free"] if "scale_free" in m else tokens_scale_free(m["tokens"])) for m in members]
    w = [abs(float(m.get("weight", 0.0))) for m in members]
    total = sum(w)
    return {"members": round(sum(free) / len(free), 4),
            "weight": round(sum(x for x, f in zip(w, free) if f) / total, 4) if total > 0 else None}
