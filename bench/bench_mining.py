"""Headline factor-mining benchmark: RL pool vs GP pool vs Alpha158-style linear vs LightGBM, one run.

US S&P 500 panel, splits train 2003-01-01:2014-12-31, valid 2015-01-01:2016-12-31,
test 2017-01-01:2021-04-21, target = 20-day forward return (purged at split ends), long-short
top-minus-bottom quintile with 10 bps costs, traded one day after the signal and held for the target
horizon (re-formed every 20 trading days: a 20-day signal traded daily pays ~0.7 turnover a day). RL and GP get the same
wall-clock search budget per seed and the same operators, features, constants, windows, pool size
and pool rules. Seeds 0..n-1 for every method (the handcrafted linear set is deterministic; its
row is the same for every seed).

Prints the table (mean +- std over seeds) and each method's test RankIC as a RATIO of the
Alpha158-style linear baseline's, run side by side. Writes ``<out>/bench.json``.

    python bench/bench_mining.py                 # full: 504 tickers, 4 min per mining run
    python bench/bench_mining.py --quick         # 100 tickers, 1 min per mining run
    python bench/bench_mining.py --throughput    # RL episodes/s: previous settings vs now, side by side
    python bench/bench_mining.py --policy-cost   # policy + PPO cost alone (a reward that costs nothing)
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

SPLITS = {"train": "2003-01-01:2014-12-31", "valid": "2015-01-01:2016-12-31", "test": "2017-01-01:2021-04-21"}
HORIZON = 20  # target: 20-day forward return; the backtest re-forms its book every HORIZON days
KEYS = ("ic", "rank_ic", "icir", "rank_icir", "sharpe")


def _mine_job(args: tuple[dict[str, Any], str, bool]) -> dict[str, Any]:
    cfg_d, out, use_store = args
    import torch

    torch.set_num_threads(1)
    from factors.mine import MineConfig, mine

    cfg = MineConfig(**cfg_d)
    t0 = time.perf_counter()
    res = mine(cfg, out, use_store=use_store, progress=False, resume=False)
    return {"method": cfg.method if cfg.reward == "objective" else f"{cfg.method}_{cfg.reward}", "seed": cfg.seed,
            "metrics": res["metrics"], "mining": {k: v for k, v in res["mining"].items() if k != "config"},
            "pool": [(m["weight"], m["formula"]) for m in res["pool"]], "wall_s": round(time.perf_counter() - t0, 1)}


def _baselines(data: str, max_tickers: int | None, seeds: list[int], horizon: int, cost_bps: float,
               threads: int) -> list[dict[str, Any]]:
    import torch

    torch.set_num_threads(threads)
    from factors.handcrafted import alpha158_style, feature_matrix, fit_linear
    from factors.lgbm_baseline import fit_predict
    from factors.mine import MineConfig, SplitScorer, load_for_mining
    from factors.pool import zscore_days

    cfg = MineConfig(data=data, max_tickers=max_tickers, horizon=horizon, cost_bps=cost_bps, **SPLITS)
    panel, splits = load_for_mining(cfg)
    sc = SplitScorer(panel, splits, horizon, cost_bps, cfg.warmup_days, rebalance=horizon)
    t0 = time.perf_counter()
    exprs = alpha158_style()
    names, raw = feature_matrix(sc.ev, exprs)
    t_feat = time.perf_counter() - t0
    feats_z = torch.stack([zscore_days(raw[i], sc.mask)[0] for i in range(raw.shape[0])])  # 0 where missing
    train = sc.days["train"]
    ym = sc.mask & torch.isfinite(sc.target)
    target_z = zscore_days(sc.target, ym)[0]
    n_day = (ym & train[:, None]).sum(1).double()
    ok = n_day >= 2
    cell_w = torch.where(ok, 1.0 / (n_day.clamp(min=1) * max(int(ok.sum()), 1)), torch.zeros_like(n_day)).float()
    w = fit_linear(feats_z, torch.where(train[:, None], target_z, torch.zeros(())), cell_w, day_stride=2)
    comb = torch.einsum("f,fds->ds", torch.from_numpy(w).float(), feats_z)
    comb = torch.where(sc.mask, comb, torch.full((), float("nan")))
    lin = sc.report(comb)
    rows = [{"method": "alpha158_linear", "seed": s, "metrics": lin, "features": len(names),
             "feature_seconds": round(t_feat, 1)} for s in seeds]
    feats_nan = torch.where(torch.isfinite(raw), feats_z, torch.full((), float("nan")))
    del raw
    label = torch.where(ym, target_z, torch.full((), float("nan")))
    for s in seeds:
        t1 = time.perf_counter()
        pred, info = fit_predict(feats_nan, label, sc.mask, train, sc.days["valid"], seed=s, num_threads=threads)
        rows.append({"method": "lgbm_alpha158", "seed": s, "metrics": sc.report(pred), "info": {
            k: v for k, v in info.items() if k != "params"}, "wall_s": round(time.perf_counter() - t1, 1)})
    return rows


# The RL miner's settings before the throughput work (16 envs, 2 x 64 LSTM, pool statistics on every day).
PREVIOUS = {"rl": {"n_envs": 16, "n_steps": 32, "batch_size": 256, "d_model": 64, "n_layers": 2}, "pool_day_stride": 1}


def _throughput_job(args: tuple[str, dict[str, Any], float, str]) -> dict[str, Any]:
    data, over, minutes, out = args
    import torch

    torch.set_num_threads(1)
    from factors.mine import MineConfig, mine

    cfg = MineConfig(data=data, method="rl", minutes=minutes, seed=0, **SPLITS, **over)
    res = mine(cfg, out, use_store=False, progress=False, resume=False)
    m = res["mining"]
    return {"episodes_per_s": m["episodes_per_s"], "ms_per_episode": m["ms_per_episode"],
            "episodes": m["episodes"], "evaluated": m["scorer"]["evaluated"], "cache_hits": m["scorer"]["cache_hits"],
            "train_objective": m["train_objective"], "test_rank_ic": res["metrics"]["test"]["rank_ic"],
            "load": os.getloadavg()[0]}


def throughput(data: str, minutes: float, repeats: int, out: Path, workers: int) -> int:
    """RL miner throughput on the full training panel: PREVIOUS settings vs the current defaults (and
    ``workers`` evaluation threads), run alternately, one at a time, in fresh processes."""
    setups = {"previous": PREVIOUS, "now": {}}
    if workers > 1:
        setups[f"now_{workers}_eval_threads"] = {"rl": {"eval_workers": workers}}
    ctx = mp.get_context("spawn")
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in setups}
    for r in range(repeats):
        for name, over in setups.items():
            with ctx.Pool(1) as pool:
                res = pool.apply(_throughput_job, ((data, over, minutes, str(out / f"tp_{name}_{r}")),))
            rows[name].append(res)
            print(f"  {name} #{r}: {res['episodes_per_s']:.1f} episodes/s (load {res['load']:.1f}) "
                  f"ms/episode {res['ms_per_episode']}", file=sys.stderr, flush=True)
    base = sum(x["episodes_per_s"] for x in rows["previous"]) / repeats
    print(f"\nRL mining throughput (US S&P 500 train panel, {minutes} min per run, 1 torch thread, {repeats} run(s) "
          f"each, alternating)")
    print(f"{'setup':24s} {'episodes/s':>10s} {'ratio':>6s} {'eval':>7s} {'pool':>7s} {'ppo':>7s} {'policy+env':>10s}"
          f" {'CPU ms':>7s} {'per CPU-s':>9s} {'cache hits':>10s} {'load':>5s}")
    for name, rs in rows.items():
        eps = sum(x["episodes_per_s"] for x in rs) / len(rs)
        ms = {k: sum(x["ms_per_episode"][k] for x in rs) / len(rs) for k in ("eval", "pool", "ppo", "policy_env", "cpu")}
        hits = sum(x["cache_hits"] for x in rs) / max(sum(x["episodes"] for x in rs), 1)
        load = sum(x["load"] for x in rs) / len(rs)
        print(f"{name:24s} {eps:10.1f} {eps / base:6.2f} {ms['eval']:7.1f} {ms['pool']:7.1f} {ms['ppo']:7.1f} "
              f"{ms['policy_env']:10.1f} {ms['cpu']:7.1f} {1e3 / ms['cpu']:9.1f} {hits:10.1%} {load:5.1f}")
    print("(wall ms per episode; eval = factor evaluation, pool = z-scores/ICs/weights, ppo = gradient updates; "
          "CPU ms = the miner's CPU time per episode, per CPU-s = episodes per CPU-second, i.e. the rate on a core "
          "of its own)")
    (out / "throughput.json").write_text(json.dumps(rows, indent=2))
    return 0


def policy_cost(seconds: float) -> int:
    """Episodes/s of the MaskablePPO loop alone (PREVIOUS policy settings vs now): the reward costs nothing."""
    import random

    import numpy as np
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from factors.mine import MINER_CONSTS, MINER_WINDOWS, miner_ops
    from factors.rl.builder import Vocab
    from factors.rl.train import RLConfig, make_model

    torch.set_num_threads(1)
    vocab = Vocab.build(["$open", "$high", "$low", "$close", "$volume", "$vwap"], miner_ops("fast"),
                        MINER_CONSTS, MINER_WINDOWS)

    class Free:
        def __init__(self) -> None:
            self.r = random.Random(0)

        def score(self, tokens: list[str]) -> tuple[float, dict[str, Any]]:
            return self.r.random() * 0.1, {}

    class Stop(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.n, self.t0 = 0, time.perf_counter()

        def _on_step(self) -> bool:
            self.n += int(np.sum(self.locals["dones"]))
            return time.perf_counter() - self.t0 < seconds

    res = {}
    for name, over in (("previous", PREVIOUS["rl"]), ("now", {})):
        model = make_model(vocab, Free(), RLConfig(**over), 0)  # type: ignore[arg-type]
        cb = Stop()
        model.learn(10**12, callback=cb)
        res[name] = cb.n / (time.perf_counter() - cb.t0)
    print(f"policy + PPO alone ({seconds:.0f} s each, 1 torch thread, load {os.getloadavg()[0]:.1f}): "
          f"previous {res['previous']:.1f} episodes/s ({1e3 / res['previous']:.1f} ms), now {res['now']:.1f} "
          f"({1e3 / res['now']:.1f} ms); ratio {res['now'] / res['previous']:.2f}")
    return 0


def _agg(rows: list[dict[str, Any]], method: str, split: str, key: str) -> tuple[float, float, int]:
    vals = [r["metrics"][split][key] for r in rows if r["method"] == method and r["metrics"].get(split)
            and r["metrics"][split].get(key) is not None]
    if not vals:
        return math.nan, math.nan, 0
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd, len(vals)


def table(rows: list[dict[str, Any]]) -> str:
    methods = [m for m in ("rl", "rl_gain", "gp", "alpha158_linear", "lgbm_alpha158") if any(r["method"] == m for r in rows)]
    base, _, _ = _agg(rows, "alpha158_linear", "test", "rank_ic")
    head = f"{'method':16s} {'n':>2s} " + " ".join(f"{'test ' + k:>17s}" for k in KEYS) + \
        f" {'valid rank_ic':>17s} {'RankIC/base':>11s}"
    lines = [head, "-" * len(head)]
    for m in methods:
        cells = []
        n = 0
        for k in KEYS:
            mu, sd, n = _agg(rows, m, "test", k)
            cells.append(f"{mu:+.4f} ± {sd:.4f}".rjust(17))
        vmu, vsd, _ = _agg(rows, m, "valid", "rank_ic")
        mu, _, _ = _agg(rows, m, "test", "rank_ic")
        ratio = mu / base if base and not math.isnan(base) else math.nan
        lines.append(f"{m:16s} {n:2d} " + " ".join(cells) + f" {vmu:+.4f} ± {vsd:.4f}".rjust(18) + f" {ratio:11.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/market/us_sp500_daily.parquet")
    ap.add_argument("--quick", action="store_true", help="100 tickers, 1 minute per mining run")
    ap.add_argument("--minutes", type=float, default=None, help="search budget per RL/GP run (default 4, quick 1)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pool-size", type=int, default=20)
    ap.add_argument("--max-tickers", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2, help="mining runs in parallel (1 torch thread each)")
    ap.add_argument("--reward-ablation", action="store_true", help="also run RL with the 'gain' reward")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--no-store", action="store_true")
    ap.add_argument("--throughput", action="store_true", help="RL episodes/s: previous settings vs now")
    ap.add_argument("--repeats", type=int, default=2, help="--throughput: runs per setup")
    ap.add_argument("--eval-threads", type=int, default=2, help="--throughput: also try this many eval threads")
    ap.add_argument("--policy-cost", action="store_true", help="policy + PPO cost alone, previous vs now")
    ap.add_argument("--out", default="runs/bench_mining")
    a = ap.parse_args(argv)
    if a.policy_cost:
        return policy_cost(20.0)
    if a.throughput:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        return throughput(a.data, a.minutes or 1.0, a.repeats, Path(a.out), a.eval_threads)
    minutes = a.minutes if a.minutes is not None else (1.0 if a.quick else 4.0)
    max_tickers = a.max_tickers if a.max_tickers is not None else (100 if a.quick else None)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(a.seeds))
    jobs = []
    methods = [("rl", "objective"), ("gp", "objective")] + ([("rl", "gain")] if a.reward_ablation else [])
    for method, reward in methods:
        for s in seeds:
            cfg = dict(data=a.data, method=method, minutes=minutes, pool_size=a.pool_size, seed=s,
                       max_tickers=max_tickers, reward=reward, horizon=HORIZON, rebalance=HORIZON, **SPLITS)
            jobs.append((cfg, str(out / f"{method}_{reward}_seed{s}"), not a.no_store))
    t0 = time.perf_counter()
    print(f"bench_mining: {len(jobs)} mining runs x {minutes} min on {a.workers} workers, "
          f"tickers={max_tickers or 'all'}, pool={a.pool_size}, seeds={seeds}", file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(a.workers) as pool:
        for r in pool.imap_unordered(_mine_job, jobs):
            rows.append(r)
            t = r["metrics"].get("test", {})
            print(f"  {r['method']} seed {r['seed']}: test RankIC {t.get('rank_ic')}, IC {t.get('ic')}, "
                  f"rate {r['mining'].get('episodes_per_s', r['mining'].get('evals_per_s'))}/s "
                  f"[{time.perf_counter() - t0:.0f}s]", file=sys.stderr, flush=True)
    if not a.no_baselines:
        print("  baselines: Alpha158-style features, linear + LightGBM ...", file=sys.stderr, flush=True)
        rows += _baselines(a.data, max_tickers, seeds, HORIZON, 10.0, threads=max(1, a.workers))
    total = time.perf_counter() - t0
    (out / "bench.json").write_text(json.dumps({"rows": rows, "minutes_per_run": minutes, "max_tickers": max_tickers,
                                                "seeds": seeds, "splits": SPLITS, "total_s": round(total, 1)},
                                               indent=2, default=str))
    lines = [f"Factor mining bench (US S&P 500{'' if not max_tickers else f', {max_tickers} tickers'}; target 20-day "
             f"forward return; {minutes} min search per RL/GP run; pool size {a.pool_size}; mean ± std over "
             f"{len(seeds)} seeds; Sharpe = long-short quintiles re-formed every {HORIZON} days, 10 bps costs per "
             f"rebalance)", table(rows)]
    rl = [r["mining"] for r in rows if r["method"] == "rl"]
    gp_rates = [r["mining"].get("evals_per_s") for r in rows if r["method"] == "gp"]
    if rl and gp_rates:
        rate = sum(m["episodes_per_s"] for m in rl) / len(rl)
        cpu = [m["episodes_this_session"] / m["seconds"]["cpu"] for m in rl if m.get("seconds", {}).get("cpu")]
        cpu_txt = f", {sum(cpu) / len(cpu):.1f} per CPU-second of the miner process" if cpu else ""
        lines.append(f"\nfactors tried per second: RL {rate:.1f} (episodes per wall second of search, PPO updates "
                     f"included{cpu_txt}), GP {sum(gp_rates) / len(gp_rates):.1f} (evaluations); {a.workers} runs "
                     f"in parallel; load average at the end {os.getloadavg()[0]:.1f}; whole bench {total / 60:.1f} min")
    text = "\n".join(lines)
    print("\n" + text)
    (out / "headline.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
