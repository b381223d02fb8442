"""Several short searches instead of one long one, their pools averaged: the miner's default
(:func:`auto_restarts`: one search per ``AUTO_MINUTES_PER_RESTART`` minutes of budget, at most
``AUTO_MAX_RESTARTS``).

Why: a pool's weights and members are fit to the train panel, and one search's pool carries that search's
luck. Measured at the same total CPU on the US panel (``bench/results/mining_pool_combine.md``), one 9-minute
RL run scored test RankIC 0.0327 ± 0.0063 while the average of three 3-minute pools scored 0.0432 ± 0.0021
(valid 0.0479 vs 0.0531); on validation alone the averaged pools win too, so the choice does not rest on test.
Over 5 seeds at 9 minutes (``bench/results/mining_restarts_us.md``, ``mining_restarts6_us.md``), six
1.5-minute searches beat three 3-minute ones on validation (RL valid RankIC 0.0540 vs 0.0517; test 0.0446
vs 0.0416), hence 1.5 minutes per search. Twelve 45-second searches (``mining_restarts12_us.md``) were level on
validation (0.0550) and lower on test (0.0434), with twice the members, so the cap stays at 6.

How: restart ``r`` runs the chosen method (RL or GP) for ``minutes / k`` on an empty pool with seed
``seed + RESTART_SEED_STEP * r`` (restart 0 uses the run's own seed), sharing the evaluator and its cache. The
final pool is every restart's members with weights ``w / (k * s_r)``, where ``s_r`` is the standard deviation
of restart ``r``'s combined training signal (each pool counts the same, whatever its scale); a formula found
by several restarts appears once with its weights summed. The pool can so hold up to ``k x pool_size`` members.

Bagging (``MineConfig.bag_days`` > 0, off by default): each search fits its pool (member ICs, mutual ICs,
weights, the admission objective) on the train days re-weighted by :func:`bag_weights`, a Bayesian bootstrap
over blocks of ``bag_days`` consecutive days drawn from the search's seed. Blocks, not days, because an
h-day forward return overlaps its neighbours; the restarts then overfit different draws of the same panel
and their average is a bagged pool. The finished pool is scored, as always, on every day unweighted.

Processes (``MineConfig.jobs`` / ``--jobs``, 1 by default): the restarts run in ``jobs`` processes side by
side, restart ``r`` in process ``r mod jobs`` (process 0 is the caller; the others are spawned, each with its
own evaluator and about 1 GB of memory on the S&P 500 panel). ``minutes`` stays the wall budget: the auto rule
runs once per process (``jobs * auto_restarts(minutes)`` searches, each as long as in a 1-process run), and
explicit restarts get ``minutes / ceil(k / jobs)`` each. A search's pool depends only on its seed and budget,
so with ``max_episodes`` the run's pool is the same for any ``jobs``.

A finished restart writes ``<out>/restart_<r>/done.json``; a resumed run (same settings) reuses it, and an
RL restart cut off mid-way resumes from its own checkpoint in that folder.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from finllm.jsonsafe import json_safe

if TYPE_CHECKING:
    from factors.expr import Expr
    from factors.mine import MineConfig, TrainSide
    from factors.panel import Panel
    from factors.pool import AlphaPool
    from factors.splits import Split

AUTO_MINUTES_PER_RESTART = 1.5  # auto rule (MineConfig.restarts == 0): one search per 1.5 minutes of budget ...
AUTO_MAX_RESTARTS = 6  # ... and at most 6 (12 measured: no better); budgets under 3 minutes stay one search
RESTART_SEED_STEP = 7919  # seeds of restarts 1, 2, ...: far from the seeds of neighbouring runs (0, 1, 2, ...)


def auto_restarts(minutes: float) -> int:
    """The number of searches a ``minutes`` budget is split into when ``restarts`` is 0 (auto): 1 below 3
    minutes, then one per ``AUTO_MINUTES_PER_RESTART`` minutes, at most ``AUTO_MAX_RESTARTS``."""
    return max(1, min(AUTO_MAX_RESTARTS, int(float(minutes) / AUTO_MINUTES_PER_RESTART + 1e-9)))


def bag_weights(n_days: int, block: int, seed: int) -> np.ndarray:
    """(n_days,) float32 Bayesian-bootstrap weights: one Exp(1) draw per block of ``block`` consecutive days
    (the last block may be shorter), from ``seed``."""
    n_blocks = -(-n_days // block)
    w = np.random.default_rng([int(seed), 0xBA6]).exponential(1.0, n_blocks)
    return np.repeat(w, block)[:n_days].astype(np.float32)


def restart_configs(cfg: MineConfig) -> list[MineConfig]:
    """One single-search config per restart. ``max_episodes`` (when set) is split evenly; the wall budget
    ``minutes`` is split over the ``ceil(k / jobs)`` rounds in which ``jobs`` processes run the ``k`` searches."""
    k = cfg.n_restarts()
    per_run = math.ceil(cfg.max_episodes / k) if cfg.max_episodes else None
    rounds = math.ceil(k / max(1, min(cfg.jobs, k)))
    return [replace(cfg, seed=cfg.seed + RESTART_SEED_STEP * r, minutes=cfg.minutes / rounds, max_episodes=per_run,
                    restarts=1, jobs=1) for r in range(k)]


def signal_scale(pool: AlphaPool) -> float:
    """Standard deviation of the pool's combined training signal over its live cells (1.0 for an empty or flat
    pool, so that dividing by it is safe)."""
    if not pool.members:
        return 1.0
    c = pool.combination()
    live = pool.mask & pool.day_ok[:, None]
    s = float(torch.sqrt((c[live] ** 2).mean())) if bool(live.any()) else 0.0
    return s if s > 0 and math.isfinite(s) else 1.0


def average_pools(pools: Sequence[tuple[list[dict[str, Any]], float]]) -> list[dict[str, Any]]:
    """Members of several pools (each ``(members, scale)``, members as :meth:`AlphaPool.describe` gives them)
    as one pool whose signal is the average of the pools' unit-scale signals; ``restarts`` lists the pools each
    member came from."""
    k = max(len(pools), 1)
    merged: dict[tuple[str, ...], dict[str, Any]] = {}
    for r, (members, scale) in enumerate(pools):
        for m in members:
            key = tuple(m["tokens"])
            w = float(m["weight"]) / (k * scale)
            if key in merged:
                merged[key]["weight"] += w
                merged[key]["restarts"].append(r)
            else:
                merged[key] = {**m, "weight": w, "restarts": [r]}
    return list(merged.values())


def search_restarts(cfg: MineConfig, side: TrainSide, panel: Panel, splits: list[Split], out: Path, resume: bool,
                    progress: bool, library: Sequence[Sequence[str]],
                    ) -> tuple[list[dict[str, Any]], dict[str, Any], tuple[float, Expr | None]]:
    """Run :func:`restart_configs`' searches into fresh pools and average their pools (:func:`average_pools`).
    Returns ``(members, mining statistics, best single factor)`` as :func:`factors.mine.search_once` does.

    ``cfg.jobs`` > 1: restart ``r`` runs in process ``r mod jobs``; process 0 is this one, on ``side``'s
    evaluator, the others are spawned with their own evaluator on ``panel`` / ``splits``. Each search is seeded
    and fills its own pool, so the pool does not depend on ``jobs`` (the budget per search does)."""
    subs = restart_configs(cfg)
    jobs = max(1, min(cfg.jobs, len(subs)))
    shares = [list(range(j, len(subs), jobs)) for j in range(jobs)]
    if jobs == 1:
        done = dict(_run_share(cfg, subs, shares[0], side, out, resume, progress, library))
    else:
        done = _run_parallel(cfg, subs, shares, side, panel, splits, out, resume, progress, library)
    records = [done[r] for r in range(len(subs))]
    members = average_pools([(d["members"], d["scale"]) for d in records])
    ic, tokens = max((d["best_single"] for d in records), key=lambda b: abs(b[0]) if b[1] else -1.0)
    best = side.scorer.parse(tokens) if tokens else None
    return members, _summary(cfg, records, jobs), (ic, best)


def _run_share(cfg: MineConfig, subs: list[MineConfig], share: list[int], side: TrainSide, out: Path, resume: bool,
               progress: bool, library: Sequence[Sequence[str]]) -> list[tuple[int, dict[str, Any]]]:
    """Restarts ``share`` one after another on ``side``'s evaluator (each into a fresh pool); a finished
    restart with the same settings is reused. Returns ``(r, record)`` pairs, each also in ``restart_<r>/done.json``."""
    from factors.mine import fresh_side, search_once

    done = []
    for r in share:
        sub = subs[r]
        folder = out / f"restart_{r}"
        folder.mkdir(parents=True, exist_ok=True)
        key = json.loads(json.dumps(json_safe(sub.run_config()), default=str))
        prior = _load_done(folder / "done.json", key) if resume else None
        if prior is None:
            s = fresh_side(side, sub)
            t0 = time.perf_counter()
            members, mining, (ic, best) = search_once(sub, s, folder, resume, progress, library,
                                                      label=f"{cfg.method.upper()} {r + 1}/{len(subs)}")
            prior = {"key": key, "seed": sub.seed, "members": members, "scale": signal_scale(s.pool),
                     "mining": mining, "best_single": [ic, list(best.tokens) if best is not None else None],
                     "seconds": round(time.perf_counter() - t0, 1)}
            (folder / "done.json").write_text(json.dumps(json_safe(prior), default=str, allow_nan=False))
        done.append((r, prior))
    return done


def _share_in_process(cfg: MineConfig, subs: list[MineConfig], share: list[int], panel: Panel, splits: list[Split],
                      out: Path, resume: bool, library: Sequence[Sequence[str]]) -> list[tuple[int, dict[str, Any]]]:
    """:func:`_run_share` in a spawned process: its own evaluator on ``panel``, no progress bar."""
    from factors.mine import build_train_side, torch_threads

    with torch_threads(cfg.threads):
        return _run_share(cfg, subs, share, build_train_side(panel, splits, cfg), out, resume, False, library)


def _run_parallel(cfg: MineConfig, subs: list[MineConfig], shares: list[list[int]], side: TrainSide, panel: Panel,
                  splits: list[Split], out: Path, resume: bool, progress: bool, library: Sequence[Sequence[str]],
                  ) -> dict[int, dict[str, Any]]:
    """Shares 1.. in spawned processes while this process runs share 0; every record by restart index."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from finllm.errors import UsageError

    if mp.current_process().daemon:  # e.g. a multiprocessing.Pool worker: it may not start processes
        raise UsageError(f"--jobs {cfg.jobs}: this process ({mp.current_process().name}) is a daemon and cannot start "
                         "mining processes; use --jobs 1 here")
    lib = [list(t) for t in library]
    ex = ProcessPoolExecutor(max_workers=len(shares) - 1, mp_context=mp.get_context("spawn"))
    try:
        futures = [ex.submit(_share_in_process, cfg, subs, share, panel, splits, out, resume, lib)
                   for share in shares[1:]]
        done = dict(_run_share(cfg, subs, shares[0], side, out, resume, progress, library))
        for f in futures:
            done.update(f.result())
    except BrokenProcessPool as e:  # a worker killed (out of memory, a signal): finished restarts are kept
        raise UsageError(f"--jobs {cfg.jobs}: a mining process died ({e}); the restarts it finished are kept "
                         f"in {out}/restart_*/ and a rerun resumes from them (or use --jobs 1)") from None
    except BaseException:
        # the error surfaces now, not after the other processes spend their budget; the restarts they
        # finished are on disk (done.json) and an interrupted one resumes from its checkpoint
        _terminate(ex)
        raise
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    return done


def _terminate(ex: object) -> None:
    """Stop a ProcessPoolExecutor's workers now (``terminate_workers`` from Python 3.14 on)."""
    stop = getattr(ex, "terminate_workers", None)
    if callable(stop):
        stop()
        return
    for proc in list((getattr(ex, "_processes", None) or {}).values()):
        proc.terminate()


def _load_done(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """A finished restart's record when it was made with the same settings; None otherwise."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("key") == key else None


def _summary(cfg: MineConfig, done: list[dict[str, Any]], jobs: int = 1) -> dict[str, Any]:
    """Mining statistics of the whole run: totals and rates over the restarts, and one line per restart.
    ``episodes_per_s`` is per process (episodes over the searches' summed seconds); with ``jobs`` processes
    side by side the run's own rate is ``run_episodes_per_s`` (``jobs`` times that)."""
    ms = [d["mining"] for d in done]
    rl = cfg.method == "rl"
    count = "episodes" if rl else "evaluations"
    total = sum(int(m.get(count, 0)) for m in ms)
    # RL reports its search seconds (PPO included) under seconds.search, GP its evolution time as elapsed_s
    search_s = sum(float(m["seconds"]["search"] if rl else m.get("elapsed_s", 0.0)) for m in ms)
    rate = total / max(search_s, 1e-9)
    out: dict[str, Any] = {count: total, ("episodes_per_s" if rl else "evals_per_s"): round(rate, 2), "jobs": jobs,
                           ("run_episodes_per_s" if rl else "run_evals_per_s"): round(rate * jobs, 2),
                           "restarts": [{"seed": d["seed"], count: m.get(count), "train_objective": m.get("train_objective"),
                                         "members": len(d["members"]), "scale": d["scale"], "seconds": d.get("seconds")}
                                        for d, m in zip(done, ms)],
                           "train_objective": sum(float(m.get("train_objective", 0.0)) for m in ms) / max(len(ms), 1),
                           **{k: sum(int(m.get(k, 0)) for m in ms) for k in ("seeded_from_library", "seeded_kept")},
                           "seed_seconds": round(sum(float(m.get("seed_seconds", 0.0)) for m in ms), 2)}
    if rl:
        secs: dict[str, float] = {}
        for m in ms:
            for k, v in m.get("seconds", {}).items():
                secs[k] = secs.get(k, 0.0) + float(v)
        n = max(sum(int(m.get("episodes_this_session", 0)) for m in ms), 1)
        out.update(episodes_this_session=n, seconds={k: round(v, 2) for k, v in secs.items()},
                   ms_per_episode={k: round(v / n * 1e3, 2) for k, v in secs.items()})
    scorers = [m.get("scorer", {}) for m in ms]
    # per-search counters add up; the evaluator_* figures describe the last search's evaluator (shared in its process)
    out["scorer"] = {k: (scorers[-1][k] if k.startswith("evaluator_") else sum(s.get(k, 0) for s in scorers))
                     for k in scorers[0] if all(isinstance(s.get(k), (int, float)) for s in scorers)}
    return out
