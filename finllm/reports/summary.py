"""Grounded run summaries: the LLM writes a narrative from the run's facts; every number is checked.

``summarize_run`` builds the facts (:mod:`finllm.reports.facts`), asks the gateway for a short narrative
(template ``run_summary``), checks every number and date in it against the facts
(:mod:`finllm.reports.grounding`), removes the sentences that state unsupported numbers, notes how many
were removed, and stores the result with the run (``store.set_summary``). If the LLM fails, nothing is
stored and the failure is returned: a report then shows "no narrative" and why, never an invented one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from finllm.reports.facts import build_facts
from finllm.reports.grounding import GroundingReport, check_numbers
from finllm.store import Store

TEMPLATE = "run_summary"
AUDIENCE = {"factor_mine": "portfolio managers and quantitative analysts",
            "fraud_train": "risk officers and fraud analysts"}
PROMPT_POOL, PROMPT_ALERTS, PROMPT_COMPARISONS = 5, 3, 12
MAX_CHARS = 1500


class RunSummary(BaseModel):
    """What the LLM must return (validated; its text is data, never executed)."""

    # No min/max length: llama.cpp compiles them into grammar repetitions that exceed its limits
    # (the embedded server fails to build the grammar); length is enforced after validation.
    summary: str = Field(description="3 to 6 plain sentences")


@dataclass
class SummaryResult:
    """The stored narrative (``text``), how it was checked, or why there is none (``failure``)."""

    run_id: str
    text: str | None
    grounding: GroundingReport | None = None
    failure: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.text is not None

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "summary": self.text, "failure": self.failure,
                "grounding": self.grounding.to_dict() if self.grounding else None}


def prompt_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """A smaller copy of the facts for the prompt (small local models have a 2k-token context):
    top pool members, top alerts with short explanations, the main comparisons. Numbers are only
    ever dropped, never changed, so checking against the full facts stays sound."""
    out = dict(facts)
    if "pool" in out:
        out["pool"] = [{k: v for k, v in m.items() if k != "source"} for m in out["pool"][:PROMPT_POOL]]
    if "alerts" in out:
        alerts = dict(out["alerts"])
        alerts["top"] = [{**a, "explanation": (a.get("explanation") or "")[:160]}
                         for a in alerts.get("top", [])[:PROMPT_ALERTS]]
        out["alerts"] = alerts
    if "comparisons" in out:
        test_first = sorted(out["comparisons"], key=lambda c: c.get("split") != "test")
        out["comparisons"] = test_first[:PROMPT_COMPARISONS]
    out.pop("other_metrics", None)
    return out


def grounded_summary(facts: dict[str, Any], gateway: Any, *, policy: Literal["remove", "flag"] = "remove",
                     max_tokens: int = 320) -> tuple[str | None, GroundingReport | None, str | None]:
    """(checked narrative, grounding report, failure message) for a facts dict."""
    kind = facts.get("run", {}).get("kind", "run")
    res = gateway.structured(TEMPLATE, {"kind": kind, "audience": AUDIENCE.get(kind, "analysts"),
                                        "facts": prompt_facts(facts)},
                             RunSummary, temperature=0.0, max_tokens=max_tokens)
    if not res:
        return None, None, f"LLM failed ({res.kind}): {res.message}"
    raw = res.value.summary.strip()[:MAX_CHARS]
    if len(raw) < 20:
        return None, None, f"LLM narrative too short to use: {raw!r}"
    report = check_numbers(raw, facts, policy=policy)
    text = report.text.strip()
    if report.unsupported:
        note = (f"[{len(report.unsupported)} number(s) not found in the run's facts were "
                f"{'removed' if policy == 'remove' else 'flagged'}: {', '.join(report.unsupported)}]")
        text = f"{text}\n\n{note}".strip()
    if not report.text.strip():
        return None, report, ("LLM narrative rejected: every sentence stated numbers not in the facts "
                              f"({', '.join(report.unsupported)})")
    return text, report, None


def summarize_run(run_id: str, store: Store, gateway: Any = None, *,
                  policy: Literal["remove", "flag"] = "remove") -> SummaryResult:
    """Write, check and store (``store.set_summary``) the narrative of run ``run_id``."""
    facts = build_facts(run_id, store)
    if gateway is None:
        from finllm.llm import get_gateway

        gateway = get_gateway(run_id=run_id, store=store)
    text, report, failure = grounded_summary(facts, gateway, policy=policy)
    if text is not None:
        store.set_summary(run_id, text)
    return SummaryResult(run_id, text, report, failure, facts)
