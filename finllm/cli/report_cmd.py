"""`finllm report RUN_ID --out report.html`: one self-contained HTML report of a mining or fraud run."""

from __future__ import annotations

from pathlib import Path

import typer

from finllm.cli.common import console, emit_json, friendly_errors, safe


def register(app: typer.Typer) -> None:
    @app.command("report")
    @friendly_errors
    def report(
        run_id: str = typer.Argument(..., help="Id of a factor_mine or fraud_train run (see the run's --json output)."),
        out: Path = typer.Option(Path("report.html"), "--out", "-o", help="Where to write the HTML file."),
        narrative: bool = typer.Option(True, "--narrative/--no-narrative",
                                       help="Include the LLM narrative; written (and stored with the run) if the "
                                            "run has none yet. --no-narrative never calls the LLM."),
        refresh: bool = typer.Option(False, "--refresh-narrative",
                                     help="Write a new narrative even if the run already has one."),
        database: str = typer.Option(None, "--db", help="Database URL (default: FINLLM_DATABASE_URL or "
                                                        "sqlite in FINLLM_HOME)."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON result instead of a sentence."),
    ) -> None:
        """Write a report: tables, plots (a factor tear sheet with the Alpha158-style and LightGBM baselines beside the pool; or per-seed metrics, ROC/PR with a baseline, threshold sweep, confusion matrix, calibration, alerts with their known labels) and a narrative.

        The narrative is a list of sentences, each citing the run's facts; the LLM chooses and phrases them, code inserts every number from the cited facts and drops any sentence that states a number, a date or a data-use claim its facts do not back. When none survives (usual with the default 135M model) or the LLM fails, a deterministic summary written by code from the facts is shown, and says so. --json prints the facts and each sentence with the keys it cites. The file embeds every image, so it opens offline.
        """  # noqa: E501
        from finllm.app.report import build_report
        from finllm.store import open_store

        from finllm.cli.checks import check_out_file

        check_out_file(out)  # a directory or a missing folder: refused before anything is written
        store = open_store(database)
        with console.status("writing the report (the tear sheet and the LLM narrative first, if the run has none) ..."):
            result = build_report(store, run_id, out, narrative=narrative, refresh=refresh)
        story = result["narrative"]
        if story["status"] == "failed":
            console.print(f"[yellow]LLM narrative not available:[/] {safe(story['note'])}")
        if as_json:
            emit_json(result)
        else:
            typer.echo(f"wrote {result['path']} ({result['bytes']:,} bytes; narrative {story['status']}, "
                       f"{'by the LLM' if story['source'] == 'llm' else 'deterministic summary from the facts'})")
