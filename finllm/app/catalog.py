"""Finding things again: list and show runs, trained models and library factors; export factor values.

Every function takes an open :class:`finllm.store.Store` and returns plain JSON-able dicts (what
``--json`` prints; the CLI renders the same dicts as tables). Artifact paths are shown resolved
(:func:`finllm.store.paths.resolve_stored`) with whether the file is there.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from finllm.errors import ConfigError, DataError
from finllm.jsonsafe import json_safe
from finllm.store import queries as Q
from finllm.store.db import Store
from finllm.store.paths import resolve_stored
from finllm.store.tables import Factor, FraudModel, Run

RUN_STATUSES = ("running", "finished", "failed", "interrupted")
RUN_KINDS = ("factor_mine", "factor_ask", "factor_monitor", "fraud_train", "fraud_score")  # what finllm writes


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="seconds")


def _seconds(run: Run) -> float | None:
    if run.finished_at is None or run.started_at is None:
        return None
    a, b = run.started_at, run.finished_at
    if (a.tzinfo is None) != (b.tzinfo is None):  # SQLite drops the zone: compare as naive UTC
        a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
    return round((b - a).total_seconds(), 1)


def _headline(run: Run) -> str:
    """One short figure per run kind, for the listing (the full metrics are in ``runs show``)."""
    m = run.metrics or {}
    if run.kind == "factor_mine":
        test = (m.get("pool") or {}).get("test") or {}
        if test.get("rank_ic") is not None:
            return f"test RankIC {test['rank_ic']:.4f}"
    if run.kind == "fraud_train":
        test = ((m.get("summary") or {}).get("test") or {})
        auroc = test.get("auroc")
        if isinstance(auroc, dict):
            auroc = auroc.get("mean")
        if isinstance(auroc, (int, float)):
            return f"test AUROC {auroc:.4f}"
    if run.kind == "factor_ask" and m.get("status"):
        return str(m["status"])
    return ""


def run_row(run: Run) -> dict[str, Any]:
    return {"id": run.id, "kind": run.kind, "status": run.status, "name": run.name,
            "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at), "seconds": _seconds(run),
            "headline": _headline(run)}


def list_runs(store: Store, *, kind: str | None = None, status: str | None = None,
              limit: int = 20) -> list[dict[str, Any]]:
    """Runs newest first (``kind``: factor_mine, fraud_train, ...; ``status``: one of RUN_STATUSES)."""
    if status is not None and status not in RUN_STATUSES:
        raise ConfigError(f"--status {status!r}: choose one of {', '.join(RUN_STATUSES)}")
    if limit < 1:
        raise ConfigError("--limit must be >= 1")
    rows = Q.runs(store, Q.RunFilter(kind=kind, status=status, limit=limit))
    known = sorted(set(RUN_KINDS) | set(Q.run_kinds(store)))
    if kind and kind not in known:
        raise ConfigError(f"--kind {kind!r}: unknown run kind (known: {', '.join(known)})")
    return [run_row(r) for r in rows]


def latest_finished(kinds: Sequence[str], per_kind: int, store: Store | None = None) -> list[str]:
    """Ids of the newest ``per_kind`` finished runs of each kind (what the reports DAG rebuilds)."""
    from finllm.store.db import store_or_default

    store = store_or_default(store)
    ids: list[str] = []
    for kind in kinds:
        ids += [r.id for r in Q.runs(store, Q.RunFilter(kind=kind, status="finished", limit=per_kind))]
    return ids


def artifact_info(path: str) -> dict[str, Any]:
    p = resolve_stored(path)
    return {"path": str(p), "exists": p.exists()}


def show_run(store: Store, run_id: str) -> dict[str, Any]:
    """Everything stored about one run: config, metrics, artifacts (resolved), narrative, error, and its
    pool (factor runs) or models (training runs)."""
    rid = Q.find_id(store, Run, run_id, "run", "finllm runs list")
    run = store.get_run(rid)
    assert run is not None
    out = run_row(run)
    out.update(config=run.config or {}, metrics=run.metrics or {}, summary=run.summary, error=run.error,
               idempotency_key=run.idempotency_key,
               artifacts={k: (artifact_info(v) if isinstance(v, str) and ("/" in v or "." in v) else v)
                          for k, v in (run.artifacts or {}).items()})
    pool = store.pool(rid)
    if pool:
        out["pool"] = [{"factor_id": f.id, "weight": w, "formula": f.formula} for f, w in pool]
    ms = Q.models(store, run_id=rid, limit=100)
    if ms:
        out["models"] = [model_row(m) for m in ms]
    return json_safe(out)


def model_row(m: FraudModel) -> dict[str, Any]:
    p = resolve_stored(m.path)
    return {"id": m.id, "name": m.name, "dataset": m.dataset, "run_id": m.run_id, "threshold": m.threshold,
            "created_at": _iso(m.created_at), "path": str(p), "exists": p.is_file(),
            "test": _model_test(m.metrics or {})}


def _model_test(metrics: dict[str, Any]) -> dict[str, Any]:
    """The model's test figures as stored (a dict of metric -> value, or of metric -> per-seed list)."""
    test = metrics.get("test") or (metrics.get("summary") or {}).get("test") or {}
    return {k: v for k, v in test.items() if k in ("auroc", "auprc", "rec@k", "recall_at_k", "f1", "macro_f1")}


def list_models(store: Store, *, name: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Trained fraud detectors newest first (``name``: the model family, e.g. hsign, sage, xgbgraph)."""
    if limit < 1:
        raise ConfigError("--limit must be >= 1")
    return json_safe([model_row(m) for m in Q.models(store, name=name, limit=limit)])


def factor_row(f: Factor) -> dict[str, Any]:
    m = f.metrics or {}
    per_split = {k: {"ic": v.get("ic"), "rank_ic": v.get("rank_ic")} for k, v in m.items()
                 if isinstance(v, dict) and ("ic" in v or "rank_ic" in v)}
    return {"id": f.id, "source": f.source, "formula": f.formula, "created_at": _iso(f.created_at),
            "run_id": f.run_id, "metrics": per_split}


def list_factors(store: Store, *, source: str | None = None, run_id: str | None = None,
                 limit: int = 20) -> list[dict[str, Any]]:
    """Library factors newest first; with ``run_id`` the members of that run's pool in pool order."""
    if limit < 1:
        raise ConfigError("--limit must be >= 1")
    rid = Q.find_id(store, Run, run_id, "run", "finllm runs list") if run_id else None
    return json_safe([factor_row(f) for f in Q.factors(store, source=source, run_id=rid, limit=limit)])


def show_factor(store: Store, factor_id: str) -> dict[str, Any]:
    """One library factor: formula, canonical tokens, metrics per split, explanation, request, the pools
    it is in and its monitoring state."""
    fid = Q.find_id(store, Factor, factor_id, "factor", "finllm factors list")
    with store.session() as s:
        f = s.get(Factor, fid)
        assert f is not None
        out = factor_row(f)
        out.update(tokens=list(f.tokens), metrics=f.metrics or {}, explanation=f.explanation,
                   request_text=f.request_text, expr_hash=f.expr_hash)
    out["pools"] = [{"run_id": r, "weight": w} for r, w in Q.factor_pools(store, fid)]
    out["monitoring"] = Q.factor_monitoring(store, fid)
    return json_safe(out)


def _export_ids(store: Store, factor_ids: Sequence[str], run_id: str | None) -> list[Factor]:
    ids = [Q.find_id(store, Factor, i, "factor", "finllm factors list") for i in factor_ids]
    if run_id:
        rid = Q.find_id(store, Run, run_id, "run", "finllm runs list")
        pool = [f.id for f, _ in store.pool(rid)]
        if not pool:
            raise DataError(f"run {rid} has no stored pool (only factor_mine runs have one)")
        ids += [i for i in pool if i not in ids]
    if not ids:
        raise ConfigError("name factor ids (finllm factors list) or --run RUN_ID")
    with store.session() as s:
        return [s.get(Factor, i) for i in ids]  # type: ignore[misc]


def export_factors(store: Store, factor_ids: Sequence[str], *, data: str | Path, out: str | Path,
                   run_id: str | None = None, start: str | None = None, end: str | None = None,
                   max_tickers: int | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Evaluate library factors on a market and write their values as one parquet file.

    Layout (long, one row per valid (date, ticker)): ``date`` (date), ``ticker`` (str), ``in_universe``
    (bool), then one float32 column per factor named by its id (null where the factor has no value).
    The file's key-value metadata ``finllm`` holds, per column, the formula, canonical tokens and source.
    History before ``start`` is loaded for the rolling windows and not written: as many calendar days as
    hold the trading days the factors need (:func:`factors.expr.needed_history`; nested windows add up)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from factors.evaluate import Evaluator
    from factors.panel import load_panel
    from factors.splits import calendar_days_for, history_needed

    say = progress or (lambda _msg: None)
    factors = _export_ids(store, factor_ids, run_id)
    load_from = None
    if start:
        warmup = calendar_days_for(history_needed([f.tokens for f in factors]))
        try:
            load_from = dt.date.fromisoformat(start) - dt.timedelta(days=warmup)
        except ValueError:
            raise ConfigError(f"--start {start!r}: not a date (use YYYY-MM-DD)") from None
    say(f"loading {data}")
    panel = load_panel(data, start=load_from, end=end, max_tickers=max_tickers)
    ev = Evaluator(panel)
    dates = np.asarray(panel.dates).astype("datetime64[D]")
    keep_days = dates >= np.datetime64(start, "D") if start else np.ones(len(dates), dtype=bool)
    rows = panel.valid.numpy() & keep_days[:, None]  # (D, S)
    d_idx, s_idx = np.nonzero(rows)
    if not len(d_idx):
        raise DataError(f"{data}: no valid rows between {start or 'the start'} and {end or 'the end'}")
    cols: dict[str, Any] = {"date": pa.array(dates[d_idx]), "ticker": pa.array(np.asarray(panel.tickers)[s_idx]),
                            "in_universe": pa.array(panel.in_universe.numpy()[d_idx, s_idx])}
    meta = {}
    for k, f in enumerate(factors):
        say(f"evaluating {k + 1}/{len(factors)}: {f.formula}")
        expr = ev.parse(list(f.tokens))  # raises ExpressionError naming a field this market lacks
        v = ev.evaluate(expr).numpy()[d_idx, s_idx]
        cols[f.id] = pa.array(v, mask=~np.isfinite(v))
        meta[f.id] = {"formula": f.formula, "tokens": list(f.tokens), "source": f.source}
    table = pa.table(cols).replace_schema_metadata({"finllm": json.dumps(
        {"factors": meta, "data": str(Path(data).resolve()), "run_id": run_id})})
    out = Path(out)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return {"path": str(out.resolve()), "rows": int(len(d_idx)), "factors": [f.id for f in factors],
            "formulas": {f.id: f.formula for f in factors}, "first_date": str(dates[d_idx].min()),
            "last_date": str(dates[d_idx].max()), "tickers": int(len(np.unique(s_idx)))}
