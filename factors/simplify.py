"""Readable formulas: algebraic identities that leave a factor's values bit for bit unchanged.

Mined expressions carry noise such as ``Log(Mul(x, 1))`` or ``Mul(Mul(x, -1), -0.5)``. :func:`simplify`
rewrites them bottom-up to a fixpoint, with rules that are *exact* under the evaluator's arithmetic
(:mod:`factors.ops`: binary operators computed in float64 and rounded to float32 once, NaN propagated,
±inf turned into NaN), so the simplified expression gives the same float32 bits as the original on
every panel (tested on the real US panel over random expressions). Negation is exact and IEEE rounding
is symmetric in sign, which is what most rules use. ``Neg(x)`` below is the parser's spelling of
``-x``, ``Mul(x, -1)``:

===========================================  =========================================================
``Mul(x, 1)``, ``Mul(1, x)``, ``Div(x, 1)``,  ``x``
``Pow(x, 1)``, ``Greater(x, x)``,
``Less(x, x)``, ``Neg(Neg(x))``
``Mul(c, x)``, ``Add(c, x)``,                ``Mul(x, c)``, ``Add(x, c)``, ``Greater(x, c)``, ``Less(x, c)``
``Greater(c, x)``, ``Less(c, x)``            (constants last)
``Greater(Greater(x, a), b)``                ``Greater(x, max(a, b))`` (``Less``: ``min``)
``Div(x, -1)``                               ``Neg(x)``
``Mul(Neg(x), c)``, ``Div(Neg(x), c)``,      ``Mul(x, -c)``, ``Div(x, -c)``, ``Div(-c, x)``
``Div(c, Neg(x))``
``Mul(Neg(x), Neg(y))``, ``Div(..)`` alike   ``Mul(x, y)``, ``Div(x, y)``
``Sub(a, Neg(b))``, ``Add(a, Neg(b))``,      ``Add(a, b)``, ``Sub(a, b)``, ``Sub(b, a)``, ``Sub(b, a)``
``Add(Neg(a), b)``, ``Sub(Neg(a), Neg(b))``
``Add(x, -c)``, ``Sub(x, -c)`` (c > 0)        ``Sub(x, c)``, ``Add(x, c)``
``Add(x, x)``                                ``Mul(x, 2)``
``Sub(x, Ref(x, d))``                        ``Delta(x, d)``
``Abs(Neg(x))``, ``Abs(Abs(x))``,            ``Abs(x)``, ``Abs(x)``, ``Sign(x)``
``Sign(Sign(x))``
``Std(Neg(x), w)``, ``Var(Neg(x), w)``        ``Std(x, w)``, ``Var(x, w)``
===========================================  =========================================================

The nested ``Greater`` rule is exact because rounding to float32 is monotone: ``round(max(b, round(m)))``
equals ``round(max(b, m))`` for any float64 ``m`` and ``b`` (if ``b`` lies between ``m`` and ``round(m)``,
``round(b)`` is ``round(m)``). ``Greater(Less(x, a), b)`` with ``b >= a`` is the constant ``b`` wherever ``x`` is
defined; it is left alone, as no token sequence writes "b where x is not NaN".

Left out because they are not exact in float32: folding constants through a rounded operation
(``Sub(0.01, Add(0.01, x))`` is ``-x`` only up to rounding: for ``x = 1e-10`` it gives ``2.2e-10``),
``Ref(Ref(x, a), b)`` (the inner shift blanks days where the stock is invalid), ``Neg(Sub(a, b))`` ->
``Sub(b, a)`` (``-0`` vs ``+0`` when ``a == b``), ``Add(x, 0)`` (``-0 + 0 = +0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from factors.expr import FEATURES, Expr, Node, format_number, from_postfix


@dataclass(frozen=True)
class T:
    """A term: ``op`` is an operator name, ``"$..."`` a feature or ``"const"`` (then ``value`` is set)."""

    op: str
    args: tuple[T, ...] = ()
    value: float | None = None

    @property
    def is_const(self) -> bool:
        return self.op == "const"

    def postfix(self) -> list[str]:
        if self.is_const:
            assert self.value is not None
            return [format_number(self.value)]
        if not self.args:
            return [self.op]
        return [t for a in self.args for t in a.postfix()] + [self.op]


def _const(v: float) -> T:
    return T("const", value=float(v))


def _neg(x: T) -> T:
    return T("Mul", (x, _const(-1.0)))


def _is(t: T, v: float) -> bool:
    return t.is_const and t.value == v


def _negated(t: T) -> T | None:
    """``x`` when ``t`` is ``Mul(x, -1)`` or ``Mul(-1, x)``, else None."""
    if t.op == "Mul" and len(t.args) == 2:
        a, b = t.args
        if _is(b, -1.0) and not a.is_const:
            return a
        if _is(a, -1.0) and not b.is_const:
            return b
    return None


def _from_node(n: Node) -> T:
    if n.kind == "const":
        return _const(float(n.value))  # type: ignore[arg-type]
    if n.kind == "feature":
        return T(n.token)
    return T(n.token, tuple(_from_node(c) for c in n.children))


def _mul_div(t: T, a: T, b: T) -> T | None:
    na, nb = _negated(a), _negated(b)
    if t.op == "Mul":
        if _is(b, 1.0):
            return a
        if _is(a, 1.0):
            return b
        if a.is_const and not b.is_const:
            return T("Mul", (b, a))
        if na is not None and nb is not None:
            return T("Mul", (na, nb))
        if na is not None and b.is_const and not _is(b, -1.0):
            return T("Mul", (na, _const(-b.value)))  # type: ignore[operator]
        inner = _negated(t)
        if inner is not None and _negated(inner) is not None:
            return _negated(inner)
        return None
    # Div
    if _is(b, 1.0):
        return a
    if _is(b, -1.0) and not a.is_const:
        return _neg(a)
    if na is not None and nb is not None:
        return T("Div", (na, nb))
    if na is not None and b.is_const:
        return T("Div", (na, _const(-b.value)))  # type: ignore[operator]
    if nb is not None and a.is_const:
        return T("Div", (_const(-a.value), nb))  # type: ignore[operator]
    return None


def _add_sub(t: T, a: T, b: T) -> T | None:
    na, nb = _negated(a), _negated(b)
    if t.op == "Add":
        if a.is_const and not b.is_const:
            return T("Add", (b, a))
        if nb is not None:
            return T("Sub", (a, nb))
        if na is not None:
            return T("Sub", (b, na))
        if b.is_const and b.value is not None and b.value < 0:
            return T("Sub", (a, _const(-b.value)))
        if a == b:
            return T("Mul", (a, _const(2.0)))
        return None
    # Sub
    if na is not None and nb is not None:
        return T("Sub", (nb, na))
    if nb is not None:
        return T("Add", (a, nb))
    if b.is_const and b.value is not None and b.value < 0:
        return T("Add", (a, _const(-b.value)))
    if b.op == "Ref" and b.args[0] == a:
        return T("Delta", b.args)
    return None


def _extreme(t: T, a: T, b: T) -> T | None:
    """Greater / Less (element-wise max / min, NaN if either side is NaN)."""
    if a == b:
        return a
    if a.is_const and not b.is_const:  # the kernel computes ``c op x`` as ``x op c``: the same bits
        return T(t.op, (b, a))
    if b.is_const and a.op == t.op and a.args[1].is_const:  # max(max(x, c2), c1) = max(x, max(c1, c2))
        pick = max if t.op == "Greater" else min
        return T(t.op, (a.args[0], _const(pick(a.args[1].value, b.value))))  # type: ignore[type-var]
    return None


def _rule(t: T) -> T | None:
    """One rewrite at the root of ``t`` (its arguments already simplified), or None."""
    if t.op in ("Mul", "Div"):
        return _mul_div(t, *t.args)
    if t.op in ("Add", "Sub"):
        return _add_sub(t, *t.args)
    if t.op in ("Greater", "Less"):
        return _extreme(t, *t.args)
    if t.op == "Pow" and _is(t.args[1], 1.0):
        return t.args[0]
    if t.op == "Abs":
        (x,) = t.args
        inner = _negated(x)
        if inner is not None:
            return T("Abs", (inner,))
        if x.op == "Abs":
            return x
    if t.op in ("Std", "Var") and _negated(t.args[0]) is not None:  # deviations from the mean flip sign only
        return T(t.op, (_negated(t.args[0]), t.args[1]))
    if t.op == "Sign" and t.args[0].op == "Sign":
        return t.args[0]
    return None


def _simplify(t: T) -> T:
    """Arguments first, then rules at the root until none applies. Terminates: every rule shortens the
    postfix, or keeps its length and moves a constant right or a sign from a term into a constant."""
    if t.args:
        t = T(t.op, tuple(_simplify(a) for a in t.args), t.value)
    new = _rule(t)
    return t if new is None else _simplify(new)


def simplify(expr: Expr, features: Sequence[str] | None = None) -> Expr:
    """``expr`` rewritten by the exact identities of the module doc (itself when none applies). ``features``:
    the panel's fields when it has more than the standard six."""
    out = _simplify(_from_node(expr.root))
    tokens = out.postfix()
    if tuple(tokens) == expr.tokens:
        return expr
    return from_postfix(tokens, features if features is not None else sorted(set(expr.features) | set(FEATURES)))


def simplify_tokens(tokens: Sequence[str], features: Sequence[str] | None = None) -> Expr:
    """:func:`simplify` of a postfix token list."""
    feats = features if features is not None else sorted({t for t in tokens if t.startswith("$")} | set(FEATURES))
    return simplify(from_postfix(list(tokens), feats), feats)
