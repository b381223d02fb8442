"""Window statistics by van Herk / Gil-Werman blocks, one skeleton for all of them (:func:`block_window`,
compiled once per family of statistics so that each kernel holds only its own family's code):
``Sum``/``Mean``, ``Var``/``Std``, ``Skew``/``Kurt``, ``Corr``/``Cov``/``Slope``, ``Max``/``Min``/
``IdxMax``/``IdxMin``, ``EMA`` and ``WMA`` (:class:`~factors.kernels.codes.Stat`).

Days are cut into blocks of ``w``; a window ending on day t is a suffix of the previous block plus a
prefix of the current one. The prefix is accumulated as the days arrive; when a block ends, one backward
pass over it stores its suffix states. Each window statistic is then one merge of two partial states:
O(1) per value for any w, and, unlike running add/remove sums, nothing is ever subtracted, so there is
no drift and no cancellation. Both parts hold only days <= t, so a value never depends on a later day.

A statistic's *family* says what a partial state is, per stock, as ``nf`` float64 fields: (count, sum)
for ``Sum``/``Mean``; (count, mean, central sum of squares) for ``Var``/``Std``, merged with Chan's
formula; (count, mean, central sums 2..4) for ``Skew``/``Kurt`` (Pebay); (count, mean x, mean y,
co-moment, central sums of squares of x and y) for the pairs; (count, extreme, its day) for the
extremes; (count, weight sum, weighted sum) for ``EMA`` and (count, sum x, sum r x, sum r) for ``WMA``
(their weights split into per-block parts). A window of identical values gives exactly zero variance
(and NaN ``Corr``/``Skew``/``Kurt``), without a tolerance. The family gives two row functions, inlined
into the skeleton: ``*_suffix`` (a day in front of a suffix state) and ``*_prefix`` (today into the
prefix state, merged with the suffix state into the output row).

The skeleton (:func:`_skeleton`) holds ``suf[f, k]``: field f of the suffix state of days ``b0 - w + k .. b0 - 1`` of the
previous block (``suf[f, w]``: the empty state) and ``pre[f]``: the current block's prefix. It starts at
the block holding day ``lo``, so its states on day ``lo`` are those of a run from day 0: a value does not
depend on how the days were split over threads (bit for bit).
"""

# ruff: noqa: PLR0124, FURB136  (``v == v`` is the NaN test numba vectorises; selects, not max/min)
from __future__ import annotations

import math

import numpy as np
from numba import njit

from factors.kernels.codes import Stat
from factors.kernels.elementwise import JIT, NAN32, due, fin, flush, has_epilogue

# plain-int copies of the codes that flags are read from (compile-time constants in the kernels)
_MEAN, _STD, _KURT, _CORR, _SLOPE = int(Stat.MEAN), int(Stat.STD), int(Stat.KURT), int(Stat.CORR), int(Stat.SLOPE)
_MAX, _IDXMAX = int(Stat.MAX), int(Stat.IDXMAX)

_SUMS, _VARS, _MOMENTS, _PAIRS, _EXTREMES, _EMAS, _WMAS = range(7)  # families (see the module docstring)
_FAMILY = {int(s): f for f, ss in enumerate(((Stat.SUM, Stat.MEAN), (Stat.VAR, Stat.STD), (Stat.SKEW, Stat.KURT),
                                              (Stat.CORR, Stat.COV, Stat.SLOPE),
                                              (Stat.MAX, Stat.MIN, Stat.IDXMAX, Stat.IDXMIN), (Stat.EMA,), (Stat.WMA,)))
           for s in ss}
_NF = (2, 3, 5, 6, 3, 3, 4)  # fields of a family's partial state


def block_window(x, y, valid, out, w, minp, stat, epi, lo, hi):
    """Rolling ``stat`` (a :class:`Stat` code) over windows of ``w`` days of the present values, days
    lo..hi of ``out`` (D, S) float32: NaN where not ``valid``, where fewer than ``minp`` values are
    present, or where the result is not finite. ``y``: the second input of ``Corr``/``Cov`` (any array
    of the same shape otherwise). ``epi``: the epilogue to run on the rows written. Runs the compiled
    skeleton of ``stat``'s family (:data:`KERNELS`)."""
    KERNELS[_FAMILY[int(stat)]](x, y, valid, out, w, minp, int(stat), epi, lo, hi)


@njit(inline="always")
def _skeleton(fam, x, y, valid, out, w, minp, stat, epi, lo, hi):
    """The block scheme; ``fam`` a compile-time constant (each family compiles its own kernel)."""
    m = x.shape[1]
    efrom = lo  # the first row the epilogue has not run on
    has_epi = has_epilogue(epi)
    scratch = np.empty(m, dtype=np.float32)  # the output row of warm-up days (t < lo)
    suf = np.zeros((_NF[fam], w + 1, m))
    pre = np.zeros((_NF[fam], m))
    if fam == _EXTREMES:
        suf[1] = -np.inf
    pw = np.ones(w + 1)  # EMA: pw[k] = a**k
    a = 1.0 - 2.0 / (w + 1.0)
    if fam == _EMAS:
        for k in range(1, w + 1):
            pw[k] = pw[k - 1] * a
    for t in range((lo // w) * w, hi):  # from the block holding day lo: the states are exact from there
        j = t % w
        if j == 0:
            if t >= w:
                for k in range(w - 1, -1, -1):
                    day = t - w + k
                    _suffix(fam, stat, suf, k, x[day], y[day], day, w, pw)
            pre[:] = 0.0
            if fam == _EXTREMES:
                pre[1] = -np.inf
        o = out[t] if t >= lo else scratch
        _prefix(fam, stat, pre, suf, j, x[t], y[t], valid[t], t, w, minp, a, pw, o)
        if due(has_epi, efrom, t, lo, hi):
            efrom = flush(epi, valid, efrom, t)


@njit(**JIT)
def _sums(x, y, valid, out, w, minp, stat, epi, lo, hi):
    _skeleton(_SUMS, x, y, valid, out, w, minp, stat, epi, lo, hi)


@njit(**JIT)
def _vars(x, y, valid, out, w, minp, stat, epi, lo, hi):
    _skeleton(_VARS, x, y, valid, out, w, minp, stat, epi, lo, hi)


@njit(**JIT)
def _moments(x, y, valid, out, w, minp, stat, epi, lo, hi):
    _skeleton(_MOMENTS, x, y, valid, out, w, minp, stat, epi, lo, hi)


@njit(**JIT)
def _pairs(x, y, valid, out, w, minp, stat, epi, lo, hi):
    _skeleton(_PAIRS, x, y, valid, out, w, minp, stat, epi, lo, hi)


@njit(**JIT)
def _extremes(x, y, valid, out, w, minp, stat, epi, lo, hi):
    _skeleton(_EXTREMES, x, y, valid, out, w, minp, stat, epi, lo, hi)


@njit(**JIT)
def _emas(x, y, valid, out, w, minp, stat, epi, lo, hi):
    _skeleton(_EMAS, x, y, valid, out, w, minp, stat, epi, lo, hi)


@njit(**JIT)
def _wmas(x, y, valid, out, w, minp, stat, epi, lo, hi):
    _skeleton(_WMAS, x, y, valid, out, w, minp, stat, epi, lo, hi)


KERNELS = (_sums, _vars, _moments, _pairs, _extremes, _emas, _wmas)  # by family


@njit(inline="always")
def _suffix(fam, stat, s, k, xr, yr, day, w, pw):
    """Suffix state k = day ``day`` (values ``xr``, ``yr``) in front of suffix state k + 1."""
    b = k + 1
    if fam == _SUMS:
        _sum_suffix(xr, s[0, k], s[1, k], s[0, b], s[1, b])
    elif fam == _VARS:
        _var_suffix(xr, s[0, k], s[1, k], s[2, k], s[0, b], s[1, b], s[2, b])
    elif fam == _MOMENTS:
        _moments_suffix(xr, stat == _KURT, s[0, k], s[1, k], s[2, k], s[3, k], s[4, k],
                        s[0, b], s[1, b], s[2, b], s[3, b], s[4, b])
    elif fam == _PAIRS:
        _pair_suffix(xr, yr, day, stat == _SLOPE, s[0, k], s[1, k], s[2, k], s[3, k], s[4, k], s[5, k],
                     s[0, b], s[1, b], s[2, b], s[3, b], s[4, b], s[5, b])
    elif fam == _EXTREMES:
        _extreme_suffix(xr, day, _sign(stat), s[0, k], s[1, k], s[2, k], s[0, b], s[1, b], s[2, b])
    elif fam == _EMAS:
        _ema_suffix(xr, pw[w - 1 - k], s[0, k], s[1, k], s[2, k], s[0, b], s[1, b], s[2, b])
    else:
        _wma_suffix(xr, np.float64(k), s[0, k], s[1, k], s[2, k], s[3, k], s[0, b], s[1, b], s[2, b], s[3, b])


@njit(inline="always")
def _prefix(fam, stat, p, s, j, xr, yr, vr, t, w, minp, a, pw, o):
    """Day t (offset j in its block) into the prefix state ``p``; the output row ``o`` from ``p`` merged
    with the previous block's suffix state j + 1."""
    b = j + 1
    if fam == _SUMS:
        _sum_prefix(xr, vr, o, minp, stat == _MEAN, p[0], p[1], s[0, b], s[1, b])
    elif fam == _VARS:
        _var_prefix(xr, vr, o, minp, stat == _STD, p[0], p[1], p[2], s[0, b], s[1, b], s[2, b])
    elif fam == _MOMENTS:
        _moments_prefix(xr, vr, o, minp, stat == _KURT, p[0], p[1], p[2], p[3], p[4],
                        s[0, b], s[1, b], s[2, b], s[3, b], s[4, b])
    elif fam == _PAIRS:
        _pair_prefix(xr, yr, vr, o, minp, t, stat - _CORR, p[0], p[1], p[2], p[3], p[4], p[5],
                     s[0, b], s[1, b], s[2, b], s[3, b], s[4, b], s[5, b])
    elif fam == _EXTREMES:
        _extreme_prefix(xr, vr, o, minp, t, w, _sign(stat), stat >= _IDXMAX, p[0], p[1], p[2],
                        s[0, b], s[1, b], s[2, b])
    elif fam == _EMAS:
        _ema_prefix(xr, vr, o, minp, a, pw[j + 1], p[0], p[1], p[2], s[0, b], s[1, b], s[2, b])
    else:
        _wma_prefix(xr, vr, o, minp, np.float64(j), np.float64(w - j), p[0], p[1], p[2], p[3],
                    s[0, b], s[1, b], s[2, b], s[3, b])


@njit(inline="always")
def _sign(stat):
    return 1.0 if (stat == _MAX or stat == _IDXMAX) else -1.0


# -- Sum / Mean: (count, sum) -------------------------------------------------------------------------


@njit(inline="always")
def _sum_suffix(xr, an, as_, bn, bs):
    for i in range(xr.size):
        v = xr[i]
        p = v == v
        an[i] = bn[i] + (1.0 if p else 0.0)
        as_[i] = bs[i] + (np.float64(v) if p else 0.0)


@njit(inline="always")
def _sum_prefix(xr, vr, o, minp, mean, pn, ps, qn, qs):
    for i in range(xr.size):
        v = xr[i]
        p = v == v
        pn[i] += 1.0 if p else 0.0
        ps[i] += np.float64(v) if p else 0.0
        n = pn[i] + qn[i]
        s = ps[i] + qs[i]
        r = s / n if mean else s
        o[i] = fin(r) if (vr[i] and n >= minp) else NAN32


# -- Var / Std: (count, mean, central sum of squares), Chan's merge -----------------------------------


@njit(inline="always")
def _merge2(na, ma, qa, nb, mb, qb):
    """Chan's merge of (count, mean, central sum of squares) states; exact for identical values."""
    n = na + nb
    dl = mb - ma
    f = nb / n if n > 0 else 0.0
    return n, ma + dl * f, qa + qb + dl * dl * na * f


@njit(inline="always")
def _var_suffix(xr, an, am, aq, bn, bm, bq):
    for i in range(xr.size):
        v = xr[i]
        p = v == v
        an[i], am[i], aq[i] = _merge2(bn[i], bm[i], bq[i], 1.0 if p else 0.0, np.float64(v) if p else 0.0, 0.0)


@njit(inline="always")
def _var_prefix(xr, vr, o, minp, std, pn, pm, pq, bn, bm, bq):
    for i in range(xr.size):
        v = xr[i]
        p = v == v
        pn[i], pm[i], pq[i] = _merge2(pn[i], pm[i], pq[i], 1.0 if p else 0.0, np.float64(v) if p else 0.0, 0.0)
        na, nb = bn[i], pn[i]
        n = na + nb
        dl = pm[i] - bm[i]
        r = ((bq[i] + pq[i]) * n + dl * dl * na * nb) / (n * (n - 1.0))  # Chan's merge, / (n - 1) folded in
        if std:
            r = math.sqrt(r)
        o[i] = fin(r) if (vr[i] and n >= minp) else NAN32


# -- Skew / Kurt: (count, mean, central sums 2..4), Pebay's merge --------------------------------------


@njit(inline="always")
def _merge4n(na, ma, a2, a3, a4, nb, mb, b2, b3, b4, k4):
    """Pebay's merge of two (count, mean, central sums of powers 2..4) states, returned scaled by powers
    of the merged count n so that no division is needed: ``(n, n m2, n^2 m3, n^3 m4)`` (``m4`` only if
    ``k4``). G1 and G2 depend only on ratios of these, so each costs one division (the old form divided
    five times per value; skewness is 40% faster, values equal to within 2 float32 ulps)."""
    n = na + nb
    dl = mb - ma
    nab = na * nb
    d2 = dl * dl
    q2 = n * (a2 + b2) + d2 * nab
    q3 = n * n * (a3 + b3) + d2 * dl * nab * (na - nb) + 3.0 * dl * n * (na * b2 - nb * a2)
    q4 = (n * n * n * (a4 + b4) + d2 * d2 * nab * (na * na - nab + nb * nb)
          + 6.0 * d2 * n * (na * na * b2 + nb * nb * a2) + 4.0 * dl * n * n * (na * b3 - nb * a3)) if k4 else 0.0
    return n, q2, q3, q4


@njit(inline="always")
def _push4(n, mean, m2, m3, m4, v, p, k4):
    """Add one value ``v`` (if ``p``) to a (count, mean, central sums 2..4) state (Welford / Pebay with a
    single value; one division; no change at all when ``v`` equals the mean). The 4th sum only if ``k4``."""
    n1 = n + (1.0 if p else 0.0)
    dl = (v - mean) if p else 0.0
    dn = dl / (n1 if n1 > 0 else 1.0)
    dn2 = dn * dn
    t1 = dl * dn * n
    m4n = (m4 + t1 * dn2 * (n1 * n1 - 3.0 * n1 + 3.0) + 6.0 * dn2 * m2 - 4.0 * dn * m3) if k4 else 0.0
    m3n = m3 + t1 * dn * (n1 - 2.0) - 3.0 * dn * m2
    return n1, mean + dn, m2 + t1, m3n, m4n


@njit(inline="always")
def _moments_suffix(xr, kurt, an, am, a2, a3, a4, bn, bm, b2, b3, b4):
    for i in range(xr.size):
        v = xr[i]
        p = v == v
        an[i], am[i], a2[i], a3[i], a4[i] = _push4(bn[i], bm[i], b2[i], b3[i], b4[i], np.float64(v), p, kurt)


@njit(inline="always")
def _moments_prefix(xr, vr, o, minp, kurt, pn, pm, p2, p3, p4, bn, bm, b2, b3, b4):
    """Sample skewness (pandas' G1) or, with ``kurt``, excess kurtosis (G2); NaN when the window's
    central sum of squares is zero (a constant window)."""
    for i in range(xr.size):
        v = xr[i]
        p = v == v
        pn[i], pm[i], p2[i], p3[i], p4[i] = _push4(pn[i], pm[i], p2[i], p3[i], p4[i], np.float64(v), p, kurt)
        n, q2, q3, q4 = _merge4n(bn[i], bm[i], b2[i], b3[i], b4[i], pn[i], pm[i], p2[i], p3[i], p4[i], kurt)
        if kurt:
            n1 = n - 1.0
            r = ((n + 1.0) * n1 * q4 - 3.0 * n1 * n1 * q2 * q2) / (q2 * q2 * (n - 2.0) * (n - 3.0))
        else:
            r = q3 * math.sqrt(n * (n - 1.0) / (q2 * q2 * q2 * (n - 2.0) * (n - 2.0)))
        o[i] = fin(r) if (vr[i] and n >= minp and q2 > 0) else NAN32


# -- Corr / Cov / Slope: bivariate (count, means, co-moment, central sums of squares) -------------------


@njit(inline="always")
def _merge_pair(na, xa, ya, ca, qa, ra, nb, xb, yb, cb, qb, rb):
    """Merge of bivariate states (count, mean x, mean y, co-moment, central sums of squares of x, y)."""
    n = na + nb
    f = nb / n if n > 0 else 0.0
    dx = xb - xa
    dy = yb - ya
    g = na * f
    return n, xa + dx * f, ya + dy * f, ca + cb + dx * dy * g, qa + qb + dx * dx * g, ra + rb + dy * dy * g


@njit(inline="always")
def _pair_suffix(xr, yr, day, slope, an, ax, ay, ac, aq, ar, bn, bx, by, bc, bq, br):
    """``slope``: the second variable is the day index (``yr`` ignored)."""
    for i in range(xr.size):
        u, yv = xr[i], yr[i]
        v = np.float32(day) if slope else yv
        p = u == u and v == v
        an[i], ax[i], ay[i], ac[i], aq[i], ar[i] = _merge_pair(
            bn[i], bx[i], by[i], bc[i], bq[i], br[i], 1.0 if p else 0.0,
            np.float64(u) if p else 0.0, np.float64(v) if p else 0.0, 0.0, 0.0, 0.0)


@njit(inline="always")
def _pair_prefix(xr, yr, vr, o, minp, t, mode, pn, px, py, pc, pq, pr, bn, bx, by, bc, bq, br):
    """``mode`` 0: Pearson correlation, 1: covariance (ddof=1), 2: least-squares slope of x on the day
    index, over the days where both are present."""
    slope = mode == 2
    for i in range(xr.size):
        u, yv = xr[i], yr[i]
        v = np.float32(t) if slope else yv
        p = u == u and v == v
        pn[i], px[i], py[i], pc[i], pq[i], pr[i] = _merge_pair(
            pn[i], px[i], py[i], pc[i], pq[i], pr[i], 1.0 if p else 0.0, np.float64(u) if p else 0.0,
            np.float64(v) if p else 0.0, 0.0, 0.0, 0.0)
        na, nb = bn[i], pn[i]
        n = na + nb
        dx = px[i] - bx[i]
        dy = py[i] - by[i]
        nab = na * nb
        # the merged co-moment and central sums of squares, each times n (which cancels below)
        c = (bc[i] + pc[i]) * n + dx * dy * nab
        qx = (bq[i] + pq[i]) * n + dx * dx * nab
        qy = (br[i] + pr[i]) * n + dy * dy * nab
        ok = vr[i] and n >= minp
        if mode == 0:
            r = min(max(c / math.sqrt(qx * qy), -1.0), 1.0)
            ok = ok and qx > 0 and qy > 0
        elif mode == 1:
            r = c / (n * (n - 1.0))
        else:
            r = c / qy
        o[i] = fin(r) if ok else NAN32


# -- Max / Min / IdxMax / IdxMin: (count, extreme of sign * x, its day) --------------------------------


@njit(inline="always")
def _extreme_suffix(xr, day, sign, an, av, ad, bn, bv, bd):
    for i in range(xr.size):
        v = xr[i]
        p = v == v
        v_ = sign * np.float64(v) if p else -np.inf
        an[i] = bn[i] + (1.0 if p else 0.0)
        bvi, bdi = bv[i], bd[i]
        take = v_ >= bvi  # ties: the earlier day wins
        av[i] = v_ if take else bvi
        ad[i] = np.float64(day) if take else bdi


@njit(inline="always")
def _extreme_prefix(xr, vr, o, minp, t, w, sign, idx, pn, pv, pd, bn, bv, bd):
    """Max of ``sign * x`` times ``sign``; with ``idx`` the 1-based position of the (first) extreme in
    the nominal window (1 = oldest day, w = today)."""
    for i in range(xr.size):
        v = xr[i]
        p = v == v
        v_ = sign * np.float64(v) if p else -np.inf
        pn[i] += 1.0 if p else 0.0
        pvi, pdi, bvi, bdi = pv[i], pd[i], bv[i], bd[i]
        take = v_ > pvi  # ties: the earlier day wins
        pvi = v_ if take else pvi
        pdi = np.float64(t) if take else pdi
        pv[i] = pvi
        pd[i] = pdi
        n = pn[i] + bn[i]
        old = bvi >= pvi
        if idx:
            r = (bdi if old else pdi) - t + w
        else:
            r = sign * (bvi if old else pvi)
        o[i] = fin(r) if (vr[i] and n >= minp) else NAN32


# -- EMA: weight a**k on the value k days ago (k < w), renormalised over the present values -------------
# the current block's part is a running ``p = a * p + x`` (nothing subtracted); the previous block's
# suffix part is summed backwards with weight ``a**(b0 - 1 - s)`` and scaled by ``a**(j + 1)`` when merged


@njit(inline="always")
def _ema_suffix(xr, c, an, ad, as_, bn, bd, bs):
    for i in range(xr.size):
        v = xr[i]
        p = v == v
        an[i] = bn[i] + (1.0 if p else 0.0)
        ad[i] = bd[i] + (c if p else 0.0)
        as_[i] = bs[i] + (c * np.float64(v) if p else 0.0)


@njit(inline="always")
def _ema_prefix(xr, vr, o, minp, a, f, pn, pd, ps, qn, qd, qs):
    for i in range(xr.size):
        v = xr[i]
        p = v == v
        pn[i] += 1.0 if p else 0.0
        pd[i] = a * pd[i] + (1.0 if p else 0.0)
        ps[i] = a * ps[i] + (np.float64(v) if p else 0.0)
        n = pn[i] + qn[i]
        r = (ps[i] + f * qs[i]) / (pd[i] + f * qd[i])
        o[i] = fin(r) if (vr[i] and n >= minp) else NAN32


# -- WMA: weight w - k on the value k days ago, renormalised over the present values --------------------
# with r a day's offset in its block, the weights are ``(w - j) + r`` in the current block and ``r - j``
# in the previous one, so both parts are (count, sum x, sum r x, sum r) states; the suffix's weights come
# out as ``sum r x - j sum x``: that one subtraction loses at most log10(w) of float64's ~16 digits


@njit(inline="always")
def _wma_suffix(xr, rk, an, a1, ar, ac, bn, b1, br, bc):
    for i in range(xr.size):
        v = xr[i]
        p = v == v
        vv = np.float64(v) if p else 0.0
        an[i] = bn[i] + (1.0 if p else 0.0)
        a1[i] = b1[i] + vv
        ar[i] = br[i] + rk * vv
        ac[i] = bc[i] + (rk if p else 0.0)


@njit(inline="always")
def _wma_prefix(xr, vr, o, minp, rj, cj, pn, p1, pr, pc, qn, q1, qr, qc):
    for i in range(xr.size):
        v = xr[i]
        p = v == v
        vv = np.float64(v) if p else 0.0
        pn[i] += 1.0 if p else 0.0
        p1[i] += vv
        pr[i] += rj * vv
        pc[i] += rj if p else 0.0
        n = pn[i] + qn[i]
        num = cj * p1[i] + pr[i] + (qr[i] - rj * q1[i])
        den = cj * pn[i] + pc[i] + (qc[i] - rj * qn[i])
        o[i] = fin(num / den) if (vr[i] and n >= minp) else NAN32
