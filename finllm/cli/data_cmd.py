"""`finllm data ...`: inspect and validate market panels (parquet/CSV/Qlib dump) and fraud graphs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from finllm.cli.common import console, emit_json, friendly_errors, plain, safe

app = typer.Typer(
    help="Inspect and validate input data. PATH is a market panel (parquet/CSV file, a folder of them, "
         "or a Qlib dump folder) or a fraud graph (.mat, .npz, or an edge/feature CSV without date/ticker "
         "columns). Nothing is written anywhere.",
    no_args_is_help=True,
)

PathArg = Annotated[Path, typer.Argument(help="Market file/folder, Qlib dump folder, or fraud graph file.",
                                         show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
StartOpt = Annotated[Optional[str], typer.Option(help="First date to load (inclusive, YYYY-MM-DD).")]
EndOpt = Annotated[Optional[str], typer.Option(help="Last date to load (inclusive, YYYY-MM-DD).")]
InstOpt = Annotated[str, typer.Option(help="Qlib dumps only: instruments/<NAME>.txt to load (sets the universe).")]


def _kind(path: Path) -> str:
    """'market' or 'graph': graphs are .mat/.npz, or CSV (or folders of them) without date+ticker columns."""
    from factors.market_io import is_csv, is_parquet, read_columns
    from factors.qlib_dump import is_qlib_dir

    if not path.exists():
        raise FileNotFoundError(2, "no such file", str(path))
    if is_qlib_dir(path):
        return "market"
    if path.suffix.lower() in (".mat", ".npz"):
        return "graph"
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.is_file() and (is_csv(p) or is_parquet(p)))
    if not files:
        return "graph" if path.is_dir() else "market"  # market reader names the unsupported type
    cols = set(read_columns(files[0]))
    if {"date", "ticker"} <= cols or is_parquet(files[0]):
        return "market"
    return "graph"


def _load_graph(path: Path) -> Any:
    from finllm.errors import DataError

    try:
        from fraud.datasets import load_graph
    except ImportError as exc:
        raise DataError(f"{path}: looks like a fraud graph, but the graph loader is unavailable ({exc})") from None
    return load_graph(path)


def _load_market(path: Path, start: str | None, end: str | None, instruments: str, quiet: bool):
    from factors.panel import load_panel

    return load_panel(path, start=start, end=end, instruments=instruments,
                      progress=not quiet and console.is_terminal)


def _print_pairs(title: str, pairs: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=safe(title), show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in pairs.items():
        if isinstance(v, list):
            v = ", ".join(map(str, v))
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items()) or "-"
        table.add_row(safe(k), safe(v))  # file names, tickers, relation names: data, never markup
    Console().print(table)


def _print_issues(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="validation", show_lines=False)
    for c in ("check", "count", "action", "detail"):
        table.add_column(c, overflow="fold")
    for i in report.issues:
        table.add_row(safe(i.check), f"{i.count:,}", safe(i.action), safe(i.detail))
    Console().print(table)
    state = "clean" if report.clean else "repaired"
    typer.echo(f"{plain(report.source)}: {report.rows_read:,} rows read, {report.rows_valid:,} valid, "
               f"{len(report.issues)} findings ({state})")


INFO_HELP = ("Load PATH and print what it holds: shape, date range, fields, coverage, findings.\n\n"
             "Bad input (unreadable file, missing column, unparseable date, duplicate rows, ...) gives exit "
             "code 2 and one line on stderr naming the file and the row or column.")
VALIDATE_HELP = ("Run every validation check on PATH and list each finding with its count and the action "
                 "taken.\n\nErrors (missing column, unparseable date, duplicate (date, ticker), text in a "
                 "number column) stop with exit code 2 and one line naming the file and the row.\n\n"
                 "Repairs (invalid rows set to NaN, high/low widened, ...) are listed; with --strict they make "
                 "the exit code 1. The rules are documented in factors/validation.py.")


@app.command(help=INFO_HELP)
@friendly_errors
def info(path: PathArg, json: JsonOpt = False, start: StartOpt = None, end: EndOpt = None,
         instruments: InstOpt = "all") -> None:
    """Summary of a market panel or fraud graph (see INFO_HELP)."""
    if _kind(path) == "graph":
        summary = {"kind": "graph", **_load_graph(path).summary()}
        return emit_json(summary) if json else _print_pairs(str(path), summary)
    summary = {"kind": "market", **_load_market(path, start, end, instruments, json).summary()}
    if json:
        emit_json(summary)
    else:
        _print_pairs(str(path), summary)


@app.command(help=VALIDATE_HELP)
@friendly_errors
def validate(path: PathArg, json: JsonOpt = False, start: StartOpt = None, end: EndOpt = None,
             instruments: InstOpt = "all",
             strict: Annotated[bool, typer.Option(
                 "--strict", help="Exit 1 when any row had to be invalidated or repaired.")] = False,
             ) -> None:
    """Validation report of a market panel or fraud graph (see VALIDATE_HELP)."""
    if _kind(path) == "graph":
        g = _load_graph(path)
        report = g.report if isinstance(g.report, (dict, list)) else str(g.report)
        if json:
            emit_json({"kind": "graph", "source": str(path), "report": report})
        else:
            _print_pairs(f"{path} (graph)", report if isinstance(report, dict) else {"report": report})
        return
    panel = _load_market(path, start, end, instruments, json)
    if json:
        emit_json({"kind": "market", **panel.report.to_dict()})
    else:
        _print_issues(panel.report)
    if strict and not panel.report.clean:
        raise typer.Exit(1)
