"""Airflow harness: a temp AIRFLOW_HOME with SQLite metadata (``airflow db migrate``), a temp finllm
store seeded with a few hand-written factors, and ONE driver process (drive_dags.py) that parses the
DAG folder and runs every planned ``dag.test()`` in order. Airflow's start-up (~15 s) is paid once.

Slices keep the whole folder inside its CI budget (240 s on 2 cores): 20 tickers, short windows,
a mining budget of seconds, a few training epochs and LLM calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_llm import _free_port

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "airflow_dags"
DRIVER = Path(__file__).with_name("drive_dags.py")
AIRFLOW = Path(sys.executable).with_name("airflow")

SEED_FACTORS = [  # (formula, reference validation IC or None)
    ("Mean($close, 5) / $close", 0.03),
    ("-Corr($close, $volume, 10)", 0.02),
    ("Std($close, 20) / $close", None),
]

FRIDAY, SUNDAY, MONDAY = "2021-04-16", "2021-04-18", "2021-04-19"

FACTOR_CONF = {"max_tickers": 20, "lookback_days": 200, "horizon": 5, "ic_window": 10,
               "mine_minutes": 0.5, "mine_max_factors": 30, "mine_years": 3, "pool_size": 3,
               "mine_method": "gp", "narrative": False}
FRAUD_CONF = {"model": "hsign", "setting": "semi", "seeds": 1, "epochs": 5, "llm_budget": 2, "explain_top": 1}


def plan_steps() -> list[dict]:
    return [
        {"label": "factor_1", "dag_id": "factor_pipeline", "logical_date": FRIDAY, "conf": FACTOR_CONF},
        {"label": "factor_2", "dag_id": "factor_pipeline", "logical_date": FRIDAY, "conf": FACTOR_CONF},
        {"label": "factor_monday", "dag_id": "factor_pipeline", "logical_date": MONDAY, "conf": FACTOR_CONF},
        {"label": "factor_bad", "dag_id": "factor_pipeline", "logical_date": MONDAY,
         "conf": {**FACTOR_CONF, "data": str(REPO / "data" / "no_such_market.parquet")}},
        {"label": "fraud_1", "dag_id": "fraud_pipeline", "logical_date": SUNDAY, "conf": FRAUD_CONF},
        {"label": "fraud_2", "dag_id": "fraud_pipeline", "logical_date": SUNDAY, "conf": FRAUD_CONF},
        # Monday scores with Sunday's model; its explanations (LLM calls, ~15-35 s) are the same code as Sunday's
        {"label": "fraud_monday", "dag_id": "fraud_pipeline", "logical_date": MONDAY,
         "conf": {**FRAUD_CONF, "explain_top": 0}},
        {"label": "reports_1", "dag_id": "reports", "logical_date": MONDAY, "conf": {"narrative": False}},
        {"label": "reports_2", "dag_id": "reports", "logical_date": MONDAY, "conf": {"narrative": False}},
    ]


def _env(home: Path, llm_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FINLLM_"))}
    env.update({
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "FINLLM_HOME": str(home / "finllm"),
        "FINLLM_DATABASE_URL": f"sqlite:///{home / 'finllm' / 'finllm.db'}",
        "FINLLM_AIRFLOW_RETRIES": "0",
        "FINLLM_LLM_MAX_CALLS": "50",
        "FINLLM_LLM_PORT": str(_free_port()),  # only used when no local_llm: never a user's 8765
        "PYTHONWARNINGS": "ignore",
    })
    if llm_url:
        env["FINLLM_LLM_BASE_URL"] = llm_url
    return env


def _seed_store(url: str) -> list[str]:
    from factors.expr import parse
    from finllm.store import open_store

    store = open_store(url)
    ids = []
    for formula, ic in SEED_FACTORS:
        e = parse(formula)
        ids.append(store.save_factor(e.tokens, e.infix, "human", metrics={"valid": {"ic": ic}} if ic else {}))
    store.dispose()
    return ids


@pytest.fixture(scope="session")
def airflow_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict:
    """Migrate a temp Airflow metadata DB, seed the store, run the plan; returns the driver's JSON
    plus ``home``, ``env``, ``seeded`` ids and the driver's ``log`` tail.

    The fraud supervisor talks to the real embedded LLM (``local_llm``); where that cannot run, the
    DAGs still run and the supervisor records its LLM failures (LLM output never fails training)."""
    try:
        llm_url = request.getfixturevalue("local_llm")
    except pytest.skip.Exception:
        llm_url = None
    home = tmp_path_factory.mktemp("airflow_dags")
    env = _env(home, llm_url)
    mig = subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert mig.returncode == 0, mig.stdout[-2000:] + mig.stderr[-2000:]
    seeded = _seed_store(env["FINLLM_DATABASE_URL"])
    plan, out = home / "plan.json", home / "result.json"
    plan.write_text(json.dumps({"dags_folder": str(DAGS), "steps": plan_steps()}))
    log_path = home / "driver.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.run([sys.executable, str(DRIVER), str(plan), str(out)], env=env, cwd=home,
                              stdout=log_file, stderr=subprocess.STDOUT, text=True, timeout=1500)
    full_log = log_path.read_text(errors="replace")
    assert out.exists(), f"driver wrote nothing (exit {proc.returncode}):\n{full_log[-6000:]}"
    result = json.loads(out.read_text())
    result.update(home=str(home), env=env, seeded=seeded, log=full_log[-6000:], full_log=full_log,
                  returncode=proc.returncode)
    return result


@pytest.fixture(scope="session")
def steps(airflow_run: dict) -> dict[str, dict]:
    return {s["label"]: s for s in airflow_run["steps"]}
