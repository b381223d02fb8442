"""factor_pipeline: daily factor monitoring, and a weekly mining run that refreshes the pool.

One DAG, scheduled every weekday after the close (22:00 UTC):

    validate_market_data ─> is_mining_day ─> mine_pool ─> summarize_and_report          (weekly branch)
                     │                           └─> library_ready (all_done)
                     └──────────────────────────────────┴─> evaluate_library ─> monitor_decay ─> record_day

* ``validate_market_data``: load and validate the recent window of the market file (``factors.panel``);
  bad data fails the run here with a message naming the file, column and row.
* ``evaluate_library``: every factor in the store's library is evaluated over the window; its daily IC and
  RankIC against the ``horizon``-day forward return are written to ``factor_daily_metrics`` for each date
  whose forward return is already known on the run's day (no look-ahead).
* ``monitor_decay``: from the stored daily ICs, each factor's rolling IC (``ic_window`` days) and a
  ``decayed`` flag (rolling IC below ``decay_ratio`` x the factor's reference IC, sign-aware).
* ``record_day``: one ``factor_monitor`` run in the store with the day's figures.
* ``is_mining_day`` skips the weekly branch except on ``mining_weekday`` (default Friday) or with
  ``force_mining``; ``mine_pool`` runs the miner (RL by default) on a time-split window ending on the
  run's day, and ``summarize_and_report`` writes the grounded LLM narrative and the HTML report.
* The weekly branch runs *before* the monitoring, so a refreshed pool is monitored the same day and a
  re-run of the day sees the same library. ``library_ready`` (trigger rule ``all_done``) lets the
  monitoring go on when mining is skipped or failed; a failed mining still fails the DAG run.

Idempotent per day: every store write is keyed by ``factor_pipeline/<step>/<day>`` (runs) or by
(factor, date) (daily metrics), so a re-run replaces rows. Only small JSON goes through XCom.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, TriggerRule, dag, get_current_context, task

from finllm.airflow_support import (data_path, dag_settings, heavy, opt, publish_report, reports_dir,
                                    run_day, run_key, use_llm_connection)

PARAMS = {
    "data": Param(data_path("market/us_sp500_daily.parquet"), type="string",
                  description="Market data: parquet/CSV file, folder of them, or a Qlib dump folder."),
    "date": Param(None, type=["null", "string"], description="Business date (YYYY-MM-DD); default: logical date."),
    "lookback_days": Param(200, type="integer", minimum=30,
                           description="Calendar days of history loaded for validation and monitoring."),
    "max_tickers": Param(None, type=["null", "integer"], description="Keep the N tickers with most data (all if null)."),
    "horizon": Param(20, type="integer", minimum=1, description="Forward-return horizon of the IC (trading days)."),
    "ic_window": Param(20, type="integer", minimum=2, description="Rolling IC window (dates)."),
    "decay_ratio": Param(0.5, type="number", description="Decayed: rolling IC < ratio x reference IC."),
    "max_factors": Param(None, type=["null", "integer"], description="Monitor at most N factors (newest first)."),
    "mining_weekday": Param(4, type="integer", minimum=0, maximum=6, description="Mining day (0=Monday)."),
    "force_mining": Param(False, type="boolean", description="Run the weekly mining branch today."),
    "mine_method": Param("rl", enum=["rl", "gp"], description="Miner: RL (MaskablePPO) or the GP baseline."),
    "mine_minutes": Param(20.0, type="number", minimum=0, description="Wall-clock budget of the mining run."),
    "mine_years": Param(8, type="integer", minimum=1,
                        description="History used for mining: train, then 1 year valid, 1 year test."),
    "mine_max_factors": Param(None, type=["null", "integer"],
                              description="Also stop mining after N candidate factors (repeatable runs)."),
    "pool_size": Param(10, type="integer", minimum=1),
    "seed": Param(0, type="integer"),
    "narrative": Param(True, type="boolean", description="Write the LLM narrative of the mining run."),
    "reports_dir": Param(None, type=["null", "string"], description="Default: $FINLLM_HOME/reports."),
}


@dag(**dag_settings(
    "factor_pipeline", schedule="0 22 * * 1-5", params=PARAMS, tags=["factors"], doc_md=__doc__,
    description="Daily factor monitoring (IC, decay) and weekly pool refresh by mining."))
def factor_pipeline():
    @task
    def validate_market_data() -> dict:
        from finllm.app.monitor import validate_market_data as job

        ctx = get_current_context()
        p = ctx["params"]
        return job(p["data"], end=run_day(ctx), lookback_days=p["lookback_days"], max_tickers=opt(p["max_tickers"]))

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def library_ready() -> None:
        """The weekly refresh is over (done, skipped or failed): monitor the library as it stands. A failed
        mining run still fails the DAG run through ``summarize_and_report``, but not the monitoring."""

    @task
    def evaluate_library(checked: dict) -> dict:
        from finllm.app.monitor import evaluate_library as job

        ctx = get_current_context()
        p = ctx["params"]
        return job(p["data"], end=run_day(ctx), lookback_days=p["lookback_days"], horizon=p["horizon"],
                   max_tickers=opt(p["max_tickers"]), max_factors=opt(p["max_factors"]))

    @task
    def monitor_decay(evaluated: dict) -> dict:
        from finllm.app.monitor import flag_decay

        ctx = get_current_context()
        p = ctx["params"]
        return flag_decay(end=run_day(ctx), window=p["ic_window"], decay_ratio=p["decay_ratio"],
                          factor_ids=evaluated["factor_ids"])

    @task
    def record_day(checked: dict, evaluated: dict, decay: dict) -> dict:
        from finllm.app.monitor import record_monitor_run

        ctx = get_current_context()
        return record_monitor_run(run_key(ctx, "monitor"), day=run_day(ctx), params=dict(ctx["params"]),
                                  checked=checked, evaluated=evaluated, decay=decay)

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def is_mining_day(checked: dict) -> bool:
        ctx = get_current_context()
        p = ctx["params"]
        weekday = dt.date.fromisoformat(run_day(ctx)).weekday()
        return bool(p["force_mining"]) or weekday == p["mining_weekday"]

    @task(**heavy())
    def mine_pool() -> dict:
        from finllm.app.mine import mine_window

        ctx = get_current_context()
        p = ctx["params"]
        return mine_window(p["data"], end=run_day(ctx), years=p["mine_years"], method=p["mine_method"],
                           minutes=p["mine_minutes"], pool_size=p["pool_size"], seed=p["seed"],
                           horizon=p["horizon"], max_tickers=opt(p["max_tickers"]),
                           max_factors=opt(p["mine_max_factors"]), idempotency_key=run_key(ctx, "mine"))

    @task(**heavy())
    def summarize_and_report(mined: dict) -> dict:
        use_llm_connection()
        ctx = get_current_context()
        p = ctx["params"]
        return publish_report(mined["run_id"], reports_dir(p), narrative=p["narrative"])

    checked = validate_market_data()
    mined = mine_pool()
    is_mining_day(checked) >> mined
    summarize_and_report(mined)
    settled = library_ready()
    mined >> settled
    evaluated = evaluate_library(checked)
    settled >> evaluated
    decay = monitor_decay(evaluated)
    record_day(checked, evaluated, decay)


factor_pipeline()
