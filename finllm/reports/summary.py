"""Grounded run summaries: the LLM writes a narrative from the run's facts; every number is checked.

``summarize_run`` builds the facts (:mod:`finllm.reports.facts`), asks the gateway for a short narrative
(template ``run_summary``), checks every number and date in it against the facts
(:mod:`finllm.reports.grounding`), removes the sentences that state unsupported numbers, notes how many
were removed, and stores the result with the run (``store.set_summary``). If the LLM fails, nothing is
stored and the failure is returned: a report then shows "no narrative" and why, never an invented one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from finllm.reports.facts import build_facts, round_sig
from finllm.reports.grounding import GroundingReport, check_numbers
from finllm.store import Store

TEMPLATE = "run_summary"
AUDIENCE = {"factor_mine": "portfolio managers and quantitative analysts",
            "fraud_train": "risk officers and fraud analysts"}
PROMPT_POOL, PROMPT_ALERTS, PROMPT_COMPARISONS = 3, 3, 4
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


PROMPT_CONFIG = ("data", "dataset", "model", "method", "setting", "horizon", "cost_bps", "seed", "seeds",
                 "splits", "pool_size", "llm_budget")
PROMPT_METRICS = ("ic", "rank_ic", "sharpe", "ann_return",
                  "auroc", "auprc", "rec@k", "recall_at_k", "macro_f1")
PROMPT_SIG = 3  # significant digits in the prompt: a rounded fact is still a supported number


def _metric_subset(per_split: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {sp: {k: v for k, v in blk.items() if k in PROMPT_METRICS or k.removesuffix("_std") in PROMPT_METRICS[4:]}
            for sp, blk in per_split.items()}


def prompt_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """A smaller copy of the facts for the prompt (small local models have a 2k-token context): key
    settings, headline metrics, top pool members, top alerts with short explanations, the main
    comparisons. Numbers are only ever dropped, never changed, so checking against the full facts
    stays sound."""
    out = dict(facts)
    out["run"] = {k: v for k, v in facts["run"].items() if k in ("kind", "name", "status", "error")}
    out["config"] = {k: v for k, v in facts.get("config", {}).items() if k in PROMPT_CONFIG and v is not None}
    for key in ("pool_metrics", "metrics"):
        if key in out:
            out[key] = _metric_subset(out[key])
    if "baselines" in out:
        out["baselines"] = {n: {sp: blk for sp, blk in _metric_subset(b).items() if sp in ("valid", "test")}
                            for n, b in out["baselines"].items()}
    if "pool" in out:
        out["pool"] = [{"rank": m["rank"], "formula": m["formula"], "weight": m["weight"],
                        "metrics": {sp: {k: v for k, v in blk.items() if k in ("ic", "rank_ic")}
                                    for sp, blk in m.get("metrics", {}).items() if sp == "test"}}
                       for m in out["pool"][:PROMPT_POOL]]
    if "alerts" in out:
        alerts = dict(out["alerts"])
        alerts["top"] = [{**a, "explanation": (a.get("explanation") or "")[:160]}
                         for a in alerts.get("top", [])[:PROMPT_ALERTS]]
        out["alerts"] = alerts
    if "comparisons" in out:
        rows = [c for c in out["comparisons"] if c["metric"] in PROMPT_METRICS and c["split"] in ("valid", "test")]
        rows.sort(key=lambda c: c.get("split") != "test")
        out["comparisons"] = rows[:PROMPT_COMPARISONS]
    out.pop("other_metrics", None)
    return _round_tree(out, PROMPT_SIG)


def _round_tree(x: Any, sig: int) -> Any:
    if isinstance(x, dict):
        return {k: _round_tree(v, sig) for k, v in x.items()}
    if isinstance(x, list):
        return [_round_tree(v, sig) for v in x]
    return round_sig(x, sig) if isinstance(x, float) else x


def grounded_summary(facts: dict[str, Any], gateway: Any, *, policy: Literal["remove", "flag"] = "remove",
                     max_tokens: int = 320) -> tuple[str | None, GroundingReport | None, str | None]:
    """(checked narrative, grounding report, failure message) for a facts dict."""
    kind = facts.get("run", {}).get("kind", "run")
    res = gateway.structured(TEMPLATE, {"kind": kind, "audience": AUDIENCE.get(kind, "analysts"),
                                        "facts": json.dumps(prompt_facts(facts), separators=(",", ":"))},
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
