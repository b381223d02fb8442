"""Defaults and helpers shared by finllm's Airflow DAGs (``airflow_dags/``).

They live in the package, not in the DAG folder, so the DAG folder holds only DAG files and a worker
that has finllm installed needs nothing else on its ``sys.path``. Importing this module costs nothing
heavy: Airflow itself, torch, polars and the store are imported inside the tasks.

Deployment knobs (environment of the scheduler, the dag-processor and every worker):

| variable | default | meaning |
|---|---|---|
| ``FINLLM_AIRFLOW_RETRIES`` | 2 | retries of every task (exponential back-off) |
| ``FINLLM_AIRFLOW_RETRY_MINUTES`` | 5 | first retry delay |
| ``FINLLM_AIRFLOW_TIMEOUT_MINUTES`` | 60 | ``execution_timeout`` of the light tasks |
| ``FINLLM_AIRFLOW_HEAVY_TIMEOUT_MINUTES`` | 360 | ``execution_timeout`` of mining, training, LLM steps |
| ``FINLLM_AIRFLOW_HEAVY_QUEUE`` | ``default`` | Celery queue of the heavy tasks (workers: ``-q heavy``) |
| ``FINLLM_AIRFLOW_HEAVY_POOL`` | ``default_pool`` | Airflow pool of the heavy tasks (``airflow pools set``) |
| ``FINLLM_DATA_DIR`` | ``<repo>/data`` | where the default data params point |
| ``FINLLM_AIRFLOW_LLM_CONN_ID`` | ``finllm_llm`` | Airflow Connection with the LLM endpoint and key (optional) |
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from airflow.sdk import Context

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def default_args() -> dict[str, object]:
    """``default_args`` of every finllm DAG: owner, retries with exponential back-off, and the light
    tasks' ``execution_timeout`` (heavy tasks override it through :func:`heavy`)."""
    return {
        "owner": "finllm",
        "retries": int(_env_float("FINLLM_AIRFLOW_RETRIES", 2)),
        "retry_delay": dt.timedelta(minutes=_env_float("FINLLM_AIRFLOW_RETRY_MINUTES", 5)),
        "retry_exponential_backoff": 2.0,
        "execution_timeout": dt.timedelta(minutes=_env_float("FINLLM_AIRFLOW_TIMEOUT_MINUTES", 60)),
    }


class HeavyTaskArgs(TypedDict):
    queue: str
    pool: str
    execution_timeout: dt.timedelta


def heavy() -> HeavyTaskArgs:
    """Task arguments of the expensive tasks (mining, GNN training, LLM steps): their own Celery queue
    and Airflow pool, and a longer ``execution_timeout``. Use as ``@task(**heavy())``."""
    return {
        "queue": os.environ.get("FINLLM_AIRFLOW_HEAVY_QUEUE", "default"),
        "pool": os.environ.get("FINLLM_AIRFLOW_HEAVY_POOL", "default_pool"),
        "execution_timeout": dt.timedelta(minutes=_env_float("FINLLM_AIRFLOW_HEAVY_TIMEOUT_MINUTES", 360)),
    }


START_DATE = dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)


def dag_settings(dag_id: str, *, description: str, schedule: str, params: Mapping[str, object],
                 tags: list[str], doc_md: str | None) -> dict[str, object]:
    """Keyword arguments of ``@dag`` for a finllm pipeline: the shared start date, no catch-up, one
    active run at a time, :func:`default_args`, and the ``finllm`` tag beside the pipeline's own. Use as
    ``@dag(**dag_settings(...))``."""
    return {"dag_id": dag_id, "description": description, "schedule": schedule, "start_date": START_DATE,
            "catchup": False, "max_active_runs": 1, "default_args": default_args(), "params": dict(params),
            "tags": ["finllm", *tags], "doc_md": doc_md}


def data_dir() -> Path:
    """Shipped data lives in ``<repo>/data``; a deployment points ``FINLLM_DATA_DIR`` at its own copy
    (or passes absolute paths as params)."""
    return Path(os.environ.get("FINLLM_DATA_DIR") or Path(__file__).resolve().parent.parent / "data")


def data_path(rel: str) -> str:
    return str(data_dir() / rel)


def run_day(context: Context | Mapping[str, object]) -> str:
    """The business date this run is about (ISO): ``params.date`` if set, else the logical date, else
    the time the run was queued for (manual runs in Airflow 3 may have no logical date)."""
    params = context.get("params") or {}
    if params.get("date"):
        return dt.date.fromisoformat(str(params["date"])).isoformat()
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.date().isoformat()


def run_key(context: Context | Mapping[str, object], step: str) -> str:
    """Idempotency key of one step of one run: the same DAG, step and day always map to the same
    store rows, so a re-run (retry, clear, backfill) replaces them instead of adding more."""
    return f"{context['dag'].dag_id}/{step}/{run_day(context)}"


def opt(value: JsonValue) -> JsonValue:
    """A param that may be blank -> None."""
    return None if value in (None, "") else value


def reports_dir(params: Mapping[str, JsonValue]) -> str:
    """Where reports go: ``params.reports_dir`` or ``$FINLLM_HOME/reports``."""
    if params.get("reports_dir"):
        return str(params["reports_dir"])
    from finllm.config import load_settings

    return str(Path(load_settings().home) / "reports")


def use_llm_connection(conn_id: str | None = None) -> str | None:
    """Point this task's LLM gateway at the endpoint of an Airflow Connection, if there is one.

    The Connection (``finllm_llm``, or ``FINLLM_AIRFLOW_LLM_CONN_ID``) holds the endpoint's base URL as
    ``host``, the API key as ``password`` and the model as ``extra.model``; each fills the matching
    variable (``FINLLM_LLM_BASE_URL``, ``OPENAI_API_KEY``, ``FINLLM_LLM_MODEL``) only where the task's
    environment leaves it unset. The key goes into this task process's environment only (the process
    ends with the task) and Airflow masks it in task logs. Returns the connection id used, or None.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    conn_id = conn_id or os.environ.get("FINLLM_AIRFLOW_LLM_CONN_ID", "finllm_llm")
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    if conn.host and "://" not in conn.host:
        raise ValueError(f"Airflow connection {conn_id}: host must be the endpoint's base URL "
                         f"(e.g. https://api.openai.com/v1), got {conn.host!r}")
    values = {"FINLLM_LLM_BASE_URL": conn.host, "OPENAI_API_KEY": conn.password,
              "FINLLM_LLM_MODEL": conn.extra_dejson.get("model")}
    for var, value in values.items():
        if value and not os.environ.get(var):
            os.environ[var] = str(value)
    return conn_id


def publish_report(run_id: str, out_dir: str, *, narrative: bool = True) -> dict[str, JsonValue]:
    """Write ``<out_dir>/<run_id>.html`` for a factor_mine / fraud_train run (narrative first if the run
    has none; a failed narrative never fails the report) and record its path on the run."""
    from finllm.app.report import build_report
    from finllm.store import open_store
    from finllm.store.tables import Run

    store = open_store()
    try:
        info = build_report(store, run_id, Path(out_dir) / f"{run_id}.html", narrative=narrative)
        with store.session() as s:  # record the path without touching the run's status or times
            row = s.get(Run, run_id)
            row.artifacts = {**(row.artifacts or {}), "report": info["path"]}
    finally:
        store.dispose()
    return {"run_id": run_id, "kind": info["kind"], "report": info["path"], "narrative": info["narrative"]}
