"""Use case: score a graph into alerts (``finllm fraud score``, the fraud_pipeline's ``score_graph``, the
demo) and check a graph file before the pipeline uses it.

Scoring itself (:func:`fraud.score.score_graph`) runs inside one ``fraud_score`` run: every node's score
to CSV, the alerts of (model, batch) replaced in the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from finllm.errors import DataError
from finllm.store import queries as Q

if TYPE_CHECKING:
    from finllm.store.db import Store


def dataset_keys(data: str | Path) -> set[str]:
    """Names a stored model's ``dataset`` column may hold for the graph at ``data``."""
    p = Path(data)
    return {str(data), str(p.resolve()), p.name, p.stem}


def latest_model(data: str | Path, store: Store | None = None) -> str | None:
    """Id of the newest stored model trained on the graph at ``data`` (None if there is none)."""
    from finllm.store.db import store_or_default

    row = Q.latest_model(store_or_default(store), dataset_keys(data))
    return row.id if row is not None else None


def check_graph(data: str | Path) -> dict[str, Any]:
    """Load the graph (DataError on a bad file) and return its scalar summary."""
    from fraud.datasets import load_graph

    summary = load_graph(data).summary()
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool, type(None)))}


def score_and_record(data: str | Path, store: Store, *, batch: str = "", model_id: str | None = None,
                     csv_path: str | Path | None = None, top: int = 1000, idempotency_key: str | None = None,
                     nodes: Path | None = None, shown: int = 10) -> dict[str, Any]:
    """Score every node of the graph at ``data`` with ``model_id`` (default: the newest model for this
    graph); returns the run's figures, the CSV path and the ``shown`` highest-ranked rows."""
    from fraud.score import score_graph

    model_id = model_id or latest_model(data, store)
    if model_id is None:
        raise DataError(f"{data}: no trained model for this graph in {store.url}; train one first "
                        "(`finllm fraud train --data ...` or the fraud_pipeline's train_detector)")
    df = score_graph(model_id, data, store, batch, csv_path=csv_path, top=top, idempotency_key=idempotency_key,
                     **({"nodes": nodes} if nodes else {}))
    return {"model_id": model_id, "batch": batch, "run_id": df.attrs["run_id"], "csv": df.attrs["csv"],
            "alerts_saved": df.attrs["alerts_saved"], **df.attrs["metrics"],
            "top": df.head(shown).to_dict(orient="records")}


def score_batch(data: str | Path, *, batch: str, model_id: str | None = None, idempotency_key: str | None = None,
                top: int = 1000, store: Store | None = None) -> dict[str, Any]:
    """:func:`score_and_record` for a scheduled batch (the DAG, the demo): only the small figures
    (ids, counts) that go through XCom."""
    from finllm.store.db import store_or_default

    info = score_and_record(data, store_or_default(store), batch=batch, model_id=model_id, top=top,
                            idempotency_key=idempotency_key, shown=0)
    return {k: info.get(k) for k in ("model_id", "batch", "run_id", "nodes", "above_threshold", "alerts_saved")}
