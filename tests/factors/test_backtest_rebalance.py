"""The holding-period long-short backtest (``rebalance = N``) on a slice of the real US panel."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from factors.backtest import long_short, weights
from factors.evaluate import Evaluator
from finllm.cli.main import app
from tests.factors.conftest import US

EXPR = "Div(Sub($close, Mean($close, 20)), Std($close, 20))"


@pytest.fixture(scope="module")
def real(us_wide):
    ev = Evaluator(us_wide)
    return ev.evaluate(EXPR), ev.forward_return(1), ev.universe


def _reference(x, r1, mask, n: int, delay: int, cost_bps: float) -> np.ndarray:
    """Day-by-day loop: re-form the quintile book on days 0, n, 2n, ... and hold it in between."""
    w_all = weights(x, mask).numpy()
    r = np.nan_to_num(r1.numpy().astype(np.float64), nan=0.0)
    d = w_all.shape[0]
    held, prev, out = np.zeros(w_all.shape[1]), np.zeros(w_all.shape[1]), []
    for t in range(d - delay):
        if t % n == 0:
            held = w_all[t]
        gross = float(held @ r[t + delay])
        turn = float(np.abs(held - prev).sum())
        prev = held
        if np.isfinite(r1[t + delay].numpy()).any():
            out.append(gross - turn * cost_bps * 1e-4)
    return np.array(out)


@pytest.mark.parametrize("n", [1, 5, 20])
@pytest.mark.parametrize("delay", [0, 1])
def test_matches_a_day_by_day_loop(real, n: int, delay: int) -> None:
    x, r1, mask = real
    bt = long_short(x, r1, mask, cost_bps=10.0, delay=delay, rebalance=n)
    ref = _reference(x, r1, mask, n, delay, 10.0)
    np.testing.assert_allclose(bt.returns.numpy(), ref, rtol=0, atol=1e-12)
    assert bt.summary()["rebalance"] == n


def test_n1_is_the_daily_backtest(real) -> None:
    x, r1, mask = real
    daily = long_short(x, r1, mask, cost_bps=10.0)
    n1 = long_short(x, r1, mask, cost_bps=10.0, rebalance=1)
    assert torch.equal(daily.returns, n1.returns) and torch.equal(daily.turnover, n1.turnover)


def test_costs_are_charged_on_rebalance_days_only_and_scale_with_turnover(real) -> None:
    x, r1, mask = real
    free = long_short(x, r1, mask, cost_bps=0.0, rebalance=20)
    costly = long_short(x, r1, mask, cost_bps=25.0, rebalance=20)
    torch.testing.assert_close(free.returns - costly.returns, costly.turnover * 25e-4, rtol=0, atol=1e-15)
    torch.testing.assert_close(free.gross, costly.gross, rtol=0, atol=0)
    t = costly.turnover.numpy()
    off_grid = np.ones(t.size, dtype=bool)
    off_grid[::20] = False  # no day is dropped before the panel's end, so positions line up with days
    assert (t[off_grid] == 0).all() and (t[20::20] > 0).all()  # day 0: the 20-day window is not full yet
    daily = long_short(x, r1, mask, cost_bps=25.0)
    # a 20-day mean-reversion signal held 20 days trades far less than one re-formed daily
    assert costly.summary()["turnover"] < 0.25 * daily.summary()["turnover"]
    assert costly.summary()["ann_return"] - free.summary()["ann_return"] > \
        daily.summary()["ann_return"] - _ann(daily.gross)


def _ann(r: torch.Tensor) -> float:
    return float(r.mean()) * 252


@pytest.mark.parametrize("t", [37, 40, 201])
def test_changing_the_factor_after_t_leaves_pnl_up_to_t_unchanged(real, t: int) -> None:
    x, r1, mask = real
    base = long_short(x, r1, mask, rebalance=20)
    g = torch.Generator().manual_seed(t)
    y = x.clone()
    y[t + 1:] = torch.randn(y[t + 1:].shape, generator=g)
    moved = long_short(y, r1, mask, rebalance=20)
    assert torch.equal(base.returns[:t + 1], moved.returns[:t + 1])
    assert not torch.equal(base.returns, moved.returns)


def test_factor_values_between_rebalances_are_never_used(real) -> None:
    x, r1, mask = real
    y = x.clone()
    off = torch.ones(x.shape[0], dtype=torch.bool)
    off[::20] = False
    y[off] = -y[off]  # flip the signal on every non-rebalance day
    assert torch.equal(long_short(x, r1, mask, rebalance=20).returns, long_short(y, r1, mask, rebalance=20).returns)


def test_bad_rebalance_is_rejected(real) -> None:
    x, r1, mask = real
    for bad in (0, -5, 2.5):
        with pytest.raises(ValueError, match="rebalance"):
            long_short(x, r1, mask, rebalance=bad)


def test_cli_rebalance_option() -> None:
    args = ["factors", "eval", EXPR, "--data", str(US), "--start", "2006-01-01", "--end", "2009-12-31",
            "--max-tickers", "60", "--whole", "--json"]
    daily = CliRunner().invoke(app, [*args, "--rebalance", "1"])
    held = CliRunner().invoke(app, [*args, "--rebalance", "20"])
    assert daily.exit_code == 0 and held.exit_code == 0, held.output
    d, h = json.loads(daily.stdout), json.loads(held.stdout)
    assert d["rebalance"] == 1 and h["rebalance"] == 20
    bd, bh = d["splits"]["all"]["backtest"], h["splits"]["all"]["backtest"]
    assert bh["rebalance"] == 20 and bh["turnover"] < 0.25 * bd["turnover"]
    assert d["splits"]["all"]["ic"] == h["splits"]["all"]["ic"]  # only the backtest changes
    bad = CliRunner().invoke(app, [*args, "--rebalance", "0"])
    assert bad.exit_code == 2
