"""reports: rebuild the HTML reports of the latest mining and fraud-training runs.

Scheduled daily (23:30 UTC, after the other pipelines). ``latest_runs`` lists the newest finished
``factor_mine`` and ``fraud_train`` runs (``per_kind`` of each); ``build_report`` is mapped over them
(one task instance per run, so reports build in parallel on a real executor and one bad run does not
block the others). Each writes ``<reports_dir>/<run_id>.html`` (replaced on every rebuild, so re-runs
are idempotent), records the path on the run, and writes the grounded LLM narrative first when the run
has none (``narrative``).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from finllm.airflow_support import dag_settings, heavy, publish_report, reports_dir, use_llm_connection

REPORTED_KINDS = ("factor_mine", "fraud_train")

PARAMS = {
    "per_kind": Param(3, type="integer", minimum=1, description="Rebuild the newest N runs of each kind."),
    "narrative": Param(True, type="boolean", description="Write a missing LLM narrative before rendering."),
    "reports_dir": Param(None, type=["null", "string"], description="Default: $FINLLM_HOME/reports."),
}


@dag(**dag_settings(
    "reports", schedule="30 23 * * *", params=PARAMS, tags=["reports"], doc_md=__doc__,
    description="Rebuild HTML reports (plots + grounded LLM narrative) for the latest runs."))
def reports():
    @task
    def latest_runs() -> list[str]:
        from finllm.app.catalog import latest_finished

        return latest_finished(REPORTED_KINDS, get_current_context()["params"]["per_kind"])

    @task(max_active_tis_per_dagrun=2, **heavy())
    def build_report(finllm_run_id: str) -> dict:
        use_llm_connection()
        p = get_current_context()["params"]
        return publish_report(finllm_run_id, reports_dir(p), narrative=p["narrative"])

    build_report.expand(finllm_run_id=latest_runs())


reports()
