"""One self-contained HTML report per run: tables + embedded PNG figures + the grounded narrative.

``build_report(run_id, store, out_path)`` dispatches on the run kind:

* ``factor_mine``: pool table (formula, weight, IC/RankIC per split), pool vs baselines, IC over time,
  cumulative long-short return net of costs, quantile returns, factor correlation heatmap. The time
  series are recomputed from the run's panel and saved pool (:mod:`finllm.reports.series`).
* ``fraud_train``: metric table vs baselines, ROC and PR curves, score distributions (from the run's
  predictions artifact), top alerts with their explanations.

Anything a run did not record is named in the report ("not available: ...") instead of failing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from finllm.errors import DataError, FinllmError
from finllm.reports import plots
from finllm.reports.facts import SPLITS, build_facts, load_predictions, narrative_facts
from finllm.reports.summary import Narrative, narrative_from_stored, parse_stored, summarize_run
from finllm.store import Store

TEMPLATES = Path(__file__).parent / "templates"
REPORT_KINDS = ("factor_mine", "fraud_train")
FACTOR_METRICS = ("ic", "rank_ic", "icir", "rank_icir")
FACTOR_HEADLINE = ("ic", "rank_ic", "icir", "sharpe", "ann_return", "turnover")
FRAUD_METRICS_ORDER = ("auroc", "auprc", "rec@k", "recall_at_k", "macro_f1", "f1", "precision", "recall")


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if not np.isfinite(v):
        return "—"
    return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = _fmt
    return env


def _table(columns: list[str], rows: list[list[Any]], *, empty: str = "nothing recorded",
           formula_cols: tuple[int, ...] = (), id: str | None = None) -> dict[str, Any]:
    return {"columns": columns, "rows": rows, "empty": empty, "formula_cols": list(formula_cols), "id": id}


def _fig(title: str, uri: str, caption: str) -> dict[str, str]:
    return {"title": title, "uri": uri, "caption": caption}


def _split_table(named: dict[str, dict[str, dict[str, Any]]], metrics: tuple[str, ...],
                 only: bool = False) -> dict[str, Any]:
    """Rows = (model, split), columns = ``metrics`` present (then any others unless ``only``);
    ``named`` = {model: {split: {metric: v}}}."""
    present = [m for m in metrics if any(m in blk for per in named.values() for blk in per.values())]
    extra = [] if only else sorted({m for per in named.values() for blk in per.values() for m in blk} - set(present))
    cols = present + extra
    rows = []
    for name, per in named.items():
        for split in SPLITS:
            if split in per:
                rows.append([name, split] + [per[split].get(m) if not isinstance(per[split].get(m), list)
                                             else ", ".join(_fmt(x) for x in per[split][m]) for m in cols])
    return _table(["model", "split"] + cols, rows, empty="no metrics recorded")


def _details(facts: dict[str, Any]) -> dict[str, Any]:
    rows = [[f"config.{k}", v if not isinstance(v, (dict, list)) else str(v)] for k, v in facts.get("config", {}).items()]
    rows += [[k, v if not isinstance(v, (dict, list)) else str(v)] for k, v in facts.get("other_metrics", {}).items()]
    if facts["run"].get("error"):
        rows.append(["error", facts["run"]["error"]])
    return _table(["setting", "value"], rows)


# ---- factor runs -------------------------------------------------------------------------------
def factor_sections(facts: dict[str, Any], store: Store, run: Any) -> tuple[list[dict], list[str], dict]:
    notes: list[str] = []
    pool_rows = []
    for m in facts["pool"]:
        row = [m["rank"], m["formula"], m["weight"], m["source"]]
        for split in SPLITS:
            blk = m["metrics"].get(split, {})
            row += [blk.get("ic"), blk.get("rank_ic")]
        pool_rows.append(row)
    pool_table = _table(["#", "formula", "weight", "source"] + [f"{s} {m}" for s in SPLITS for m in ("IC", "RankIC")],
                        pool_rows, empty="this run saved no pool", formula_cols=(1,), id="pool-table")
    named = {"pool (combined)": facts["pool_metrics"], **facts["baselines"]}
    comparison = _split_table(named, FACTOR_METRICS)
    headline = _split_table({"pool (combined)": facts["pool_metrics"]}, FACTOR_HEADLINE, only=True)
    sections: list[dict[str, Any]] = [
        {"title": f"Factor pool ({facts['pool_size']} factors)", "table": pool_table,
         "intro": "Each factor's daily cross-sectional IC and RankIC with the forward return, averaged per "
                  "period; the weight is its coefficient in the pool's linear combination."},
    ]
    figs_cmp = []
    if facts["baselines"]:
        for metric in ("ic", "rank_ic"):
            tbl = {n: {s: blk.get(metric, np.nan) for s, blk in per.items()} for n, per in named.items()}
            if any(np.isfinite(v) for per in tbl.values() for v in per.values()):
                figs_cmp.append(_fig(f"{metric} vs baselines", plots.metric_bars(tbl, metric, f"{metric}: pool vs baselines"),
                                     f"Mean daily {metric} of the pool's combination and of each baseline, per period."))
    sections.append({"title": "Comparison with baselines", "table": comparison, "figures": figs_cmp,
                     "missing": None if facts["baselines"] else "This run recorded no baselines."})
    try:
        from finllm.reports.series import factor_series

        series = factor_series(run, store.pool(run.id))
    except (FinllmError, ImportError, KeyError, ValueError) as exc:
        series = None
        notes.append(f"time-series plots not available: {exc}")
    if series is not None:
        notes.extend(series.notes)
        figs = [
            _fig("IC over time", plots.ic_over_time(series.dates, series.ic, series.rank_ic, series.split_of),
                 f"Daily IC/RankIC of the pool's combination with the {series.horizon}-day forward return "
                 "(faint) and their 20-day means; background = train / valid / test periods."),
            _fig("Cumulative long-short", plots.cumulative_long_short(series.dates, series.ls_net, series.ls_gross,
                                                                      series.split_of, series.cost_bps),
                 "Daily long-short return (top minus bottom quantile of the combination), summed over time, "
                 "after and before trading costs."),
            _fig("Quantile returns", plots.quantile_returns(series.quantile_returns),
                 "Mean forward return per quantile of the combined factor, per period (a monotone staircase "
                 "is what a useful factor looks like)."),
        ]
        if series.corr is not None and len(series.labels) > 1:
            figs.append(_fig("Factor correlation", plots.correlation_heatmap(series.corr, series.labels),
                             "Mean daily cross-sectional correlation between pool factors over the valid period "
                             "(labels = pool table row numbers)."))
        sections.insert(1, {"title": "Performance over time", "figures": figs, "table": series.table})
    return sections, notes, headline


# ---- fraud runs --------------------------------------------------------------------------------
def fraud_sections(facts: dict[str, Any], run: Any) -> tuple[list[dict], list[str], dict]:
    notes: list[str] = []
    named = {facts.get("model", {}).get("name") or run.config.get("model") or "model": facts["metrics"],
             **facts["baselines"]}
    metrics_table = _split_table(named, FRAUD_METRICS_ORDER)
    headline = _split_table({next(iter(named)): facts["metrics"]}, ("auroc", "auprc", "rec@k", "recall_at_k", "macro_f1"),
                            only=True)
    sections: list[dict[str, Any]] = [{"title": "Metrics vs baselines", "table": metrics_table,
                                       "intro": "Measured on fixed splits; the decision threshold "
                                                + (f"({_fmt(facts['threshold'])}) " if "threshold" in facts else "")
                                                + "was chosen on the validation split."}]
    preds = None
    try:
        preds = load_predictions(run)
    except DataError as exc:
        notes.append(str(exc))
    if preds is None:
        sections.append({"title": "Curves", "missing": "No predictions artifact (Run.artifacts['predictions']): "
                                                       "ROC/PR curves and score distributions not available."})
    else:
        test = (preds["split"] == 2) & (preds["y"] >= 0)
        y = preds["y"][test].astype(int)
        if y.min(initial=1) == y.max(initial=0):
            sections.append({"title": "Curves", "missing": "The test split has only one class: no curves."})
        else:
            curves = {next(iter(named)): (y, preds["score"][test])}
            for key in sorted(preds):
                if key.startswith("score__"):
                    curves[key.removeprefix("score__")] = (y, preds[key][test])
            figs = [_fig("ROC", plots.roc_curves(curves), "ROC curve on the test split, model and baselines."),
                    _fig("PR", plots.pr_curves(curves), "Precision-recall on the test split; the dotted line is "
                                                        "the fraud base rate (a random ranking)."),
                    _fig("Scores", plots.score_distribution(y, preds["score"][test], facts.get("threshold")),
                         "Distribution of the model's fraud score for normal and fraudulent test nodes.")]
            sections.append({"title": "Curves and score distributions", "figures": figs})
    alerts = facts.get("alerts")
    if alerts:
        rows = [[a["rank"], a["node"], a["score"], a["explanation"] or "—"] for a in alerts["top"]]
        sections.append({"title": f"Top alerts (batch {alerts['batch'] or '—'}: {alerts['count']} scored, "
                                  f"{alerts['above_threshold']} above threshold)",
                         "table": _table(["rank", "node", "score", "explanation"], rows, id="alerts-table")})
    else:
        sections.append({"title": "Top alerts", "missing": "No alerts scored with this run's model yet "
                                                           "(`finllm fraud score`)."})
    return sections, notes, headline


def render_report(run_id: str, store: Store, *, narrative: Narrative | None = None,
                  narrative_missing: str = "no summary stored for this run") -> str:
    """The report of ``run_id`` as one HTML string (images embedded as data URIs). Without ``narrative``
    the run's stored one is rendered from today's facts (or the deterministic summary, which says why)."""
    from finllm import __version__

    run = store.get_run(run_id)
    if run is None:
        raise DataError(f"run {run_id!r}: no such run in {store.url}")
    facts = build_facts(run_id, store)
    if run.kind == "factor_mine":
        sections, notes, headline = factor_sections(facts, store, run)
        title, head_title = f"Factor mining report — {run.name or run.id}", "Pool performance"
    elif run.kind == "fraud_train":
        sections, notes, headline = fraud_sections(facts, run)
        title, head_title = f"Fraud detector report — {run.name or run.id}", "Detector performance"
    else:
        raise DataError(f"run {run_id!r} is of kind {run.kind!r}: reports exist for factor_mine and fraud_train runs")
    if narrative is None:
        narrative = narrative_from_stored(run.summary, narrative_facts(facts), run.kind, missing=narrative_missing)
    sections = [{"intro": None, "table": None, "figures": [], "missing": None, **sec} for sec in sections]
    return _env().get_template("report.html.j2").render(
        title=title, version=__version__, facts=facts, narrative=narrative,
        unbacked=narrative.audit(narrative_facts(facts)),
        headline_title=head_title, headline_table=headline,
        sections=sections, notes=notes, details_table=_details(facts),
        generated_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def build_report(run_id: str, store: Store, out_path: str | Path, *, narrative: Narrative | None = None,
                 narrative_missing: str = "no summary stored for this run") -> Path:
    """Write the self-contained HTML report of ``run_id`` to ``out_path``; returns the path."""
    html = render_report(run_id, store, narrative=narrative, narrative_missing=narrative_missing)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


def publish(run_id: str, store: Store, out_path: str | Path, *, narrative: bool = True, refresh: bool = False,
            gateway: Any = None) -> dict[str, Any]:
    """Narrative (written and stored if wanted and missing, or if ``refresh``) + the HTML report.

    A failed narrative never fails the report: the deterministic summary says why. Returns
    {run_id, kind, path, bytes, facts: {key: value}, narrative: {status: stored|generated|failed|skipped,
    source: llm|fallback, note, sentences: [{text, facts, template}], dropped: [...]}}; each sentence's
    numbers come from its cited ``facts`` (:func:`finllm.reports.grounding.unbacked_numbers` checks it)."""
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
    path = build_report(run_id, store, out_path, narrative=story)
    return {"run_id": run_id, "kind": run.kind, "path": str(path.resolve()), "bytes": path.stat().st_size,
            "facts": flat, "narrative": {"status": status, **story.to_dict(), "unbacked_numbers": story.audit(flat)}}
