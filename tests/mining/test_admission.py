"""Inner-validation admission of the alpha pool (``AlphaPool(valid_frac=...)``) on generated data with a
known answer: a factor that predicts the fitting days but flips sign on the validation window is kept out."""

from __future__ import annotations

import pytest
import torch

from factors.pool import AlphaPool

D, S = 200, 60
N_VAL = 40  # valid_frac 0.2 of 200 target days


@pytest.fixture
def parts() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(D, S, generator=g)
    noise = [torch.randn(D, S, generator=g) for _ in range(3)]
    good = y + 2.0 * noise[0]  # predicts the target on every day
    flip = torch.ones(D, 1)
    flip[D - N_VAL:] = -1.0
    overfit = flip * y + 2.0 * noise[1]  # predicts the fitting days, anti-predicts the validation window
    other = y + 2.0 * noise[2]
    return y, good, overfit, other


def test_window_is_the_last_share_of_days_purged_by_the_horizon(parts) -> None:
    y = parts[0]
    pool = AlphaPool(y, valid_frac=0.2, valid_purge_days=10)
    assert pool.val_days is not None
    assert int(pool.val_days.sum()) == N_VAL and bool(pool.val_days[D - N_VAL:].all())
    assert int(pool.day_ok.sum()) == D - N_VAL - 10  # fitting days stop 10 days before the window
    assert not bool((pool.day_ok & pool.val_days).any())
    strided = AlphaPool(y, valid_frac=0.2, valid_purge_days=10, day_stride=4)  # 50 rows, 10 in the window
    assert int(strided.val_days.sum()) == 10 and int(strided.day_ok.sum()) == 50 - 10 - 3  # ceil(10 / 4) gap


def test_a_factor_that_hurts_the_inner_validation_ic_is_rejected(parts) -> None:
    y, good, overfit, other = parts
    plain = AlphaPool(y, capacity=5)
    assert plain.try_add("overfit", ("o",), "o", overfit).admitted  # without the window it gets in
    pool = AlphaPool(y, capacity=5, valid_frac=0.2)
    res = pool.try_add("overfit", ("o",), "o", overfit)
    assert not res.admitted and res.reason == "valid_hurt" and not pool.members
    assert pool.try_add("good", ("g",), "g", good).admitted
    before = (pool.objective, pool.val_objective, [m.weight for m in pool.members])
    res = pool.try_add("overfit", ("o",), "o", overfit)
    assert res.reason == "valid_hurt"
    assert (pool.objective, pool.val_objective, [m.weight for m in pool.members]) == before  # restored
    assert pool.try_add("other", ("x",), "x", other).admitted  # one that helps the window is kept
    assert pool.val_objective > before[1]
    assert pool.state()["reasons"]["valid_hurt"] == 2


def test_statistics_use_only_the_fitting_days(parts) -> None:
    y, good = parts[0], parts[1]
    pool = AlphaPool(y, valid_frac=0.2, valid_purge_days=5)
    pool.try_add("good", ("g",), "g", good)
    fit_days = pool.day_ok
    ic_fit = pool._ic_of_combination(pool.combination(), fit_days)[0]
    assert pool.objective == pytest.approx(ic_fit, abs=1e-6)
    assert pool.val_objective == pytest.approx(pool._ic_of_combination(pool.combination(), pool.val_days)[0], abs=1e-6)
    assert pool.members[0].ic == pytest.approx(ic_fit, abs=1e-4)  # the member IC is on fitting days too


def test_bad_share_is_refused(parts) -> None:
    with pytest.raises(ValueError):
        AlphaPool(parts[0], valid_frac=0.6)
    with pytest.raises(ValueError):
        AlphaPool(parts[0][:20], valid_frac=0.2, valid_purge_days=40)


@pytest.mark.parametrize("method", ["rl", "gp"])
def test_miners_share_the_admission_window(us_slice, tmp_path, method) -> None:
    """``MineConfig.admit_valid_frac`` reaches the pool both miners feed; a short run keeps only members that
    did not lower the inner-validation IC, and the finished pool is scored as usual."""
    from factors.mine import MineConfig, build_train_side, load_for_mining, mine
    from finllm.errors import ConfigError
    from tests.mining.conftest import SPLITS

    with pytest.raises(ConfigError):
        MineConfig(data=str(us_slice), admit_valid_frac=0.7, **SPLITS).validate()
    cfg = MineConfig(data=str(us_slice), method=method, max_episodes=60, minutes=0, pool_size=5, seed=0,
                     admit_valid_frac=0.2, **SPLITS)
    panel, splits = load_for_mining(cfg)
    side = build_train_side(panel, splits, cfg)
    n_target = int((side.pool.day_ok | side.pool.val_days).sum())
    gap = -(-cfg.horizon // cfg.pool_day_stride)
    assert int(side.pool.val_days.sum()) == round((n_target + gap) * 0.2)
    res = mine(cfg, tmp_path / method, progress=False, resume=False, panel=panel, splits=splits, side=side)
    assert res["config"]["admit_valid_frac"] == 0.2
    assert side.pool.members
    assert side.pool.val_objective >= 0.0  # each admission kept the window's IC at or above the empty pool's 0
    assert res["metrics"]["test"]["rank_ic"] is not None
