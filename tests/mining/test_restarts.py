"""Restarts (``factors.restarts``): several searches share the budget and their pools are averaged, each pool
at unit scale; a finished restart is reused by a resumed run with the same settings and redone otherwise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from factors.combiner import pool_signal
from factors.mine import MineConfig, build_train_side, fresh_side, load_for_mining, mine, pool_scorer
from factors.restarts import (AUTO_MAX_RESTARTS, RESTART_SEED_STEP, auto_restarts, average_pools, restart_configs,
                              signal_scale)
from finllm.errors import ConfigError
from tests.mining.conftest import SPLITS


def test_auto_rule_and_budget_split(us_slice) -> None:
    # one search per 1.5 minutes, 1 to 6: the demo's 3 minutes -> 2, the bench's 9 -> 6, the DAG's 20 -> 6
    assert [auto_restarts(m) for m in (0.2, 1.0, 2.9, 3.0, 4.5, 6.0, 9.0, 20.0)] == [1, 1, 1, 2, 3, 4, 6, AUTO_MAX_RESTARTS]
    short = MineConfig(data=str(us_slice), minutes=2.5, **SPLITS)
    long = MineConfig(data=str(us_slice), minutes=6.0, **SPLITS)
    assert short.n_restarts() == 1 and long.n_restarts() == 4
    assert MineConfig(data=str(us_slice), minutes=6.0, restarts=2, **SPLITS).n_restarts() == 2  # explicit wins
    subs = restart_configs(long)
    assert [s.seed for s in subs] == [RESTART_SEED_STEP * r for r in range(4)]
    assert sum(s.minutes for s in subs) == pytest.approx(long.minutes)
    assert all(s.n_restarts() == 1 for s in subs)
    capped = MineConfig(data=str(us_slice), minutes=0, max_episodes=10, restarts=3, **SPLITS)
    assert [s.max_episodes for s in restart_configs(capped)] == [4, 4, 4]
    with pytest.raises(ConfigError, match="--restarts"):
        MineConfig(data=str(us_slice), minutes=0, max_episodes=2, restarts=3, **SPLITS).validate()
    with pytest.raises(ConfigError, match="--restarts"):
        MineConfig(data=str(us_slice), restarts=-1, **SPLITS).validate()


def test_average_of_unit_scale_pools_merges_shared_formulas() -> None:
    a = [{"tokens": ["$close"], "weight": 2.0}, {"tokens": ["$open"], "weight": -1.0}]
    b = [{"tokens": ["$close"], "weight": 0.5}]
    merged = {tuple(m["tokens"]): m for m in average_pools([(a, 4.0), (b, 0.5)])}
    assert merged[("$close",)]["weight"] == pytest.approx(2.0 / 8 + 0.5 / 1)
    assert merged[("$close",)]["restarts"] == [0, 1]
    assert merged[("$open",)]["weight"] == pytest.approx(-1.0 / 8) and merged[("$open",)]["restarts"] == [0]


def test_signal_scale_is_the_training_signal_std(us_slice) -> None:
    """Dividing a pool's weights by :func:`signal_scale` gives its combined training signal unit variance."""
    cfg = MineConfig(data=str(us_slice), pool_size=3, **SPLITS)
    panel, splits = load_for_mining(cfg)
    side = fresh_side(build_train_side(panel, splits, cfg), cfg)
    assert signal_scale(side.pool) == 1.0  # empty pool
    for text in ("Mean($close, 20)", "Std($volume, 10)", "Delta($open, 5)"):
        side.scorer.offer(side.scorer.parse(list(side.evaluator.parse(text).tokens)))
    assert side.pool.members
    s = signal_scale(side.pool)
    c = side.pool.combination() / s
    live = side.pool.mask & side.pool.day_ok[:, None]
    assert float((c[live] ** 2).mean()) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("method", ["rl", "gp"])
def test_restarted_run_averages_its_pools_and_resumes(us_slice, tmp_path, method) -> None:
    cfg = MineConfig(data=str(us_slice), method=method, minutes=0, max_episodes=60, restarts=2, pool_size=4,
                     seed=3, **SPLITS)
    panel, splits = load_for_mining(cfg)
    res = mine(cfg, tmp_path, progress=False, resume=True, panel=panel, splits=splits)
    runs = res["mining"]["restarts"]
    assert [r["seed"] for r in runs] == [3, 3 + RESTART_SEED_STEP]
    count = "episodes" if method == "rl" else "evaluations"
    assert res["mining"][count] == sum(r[count] for r in runs) >= 60
    done = [json.loads((tmp_path / f"restart_{r}" / "done.json").read_text()) for r in range(2)]
    # the run's pool is the two pools, each divided by its scale and by 2
    want: dict[tuple[str, ...], float] = {}
    for d in done:
        for m in d["members"]:
            want[tuple(m["tokens"])] = want.get(tuple(m["tokens"]), 0.0) + m["weight"] / (2 * d["scale"])
    got = {tuple(m.get("original_tokens", m["tokens"])): m["weight"] for m in res["pool"]}
    assert got == pytest.approx(want)
    assert sum(len(d["members"]) for d in done) >= len(res["pool"]) > len(done[0]["members"])
    # scored as one pool: its test figures are those of the averaged signal (combined as the run chose)
    sc = pool_scorer(res["pool"], panel, splits, cfg)
    x, rec = pool_signal(sc, [(m["tokens"], m["weight"]) for m in res["pool"]], cfg.combiner)
    assert rec["chosen"] == res["combiner"]["chosen"]
    assert res["metrics"]["test"]["rank_ic"] == pytest.approx(sc.report(x)["test"]["rank_ic"], abs=1e-9)
    # resumed with the same settings: the finished restarts are reused, the figures identical
    again = mine(cfg, tmp_path, progress=False, resume=True, panel=panel, splits=splits)
    assert again["metrics"] == res["metrics"]
    # other settings: the restarts are redone, not reused
    other = MineConfig(**{**cfg.__dict__, "pool_size": 2})
    changed = mine(other, tmp_path, progress=False, resume=True, panel=panel, splits=splits)
    assert all(len(json.loads((tmp_path / f"restart_{r}" / "done.json").read_text())["members"]) <= 2
               for r in range(2))
    assert len(changed["pool"]) <= 4
    assert torch.isfinite(torch.tensor(changed["metrics"]["test"]["rank_ic"]))



def test_bagged_restarts_draw_block_weights_from_their_seed(us_slice) -> None:
    """``bag_days``: each search's pool is fit on Exp(1) block weights drawn from its own seed, so restarts see
    different draws and a resumed search the same one; off (0), every day counts once."""
    from factors.restarts import bag_weights

    w = bag_weights(10, 3, seed=5)
    assert w.shape == (10,) and (w > 0).all()
    assert len(set(w[:3])) == 1 and len(set(w[3:6])) == 1 and w[0] != w[3]
    np.testing.assert_array_equal(w, bag_weights(10, 3, seed=5))
    assert not np.allclose(w, bag_weights(10, 3, seed=6))
    cfg = MineConfig(data=str(us_slice), pool_size=3, restarts=2, minutes=1.0, bag_days=63, **SPLITS)
    panel, splits = load_for_mining(cfg)
    side = build_train_side(panel, splits, cfg)
    pools = [fresh_side(side, sub).pool for sub in restart_configs(cfg)]
    assert not torch.allclose(pools[0].day_w, pools[1].day_w)
    assert torch.equal(pools[0].day_w, fresh_side(side, restart_configs(cfg)[0]).pool.day_w)
    off = fresh_side(side, MineConfig(data=str(us_slice), pool_size=3, **SPLITS)).pool
    assert bool((off.day_w == 1).all())
    with pytest.raises(ConfigError, match="--bag-days"):
        MineConfig(data=str(us_slice), bag_days=-1, **SPLITS).validate()
    ridge = MineConfig(data=str(us_slice), pool_size=3, pool_l2=0.5, pool_objective="icir", **SPLITS)
    assert fresh_side(side, ridge).pool.l2 == 0.5 and fresh_side(side, ridge).pool.objective_kind == "icir"
    with pytest.raises(ConfigError, match="pool_l2"):
        MineConfig(data=str(us_slice), pool_l2=-1.0, **SPLITS).validate()


def test_jobs_split_the_wall_budget_over_rounds(us_slice) -> None:
    """``jobs``: the auto rule runs once per process, each search as long as in a 1-process run; explicit
    restarts share the wall budget over ``ceil(k / jobs)`` rounds."""
    two = MineConfig(data=str(us_slice), minutes=9.0, jobs=2, **SPLITS)
    assert two.n_restarts() == 2 * auto_restarts(9.0)
    assert [s.minutes for s in restart_configs(two)] == pytest.approx([1.5] * 12)
    assert all(s.jobs == 1 and s.n_restarts() == 1 for s in restart_configs(two))
    three = MineConfig(data=str(us_slice), minutes=9.0, jobs=2, restarts=3, **SPLITS)
    assert [s.minutes for s in restart_configs(three)] == pytest.approx([4.5] * 3)
    for bad in (0, 65):
        with pytest.raises(ConfigError, match="--jobs"):
            MineConfig(data=str(us_slice), jobs=bad, **SPLITS).validate()


@pytest.mark.parametrize("method", ["rl", "gp"])
def test_jobs_give_the_pool_of_one_process(us_slice, tmp_path, method) -> None:
    """Restarts run in two processes (one spawned) give the pool the same restarts give one after another:
    every search is seeded and fills its own pool."""
    base = dict(data=str(us_slice), method=method, minutes=0, max_episodes=40, restarts=2, pool_size=3, seed=1,
                **SPLITS)
    one_cfg = MineConfig(**base)
    panel, splits = load_for_mining(one_cfg)
    one = mine(one_cfg, tmp_path / "one", progress=False, resume=False, panel=panel, splits=splits)
    two = mine(MineConfig(**base, jobs=2), tmp_path / "two", progress=False, resume=False, panel=panel, splits=splits)
    assert two["mining"]["jobs"] == 2 and one["mining"]["jobs"] == 1
    assert [r["seed"] for r in two["mining"]["restarts"]] == [1, 1 + RESTART_SEED_STEP]
    pool = {tuple(m["tokens"]): m["weight"] for m in one["pool"]}
    assert pool and {tuple(m["tokens"]): m["weight"] for m in two["pool"]} == pytest.approx(pool)
    assert two["metrics"]["test"]["rank_ic"] == pytest.approx(one["metrics"]["test"]["rank_ic"], abs=1e-9)
    assert (tmp_path / "two" / "restart_1" / "done.json").exists()  # written by the spawned process


def _mine_in_daemon(cfg: MineConfig, out: str) -> str:
    from finllm.errors import UsageError

    try:
        mine(cfg, out, progress=False, resume=False)
    except UsageError as e:
        return str(e)
    return "no error"


def test_jobs_in_a_daemon_process_is_one_clear_error(us_slice, tmp_path) -> None:
    """A daemonic process (a multiprocessing.Pool worker) may not start processes: ``jobs`` > 1 there says so
    by flag instead of failing deep inside multiprocessing."""
    import multiprocessing as mp

    cfg = MineConfig(data=str(us_slice), method="gp", minutes=0, max_episodes=20, restarts=2, jobs=2, pool_size=3,
                     **SPLITS)
    with mp.get_context("spawn").Pool(1) as pool:
        msg = pool.apply(_mine_in_daemon, (cfg, str(tmp_path)))
    assert "--jobs 2" in msg and "daemon" in msg


def test_an_error_in_the_calling_process_stops_the_other_jobs(us_slice, tmp_path, monkeypatch) -> None:
    """With ``jobs`` > 1, an error in the calling process's own searches surfaces at once: the spawned process
    is stopped instead of being waited for until its budget is spent (here 3 minutes, so it never finishes)."""
    import multiprocessing as mp

    import factors.restarts as restarts

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    cfg = MineConfig(data=str(us_slice), method="gp", minutes=3.0, restarts=2, jobs=2, pool_size=3, **SPLITS)
    panel, splits = load_for_mining(cfg)
    monkeypatch.setattr(restarts, "_run_share", fail)  # only here: the spawned process imports the real one
    with pytest.raises(RuntimeError, match="disk full"):
        mine(cfg, tmp_path, progress=False, resume=False, panel=panel, splits=splits)
    assert not mp.active_children()
    assert not (tmp_path / "restart_1" / "done.json").exists()
