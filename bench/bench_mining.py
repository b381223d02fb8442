"""Headline factor-mining benchmark: RL pool vs GP pool vs Alpha158-style linear vs LightGBM, one run.

US S&P 500 panel, splits train 2003-01-01:2014-12-31, valid 2015-01-01:2016-12-31,
test 2017-01-01:2021-04-21, target = 20-day forward return (purged at split ends), long-short
top-minus-bottom quintile with 10 bps costs, traded one day after the signal. RL and GP get the same
wall-clock search budget per seed and the same operators, features, constants, windows, pool size
and pool rules. Seeds 0..n-1 for every method (the handcrafted linear set is deterministic; its
row is the same for every seed).

Prints the table (mean +- std over seeds) and each method's test RankIC as a RATIO of the
Alpha158-style linear baseline's, run side by side. Writes ``<out>/bench.json``.

    python bench/bench_mining.py                 # full: 504 tickers, 4 min per mining run
    python bench/bench_mining.py --quick         # 100 tickers, 1 min per mining run
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
    sc = SplitScorer(panel, splits, horizon, cost_bps, cfg.warmup_days)
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
    ap.add_argument("--out", default="runs/bench_mining")
    a = ap.parse_args(argv)
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
                       max_tickers=max_tickers, reward=reward, **SPLITS)
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
        rows += _baselines(a.data, max_tickers, seeds, 20, 10.0, threads=max(1, a.workers))
    total = time.perf_counter() - t0
    (out / "bench.json").write_text(json.dumps({"rows": rows, "minutes_per_run": minutes, "max_tickers": max_tickers,
                                                "seeds": seeds, "splits": SPLITS, "total_s": round(total, 1)},
                                               indent=2, default=str))
    print(f"\nFactor mining bench (US S&P 500{'' if not max_tickers else f', {max_tickers} tickers'}; target 20-day "
          f"forward return; {minutes} min search per RL/GP run; pool size {a.pool_size}; mean ± std over "
          f"{len(seeds)} seeds; Sharpe = long-short quintiles, 10 bps costs)")
    print(table(rows))
    rl_rates = [r["mining"].get("episodes_per_s") for r in rows if r["method"] == "rl"]
    gp_rates = [r["mining"].get("evals_per_s") for r in rows if r["method"] == "gp"]
    if rl_rates and gp_rates:
        print(f"\nfactors tried per second: RL {sum(rl_rates) / len(rl_rates):.1f} (episodes), "
              f"GP {sum(gp_rates) / len(gp_rates):.1f} (evaluations); whole bench {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
