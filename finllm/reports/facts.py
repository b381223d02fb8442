"""The JSON of a run's facts: what a report shows in tables and what the LLM summary may state.

Facts are small (no arrays): every float is rounded to 4 significant digits, so the narrative can only
quote numbers the reader also sees in the report's tables. Built from the store, never from the LLM.

Schema (keys marked ? are present only when the run recorded them)::

    common = {
      "run": {"id", "kind", "name", "status", "started_at", "finished_at", "error"?},
      "config": {<scalar settings of the run: data, splits, horizon, seed, model, dataset, ...>},
    }
    factor_mine = common | {
      "pool_size": int,
      "pool": [{"rank": 1.., "formula": str, "weight": float, "source": str,
                "metrics": {"train"|"valid"|"test": {"ic", "rank_ic", ...}}}],
      "pool_metrics": {"train"|"valid"|"test": {"ic", "rank_ic", "icir"?, "rank_icir"?}},
      "baselines": {name: {split: {metric: float}}},
      "comparisons": [{"baseline", "split", "metric", "pool", "baseline_value", "difference"}],
      "other_metrics": {<remaining scalar metrics, e.g. steps, seconds>},
    }
    fraud_train = common | {
      "metrics": {"train"|"valid"|"test": {"auroc", "auprc", "recall_at_k", ...}},
      "threshold"?: float,
      "baselines": {name: {split: {metric: float}}},
      "comparisons": [...as above, model vs each baseline...],
      "model"?: {"id", "name", "dataset", "threshold"},
      "test_set"?: {"n", "n_fraud", "fraud_rate"},          # from the predictions artifact
      "alerts"?: {"batch", "count", "above_threshold", "top": [{"rank", "node", "score", "explanation"}]},
      "other_metrics": {...},
    }

Where these come from (what the mining / training code writes; see .helpers/REQUESTS.md):
``Run.config`` (data/splits/horizon or dataset/model/seeds), ``Run.metrics`` ("pool", "baselines" for
mining; split names + "baselines" + "threshold" for fraud), pool members' ``Factor.metrics``
({split: {ic, rank_ic}}), ``Run.artifacts["predictions"]`` (.npz: y, score, split[, score__<baseline>]),
and the alerts of the FraudModel whose ``run_id`` is the run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from finllm.errors import DataError
from finllm.store import FraudModel, Run, Store

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"train": "train", "val": "valid", "valid": "valid", "validation": "valid", "test": "test"}
FACTOR_KINDS = ("factor_mine",)
FRAUD_KINDS = ("fraud_train",)
TOP_ALERTS = 10


def round_sig(x: float, sig: int = 4) -> float:
    """Round to ``sig`` significant digits (what the report prints and the LLM sees)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x) or x == 0:
        return x
    return round(float(x), sig - 1 - int(math.floor(math.log10(abs(x)))))


def clean(x: Any) -> Any:
    """JSON-safe copy: floats rounded, NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return round_sig(x) if math.isfinite(x) else None
    return x


def _scalars(d: dict | None, depth: int = 0) -> dict[str, Any]:
    """The scalar (and short scalar-list) entries of a dict, one nested level flattened as
    ``outer.inner``: what fits in a 'details' table."""
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)) and len(v) <= 10 and all(isinstance(e, (str, int, float)) for e in v):
            out[k] = list(v)
        elif isinstance(v, dict) and k == "splits":
            out[k] = {str(a): str(b) for a, b in v.items()}
        elif isinstance(v, dict) and depth == 0:
            out.update({f"{k}.{a}": b for a, b in _scalars(v, depth=1).items()})
    return out


def split_metrics(metrics: dict | None) -> dict[str, dict[str, Any]]:
    """``{split: {metric: value}}`` from a metrics dict keyed by split name (``val`` read as ``valid``;
    unknown keys ignored). A per-seed summary ``{"mean", "std"}`` becomes ``metric`` and ``metric_std``."""
    out: dict[str, dict[str, Any]] = {}
    for key, block in (metrics or {}).items():
        split = SPLIT_ALIASES.get(key)
        if split is None or not isinstance(block, dict):
            continue
        row = out.setdefault(split, {})
        for k, v in block.items():
            if isinstance(v, bool):
                continue
            if isinstance(v, (int, float)):
                row[k] = v
            elif isinstance(v, dict) and isinstance(v.get("mean"), (int, float)):
                row[k] = v["mean"]
                if isinstance(v.get("std"), (int, float)):
                    row[f"{k}_std"] = v["std"]
            elif isinstance(v, list) and v and all(isinstance(e, (int, float)) for e in v):
                row[k] = v
    return {s: out[s] for s in SPLITS if s in out}


def comparisons(ours: dict[str, dict], baselines: dict[str, dict[str, dict]]) -> list[dict[str, Any]]:
    """Differences ours - baseline for every (baseline, split, metric) both sides have."""
    rows = []
    for name, per_split in baselines.items():
        for split, block in (per_split or {}).items():
            for metric, value in (block or {}).items():
                mine = ours.get(split, {}).get(metric)
                if isinstance(mine, (int, float)) and isinstance(value, (int, float)) \
                        and math.isfinite(mine) and math.isfinite(value):
                    rows.append({"baseline": name, "split": split, "metric": metric, "ours": mine,
                                 "baseline_value": value, "difference": mine - value})
    return rows


def _run_header(run: Run) -> dict[str, Any]:
    head = {"id": run.id, "kind": run.kind, "name": run.name, "status": run.status,
            "started_at": run.started_at.isoformat(timespec="seconds") if run.started_at else None,
            "finished_at": run.finished_at.isoformat(timespec="seconds") if run.finished_at else None}
    if run.error:
        head["error"] = run.error
    return head


def factor_facts(run: Run, store: Store) -> dict[str, Any]:
    metrics = dict(run.metrics or {})
    pool = [{"rank": i + 1, "formula": f.formula, "weight": w, "source": f.source,
             "metrics": split_metrics(f.metrics)} for i, (f, w) in enumerate(store.pool(run.id))]
    pool_metrics = split_metrics(metrics.get("pool"))
    baselines = {str(k): split_metrics(v) for k, v in (metrics.get("baselines") or {}).items() if isinstance(v, dict)}
    other = _scalars({k: v for k, v in metrics.items() if k not in ("pool", "baselines")})
    return clean({"run": _run_header(run), "config": _scalars(run.config), "pool_size": len(pool), "pool": pool,
                  "pool_metrics": pool_metrics, "baselines": baselines,
                  "comparisons": comparisons(pool_metrics, baselines), "other_metrics": other})


def fraud_model_for_run(store: Store, run_id: str) -> FraudModel | None:
    with store.session() as s:
        return s.scalar(select(FraudModel).where(FraudModel.run_id == run_id).order_by(FraudModel.created_at.desc()))


def load_predictions(run: Run) -> dict[str, np.ndarray] | None:
    """The run's predictions artifact (.npz: y, score, split[, score__<baseline>]) or None if absent."""
    path = (run.artifacts or {}).get("predictions")
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: not a readable .npz predictions file ({exc})") from exc
    for key in ("y", "score", "split"):
        if key not in arrays:
            raise DataError(f"{p}: predictions file lacks array {key!r} (has {sorted(arrays)})")
    n = len(arrays["y"])
    for key, arr in arrays.items():
        if len(arr) != n:
            raise DataError(f"{p}: array {key!r} has length {len(arr)}, expected {n} (length of 'y')")
    return arrays


def fraud_facts(run: Run, store: Store) -> dict[str, Any]:
    metrics = dict(run.metrics or {})
    ours = split_metrics(metrics)
    baselines = {str(k): split_metrics(v) for k, v in (metrics.get("baselines") or {}).items() if isinstance(v, dict)}
    facts: dict[str, Any] = {"run": _run_header(run), "config": _scalars(run.config), "metrics": ours,
                             "baselines": baselines, "comparisons": comparisons(ours, baselines)}
    if isinstance(metrics.get("threshold"), (int, float)):
        facts["threshold"] = metrics["threshold"]
    facts["other_metrics"] = _scalars({k: v for k, v in metrics.items()
                                       if k not in (*SPLIT_ALIASES, "baselines", "threshold")})
    model = fraud_model_for_run(store, run.id)
    if model is not None:
        facts["model"] = {"id": model.id, "name": model.name, "dataset": model.dataset, "threshold": model.threshold}
        facts.setdefault("threshold", model.threshold)
        alerts = store.alerts(model.id)
        if alerts:
            batch = max(alerts, key=lambda a: a.created_at).batch
            these = [a for a in alerts if a.batch == batch]
            facts["alerts"] = {"batch": batch, "count": len(these),
                               "above_threshold": sum(a.above_threshold for a in these),
                               "top": [{"rank": a.rank, "node": a.node, "score": a.score,
                                        "explanation": (a.explanation or "")[:400]}
                                       for a in sorted(these, key=lambda a: a.rank)[:TOP_ALERTS]]}
    preds = load_predictions(run)
    if preds is not None:
        test = (preds["split"] == 2) & (preds["y"] >= 0)
        n, n_fraud = int(test.sum()), int((preds["y"][test] == 1).sum())
        facts["test_set"] = {"n": n, "n_fraud": n_fraud, "fraud_rate": n_fraud / n if n else None}
    return clean(facts)


def build_facts(run_id: str, store: Store) -> dict[str, Any]:
    """The facts JSON of run ``run_id`` (factor mining or fraud training); DataError if unknown."""
    run = store.get_run(run_id)
    if run is None:
        raise DataError(f"run {run_id!r}: no such run in {store.url}")
    if run.kind in FACTOR_KINDS:
        return factor_facts(run, store)
    if run.kind in FRAUD_KINDS:
        return fraud_facts(run, store)
    return clean({"run": _run_header(run), "config": _scalars(run.config), "other_metrics": _scalars(run.metrics)})
