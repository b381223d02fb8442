"""Train a tiny miner end to end on a slice of the real US data; its pool must beat random factors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from factors.mine import MineConfig, build_train_side, load_for_mining
from finllm.app.mine import mine_and_record
from factors.rl.builder import Builder
from factors.rl.env import AlphaEnv
from tests.mining.conftest import SPLITS


def _cfg(path, **kw) -> MineConfig:
    base = dict(data=str(path), method="rl", minutes=5.0, restarts=1, pool_size=10, seed=0,
                rl={"n_envs": 8, "n_steps": 32, "batch_size": 128})
    base.update(kw)
    return MineConfig(**SPLITS, **base)


def _random_abs_ics(side, n: int, seed: int) -> list[float]:
    """|train IC| of ``n`` usable random factors drawn from the same masked vocabulary."""
    b = Builder(side.vocab, 20)
    r = random.Random(seed)
    out: list[float] = []
    tries = 0
    while len(out) < n and tries < 20 * n:
        tries += 1
        b.reset()
        while True:
            a = r.choice([i for i, ok in enumerate(b.mask()) if ok])
            if side.vocab.kinds[a] == "END":
                break
            b.step(a)
        z, ic, _ = side.pool.prepare(side.scorer.values(side.scorer.parse(b.tokens)))
        if z is not None:
            out.append(abs(ic))
    return out


def test_env_passes_gymnasium_check_env(us_slice) -> None:
    cfg = _cfg(us_slice)
    panel, splits = load_for_mining(cfg)
    side = build_train_side(panel, splits, cfg)
    check_env(AlphaEnv(side.vocab, side.scorer), skip_render_check=True)


def test_tiny_rl_miner_beats_random_factors_and_stores_the_run(us_slice, tmp_path) -> None:
    cfg = _cfg(us_slice, max_episodes=250)
    panel, splits = load_for_mining(cfg)
    from finllm.store import open_store

    store = open_store()
    res = mine_and_record(cfg, tmp_path / "rl", store, progress=False, panel=panel, splits=splits)
    assert res["pool"], "the miner admitted nothing"
    train_ic = res["metrics"]["train"]["ic"]
    assert abs(train_ic - res["mining"]["train_objective"]) < 0.01  # same pool, scored two ways
    side = build_train_side(panel, splits, cfg)
    rand = _random_abs_ics(side, 40, seed=1)
    assert train_ic > np.percentile(rand, 90), (train_ic, sorted(rand)[-5:])
    # stored: run, pool with weights, per-split metrics; and the JSON on disk
    run = store.get_run(res["run_id"])
    assert run.status == "finished" and run.kind == "factor_mine"
    assert set(run.metrics["pool"]) == {"train", "valid", "test"}
    members = store.pool(res["run_id"])
    assert len(members) == len(res["pool"]) and all(f.metrics["test"] for f, _ in members)
    on_disk = json.loads((tmp_path / "rl" / "result.json").read_text())
    assert on_disk["metrics"]["test"]["rank_ic"] == pytest.approx(res["metrics"]["test"]["rank_ic"])
    mining = res["mining"]
    assert mining["episodes"] >= 250 and mining["episodes_per_s"] > 0
    # honest rate: episodes over the wall time of the whole search (PPO updates included), split by part
    sec = mining["seconds"]
    assert mining["episodes_per_s"] == pytest.approx(mining["episodes_this_session"] / sec["search"], rel=0.02)
    parts = sec["eval"] + sec["pool"] + sec["ppo"] + sec["policy_env"]
    assert parts == pytest.approx(sec["search"], abs=0.05) and min(sec["eval"], sec["pool"], sec["ppo"]) > 0
