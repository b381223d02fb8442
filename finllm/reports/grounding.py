"""Check every number in an LLM narrative against the run's facts; remove or flag the unsupported ones.

A narrative number is *supported* when some number in the facts, shown to the narrative's precision,
equals it: ``0.052`` is supported by a fact ``0.05213``; ``5.2%`` by ``0.0521`` (a fraction) or by ``5.2``
(already a percentage); ``-0.03`` and ``3%`` ("fell by 3%") by ``-0.0300`` (sign is not checked: prose
often states magnitudes). ISO dates (``2019-01-02``) must appear verbatim in the facts. Numbers inside an
identifier (``Recall@100``, ``f1``, ``$close``) are part of a name, not a claim, and are not checked;
numbers anywhere in the facts (values, keys, formula strings) count as supported.

Not checked: numbers written as words ("twelve"), and derived numbers that are not in the facts (put such
comparisons into the facts first, as :mod:`finllm.reports.facts` does for pool vs baselines).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

_DATE = re.compile(r"(?<!\d)\d{4}-\d{2}-\d{2}(?!\d)")
# A number in prose: optional sign, digits with optional thousands commas, optional decimals, optional %.
# Not preceded by a letter/digit/_/$/@/. (identifiers, "Recall@100", decimals' tails), not followed by a
# letter/digit/_ (so "f1", "3x" ... are names or units we do not try to check).
_NUMBER = re.compile(
    r"(?<![\w$@.])(?P<sign>[-+\u2212])?(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?P<pct>\s?%)?(?![\w])"
)
# A number inside a fact's text, by the same word-boundary rule: digits inside an identifier (a run's
# UUID "9c99ab...", "auprc@100") are not facts, or an invented "99%" would be grounded by a run id.
_FACT_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\w)")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'*`\-\u2022])|\n+")


@dataclass(frozen=True)
class NumberClaim:
    """One number found in the narrative: its text, value and where it is."""

    text: str
    value: float
    decimals: int
    percent: bool
    start: int
    end: int


@dataclass
class GroundingReport:
    """Result of checking a narrative: the cleaned text and which numbers were (un)supported."""

    original: str
    text: str
    supported: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    removed_sentences: list[str] = field(default_factory=list)
    policy: str = "remove"

    @property
    def ok(self) -> bool:
        return not self.unsupported

    def to_dict(self) -> dict[str, Any]:
        return {"supported": self.supported, "unsupported": self.unsupported,
                "removed_sentences": self.removed_sentences, "policy": self.policy}


def fact_numbers(facts: Any) -> tuple[set[float], set[str]]:
    """All numbers (as floats) and all strings (for dates) anywhere in a JSON-like fact tree."""
    nums: set[float] = set()
    strings: set[str] = set()

    def walk(x: Any) -> None:
        if isinstance(x, bool) or x is None:
            return
        if isinstance(x, (int, float)):
            if math.isfinite(float(x)):
                nums.add(float(x))
        elif isinstance(x, str):
            strings.add(x)
            nums.update(float(m) for m in _FACT_NUMBER.findall(_DATE.sub(" ", x)))  # dates: see find_dates
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(str(k))
                if not (str(k) == "id" or str(k).endswith("_id")):  # identifiers carry no facts
                    walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(facts)
    return nums, strings


def find_numbers(text: str) -> list[NumberClaim]:
    """Numbers stated in ``text`` (dates excluded: see :func:`find_dates`)."""
    masked = _DATE.sub(lambda m: " " * len(m.group()), text)
    out = []
    for m in _NUMBER.finditer(masked):
        raw = m.group("num").replace(",", "")
        try:
            val = Decimal(raw)
        except InvalidOperation:  # pragma: no cover - the regex only matches decimals
            continue
        if m.group("sign") in ("-", "\u2212"):
            val = -val
        decimals = len(raw.split(".")[1]) if "." in raw else 0
        out.append(NumberClaim(m.group().strip(), float(val), decimals, bool(m.group("pct")), m.start(), m.end()))
    return out


def find_dates(text: str) -> list[str]:
    return _DATE.findall(text)


def _matches(value: float, decimals: int, fact: float) -> bool:
    tol = 0.5 * 10.0 ** (-decimals) + 1e-9 * max(1.0, abs(value))
    return abs(abs(fact) - abs(value)) <= tol


def is_supported(claim: NumberClaim, nums: set[float]) -> bool:
    """True if some fact, shown to the claim's precision (or as a percentage), equals the claim."""
    for f in nums:
        if _matches(claim.value, claim.decimals, f):
            return True
        if claim.percent and _matches(claim.value, claim.decimals, f * 100.0):
            return True
    return False


def _sentences(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for m in _SENTENCE.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def check_numbers(text: str, facts: Any, policy: Literal["remove", "flag"] = "remove") -> GroundingReport:
    """Check every number and date of ``text`` against ``facts``.

    policy ``remove``: drop each sentence that states an unsupported number (a sentence built on a wrong
    number misleads even if the rest is right); ``flag``: keep the text, mark each unsupported number
    ``[unverified: X]``. Either way ``report.unsupported`` lists them.
    """
    nums, strings = fact_numbers(facts)
    joined = "\n".join(strings)
    bad_spans: list[tuple[int, int, str]] = []
    supported: list[str] = []
    for claim in find_numbers(text):
        if is_supported(claim, nums):
            supported.append(claim.text)
        else:
            bad_spans.append((claim.start, claim.end, claim.text))
    for m in _DATE.finditer(text):
        if m.group() in joined:
            supported.append(m.group())
        else:
            bad_spans.append((m.start(), m.end(), m.group()))
    bad_spans.sort()
    report = GroundingReport(original=text, text=text, supported=supported,
                             unsupported=[b[2] for b in bad_spans], policy=policy)
    if not bad_spans:
        return report
    if policy == "flag":
        out, pos = [], 0
        for a, b, t in bad_spans:
            lead = len(text[a:b]) - len(text[a:b].lstrip())
            out.append(text[pos:a + lead])
            out.append(f"[unverified: {t}]")
            pos = b
        out.append(text[pos:])
        report.text = "".join(out)
        return report
    keep = []
    for a, b in _sentences(text):
        if any(a <= s < b for s, _, _ in bad_spans):
            report.removed_sentences.append(text[a:b].strip())
        else:
            keep.append(text[a:b].strip())
    report.text = " ".join(keep)
    return report
