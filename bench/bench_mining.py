"""Headline factor-mining benchmark: RL pool vs GP pool vs Alpha158-style linear vs LightGBM, one run.

Any market file the CLI reads (``--data``, default the shipped US S&P 500 panel), with the project's default
splits (``factors.splits.default_splits``): on the US file train 2003-01-01:2014-12-31, valid
2015-01-01:2016-12-31, test 2017-01-01:2021-04-21; on any other market 60/20/20 of its days by time. Target = 20-day forward return (purged at split ends), long-short
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

Ablation (issue 17): ``--admission 0.2`` adds RL and GP runs whose pool admits a factor only if it does not
lower the pool's IC on an inner validation window (the last 20% of train days, purged by the horizon;
``MineConfig.admit_valid_frac``). ``--incremental rl,gp`` adds LightGBM on Alpha158 + each seed's mined pool
members (same splits, settings and seed as LightGBM on Alpha158 alone): the pool's incremental value. Paired
t-tests and sign tests over seeds follow the table; ``--results NAME`` writes bench/results/NAME.{md,json}.

    python bench/bench_mining.py --minutes 3 --seeds 3 --admission 0.2 --incremental rl,rl_adm,gp,gp_adm \\
        --no-store --results mining_ablation

Any other ``MineConfig`` setting: ``--variant NAME:KEY=VALUE[;KEY=VALUE]`` adds rows ``<method>_NAME`` run with
it (paired with their base method), ``--set KEY=VALUE`` changes every run, ``--variants-only`` skips the base
rows (stop 22: ``--variant cf:const_free=Greater,Less``, ``--variant len12:max_len=12``; stop 25:
``--variant sf:scale_free=1``, ``--variant rt:pool_target=rank``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from factors.scoring import SplitScorer
from factors.splits import AUTO

if TYPE_CHECKING:
    from factors.handcrafted import Alpha158Features

# "auto": the project's default rule (factors.splits.default_splits) on the loaded panel: the documented ranges on
# the shipped US file, 60/20/20 of the panel's days by time on any other market
SPLITS = {"train": AUTO, "valid": AUTO, "test": AUTO}
HORIZON = 20  # target: 20-day forward return; the backtest re-forms its book every HORIZON days
KEYS = ("ic", "rank_ic", "icir", "rank_icir", "sharpe")


def _label(cfg: dict[str, Any]) -> str:
    """Row name of a mining run: method, ``_gain`` for the gain reward, ``_adm`` with inner-validation admission."""
    name = cfg["method"] if cfg.get("reward", "objective") == "objective" else f"{cfg['method']}_{cfg['reward']}"
    return name + ("_adm" if cfg.get("admit_valid_frac", 0) > 0 else "")


def _settings(items: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> MineConfig settings, each value typed as the field's default (int, float, str; a
    bool from 1/0, true/false); ``rl.KEY=VALUE`` sets an RLConfig field (``MineConfig.rl``)."""
    from factors.mine import MineConfig
    from factors.rl.train import RLConfig

    def typed(fields: dict[str, Any], prefix: str = "") -> dict[str, type]:
        kinds = {prefix + k: type(f.default) for k, f in fields.items() if type(f.default) in (int, float, str, bool)}
        return kinds | {prefix + k: str for k, f in fields.items() if f.default is None and str(f.type) == "str | None"}

    kinds = {**typed(MineConfig.__dataclass_fields__), **typed(RLConfig.__dataclass_fields__, "rl.")}
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in kinds:
            raise SystemExit(f"{flag}: {item!r} is not KEY=VALUE with KEY one of {', '.join(sorted(kinds))}")
        if kinds[key] is bool:
            if value.lower() not in ("1", "0", "true", "false"):
                raise SystemExit(f"{flag}: {item!r}: {key} takes 1/0 or true/false")
            typed_value: Any = value.lower() in ("1", "true")
        else:
            typed_value = kinds[key](value)
        if key.startswith("rl."):
            out["rl"] = {**out.get("rl", {}), key[3:]: typed_value}
        else:
            out[key] = typed_value
    return out


def _mine_job(args: tuple[dict[str, Any], str, bool, str]) -> dict[str, Any]:
    cfg_d, out, use_store, label = args
    import torch

    torch.set_num_threads(1)
    from factors.mine import MineConfig
    from finllm.app.mine import mine_and_record
    from finllm.store import open_store

    cfg = MineConfig(**cfg_d)
    t0 = time.perf_counter()
    res = mine_and_record(cfg, out, open_store() if use_store else None, progress=False, resume=False)
    return {"method": label, "seed": cfg.seed,
            "metrics": res["metrics"], "mining": {k: v for k, v in res["mining"].items() if k != "config"},
            "pool": [(m["weight"], m["formula"]) for m in res["pool"]],
            "pool_tokens": [m["tokens"] for m in res["pool"]], "wall_s": round(time.perf_counter() - t0, 1),
            "combiner": res.get("combiner"),
            "splits": {"train": cfg.train, "valid": cfg.valid, "test": cfg.test}}


def incremental_value(sc: SplitScorer, f: Alpha158Features, pools: dict[str, list[tuple[list[str], float]]], *,
                      seed: int, threads: int, combiner: str = "fitted") -> dict[str, dict[str, Any]]:
    """LightGBM on the Alpha158-style set alone (``"lgbm_alpha158"``), on the set + each pool's members
    (``"lgbm_alpha158+<name>"``) and on the set + each pool's combined signal as one feature
    (``"lgbm_alpha158+<name>_signal"``); same splits, model settings and seed: per-split metrics and fit info.
    ``pools``: name -> the pool's ``(tokens, weight)`` members; the signal is combined by ``combiner``
    (:func:`factors.combiner.pool_signal`), as the mining run scored it."""
    from factors.combiner import pool_signal
    from factors.handcrafted import fit_alpha158_lgbm, pool_member_features, pool_signal_feature

    variants: list[tuple[str, Any]] = [("lgbm_alpha158", None)]
    for k, members in pools.items():
        variants += [(f"lgbm_alpha158+{k}", lambda m=members: pool_member_features(sc, [t for t, _ in m])),
                     (f"lgbm_alpha158+{k}_signal",
                      lambda m=members: pool_signal_feature(sc, pool_signal(sc, m, combiner)[0]))]
    out: dict[str, dict[str, Any]] = {}
    for name, build in variants:
        t1 = time.perf_counter()
        extra = None if build is None else build()
        pred, info = fit_alpha158_lgbm(sc, f, seed=seed, threads=threads, extra=extra)
        out[name] = {"metrics": sc.report(pred), "features": len(f.names) + (0 if extra is None else len(extra)),
                     "info": {k: v for k, v in info.items() if k != "params"},
                     "wall_s": round(time.perf_counter() - t1, 1)}
        del extra
    return out


def _baselines(data: str, max_tickers: int | None, seeds: list[int], horizon: int, cost_bps: float,
               threads: int, pools: dict[str, dict[int, list[tuple[list[str], float]]]],
               combiner: str = "fitted") -> list[dict[str, Any]]:
    """Alpha158-linear (deterministic; combined after train by ``combiner``, as the pools are), LightGBM-Alpha158
    per seed and, for each mined pool in ``pools`` (method -> seed -> members' ``(tokens, weight)``), LightGBM
    on Alpha158 + that pool with the same seed."""
    torch.set_num_threads(threads)
    from factors.handcrafted import alpha158_features, alpha158_linear
    from factors.mine import MineConfig, load_for_mining, pool_scorer

    cfg = MineConfig(data=data, max_tickers=max_tickers, horizon=horizon, cost_bps=cost_bps, **SPLITS)
    panel, splits = load_for_mining(cfg)
    known = [t for per in pools.values() for members in per.values() for t, _ in members]
    sc = pool_scorer([], panel, splits, cfg, extra=known)  # the history every pool's members need
    f = alpha158_features(sc)
    x, comb = alpha158_linear(sc, f, combiner)
    lin = sc.report(x)
    rows = [{"method": "alpha158_linear", "seed": s, "metrics": lin, "features": len(f.names),
             "feature_seconds": round(f.seconds, 1), "combiner": comb} for s in seeds]
    for s in seeds:
        res = incremental_value(sc, f, {m: per[s] for m, per in pools.items() if s in per}, seed=s, threads=threads,
                                combiner=combiner)
        for name, r in res.items():
            rows.append({"method": name, "seed": s, **r})
            print(f"  {name} seed {s}: test RankIC {r['metrics']['test']['rank_ic']} [{r['wall_s']}s]",
                  file=sys.stderr, flush=True)
    return rows


# The RL miner's settings before the throughput work (16 envs, 2 x 64 LSTM, pool statistics on every day).
PREVIOUS = {"rl": {"n_envs": 16, "n_steps": 32, "batch_size": 256, "d_model": 64, "n_layers": 2}, "pool_day_stride": 1}


def _throughput_job(args: tuple[str, dict[str, Any], float, str]) -> dict[str, Any]:
    data, over, minutes, out = args
    import torch

    torch.set_num_threads(1)
    from factors.mine import MineConfig, mine

    cfg = MineConfig(data=data, method="rl", minutes=minutes, seed=0, **SPLITS, **over)
    res = mine(cfg, out, progress=False, resume=False)
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
    methods = list(dict.fromkeys(r["method"] for r in rows))
    base, _, _ = _agg(rows, "alpha158_linear", "test", "rank_ic")
    head = f"{'method':22s} {'n':>2s} " + " ".join(f"{'test ' + k:>17s}" for k in KEYS) + \
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
        lines.append(f"{m:22s} {n:2d} " + " ".join(cells) + f" {vmu:+.4f} ± {vsd:.4f}".rjust(18) + f" {ratio:11.2f}")
    return "\n".join(lines)


def paired(rows: list[dict[str, Any]], a: str, b: str, split: str = "test",
           key: str = "rank_ic") -> dict[str, Any] | None:
    """``a`` vs ``b`` paired by seed: mean difference, wins of ``a``, two-sided paired t-test and sign test."""
    from scipy.stats import binomtest, ttest_rel

    va = {r["seed"]: r["metrics"][split][key] for r in rows if r["method"] == a and r["metrics"].get(split)}
    vb = {r["seed"]: r["metrics"][split][key] for r in rows if r["method"] == b and r["metrics"].get(split)}
    seeds = sorted(s for s in va if s in vb and va[s] is not None and vb[s] is not None)
    if len(seeds) < 2:
        return None
    xa, xb = [va[s] for s in seeds], [vb[s] for s in seeds]
    diff = [x - y for x, y in zip(xa, xb)]
    wins = sum(d > 0 for d in diff)
    nz = sum(d != 0 for d in diff)
    t = ttest_rel(xa, xb)
    return {"a": a, "b": b, "split": split, "key": key, "seeds": seeds, "mean_diff": sum(diff) / len(diff),
            "wins_a": wins, "t": float(t.statistic), "p_ttest": float(t.pvalue),
            "p_sign": float(binomtest(wins, nz, 0.5).pvalue) if nz else 1.0}


PAIRS = (("rl_adm", "rl"), ("gp_adm", "gp"), ("rl", "gp"), ("rl_adm", "gp_adm"),
         ("lgbm_alpha158+rl", "lgbm_alpha158"), ("lgbm_alpha158+rl_adm", "lgbm_alpha158"),
         ("lgbm_alpha158+gp", "lgbm_alpha158"), ("lgbm_alpha158+gp_adm", "lgbm_alpha158"),
         ("lgbm_alpha158+rl_signal", "lgbm_alpha158"), ("lgbm_alpha158+gp_signal", "lgbm_alpha158"),
         ("rl", "alpha158_linear"), ("lgbm_alpha158", "alpha158_linear"))


def paired_lines(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    out, res = [], []
    names = {r["method"] for r in rows}
    variants = sorted({n.split("_", 1)[1] for n in names if n.split("_", 1)[0] in ("rl", "gp") and "_" in n} - {"adm"})
    extra = [(f"{m}_{v}", m) for v in variants for m in ("rl", "gp")] + [(f"rl_{v}", f"gp_{v}") for v in variants]
    for a, b in (*PAIRS, *extra):
        for split in ("valid", "test"):
            p = paired(rows, a, b, split)
            if p is None:
                continue
            res.append(p)
            out.append(f"{a:>22s} vs {b:<16s} {split:5s} RankIC diff {p['mean_diff']:+.4f}, {a} ahead in "
                       f"{p['wins_a']}/{len(p['seeds'])} seeds, paired t {p['t']:+.2f} (p {p['p_ttest']:.3f}), "
                       f"sign test p {p['p_sign']:.3f}")
    return out, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/market/us_sp500_daily.parquet")
    ap.add_argument("--quick", action="store_true", help="100 tickers, 1 minute per mining run")
    ap.add_argument("--minutes", type=float, default=None, help="search budget per RL/GP run (default 4, quick 1)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default="rl,gp", help="miners to run (comma list of rl, gp)")
    ap.add_argument("--pool-size", type=int, default=20)
    ap.add_argument("--restarts", type=int, default=0,
                    help="searches per run sharing its budget, pools averaged (0 = the miner's auto rule: "
                         "factors.restarts.auto_restarts, one search per 1.5 minutes, 1 to 6)")
    ap.add_argument("--combiner", default="auto",
                    help="how pools and the Alpha158-linear set are combined after train (factors.combiner; "
                         "'fitted' = the train weights, as before stop 21)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a MineConfig setting for every run (repeatable), e.g. const_free=Greater,Less")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[;KEY=VALUE]",
                    help="also run each method with these MineConfig settings, rows <method>_NAME (repeatable), "
                         "e.g. cf:const_free=Greater,Less or len12:max_len=12")
    ap.add_argument("--variants-only", action="store_true",
                    help="run only the --variant rows (their base rows come from another bench on the same host)")
    ap.add_argument("--max-tickers", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2, help="mining runs in parallel (1 torch thread each)")
    ap.add_argument("--reward-ablation", action="store_true", help="also run RL with the 'gain' reward")
    ap.add_argument("--admission", type=float, default=0.0, metavar="FRAC",
                    help="also run RL and GP with inner-validation admission on the last FRAC of train (rl_adm, gp_adm)")
    ap.add_argument("--incremental", default="rl",
                    help="mined rows whose pools LightGBM also gets on top of Alpha158 (comma list; '' = none)")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--reuse-mining", action="store_true",
                    help="skip mining: reuse <out>/mining_rows.json of an earlier run with the same settings")
    ap.add_argument("--no-store", action="store_true")
    ap.add_argument("--results", default=None, metavar="NAME",
                    help="also write bench/results/NAME.md and NAME.json (table, paired tests, command)")
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
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    common = _settings(a.set, "--set")
    variants: list[tuple[str, str, float, dict, str]] = [(m, "objective", 0.0, common, "") for m in ("rl", "gp")
                                                         if m in methods]
    if a.reward_ablation:
        variants.append(("rl", "gain", 0.0, common, ""))
    if a.admission > 0:
        variants += [(m, "objective", a.admission, common, "") for m in ("rl", "gp") if m in methods]
    for spec in a.variant:
        name, _, body = spec.partition(":")
        if not name or not body or name == "adm":
            ap.error(f"--variant {spec!r}: give NAME:KEY=VALUE[;KEY=VALUE]")
        mine = _settings(body.split(";"), f"--variant {spec}")
        over = {**common, **mine, **({"rl": {**common.get("rl", {}), **mine["rl"]}} if "rl" in mine else {})}
        variants += [(m, "objective", 0.0, over, f"_{name}") for m in ("rl", "gp") if m in methods]
    if a.variants_only:
        variants = [v for v in variants if v[4]]
    for s in seeds:  # seed-major: an interrupted run still has every method for the first seeds
        for method, reward, adm, extra, suffix in variants:
            cfg = {**dict(data=a.data, method=method, minutes=minutes, pool_size=a.pool_size, seed=s,
                          max_tickers=max_tickers, reward=reward, horizon=HORIZON, rebalance=HORIZON,
                          admit_valid_frac=adm, restarts=a.restarts, combiner=a.combiner, **SPLITS),
                   **extra}  # a --set / --variant setting overrides the bench's own (e.g. restarts, pool_size)
            label = _label(cfg) + suffix
            jobs.append((cfg, str(out / f"{label}_seed{s}"), not a.no_store, label))
    t0 = time.perf_counter()
    print(f"bench_mining: {len(jobs)} mining runs x {minutes} min on {a.workers} workers, "
          f"tickers={max_tickers or 'all'}, pool={a.pool_size}, seeds={seeds}", file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")
    if a.reuse_mining:
        rows = json.loads((out / "mining_rows.json").read_text())
        jobs = []
    # not mp.Pool: its daemonic workers could not spawn the processes of a --variant NAME:jobs=2 run
    with ProcessPoolExecutor(a.workers, mp_context=ctx) as pool:
        for r in (f.result() for f in as_completed([pool.submit(_mine_job, j) for j in jobs])):
            rows.append(r)
            t = r["metrics"].get("test", {})
            print(f"  {r['method']} seed {r['seed']}: test RankIC {t.get('rank_ic')}, IC {t.get('ic')}, "
                  f"rate {r['mining'].get('episodes_per_s', r['mining'].get('evals_per_s'))}/s "
                  f"[{time.perf_counter() - t0:.0f}s]", file=sys.stderr, flush=True)
            (out / "mining_rows.json").write_text(json.dumps(rows, indent=2, default=str))
    if not a.no_baselines:
        print("  baselines: Alpha158-style features, linear + LightGBM (+ pools) ...", file=sys.stderr, flush=True)
        wanted = [m.strip() for m in a.incremental.split(",") if m.strip()]
        pools = {m: {r["seed"]: [(t, w) for t, (w, _) in zip(r["pool_tokens"], r["pool"])]
                     for r in rows if r["method"] == m and r["pool_tokens"]}
                 for m in wanted}
        rows += _baselines(a.data, max_tickers, seeds, HORIZON, 10.0, max(1, a.workers), pools, a.combiner)
    total = time.perf_counter() - t0
    plines, pres = paired_lines(rows)
    mined = [r for r in rows if r.get("splits")]
    used = mined[0]["splits"] if mined else dict(SPLITS)  # the ranges the runs resolved
    (out / "bench.json").write_text(json.dumps({"rows": rows, "minutes_per_run": minutes, "max_tickers": max_tickers,
                                                "seeds": seeds, "splits": used, "total_s": round(total, 1),
                                                "paired": pres}, indent=2, default=str))
    lines = [f"Factor mining bench ({Path(a.data).name}{'' if not max_tickers else f', {max_tickers} tickers'}; "
             f"splits {', '.join(f'{k} {v}' for k, v in used.items())}; target 20-day "
             f"forward return; {minutes} min search per RL/GP run; pool size {a.pool_size}; linear signals combined "
             f"after train: {a.combiner}; mean ± std over "
             f"{len(seeds)} seeds; Sharpe = long-short quintiles re-formed every {HORIZON} days, 10 bps costs per "
             f"rebalance)", table(rows)]
    if plines:
        lines += [f"\npaired over seeds (two-sided; with {len(seeds)} seeds the sign test cannot go below p "
                  f"{2 / 2 ** len(seeds):.3f}):", *plines]
    rl = [r["mining"] for r in rows if r["method"].startswith("rl")]
    gp_rates = [r["mining"].get("evals_per_s") for r in rows if r["method"].startswith("gp")]
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
    if a.results:
        cmd = "python bench/bench_mining.py " + " ".join(argv if argv is not None else sys.argv[1:])
        res_dir = Path(__file__).resolve().parent / "results"
        (res_dir / f"{a.results}.md").write_text(f"# {a.results}\n\nCommand: `{cmd}`\n\n```\n{text}\n```\n")
        (res_dir / f"{a.results}.json").write_text(json.dumps(
            {"command": cmd, "rows": rows, "paired": pres, "minutes_per_run": minutes, "max_tickers": max_tickers,
             "seeds": seeds, "splits": used, "total_s": round(total, 1)}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
