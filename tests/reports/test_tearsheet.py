"""The tear sheet's engine pieces on a real slice of the S&P 500 file: quantile books agree with the
long-short backtest, persistence measures behave at their limits, the linear baseline never reads the
test split's returns, and the one number formatter never prints an exponent."""

from __future__ import annotations

import pytest
import torch

from tests.reports.conftest import SPLITS


@pytest.fixture(scope="module")
def scorer(market_panel):
    from factors.mine import SplitScorer
    from factors.splits import parse_splits

    return SplitScorer(market_panel, parse_splits(*SPLITS.values()), 20, 10.0, 126, 20)


def test_quantile_books_reproduce_the_long_short_book(scorer):
    from factors.backtest import long_short, quantile_books

    x = scorer.ev.evaluate("Mul(Delta($close, 5), -1)")
    days = scorer.days["test"]
    xs, fs, ms = x[days], scorer.fwd1[days], scorer.mask[days]
    bt = long_short(xs, fs, ms, quantiles=5, cost_bps=0.0, delay=1, rebalance=20)
    books = quantile_books(xs, fs, ms, 5, delay=1, rebalance=20)
    assert books.returns.shape == (5, bt.gross.numel()) and books.market.numel() == bt.gross.numel()
    torch.testing.assert_close(books.returns[-1] - books.returns[0], bt.gross, atol=1e-12, rtol=0)
    # the market book holds every name equally: the mean of equal-sized quintile books is close to it
    assert float((books.returns.mean(0) - books.market).abs().max()) < 5e-3
    # turnover only on rebalance days (every 20th decision day), none between
    between = torch.ones(books.turnover.shape[1], dtype=torch.bool)
    between[books.days % 20 == 0] = False
    assert float(books.turnover[:, between].abs().max()) == 0.0


def test_rank_autocorrelation_and_quantile_turnover_limits(scorer):
    from factors.metrics import quantile_turnover, rank_autocorrelation

    d, s = scorer.mask.shape
    fixed = torch.arange(s, dtype=torch.float32).expand(d, s).clone()  # the same ranking every day
    ac = rank_autocorrelation(fixed, scorer.mask, lag=5)
    assert torch.isnan(ac[:5]).all() and float(ac[5:][torch.isfinite(ac[5:])].min()) == pytest.approx(1.0)
    assert float(torch.nan_to_num(quantile_turnover(fixed, scorer.mask, 5, lag=5)).abs().max()) == 0.0
    noise = torch.randn(d, s, generator=torch.Generator().manual_seed(0))
    turn = quantile_turnover(noise, scorer.mask, 5, lag=5)
    mean = float(turn[torch.isfinite(turn)].mean())
    assert 0.7 < mean < 0.9  # a random book replaces about 4/5 of each quintile


def test_linear_baseline_never_reads_test_returns(scorer):
    from factors.handcrafted import alpha158_features, fit_alpha158_linear

    f = alpha158_features(scorer, windows=(5, 20))
    before = fit_alpha158_linear(scorer, f)
    test = scorer.days["test"]
    f.target_z[test] = torch.randn(int(test.sum()), f.target_z.shape[1], generator=torch.Generator().manual_seed(1))
    after = fit_alpha158_linear(scorer, f)
    torch.testing.assert_close(before, after, equal_nan=True)


@pytest.mark.parametrize(("value", "kind", "shown"), [
    (-7.21e-4, "ic", "-0.0007"), (1.002e4, "auto", "10,020"), (-7.21e-4, "auto", "-0.000721"),
    (0.1234, "pct", "12.34%"), (1.5e-5, "ic", "0.0000"), (12345, "count", "12,345"), (0.61234, "score", "0.612"),
    (2.345, "ratio", "2.35"), (0.00123, "bps", "12.3 bps"), (float("nan"), "ic", "—"), (None, "ic", "—"),
])
def test_numbers_for_people(value, kind, shown):
    from finllm.grounding.numbers import fmt_number

    assert fmt_number(value, kind) == shown


def test_tear_sheet_scores_a_long_history_pool_like_the_run(market_file, market_panel):
    """A member needing more history than the 126-day floor (``Mean(Ref($close, 60), 120)``: 179 days):
    the tear sheet's pool figures equal ``score_pool``'s, because both build their scorer with
    :func:`factors.mine.pool_scorer` (a scorer cut at 126 days would read half-empty windows)."""
    from factors.expr import parse
    from factors.mine import MineConfig, score_pool
    from factors.splits import parse_splits
    from factors.tearsheet import tearsheet

    # train starts a year into the file, so 179 days of history exist before it
    cfg = MineConfig(data=str(market_file), train="2012-01-01:2012-12-31", valid=SPLITS["valid"],
                     test=SPLITS["test"], method="gp", cost_bps=10.0)
    splits = parse_splits(cfg.train, cfg.valid, cfg.test)
    members = [{"tokens": list(parse(f).tokens), "formula": f, "weight": w}
               for f, w in {"Div($close, Mean(Ref($close, 60), 120))": -1.0, "Mul(Delta($close, 5), -1)": 0.5}.items()]
    stored = score_pool(members, market_panel, splits, cfg)["metrics"]
    sheet = tearsheet(market_panel, splits, members, cfg, baselines=False)["models"]["pool"]["splits"]
    for split in ("train", "valid", "test"):
        assert sheet[split]["rank_ic"] == pytest.approx(stored[split]["rank_ic"], abs=1e-9)
