"""Evaluator semantics: NaN rules, never inf, universe, cache behaviour, targets."""

from __future__ import annotations

import numpy as np
import torch

from factors.evaluate import Evaluator


def test_output_shape_dtype_and_valid_mask(us_panel):
    ev = Evaluator(us_panel)
    x = ev.evaluate("Mean($close, 5)")
    assert x.shape == us_panel.valid.shape and x.dtype == torch.float32
    assert torch.isnan(x[~us_panel.valid]).all()


def test_division_by_zero_and_log_give_nan_never_inf(us_panel):
    ev = Evaluator(us_panel)
    for text in ["Div($close, Sub($close, $close))", "Log(Sub($close, $close))", "Pow(Sub($close, $close), -1)",
                 "Mul(Mul($volume, $volume), Mul(Mul($volume, $volume), $volume))",
                 "Div(Delta($close, 1), Std(Sub($close, $close), 5))", "Corr($close, Sub($open, $open), 5)"]:
        y = ev.evaluate(text)
        assert not torch.isinf(y).any(), text
    assert torch.isnan(ev.evaluate("Div($close, Sub($close, $close))")).all()


def test_constant_window_has_zero_std_and_nan_corr(us_panel):
    ev = Evaluator(us_panel)
    s = ev.evaluate("Std(Add(Mul($close, 0), 7.3), 10)")
    fin = s[torch.isfinite(s)]
    assert fin.numel() > 0 and (fin == 0).all()  # not float noise like 1e-7
    assert torch.isnan(ev.evaluate("Corr($close, Add(Mul($close, 0), 7.3), 10)")).all()
    for moment in ("Skew", "Kurt"):  # zero central sums, exactly: NaN, not a huge ratio of round-off
        assert torch.isnan(ev.evaluate(f"{moment}(Add(Mul($close, 0), 7.3), 10)")).all()
    v = ev.evaluate("Var(Add(Mul($close, 0), 7.3), 10)")
    assert (v[torch.isfinite(v)] == 0).all() and torch.isfinite(v).any()


def test_cross_section_respects_universe(us_panel):
    ev = Evaluator(us_panel)
    r = ev.evaluate("CSRank($close)")
    uni = us_panel.in_universe & us_panel.valid
    assert torch.isnan(r[~uni]).all()
    n = uni.sum(1)
    top = torch.nan_to_num(r, nan=-1).max(1).values
    assert torch.allclose(top[n > 0], torch.ones_like(top[n > 0]))
    z = ev.evaluate("CSZScore($close)")
    assert torch.isnan(z[~uni]).all()
    m = torch.nanmean(z, 1)
    assert m[n > 2].abs().max() < 1e-5


def test_cache_is_shared_and_bounded(us_panel):
    ev = Evaluator(us_panel)
    a = ev.evaluate("Div(Mean($close, 5), Std($close, 20))")
    info = ev.cache_info()
    assert info["misses"] == 3 and info["hits"] == 0
    b = ev.evaluate("Sub(Mean($close, 5), Std($close, 20))")
    assert ev.cache_info()["hits"] == 2  # both subtrees reused
    a2 = ev.evaluate("Div(Mean($close, 5), Std($close, 20))")
    assert torch.equal(a.nan_to_num(0), a2.nan_to_num(0))
    a2.fill_(0)  # callers get their own tensor: the cache is not corrupted
    assert torch.equal(ev.evaluate("Div(Mean($close, 5), Std($close, 20))").nan_to_num(0), a.nan_to_num(0))
    one = a.element_size() * a.nelement()
    small = Evaluator(us_panel, cache_bytes=2 * one)
    for w in range(2, 12):
        small.evaluate(f"Mean($close, {w})")
        assert small.cache_info()["bytes"] <= 2 * one
    assert small.cache_info()["entries"] == 2
    del b


def test_forward_return_and_custom_target(us_panel):
    ev = Evaluator(us_panel)
    c = us_panel.field("close").clone()
    c[~us_panel.valid] = float("nan")
    f = ev.forward_return(5)
    expect = c[5:] / c[:-5] - 1
    np.testing.assert_allclose(f[:-5].numpy(), expect.numpy(), rtol=1e-6, equal_nan=True)
    assert torch.isnan(f[-5:]).all()
    t = ev.target("Div(Ref($vwap, -2), Ref($vwap, -1))")
    assert t.shape == c.shape


def test_accepts_tokens_text_and_expr(us_panel):
    from factors.expr import parse

    ev = Evaluator(us_panel)
    a = ev.evaluate(["$close", "5", "Mean"])
    b = ev.evaluate("Mean(close, 5)")
    c = ev.evaluate(parse("Mean($close, 5)"))
    assert torch.equal(a.nan_to_num(0), b.nan_to_num(0)) and torch.equal(b.nan_to_num(0), c.nan_to_num(0))


def test_works_on_crypto_with_extra_field(crypto_panel):
    ev = Evaluator(crypto_panel)
    assert "$market_cap" in ev.features
    y = ev.evaluate("Corr(Log($market_cap), Log(Add($volume, 1)), 20)")
    assert torch.isfinite(y).sum() > 1000 and not torch.isinf(y).any()


def test_cached_results_equal_uncached_ones(us_panel):
    """Shared cached subtrees give the same values as a cache-less evaluator, bit for bit."""
    cached, plain = Evaluator(us_panel), Evaluator(us_panel, cache_bytes=0)
    texts = ["Mean($close, 5)", "Std($close, 20)", "Var($close, 3)", "Sum($close, 10)", "Mean($close, 20)",
             "Corr($close, $volume, 10)", "Std(Delta($close, 1), 10)", "Mean(Delta($close, 1), 5)"]
    for t in texts:
        a, b = cached.evaluate(t), plain.evaluate(t)
        assert torch.equal(a.nan_to_num(0), b.nan_to_num(0)) and torch.equal(torch.isnan(a), torch.isnan(b)), t
    assert cached.cache_info()["hits"] > 0 and plain.cache_info()["bytes"] == 0


def test_stock_split_kernels_match_whole_panel(us_wide):
    """Kernels vectorise across stocks and split them over threads: a stock's values do not depend on the
    panel's width, its position or the thread count (bit for bit)."""
    import dataclasses

    assert len(us_wide.tickers) > 64
    texts = ["Corr($close, $volume, 10)", "Cov($high, $low, 5)", "Slope($close, 20)", "WMA($close, 10)",
             "EMA($volume, 10)", "Rank($close, 10)", "Skew($close, 10)", "Kurt($volume, 20)", "Med($close, 10)",
             "IdxMin($low, 10)", "Mad($close, 5)", "Std($close, 20)", "Mean($volume, 7)", "Div($close, $open)"]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the wide panel is split over two threads (at stock 40)
    try:
        wide = Evaluator(us_wide)
        full = {t: wide.evaluate(t) for t in texts}
    finally:
        torch.set_num_threads(threads)
    for lo, hi in [(0, 30), (50, 80), (25, 55)]:
        sub = dataclasses.replace(us_wide, tickers=us_wide.tickers[lo:hi], values=us_wide.values[:, lo:hi],
                                  valid=us_wide.valid[:, lo:hi], in_universe=us_wide.in_universe[:, lo:hi])
        narrow = Evaluator(sub)
        for t in texts:
            a, b = full[t][:, lo:hi], narrow.evaluate(t)
            assert torch.equal(a.nan_to_num(0), b.nan_to_num(0)) and torch.equal(torch.isnan(a), torch.isnan(b)), t
