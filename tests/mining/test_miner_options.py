"""Miner options measured in stop 25 and left off by default: ``MineConfig.scale_free`` (only factors whose ranking
does not depend on a stock's price scale enter the pool), ``MineConfig.pool_target`` ("rank": the pool's IC is
measured against the forward return's cross-sectional rank) and ``MineConfig.recency_halflife`` (recent train days
weigh more in the pool's fit); stop 26: ``RLConfig.risk_quantile`` (RiskMiner's risk-seeking policy gradient)."""

from __future__ import annotations

import numpy as np
import pytest

from factors.mine import MineConfig, build_train_side, load_for_mining
from factors.rl.risk import RiskSeeking, tail_advantages
from factors.rl.scorer import INVALID_REWARD
from factors.units import is_scale_free, scale_free_share
from finllm.errors import ConfigError
from finllm.app.mine import mine_and_record
from tests.mining.conftest import SPLITS


def _cfg(path, **kw) -> MineConfig:
    base = dict(data=str(path), method="rl", minutes=5.0, restarts=1, pool_size=10, seed=0, scale_free=True,
                rl={"n_envs": 8, "n_steps": 32, "batch_size": 128})
    return MineConfig(**SPLITS, **{**base, **kw})


def test_scorer_refuses_a_price_level_before_evaluating_it(us_slice):
    cfg = _cfg(us_slice)
    panel, splits = load_for_mining(cfg)
    scorer = build_train_side(panel, splits, cfg).scorer
    for tokens in (["$close"], ["$high", "2", "Add"], ["$volume", "20", "Std"]):
        reward, info = scorer.score(tokens)
        assert (reward, info["reason"]) == (INVALID_REWARD, "units")
        assert scorer.offer(scorer.parse(tokens)).reason == "units"  # cached: the same verdict again
    assert scorer.n_evaluated == 0 and scorer.pool.reasons["units"] == 6
    reward, info = scorer.score(["$close", "20", "Mean", "$close", "Div"])
    assert info["reason"] != "units" and scorer.n_evaluated == 1


@pytest.mark.parametrize("method", ["rl", "gp"])
def test_a_scale_free_search_admits_only_scale_free_factors(us_slice, tmp_path, method):
    cfg = _cfg(us_slice, method=method, max_episodes=400)
    panel, splits = load_for_mining(cfg)
    res = mine_and_record(cfg, tmp_path / method, None, progress=False, panel=panel, splits=splits)
    assert res["pool"], "nothing admitted"
    side = build_train_side(panel, splits, cfg)
    assert all(is_scale_free(side.scorer.parse(m["tokens"])) for m in res["pool"])
    assert res["mining"]["scorer"]["pool_reasons"].get("units", 0) > 0
    assert res["config"]["scale_free"] is True
    assert res["mining"]["scale_free_share"] == {"members": 1.0, "weight": 1.0}
    assert all(m["scale_free"] for m in res["pool"])


def test_the_default_search_is_not_restricted():
    assert MineConfig(data="x", train="a", valid="b", test="c").scale_free is False


def test_share_of_a_pool_that_is_scale_free():
    members = [{"tokens": ["$close"], "weight": -3.0},
               {"tokens": ["$close", "20", "Mean", "$close", "Div"], "weight": 1.0}]
    assert scale_free_share(members) == {"members": 0.5, "weight": 0.25}
    assert scale_free_share([]) == {"members": None, "weight": None}


def test_rank_target_fits_the_pool_to_the_forward_returns_ranks(us_slice):
    import torch

    from factors.ops import cs_rank
    from factors.pool import zscore_days

    cfg = _cfg(us_slice, scale_free=False, pool_target="rank")
    panel, splits = load_for_mining(cfg)
    side = build_train_side(panel, splits, cfg)
    y = side.evaluator.forward_return(cfg.horizon)[side.rows][::cfg.pool_day_stride]
    mask = side.evaluator.universe[side.rows][::cfg.pool_day_stride] & torch.isfinite(y)
    want, _, _ = zscore_days(cs_rank(y, mask, torch.float32), mask)
    assert torch.allclose(side.pool.zy, want, atol=1e-5, equal_nan=True)
    raw = build_train_side(panel, splits, _cfg(us_slice, scale_free=False)).pool.zy
    assert not torch.allclose(raw, want, atol=1e-3, equal_nan=True)  # the default is the return itself
    with pytest.raises(ConfigError, match="--pool-target"):
        _cfg(us_slice, pool_target="sharpe").validate()


def test_recency_weights_halve_every_halflife(us_slice):
    cfg = _cfg(us_slice, scale_free=False, recency_halflife=40, pool_day_stride=1)
    panel, splits = load_for_mining(cfg)
    w = build_train_side(panel, splits, cfg).pool.day_w
    assert float(w[-1] / w[-41]) == pytest.approx(2.0, rel=1e-5) and float(w[-1] / w[-81]) == pytest.approx(4.0, rel=1e-5)
    flat = build_train_side(panel, splits, _cfg(us_slice, scale_free=False, pool_day_stride=1)).pool.day_w
    assert bool((flat == 1).all())
    with pytest.raises(ConfigError, match="--recency-halflife"):
        _cfg(us_slice, recency_halflife=-1).validate()


def test_risk_seeking_advantages_keep_only_the_tail_of_finished_episodes():
    # env 0: episodes end at t=1 (R 0.1) and t=4 (R 0.5), the last one (t=5) is still running;
    # env 1: an episode begun in the previous rollout ends at t=2 (R 0.3), the next at t=5 (R -0.1)
    rewards = np.zeros((6, 2), np.float32)
    starts = np.zeros((6, 2), np.float32)
    rewards[[1, 4], 0] = [0.1, 0.5]
    starts[[0, 2, 5], 0] = 1
    rewards[[2, 5], 1] = [0.3, -0.1]
    starts[[3], 1] = 1
    adv, info = tail_advantages(rewards, starts, np.array([0.0, 1.0]), alpha=0.5)
    assert info["episodes"] == 4 and info["quantile"] == pytest.approx(0.2)  # median of 0.1, 0.5, 0.3, -0.1
    # above the quantile: 0.5 (+0.3) and 0.3 (+0.1); scaled so the mean positive excess is 1
    np.testing.assert_allclose(adv[:, 0], [0, 0, 1.5, 1.5, 1.5, 0], atol=1e-6)
    np.testing.assert_allclose(adv[:, 1], [0.5, 0.5, 0.5, 0, 0, 0], atol=1e-6)
    none, info = tail_advantages(np.zeros((3, 1), np.float32), np.zeros((3, 1), np.float32), np.zeros(1), 0.9)
    assert info["episodes"] == 0 and not none.any()
    with pytest.raises(ValueError, match="risk quantile"):
        RiskSeeking(1.0)


def test_risk_seeking_replaces_ppo_advantages_after_gae(us_slice):
    """On a real rollout the advantages PPO trains on are the tail's, not GAE's (which has negatives)."""
    from factors.rl.train import RLConfig, make_model

    cfg = _cfg(us_slice, scale_free=False)
    panel, splits = load_for_mining(cfg)
    side = build_train_side(panel, splits, cfg)
    model = make_model(side.vocab, side.scorer, RLConfig(n_envs=8, n_steps=64, batch_size=128), seed=0)
    cb = RiskSeeking(0.8)
    model.learn(total_timesteps=8 * 64, callback=cb)
    buf = model.rollout_buffer
    want, info = tail_advantages(buf.rewards, buf.episode_starts, np.asarray(model._last_episode_starts), 0.8)
    assert info["episodes"] >= 16 and info["above"] >= 1 and cb.episodes == info["episodes"]
    np.testing.assert_allclose(buf.advantages, want.swapaxes(0, 1).reshape(-1, 1))  # sb3 flattens env-major
    assert (buf.advantages >= 0).all() and model.normalize_advantage is False


def test_rl_overrides_are_checked():
    base = dict(data="x", train="a", valid="b", test="c")
    with pytest.raises(ConfigError, match="rl.risk_quantile"):
        MineConfig(**base, rl={"risk_quantile": 1.0}).validate()
    with pytest.raises(ConfigError, match="risk_qantile: unknown"):
        MineConfig(**base, rl={"risk_qantile": 0.9}).validate()
    MineConfig(**base, rl={"risk_quantile": 0.9, "n_envs": 8}).validate()


def test_a_pool_seeded_from_the_builtin_alpha158_set(us_slice, tmp_path):
    """``seed_library="alpha158"`` offers the Alpha158-style factors to each search's pool first, with no store;
    the factors that fit the miner's length limit are tried, some are admitted, and the seconds are recorded."""
    from factors.handcrafted import alpha158_library

    library = {tuple(t) for t in alpha158_library()}
    fitting = {t for t in library if len(t) <= 20}
    assert len(library) == 138 and 0 < len(fitting) < len(library)
    cfg = _cfg(us_slice, method="gp", minutes=0, max_episodes=1, scale_free=False, seed_library="alpha158")
    res = mine_and_record(cfg, tmp_path / "seeded", None, progress=False, resume=False)
    mining = res["mining"]
    assert mining["seeded_from_library"] >= mining["seeded_kept"] == cfg.pool_size and mining["seed_seconds"] > 0
    from_library = [m for m in res["pool"] if tuple(m.get("original_tokens", m["tokens"])) in fitting]
    assert len(from_library) >= cfg.pool_size - 1  # the one GP factor may have evicted a seeded member
    plain = mine_and_record(_cfg(us_slice, method="gp", minutes=0, max_episodes=1, scale_free=False),
                            tmp_path / "plain", None, progress=False, resume=False)
    assert plain["mining"]["seeded_from_library"] == 0


def _windows_of(tokens: list[str], vocab) -> set[str]:
    return {t for t in tokens if t in vocab.tokens and vocab.kinds[vocab.tokens.index(t)] == "W"}


@pytest.mark.parametrize("method", ["rl", "gp"])
def test_the_search_writes_only_the_configured_windows(us_slice, tmp_path, method):
    """``windows`` (``--windows``, stop 28) is the search's window vocabulary: 5-40 by default, 60 when asked for."""
    base = _cfg(us_slice, scale_free=False)
    panel, splits = load_for_mining(base)
    default = build_train_side(panel, splits, base).vocab
    assert sorted(int(t) for t, k in zip(default.tokens, default.kinds) if k == "W") == [5, 10, 20, 40]
    cfg = _cfg(us_slice, method=method, scale_free=False, windows="10, 60,60", max_episodes=300)
    vocab = build_train_side(panel, splits, cfg).vocab
    assert [t for t, k in zip(vocab.tokens, vocab.kinds) if k == "W"] == ["10", "60"]
    res = mine_and_record(cfg, tmp_path / method, None, progress=False, panel=panel, splits=splits)
    used = set().union(*(_windows_of(m.get("original_tokens", m["tokens"]), vocab) for m in res["pool"]))
    assert used and used <= {"10", "60"}
    assert res["config"]["windows"] == "10, 60,60"


@pytest.mark.parametrize("bad", ["", "5,0", "5,x", "300", "-5", "5,\u00b2", "1e2"])
def test_bad_windows_are_refused_with_the_flag(bad):
    with pytest.raises(ConfigError, match="--windows"):
        MineConfig(data="x", train="a", valid="b", test="c", windows=bad).validate()


def test_a_store_library_without_a_store_is_refused(us_slice, tmp_path):
    cfg = _cfg(us_slice, method="gp", minutes=0, max_episodes=1, seed_library="llm")
    with pytest.raises(ConfigError, match="--seed-library 'llm'.*no store"):
        mine_and_record(cfg, tmp_path / "x", None, progress=False, resume=False)
    assert not (tmp_path / "x").exists()
