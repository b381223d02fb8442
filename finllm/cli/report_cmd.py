"""`finllm report RUN_ID --out report.html`: one self-contained HTML report of a mining or fraud run."""

from __future__ import annotations

from pathlib import Path

import typer

from finllm.cli.common import console, emit_json, friendly_errors


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
        """Write a report: tables, plots (IC over time, long-short with costs, quantile returns, factor correlations; or ROC/PR curves, score distributions, alerts) and a grounded LLM narrative.

        The file embeds every image, so it opens offline and can be mailed as is. Numbers in the narrative are checked against the run's facts; unsupported ones are removed and noted.
        """  # noqa: E501
        from finllm.errors import DataError
        from finllm.reports.html import build_report
        from finllm.store import open_store

        store = open_store(database)
        run = store.get_run(run_id)
        if run is None:
            raise DataError(f"run {run_id!r}: no such run in {store.url} (list runs with their commands' --json)")
        status, text, missing = "stored", run.summary, "no summary stored for this run"
        if not narrative:
            status, text, missing = "skipped", None, "narrative not requested (--no-narrative)"
        elif refresh or not run.summary:
            from finllm.reports.summary import summarize_run

            with console.status("LLM: writing the narrative from the run's facts ..."):
                res = summarize_run(run_id, store)
            if res.ok:
                status, text = "generated", res.text
            else:
                status, text, missing = "failed", None, res.failure or "the LLM gave no narrative"
                console.print(f"[yellow]narrative not available:[/] {missing}")
        with console.status("rendering report ..."):
            path = build_report(run_id, store, out, narrative=text, narrative_missing=missing)
        result = {"run_id": run_id, "kind": run.kind, "path": str(path.resolve()), "bytes": path.stat().st_size,
                  "narrative": status}
        if status == "failed":
            result["narrative_error"] = missing
        if as_json:
            emit_json(result)
        else:
            typer.echo(f"wrote {path} ({result['bytes']:,} bytes; narrative {status})")
