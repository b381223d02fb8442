"""fraud_pipeline: weekly LLM-supervised training, daily scoring of the graph into explained alerts.

One DAG, scheduled daily (06:00 UTC):

    check_graph ─> is_training_day ─> train_detector ─┐
              └─────────────────────────────────────── score_graph ─> explain_top_alerts

* ``check_graph``: load the graph (``finllm.app.score_graph.check_graph``); bad files fail here with a clear message.
* ``is_training_day`` short-circuits ``train_detector`` except on ``training_weekday`` (default Sunday),
  with ``force_training``, or when no model for this graph is in the store yet. Only the training task is
  skipped; scoring always runs (trigger rule ``none_failed``) with the newest model for the graph.
* ``train_detector``: GNN training with the LLM supervisor in the loop (``fraud.supervisor``), fixed
  splits, validation-chosen threshold; the model and its metrics go to the store.
* ``score_graph``: scores every node; alerts for batch ``<day>`` replace any earlier alerts of that batch.
* ``explain_top_alerts``: LLM explanations for the ``explain_top`` highest-scored alerts.

Idempotent per day: the training run is keyed ``fraud_pipeline/train/<day>``, alerts by (model, batch=day).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, TriggerRule, dag, get_current_context, task

from finllm.airflow_support import (data_path, dag_settings, heavy, opt, run_day, run_key,
                                    use_llm_connection)

PARAMS = {
    "data": Param(data_path("fraud/amazon_upu.mat"), type="string",
                  description="Graph file (.mat / .npz / CSV edge list) with fraud labels."),
    "date": Param(None, type=["null", "string"], description="Business date (YYYY-MM-DD); default: logical date."),
    "model": Param("auto", type="string", description="Detector to train: auto (every candidate tuned; their "
                   "top-3 ensemble kept unless one is clearly better on validation) or one family (see "
                   "`finllm fraud train --help`)."),
    "setting": Param("full", enum=["full", "semi"],
                     description="Labels used: full (the file's split / 40-20-40) or semi (20 fraud + 80 normal)."),
    "seeds": Param(3, type="integer", minimum=1, description="Training seeds (the best on validation is kept)."),
    "epochs": Param(200, type="integer", minimum=1),
    "llm_budget": Param(200, type="integer", minimum=0, description="LLM supervisor calls per training run."),
    "training_weekday": Param(6, type="integer", minimum=0, maximum=6, description="Training day (0=Monday)."),
    "force_training": Param(False, type="boolean", description="Train today whatever the weekday."),
    "model_id": Param(None, type=["null", "string"], description="Score with this model (default: newest)."),
    "explain_top": Param(20, type="integer", minimum=0, description="Explain the N highest-scored alerts."),
}


@dag(**dag_settings(
    "fraud_pipeline", schedule="0 6 * * *", params=PARAMS, tags=["fraud"], doc_md=__doc__,
    description="Weekly LLM-supervised GNN training; daily scoring into alerts with explanations."))
def fraud_pipeline():
    @task
    def check_graph() -> dict:
        from finllm.app.score_graph import check_graph as job

        return job(get_current_context()["params"]["data"])

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def is_training_day(graph: dict) -> bool:
        from finllm.app.score_graph import latest_model

        ctx = get_current_context()
        p = ctx["params"]
        if p["force_training"] or dt.date.fromisoformat(run_day(ctx)).weekday() == p["training_weekday"]:
            return True
        return latest_model(p["data"]) is None

    @task(**heavy())
    def train_detector(graph: dict) -> dict:
        from finllm.app.train_detector import TrainOptions, train_and_record

        use_llm_connection()
        ctx = get_current_context()
        p = ctx["params"]
        opts = TrainOptions(model=p["model"], setting=p["setting"], seeds=p["seeds"], epochs=p["epochs"],
                            llm_budget=p["llm_budget"], supervisor="llm" if p["llm_budget"] > 0 else "none")
        return train_and_record(p["data"], opts, idempotency_key=run_key(ctx, "train")).brief()

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def score_graph(graph: dict) -> dict:
        from finllm.app.score_graph import score_batch

        ctx = get_current_context()
        p = ctx["params"]
        return score_batch(p["data"], batch=run_day(ctx), model_id=opt(p["model_id"]),
                           idempotency_key=run_key(ctx, "score"))

    @task(**heavy())
    def explain_top_alerts(scored: dict) -> dict:
        from finllm.app.explain import explain_top_alerts as job

        use_llm_connection()
        ctx = get_current_context()
        return job(scored["model_id"], batch=scored["batch"], data=ctx["params"]["data"],
                   top=ctx["params"]["explain_top"])

    graph = check_graph()
    trained = train_detector(graph)
    is_training_day(graph) >> trained
    scored = score_graph(graph)
    trained >> scored
    explain_top_alerts(scored)


fraud_pipeline()
