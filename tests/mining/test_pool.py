"""The alpha pool on generated data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from factors.metrics import ic_series
from factors.pool import AlphaPool, zscore_days

D, S = 300, 120


@pytest.fixture
def data() -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    f = [torch.randn(D, S, generator=g) for _ in range(5)]
    y = f[0] + 0.6 * f[1] + 0.3 * f[2] + 3.0 * torch.randn(D, S, generator=g)
    return f, y


def test_objective_is_the_exact_mean_daily_ic_of_the_combination(data) -> None:
    f, y = data
    pool = AlphaPool(y, capacity=5)
    for i in range(3):
        assert pool.try_add(str(i), (str(i),), str(i), f[i]).admitted
    c = pool.combination()
    direct = float(ic_series(c, y, min_names=2).mean())
    assert pool.objective == pytest.approx(direct, abs=1e-5)
    # weights are the closed form (Sigma + l2 I)^-1 r on the mutual-IC matrix
    z = torch.stack([zscore_days(x, torch.ones(D, S, dtype=torch.bool))[0] for x in f[:3]])
    zy = zscore_days(y, torch.ones(D, S, dtype=torch.bool))[0]
    sigma = (torch.einsum("ids,jds->ij", z, z) / (D * S)).double().numpy()
    r = (torch.einsum("ids,ds->i", z, zy) / (D * S)).double().numpy()
    w = np.linalg.solve(sigma + pool.l2 * np.eye(3), r)
    np.testing.assert_allclose(pool.weights, w, rtol=1e-3, atol=1e-5)
    assert pool.weights[0] > pool.weights[1] > pool.weights[2] > 0


def test_rejects_constant_nan_weak_and_duplicate(data) -> None:
    f, y = data
    pool = AlphaPool(y, capacity=5, min_abs_ic=0.01)
    assert pool.try_add("a", ("a",), "a", f[0]).admitted
    assert pool.try_add("c", ("c",), "c", torch.full((D, S), 3.0)).reason == "constant"
    holes = f[1].clone()
    holes[:, : S * 2 // 3] = float("nan")
    assert pool.try_add("n", ("n",), "n", holes).reason == "nan"
    assert pool.try_add("w", ("w",), "w", f[4]).reason == "weak"
    near = 0.95 * f[0] - 0.05 * y  # |mutual IC| ~ 0.99 with "a", and a lower IC by construction
    res = pool.try_add("d", ("d",), "d", near)
    assert res.reason == "duplicate" and res.max_mutual > 0.9
    assert pool.try_add("a", ("a",), "a", f[0]).reason == "known"
    assert [m.key for m in pool.members] == ["a"]


def test_a_better_near_duplicate_replaces_the_member(data) -> None:
    f, y = data
    pool = AlphaPool(y, capacity=5)
    noisy = f[0] + 0.3 * f[3]
    assert pool.try_add("noisy", ("noisy",), "noisy", noisy).admitted
    res = pool.try_add("clean", ("clean",), "clean", f[0])
    assert res.reason == "replaced" and [m.key for m in pool.members] == ["clean"]


def test_capacity_evicts_the_least_useful_and_admits_only_if_it_helps(data) -> None:
    f, y = data
    pool = AlphaPool(y, capacity=2, min_abs_ic=0.0)
    for i in (2, 1):
        pool.try_add(str(i), (str(i),), str(i), f[i])
    before = pool.objective
    assert pool.try_add("0", ("0",), "0", f[0]).admitted
    assert sorted(m.key for m in pool.members) == ["0", "1"]  # f2 (weakest) left
    assert pool.objective > before
    before = pool.objective
    res = pool.try_add("4", ("4",), "4", f[4])  # pure noise cannot improve the pool
    assert not res.admitted and res.reason == "no_gain"
    assert pool.objective == before and sorted(m.key for m in pool.members) == ["0", "1"]


def test_mask_limits_the_cross_section(data) -> None:
    f, y = data
    mask = torch.zeros(D, S, dtype=torch.bool)
    mask[:, : S // 2] = True
    x = f[0].clone()
    x[:, S // 2:] = 1e6  # garbage outside the mask must not matter
    p1, p2 = AlphaPool(y, mask), AlphaPool(y, mask)
    p1.try_add("x", ("x",), "x", x)
    p2.try_add("f", ("f",), "f", f[0])
    assert p1.objective == pytest.approx(p2.objective, abs=1e-6)


def test_day_weights_fit_the_pool_on_the_weighted_days_only(data) -> None:
    """Weight 0 on the second half of the days gives the pool of the first half alone: same ICs, mutual ICs,
    weights and objective (bagged restarts rely on this); the weights may not be negative or all zero."""
    f, y = data
    h = D // 2
    w = np.r_[np.full(h, 2.5), np.zeros(D - h)].astype(np.float32)  # the scale of the weights does not matter
    bagged, half = AlphaPool(y, capacity=3, day_weights=w), AlphaPool(y[:h], capacity=3)
    full = AlphaPool(y, capacity=3)
    for i in range(4):
        a = bagged.try_add(str(i), (str(i),), str(i), f[i])
        b = half.try_add(str(i), (str(i),), str(i), f[i][:h])
        full.try_add(str(i), (str(i),), str(i), f[i])
        assert a.reason == b.reason and a.ic == pytest.approx(b.ic, abs=1e-6)
    assert bagged.objective == pytest.approx(half.objective, abs=1e-6)
    np.testing.assert_allclose(bagged.weights, half.weights, rtol=1e-4, atol=1e-6)
    assert abs(bagged.objective - full.objective) > 1e-4  # the weighting changed the fit: this test can fail
    with pytest.raises(ValueError, match="day_weights"):
        AlphaPool(y, day_weights=-w)
    with pytest.raises(ValueError, match="day_weights"):
        AlphaPool(y, day_weights=np.zeros(D, dtype=np.float32))
    with pytest.raises(ValueError, match="day_weights"):
        AlphaPool(y, day_weights=w[:-1])


def test_icir_objective_is_the_combination_icir(data) -> None:
    f, y = data
    pool = AlphaPool(y, capacity=5, objective="icir")
    for i in range(3):
        pool.try_add(str(i), (str(i),), str(i), f[i])
    assert pool.members
    daily = ic_series(pool.combination(), y, min_names=2)
    assert pool.objective == pytest.approx(float(daily.mean() / daily.std()), rel=1e-3)
    with pytest.raises(ValueError, match="objective"):
        AlphaPool(y, objective="sharpe")
