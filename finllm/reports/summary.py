"""Run narratives that cannot state a false number: cited sentences, every number rendered by code.

The LLM sees the run's flat facts (:func:`finllm.reports.facts.narrative_facts`, ``key = value``) and
answers with structured output (template ``run_summary``, schema :func:`narrative_schema`): a list of
sentences, each citing fact keys (a JSON-schema enum, so a schema-constrained endpoint cannot cite an
unknown key) and holding ``{key}`` placeholders where a number goes. Code then renders and checks each
sentence (:func:`finllm.grounding.check.check_sentence`): one whose own words carry a number, a date
or a data-use claim that no cited fact backs, or that cites an unknown key, is dropped. When nothing
survives (the shipped 135M model, usually) or the LLM fails, the narrative is a deterministic summary
built by code from the same facts, and says so (``source = "fallback"`` plus a ``note``).

What is stored with the run (``Run.summary``, JSON, :data:`FORMAT`) is the LLM's sentence *templates*
and citations, never rendered numbers: each report renders them again from the facts of that moment,
so a number can only ever come from the facts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from finllm.reports.facts import FactValue, build_facts, fmt_fact, narrative_facts, split_roles
from finllm.grounding.check import SentenceCheck, check_sentence, unbacked_numbers
from finllm.grounding.cited import MAX_CITED, MAX_SENTENCES, MAX_TEXT, narrative_schema, salvage  # noqa: F401
from finllm.store import Store

if TYPE_CHECKING:
    from finllm.llm.client import Gateway

TEMPLATE = "run_summary"
FORMAT = "finllm-narrative/1"
AUDIENCE = {"factor_mine": "portfolio managers and quantitative analysts",
            "fraud_train": "risk officers and fraud analysts"}
MAX_TOKENS = 320
_PROMPT_ORDER = [re.compile(p) for p in (
    r"(pool_size|model|dataset|method|market|horizon|setting|threshold)$", r"test_(ic|rank_ic|auroc|auprc|rec|recall)",
    r"vs_.*_test_", r"test_", r"valid_(ic|rank_ic|auroc|auprc)", r".*_name$", r"alerts_", r"factor1_")]
MAX_PROMPT_FACTS = 32
Source = Literal["llm", "fallback"]


@dataclass
class Narrative:
    """A checked narrative: kept sentences (rendered), dropped ones (with reasons), who wrote it and why."""

    source: Source
    sentences: list[SentenceCheck]
    dropped: list[SentenceCheck] = field(default_factory=list)
    note: str = ""
    model: str | None = None

    @property
    def text(self) -> str:
        return " ".join(s.text or "" for s in self.sentences)

    def audit(self, facts: dict[str, FactValue]) -> int:
        """How many shown sentences state a number their cited facts do not carry (0 by construction)."""
        return len(unbacked_numbers(self.to_dict()["sentences"], facts))

    def to_dict(self) -> dict[str, Any]:
        """What ``finllm report --json`` prints under ``narrative``."""
        return {"source": self.source, "model": self.model, "note": self.note,
                "sentences": [{"text": s.text, "facts": s.facts, "template": s.template} for s in self.sentences],
                "dropped": [{"template": s.template, "facts": s.facts, "reason": s.reason} for s in self.dropped]}


@dataclass
class SummaryResult:
    """What :func:`summarize_run` did: the narrative, whether it was stored, why the LLM gave none."""

    run_id: str
    narrative: Narrative
    stored: bool
    failure: str | None = None
    facts: dict[str, FactValue] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when at least one LLM sentence survived the checks."""
        return self.narrative.source == "llm"


# ---- the LLM's side -----------------------------------------------------------------------------------
def prompt_keys(facts: dict[str, FactValue]) -> list[str]:
    """The fact keys shown to the LLM (small local models have a 2k-token context): at most
    :data:`MAX_PROMPT_FACTS`, in the facts' own order (headline metrics first)."""
    uses = [k for k in facts if k.endswith(("_use", "_period"))]  # data use is always shown
    rest = sorted((k for k in facts if k not in uses), key=_prompt_rank)
    return rest[:MAX_PROMPT_FACTS - len(uses)] + uses


def _prompt_rank(key: str) -> int:
    """Headline first: what the run is, its test figures, the test differences to baselines, validation."""
    for rank, pattern in enumerate(_PROMPT_ORDER):
        if pattern.match(key):
            return rank
    return len(_PROMPT_ORDER)


def llm_sentences(facts: dict[str, FactValue], kind: str, gateway: Gateway,
                  max_tokens: int = MAX_TOKENS) -> tuple[list[tuple[str, list[str]]] | None, str | None]:
    """(raw sentences [(template, cited keys)], None) from the LLM, or (None, why it gave none).

    One request, no repair round: a repair re-sends the conversation (a 2k-token context overflows) and
    every sentence is checked anyway; from a reply cut off at ``max_tokens`` the complete sentences are kept."""
    keys = prompt_keys(facts)
    lines = "\n".join(f"{k} = {fmt_fact(k, facts[k])}" for k in keys)
    res = gateway.structured(TEMPLATE, {"kind": kind, "audience": AUDIENCE.get(kind, "analysts"), "facts": lines},
                             narrative_schema(keys), temperature=0.0, max_tokens=max_tokens, max_repairs=0)
    if res:
        return [(s.text, list(s.facts)) for s in res.value.sentences[:MAX_SENTENCES]], None
    if res.kind == "invalid" and res.raw:
        return salvage(res.raw), None
    return None, f"the LLM gave no narrative ({res.kind}: {res.message})"


# ---- code's side --------------------------------------------------------------------------------------
def _sentence(template: str, facts: dict[str, FactValue], *, optional: tuple[str, ...] = ()) -> tuple[str, list[str]] | None:
    """A fallback sentence when every placeholder it needs is in the facts; ``optional`` parts
    (``" and a test RankIC of {test_rank_ic}"``) are removed when their keys are missing."""
    from finllm.grounding.check import PLACEHOLDER

    for part in optional:
        if any(k not in facts for k in PLACEHOLDER.findall(part)):
            template = template.replace(part, "")
    keys = PLACEHOLDER.findall(template)
    return (template, keys) if keys and all(k in facts for k in keys) else None


def fallback_sentences(facts: dict[str, FactValue], kind: str) -> list[tuple[str, list[str]]]:
    """The deterministic summary: fixed sentences over whichever facts the run has."""
    out: list[tuple[str, list[str]] | None] = []
    if kind == "factor_mine":
        out.append(_sentence("The {pool_size}-factor pool ({method}, {market}) has a test IC of {test_ic}"
                             " and a test RankIC of {test_rank_ic}.", facts,
                             optional=(" ({method}, {market})", " and a test RankIC of {test_rank_ic}")))
        out.append(_sentence("On the validation period its IC was {valid_ic} and its RankIC {valid_rank_ic}.", facts,
                             optional=(" and its RankIC {valid_rank_ic}",)))
        out.append(_sentence("On the training period its IC was {train_ic}.", facts))
        out.append(_sentence("With costs of {cost_bps} bps, the test long-short Sharpe ratio was {test_sharpe} and "
                             "the annual return {test_ann_return}.", facts,
                             optional=("With costs of {cost_bps} bps, the", " and the annual return {test_ann_return}")))
        metric = "rank_ic" if "test_rank_ic" in facts else "ic"
        label = {"rank_ic": "RankIC", "ic": "IC"}[metric]
        for key in [k for k in facts if k.endswith("_name")][:2]:
            b = key.removesuffix("_name")
            out.append(_sentence(f"The {{{key}}} baseline has a test {label} of {{{b}_test_{metric}}}; the pool's "
                                 f"differs by {{vs_{b}_test_{metric}}}.", facts))
        out.append(_sentence("The first pool member, {factor1_formula}, has weight {factor1_weight} and a test IC "
                             "of {factor1_test_ic}.", facts, optional=(" and a test IC of {factor1_test_ic}",)))
    elif kind == "fraud_train":
        out.append(_sentence("The {model} detector on {dataset} ({setting} labels, seeds: {seeds}) has a test AUROC "
                             "of {test_auroc} and a test AUPRC of {test_auprc}.", facts,
                             optional=(" on {dataset}", " ({setting} labels, seeds: {seeds})",
                                       " and a test AUPRC of {test_auprc}")))
        rec = next((k for k in ("test_rec_at_k", "test_recall_at_k") if k in facts), "test_rec_at_k")
        out.append(_sentence(f"Its test recall among the top k is {{{rec}}}.", facts))
        out.append(_sentence("On the validation split its AUROC was {valid_auroc} and its AUPRC {valid_auprc}.",
                             facts, optional=(" and its AUPRC {valid_auprc}",)))
        out.append(_sentence("Nodes scoring at least {threshold} are flagged.", facts))
        for key in [k for k in facts if k.endswith("_name")][:2]:
            b = key.removesuffix("_name")
            out.append(_sentence(f"The {{{key}}} baseline has a test AUROC of {{{b}_test_auroc}} and an AUPRC of "
                                 f"{{{b}_test_auprc}}; the detector differs by {{vs_{b}_test_auroc}} AUROC and "
                                 f"{{vs_{b}_test_auprc}} AUPRC.", facts,
                                 optional=(f" and an AUPRC of {{{b}_test_auprc}}", f" and {{vs_{b}_test_auprc}} AUPRC")))
        out.append(_sentence("The test split has {test_n} labelled nodes, {test_n_fraud} of them fraudulent "
                             "({test_fraud_rate}).", facts))
        out.append(_sentence("The latest scoring batch ({alerts_batch}) kept {alerts_count} alerts, "
                             "{alerts_above_threshold} of them above the threshold.", facts))
    for split, name in (("train", "training"), ("valid", "validation"), ("test", "test")):
        out.append(_sentence(f"Use of the {name} {'period' if kind == 'factor_mine' else 'split'} "
                             f"({{{split}_period}}): {{{split}_use}}.", facts, optional=(f" ({{{split}_period}})",)))
    return [s for s in out if s is not None]


def check_sentences(raw: list[tuple[str, list[str]]], facts: dict[str, FactValue],
                    kind: str, *, from_llm: bool = True) -> tuple[list[SentenceCheck], list[SentenceCheck]]:
    """(kept, dropped) after :func:`check_sentence` on each raw sentence; duplicates dropped."""
    kept, dropped, seen = [], [], set()
    for template, cited in raw:
        c = check_sentence(template, cited, facts, split_roles=split_roles(kind, facts))
        if c.ok and from_llm and len(template) >= MAX_TEXT:  # the schema's bound ended it, likely mid-sentence
            c.text, c.reason = None, f"cut off at the {MAX_TEXT}-character limit"
        if c.ok and c.text in seen:
            c.text, c.reason = None, "repeats an earlier sentence"
        (kept if c.ok else dropped).append(c)
        if c.ok:
            seen.add(c.text)
    return kept, dropped


def build_narrative(facts: dict[str, FactValue], kind: str, raw: list[tuple[str, list[str]]] | None, *,
                    why_not: str = "", model: str | None = None) -> Narrative:
    """The narrative of ``raw`` LLM sentences when any survives, else the deterministic summary that says why."""
    kept, dropped = check_sentences(raw or [], facts, kind)
    if kept:
        note = (f"Written by an LLM ({model or 'unknown model'}) as sentences citing the run's facts; every "
                "number was inserted by code from the cited facts"
                + (f"; {len(dropped)} sentence(s) failed the checks and were dropped" if dropped else "") + ".")
        return Narrative("llm", kept, dropped, note, model)
    if raw is not None:
        why_not = (f"none of the LLM's {len(raw)} sentence(s) passed the checks" if raw
                   else "the LLM wrote no sentence") + (f" ({model})" if model else "")
    fb, _ = check_sentences(fallback_sentences(facts, kind), facts, kind, from_llm=False)
    note = f"Deterministic summary written by code from the run's facts: {why_not or 'no LLM narrative'}."
    return Narrative("fallback", fb, dropped, note, model)


def narrative_from_stored(stored: str | None, facts: dict[str, FactValue], kind: str, *,
                          missing: str = "no summary stored for this run") -> Narrative:
    """Render a stored narrative (:data:`FORMAT`) with today's facts; anything else gives the fallback."""
    doc = parse_stored(stored)
    if doc is None:
        return build_narrative(facts, kind, None, why_not=missing)
    rows = doc.get("sentences") if doc.get("source") == "llm" else doc.get("raw")
    raw = [(str(t), [str(k) for k in cited]) for t, cited in
           ((r["template"], r["facts"]) if isinstance(r, dict) else r for r in rows or [])]
    return build_narrative(facts, kind, raw, why_not=missing, model=doc.get("model"))


def parse_stored(stored: str | None) -> dict[str, Any] | None:
    """The stored narrative document, or None (nothing stored, or a free-text narrative of an older
    version, which was never checked by these rules and is therefore not shown)."""
    if not stored:
        return None
    try:
        doc = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    return doc


def _stored_doc(n: Narrative, raw: list[tuple[str, list[str]]]) -> str:
    sentences = [{"template": s.template, "facts": s.facts} for s in n.sentences] if n.source == "llm" else []
    return json.dumps({"format": FORMAT, "source": n.source, "model": n.model, "sentences": sentences,
                       "raw": [[t, k] for t, k in raw] if n.source == "fallback" else None})


def summarize_run(run_id: str, store: Store, gateway: Gateway | None = None, *, max_tokens: int = MAX_TOKENS,
                  progress: Callable[[str], None] | None = None) -> SummaryResult:
    """Ask the LLM for the narrative of run ``run_id``, check it, and store it with the run.

    Stored (``store.set_summary``) when the LLM answered, whether or not a sentence survived (the
    outcome is a property of that model and those facts); not stored when the LLM failed (endpoint
    down, budget), so a later report asks again."""
    full = build_facts(run_id, store)
    kind = full["run"]["kind"]
    facts = narrative_facts(full)
    if gateway is None:
        from finllm.llm import get_gateway

        gateway = get_gateway(run_id=run_id, store=store)
    if progress:
        progress("asking the LLM for the narrative ...")
    raw, failure = llm_sentences(facts, kind, gateway, max_tokens=max_tokens)
    model = getattr(gateway, "model", None)
    n = build_narrative(facts, kind, raw, why_not=failure or "", model=model)
    if raw is not None:
        store.set_summary(run_id, _stored_doc(n, raw))
    return SummaryResult(run_id, n, raw is not None, failure, facts)
