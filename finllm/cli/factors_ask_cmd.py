"""`finllm factors ask "IDEA" --data PATH`: an idea -> formulas (LLM under the expression grammar, plus the
built-in known formulas for what the request names) -> scored on train/valid -> the best saved with lineage."""

from __future__ import annotations

from pathlib import Path

import typer

from finllm.cli.common import console, emit_json, friendly_errors, safe

DEFAULT_DATA = "data/market/us_sp500_daily.parquet"


def register(app: typer.Typer) -> None:
    app.command("ask")(ask_cmd)


@friendly_errors
def ask_cmd(
    request: str = typer.Argument(..., help='The idea in words, e.g. "stocks that fall on heavy volume tend to rebound".'),
    data: Path = typer.Option(Path(DEFAULT_DATA), "--data", help="Market data: parquet/CSV file, folder, or Qlib dump."),
    start: str = typer.Option(None, "--start", help="Load data from this date (YYYY-MM-DD)."),
    end: str = typer.Option(None, "--end", help="Load data up to this date (YYYY-MM-DD)."),
    max_tickers: int = typer.Option(None, "--max-tickers", help="Keep the N tickers with most valid days."),
    train: str = typer.Option(None, "--train", help="Train range START:END (default: the split rule of factors eval/mine)."),
    valid: str = typer.Option(None, "--valid", help="Validation range START:END (default: as factors eval/mine)."),
    test: str = typer.Option(None, "--test", help="Test range START:END (default: as factors eval/mine); never shown to the LLM."),
    horizon: int = typer.Option(20, "--horizon", min=1, max=252, help="Forward-return horizon in days."),
    candidates: int = typer.Option(4, "--candidates", min=1, max=10, help="Formulas the LLM proposes per round."),
    repair_rounds: int = typer.Option(1, "--repair-rounds", min=0, max=5,
                                      help="Rounds in which unparsable formulas go back with the parser's error "
                                           "(endpoints without grammar support only)."),
    refine_rounds: int = typer.Option(1, "--refine-rounds", min=0, max=5,
                                      help="Rounds in which the evaluator's scores go back for better formulas."),
    save: int = typer.Option(3, "--save", min=0, max=10,
                             help="Save this many best candidates (relevant to the request first, then valid RankIC)."),
    cost_bps: float = typer.Option(10.0, "--cost-bps", min=0, max=10000, help="Transaction cost per unit traded, in bps."),
    use_llm: bool = typer.Option(True, "--llm/--no-llm", help="--no-llm: built-in known formulas only (no LLM)."),
    fallback: bool = typer.Option(True, "--fallback/--no-fallback",
                                  help="Score the built-in known formulas for the request alongside the LLM's."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Turn an idea into valid, scored factors: the LLM writes formulas under the expression grammar, the evaluator scores them.

    The request is read for the fields, windows and concepts it names ("volume", "20-day", "reversal"); the LLM sees the most similar library factors as examples and writes formulas decoded under a grammar built from the operator registry (llama.cpp endpoints, the embedded model included: every formula parses; other endpoints: parsed and repaired with the parser's error). Each candidate is scored on train/valid (never test), the scores go back for a refine round, and built-in known formulas for the named concepts are scored alongside, so you always get an on-topic factor; the output says which came from the LLM and which from the built-in pool. The best are saved to the factor library (source llm or builtin) with lineage. An LLM endpoint that is down or misconfigured stops the command at once with exit code 2 (see FINLLM_LLM_BASE_URL, FINLLM_LLM_MODEL; --no-llm skips the LLM).
    """
    from finllm.app.ask import AskOptions, ask_for_factor
    from finllm.cli.llm_wait import ensure_llm, waiting
    from finllm.store import open_store

    opts = AskOptions(start=start, end=end, max_tickers=max_tickers, train=train, valid=valid, test=test,
                      candidates=candidates, repair_rounds=repair_rounds, refine_rounds=refine_rounds,
                      horizon=horizon, cost_bps=cost_bps, save=save, use_llm=use_llm, fallback=fallback)
    opts.validate()  # before waiting for the LLM
    store = open_store()
    if use_llm:
        from finllm.llm import get_gateway

        ensure_llm(get_gateway(store=store), hint=", or pass --no-llm to use the built-in formulas only")
    with waiting(f"loading {data}") as update:
        res = ask_for_factor(request, data, opts, store, progress=update)
    if use_llm and not res.llm.get("usable"):
        why = "; ".join(res.llm_failures)[:300] or "no formula of its scored"
        console.print(f"[yellow]note:[/] the LLM gave nothing usable ({safe(why)}); the factors below come from the "
                      "built-in pool. A stronger model: set FINLLM_LLM_BASE_URL and FINLLM_LLM_MODEL.")
    if as_json:
        emit_json(res.to_dict())
    else:
        _print(res)
    if not res.ok:
        raise typer.Exit(1)


def _print(res) -> None:  # noqa: ANN001 - factors.requests.AskResult (imported lazily)
    """The candidates and the saved factors are results (stdout); the status line is a message (stderr)."""
    from rich.table import Table

    from finllm.cli.tables import stdout

    out = stdout()

    def f(v: float | None) -> str:
        return "—" if v is None or v != v else f"{v:.4f}"

    table = Table(title=f"candidates for: {safe(res.request)}", show_lines=False)
    for col in ("source", "stage", "formula", "relevant", "train RankIC", "valid IC", "valid RankIC", "turnover",
                "note / error"):
        table.add_column(col, overflow="fold")
    for c in res.candidates:
        t, v = c.scores.get("train", {}), c.scores.get("valid", {})
        table.add_row(c.source, f"{c.stage} {c.round}", safe(c.expr.infix if c.expr is not None else c.formula),
                      "yes" if c.relevant else ("no" if c.ok else "—"), f(t.get("rank_ic")), f(v.get("ic")),
                      f(v.get("rank_ic")), f(v.get("turnover")),
                      safe(c.error or c.note or ("misses " + "; ".join(c.missing) if c.missing else "")))
    if any(c.scores for c in res.candidates):
        out.print(table)
    if res.intent is not None:
        out.print(f"the request names: {safe(res.intent.describe())}")
    for c in res.saved:
        test = c.scores.get("test", {})
        out.print(f"[green]saved[/] {safe(c.factor_id)} ({c.source}): {safe(c.expr.infix)}  "
                      f"test RankIC {f(test.get('rank_ic'))}\n  {safe(c.explanation)}")
    if res.llm_failures:
        console.print("[red]LLM failures:[/] " + safe("; ".join(res.llm_failures)))
    colour = "green" if res.ok else "red"
    console.print(f"[{colour}]{res.status}[/]: {safe(res.message)} (run {safe(res.run_id)}, {res.llm_calls} LLM call(s), "
                  f"{res.seconds:.0f}s)")
    if not res.ok and res.grammar_errors:
        console.print("grammar errors:")
        for e in res.grammar_errors:
            console.print(safe(f"  {e['formula']!r}: {e['error']}"))
