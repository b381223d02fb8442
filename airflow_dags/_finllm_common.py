"""Shared bits of the finllm DAGs (not a DAG file: listed in .airflowignore).

Airflow puts the DAG bundle folder on ``sys.path``, so DAG files import this as ``_finllm_common``.
Everything heavy (torch, polars, the store) is imported inside tasks: parsing a DAG file costs only the
Airflow SDK import.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

# Retries for every task, with exponential back-off. Tests set FINLLM_AIRFLOW_RETRIES=0 so that a real
# failure shows at once instead of waiting out the delay.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "finllm",
    "retries": int(os.environ.get("FINLLM_AIRFLOW_RETRIES", "2")),
    "retry_delay": dt.timedelta(minutes=float(os.environ.get("FINLLM_AIRFLOW_RETRY_MINUTES", "5"))),
    "retry_exponential_backoff": 2.0,
}

START_DATE = dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)

# Shipped data lives in <repo>/data; a deployment points FINLLM_DATA_DIR at its own copy (or passes
# absolute paths as params).
DATA_DIR = Path(os.environ.get("FINLLM_DATA_DIR") or Path(__file__).resolve().parent.parent / "data")


def data_path(rel: str) -> str:
    return str(DATA_DIR / rel)


def run_day(context: Any) -> str:
    """The business date this run is about (ISO): ``params.date`` if set, else the logical date, else
    the time the run was queued for (manual runs in Airflow 3 may have no logical date)."""
    params = context.get("params") or {}
    if params.get("date"):
        return dt.date.fromisoformat(str(params["date"])).isoformat()
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.date().isoformat()


def run_key(context: Any, step: str) -> str:
    """Idempotency key of one step of one run: the same DAG, step and day always map to the same
    store rows, so a re-run (retry, clear, backfill) replaces them instead of adding more."""
    return f"{context['dag'].dag_id}/{step}/{run_day(context)}"


def opt(value: Any) -> Any:
    """A param that may be blank -> None."""
    return None if value in (None, "") else value


def reports_dir(params: dict[str, Any]) -> str:
    """Where reports go: ``params.reports_dir`` or ``$FINLLM_HOME/reports``."""
    if params.get("reports_dir"):
        return str(params["reports_dir"])
    from finllm.config import load_settings

    return str(Path(load_settings().home) / "reports")


def publish_report(run_id: str, out_dir: str, *, narrative: bool = True) -> dict[str, Any]:
    """Write ``<out_dir>/<run_id>.html`` for a factor_mine / fraud_train run (narrative first if the run
    has none; a failed narrative never fails the report) and record its path on the run."""
    from finllm.reports.html import publish
    from finllm.store import open_store
    from finllm.store.tables import Run

    store = open_store()
    info = publish(run_id, store, Path(out_dir) / f"{run_id}.html", narrative=narrative)
    with store.session() as s:  # record the path without touching the run's status or times
        row = s.get(Run, run_id)
        row.artifacts = {**(row.artifacts or {}), "report": info["path"]}
    return {"run_id": run_id, "kind": info["kind"], "report": info["path"], "narrative": info["narrative"]}


# Heavy tasks (mining, GNN training, LLM steps) go to their own queue and pool on a real deployment:
# FINLLM_AIRFLOW_HEAVY_QUEUE=heavy (Celery workers started with `-q heavy`) and
# FINLLM_AIRFLOW_HEAVY_POOL=finllm_heavy (`airflow pools set finllm_heavy 2 ...`).
HEAVY: dict[str, Any] = {
    "queue": os.environ.get("FINLLM_AIRFLOW_HEAVY_QUEUE", "default"),
    "pool": os.environ.get("FINLLM_AIRFLOW_HEAVY_POOL", "default_pool"),
}
