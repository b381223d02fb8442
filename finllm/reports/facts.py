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
      "pool": [{"rank": 1.., "formula": str, "weight": float, "source": str, "scale_free": bool | None,
                "metrics": {"train"|"valid"|"test": {"ic", "rank_ic", ...}}}],
      "pool_metrics": {"train"|"valid"|"test": {"ic", "rank_ic", "icir"?, "rank_icir"?}},
      "baselines": {name: {split: {metric: float}}},   # run.metrics baselines + the tear sheet's fitted ones
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
({split: {ic, rank_ic}}), ``Run.artifacts["tearsheet"]`` (factor runs: the tear sheet's per-split figures of
the pool and of the baselines fitted in the run, :func:`sheet_summary`), ``Run.artifacts["predictions"]``
(.npz: y, score, split[, score__<baseline>]), and the alerts of the FraudModel whose ``run_id`` is the run.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from finllm.errors import DataError
from finllm.jsonsafe import json_safe, round_sig
from finllm.grounding.facts import PERCENT_KEYS, FactValue, fmt_fact  # noqa: F401  (re-exported)
from finllm.store import FraudModel, Run, Store


SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"train": "train", "val": "valid", "valid": "valid", "validation": "valid", "test": "test"}
FACTOR_KINDS = ("factor_mine",)
FRAUD_KINDS = ("fraud_train",)
TOP_ALERTS = 10
EXPLANATION_CHARS = 600
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def whole_sentences(text: str, limit: int) -> str:
    """The leading whole sentences of ``text`` that fit in ``limit`` characters (never cut mid-sentence;
    "…" marks that sentences were left out)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    out = ""
    for sent in _SENTENCE_END.split(text):
        if len(out) + len(sent) + 2 > limit:
            break
        out = f"{out} {sent}".strip()
    return f"{out} …".strip()


def clean(x: Any) -> Any:
    """JSON-safe copy: floats rounded to 4 significant digits, NaN/inf -> None, numpy scalars -> Python."""
    return json_safe(x, sig=4)


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
    unknown keys ignored). A per-seed summary ``{"mean", "std"}`` or a per-seed list becomes ``metric`` (the
    mean) and ``metric_std``."""
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
                row[k] = float(np.mean(v))  # per-seed values: their mean (the table says over how many seeds)
                if len(v) > 1:
                    row[f"{k}_std"] = float(np.std(v))
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
    from factors.units import tokens_scale_free  # None for a stored factor whose tokens no longer parse

    metrics = dict(run.metrics or {})
    pool = [{"rank": i + 1, "formula": f.formula, "weight": w, "source": f.source, "scale_free": tokens_scale_free(f.tokens),
             "metrics": split_metrics(f.metrics)} for i, (f, w) in enumerate(store.pool(run.id))]
    pool_metrics = split_metrics(metrics.get("pool"))
    baselines = {str(k): split_metrics(v) for k, v in (metrics.get("baselines") or {}).items() if isinstance(v, dict)}
    sheet = sheet_summary(run)
    if sheet is not None:  # the tear sheet's figures: the stored metrics win where both have a key (they agree)
        for split, blk in sheet["pool"].items():
            pool_metrics[split] = {**blk, **pool_metrics.get(split, {})}
        baselines.update(sheet["baselines"])
    other = _scalars({k: v for k, v in metrics.items() if k not in ("pool", "baselines", "combiner")})
    comb = metrics.get("combiner")
    return clean({"run": _run_header(run), "config": _scalars(run.config), "pool_size": len(pool), "pool": pool,
                  "combiner": {"chosen": comb.get("chosen"), "requested": comb.get("requested")}
                  if isinstance(comb, dict) and comb else {},
                  "pool_metrics": pool_metrics, "baselines": baselines,
                  "comparisons": comparisons(pool_metrics, baselines), "other_metrics": other})


def sheet_summary(run: Run) -> dict[str, Any] | None:
    """The scalar per-split figures of the run's tear sheet (``Run.artifacts["tearsheet"]``, JSON part only):
    {"pool": {split: {metric: v}}, "baselines": {name: {split: {metric: v}}}}, or None without one."""
    import json

    from finllm.store.paths import resolve_stored

    path = (run.artifacts or {}).get("tearsheet")
    p = resolve_stored(path) if path else None
    if p is None or not p.is_file():
        return None
    try:
        models = json.loads(p.read_text(encoding="utf-8")).get("models", {})
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: not a readable tear sheet ({exc})") from exc

    def scalars(per: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return split_metrics({sp: {k: v for k, v in blk.items() if isinstance(v, (int, float))}
                              for sp, blk in per.items()})

    return {"pool": scalars(models.get("pool", {}).get("splits", {})),
            "baselines": {n: scalars(m.get("splits", {})) for n, m in models.items() if n != "pool"}}


def fraud_model_for_run(store: Store, run_id: str) -> FraudModel | None:
    with store.session() as s:
        return s.scalar(select(FraudModel).where(FraudModel.run_id == run_id).order_by(FraudModel.created_at.desc()))


def load_predictions(run: Run) -> dict[str, np.ndarray] | None:
    """The run's predictions artifact (.npz: y, score, split[, score__<baseline>]) or None if absent."""
    path = (run.artifacts or {}).get("predictions")
    if not path:
        return None
    from finllm.store.paths import resolve_stored

    p = resolve_stored(path)  # absolute, or an older row's path relative to the home / working folder
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
                                        "explanation": whole_sentences(a.explanation or "", EXPLANATION_CHARS)}
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


# ---- flat facts: what a narrative sentence may cite (key -> one scalar) -----------------------------
# What each split was used for, as the code that writes these runs does it (factors.mine, fraud.train):
# a narrative's claim about data use can only be made by citing these.
SPLIT_USE = {
    "factor_mine": {
        "train": "the only period the miner saw: factors were searched and the pool's weights fitted on it",
        "valid": "not used by the miner or the pool's weights; reported as an out-of-sample check "
                 "(a LightGBM baseline, when present, stops early on it)",
        "test": "held out: not used for the search, the weights or any choice; only reported",
    },
    "fraud_train": {
        "train": "the detector's weights were fitted on the training labels",
        "valid": "used to stop training (best validation AUPRC), to choose the decision threshold (best "
                 "validation macro-F1) and, with the LLM supervisor, to measure its verdicts' reliability",
        "test": "held out: not used for training or for any choice; only reported",
    },
}
# A factor run whose pool is combined by ``--combiner auto`` (factors.combiner) chose that on valid, and its
# walk-forward re-fits read returns of valid/test days once realised (run config ``combiner``; absent: fitted).
REFIT_SPLIT_USE = {
    "valid": "used to choose how the pool is combined after train (its train weights or a walk-forward re-fit on "
             "returns already realised, by valid RankIC; a LightGBM baseline also stops early on it); no factor "
             "was searched on it",
    "valid_named": "not used for any choice (a LightGBM baseline, when present, stops early on it); the pool's "
                   "walk-forward re-fit reads a valid day's return only after it is realised, for later days' "
                   "weights",
    "test": "held out from the search and from every choice; only reported (a walk-forward re-fit reads a test "
            "day's return only after it is realised, for later days' weights)",
}


def split_use(kind: str, config: dict[str, Any]) -> dict[str, str]:
    """What each split was used for in a run of ``kind`` with ``config`` (the ``<split>_use`` facts)."""
    use = dict(SPLIT_USE.get(kind, {}))
    combiner = config.get("combiner", "fitted")
    if kind == "factor_mine" and combiner != "fitted":
        use["test"] = REFIT_SPLIT_USE["test"]
        use["valid"] = REFIT_SPLIT_USE["valid" if combiner == "auto" else "valid_named"]
    return use


def split_roles(kind: str, facts: dict[str, FactValue]) -> dict[str, frozenset[str]] | None:
    """The roles each ``<split>_use`` fact backs (:data:`SPLIT_ROLES`); a factor run whose ``valid_use`` says
    it chose the combiner also backs "select" for valid."""
    roles = SPLIT_ROLES.get(kind)
    if roles is not None and kind == "factor_mine" and facts.get("valid_use") == REFIT_SPLIT_USE["valid"]:
        roles = {**roles, "valid": roles["valid"] | {"select"}}
    return roles


# The same in the terms of finllm.grounding.check's data-use check: which roles each *_use fact backs.
SPLIT_ROLES = {
    "factor_mine": {"train": frozenset({"fit", "select", "use"}), "valid": frozenset({"evaluate", "use"}),
                    "test": frozenset({"evaluate", "use"})},
    "fraud_train": {"train": frozenset({"fit", "use"}), "valid": frozenset({"select", "evaluate", "use"}),
                    "test": frozenset({"evaluate", "use"})},
}
NARRATIVE_SPLITS = ("valid", "test")
FACTOR_NARRATIVE_METRICS = ("ic", "rank_ic", "icir", "rank_icir", "sharpe", "ann_return", "turnover", "max_drawdown",
                            "excess_ann_return")
FRAUD_NARRATIVE_METRICS = ("auroc", "auprc", "rec@k", "recall_at_k", "macro_f1")
MAX_BASELINES, MAX_MEMBERS = 3, 3
_SLUG = re.compile(r"[^a-z0-9]+")


def slug(name: str) -> str:
    """A fact-key part from a name: ``"rec@k"`` -> ``rec_at_k``, ``"XGB Graph"`` -> ``xgb_graph``."""
    return _SLUG.sub("_", str(name).lower().replace("@", "_at_")).strip("_") or "x"


def _period(config: dict[str, Any], split: str) -> str | None:
    text = (config.get("splits") or {}).get(split) or config.get(split)
    if not isinstance(text, str) or ":" not in text:
        return None
    a, b = text.split(":", 1)
    return f"{a} to {b}"


def _put_metrics(out: dict[str, FactValue], prefix: str, per_split: dict[str, dict[str, Any]],
                 metrics: tuple[str, ...], splits: tuple[str, ...] = SPLITS) -> None:
    for split in splits:
        for m in metrics:
            for name in (m, f"{m}_std"):
                v = per_split.get(split, {}).get(name)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"{prefix}{split}_{slug(name)}"] = v


def _put_baselines(out: dict[str, FactValue], facts: dict[str, Any], metrics: tuple[str, ...]) -> None:
    cmp = {(c["baseline"], c["split"], c["metric"]): c for c in facts.get("comparisons", [])}
    for name in list(facts.get("baselines", {}))[:MAX_BASELINES]:
        b = slug(name)
        out[f"{b}_name"] = str(name)
        _put_metrics(out, f"{b}_", facts["baselines"][name], metrics, NARRATIVE_SPLITS)
        for split in NARRATIVE_SPLITS:
            for m in metrics:
                c = cmp.get((name, split, m))
                if c is not None:
                    out[f"vs_{b}_{split}_{slug(m)}"] = c["difference"]


def narrative_facts(facts: dict[str, Any]) -> dict[str, FactValue]:
    """The flat facts a narrative may cite: ``{key: scalar}`` built from :func:`build_facts` output, with
    what each split was used for (``train_use`` ...) and its dates (``test_period``, factor runs).
    Keys are stable names (``test_rank_ic``, ``vs_<baseline>_test_auroc``, ``threshold``)."""
    kind = facts.get("run", {}).get("kind", "")
    cfg = facts.get("config", {})
    out: dict[str, FactValue] = {}
    if facts.get("run", {}).get("name"):
        out["run_name"] = str(facts["run"]["name"])
    if kind == "factor_mine":
        for key in ("method", "horizon", "cost_bps"):
            if isinstance(cfg.get(key), (int, float, str)) and not isinstance(cfg.get(key), bool):
                out[key] = cfg[key]
        if isinstance(cfg.get("data"), str):
            out["market"] = Path(cfg["data"]).name
        out["pool_size"] = int(facts.get("pool_size", 0))
        chosen = (facts.get("combiner") or {}).get("chosen")
        if isinstance(chosen, str):
            out["combiner"] = chosen
        _put_metrics(out, "", facts.get("pool_metrics", {}), FACTOR_NARRATIVE_METRICS)
        for m in facts.get("pool", [])[:MAX_MEMBERS]:
            i = m["rank"]
            out[f"factor{i}_formula"] = m["formula"]
            if isinstance(m.get("weight"), (int, float)):
                out[f"factor{i}_weight"] = m["weight"]
            for metric in ("ic", "rank_ic"):
                v = m.get("metrics", {}).get("test", {}).get(metric)
                if isinstance(v, (int, float)):
                    out[f"factor{i}_test_{metric}"] = v
        _put_baselines(out, facts, FACTOR_NARRATIVE_METRICS)
    elif kind == "fraud_train":
        model = facts.get("model", {}).get("name") or cfg.get("model")
        for key, v in (("model", model), ("dataset", cfg.get("dataset") or facts.get("model", {}).get("dataset")),
                       ("setting", cfg.get("setting"))):
            if isinstance(v, str) and v:
                out[key] = Path(v).name if key == "dataset" else v
        seeds = cfg.get("seeds")
        if isinstance(seeds, list):
            out["seeds"] = len(seeds)
        elif isinstance(seeds, int) and not isinstance(seeds, bool):
            out["seeds"] = seeds
        _put_metrics(out, "", facts.get("metrics", {}), FRAUD_NARRATIVE_METRICS)
        if isinstance(facts.get("threshold"), (int, float)):
            out["threshold"] = facts["threshold"]
        for k, v in (facts.get("test_set") or {}).items():
            if isinstance(v, (int, float)):
                out[f"test_{k}"] = v
        alerts = facts.get("alerts") or {}
        for k in ("batch", "count", "above_threshold"):
            if alerts.get(k) not in (None, ""):
                out[f"alerts_{k}"] = alerts[k]
        _put_baselines(out, facts, FRAUD_NARRATIVE_METRICS)
    for split, use in split_use(kind, cfg).items():
        period = _period(cfg, split) if kind == "factor_mine" else None
        if period:
            out[f"{split}_period"] = period
        out[f"{split}_use"] = use
    return out
