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
from collections.abc import Callable
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


# ---- cited sentences: the narrative's unit of checking ---------------------------------------------
# A sentence is {"template": text with {fact_key} placeholders, "facts": [cited keys]}. Code renders every
# placeholder from the facts; the sentence's *own words* (the template without placeholders) may state a
# number, a date or a data-use claim only where a cited fact backs it. See :func:`check_sentence`.
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.@-]+)\}")
MAX_SENTENCE_CHARS = 400
_WORD = re.compile(r"[^\W\d_]{2,}")
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "million": 1e6, "billion": 1e9, "dozen": 12, "half": 0.5, "twice": 2, "double": 2, "doubled": 2,
    "triple": 3, "tripled": 3, "quarter": 0.25, "percent": None, "percentage": None,
}
# "one" as a pronoun ("the best one", "one of the") is not a count
_NUMBER_WORD = re.compile(r"(?<!\bthe )(?<!\bthis )(?<!\bthat )(?<!\beach )(?<!\bany )\b("
                          + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")\b(?! of\b)", re.I)
_MONTHS = re.compile(r"\b(january|february|march|april|june|july|august|september|october|november|december|"
                     r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\b\.?", re.I)
_RELATIVE_TIME = re.compile(r"\b(yesterday|today|tomorrow|last (?:year|month|week|quarter)|this (?:year|month|"
                            r"week|quarter)|next (?:year|month|week|quarter)|q[1-4])\b", re.I)
# Data use: which split (train / valid / test) and what it was used for (fit / select / evaluate / leak).
SPLIT_WORDS = {"train": r"\btrain(?:ing)?\b|\bin[- ]sample\b",
               "valid": r"\bvalid(?:ation)?\b|\bdev(?:elopment)?\s+(?:set|split|period)\b",
               "test": r"\btest(?:ing|ed)?\b|\bhold[- ]?out\b|\bheld[- ]out\b|\bout[- ]of[- ]sample\b"}
ROLE_WORDS = {
    "fit": r"\bfit(?:s|ted|ting)?\b|\btrained\b|\b(?:for|to|on|when) train(?:ing)?\b|\blearn\w*|\bestimat\w*"
           r"|\boptimi[sz]\w*|\bmined\b|\bmining\b|\bsearch(?:ed)?\b",
    "select": r"\btun(?:e|ed|ing)\b|\bselect\w*|\bchos\w*|\bchoos\w*|\bpick\w*|\bearly[- ]stop\w*"
              r"|\b(?:for|to) validat\w*|\bvalidated\b|\bcalibrat\w*",
    "evaluate": r"\bevaluat\w*|\bheld[- ]out\b|\bhold[- ]?out\b|\bunseen\b|\bout[- ]of[- ]sample\b"
                r"|\b(?:for|to) test(?:ing)?\b|\btested\b",
    "leak": r"\blook[- ]?ahead\b|\bleak\w*|\bfuture\b|\bpeek\w*|\bcontaminat\w*|\bsnoop\w*",
    "use": r"\bus(?:e|ed|es|ing)\b|\bsaw\b|\bseen\b|\bexposed\b|\bnever\b",
}
# Roles a ``<split>_use`` fact backs when the caller gives none (facts.SPLIT_USE gives them per run kind).
DEFAULT_SPLIT_ROLES = {"train": frozenset({"fit", "select", "use"}), "valid": frozenset({"select", "evaluate", "use"}),
                       "test": frozenset({"evaluate", "use"})}
_SPLIT_RE = {k: re.compile(v, re.I) for k, v in SPLIT_WORDS.items()}
_ROLE_RE = {k: re.compile(v, re.I) for k, v in ROLE_WORDS.items()}
_SPLIT_KEY = re.compile(r"(?:^|_)(train|valid|test)_")


# A comparison with a baseline ("beats the baseline", "below xgbgraph") must cite the vs_* differences
# it rests on, and their signs must agree with its direction.
_BETTER = re.compile(r"\b(better|beats?|outperform\w*|higher|above|exceed\w*|improv\w*|ahead|superior|stronger|"
                     r"wins?|surpass\w*)\b", re.I)
_WORSE = re.compile(r"\b(worse|below|lower|underperform\w*|trails?|behind|inferior|weaker|loses?|lost|falls? short)\b",
                    re.I)
_BASELINE = re.compile(r"\bbaselines?\b", re.I)


def _comparison_backed(words: str, cited: dict[str, Any], facts: dict[str, Any]) -> str | None:
    """None unless ``words`` compare with a baseline (by that word or by a baseline's name anywhere in the
    facts) without citing a ``vs_*`` difference, or in a direction the cited differences deny. Conservative:
    "xgbgraph trails the detector" reads as 'worse' and is dropped when the detector is ahead."""
    names = [str(v) for k, v in facts.items() if k.endswith("_name")
             and any(x.startswith(f"vs_{k.removesuffix('_name')}_") for x in facts)]
    if not (_BASELINE.search(words) or any(n and n.lower() in words.lower() for n in names)):
        return None
    better, worse = bool(_BETTER.search(words)), bool(_WORSE.search(words))
    if not (better or worse):
        return None
    diffs = [v for k, v in cited.items() if k.startswith("vs_") and isinstance(v, (int, float))]
    if not diffs:
        return "compares with a baseline without citing the difference (vs_*)"
    if better == worse or (better and min(diffs) <= 0) or (worse and max(diffs) >= 0):
        return "its comparison with the baseline disagrees with the sign of the cited difference"
    return None


@dataclass
class SentenceCheck:
    """One sentence after checking: ``text`` (rendered) and ``facts`` (keys cited), or ``reason`` it was dropped."""

    template: str
    facts: list[str]
    text: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.text is not None


def _cited_numbers(cited: dict[str, Any], fmt: Callable[[str, Any], str]) -> tuple[set[float], str]:
    nums, strings = fact_numbers(list(cited.values()))
    for k, v in cited.items():  # the rendered form too (a rate shown as 8.71%)
        shown = fmt(k, v)
        strings.add(shown)
        nums.update(c.value for c in find_numbers(shown) if not c.percent)
        nums.update(c.value / 100.0 for c in find_numbers(shown) if c.percent)
    return nums, "\n".join(strings)


def data_use_claims(words: str, keys: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(split, role) pairs a sentence may claim: every split it names (in its words or through a cited
    ``test_...`` key) x every role its words name. Conservative: "the test period was used for
    training" yields (test, fit). Look-ahead/leakage words yield ("any", "leak")."""
    roles = [r for r, rx in _ROLE_RE.items() if rx.search(words)]
    splits = [s for s, rx in _SPLIT_RE.items() if rx.search(words)]
    splits += [m.group(1) for k in keys for m in [_SPLIT_KEY.search(k)] if m and not k.endswith(("_use", "_period"))]
    pairs = [("any", "leak")] if "leak" in roles else []
    return pairs + [(s, r) for s in dict.fromkeys(splits) for r in roles if r != "leak"]


def _data_use_backed(words: str, keys: list[str], split_roles: dict[str, frozenset[str]]) -> str | None:
    """None when every data-use claim of ``words`` is backed by a cited ``<split>_use`` fact, else why not."""
    for split, role in data_use_claims(words, keys):
        if role == "leak":
            return "a claim about look-ahead or leakage: only code may state that"
        if f"{split}_use" not in keys:
            return f"a claim about how the {split} split was used, without citing {split}_use"
        if role not in split_roles.get(split, ()):
            return f"claims the {split} split was used to {role}, which {split}_use does not say"
    return None


def check_sentence(template: str, cited: list[str], facts: dict[str, Any], *,
                   fmt: Callable[[str, Any], str] | None = None,
                   split_roles: dict[str, frozenset[str]] | None = None) -> SentenceCheck:
    """Render and check one narrative sentence against the flat ``facts`` ({key: scalar}).

    Dropped (``reason`` set) when it cites an unknown key or none, has no placeholder (it would state no
    value of the run) or one it cannot fill, or when its own words carry a number, a date or a data-use claim that no cited fact backs.
    Placeholders count as citations. ``fmt(key, value)`` renders a value (default:
    :func:`finllm.grounding.facts.fmt_fact`); ``split_roles`` = what each ``<split>_use`` fact backs."""
    if fmt is None:
        from finllm.grounding.facts import fmt_fact as fmt
    template = " ".join(str(template).split())
    keys = list(dict.fromkeys([str(k) for k in cited] + PLACEHOLDER.findall(template)))
    out = SentenceCheck(template, keys)
    unknown = [k for k in keys if k not in facts]
    own = PLACEHOLDER.sub(" ", template)
    if unknown:
        out.reason = f"cites unknown fact(s) {', '.join(unknown[:3])}"
    elif not keys:
        out.reason = "cites no fact"
    elif "{" in own or "}" in own:
        out.reason = "a malformed placeholder"
    elif len(_WORD.findall(own)) < 3:
        out.reason = "not a sentence"
    elif not PLACEHOLDER.search(template):  # prose that states no value of the run is unchecked opinion
        out.reason = "states no fact (no {key} placeholder)"
    elif len(template) > MAX_SENTENCE_CHARS:
        out.reason = f"longer than {MAX_SENTENCE_CHARS} characters"
    if out.reason:
        return out
    sub = {k: facts[k] for k in keys}
    nums, strings = _cited_numbers(sub, fmt)
    bad = [c.text for c in find_numbers(own) if not is_supported(c, nums)]
    bad += [d for d in find_dates(own) if d not in strings]
    for m in _NUMBER_WORD.finditer(own):
        val = _NUMBER_WORDS[m.group(1).lower()]
        if val is None or not any(abs(val - f) < 1e-9 for f in nums):
            bad.append(m.group(1))
    bad += [m.group(0) for m in (*_MONTHS.finditer(own), *_RELATIVE_TIME.finditer(own))
            if m.group(0).lower().rstrip(".") not in strings.lower()]
    if bad:
        out.reason = f"its own words state {', '.join(bad[:3])}, which no cited fact backs"
        return out
    why = _data_use_backed(own, keys, split_roles or DEFAULT_SPLIT_ROLES) or _comparison_backed(own, sub, facts)
    if why:
        out.reason = why
        return out
    text = PLACEHOLDER.sub(lambda m: fmt(m.group(1), facts[m.group(1)]), template).strip()
    out.text = text if text[-1] in ".!?" else text + "."
    return out


def unbacked_numbers(sentences: list[dict[str, Any]], facts: dict[str, Any]) -> list[dict[str, Any]]:
    """The audit anyone can run on a report's ``--json``: each sentence (``text``, ``facts``) whose rendered
    text states a number or date that its cited facts do not carry. Returns [{text, numbers}]; [] = clean."""
    from finllm.grounding.facts import fmt_fact

    bad = []
    for s in sentences:
        cited = {k: facts[k] for k in s.get("facts", []) if k in facts}
        nums, strings = _cited_numbers(cited, fmt_fact)
        text = str(s.get("text", ""))
        wrong = [c.text for c in find_numbers(text) if not is_supported(c, nums)]
        wrong += [d for d in find_dates(text) if d not in strings]
        if wrong:
            bad.append({"text": text, "numbers": wrong})
    return bad
