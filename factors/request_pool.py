"""Built-in known formulas tagged with concepts: retrieval examples and the fallback candidate pool.

Each template is a well-known formulaic alpha (Alpha158 / 101-alphas style) with a field slot ``{p}``
and a window slot ``{w}``. :func:`fallback_pool` instantiates the templates of the concepts a request
names with the fields and windows it names (``$close`` and 5/20/60 days when it names none), and, when
no single formula covers the whole request, combines one formula per concept (product and sum of
cross-sectional ranks). Only formulas that pass the relevance rule of :mod:`factors.request_intent`
are kept, so when the LLM proposes nothing relevant the analyst still gets a valid factor that uses
what the request names; the output marks these candidates as ``fallback``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from factors.expr import Expr, parse
from factors.request_intent import Intent, check_relevance
from finllm.errors import ExpressionError

_RET = "Div(Delta({p}, 1), Ref({p}, 1))"
TEMPLATES: dict[str, tuple[str, ...]] = {
    "reversal": ("Mul(Div(Delta({p}, {w}), Ref({p}, {w})), -1)", "Div(Mean({p}, {w}), {p})"),
    "momentum": ("Div(Delta({p}, {w}), Ref({p}, {w}))", "Div(Slope({p}, {w}), {p})", "Rank({p}, {w})"),
    "volatility": (f"Std({_RET}, {{w}})", "Div(Std({p}, {w}), Mean({p}, {w}))"),
    "skewness": (f"Skew({_RET}, {{w}})",),
    "kurtosis": (f"Kurt({_RET}, {{w}})",),
    "volume": ("Div($volume, Mean($volume, {w}))", "Div(Std($volume, {w}), Mean($volume, {w}))"),
    "range": ("Mean(Div(Sub($high, $low), $close), {w})",
              "Div(Sub($close, Min($low, {w})), Sub(Max($high, {w}), Min($low, {w})))"),
    "correlation": ("Corr({p}, $volume, {w})", f"Corr({_RET}, Div(Delta($volume, 1), Ref($volume, 1)), {{w}})"),
    "extremes": ("Div(Max($high, {w}), $close)", "Div(Min($low, {w}), $close)", "Div(IdxMax({p}, {w}), {w})"),
    "gap": ("Mean(Div(Sub($open, Ref($close, 1)), Ref($close, 1)), {w})",),
    "cross-section": ("CSRank(Div(Delta({p}, {w}), Ref({p}, {w})))", f"CSZScore(Std({_RET}, {{w}}))"),
    "moving average": ("Div(Mean({p}, {w}), {p})", "Div(EMA({p}, {w}), {p})"),
    "exponential average": ("Div(EMA({p}, {w}), {p})",),
    "slope": ("Div(Slope({p}, {w}), {p})",),
    # a field named without a concept: its level against its own average, its change, its variability
    "field": ("Div({p}, Mean({p}, {w}))", "Div(Delta({p}, {w}), Ref({p}, {w}))", "Div(Std({p}, {w}), Mean({p}, {w}))"),
}
DEFAULT_WINDOWS = (5, 20, 60)
MAX_POOL = 10


@dataclass(frozen=True)
class Known:
    """A built-in formula, parsed, with the concepts it was instantiated for."""

    expr: Expr
    concepts: tuple[str, ...]


def _instantiate(groups: Sequence[str], intent: Intent, features: Sequence[str]) -> dict[str, list[Known]]:
    prices = [f for f in intent.fields if f != "$volume" or "volume" not in intent.concepts] or ["$close"]
    windows = intent.windows or DEFAULT_WINDOWS
    out: dict[str, list[Known]] = {}
    for g in groups:
        seen: dict[str, Known] = {}
        for tpl, p, w in itertools.product(TEMPLATES[g], prices, windows):
            try:
                e = parse(tpl.format(p=p, w=w), features=features)
            except (ExpressionError, ValueError):
                continue  # a window below the operator's minimum, a field this panel lacks
            seen.setdefault(e.key, Known(e, (g,)))
        out[g] = list(seen.values())
    return out


def _spread(items: list[Known], n: int) -> list[Known]:
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def fallback_pool(intent: Intent, features: Sequence[str], limit: int = MAX_POOL) -> list[Known]:
    """Known formulas that satisfy ``intent``'s relevance rule (at most ``limit``, spread over templates,
    fields and windows). A request naming nothing gets a small general set (every concept, 20 days)."""
    if not intent.named:
        general = Intent(intent.text, windows=(20,))
        pool = _instantiate([g for g in TEMPLATES if g != "field"], general, features)
        return _spread([k for ks in pool.values() for k in ks], limit)
    groups = list(intent.concepts) or ["field"]
    by_group = _instantiate(groups, intent, features)
    singles = [k for ks in by_group.values() for k in ks if not check_relevance(k.expr, intent)]
    if singles:
        return _spread(singles, limit)
    combos: list[Known] = []
    if "field" not in groups and any(not any(f in k.expr.features for ks in by_group.values() for k in ks)
                                     for f in intent.fields):
        by_group.update(_instantiate(["field"], intent, features))  # a named field no concept template uses
    lists = [ks for ks in by_group.values() if ks]
    for picks in itertools.product(*[ks[:4] for ks in lists]):
        tags = tuple(t for k in picks for t in k.concepts)
        texts = [k.expr.infix for k in picks]
        for text in (_fold("Mul", texts), _fold("Add", [f"CSRank({t})" for t in texts])):
            try:
                e = parse(text, features=features)
            except ExpressionError:
                continue  # deeper or longer than the language allows
            if not check_relevance(e, intent):
                combos.append(Known(e, tags))
        if len(combos) >= 4 * limit:
            break
    return _spread(combos, limit)


def _fold(op: str, parts: list[str]) -> str:
    out = parts[0]
    for p in parts[1:]:
        out = f"{op}({out}, {p})"
    return out


def examples(intent: Intent, features: Sequence[str], n: int = 4) -> list[dict[str, str]]:
    """A few built-in formulas on the request's topic, as prompt examples ``{idea, formula}``."""
    pool = fallback_pool(intent, features, limit=max(n, 1) * 3)
    picked = _spread(pool, n)
    return [{"idea": ", ".join(k.concepts) or "general", "formula": k.expr.infix} for k in picked]
