"""Cross-sectional kernels (per day, days lo..hi): the sort keys and rank assignment behind ``CSRank``
(one SIMD sort of packed uint32 keys per day, see :func:`factors.ops.cs_rank`) and ``CSZScore``."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from factors.kernels.elementwise import INF32, JIT, NAN32, fin


@njit(inline="always")
def _okey(b):
    """uint32 bits of a float32 -> uint32 whose unsigned order is the float order (-0.0 == 0.0)."""
    b = np.uint32(0) if b == np.uint32(0x80000000) else b
    return ~b if (b >> np.uint32(31)) else (b | np.uint32(0x80000000))


@njit(**JIT)
def cs_keys(x, bits, mask, keys, cb, lo, hi):
    """uint32 sort keys for rows lo..hi: the float order key with its low ``cb`` bits replaced by the
    column (``cb`` bits hold any column), so one 32-bit SIMD sort orders a row by value up to those bits
    and carries the columns along; :func:`cs_rank_assign` finishes the order within runs of equal
    truncated keys. Names outside ``mask & finite(x)`` get the largest keys (they sort last)."""
    top = (np.uint32(0xFFFFFFFF) >> np.uint32(cb)) << np.uint32(cb)
    for t in range(lo, hi):
        xr, br, mr, kr = x[t], bits[t], mask[t], keys[t - lo]
        for i in range(br.size):
            k = (_okey(br[i]) >> np.uint32(cb)) << np.uint32(cb)
            fin = abs(xr[i]) < INF32
            p = mr[i] and fin
            kr[i] = (k if p else top) | np.uint32(i)


@njit(**JIT)
def cs_rank_assign(x, bits, keys, mask, out, cb, lo, hi):
    """Average ranks / count (rows lo..hi of ``out``; NaN outside ``mask & finite(x)``) from the sorted
    keys of :func:`cs_keys`: runs of equal truncated keys are ordered by their full keys here."""
    low = (np.uint32(1) << np.uint32(cb)) - np.uint32(1)
    full = np.empty(x.shape[1], dtype=np.uint32)
    cols = np.empty(x.shape[1], dtype=np.int64)
    for t in range(lo, hi):
        xr, br, kr, mr, o = x[t], bits[t], keys[t - lo], mask[t], out[t]
        n = 0
        for i in range(mr.size):
            fin = abs(xr[i]) < INF32
            n += 1 if (mr[i] and fin) else 0
            o[i] = np.nan
        a = 0
        while a < n:
            z = a + 1
            hk = kr[a] >> np.uint32(cb)
            while z < n and (kr[z] >> np.uint32(cb)) == hk:
                z += 1
            if z == a + 1:
                o[np.int64(kr[a] & low)] = (a + 1.0) / n
            else:  # order the run by the full keys (insertion sort: runs are short, and exact ties
                # never move), then average the ranks of exactly equal values
                r = z - a
                for q in range(r):
                    c = np.int64(kr[a + q] & low)
                    f = _okey(br[c])
                    e = q
                    while e > 0 and full[e - 1] > f:
                        full[e] = full[e - 1]
                        cols[e] = cols[e - 1]
                        e -= 1
                    full[e] = f
                    cols[e] = c
                g = 0
                while g < r:
                    e = g + 1
                    while e < r and full[e] == full[g]:
                        e += 1
                    rank = (2 * a + g + e + 1) * 0.5 / n  # average of the 1-based ranks a+g+1 .. a+e
                    for q in range(g, e):
                        o[cols[q]] = rank
                    g = e
            a = z


@njit(fastmath={"reassoc"}, **JIT)  # vectorised row sums (a cross-section's sums, order-insensitive)
def cs_zscore(x, universe, out, lo, hi):
    """Per-day z-score (ddof=1) among ``universe & finite(x)``; NaN elsewhere and when std is 0."""
    for t in range(lo, hi):
        xr, ur, o = x[t], universe[t], out[t]
        n = 0.0
        s = 0.0
        for i in range(xr.size):
            v = xr[i]
            p = ur[i] and abs(v) < INF32
            n += 1.0 if p else 0.0
            s += np.float64(v) if p else 0.0
        mu = s / n
        q = 0.0
        for i in range(xr.size):
            v = xr[i]
            p = ur[i] and abs(v) < INF32
            dv = np.float64(v) - mu
            q += dv * dv if p else 0.0
        sd = math.sqrt(q / (n - 1.0))
        for i in range(xr.size):
            v = xr[i]
            p = ur[i] and abs(v) < INF32 and sd > 0
            o[i] = fin((np.float64(v) - mu) / sd) if p else NAN32
