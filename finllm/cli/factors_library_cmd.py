"""`finllm factors list|show|export`: the factor library (mined, asked, handcrafted factors)."""

from __future__ import annotations

from pathlib import Path

import typer

from finllm.cli.common import console, emit_json, friendly_errors

DEFAULT_DATA = "data/market/us_sp500_daily.parquet"


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
    app.command("show")(show_cmd)
    app.command("export")(export_cmd)


@friendly_errors
def list_cmd(
    source: str = typer.Option(None, "--source", help="Only factors of this source: mined_rl, mined_gp, llm, ..."),
    run: str = typer.Option(None, "--run", help="Only the pool of this mining run (in pool order)."),
    limit: int = typer.Option(20, "--limit", min=1, help="Show at most this many (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """List library factors, newest first, with their stored IC / RankIC per split."""
    from finllm.app.catalog import list_factors
    from finllm.store import open_store

    rows = list_factors(open_store(), source=source, run_id=run, limit=limit)
    if as_json:
        emit_json(rows)
        return
    from finllm.cli.tables import print_table

    splits = [s for s in ("train", "valid", "test") if any(s in r["metrics"] for r in rows)]
    print_table(["id", "source", *[f"{s} RankIC" for s in splits], "formula"],
                [[r["id"], r["source"], *[r["metrics"].get(s, {}).get("rank_ic") for s in splits], r["formula"]]
                 for r in rows], right=[f"{s} RankIC" for s in splits])
    if not rows:
        typer.echo("no factors match", err=True)


@friendly_errors
def show_cmd(
    factor_id: str = typer.Argument(..., help="Factor id (or a unique prefix of at least 4 characters)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Show one factor: formula, canonical postfix tokens, metrics per split, explanation, the pools it is in
    and its monitoring state."""
    from finllm.app.catalog import show_factor
    from finllm.store import open_store

    f = show_factor(open_store(), factor_id)
    if as_json:
        emit_json(f)
        return
    from finllm.cli.tables import print_mapping, print_metrics, print_table

    print_mapping(f"factor {f['id']}", {"formula": f["formula"], "postfix": " ".join(f["tokens"]),
                                        "source": f["source"], "created_at": f["created_at"], "run": f["run_id"],
                                        "request": f["request_text"], "explanation": f["explanation"]})
    if f["metrics"]:
        print_metrics("metrics", f["metrics"])
    if f["pools"]:
        print_table(["run", "weight"], [[p["run_id"], p["weight"]] for p in f["pools"]], title="in pools",
                    right=["weight"])
    print_mapping("monitoring", f["monitoring"])


@friendly_errors
def export_cmd(
    factor_ids: list[str] = typer.Argument(None, help="Factor ids (or unique prefixes); see `finllm factors list`."),
    run: str = typer.Option(None, "--run", help="Also export every member of this mining run's pool."),
    data: Path = typer.Option(Path(DEFAULT_DATA), "--data",
                              help="Market data: parquet/CSV file, folder, or Qlib dump."),
    out: Path = typer.Option(Path("factors.parquet"), "--out", help="Parquet file to write."),
    start: str = typer.Option(None, "--start", help="First date written (YYYY-MM-DD); earlier history is loaded "
                                                    "for the rolling windows."),
    end: str = typer.Option(None, "--end", help="Last date (YYYY-MM-DD)."),
    max_tickers: int = typer.Option(None, "--max-tickers", help="Keep the N tickers with most valid days."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Write factor values as parquet for other tools: one row per valid (date, ticker) with columns date,
    ticker, in_universe and one float32 column per factor id (null where it has no value); the file's
    metadata key "finllm" maps each column to its formula."""
    from finllm.app.catalog import export_factors
    from finllm.store import open_store

    with console.status("exporting ...") as status:
        res = export_factors(open_store(), factor_ids or [], data=data, out=out, run_id=run, start=start, end=end,
                             max_tickers=max_tickers, progress=lambda m: status.update(m))
    if as_json:
        emit_json(res)
        return
    typer.echo(f"{res['path']}: {res['rows']:,} rows ({res['tickers']} tickers, {res['first_date']} .. "
               f"{res['last_date']}), {len(res['factors'])} factor column(s)")
