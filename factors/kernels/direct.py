"""Time-series kernels that read their window directly: the shifts (``Ref``/``Delta``), sorted window
buffers (``Med``) and sums over the w lags (``Rank``, ``Mad``). Each starts early enough (``w`` days
before ``lo`` where it keeps a running state) that a value does not depend on how the days were split
over threads, and runs its epilogue (:func:`factors.kernels.elementwise.flush`)."""

# ruff: noqa: PLR0124, FURB136  (``v == v`` is the NaN test numba vectorises; selects, not max/min)
from __future__ import annotations

import numpy as np
from numba import njit

from factors.kernels.elementwise import INF32, JIT, NAN32, due, fin, flush, has_epilogue


@njit(**JIT)
def shift(x, valid, out, d, delta, epi, lo, hi):
    """``Ref``: ``out[t] = x[t - d]`` (NaN outside the panel); ``delta``: ``x[t] - x[t - d]`` (days lo..hi)."""
    efrom = lo  # the first row the epilogue has not run on
    has_epi = has_epilogue(epi)
    n = x.shape[0]
    for t in range(lo, hi):
        src = t - d
        xr, vr, o = x[t], valid[t], out[t]
        if src < 0 or src >= n:
            o[:] = NAN32
        elif delta:
            sr = x[src]
            for i in range(o.size):
                v = np.float64(xr[i]) - np.float64(sr[i])
                o[i] = fin(v) if vr[i] else NAN32
        else:
            sr = x[src]
            for i in range(o.size):
                v = sr[i]
                o[i] = v if vr[i] else NAN32
        if due(has_epi, efrom, t, lo, hi):
            efrom = flush(epi, valid, efrom, t)



@njit(inline="always")
def _sorted_step(a, b, old, new, w):
    """One day of :func:`roll_median`: b = a without ``old`` and with ``new`` (per stock, sorted).

    Without ``old``, slot q holds ``a'[q] = a[q] if a[q] < old else a[q + 1]``; inserting ``new`` then
    gives ``b[q] = min(max(a'[q - 1], new), a'[q])`` (``a'[0] = -inf``, ``a'[w] = +inf``). No positions
    are searched: one select pass over the w slots."""
    m = old.size
    for q in range(1, w + 1):
        ap, ac, an, dst = a[q - 1], a[q], a[q + 1], b[q]
        first, last = q == 1, q == w
        for i in range(m):
            c0, c1, c2, o, nv = ap[i], ac[i], an[i], old[i], new[i]  # loads outside the selects
            lower = -INF32 if first else (c0 if c0 < o else c1)  # a'[q - 1]
            upper = INF32 if last else (c1 if c1 < o else c2)  # a'[q]
            hi_side = lower if lower > nv else nv
            dst[i] = upper if upper < hi_side else hi_side


@njit(**JIT)
def roll_median(x, valid, out, w, minp, epi, lo, hi):
    """Rolling median of the present values (mean of the two middle ones for an even count).

    Each stock keeps its window sorted, missing values (and days before the panel) as +inf at the end.
    A day's update removes the day leaving the window and inserts today's value, branch-free and
    vectorised across stocks: one select pass writes the next sorted window (:func:`_sorted_step`; rows
    1..w of a (w + 2, m) buffer, rows 0 and w + 1 are padding)."""
    efrom = lo  # the first row the epilogue has not run on
    has_epi = has_epilogue(epi)
    m = x.shape[1]
    s0 = max(0, lo - w)  # w warm-up days fill the sorted window
    scratch = np.empty(m, dtype=np.float32)
    a = np.full((w + 2, m), INF32, dtype=np.float32)
    b = np.full((w + 2, m), INF32, dtype=np.float32)
    cnt = np.zeros(m, dtype=np.int32)
    old = np.full(m, INF32, dtype=np.float32)
    new = np.empty(m, dtype=np.float32)
    for t in range(s0, hi):
        xr, vr = x[t], valid[t]
        o = out[t] if t >= lo else scratch
        if t - w >= s0:  # days before s0 were never inserted
            orow = x[t - w]
            for i in range(m):
                v = orow[i]
                old[i] = v if v == v else INF32
        for i in range(m):
            v = xr[i]
            new[i] = v if v == v else INF32
            cnt[i] += np.int32(v == v) - np.int32(old[i] < INF32)
        if t % 2 == 0:
            _sorted_step(a, b, old, new, w)
            s = b
        else:
            _sorted_step(b, a, old, new, w)
            s = a
        for i in range(m):
            k = cnt[i]
            if vr[i] and k >= minp:
                o[i] = fin((np.float64(s[(k - 1) // 2 + 1, i]) + np.float64(s[k // 2 + 1, i])) * 0.5)
            else:
                o[i] = NAN32
        if due(has_epi, efrom, t, lo, hi):
            efrom = flush(epi, valid, efrom, t)


@njit(**JIT)
def roll_rank(x, valid, out, w, minp, epi, lo, hi):
    """Percentile rank in (0, 1] of today's value among the window's present values, ties averaged:
    ``(n + 1 + less - greater) / (2 n)``; NaN if today's value is missing. ``less - greater`` is summed
    over the lags (integers, exact); the count n is kept by adding today and removing day t - w."""
    efrom = lo  # the first row the epilogue has not run on
    has_epi = has_epilogue(epi)
    m = x.shape[1]
    s0 = max(0, lo - w)  # w warm-up days make the running count exact
    scratch = np.empty(m, dtype=np.float32)
    bal = np.zeros(m, dtype=np.int32)
    cnt = np.zeros(m, dtype=np.int32)
    for t in range(s0, hi):
        xr, vr = x[t], valid[t]
        o = out[t] if t >= lo else scratch
        orow = x[max(t - w, 0)]
        gone = np.int32(1) if t - w >= s0 else np.int32(0)
        for i in range(m):
            a, b = xr[i], orow[i]
            cnt[i] += np.int32(a == a) - gone * np.int32(b == b)
            bal[i] = 0
        for k in range(1, min(w, t + 1)):
            yr = x[t - k]
            for i in range(m):
                a, b = xr[i], yr[i]
                bal[i] += np.int32(a > b) - np.int32(a < b)
        for i in range(m):
            a, n = xr[i], cnt[i]
            ok = vr[i] and a == a and n >= minp
            o[i] = np.float32((n + 1.0 + bal[i]) / (2.0 * n)) if ok else NAN32
        if due(has_epi, efrom, t, lo, hi):
            efrom = flush(epi, valid, efrom, t)


@njit(**JIT)
def roll_mad(x, valid, out, w, minp, epi, lo, hi):
    """Rolling mean absolute deviation around the window mean (two passes over the lags, float64)."""
    efrom = lo  # the first row the epilogue has not run on
    has_epi = has_epilogue(epi)
    m = x.shape[1]
    s1 = np.zeros(m)
    cnt = np.zeros(m)
    acc = np.zeros(m)
    for t in range(lo, hi):
        s1[:] = 0.0
        cnt[:] = 0.0
        acc[:] = 0.0
        lags = min(w, t + 1)
        for k in range(lags):
            yr = x[t - k]
            for i in range(m):
                v = yr[i]
                p = v == v
                s1[i] += np.float64(v) if p else 0.0
                cnt[i] += 1.0 if p else 0.0
        for i in range(m):
            s1[i] /= cnt[i]
        for k in range(lags):
            yr = x[t - k]
            for i in range(m):
                v = yr[i]
                dv = abs(np.float64(v) - s1[i])
                acc[i] += dv if v == v else 0.0
        vr, o = valid[t], out[t]
        for i in range(m):
            o[i] = fin(acc[i] / cnt[i]) if (vr[i] and cnt[i] >= minp) else NAN32
        if due(has_epi, efrom, t, lo, hi):
            efrom = flush(epi, valid, efrom, t)
