"""`finllm factors mine`: mine a synergistic factor pool with RL (MaskablePPO) or the GP baseline."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from finllm.cli.common import console, emit_json, friendly_errors

DEFAULT_DATA = "data/market/us_sp500_daily.parquet"


def register(app: typer.Typer) -> None:
    app.command("mine")(mine_cmd)


@friendly_errors
def mine_cmd(
    data: Path = typer.Option(Path(DEFAULT_DATA), "--data",
                              help="Market data: parquet/CSV file or folder, or a Qlib dump (an in_universe column "
                                   "limits the cross-sections)."),
    method: str = typer.Option("rl", "--method", help="rl (MaskablePPO + LSTM over postfix tokens) or gp (baseline)."),
    minutes: float = typer.Option(5.0, "--minutes", min=0.0, help="Wall-clock budget of the search."),
    pool_size: int = typer.Option(20, "--pool-size", min=1, max=200, help="Pool capacity K (10/20/50 are usual)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (policy, environment, GP)."),
    restarts: int = typer.Option(0, "--restarts", min=0, max=50,
                                 help="Independent searches sharing the budget, their pools averaged (less overfit "
                                      "to train). 0 = auto: one per 1.5 minutes of --minutes, 1 to 6."),
    jobs: int = typer.Option(1, "--jobs", min=1, max=64,
                             help="Processes running the restarts side by side. --minutes stays the wall budget, "
                                  "so with --restarts 0 each process runs the searches a 1-process run would: "
                                  "--jobs 2 averages twice the searches in the same time (and twice the memory)."),
    combiner: str = typer.Option("auto", "--combiner",
                                 help="How the pool's members are combined after train: fitted (the train weights), "
                                      "refit250/refit500/refit1000/refit1000s (re-fitted every day on the last N "
                                      "days with realised returns, no look-ahead), or auto (the best of these on "
                                      "valid RankIC)."),
    train: str = typer.Option(None, "--train", show_default=False,
                              help="Train range START:END (inclusive). Default (the same rule as `factors eval` "
                                   "and `factors ask`): 2003-01-01:2014-12-31 on the shipped US file; on other data "
                                   "the first 60% of its days (then 20% valid, 20% test). Give all three or none."),
    valid: str = typer.Option(None, "--valid", show_default=False,
                              help="Validation range START:END. Default: 2015-01-01:2016-12-31 on the US file."),
    test: str = typer.Option(None, "--test", show_default=False,
                             help="Test range START:END. Default: 2017-01-01:2021-04-21 on the US file."),
    out: Path = typer.Option(Path("runs/mine"), "--out", help="Folder for result.json and checkpoints "
                                                               "(a killed RL run resumes from here)."),
    horizon: int = typer.Option(20, "--horizon", min=1, max=252, help="Target: the H-day forward return."),
    cost_bps: float = typer.Option(10.0, "--cost-bps", min=0, help="Backtest cost per unit traded, in bps."),
    rebalance: int = typer.Option(None, "--rebalance", min=1, max=252, show_default=False,
                                  help="Backtest holding period: re-form the long-short book every N days (costs on "
                                       "each rebalance). Default: the --horizon (an H-day signal held H days); "
                                       "1 = daily."),
    max_tickers: int = typer.Option(None, "--max-tickers", help="Keep the N tickers with most valid days."),
    const_free: str = typer.Option(None, "--const-free", show_default=False,
                                   help='Operators the search may not give a constant argument (comma list; "" = '
                                        "AlphaGen's grammar): with Greater,Less it does not write Less(5, $close). "
                                        "Default: the miner's (factors.mine.MineConfig.const_free)."),
    bag_days: int = typer.Option(None, "--bag-days", min=0, max=100_000, show_default=False,
                                 help="Bag the restarts: each search fits its pool on the train days re-weighted by a "
                                      "bootstrap over blocks of N days (0 = off). Default: the miner's "
                                      "(factors.mine.MineConfig.bag_days)."),
    pool_objective: str = typer.Option(None, "--pool-objective", show_default=False,
                                       help="What a factor must raise to enter the pool: ic (mean daily IC of the "
                                            "combination) or icir. Default: the miner's (MineConfig.pool_objective)."),
    pool_target: str = typer.Option(None, "--pool-target", show_default=False,
                                    help="What the pool's train IC is measured against: return (the forward return) "
                                         "or rank (its cross-sectional rank per day). Default: the miner's "
                                         "(MineConfig.pool_target)."),
    recency_halflife: int = typer.Option(None, "--recency-halflife", min=0, max=100_000, show_default=False,
                                         help="Weigh train days by recency in the pool's fit: a day N trading days "
                                              "older counts half as much (0 = every day alike). Default: the miner's "
                                              "(MineConfig.recency_halflife)."),
    scale_free: bool = typer.Option(None, "--scale-free/--any-scale", show_default=False,
                                    help="Admit only scale-free factors: ones whose ranking does not depend on a "
                                         "stock's price scale ($close, Add($high, 2) are refused; Div(Mean($close, 20), "
                                         "$close) is not). Default: the miner's (factors.mine.MineConfig.scale_free)."),
    windows: str = typer.Option(None, "--windows", show_default=False,
                                help="Rolling windows (trading days) the search may write, a comma list. Default: "
                                     "the miner's (factors.mine.MineConfig.windows: 5,10,20,40, AlphaGen's)."),
    ops: str = typer.Option("fast", "--ops", help='Operators: "fast" (all but the slow sort-based ones), "all", '
                                                  "or a comma list."),
    reward: str = typer.Option("objective", "--reward", help="RL reward: objective (pool IC after the attempt) or gain."),
    eval_threads: int = typer.Option(None, "--eval-threads", min=1, max=16, show_default=False,
                                     help="RL: threads evaluating the factors that the vectorised envs finish in the "
                                          "same step (results are identical for any count; 1 is faster on a CPU "
                                          "that other jobs keep busy). Default: 2 where there are 2+ cores and "
                                          "--jobs is 1; 1 with --jobs 2+ (the processes fill the cores)."),
    max_factors: int = typer.Option(None, "--max-factors", help="Also stop after this many factors (repeatable runs)."),
    seed_library: str = typer.Option(None, "--seed-library",
                                     help='Offer these factors to the pool first: a library source of the store ("all" = any) '
                                          'or "alpha158" (the built-in Alpha158-style set); the seeding '
                                          'counts against --minutes.'),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore an existing checkpoint in --out."),
    no_store: bool = typer.Option(False, "--no-store", help="Do not write the run to the database."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON document on stdout."),
) -> None:
    """Mine a pool of formulaic alphas on the train split, fit its weights on train and report IC, RankIC,
    ICIR and a long-short backtest with costs on train/valid/test. The pool is saved to the factor library."""
    from factors.mine import MineConfig
    from factors.splits import AUTO
    from finllm.app.mine import mine_and_record
    from finllm.cli.checks import check_nonempty, check_number, check_out_dir, check_seed

    check_seed(seed)
    if eval_threads is None:
        eval_threads = 1 if jobs > 1 else min(2, os.cpu_count() or 1)
    check_number(minutes, "--minutes", 0)
    check_number(cost_bps, "--cost-bps", 0, 10_000)
    check_number(max_factors, "--max-factors", 1)
    check_number(max_tickers, "--max-tickers", 1)
    check_nonempty(ops, "--ops")
    check_out_dir(out, need_parent=False)

    if train is None and valid is None and test is None:  # factors.splits.default_splits on the loaded panel
        train, valid, test = AUTO, AUTO, AUTO
    cfg = MineConfig(data=str(data), train=train, valid=valid, test=test, method=method, minutes=minutes,
                     pool_size=pool_size, seed=seed, restarts=restarts, jobs=jobs, combiner=combiner, horizon=horizon, cost_bps=cost_bps, rebalance=rebalance,
                     max_tickers=max_tickers, **({} if const_free is None else {"const_free": const_free}),
                     **({} if bag_days is None else {"bag_days": bag_days}),
                     **({} if pool_objective is None else {"pool_objective": pool_objective}),
                     **({} if scale_free is None else {"scale_free": scale_free}),
                     **({} if pool_target is None else {"pool_target": pool_target}),
                     **({} if recency_halflife is None else {"recency_halflife": recency_halflife}),
                     **({} if windows is None else {"windows": windows}),
                     ops=ops, reward=reward, max_episodes=max_factors, seed_library=seed_library,
                     rl={"eval_workers": eval_threads} if eval_threads > 1 else {})
    cfg.validate()
    from finllm.store import open_store

    res = mine_and_record(cfg, out, None if no_store else open_store(), progress=not as_json, resume=not fresh)
    if as_json:
        emit_json(res)
        return
    from finllm.cli.tables import print_table

    cols = ("ic", "rank_ic", "icir", "rank_icir", "sharpe", "turnover")
    heads = ["IC", "RankIC", "ICIR", "RankICIR", "Sharpe (net)", "turnover"]
    print_table(["split", *heads], [[split, *[m.get(k) for k in cols]] for split, m in res["metrics"].items()],
                title=f"{method.upper()} pool ({len(res['pool'])} factors), seed {seed}, rebalance every "
                      f"{cfg.rebalance} d", right=heads)
    print_table(["weight", "scale-free", "formula"],
                [[f"{m['weight']:+.3f}", "yes" if m.get("scale_free") else "no", m["formula"]] for m in res["pool"]],
                right=["weight"])
    share = res["mining"].get("scale_free_share") or {}
    if share.get("weight") is not None:
        typer.echo(f"scale-free: {share['members']:.0%} of the factors, {share['weight']:.0%} of the weight (the rest "
                   "rank stocks partly by their price scale; --scale-free admits only scale-free ones)")
    comb = res.get("combiner") or {}
    if comb:
        cand = ", ".join(f"{k} {v['valid']:+.4f}" for k, v in comb["candidates"].items() if v.get("valid") is not None)
        typer.echo(f"combiner: {comb['chosen']} (asked: {comb['requested']}; valid RankIC: {cand or 'no valid split'})"
                   + (f"; re-fits skipped: {comb['skipped']}" if comb.get("skipped") else ""))
    mining = res["mining"]
    rate = mining.get("run_episodes_per_s", mining.get("run_evals_per_s",
                                                         mining.get("episodes_per_s", mining.get("evals_per_s"))))
    typer.echo(f"factors tried: {mining.get('episodes', mining.get('evaluations'))} ({rate}/s of search wall time); "
               f"run {res['run_id']}; result {out / 'result.json'}")
    if mining.get("ms_per_episode"):  # diagnostics: stderr
        ms = mining["ms_per_episode"]
        console.print("ms per episode: " + ", ".join(f"{k} {v}" for k, v in ms.items()))
