"""`finllm models list`: the trained fraud detectors in the store."""

from __future__ import annotations

import typer

from finllm.cli.common import emit_json, friendly_errors

app = typer.Typer(help="Trained fraud detectors in the store (ids for `fraud score` / `fraud explain`).",
                  no_args_is_help=True)


@app.command("list")
@friendly_errors
def list_cmd(
    name: str = typer.Option(None, "--name", help="Only this model family (hsign, sage, gat, bwgnn, rgcn, xgbgraph)."),
    limit: int = typer.Option(20, "--limit", min=1, help="Show at most this many (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """List trained models newest first, with their test figures and whether the weights file is there."""
    from finllm.app.catalog import list_models
    from finllm.store import open_store

    rows = list_models(open_store(), name=name, limit=limit)
    if as_json:
        emit_json(rows)
        return
    from finllm.cli.tables import print_table

    def test(r: dict, k: str) -> object:
        v = r["test"].get(k)
        return sum(v) / len(v) if isinstance(v, list) and v else v

    print_table(["id", "name", "dataset", "created (UTC)", "threshold", "test AUROC", "test AUPRC", "run", "weights"],
                [[r["id"], r["name"], r["dataset"], (r["created_at"] or "")[:19].replace("T", " "), r["threshold"],
                  test(r, "auroc"), test(r, "auprc"), r["run_id"], "ok" if r["exists"] else "missing"] for r in rows],
                right=["threshold", "test AUROC", "test AUPRC"], wrap=["dataset"])
    if not rows:
        typer.echo("no models match", err=True)
