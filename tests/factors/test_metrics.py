"""IC / RankIC against scipy, quantile returns, turnover, the long-short backtest and time splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from factors.backtest import long_short
from factors.evaluate import Evaluator
from factors.metrics import factor_report, ic_decay, ic_series, quantile_returns, rank_ic_series, summarize, \
    top_turnover
from factors.splits import parse_splits
from finllm.errors import ConfigError


@pytest.fixture(scope="module")
def scored(us_wide):
    ev = Evaluator(us_wide)
    x = ev.evaluate("Div(Sub($close, Mean($close, 20)), Std($close, 20))")
    y = ev.forward_return(20)
    return us_wide, ev, x, y


def test_ic_and_rank_ic_match_scipy(scored):
    panel, ev, x, y = scored
    mask = ev.universe
    ic, ric = ic_series(x, y, mask), rank_ic_series(x, y, mask)
    checked = 0
    for d in range(30, x.shape[0] - 25, 97):
        m = (mask[d] & torch.isfinite(x[d]) & torch.isfinite(y[d])).numpy()
        xv, yv = x[d].numpy()[m].astype(np.float64), y[d].numpy()[m].astype(np.float64)
        assert ic[d].item() == pytest.approx(stats.pearsonr(xv, yv)[0], abs=1e-9)
        assert ric[d].item() == pytest.approx(stats.spearmanr(xv, yv)[0], abs=1e-9)
        checked += 1
    assert checked >= 8
    assert torch.isnan(ic[-20:]).all()  # no forward return at the end


def test_summary_statistics():
    s = torch.tensor([0.1, 0.0, 0.2, float("nan"), 0.1], dtype=torch.float64)
    out = summarize(s)
    v = np.array([0.1, 0.0, 0.2, 0.1])
    assert out["mean"] == pytest.approx(v.mean()) and out["std"] == pytest.approx(v.std(ddof=1))
    assert out["t_stat"] == pytest.approx(v.mean() / v.std(ddof=1) * 2)
    assert out["n_days"] == 4


def test_perfect_factor_quantiles_and_backtest():
    g = torch.Generator().manual_seed(0)
    d, s = 300, 50
    r1 = torch.randn(d, s, generator=g) * 0.01  # r1[t]: return from t to t+1
    mask = torch.ones(d, s, dtype=torch.bool)
    x = r1.clone()  # knows tomorrow's return: only used to check the accounting
    qr = quantile_returns(x, r1, mask, 5)
    assert qr == sorted(qr) and qr[-1] > 0 > qr[0]
    bt0 = long_short(x, r1, mask, cost_bps=0.0, delay=0)
    top = torch.topk(r1, 10, dim=1).values.mean(1) - torch.topk(-r1, 10, dim=1).values.mean(1) * -1
    assert torch.allclose(bt0.gross, top.double(), atol=1e-6)
    costly = long_short(x, r1, mask, cost_bps=50.0, delay=0)
    assert torch.allclose(costly.returns, bt0.gross - bt0.turnover * 50e-4)
    assert costly.summary()["ann_return"] < bt0.summary()["ann_return"]
    assert bt0.turnover[0] == pytest.approx(2.0)  # entering from cash
    # with the honest one-day delay the leak is gone: no edge on random data
    bt1 = long_short(x, r1, mask, cost_bps=0.0, delay=1)
    assert abs(bt1.summary()["sharpe"]) < 3


def test_drawdown_and_annualisation():
    from factors.backtest import BacktestResult

    r = torch.tensor([0.1, -0.5, 0.2, 0.0], dtype=torch.float64)
    res = BacktestResult(returns=r, gross=r, turnover=torch.zeros(4, dtype=torch.float64), periods_per_year=4,
                         cost_bps=0)
    s = res.summary()
    # summed, not compounded (factors.backtest's doc): a dollar-neutral book re-set to its targets daily
    assert s["cum_return"] == pytest.approx(0.1 - 0.5 + 0.2)
    assert s["max_drawdown"] == pytest.approx(-0.5)
    assert s["ann_return"] == pytest.approx(-0.2)  # four periods per year: mean -0.05 x 4
    assert s["ann_return_compounded"] == pytest.approx(1.1 * 0.5 * 1.2 - 1)


def test_a_short_leg_that_loses_more_than_the_book_does_not_wipe_out_the_figures():
    """A short name rising 300% in a day costs the book 1.5 once; compounding would read -100% for the
    whole period (the crypto panel's train and test did, stop 27), the summed figures stay informative."""
    from factors.backtest import BacktestResult

    r = torch.full((252,), 0.004, dtype=torch.float64)
    r[100] = -1.5
    res = BacktestResult(returns=r, gross=r, turnover=torch.zeros(252, dtype=torch.float64), periods_per_year=252,
                         cost_bps=0)
    s = res.summary()
    assert s["ann_return_compounded"] == -1.0
    assert s["ann_return"] == pytest.approx(251 * 0.004 - 1.5)
    assert s["max_drawdown"] == pytest.approx(-1.5)
    assert s["sharpe"] == pytest.approx(float(r.mean() / r.std()) * 252 ** 0.5)


def test_turnover_static_vs_random():
    d, s = 200, 50
    mask = torch.ones(d, s, dtype=torch.bool)
    static = torch.arange(s, dtype=torch.float32).expand(d, s)
    assert top_turnover(static, mask) == 0.0
    noise = torch.randn(d, s, generator=torch.Generator().manual_seed(1))
    assert top_turnover(noise, mask) == pytest.approx(0.8, abs=0.05)  # 1 - 1/5 for independent days
    assert long_short(static, noise * 0.01, mask, cost_bps=10).turnover[1:].abs().max() == 0


def test_factor_report_and_decay(scored):
    panel, ev, x, y = scored
    rep = factor_report(x, y, ev.universe, fwd_1d=ev.forward_return(1), cost_bps=10, horizon=20)
    for k in ["ic", "icir", "rank_ic", "rank_icir", "t_stat", "t_stat_nw", "quantile_returns", "top_turnover"]:
        assert k in rep
    assert abs(rep["t_stat_nw"]) < abs(rep["t_stat"])  # overlapping targets: NW is more conservative
    bt = rep["backtest"]
    assert set(bt) >= {"cum_return", "ann_return", "sharpe", "max_drawdown", "turnover"}
    assert math.isfinite(bt["max_drawdown"]) and bt["max_drawdown"] <= 0  # summed returns: may pass -100%
    dec = ic_decay(x, {h: ev.forward_return(h) for h in (1, 5, 20)}, ev.universe)
    assert list(dec) == [1, 5, 20] and all(math.isfinite(v) for v in dec.values())


def test_splits_parse_purge_and_errors(us_wide):
    sp = parse_splits("2006-01-01:2007-12-31", "2008-01-01:2008-12-31", "2009-01-01:")
    assert [s.name for s in sp] == ["train", "valid", "test"]
    days = sp[0].days(us_wide.dates)
    purged = sp[0].days(us_wide.dates, purge=20)
    assert int(days.sum()) - int(purged.sum()) == 20
    last = us_wide.dates[purged.numpy()][-1]
    assert last < np.datetime64("2007-12-31") and us_wide.dates[days.numpy()][-1] == np.datetime64("2007-12-31")
    with pytest.raises(ConfigError, match="overlap"):
        parse_splits("2006-01-01:2008-12-31", "2008-06-01:2009-12-31")
    with pytest.raises(ConfigError, match="not a date"):
        parse_splits("2006-13-01:2008-12-31")
    with pytest.raises(ConfigError, match="START:END"):
        parse_splits("2006-01-01")
