"""Run finllm's DAGs with ``dag.test()`` in a fresh process and report what happened, as JSON.

Usage: python drive_dags.py PLAN.json OUT.json   (AIRFLOW_HOME etc. set by the caller; see conftest.py)

PLAN: {"dags_folder": str, "steps": [{"dag_id", "logical_date", "conf", "label"}]}. For each step the
driver records the DagRun state, every task's state, the wall time and a snapshot of the finllm store
(row counts and the identifying columns of every row), so a test can compare two runs of the same day.
The first ``dag.test()`` in a process pays ~15 s of Airflow start-up, which is why one process runs
every step (the test budget is small).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import traceback
from pathlib import Path

SNAPSHOT_COLUMNS = {  # identifying / result columns; timestamps and autoincrement ids are left out
    "runs": ("id", "kind", "idempotency_key", "status"),
    "factors": ("id", "expr_hash"),
    "pool_members": ("run_id", "factor_id", "position"),
    "factor_daily_metrics": ("factor_id", "date", "ic", "rank_ic", "rolling_ic", "decayed"),
    "fraud_models": ("run_id", "name", "dataset"),
    "alerts": ("model_id", "batch", "node", "rank", "above_threshold"),
}


def snapshot(url: str | None = None) -> dict:
    """The store at ``url`` (default: the configured one) as comparable rows."""
    from sqlalchemy import text

    from finllm.store import open_store

    store = open_store(url)
    out = {}
    with store.engine.connect() as conn:
        for table, cols in SNAPSHOT_COLUMNS.items():
            rows = conn.execute(text(f"SELECT {', '.join(cols)} FROM {table}")).all()
            out[table] = sorted([[round(v, 6) if isinstance(v, float) else v for v in r] for r in rows],
                                key=lambda r: json.dumps(r, default=str))
        out["alerts_explained"] = conn.execute(
            text("SELECT COUNT(*) FROM alerts WHERE explanation IS NOT NULL AND explanation != ''")).scalar()
        out["run_artifacts"] = {r[0]: json.loads(r[1]) if isinstance(r[1], str) else r[1]
                                for r in conn.execute(text("SELECT id, artifacts FROM runs")).all()}
        out["run_metrics"] = {r[0]: json.loads(r[1]) if isinstance(r[1], str) else r[1]
                              for r in conn.execute(text("SELECT id, metrics FROM runs")).all()}
    store.dispose()
    return out


def describe(dag) -> dict:
    return {"tasks": sorted(dag.task_ids), "schedule": str(getattr(dag, "schedule", None)),
            "retries": sorted({t.retries for t in dag.tasks}), "params": sorted(dag.params.keys()),
            "doc": bool(dag.doc_md),
            "placement": {t.task_id: {"queue": t.queue, "pool": t.pool,
                                      "timeout_s": t.execution_timeout.total_seconds() if t.execution_timeout else None}
                          for t in dag.tasks}}


def main(plan_path: str, out_path: str) -> None:
    from airflow.dag_processing.dagbag import BundleDagBag

    plan = json.loads(Path(plan_path).read_text())
    folder = plan["dags_folder"]
    result: dict = {"steps": []}
    t0 = time.time()
    bag = BundleDagBag(dag_folder=folder, bundle_path=Path(folder))
    result["import_errors"] = {str(k): v for k, v in bag.import_errors.items()}
    result["dags"] = {dag_id: describe(d) for dag_id, d in bag.dags.items()}
    result["parse_s"] = time.time() - t0
    Path(out_path).write_text(json.dumps(result, default=str))
    for step in plan["steps"]:
        rec = {"label": step.get("label", step["dag_id"]), "dag_id": step["dag_id"]}
        t0 = time.time()
        try:
            dag = bag.dags[step["dag_id"]]
            when = dt.datetime.fromisoformat(step["logical_date"]).replace(tzinfo=dt.timezone.utc)
            dr = dag.test(logical_date=when, run_conf=step.get("conf") or {})
            rec["state"] = str(dr.state)
            tis = dr.get_task_instances()
            rec["tasks"], rec["task_seconds"] = {}, {}
            for ti in sorted(tis, key=lambda t: (t.task_id, t.map_index)):  # mapped: every instance, in order
                rec["tasks"].setdefault(ti.task_id, []).append(str(ti.state))
                rec["task_seconds"].setdefault(ti.task_id, []).append(round(ti.duration or 0.0, 2))
        except Exception:  # noqa: BLE001 - reported to the test, which fails with it
            rec["state"] = "driver-error"
            rec["error"] = traceback.format_exc()[-4000:]
        rec["seconds"] = round(time.time() - t0, 2)
        try:
            rec["store"] = snapshot()
        except Exception:  # noqa: BLE001
            rec["store_error"] = traceback.format_exc()[-2000:]
        result["steps"].append(rec)
        Path(out_path).write_text(json.dumps(result, default=str))  # partial results survive a crash


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
