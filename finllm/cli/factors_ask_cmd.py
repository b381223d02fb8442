"""`finllm factors ask "IDEA" --data PATH`: an LLM turns an idea into factor formulas; they are checked,
scored on train/valid and the best saved to the factor library (source llm)."""

from __future__ import annotations

from pathlib import Path

import typer

from finllm.cli.common import console, emit_json, friendly_errors

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
    train: str = typer.Option(None, "--train", help="Train range START:END (default: first 60% of the days)."),
    valid: str = typer.Option(None, "--valid", help="Validation range START:END (default: next 20%)."),
    test: str = typer.Option(None, "--test", help="Test range START:END (default: last 20%); never shown to the LLM."),
    horizon: int = typer.Option(20, "--horizon", min=1, max=252, help="Forward-return horizon in days."),
    candidates: int = typer.Option(4, "--candidates", min=1, max=10, help="Formulas the LLM proposes per round."),
    repair_rounds: int = typer.Option(2, "--repair-rounds", min=0, max=5,
                                      help="Rounds in which unparsable formulas go back with the parser's error."),
    refine_rounds: int = typer.Option(1, "--refine-rounds", min=0, max=5,
                                      help="Rounds in which the evaluator's scores go back for better formulas."),
    save: int = typer.Option(3, "--save", min=0, max=10, help="Save this many best candidates (by valid RankIC)."),
    cost_bps: float = typer.Option(10.0, "--cost-bps", min=0, help="Transaction cost per unit traded, in bps."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Ask the LLM for factors that express an idea; every formula is parsed by the grammar and scored by the evaluator.

    Unparsable formulas go back to the LLM with the exact parser error; the scores (train/valid IC, RankIC, turnover) go back so it can refine. The best are saved to the factor library (source llm) with your text and the LLM's explanation; `factors mine --seed-library llm` starts mining from them. If the model produces no valid formula the command says so, shows the grammar errors and exits with code 1. Uses the configured LLM endpoint (FINLLM_LLM_BASE_URL), else the small embedded local model.
    """
    from factors.panel import load_panel
    from factors.requests import ask
    from finllm.store import open_store

    with console.status(f"loading {data} ..."):
        panel = load_panel(data, start=start, end=end, max_tickers=max_tickers)
    splits = None
    if train or valid or test:
        if not (train and valid):
            from finllm.errors import ConfigError

            raise ConfigError("give at least --train and --valid (START:END), or none of the split options")
        splits = {k: v for k, v in (("train", train), ("valid", valid), ("test", test)) if v}
    store = open_store()
    with console.status("asking the LLM ...") as status:
        res = ask(request, panel, splits=splits, n_candidates=candidates, repair_rounds=repair_rounds,
                  refine_rounds=refine_rounds, store=store, horizon=horizon, cost_bps=cost_bps, n_save=save,
                  progress=lambda msg: status.update(msg))
    if as_json:
        emit_json(res.to_dict())
    else:
        _print(res)
    if not res.ok:
        raise typer.Exit(1)


def _print(res) -> None:
    from rich.table import Table

    def f(v) -> str:
        return "—" if v is None or v != v else f"{v:.4f}"

    table = Table(title=f"candidates for: {res.request}", show_lines=False)
    for col in ("stage", "formula", "train IC", "train RankIC", "valid IC", "valid RankIC", "turnover", "note / error"):
        table.add_column(col, overflow="fold")
    for c in res.candidates:
        t, v = c.scores.get("train", {}), c.scores.get("valid", {})
        table.add_row(f"{c.stage} {c.round}", c.expr.infix if c.expr is not None else c.formula,
                      f(t.get("ic")), f(t.get("rank_ic")), f(v.get("ic")), f(v.get("rank_ic")), f(v.get("turnover")),
                      c.error or c.note or "")
    if any(c.scores for c in res.candidates):
        console.print(table)
    for c in res.saved:
        test = c.scores.get("test", {})
        console.print(f"[green]saved[/] {c.factor_id}: {c.expr.infix}  test RankIC {f(test.get('rank_ic'))}\n"
                      f"  why: {c.explanation or '(no explanation)'}")
    if res.llm_failures:
        console.print("[red]LLM failures:[/] " + "; ".join(res.llm_failures))
    colour = "green" if res.ok else "red"
    console.print(f"[{colour}]{res.status}[/]: {res.message} (run {res.run_id}, {res.llm_calls} LLM call(s))")
    if not res.ok and res.grammar_errors:
        console.print("grammar errors:")
        for e in res.grammar_errors:
            console.print(f"  {e['formula']!r}: {e['error']}")
