"""Sections of a fraud-detector report: one source for every number.

Tables come from the run's stored metrics (per seed, and their mean); the curves, the confusion matrix, the
threshold sweep, the calibration plot and the alerts' known labels come from the run's predictions file
(``Run.artifacts["predictions"]``: the kept seed's scores, and ``score__<name>`` of a baseline on the same
split). Every table and figure says whether it shows one seed (which) or the mean over seeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from finllm.errors import DataError
from finllm.reports import fraud_plots, plots
from finllm.reports.facts import load_predictions
from finllm.grounding.numbers import auto_number, fmt_number
from finllm.reports.tables import fig, split_table, table

if TYPE_CHECKING:
    from finllm.store import Run

FRAUD_METRICS_ORDER = ("auroc", "auprc", "rec@k", "recall_at_k", "macro_f1", "f1", "precision", "recall")
SEED_METRICS = (("auroc", "AUROC"), ("auprc", "AUPRC"), ("rec@k", "Rec@K"), ("macro_f1", "macro F1"))
PARTS = (("test", "test"), ("val", "valid"))
SPLIT_NAMES = {0: "train", 1: "valid", 2: "test"}


def _seed_table(run: Run, kept: int | None) -> dict[str, Any] | None:
    per_seed = (run.metrics or {}).get("per_seed")
    if not isinstance(per_seed, list) or not per_seed:
        return None
    cols, kinds, rows = ["seed"], [None], []
    for part, label in PARTS:
        for key, name in SEED_METRICS:
            cols.append(f"{label} {name}")
            kinds.append("score")
    for m in per_seed:
        seed = m.get("seed")
        row: list[Any] = [f"{seed} (kept)" if seed == kept else str(seed)]
        for part, _ in PARTS:
            for key, _ in SEED_METRICS:
                v = (m.get(part) or {}).get(key)
                row.append(v if isinstance(v, (int, float)) else None)
        rows.append(row)
    return table(cols, rows, id="seed-table", kinds=kinds)


def _stored_value(raw: dict[str, Any], split: str, key: str, kept_index: int | None) -> float | None:
    """The kept seed's stored ``key`` on ``split`` (a per-seed list's entry, or the scalar of a 1-seed run)."""
    v = (raw.get(split) or {}).get(key)
    if isinstance(v, list):
        return float(v[kept_index]) if kept_index is not None and kept_index < len(v) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def fraud_sections(facts: dict[str, Any], run: Run) -> tuple[list[dict], list[str], dict]:
    """(sections, notes, headline table) of a fraud_train run."""
    notes: list[str] = []
    metrics = facts["metrics"]
    model = facts.get("model", {}).get("name") or run.config.get("model") or "model"
    raw = run.metrics or {}
    kept = raw.get("kept_seed")
    seeds = [m.get("seed") for m in raw.get("per_seed", [])] if isinstance(raw.get("per_seed"), list) else []
    n_seeds = max(len(seeds), 1)
    kept_index = seeds.index(kept) if kept in seeds else (0 if n_seeds == 1 else None)
    label = f"{model} (mean of {n_seeds} seeds)" if n_seeds > 1 else model
    named = {label: metrics, **facts["baselines"]}  # facts hold the mean of per-seed lists (and <metric>_std)
    headline = split_table({label: metrics}, ("auroc", "auprc", "rec@k", "recall_at_k", "macro_f1", "f1"), only=True,
                           id="headline-table")
    thr = facts.get("threshold")
    sections: list[dict[str, Any]] = [{
        "title": "Metrics vs baselines", "table": split_table(named, FRAUD_METRICS_ORDER, id="metrics-table"),
        "intro": f"Fixed splits; {'mean (and std) over ' + str(n_seeds) + ' seeds' if n_seeds > 1 else 'one seed'} "
                 f"for {model}. The decision threshold ({fmt_number(thr, 'score')}) was chosen on the validation "
                 "split of the kept seed."}]
    seed_tbl = _seed_table(run, kept)
    if seed_tbl is not None:
        sections.append({"title": "Per-seed metrics", "table": seed_tbl,
                         "intro": "Every seed's metrics as the run stored them; the kept seed (best validation "
                                  "AUPRC, never chosen on test) is the one whose scores the plots show."})
    try:
        preds = load_predictions(run)
    except DataError as exc:
        preds = None
        notes.append(str(exc))
    seed_txt = f"seed {kept}, the kept one" if kept is not None else "the kept seed"
    if preds is None:
        sections.append({"title": "Curves", "missing": "No predictions artifact (Run.artifacts['predictions']): "
                                                       "curves, threshold sweep and calibration not available."})
    else:
        sections.extend(_prediction_sections(preds, model, seed_txt, raw, kept_index, facts, thr, notes))
    sections.append(_alerts_section(facts, preds))
    return sections, notes, headline


def _prediction_sections(preds: dict[str, np.ndarray], model: str, seed_txt: str, raw: dict[str, Any],
                         kept_index: int | None, facts: dict[str, Any], thr: float | None,
                         notes: list[str]) -> list[dict[str, Any]]:
    test = (preds["split"] == 2) & (preds["y"] >= 0)
    y = preds["y"][test].astype(int)
    if y.min(initial=1) == y.max(initial=0):
        return [{"title": "Curves", "missing": "The test split has only one class: no curves."}]
    stored = {"auroc": _stored_value(raw, "test", "auroc", kept_index),
              "auprc": _stored_value(raw, "test", "auprc", kept_index)}
    curves = {f"{model} ({seed_txt})": (y, preds["score"][test], stored)}
    for key in sorted(preds):
        if key.startswith("score__"):
            name = key.removeprefix("score__")
            b = facts["baselines"].get(name, {}).get("test", {})
            curves[f"{name} (baseline)"] = (y, preds[key][test], {"auroc": b.get("auroc"), "auprc": b.get("auprc")})
    if len(curves) == 1:
        notes.append("The predictions file holds no baseline scores (score__<name>): no baseline curve drawn.")
    score = preds["score"][test]
    figs = [fig("ROC", fraud_plots.roc_curves(curves), f"ROC curve on the test split ({seed_txt}); legend values "
                                                       "are the stored metrics where the run recorded them."),
            fig("PR", fraud_plots.pr_curves(curves), "Precision-recall on the test split; the dotted line is the "
                                                     "fraud base rate (a random ranking)."),
            fig("Scores", plots.score_distribution(y, score, thr),
                f"Distribution of {model}'s fraud score for normal and fraudulent test nodes ({seed_txt}).")]
    out: list[dict[str, Any]] = [{"title": "Curves and score distributions", "figures": figs}]
    valid = (preds["split"] == 1) & (preds["y"] >= 0)
    tfigs, tables = [], []
    if thr is not None:
        cm = fraud_plots.confusion(y, score, thr)
        tables.append(table(["", "predicted normal", "predicted fraud", "total"],
                            [["actual normal", cm[0][0], cm[0][1], cm[0][0] + cm[0][1]],
                             ["actual fraud", cm[1][0], cm[1][1], cm[1][0] + cm[1][1]]], id="confusion-table",
                            kinds=[None, "count", "count", "count"],
                            caption=f"Confusion matrix, test split, threshold {fmt_number(thr, 'score')}"))
    if valid.any():
        yv = preds["y"][valid].astype(int)
        tfigs.append(fig("Threshold sweep", fraud_plots.threshold_sweep(yv, preds["score"][valid], y, score, thr),
                         "Precision, recall and alert volume (share of nodes flagged) against the threshold on the "
                         "validation split, where a threshold may be chosen; dashed = test split, for reference."))
        tables.append(_sweep_table(yv, preds["score"][valid], thr))
    tfigs.append(fig("Calibration", fraud_plots.calibration(y, score),
                     f"Share of actual fraud among test nodes per score bin against the bin's mean score ({seed_txt}); "
                     "the diagonal is a calibrated score."))
    out.append({"title": "Choosing a threshold", "figures": tfigs, "tables": tables,
                "intro": f"Confusion matrix on the test split at the threshold chosen on validation "
                         f"({fmt_number(thr, 'score')}; {seed_txt}); the sweep table reads the validation split."})
    return out


def _sweep_table(y: np.ndarray, score: np.ndarray, thr: float | None) -> dict[str, Any]:
    rows = []
    marks = sorted({*np.round(np.linspace(0.05, 0.95, 10), 2).tolist(), *([round(float(thr), 4)] if thr is not None else [])})
    for t in marks:
        p, r, vol, n = fraud_plots.at_threshold(y, score, t)
        rows.append([auto_number(t) + (" (chosen)" if thr is not None and abs(t - round(float(thr), 4)) < 1e-12 else ""),
                     p, r, vol, n])
    return table(["threshold", "precision", "recall", "alert volume", "alerts"], rows, id="sweep-table",
                 kinds=[None, "score", "score", "pct", "count"],
                 caption="Precision, recall and alert volume by threshold, validation split")


def _alerts_section(facts: dict[str, Any], preds: dict[str, np.ndarray] | None) -> dict[str, Any]:
    alerts = facts.get("alerts")
    if not alerts:
        return {"title": "Top alerts", "missing": "No alerts scored with this run's model yet (`finllm fraud score`)."}
    rows = []
    for a in alerts["top"]:
        known = "—"
        if preds is not None and str(a["node"]).isdigit() and int(a["node"]) < len(preds["y"]):
            i = int(a["node"])
            lab = int(preds["y"][i])
            known = ("unlabelled" if lab < 0 else ("fraud" if lab == 1 else "normal")) + \
                f" ({SPLIT_NAMES.get(int(preds['split'][i]), 'no split')})"
        rows.append([a["rank"], a["node"], a["score"], known, a["explanation"] or "—"])
    return {"title": f"Top alerts (batch {alerts['batch'] or '—'}: {alerts['count']} scored, "
                     f"{alerts['above_threshold']} above threshold)",
            "intro": "Known label = the dataset's label of the node and the split it belongs to (a label from the "
                     "train split was seen in training: such an alert is no discovery).",
            "table": table(["rank", "node", "score", "known label", "explanation"], rows, id="alerts-table",
                           kinds=["count", None, "score", None, None])}
