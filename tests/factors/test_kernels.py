"""The numba kernels' plumbing: recycled output memory never aliases a live array, and splitting work over
threads gives the same values as one thread (bit for bit)."""

from __future__ import annotations

import numpy as np
import torch

from factors import kernels as K
from factors.kernels import memory
from factors.evaluate import Evaluator


def test_recycled_memory_never_aliases_a_live_array():
    shape = (300, 1000)  # 1.2 MB: large enough to get its own, recycled mapping
    a = K.empty(shape)
    a.fill(1.0)
    t = torch.from_numpy(a)
    view = t[10:20]  # a view keeps the memory alive after the array and tensor names are gone
    addr = a.ctypes.data
    del a, t
    b = K.empty(shape)
    assert b.ctypes.data != addr
    b.fill(2.0)
    assert bool((view == 1.0).all())
    del view
    c = K.empty(shape)  # now the first mapping is free again, and is reused
    assert c.ctypes.data == addr
    small = K.empty((4, 4))  # small arrays come from numpy
    assert small.shape == (4, 4) and small.dtype == np.float32


def test_fresh_memory_is_populated_on_threads_and_falls_back_when_the_os_cannot(monkeypatch):
    shape = (700, 1000)  # 2.8 MB: a mapping of its own, split over the threads
    threads = torch.get_num_threads()
    calls: list[tuple[int, int]] = []
    real = memory._madvise

    def spy(addr, length, advice):
        calls.append((addr, length))
        return real(addr, length, advice)

    def refuse(addr, length, advice):  # what a kernel older than 5.14 says
        return -1

    try:
        torch.set_num_threads(2)
        if real is not None:
            monkeypatch.setattr(memory, "_madvise", spy)
            a = K.empty(shape)
            a.fill(3.0)
            assert len(calls) == 2 and sum(n for _, n in calls) >= a.nbytes  # both halves, every byte
            assert min(p for p, _ in calls) == a.ctypes.data
        monkeypatch.setattr(memory, "_madvise", refuse)
        b = K.empty((701, 1000))  # a size with nothing to recycle: a new mapping
        b.fill(4.0)  # still usable: its pages fault on first touch
        assert float(b.sum()) == 4.0 * b.size
        assert memory._madvise is None  # and later arrays do not try again
    finally:
        torch.set_num_threads(threads)


def test_threads_give_the_same_values_as_one_thread(us_wide):
    texts = ["Med($close, 20)", "Skew($volume, 20)", "Corr($close, $volume, 20)", "CSRank(Delta($close, 5))",
             "CSZScore($volume)", "Rank($close, 20)", "Max($high, 10)", "EMA($close, 20)"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = {t: Evaluator(us_wide).evaluate(t) for t in texts}
        torch.set_num_threads(2)
        two = {t: Evaluator(us_wide).evaluate(t) for t in texts}
    finally:
        torch.set_num_threads(threads)
    for t in texts:
        a, b = one[t], two[t]
        assert torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(0), b.nan_to_num(0)), t


def test_cs_rank_matches_pandas_with_ties_and_close_values():
    """Many names (long runs of keys that agree but for their lowest bits), exact ties, -0.0 vs 0.0,
    masked names, NaN and inf: ranks equal pandas' ``rank(pct=True)`` per day."""
    import pandas as pd

    from factors.ops import cs_rank

    g = np.random.default_rng(3)
    d, s = 30, 3000
    base = g.choice(np.float32([0.0, -0.0, 1.0, 1.5, -2.0]), size=(d, s))
    ulps = g.integers(-3, 4, size=(d, s)).astype(np.float32)
    x = np.where(g.random((d, s)) < 0.5, base, np.nextafter(base + 1.0, np.float32(9), dtype=np.float32)
                 + ulps * np.float32(1e-7)).astype(np.float32)
    x[g.random((d, s)) < 0.05] = np.nan
    x[g.random((d, s)) < 0.01] = np.inf
    mask = g.random((d, s)) < 0.9
    ours = cs_rank(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
    keep = mask & np.isfinite(x)
    ref = pd.DataFrame(np.where(keep, x, np.nan).astype(np.float64)).rank(axis=1, pct=True).to_numpy()
    np.testing.assert_array_equal(np.isnan(ours), ~keep)
    np.testing.assert_allclose(ours[keep], ref[keep], rtol=1e-12)


def test_block_ema_and_wma_equal_the_direct_weighted_sums():
    """EMA/WMA split their weights into per-block sums (O(1) per value); they must equal the direct
    sum over the window's present values with renormalised weights, for windows shorter and longer
    than the gaps, at the panel start and across many blocks."""
    rng = np.random.default_rng(3)
    x = (rng.lognormal(0, 1, (300, 7)) * 100).astype(np.float32)
    x[rng.random(x.shape) < 0.15] = np.nan
    x[40:90, 2] = np.nan  # a long gap
    valid = np.isfinite(x) | (rng.random(x.shape) < 0.5)
    for w in (1, 2, 3, 7, 40, 252):
        minp = max(1, (w + 1) // 2)
        for stat, wts in ((K.Stat.WMA, np.arange(w, 0, -1, dtype=np.float64)),
                          (K.Stat.EMA, (1.0 - 2.0 / (w + 1.0)) ** np.arange(w, dtype=np.float64))):
            out = np.empty_like(x)
            K.block_window(x, x, valid, out, w, minp, int(stat), K.NO_EPILOGUE, 0, x.shape[0])
            name = stat.name
            ref = np.full(x.shape, np.nan)
            for t in range(x.shape[0]):
                win = x[max(0, t - w + 1): t + 1][::-1].astype(np.float64)  # win[k]: k days ago
                c = wts[: len(win)][:, None] * np.isfinite(win)
                num, den, n = np.nansum(c * np.nan_to_num(win), 0), c.sum(0), np.isfinite(win).sum(0)
                ok = valid[t] & (n >= minp)
                ref[t, ok] = num[ok] / den[ok]
            assert np.array_equal(np.isnan(out), np.isnan(ref)), (name, w)
            np.testing.assert_allclose(out, ref.astype(np.float32), rtol=3e-7, err_msg=f"{name} w={w}")


def test_every_window_operator_gives_the_same_values_on_any_day_split(us_wide):
    """Window kernels split the days over threads and start each range early enough (the block holding
    it, or w days before it) for their state to be exact: 1 and 3 threads, on a panel with holes, for
    every time-series operator and several windows, give the same values bit for bit."""
    from factors.ops import OPS
    from tests.factors.conftest import with_holes

    panel = with_holes(us_wide)
    texts = []
    for name, spec in OPS.items():
        if spec.category not in ("ts", "ts_pair"):
            continue
        for w in (3, 20, 60):
            if w >= spec.min_window:
                args = "$close, $volume" if spec.category == "ts_pair" else "$close"
                texts.append(f"{name}({args}, {w})")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = {t: Evaluator(panel, cache_bytes=0).evaluate(t) for t in texts}
        torch.set_num_threads(3)
        three = {t: Evaluator(panel, cache_bytes=0).evaluate(t) for t in texts}
    finally:
        torch.set_num_threads(threads)
    assert len(texts) > 50
    for t in texts:
        a, b = one[t], three[t]
        assert torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(0), b.nan_to_num(0)), t
