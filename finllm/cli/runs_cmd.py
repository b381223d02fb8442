"""`finllm runs list|show`: find runs again (mining, training, scoring, reports, monitoring)."""

from __future__ import annotations

import typer

from finllm.cli.common import emit_json, friendly_errors

app = typer.Typer(help="Runs in the store: list them (newest first) and show one in full.", no_args_is_help=True)


@app.command("list")
@friendly_errors
def list_cmd(
    kind: str = typer.Option(None, "--kind", help="Only runs of this kind: factor_mine, factor_ask, fraud_train, "
                                                  "fraud_score, factor_monitor, ..."),
    status: str = typer.Option(None, "--status", help="Only runs with this status: running, finished, failed, "
                                                      "interrupted."),
    limit: int = typer.Option(20, "--limit", min=1, help="Show at most this many (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """List runs, newest first."""
    from finllm.app.catalog import list_runs
    from finllm.store import open_store

    rows = list_runs(open_store(), kind=kind, status=status, limit=limit)
    if as_json:
        emit_json(rows)
        return
    from finllm.cli.tables import print_table

    print_table(["id", "kind", "status", "started (UTC)", "seconds", "name", "result"],
                [[r["id"], r["kind"], r["status"], (r["started_at"] or "")[:19].replace("T", " "),
                  None if r["seconds"] is None else f"{r['seconds']:.0f}", r["name"], r["headline"]] for r in rows],
                right=["seconds"], wrap=["name", "result"])
    if not rows:
        typer.echo("no runs match", err=True)


@app.command("show")
@friendly_errors
def show_cmd(
    run_id: str = typer.Argument(..., help="Run id (or a unique prefix of at least 4 characters)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Show one run: status, times, config, metrics, artifacts (with whether each file is there), its pool
    or models, the narrative and the error if it failed."""
    from finllm.app.catalog import show_run
    from finllm.store import open_store

    run = show_run(open_store(), run_id)
    if as_json:
        emit_json(run)
        return
    from finllm.cli.tables import print_mapping, print_metrics, print_table

    head = {k: run[k] for k in ("kind", "name", "status", "started_at", "finished_at", "seconds", "idempotency_key",
                                "error") if run.get(k) is not None}
    if head.get("seconds") is not None:
        head["seconds"] = f"{head['seconds']:.1f}"
    print_mapping(f"run {run['id']}", head)
    cfg = {k: v for k, v in run["config"].items() if not isinstance(v, (dict, list))}
    if cfg:
        print_mapping("config", cfg)
    if run["metrics"]:
        print_metrics("metrics", {k: v for k, v in run["metrics"].items() if k != "per_seed"})
    arts = run["artifacts"]
    if arts:
        print_table(["artifact", "path", "exists"],
                    [[k, v["path"], v["exists"]] if isinstance(v, dict) else [k, v, None] for k, v in arts.items()])
    if run.get("pool"):
        print_table(["factor", "weight", "formula"], [[m["factor_id"], m["weight"], m["formula"]] for m in run["pool"]],
                    title="pool", right=["weight"])
    if run.get("models"):
        print_table(["model", "name", "threshold", "path"],
                    [[m["id"], m["name"], m["threshold"], m["path"]] for m in run["models"]], title="models")
    if run.get("summary"):
        from rich.text import Text

        from finllm.cli.tables import stdout

        stdout().print(Text(run["summary"]))
