"""The incremental value of a mined pool: LightGBM on the Alpha158-style set alone vs the set + the pool's
members or its combined signal (the bench's step, and the tear sheet's ``lgbm_alpha158_pool``), on a small
slice of the real US panel (same splits, settings and seed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from factors.handcrafted import (alpha158_features, baseline_factors, fit_alpha158_lgbm, pool_member_features,
                                 pool_signal_feature)
from factors.mine import MineConfig, load_for_mining
from factors.scoring import SplitScorer
from tests.mining.conftest import SPLITS

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_mining.py"
POOL = [["$close", "5", "Mean", "$close", "Div"], ["$volume", "20", "Std", "$volume", "Div"]]
WEIGHTS = [0.7, -0.3]


@pytest.fixture(scope="module")
def bench():  # bench/ is not a package: load the script as a module
    spec = importlib.util.spec_from_file_location("bench_mining", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def setup(us_slice):
    cfg = MineConfig(data=str(us_slice), **SPLITS)
    panel, splits = load_for_mining(cfg)
    sc = SplitScorer(panel, splits, cfg.horizon, cfg.cost_bps, cfg.warmup_days)
    return sc, alpha158_features(sc, windows=(5, 20))


def test_pool_members_become_per_day_zscored_features(setup) -> None:
    sc, f = setup
    g = pool_member_features(sc, POOL)
    assert g.shape == (2, *sc.mask.shape)
    for i, tokens in enumerate(POOL):
        x = sc.ev.evaluate(tokens)
        ok = torch.isfinite(x) & sc.mask
        got = g[i]
        assert torch.isnan(got[~ok]).all()
        torch.testing.assert_close(got[ok], sc.zscore(x)[ok])
        day = got[200][ok[200]]
        assert abs(float(day.mean())) < 1e-4 and float(day.std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)


def test_incremental_value_fits_alone_and_with_the_pool(bench, setup) -> None:
    sc, f = setup
    res = bench.incremental_value(sc, f, {"rl": list(zip(POOL, WEIGHTS))}, seed=0, threads=1)
    assert set(res) == {"lgbm_alpha158", "lgbm_alpha158+rl", "lgbm_alpha158+rl_signal"}
    assert res["lgbm_alpha158+rl"]["features"] == res["lgbm_alpha158"]["features"] + 2
    assert res["lgbm_alpha158+rl_signal"]["features"] == res["lgbm_alpha158"]["features"] + 1
    alone, _ = fit_alpha158_lgbm(sc, f, seed=0, threads=1)  # the same model settings and seed as a direct fit
    assert res["lgbm_alpha158"]["metrics"]["test"]["rank_ic"] == pytest.approx(
        sc.report(alone)["test"]["rank_ic"], abs=1e-9)
    for r in res.values():
        assert set(r["metrics"]) == {"train", "valid", "test"}
        assert all(isinstance(r["metrics"][s]["rank_ic"], float) for s in ("train", "valid", "test"))
    assert res["lgbm_alpha158+rl"]["metrics"]["test"] != res["lgbm_alpha158"]["metrics"]["test"]  # the pool was used
    assert res["lgbm_alpha158+rl_signal"]["metrics"]["test"] != res["lgbm_alpha158"]["metrics"]["test"]


def test_pool_signal_is_one_weighted_per_day_zscored_feature(setup) -> None:
    sc, f = setup
    g = pool_signal_feature(sc, list(zip(POOL, WEIGHTS)))
    assert g.shape == (1, *sc.mask.shape)
    want = sc.zscore(sum(w * sc.zscore(sc.ev.evaluate(t)) for t, w in zip(POOL, WEIGHTS)))
    got = g[0]
    ok = torch.isfinite(got)
    assert ok[200].sum() > 10
    torch.testing.assert_close(got[ok], want[ok], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pool_signal_feature(sc, sc.combine(list(zip(POOL, WEIGHTS)))), g, equal_nan=True)


def test_extra_features_equal_a_concatenated_feature_set(setup) -> None:
    """Joining the pool's feature per block of days gives the fit that a whole concatenated set gives."""
    from factors.handcrafted import Alpha158Features

    sc, f = setup
    extra = pool_signal_feature(sc, list(zip(POOL, WEIGHTS)))
    joined, _ = fit_alpha158_lgbm(sc, f, seed=0, threads=1, extra=extra)
    whole = Alpha158Features(f.names + ["POOL"], torch.cat([f.feats, extra]), f.target_z, f.label_mask, f.seconds)
    direct, _ = fit_alpha158_lgbm(sc, whole, seed=0, threads=1)
    torch.testing.assert_close(joined, direct, equal_nan=True)


def test_the_tearsheet_baselines_include_alpha158_plus_the_pool_signal(setup) -> None:
    sc, _ = setup
    signal = sc.combine(list(zip(POOL, WEIGHTS)))
    fitted, info = baseline_factors(sc, seed=0, threads=1, pool_signal=signal)
    assert set(fitted) == {"alpha158_linear", "lgbm_alpha158", "lgbm_alpha158_pool"}
    assert info["lgbm_alpha158_pool"]["features"] == info["lgbm_alpha158"]["features"] + 1
    assert not torch.equal(torch.nan_to_num(fitted["lgbm_alpha158_pool"]), torch.nan_to_num(fitted["lgbm_alpha158"]))
    alone, _ = baseline_factors(sc, seed=0, threads=1)
    assert set(alone) == {"alpha158_linear", "lgbm_alpha158"}  # no pool, no pool row
    torch.testing.assert_close(alone["lgbm_alpha158"], fitted["lgbm_alpha158"], equal_nan=True)


def test_bench_variants_are_typed_settings_and_get_paired_with_their_base(bench) -> None:
    """``--variant NAME:KEY=VALUE`` rows (an ablation such as const_free or max_len) are typed like MineConfig's
    fields, a bad key is refused by name, and the paired tests compare each variant with its base method."""
    assert bench._settings(["const_free=Greater,Less", "max_len=12"], "--variant") == {
        "const_free": "Greater,Less", "max_len": 12}
    with pytest.raises(SystemExit, match="'rl=1'"):
        bench._settings(["rl=1"], "--set")
    var = {"rl": 0.0, "rl_len12": 1.0}
    rows = [{"method": m, "seed": s, "metrics": {"valid": {"rank_ic": 0.05 - 0.0003 * s * var[m]},
                                                 "test": {"rank_ic": 0.04 + 0.001 * (s + 1) * var[m]}}}
            for m in var for s in range(4)]
    lines, res = bench.paired_lines(rows)
    test = [p for p in res if p["a"] == "rl_len12" and p["b"] == "rl" and p["split"] == "test"]
    assert len(test) == 1 and test[0]["wins_a"] == 4 and abs(test[0]["mean_diff"] - 0.0025) < 1e-9


def test_window_test_separates_a_real_valid_gain_from_window_noise() -> None:
    """``bench_window_test``: a variant that is ahead every day passes the defaults' rule; one whose gain is one
    lucky stretch of the window (ahead in every seed, as the seeds share the window) does not."""
    spec = importlib.util.spec_from_file_location("bench_window_test", BENCH.parent / "bench_window_test.py")
    assert spec is not None and spec.loader is not None
    wt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wt)
    g = torch.Generator().manual_seed(0)
    n, seeds = 500, range(5)
    days = {"valid": torch.arange(n) < 250, "test": torch.arange(n) >= 250}
    common = torch.randn(n, generator=g) * 0.1  # the market's daily IC, shared by every run
    base = {s: 0.04 + common + 0.01 * torch.randn(n, generator=g) for s in seeds}
    steady = {s: base[s] + 0.01 + 0.01 * torch.randn(n, generator=g) for s in seeds}
    lucky = {s: base[s] + torch.where(torch.arange(n) < 25, 0.1, 0.0) for s in seeds}  # 25 good days
    res = wt.compare({"rl": base, "rl_a": steady, "rl_b": lucky}, days, "rl", "rl_a", horizon=20)
    assert res["valid"]["ahead"] == 5 and res["valid"]["diff"] == pytest.approx(0.01, abs=0.003)
    assert wt.passes(res["valid"])
    res = wt.compare({"rl": base, "rl_a": steady, "rl_b": lucky}, days, "rl", "rl_b", horizon=20)
    assert res["valid"]["ahead"] == 5 and res["valid"]["diff"] == pytest.approx(0.01, abs=1e-6)
    assert not wt.passes(res["valid"])  # the same mean gain, but from one stretch of 25 days


def test_bench_variants_take_the_seed_library(bench):
    assert bench._settings(["seed_library=alpha158", "rl.learning_rate=0"], "--variant") == {
        "seed_library": "alpha158", "rl": {"learning_rate": 0.0}}
