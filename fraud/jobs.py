"""Scheduled fraud jobs (what the ``fraud_pipeline`` DAG runs): graph check, supervised training,
daily scoring into alerts, explanations of the top alerts.

Thin orchestration over :mod:`fraud.datasets`, :mod:`fraud.supervisor.loop`, :mod:`fraud.score` and
:mod:`fraud.supervisor.explain`. Each job writes to the store and returns a small JSON-able dict.
Idempotent per day: a training run keyed ``fraud_pipeline/train/<day>`` that runs again first deletes
the model it made before (with that model's alerts), so one day never leaves two models; alerts are
replaced per (model, batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finllm.errors import DataError


def _store(store: Any) -> Any:
    if store is not None:
        return store
    from finllm.store import open_store

    return open_store()


def dataset_keys(data: str) -> set[str]:
    """Names a stored model's ``dataset`` column may hold for the graph at ``data``."""
    p = Path(data)
    return {str(data), str(p.resolve()), p.name, p.stem}


def check_graph(data: str) -> dict[str, Any]:
    """Load the graph (raises DataError on a bad file) and return its summary."""
    from fraud.datasets import load_graph

    ds = load_graph(data)
    summary = ds.summary()
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool, type(None)))}


def latest_model(data: str, store: Any = None) -> str | None:
    """Id of the newest stored model trained on the graph at ``data`` (None if there is none)."""
    from sqlalchemy import select

    from finllm.store.tables import FraudModel

    store = _store(store)
    with store.session() as s:
        row = s.scalar(select(FraudModel).where(FraudModel.dataset.in_(dataset_keys(data)))
                       .order_by(FraudModel.created_at.desc()).limit(1))
        return row.id if row else None


def forget_run_models(run_id: str, store: Any) -> int:
    """Delete the models (and, by cascade, their alerts) a run made before; returns how many."""
    from sqlalchemy import delete, select

    from finllm.store.tables import Alert, FraudModel

    with store.session() as s:
        ids = list(s.scalars(select(FraudModel.id).where(FraudModel.run_id == run_id)))
        if ids:
            s.execute(delete(Alert).where(Alert.model_id.in_(ids)))
            s.execute(delete(FraudModel).where(FraudModel.id.in_(ids)))
        return len(ids)


def score_job(data: str, *, batch: str, model_id: str | None = None, idempotency_key: str | None = None,
              top: int = 1000, store: Any = None) -> dict[str, Any]:
    """Score every node of the graph with ``model_id`` (default: the newest model for this graph); the
    alerts of (model, ``batch``) are replaced. Returns counts and the model id."""
    import inspect

    from fraud.score import score_graph

    store = _store(store)
    model_id = model_id or latest_model(data, store)
    if model_id is None:
        raise DataError(f"{data}: no trained model for this graph in {store.url}; train one first "
                        "(`finllm fraud train --data ...` or the fraud_pipeline's train_detector)")
    opts: dict[str, Any] = {}
    if idempotency_key and "idempotency_key" in inspect.signature(score_graph).parameters:
        opts["idempotency_key"] = idempotency_key  # see .helpers/REQUESTS.md (helper D)
    df = score_graph(model_id, data, store, batch, top=top, **opts)
    return {"model_id": model_id, "batch": batch, "run_id": df.attrs.get("run_id"), "nodes": int(len(df)),
            "above_threshold": int(df["above_threshold"].sum()), "alerts_saved": df.attrs.get("alerts_saved")}
