"""What a factor request names (fields, windows, concepts) and whether a formula uses it.

:func:`read_intent` reads an analyst's sentence with fixed word lists (no LLM): the fields it names
("volume", "the high"), the windows ("20-day", "weekly" = 5, "monthly" = 20, "quarterly" = 60,
"one year" = 252 trading days) and the concepts ("reversal", "volatility", ...). The **relevance rule**
(:func:`check_relevance`): a formula is relevant when it uses every field named, at least one of the
windows named (as a window argument), and satisfies every concept named (each concept is a set of
operators or fields of which the formula must use one, see :data:`CONCEPTS`). A request that names
nothing is satisfied by any formula. The same rule ranks library factors for retrieval
(:func:`similarity`) and keeps the built-in fallback pool on topic (:mod:`factors.request_pool`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from factors.expr import Expr, Node
from factors.ops import MAX_WINDOW


@dataclass(frozen=True)
class Concept:
    """``ops``: the formula must use one of them (empty: no operator needed); ``fields``: must use all;
    ``any_field``: must use at least one of them."""

    name: str
    words: tuple[str, ...]  # regexes, matched case-insensitively on word boundaries
    ops: frozenset[str] = frozenset()
    fields: frozenset[str] = frozenset()
    any_field: frozenset[str] = frozenset()


_CHANGE = frozenset({"Delta", "Ref", "Slope", "Rank", "Mean", "EMA", "WMA"})
PRICES = frozenset({"$close", "$open", "$high", "$low", "$vwap"})
CONCEPTS: tuple[Concept, ...] = (
    Concept("reversal", (r"revers\w*", r"mean[- ]revert\w*", r"rebound\w*", r"bounce\w*", r"loser\w*",
                         r"oversold", r"overbought", r"snap\w* back", r"fall\w*", r"drop\w*", r"dip\w*"),
            _CHANGE, any_field=PRICES),
    Concept("momentum", (r"momentum", r"trend\w*", r"winner\w*", r"keep rising", r"persist\w*",
                         r"continu\w*", r"strength", r"rall\w+"), _CHANGE, any_field=PRICES),
    Concept("volatility", (r"volatil\w*", r"risk\w*", r"calm\w*", r"stable", r"noisy", r"variance",
                           r"standard deviation", r"choppy", r"erratic"), frozenset({"Std", "Var", "Mad"})),
    Concept("skewness", (r"skew\w*", r"lottery", r"crash\w*"), frozenset({"Skew"})),
    Concept("kurtosis", (r"kurtosis", r"fat tails?", r"tail risk"), frozenset({"Kurt"})),
    Concept("volume", (r"volume\w*", r"liquid\w*", r"turnover", r"heavy trading", r"traded", r"trading activity",
                       r"shares traded"), fields=frozenset({"$volume"})),
    Concept("range", (r"range", r"high[- ]low", r"spread", r"intraday swing\w*"),
            fields=frozenset({"$high", "$low"})),
    Concept("correlation", (r"correlat\w*", r"co-?mov\w*", r"mov\w* together", r"in sync"),
            frozenset({"Corr", "Cov"})),
    Concept("extremes", (r"breakout\w*", r"new highs?", r"new lows?", r"\d+[- ]day (?:high|low)s?",
                         r"(?:distance|far) from (?:the|its|their) \w*\s*(?:high|low)", r"peak\w*"),
            frozenset({"Max", "Min", "IdxMax", "IdxMin"})),
    Concept("gap", (r"gap\w*", r"overnight"), fields=frozenset({"$open", "$close"})),
    Concept("cross-section", (r"cross[- ]section\w*", r"relative to (?:peers|the market|other stocks)",
                              r"peers?", r"rank(?:ed|ing)? (?:across|against)"), frozenset({"CSRank", "CSZScore"})),
    Concept("moving average", (r"moving averages?", r"\bma\b", r"smoothed"), frozenset({"Mean", "EMA", "WMA"})),
    Concept("exponential average", (r"exponential\w*", r"\bema\b"), frozenset({"EMA"})),
    Concept("slope", (r"slope", r"regression"), frozenset({"Slope"})),
)

_FIELD_WORDS: dict[str, tuple[str, ...]] = {
    "$close": (r"clos\w*", r"price\w*", r"returns?"),
    "$open": (r"open\w*",),
    "$high": (r"highs", r"(?:the|daily|intraday|its|their|session) high", r"high price\w*"),
    "$low": (r"lows", r"(?:the|daily|intraday|its|their|session) low", r"low price\w*"),
    "$volume": (r"volume\w*", r"shares traded", r"turnover"),
    "$vwap": (r"vwap", r"volume[- ]weighted"),
}
_NUM_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "ten": 10, "twelve": 12,
              "twenty": 20, "thirty": 30, "sixty": 60, "a": 1}
_UNIT_DAYS = {"day": 1, "session": 1, "week": 5, "month": 20, "quarter": 60, "year": 252}
_NAMED_WINDOWS = ((r"weekly|a week|last week|past week", 5), (r"fortnight\w*|biweekly", 10),
                  (r"monthly|a month|last month|past month", 20), (r"quarterly|last quarter|a quarter", 60),
                  (r"yearly|annual\w*|a year|last year|past year", 252))
_WINDOW_RE = re.compile(r"\b(\d{1,3}|" + "|".join(_NUM_WORDS) + r")[- ]?(?:trading[- ])?"
                        r"(day|session|week|month|quarter|year)s?\b", re.I)


def _find(patterns: Iterable[str], text: str) -> bool:
    return any(re.search(rf"\b(?:{p})\b", text, re.I) for p in patterns)


@dataclass(frozen=True)
class Intent:
    """What a request names. Empty sets: the request leaves that open."""

    text: str
    fields: tuple[str, ...] = ()
    windows: tuple[int, ...] = ()
    concepts: tuple[str, ...] = ()

    @property
    def named(self) -> bool:
        return bool(self.fields or self.windows or self.concepts)

    def describe(self) -> str:
        parts = []
        if self.fields:
            parts.append("fields " + ", ".join(self.fields))
        if self.windows:
            parts.append("windows " + ", ".join(f"{w}d" for w in self.windows))
        if self.concepts:
            parts.append("concepts " + ", ".join(self.concepts))
        return "; ".join(parts) or "nothing specific"

    def to_dict(self) -> dict[str, list]:
        return {"fields": list(self.fields), "windows": list(self.windows), "concepts": list(self.concepts)}


def read_intent(text: str, features: Sequence[str] | None = None) -> Intent:
    """Fields, windows and concepts named in ``text`` (fields limited to the panel's ``features``)."""
    concepts = [c.name for c in CONCEPTS if _find(c.words, text)]
    fields = [f for f, words in _FIELD_WORDS.items() if _find(words, text)]
    for c in CONCEPTS:
        if c.name in concepts:
            fields += [f for f in sorted(c.fields) if f not in fields]
    if features is not None:
        fields = [f for f in fields if f in features]
    windows: list[int] = []
    for m in _WINDOW_RE.finditer(text):
        n = m.group(1).lower()
        w = (int(n) if n.isdigit() else _NUM_WORDS[n]) * _UNIT_DAYS[m.group(2).lower()]
        if 1 <= w <= MAX_WINDOW and w not in windows:
            windows.append(w)
    for pattern, w in _NAMED_WINDOWS:
        if _find([pattern], text) and w not in windows:
            windows.append(w)
    return Intent(text, tuple(fields), tuple(windows), tuple(concepts))


@dataclass
class Usage:
    """Operators, fields and window arguments a formula uses."""

    ops: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    windows: set[int] = field(default_factory=set)


def usage(expr: Expr) -> Usage:
    out = Usage()

    def walk(node: Node) -> None:
        if node.kind == "feature":
            out.fields.add(node.token)
        elif node.kind == "op":
            out.ops.add(node.token)
            for kind, child in zip(node.spec.arg_kinds, node.children):
                if kind == "window" and child.value is not None:
                    out.windows.add(int(abs(child.value)))
                else:
                    walk(child)

    walk(expr.root)
    return out


def check_relevance(expr: Expr, intent: Intent) -> list[str]:
    """What ``expr`` misses of ``intent`` (empty list: relevant). Each item is one short phrase."""
    u = usage(expr)
    missing = [f"field {f}" for f in intent.fields if f not in u.fields]
    if intent.windows and not u.windows & set(intent.windows):
        missing.append("window " + " or ".join(f"{w}d" for w in intent.windows))
    by_name = {c.name: c for c in CONCEPTS}
    for name in intent.concepts:
        c = by_name[name]
        if c.ops and not u.ops & c.ops:
            missing.append(f"{name} (one of {', '.join(sorted(c.ops))})")
        if not c.fields <= u.fields:
            missing.append(f"{name} ({', '.join(sorted(c.fields - u.fields))})")
        if c.any_field and not c.any_field & u.fields:
            missing.append(f"{name} (a price field)")
    return missing


def similarity(expr: Expr, intent: Intent) -> float:
    """Share of the intent's parts the formula covers (1.0 = relevant; a request naming nothing: 0)."""
    parts = len(intent.fields) + (1 if intent.windows else 0) + len(intent.concepts)
    return 0.0 if parts == 0 else max(0.0, 1.0 - len(check_relevance(expr, intent)) / parts)
