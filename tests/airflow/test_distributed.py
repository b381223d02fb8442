"""Airflow as the distributed engine, for real: PostgreSQL + Redis + scheduler + dag-processor + API
server + TWO Celery workers on loopback (cluster.py). Both pipelines are triggered for one date on small
slices; the tests check that the runs succeed, that finllm's PostgreSQL store holds their rows, that the
tasks ran on both workers (heavy tasks on the heavy-queue worker, in the heavy pool), that the LLM tasks
took the endpoint and key from the Airflow Connection and wrote the key nowhere, and that clearing tasks
re-runs them without duplicating a row. CI runs it (``make test``); ``-m "not slow"`` leaves it out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from finllm.llm.server import read_registry
from tests.airflow.cluster import LLM_KEY, AirflowCluster
from tests.airflow.conftest import _seed_store
from tests.airflow.drive_dags import snapshot

pytestmark = [pytest.mark.postgres, pytest.mark.llm, pytest.mark.slow, pytest.mark.timeout(1800)]

DAY = "2021-04-19"  # a Monday: the factor pipeline monitors (no mining), the fraud pipeline trains and scores
FACTOR_CONF = {"max_tickers": 20, "lookback_days": 200, "horizon": 5, "ic_window": 10, "narrative": False}
FRAUD_CONF = {"model": "hsign", "setting": "semi", "seeds": 1, "epochs": 5, "llm_budget": 1, "explain_top": 1,
              "force_training": True}
FACTOR, FRAUD = ("factor_pipeline", "dist_factor"), ("fraud_pipeline", "dist_fraud")
HEAVY = {"train_detector", "explain_top_alerts"}
RUN_TIMEOUT_S = 600  # guards only (a loaded machine is slow: every LLM call of the 135M model counts)


@pytest.fixture(scope="module")
def cluster(postgres_server: str, local_llm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Start everything, run both pipelines, then clear one task of each run and wait again. Yields
    the task instances, states and store snapshots of both rounds. The LLM tasks reach the real local
    server through the Airflow Connection ``finllm_llm`` (cluster.py)."""
    c = AirflowCluster(tmp_path_factory.mktemp("airflow_cluster"), postgres_server, local_llm)
    try:
        c.configure()
        c.start_redis()
        c.airflow("db", "migrate")
        c.start_airflow()
        c.airflow("dags", "reserialize")
        import_errors = c.airflow("dags", "list-import-errors").stdout
        c.airflow("pools", "set", "finllm_heavy", "1", "mining, training and LLM steps")
        seeded = _seed_store(c.finllm_url)
        c.trigger(*FACTOR, DAY, FACTOR_CONF)
        c.trigger(*FRAUD, DAY, FRAUD_CONF)
        first = c.wait([FACTOR, FRAUD], RUN_TIMEOUT_S)
        out = {"first": first, "seeded": seeded, "api_healthy": c.api_healthy(), "import_errors": import_errors,
               "tis": {key[0]: c.task_instances(*key) for key in (FACTOR, FRAUD)},
               "store": snapshot(c.finllm_url), "home": Path(c.env["FINLLM_HOME"]), "diag": c.diagnostics()}
        # a cleared task (and what follows it) runs again; keyed writes must replace, not add, rows.
        # (-t is a regex searched in task ids; Airflow 3.3 selects nothing for an anchored "^...$")
        c.airflow("tasks", "clear", FACTOR[0], "-t", "evaluate_library", "-d", "-y", "-s", DAY, "-e", DAY)
        c.airflow("tasks", "clear", FRAUD[0], "-t", "score_graph", "-d", "-y", "-s", DAY, "-e", DAY)
        out["second"] = c.wait([FACTOR, FRAUD], RUN_TIMEOUT_S / 2)
        out["tis_after_clear"] = {key[0]: c.task_instances(*key) for key in (FACTOR, FRAUD)}
        out["store_after_clear"] = snapshot(c.finllm_url)
        out["diag"] = c.diagnostics()
        out["embedded_server"] = read_registry(int(c.env["FINLLM_LLM_PORT"]))
        out["root"] = c.root
        yield out
    finally:
        c.stop()


def test_both_pipelines_succeed_on_celery_workers(cluster: dict) -> None:
    assert cluster["first"] == {FACTOR: "success", FRAUD: "success"}, cluster["diag"]
    assert cluster["api_healthy"]
    assert "No data found" in cluster["import_errors"], cluster["import_errors"]
    factor, fraud = cluster["tis"]["factor_pipeline"], cluster["tis"]["fraud_pipeline"]
    assert factor["mine_pool"]["state"] == "skipped" and factor["record_day"]["state"] == "success"
    assert all(ti["state"] == "success" for ti in fraud.values()), fraud


def test_tasks_ran_on_both_workers_heavy_ones_on_the_heavy_queue(cluster: dict) -> None:
    ran = [(dag, ti) for dag, tis in cluster["tis"].items() for ti in tis.values() if ti["state"] == "success"]
    hosts = {ti["hostname"] for _, ti in ran}
    assert hosts == {"w1", "w2"}, hosts
    for _, ti in ran:
        if ti["task_id"] in HEAVY:
            assert (ti["hostname"], ti["queue"], ti["pool"]) == ("w2", "heavy", "finllm_heavy"), ti
        else:
            assert (ti["hostname"], ti["queue"], ti["pool"]) == ("w1", "default", "default_pool"), ti


def test_rows_land_in_the_postgres_store(cluster: dict) -> None:
    store = cluster["store"]
    keys = {r[2]: r for r in store["runs"]}
    assert f"factor_pipeline/monitor/{DAY}" in keys and f"fraud_pipeline/train/{DAY}" in keys
    assert all(r[3] == "finished" for r in keys.values()), keys
    assert set(cluster["seeded"]) <= {r[0] for r in store["factor_daily_metrics"]}
    assert len(store["fraud_models"]) == 1
    assert store["alerts"] and {r[1] for r in store["alerts"]} == {DAY}
    assert store["alerts_explained"] >= 1
    # the model trained on w2 was scored on w1: the shared FINLLM_HOME holds its weights
    assert any((cluster["home"] / "models").rglob("*")), "no model files under the shared FINLLM_HOME"


def test_cleared_tasks_rerun_without_duplicates(cluster: dict) -> None:
    assert cluster["second"] == {FACTOR: "success", FRAUD: "success"}, cluster["diag"]
    before, after = cluster["tis"], cluster["tis_after_clear"]
    for dag, task in (("factor_pipeline", "evaluate_library"), ("factor_pipeline", "record_day"),
                      ("fraud_pipeline", "score_graph"), ("fraud_pipeline", "explain_top_alerts")):
        assert after[dag][task]["try_number"] == before[dag][task]["try_number"] + 1, (dag, task)
        assert after[dag][task]["state"] == "success"
    train = "fraud_pipeline", "train_detector"  # upstream of the cleared task: not run again
    assert after[train[0]][train[1]]["try_number"] == before[train[0]][train[1]]["try_number"]
    a, b = cluster["store"], cluster["store_after_clear"]
    for table in ("runs", "factors", "factor_daily_metrics", "fraud_models", "alerts"):
        assert a[table] == b[table], table
    assert a["alerts_explained"] == b["alerts_explained"]


def test_llm_endpoint_and_key_come_from_the_airflow_connection(cluster: dict) -> None:
    store = cluster["store"]
    train_id = next(r[0] for r in store["runs"] if r[1] == "fraud_train")
    usage = store["run_metrics"][train_id]["supervisor"][0]["llm"]["usage"]
    assert usage["calls"] + usage["cached"] >= 1, usage  # the supervisor asked the LLM ...
    assert cluster["embedded_server"] is None  # ... at the Connection's endpoint: no embedded server started
    assert LLM_KEY not in json.dumps(cluster["store_after_clear"], default=str)
    key = LLM_KEY.encode()
    leaked = [str(p) for p in cluster["root"].rglob("*") if p.is_file() and key in p.read_bytes()]
    assert leaked == [], f"the API key was written to {leaked}"
