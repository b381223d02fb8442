"""One self-contained HTML report per run: tables + embedded PNG figures + the grounded narrative.

``build_report(run_id, store, out_path)`` dispatches on the run kind:

* ``factor_mine``: pool table, pool vs the baselines fitted in the same run, and the tear-sheet panels read
  from the run's stored tear sheet (:mod:`finllm.reports.factor_report`; computed by
  :func:`factors.tearsheet.tearsheet`, never here).
* ``fraud_train``: per-seed and mean metrics vs baselines, ROC / PR with a baseline curve, threshold sweep,
  confusion matrix, calibration, score distributions, top alerts with their known labels
  (:mod:`finllm.reports.fraud_report`).

Use :func:`finllm.app.report.build_report` (it stores a missing tear sheet first); this module renders.

Anything a run did not record is named in the report ("not available: ...") instead of failing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from finllm.errors import DataError
from finllm.reports.facts import build_facts, narrative_facts
from finllm.reports.factor_report import factor_sections
from finllm.reports.fraud_report import fraud_sections
from finllm.grounding.numbers import fmt_number
from finllm.reports.summary import Narrative, narrative_from_stored, parse_stored, summarize_run
from finllm.reports.tables import table
from finllm.store import Store

if TYPE_CHECKING:
    from finllm.llm.client import Gateway

TEMPLATES = Path(__file__).parent / "templates"
REPORT_KINDS = ("factor_mine", "fraud_train")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = fmt_number
    return env


def _details(facts: dict[str, Any]) -> dict[str, Any]:
    rows = [[f"config.{k}", v if not isinstance(v, (dict, list)) else str(v)] for k, v in facts.get("config", {}).items()]
    rows += [[k, v if not isinstance(v, (dict, list)) else str(v)] for k, v in facts.get("other_metrics", {}).items()]
    if facts["run"].get("error"):
        rows.append(["error", facts["run"]["error"]])
    return table(["setting", "value"], rows)


def render_report(run_id: str, store: Store, *, narrative: Narrative | None = None,
                  narrative_missing: str = "no summary stored for this run", notes: Sequence[str] = ()) -> str:
    """The report of ``run_id`` as one HTML string (images embedded as data URIs). Without ``narrative``
    the run's stored one is rendered from today's facts (or the deterministic summary, which says why)."""
    from finllm import __version__

    run = store.get_run(run_id)
    if run is None:
        raise DataError(f"run {run_id!r}: no such run in {store.url}")
    facts = build_facts(run_id, store)
    if run.kind == "factor_mine":
        sections, found, headline = factor_sections(facts, run)
        title, head_title = f"Factor mining report — {run.name or run.id}", "Pool performance"
    elif run.kind == "fraud_train":
        sections, found, headline = fraud_sections(facts, run)
        title, head_title = f"Fraud detector report — {run.name or run.id}", "Detector performance"
    else:
        raise DataError(f"run {run_id!r} is of kind {run.kind!r}: reports exist for factor_mine and fraud_train runs")
    if narrative is None:
        narrative = narrative_from_stored(run.summary, narrative_facts(facts), run.kind, missing=narrative_missing)
    sections = [{"intro": None, "table": None, "tables": [], "figures": [], "missing": None, **sec} for sec in sections]
    return _env().get_template("report.html.j2").render(
        title=title, version=__version__, facts=facts, narrative=narrative,
        unbacked=narrative.audit(narrative_facts(facts)),
        headline_title=head_title, headline_table=headline,
        sections=sections, notes=[*notes, *found], details_table=_details(facts),
        generated_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def build_report(run_id: str, store: Store, out_path: str | Path, *, narrative: Narrative | None = None,
                 narrative_missing: str = "no summary stored for this run", notes: Sequence[str] = ()) -> Path:
    """Write the self-contained HTML report of ``run_id`` to ``out_path``; returns the path."""
    html = render_report(run_id, store, narrative=narrative, narrative_missing=narrative_missing, notes=notes)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


def publish(run_id: str, store: Store, out_path: str | Path, *, narrative: bool = True, refresh: bool = False,
            gateway: Gateway | None = None, notes: Sequence[str] = ()) -> dict[str, Any]:
    """Narrative (written and stored if wanted and missing, or if ``refresh``) + the HTML report.

    A failed narrative never fails the report: the deterministic summary says why. Returns
    {run_id, kind, path, bytes, facts: {key: value}, narrative: {status: stored|generated|failed|skipped,
    source: llm|fallback, note, sentences: [{text, facts, template}], dropped: [...]}}; each sentence's
    numbers come from its cited ``facts`` (:func:`finllm.grounding.check.unbacked_numbers` checks it)."""
    run = store.get_run(run_id)
    if run is None:
        raise DataError(f"run {run_id!r}: no such run in {store.url}")
    if run.kind not in REPORT_KINDS:
        raise DataError(f"run {run_id!r} is of kind {run.kind!r}: reports exist for {' and '.join(REPORT_KINDS)} runs")
    flat = narrative_facts(build_facts(run_id, store))
    if not narrative:
        status = "skipped"
        story = narrative_from_stored(None, flat, run.kind, missing="the LLM was not asked (--no-narrative)")
    elif refresh or parse_stored(run.summary) is None:
        res = summarize_run(run_id, store, gateway)
        status, story = ("generated" if res.stored else "failed"), res.narrative
    else:
        status, story = "stored", narrative_from_stored(run.summary, flat, run.kind)
    path = build_report(run_id, store, out_path, narrative=story, notes=notes)
    return {"run_id": run_id, "kind": run.kind, "path": str(path.resolve()), "bytes": path.stat().st_size,
            "facts": flat, "narrative": {"status": status, **story.to_dict(), "unbacked_numbers": story.audit(flat)}}
