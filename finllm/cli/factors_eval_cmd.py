"""`finllm factors eval "EXPR" --data PATH`: score one factor expression per time split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from finllm.cli.common import console, emit_json, friendly_errors

DEFAULT_DATA = "data/market/us_sp500_daily.parquet"


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


@friendly_errors
def eval_cmd(
    expr: str = typer.Argument(..., help='Factor in infix, e.g. "Div(Sub($close, Mean($close, 20)), Std($close, 20))" '
                                         "(the $ is optional; + - * / work too)."),
    data: Path = typer.Option(Path(DEFAULT_DATA), "--data", help="Market data: parquet/CSV file, folder, or Qlib dump."),
    start: str = typer.Option(None, "--start", help="Load data from this date (YYYY-MM-DD)."),
    end: str = typer.Option(None, "--end", help="Load data up to this date (YYYY-MM-DD)."),
    max_tickers: int = typer.Option(None, "--max-tickers", help="Keep the N tickers with most valid days."),
    train: str = typer.Option(None, "--train", help="Train range START:END (inclusive dates). Default (the same "
                                                    "rule as `factors mine` and `factors ask`): the documented "
                                                    "2003-2014 / 2015-2016 / 2017-2021 split on the shipped US "
                                                    "file, 60/20/20 of the days by time elsewhere."),
    valid: str = typer.Option(None, "--valid", help="Validation range START:END."),
    test: str = typer.Option(None, "--test", help="Test range START:END."),
    horizon: int = typer.Option(20, "--horizon", min=1, max=252,
                                help="Forward-return horizon in days for the default target."),
    target: str = typer.Option(None, "--target",
                               help='Target expression (may use Ref(x, -h)); default "Sub(Div(Ref($close, -H), $close), 1)".'),
    cost_bps: float = typer.Option(10.0, "--cost-bps", min=0, help="Transaction cost per unit traded, in bps."),
    quantiles: int = typer.Option(5, "--quantiles", min=2, max=20, help="Quantile buckets (5 = quintiles)."),
    delay: int = typer.Option(1, "--delay", min=0, help="Days between the signal and the trade in the backtest."),
    rebalance: int = typer.Option(None, "--rebalance", min=1, max=252, show_default=False,
                                  help="Backtest holding period: re-form the long-short portfolio every N days from "
                                       "that day's factor values (costs on each rebalance). Default: the --horizon "
                                       "(an H-day signal held H days); 1 = daily."),
    whole: bool = typer.Option(False, "--whole", help="Score the whole panel as one split named \"all\" instead of "
                                                      "train / valid / test."),
    decay: str = typer.Option("1,5,10,20,60", "--decay", help="Horizons for the RankIC decay curve."),
    min_names: int = typer.Option(10, "--min-names", min=3,  # factors.metrics.MIN_NAMES (not imported: CLI start-up)
                                  help="Names a day's cross-section needs for its IC, quantiles and backtest "
                                       "positions (fewer: the day is left out). Lower it for a small market."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Evaluate one factor: IC, RankIC, ICIR, t-stats, quintile returns, turnover, IC decay and a long-short
    backtest with costs, per split (train / valid / test by the default rule unless given; --whole: one split
    over the whole panel). Exit code 2 on a bad expression."""
    from finllm.app.score_factor import EvalOptions, score_factor
    from finllm.cli.checks import check_number

    check_number(cost_bps, "--cost-bps", 0, 10_000)
    check_number(delay, "--delay", 0, 252)
    check_number(max_tickers, "--max-tickers", 1)
    opts = EvalOptions(start=start, end=end, max_tickers=max_tickers, train=train, valid=valid, test=test,
                       horizon=horizon, target=target, cost_bps=cost_bps, quantiles=quantiles, delay=delay,
                       rebalance=rebalance, whole=whole, decay=decay, min_names=min_names)
    out = score_factor(expr, data, opts, progress=not as_json, busy=console.status)
    warnings = out["warnings"]
    if as_json:
        emit_json(out)
        return
    _print(out)
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)


def _print(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def f(v: Any, pct: bool = False) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "nan"
        return f"{v:.2%}" if pct else f"{v:.4f}"

    names = list(out["splits"])
    t = Table(title=f"{out['expr']}  (target {out['target']}, cost {out['cost_bps']} bps, delay {out['delay']}, "
                      f"rebalance every {out['rebalance']} d)")
    t.add_column("metric")
    for n in names:
        t.add_column(f"{n}\n{out['splits'][n]['first_day']}..{out['splits'][n]['last_day']}", justify="right")
    rows = [("IC", "ic", False), ("IC std", "ic_std", False), ("ICIR", "icir", False), ("t-stat (NW)", "t_stat_nw", False),
            ("RankIC", "rank_ic", False), ("RankICIR", "rank_icir", False), ("RankIC t (NW)", "rank_t_stat_nw", False),
            ("coverage", "coverage", True), ("top turnover", "top_turnover", True)]
    for label, k, pct in rows:
        t.add_row(label, *[f(out["splits"][n][k], pct) for n in names])
    q = len(out["splits"][names[0]]["quantile_returns"])
    for i in range(q):
        t.add_row(f"Q{i + 1} fwd return", *[f(out["splits"][n]["quantile_returns"][i], True) for n in names])
    for label, k, pct in [("L/S ann. return", "ann_return", True), ("L/S cum. return", "cum_return", True),
                          ("L/S Sharpe", "sharpe", False), ("L/S max drawdown", "max_drawdown", True),
                          ("L/S turnover/day", "turnover", False)]:
        t.add_row(label, *[f(out["splits"][n]["backtest"][k], pct) for n in names])
    for h in out["splits"][names[0]]["rank_ic_decay"]:
        t.add_row(f"RankIC h={h}", *[f(out["splits"][n]["rank_ic_decay"][h]) for n in names])
    Console().print(t)
    rep = out["data_report"]
    shown = [i for i in rep["issues"] if i["action"] not in ("kept", "reordered")]
    if shown:  # what the loader repaired, derived or set aside, so that a new market's quirks are visible
        found = "; ".join(f"{i['check']} {i['count']:,} ({i['action']})" for i in shown)
        Console().print(f"data: {rep['rows_read']:,} rows read, {rep['rows_valid']:,} valid; {found}. "
                        f"Details: finllm data validate {out['data']}")
