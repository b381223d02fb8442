"""The DAGs parse, and each runs end to end with ``dag.test()`` on slices of the shipped data; a second
run of the same logical date leaves the same rows. See conftest.py for the plan (one driver process)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.airflow.conftest import FRIDAY, MONDAY, SUNDAY

# the session fixture runs every DAG in its first test's set-up: a guard for a loaded machine, not a budget
pytestmark = pytest.mark.timeout(1800)

EXPECTED_DAGS = {"factor_pipeline", "fraud_pipeline", "reports"}


def _ok(step: dict, log: str) -> None:
    assert step["state"] == "success", (
        f"{step['label']}: {step['state']} {step.get('tasks')}\n{step.get('error', '')}\n--- driver log ---\n{log}")


def test_dagbag_imports_without_errors(airflow_run: dict) -> None:
    assert airflow_run["import_errors"] == {}
    assert set(airflow_run["dags"]) == EXPECTED_DAGS
    for dag_id, d in airflow_run["dags"].items():
        assert d["doc"], f"{dag_id} has no doc_md"
        assert "data" in d["params"] or dag_id == "reports"


def test_factor_pipeline_runs_daily_and_weekly_branches(airflow_run: dict, steps: dict) -> None:
    first = steps["factor_1"]
    _ok(first, airflow_run["log"])
    assert set(first["tasks"]) == {"validate_market_data", "evaluate_library", "monitor_decay", "record_day",
                                   "is_mining_day", "mine_pool", "summarize_and_report", "library_ready"}
    assert all(s == ["success"] for s in first["tasks"].values()), first["tasks"]  # Friday: mining ran
    store = first["store"]
    metrics = store["factor_daily_metrics"]
    seeded = set(airflow_run["seeded"])
    assert seeded <= {r[0] for r in metrics}, "every seeded factor got daily metrics"
    # no look-ahead: the newest IC date leaves room for the 5-day forward return before the run's day
    newest = max(r[1] for r in metrics)
    assert dt.date.fromisoformat(newest) <= dt.date.fromisoformat(FRIDAY) - dt.timedelta(days=5)
    assert any(r[4] is not None for r in metrics), "rolling IC computed"
    kinds = {r[1]: r for r in store["runs"]}
    assert {"factor_monitor", "factor_mine"} <= set(kinds)
    mine_id = kinds["factor_mine"][0]
    assert kinds["factor_mine"][2] == f"factor_pipeline/mine/{FRIDAY}"
    report = Path(store["run_artifacts"][mine_id]["report"])
    assert report.is_file() and report.stat().st_size > 1000
    assert any(r[0] == mine_id for r in store["pool_members"]), "the mined pool was saved"


def test_factor_pipeline_rerun_same_day_leaves_same_rows(airflow_run: dict, steps: dict) -> None:
    a, b = steps["factor_1"], steps["factor_2"]
    _ok(b, airflow_run["log"])
    for table in ("runs", "factors", "pool_members", "factor_daily_metrics"):
        assert a["store"][table] == b["store"][table], table


def test_factor_pipeline_skips_mining_on_other_days(airflow_run: dict, steps: dict) -> None:
    mon = steps["factor_monday"]
    _ok(mon, airflow_run["log"])
    assert mon["tasks"]["record_day"] == ["success"]
    assert mon["tasks"]["mine_pool"] == ["skipped"] and mon["tasks"]["summarize_and_report"] == ["skipped"]
    keys = {r[2] for r in mon["store"]["runs"]}
    assert f"factor_pipeline/monitor/{MONDAY}" in keys and f"factor_pipeline/mine/{MONDAY}" not in keys


def test_factor_pipeline_fails_clearly_on_missing_data(airflow_run: dict, steps: dict) -> None:
    bad = steps["factor_bad"]
    assert bad["state"] == "failed"
    assert bad["tasks"]["validate_market_data"] == ["failed"]
    assert bad["tasks"]["evaluate_library"] == ["upstream_failed"]
    assert "no_such_market.parquet: no such file" in airflow_run["full_log"]


def test_fraud_pipeline_trains_scores_and_explains(airflow_run: dict, steps: dict) -> None:
    first = steps["fraud_1"]
    _ok(first, airflow_run["log"])
    assert all(s == ["success"] for s in first["tasks"].values()), first["tasks"]  # Sunday: training ran
    store = first["store"]
    train = [r for r in store["runs"] if r[1] == "fraud_train"]
    assert [r[2] for r in train] == [f"fraud_pipeline/train/{SUNDAY}"]
    assert len(store["fraud_models"]) == 1 and store["fraud_models"][0][0] == train[0][0]
    alerts = store["alerts"]
    assert alerts and {r[1] for r in alerts} == {SUNDAY}
    assert store["alerts_explained"] >= 1
    sup = store["run_metrics"][train[0][0]]["supervisor"]
    assert sup and sup[0]["status"] in ("applied", "no_signal", "endpoint_failed"), sup
    if "FINLLM_LLM_BASE_URL" in airflow_run["env"]:  # the real local LLM was asked during training
        usage = sup[0]["llm"]["usage"]
        assert usage["calls"] + usage["cached"] >= 1, sup


def test_fraud_pipeline_rerun_same_day_leaves_same_rows(airflow_run: dict, steps: dict) -> None:
    a, b = steps["fraud_1"], steps["fraud_2"]
    _ok(b, airflow_run["log"])
    assert [r[1:] for r in a["store"]["alerts"]] == [r[1:] for r in b["store"]["alerts"]]
    for table in ("runs", "fraud_models"):
        assert len(a["store"][table]) == len(b["store"][table]), table
    assert a["store"]["alerts_explained"] == b["store"]["alerts_explained"]


def test_fraud_pipeline_scores_with_existing_model_on_other_days(airflow_run: dict, steps: dict) -> None:
    mon = steps["fraud_monday"]
    _ok(mon, airflow_run["log"])
    assert mon["tasks"]["train_detector"] == ["skipped"]
    assert mon["tasks"]["score_graph"] == ["success"]
    batches = {r[1] for r in mon["store"]["alerts"]}
    assert batches == {SUNDAY, MONDAY}
    assert len(mon["store"]["fraud_models"]) == 1


def test_reports_dag_rebuilds_latest_reports(airflow_run: dict, steps: dict) -> None:
    r1, r2 = steps["reports_1"], steps["reports_2"]
    _ok(r1, airflow_run["log"])
    _ok(r2, airflow_run["log"])
    built = r1["tasks"]["build_report"]
    assert built == ["success", "success"], built  # one mined pool + one fraud training run
    arts = r2["store"]["run_artifacts"]
    reported = {rid: Path(a["report"]) for rid, a in arts.items() if "report" in a}
    kinds = {r[0]: r[1] for r in r2["store"]["runs"]}
    assert {kinds[rid] for rid in reported} == {"factor_mine", "fraud_train"}
    assert all(p.is_file() for p in reported.values())
    assert r1["store"]["runs"] == r2["store"]["runs"]


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dags_retry_tasks(airflow_run: dict, dag_id: str) -> None:
    # the harness sets FINLLM_AIRFLOW_RETRIES=0; the production default (2) is checked by parsing below
    assert airflow_run["dags"][dag_id]["retries"] == [0]


def test_default_retries_without_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from finllm.airflow_support import default_args, heavy

    for var in ("FINLLM_AIRFLOW_RETRIES", "FINLLM_AIRFLOW_RETRY_MINUTES", "FINLLM_AIRFLOW_TIMEOUT_MINUTES",
                "FINLLM_AIRFLOW_HEAVY_TIMEOUT_MINUTES", "FINLLM_AIRFLOW_HEAVY_QUEUE", "FINLLM_AIRFLOW_HEAVY_POOL"):
        monkeypatch.delenv(var, raising=False)
    args = default_args()
    assert args["retries"] == 2 and args["retry_delay"].total_seconds() == 300
    assert args["execution_timeout"].total_seconds() == 3600
    assert heavy() == {"queue": "default", "pool": "default_pool", "execution_timeout": dt.timedelta(hours=6)}
    monkeypatch.setenv("FINLLM_AIRFLOW_HEAVY_QUEUE", "heavy")
    monkeypatch.setenv("FINLLM_AIRFLOW_HEAVY_TIMEOUT_MINUTES", "90")
    assert heavy()["queue"] == "heavy" and heavy()["execution_timeout"] == dt.timedelta(minutes=90)
    monkeypatch.setenv("FINLLM_AIRFLOW_TIMEOUT_MINUTES", "soon")
    with pytest.raises(ValueError, match="FINLLM_AIRFLOW_TIMEOUT_MINUTES must be a number"):
        default_args()


HEAVY_TASKS = {"factor_pipeline": {"mine_pool", "summarize_and_report"},
               "fraud_pipeline": {"train_detector", "explain_top_alerts"},
               "reports": {"build_report"}}


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_every_task_has_an_execution_timeout(airflow_run: dict, dag_id: str) -> None:
    placement = airflow_run["dags"][dag_id]["placement"]
    for task_id, where in placement.items():
        expected = 6 * 3600 if task_id in HEAVY_TASKS[dag_id] else 3600
        assert where["timeout_s"] == expected, (task_id, where)


def test_dag_folder_holds_only_dag_files() -> None:
    folder = Path(__file__).parents[2] / "airflow_dags"
    files = sorted(p.name for p in folder.iterdir() if p.name != "__pycache__")
    assert files == ["factor_pipeline.py", "fraud_pipeline.py", "reports.py"], files
