"""numba kernels behind :mod:`factors.ops`: every operator in one pass over day-major (D, S) float32 arrays.

Layout: the panel is (D, S), days x stocks, C-contiguous, so one day is a contiguous row. Time-series
kernels walk the days in order and keep per-stock state vectors; the inner loop runs over the stocks of
a day (contiguous, branch-free, so LLVM vectorises it). Every kernel takes a day range ``lo, hi`` and
writes only those rows of ``out``, so :func:`run` can hand disjoint ranges to threads (kernels release
the GIL). A time-series kernel starts a little before ``lo`` (at the block holding ``lo``, or ``w`` days
earlier for the sorted-window kernels) so that its state on day ``lo`` is exactly the state of a run from
day 0: a value does not depend on how the days were split (bit for bit). Threads get whole rows: split by
stocks, each thread read half of every row, which made the cheap kernels slower on two threads than on one.

Every kernel writes its final output itself: NaN where the stock is not ``valid`` that day, where fewer
than ``minp`` values are present, or where the result is not finite (so no separate cleaning pass).

Windows: ``Mean``/``Sum``/``Std``/``Var``/``Skew``/``Kurt``/``Corr``/``Cov``/``Slope``/``Max``/``Min``/
``IdxMax``/``IdxMin`` use the van Herk / Gil-Werman block scheme. Days are cut into blocks of ``w``; a
window ending on day t is a suffix of the previous block plus a prefix of the current one. The prefix is
accumulated as the days arrive; when a block ends, one backward pass over it stores its suffix states.
Each window statistic is then one merge of two partial states: O(1) per value for any w, and, unlike
running add/remove sums, nothing is ever subtracted, so there is no drift and no cancellation. Both
parts hold only days <= t, so a value never depends on a later day. Partial states are (count, sum)
for ``Mean``/``Sum`` and (count, mean, central sums) for the rest, merged with Chan's / Pebay's formulas
in float64: a window of identical values gives exactly zero variance (and NaN ``Corr``/``Skew``/
``Kurt``), without a tolerance.

``Med`` keeps each stock's window sorted and updates it branch-free across stocks (O(w) per value,
vectorised). ``WMA`` and ``EMA`` use the block scheme too (their weights split into per-block sums).
``Rank`` and ``Mad`` sum over the w lags of the window
directly (vectorised across stocks; O(w) per value, exact, no running state). ``CSRank`` packs
a truncated float order key and the column into uint32 words, sorts rows with numpy's SIMD sort and
finishes the order within the (short) runs of equal truncated keys.

Vectorisation notes (numba/LLVM): inner loops index 1-D rows (``x[t]``) with the loop
variable, and load every array element *before* any conditional expression (a load inside a
conditional blocks LLVM's vectoriser); float reductions are not vectorised without reassociation, so
per-stock accumulators are arrays, not scalars. No ``fastmath`` in time-series kernels: results must not
depend on a stock's SIMD lane. Outputs come from :func:`empty` (recycled memory, see there).
"""

# ruff: noqa: PLR0124, FURB136  (``v == v`` is the NaN test numba vectorises; selects, not max/min)
from __future__ import annotations

import ctypes
import math
import mmap
import os
import threading
import weakref
from collections.abc import Callable

import numpy as np
import torch
from numba import njit, types
from numba.extending import overload

from finllm.parallel import MIN_SPAN, run_ranges

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
NAN32 = np.float32(np.nan)
INF32 = np.float32(np.inf)

# unary / binary operator codes (see :func:`unary`, :func:`binary_aa`, :func:`binary_ac`)
ABS, FINITE, SIGN = 0, 1, 2
ADD, SUB, MUL, DIV, GREATER, LESS, POW, RSUB, RDIV = range(9)
REF, DELTA = 0, 1  # the shifts that fuse (see :data:`P_SHIFT`)


# ----------------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------------

_BIG = 1 << 20  # arrays from this size on get their own mapping (and are recycled)
_FREE_MAX = 256 << 20  # bytes of released buffers kept for reuse
_free: dict[int, list[mmap.mmap]] = {}
_free_bytes = 0
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux: map all pages in one call (~20% cheaper than faulting each)
_lock = threading.Lock()
_PAGE = mmap.PAGESIZE
_MADV_POPULATE_WRITE = 23  # Linux >= 5.14: fault in (write) a range of a mapping in one call


def _load_madvise() -> Callable | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):  # not a libc platform
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_madvise = _load_madvise() if _POPULATE else None


def _populate(addr: int, lo: int, hi: int) -> None:
    """Fault in pages lo..hi of the mapping at ``addr`` (ctypes releases the GIL: threads run this in
    parallel)."""
    if _madvise(addr + lo * _PAGE, (hi - lo) * _PAGE, _MADV_POPULATE_WRITE) != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_POPULATE_WRITE)")


def _fresh(n: int) -> mmap.mmap:
    """A new anonymous mapping of ``n`` bytes, every page already faulted in: split over the kernel
    threads where the OS can populate a range (on the 2-vCPU VM this was tuned on, 2.3-2.8 ms per 11 MB
    on two threads against 3.2-4.4 ms on one), else with ``MAP_POPULATE`` in one call."""
    global _madvise
    threads = torch.get_num_threads() if _madvise is not None else 1
    if threads <= 1 or n < 2 * _BIG:
        return mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _POPULATE)
    m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = np.frombuffer(m, dtype=np.uint8).ctypes.data
    try:
        run_ranges(_populate, (n + _PAGE - 1) // _PAGE, addr, min_span=_BIG // _PAGE)
    except OSError:  # kernel older than 5.14 (EINVAL): fault the pages on first touch, and stop trying
        _madvise = None
    return m


def _release(m: mmap.mmap, n: int) -> None:
    """Called when an array from :func:`empty` dies: keep its mapping for the next array of that size."""
    global _free_bytes
    with _lock:
        if _free_bytes + n <= _FREE_MAX:
            _free.setdefault(n, []).append(m)
            _free_bytes += n


def empty(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An uninitialised array for a kernel's output (the memory behind the evaluator's tensors).

    A fresh (D, S) result is written once, so the first-touch page faults of fresh memory cost more than
    a cheap operator's arithmetic (about 5 ms of kernel time per 11 MB on the shared VM this was tuned
    on). Large arrays therefore get their own anonymous mapping, and when the array dies the mapping is
    kept (up to 256 MiB) and reused by the next array of the same size: already-mapped memory, no faults.
    A new mapping is faulted in before use, on the kernel threads (:func:`_fresh`).
    Transparent huge pages are not requested: where the kernel has to compact memory to provide them,
    a fault costs several times more than with 4 KiB pages."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape)) * dt.itemsize
    if n < _BIG:
        return np.empty(shape, dtype=dt)
    global _free_bytes
    with _lock:
        lst = _free.get(n)
        m = lst.pop() if lst else None
        if m is not None:
            _free_bytes -= n
    if m is None:
        m = _fresh(n)
    arr = np.frombuffer(m, dtype=dt).reshape(shape)
    weakref.finalize(arr, _release, m, n).atexit = False
    return arr


def _after_fork() -> None:  # a forked child must not use the parent's lock or its recycled mappings
    global _lock, _free, _free_bytes
    _lock, _free, _free_bytes = threading.Lock(), {}, 0


os.register_at_fork(after_in_child=_after_fork)


def run(kernel: Callable, n: int, *args, parallel: bool = True, min_span: int = MIN_SPAN) -> None:
    """``kernel(*args, lo, hi)`` over ``[0, n)`` split across ``torch.get_num_threads()`` threads, at least
    ``min_span`` items each (:func:`finllm.parallel.run_ranges`). Memory-bound element-wise kernels pass
    ``parallel=False``: a second thread buys little there and costs a hand-off on a busy machine."""
    run_ranges(kernel, n, *args, parallel=parallel, min_span=min_span)


@njit(inline="always")
def _fin(v):
    """float32 ``v``, or NaN if it is not finite."""
    r = np.float32(v)
    return r if abs(r) < INF32 else NAN32


# ----------------------------------------------------------------------------------------------------
# element-wise (NaN propagates; the result is NaN wherever an input is, so ``valid`` is not needed)
# ----------------------------------------------------------------------------------------------------


@njit(inline="always")
def _row_unary(xr, code, o):
    """``o = op(xr)`` for one row (``FINITE``: xr, NaN if not finite)."""
    if code == ABS:
        for i in range(xr.size):
            o[i] = abs(xr[i])
    elif code == FINITE:
        for i in range(xr.size):
            o[i] = _fin(xr[i])
    else:
        for i in range(xr.size):
            v = xr[i]
            o[i] = np.float32(1.0) if v > 0 else (np.float32(-1.0) if v < 0 else v)  # 0 -> 0, NaN -> NaN


@njit(**_JIT)
def unary(x, code, out, lo, hi):
    """``out = op(x)`` for rows lo..hi of (D, S) arrays."""
    for t in range(lo, hi):
        _row_unary(x[t], code, out[t])


@njit(**_JIT)
def finite_inplace(x, lo, hi):
    """``x = x``, NaN where not finite, in place (rows lo..hi). A kernel of its own because LLVM
    vectorises a loop only after checking at run time that its output does not overlap its inputs, and
    ``unary(x, FINITE, x)`` fails that check (scalar code, 4x slower)."""
    for t in range(lo, hi):
        r = x[t]
        for i in range(r.size):
            r[i] = _fin(r[i])


@njit(inline="always")
def _bin(a, b, code):
    a = np.float64(a)
    b = np.float64(b)
    if code == ADD:
        return a + b
    if code == SUB:
        return a - b
    if code == MUL:
        return a * b
    if code == DIV:
        return a / b
    if code == RSUB:
        return b - a
    if code == RDIV:
        return b / a
    if code == GREATER:
        return np.nan if a != a or b != b else (a if a > b else b)
    if code == LESS:
        return np.nan if a != a or b != b else (a if a < b else b)
    return np.nan if a != a else a ** b  # POW: NaN ** 0 stays NaN (element-wise ops propagate NaN)


def _at(b, i):
    """``b[i]`` for an array, ``b`` for a scalar (so one loop serves array and constant operands)."""
    return b[i] if isinstance(b, np.ndarray) else b


@overload(_at, inline="always")
def _at_numba(b, i):
    if isinstance(b, types.Array):
        return lambda b, i: b[i]
    return lambda b, i: b


@njit(inline="always")
def _bin_loop(ar, b, code, o):
    for i in range(o.size):
        o[i] = _fin(_bin(ar[i], _at(b, i), code))


@njit(inline="always")
def _row_bin(ar, b, code, o):
    """``o = ar op b`` for one row, ``b`` a row or a float (RSUB/RDIV give ``b - ar``, ``b / ar``),
    computed in float64 and rounded once."""
    # A call per code on purpose: with the operator a constant inside the inlined loop LLVM vectorises
    # it; a single loop dispatching on ``code`` per element does not vectorise.
    if code == ADD:
        _bin_loop(ar, b, ADD, o)
    elif code == SUB:
        _bin_loop(ar, b, SUB, o)
    elif code == MUL:
        _bin_loop(ar, b, MUL, o)
    elif code == DIV:
        _bin_loop(ar, b, DIV, o)
    elif code == RSUB:
        _bin_loop(ar, b, RSUB, o)
    elif code == RDIV:
        _bin_loop(ar, b, RDIV, o)
    elif code == GREATER:
        _bin_loop(ar, b, GREATER, o)
    elif code == LESS:
        _bin_loop(ar, b, LESS, o)
    else:
        _bin_loop(ar, b, POW, o)


@njit(**_JIT)
def binary_aa(a, b, code, out, lo, hi):
    """``out = a op b`` for rows lo..hi, both (D, S). Computed in float64 and rounded once."""
    for t in range(lo, hi):
        _row_bin(a[t], b[t], code, out[t])


@njit(**_JIT)
def binary_ac(a, c, code, out, lo, hi):
    """``out = a op c`` (c a float; RSUB/RDIV give ``c - a``, ``c / a``) for rows lo..hi."""
    for t in range(lo, hi):
        _row_bin(a[t], c, code, out[t])


# a fused element-wise program (see :mod:`factors.fuse`): instruction kinds and its input slots
P_UNARY, P_AA, P_AC, P_SHIFT = 0, 1, 2, 3
P_INPUTS = 8  # operand k < P_INPUTS is input k; k >= P_INPUTS is the result of instruction k - P_INPUTS


@njit(**_JIT)
def program(ins, valid, prog, consts, out, lo, hi):
    """Run an element-wise program row by row over rows lo..hi: instruction k is ``prog[k] = (kind, code,
    a, b)`` and writes its own one-row buffer (the last one writes ``out``), so intermediates stay in L1
    and only the inputs and the result cross memory. ``ins`` is a tuple of ``P_INPUTS`` (D, S) arrays
    (unused slots any float32 2-D array); ``b`` is an operand for ``P_AA``, an index into ``consts`` for
    ``P_AC``, and the shift d for ``P_SHIFT`` (``Ref``: input ``a`` at day t - d where ``valid``, as
    :func:`shift` does; ``a`` must be an input). Each instruction computes and rounds exactly as its own
    kernel does: same values, bit for bit, as running the operators one by one."""
    n = prog.shape[0]
    d_all = out.shape[0]
    regs = np.empty((n, out.shape[1]), dtype=np.float32)
    for t in range(lo, hi):
        for k in range(n):
            kind, code, a, b = prog[k, 0], prog[k, 1], prog[k, 2], prog[k, 3]
            o = out[t] if k == n - 1 else regs[k]
            if kind == P_SHIFT:
                src = t - b
                if src < 0 or src >= d_all:
                    o[:] = NAN32
                else:
                    sr, vr = ins[a][src], valid[t]
                    for i in range(o.size):
                        o[i] = sr[i] if vr[i] else NAN32
                continue
            xa = ins[a][t] if a < P_INPUTS else regs[a - P_INPUTS]
            if kind == P_UNARY:
                _row_unary(xa, code, o)
            elif kind == P_AA:
                xb = ins[b][t] if b < P_INPUTS else regs[b - P_INPUTS]
                _row_bin(xa, xb, code, o)
            else:
                _row_bin(xa, consts[b], code, o)


# An epilogue ``(ins, prog, consts, out)`` is a :func:`program` that a time-series kernel runs on the rows
# of its output it has just written, EPI_ROWS at a time, while they are in L1/L2 (see :mod:`factors.fuse`).
# One of ``ins`` is the kernel's own output; the program reads it only at the row it computes, never
# shifted (another thread may still be writing the rows before this thread's range). Every time-series
# kernel takes one (``epi``; :data:`NO_EPILOGUE` for none).
EPI_ROWS = 16  # a call per row instead made the program 15-25% slower (argument handling per call)
PAD = np.full((1, 1), np.nan, dtype=np.float32)  # an unused input slot (never read)
NO_EPILOGUE = ((PAD,) * P_INPUTS, np.zeros((0, 4), dtype=np.int64), np.zeros(1), PAD)


@njit(**_JIT)
def copy(x, out, lo, hi):
    """``out = x`` (rows lo..hi). The evaluator copies with this (on its kernel threads) rather than with
    torch's ``copy_``: torch's OpenMP threads spin-wait after a parallel op and take CPU from the kernels
    that follow. On the 2-vCPU VM, ``OMP_WAIT_POLICY=ACTIVE`` (spin longer) made a cold pass of
    ``bench/bench_eval.py`` a third slower, ``PASSIVE`` about 5% faster; this copy: 231 -> 223 ms (medians of
    10 interleaved runs on a noisy machine)."""
    for t in range(lo, hi):
        xr, o = x[t], out[t]
        for i in range(o.size):
            o[i] = xr[i]


@njit(**_JIT)
def clean(x, valid, out, lo, hi):
    """``out = x`` where valid and finite, else NaN (rows lo..hi)."""
    for t in range(lo, hi):
        xr, vr, o = x[t], valid[t], out[t]
        for i in range(o.size):
            v = xr[i]
            o[i] = _fin(v) if vr[i] else NAN32


# ----------------------------------------------------------------------------------------------------
# time series: shifts
# ----------------------------------------------------------------------------------------------------


@njit(**_JIT)
def shift(x, valid, out, d, delta, epi, lo, hi):
    """``Ref``: ``out[t] = x[t - d]`` (NaN outside the panel); ``delta``: ``x[t] - x[t - d]`` (days lo..hi)."""
    eins, eprog, econsts, eout = epi
    has_epi = eprog.shape[0] > 0
    efrom = lo  # the first row the epilogue has not run on
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
                o[i] = _fin(v) if vr[i] else NAN32
        else:
            sr = x[src]
            for i in range(o.size):
                v = sr[i]
                o[i] = v if vr[i] else NAN32
        if has_epi and (t + 1 - efrom == EPI_ROWS or t + 1 == hi):
            program(eins, valid, eprog, econsts, eout, efrom, t + 1)
            efrom = t + 1


# ----------------------------------------------------------------------------------------------------
# time series: van Herk blocks (see the module docstring)
# ----------------------------------------------------------------------------------------------------


@njit(**_JIT)
def roll_sum(x, valid, out, w, minp, mean, epi, lo, hi):
    """Rolling sum (``mean``: mean) of the present values; count/sum states, float64."""
    eins, eprog, econsts, eout = epi
    has_epi = eprog.shape[0] > 0
    efrom = lo  # the first row the epilogue has not run on
    m = x.shape[1]
    scratch = np.empty(m, dtype=np.float32)  # the output row of warm-up days (t < lo)
    sn = np.zeros((w + 1, m))  # suffix states of the previous block: sn[k] = days b0-w+k .. b0-1
    ss = np.zeros((w + 1, m))
    pn = np.zeros(m)
    ps = np.zeros(m)
    for t in range((lo // w) * w, hi):  # from the block holding day lo: the states are exact from there
        j = t % w
        if j == 0:
            if t >= w:
                for k in range(w - 1, -1, -1):
                    xr = x[t - w + k]
                    an, bn, as_, bs = sn[k], sn[k + 1], ss[k], ss[k + 1]
                    for i in range(m):
                        v = xr[i]
                        p = v == v
                        an[i] = bn[i] + (1.0 if p else 0.0)
                        as_[i] = bs[i] + (np.float64(v) if p else 0.0)
            pn[:] = 0.0
            ps[:] = 0.0
        xr, vr = x[t], valid[t]
        o = out[t] if t >= lo else scratch
        qn, qs = sn[j + 1], ss[j + 1]
        for i in range(m):
            v = xr[i]
            p = v == v
            pn[i] += 1.0 if p else 0.0
            ps[i] += np.float64(v) if p else 0.0
            n = pn[i] + qn[i]
            s = ps[i] + qs[i]
            r = s / n if mean else s
            o[i] = _fin(r) if (vr[i] and n >= minp) else NAN32
        if has_epi and t >= lo and (t + 1 - efrom == EPI_ROWS or t + 1 == hi):
            program(eins, valid, eprog, econsts, eout, efrom, t + 1)
            efrom = t + 1


@njit(inline="always")
def _merge2(na, ma, qa, nb, mb, qb):
    """Chan's merge of (count, mean, central sum of squares) states; exact for identical values."""
    n = na + nb
    dl = mb - ma
    f = nb / n if n > 0 else 0.0
    return n, ma + dl * f, qa + qb + dl * dl * na * f


@njit(**_JIT)
def roll_var(x, valid, out, w, minp, std, epi, lo, hi):
    """Rolling variance (ddof=1; ``std``: its square root) of the present values."""
    eins, eprog, econsts, eout = epi
    has_epi = eprog.shape[0] > 0
    efrom = lo  # the first row the epilogue has not run on
    m = x.shape[1]
    scratch = np.empty(m, dtype=np.float32)  # the output row of warm-up days (t < lo)
    sn = np.zeros((w + 1, m))
    sm = np.zeros((w + 1, m))
    sq = np.zeros((w + 1, m))
    pn = np.zeros(m)
    pm = np.zeros(m)
    pq = np.zeros(m)
    for t in range((lo // w) * w, hi):  # from the block holding day lo: the states are exact from there
        j = t % w
        if j == 0:
            if t >= w:
                for k in range(w - 1, -1, -1):
                    xr = x[t - w + k]
                    an, am, aq, bn, bm, bq = sn[k], sm[k], sq[k], sn[k + 1], sm[k + 1], sq[k + 1]
                    for i in range(m):
                        v = xr[i]
                        p = v == v
                        an[i], am[i], aq[i] = _merge2(bn[i], bm[i], bq[i], 1.0 if p else 0.0,
                                                      np.float64(v) if p else 0.0, 0.0)
            pn[:] = 0.0
            pm[:] = 0.0
            pq[:] = 0.0
        xr, vr = x[t], valid[t]
        o = out[t] if t >= lo else scratch
        bn, bm, bq = sn[j + 1], sm[j + 1], sq[j + 1]
        for i in range(m):
            v = xr[i]
            p = v == v
            pn[i], pm[i], pq[i] = _merge2(pn[i], pm[i], pq[i], 1.0 if p else 0.0, np.float64(v) if p else 0.0, 0.0)
            na, nb = bn[i], pn[i]
            n = na + nb
            dl = pm[i] - bm[i]
            r = ((bq[i] + pq[i]) * n + dl * dl * na * nb) / (n * (n - 1.0))  # Chan's merge, / (n - 1) folded in
            if std:
                r = math.sqrt(r)
            o[i] = _fin(r) if (vr[i] and n >= minp) else NAN32
        if has_epi and t >= lo and (t + 1 - efrom == EPI_ROWS or t + 1 == hi):
            program(eins, valid, eprog, econsts, eout, efrom, t + 1)
            efrom = t + 1


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


@njit(**_JIT)
def roll_moments(x, valid, out, w, minp, kurt, epi, lo, hi):
    """Rolling sample skewness (pandas' G1) or, with ``kurt``, excess kurtosis (G2); NaN when the window's
    central sum of squares is zero (a constant window)."""
    eins, eprog, econsts, eout = epi
    has_epi = eprog.shape[0] > 0
    efrom = lo  # the first row the epilogue has not run on
    m = x.shape[1]
    scratch = np.empty(m, dtype=np.float32)  # the output row of warm-up days (t < lo)
    sn = np.zeros((w + 1, m))
    sm = np.zeros((w + 1, m))
    s2 = np.zeros((w + 1, m))
    s3 = np.zeros((w + 1, m))
    s4 = np.zeros((w + 1, m))
    pn = np.zeros(m)
    pm = np.zeros(m)
    p2 = np.zeros(m)
    p3 = np.zeros(m)
    p4 = np.zeros(m)
    for t in range((lo // w) * w, hi):  # from the block holding day lo: the states are exact from there
        j = t % w
        if j == 0:
            if t >= w:
                for k in range(w - 1, -1, -1):
                    xr = x[t - w + k]
                    an, am, a2, a3, a4 = sn[k], sm[k], s2[k], s3[k], s4[k]
                    bn, bm, b2, b3, b4 = sn[k + 1], sm[k + 1], s2[k + 1], s3[k + 1], s4[k + 1]
                    for i in range(m):
                        v = xr[i]
                        p = v == v
                        an[i], am[i], a2[i], a3[i], a4[i] = _push4(bn[i], bm[i], b2[i], b3[i], b4[i],
                                                                   np.float64(v), p, kurt)
            pn[:] = 0.0
            pm[:] = 0.0
            p2[:] = 0.0
            p3[:] = 0.0
            p4[:] = 0.0
        xr, vr = x[t], valid[t]
        o = out[t] if t >= lo else scratch
        bn, bm, b2, b3, b4 = sn[j + 1], sm[j + 1], s2[j + 1], s3[j + 1], s4[j + 1]
        for i in range(m):
            v = xr[i]
            p = v == v
            pn[i], pm[i], p2[i], p3[i], p4[i] = _push4(pn[i], pm[i], p2[i], p3[i], p4[i], np.float64(v), p, kurt)
            n, q2, q3, q4 = _merge4n(bn[i], bm[i], b2[i], b3[i], b4[i], pn[i], pm[i], p2[i], p3[i], p4[i], kurt)
            if kurt:
                n1 = n - 1.0
                r = ((n + 1.0) * n1 * q4 - 3.0 * n1 * n1 * q2 * q2) / (q2 * q2 * (n - 2.0) * (n - 3.0))
            else:
                r = q3 * math.sqrt(n * (n - 1.0) / (q2 * q2 * q2 * (n - 2.0) * (n - 2.0)))
            o[i] = _fin(r) if (vr[i] and n >= minp and q2 > 0) else NAN32
        if has_epi and t >= lo and (t + 1 - efrom == EPI_ROWS or t + 1 == hi):
            program(eins, valid, eprog, econsts, eout, efrom, t + 1)
            efrom = t + 1


@njit(inline="always")
def _merge_pair(na, xa, ya, ca, qa, ra, nb, xb, yb, cb, qb, rb):
    """Merge of bivariate states (count, mean x, mean y, co-moment, central sums of squares of x, y)."""
    n = na + nb
    f = nb / n if n > 0 else 0.0
    dx = xb - xa
    dy = yb - ya
    g = na * f
    return n, xa + dx * f, ya + dy * f, ca + cb + dx * dy * g, qa + qb + dx * dx * g, ra + rb + dy * dy * g


@njit(**_JIT)
def roll_pair(x, y, valid, out, w, minp, mode, epi, lo, hi):
    """Rolling ``mode`` 0: Pearson correlation, 1: covariance (ddof=1), 2: least-squares slope of x on
    the day index (``y`` ignored), over the days where both are present."""
    eins, eprog, econsts, eout = epi
    has_epi = eprog.shape[0] > 0
    efrom = lo  # the first row the epilogue has not run on
    m = x.shape[1]
    scratch = np.empty(m, dtype=np.float32)  # the output row of warm-up days (t < lo)
    sn = np.zeros((w + 1, m))
    sx = np.zeros((w + 1, m))
    sy = np.zeros((w + 1, m))
    sc = np.zeros((w + 1, m))
    sq = np.zeros((w + 1, m))
    sr = np.zeros((w + 1, m))
    pn = np.zeros(m)
    px = np.zeros(m)
    py = np.zeros(m)
    pc = np.zeros(m)
    pq = np.zeros(m)
    pr = np.zeros(m)
    slope = mode == 2
    for t in range((lo // w) * w, hi):  # from the block holding day lo: the states are exact from there
        j = t % w
        if j == 0:
            if t >= w:
                for k in range(w - 1, -1, -1):
                    day = t - w + k
                    xr, yr = x[day], y[day]
                    an, ax, ay, ac, aq, ar = sn[k], sx[k], sy[k], sc[k], sq[k], sr[k]
                    bn, bx, by, bc, bq, br = sn[k + 1], sx[k + 1], sy[k + 1], sc[k + 1], sq[k + 1], sr[k + 1]
                    for i in range(m):
                        u, yv = xr[i], yr[i]
                        v = np.float32(day) if slope else yv
                        p = u == u and v == v
                        an[i], ax[i], ay[i], ac[i], aq[i], ar[i] = _merge_pair(
                            bn[i], bx[i], by[i], bc[i], bq[i], br[i], 1.0 if p else 0.0,
                            np.float64(u) if p else 0.0, np.float64(v) if p else 0.0, 0.0, 0.0, 0.0)
            pn[:] = 0.0
            px[:] = 0.0
            py[:] = 0.0
            pc[:] = 0.0
            pq[:] = 0.0
            pr[:] = 0.0
        xr, yr, vr = x[t], y[t], valid[t]
        o = out[t] if t >= lo else scratch
        bn, bx, by, bc, bq, br = sn[j + 1], sx[j + 1], sy[j + 1], sc[j + 1], sq[j + 1], sr[j + 1]
        for i in range(m):
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
            o[i] = _fin(r) if ok else NAN32
        if has_epi and t >= lo and (t + 1 - efrom == EPI_ROWS or t + 1 == hi):
            program(eins, valid, eprog, econsts, eout, efrom, t + 1)
            efrom = t + 1


@njit(**_JIT)
def roll_extreme(x, valid, out, w, minp, sign, idx, epi, lo, hi):
    """Rolling max of ``sign * x`` (sign -1: min) of the present values, times ``sign``; with ``idx`` the
    1-based position of the (first) extreme in the nominal window (1 = oldest day, w = today)."""
    eins, eprog, econsts, eout = epi
    has_epi = eprog.shape[0] > 0
    efrom = lo  # the first row the epilogue has not run on
    m = x.shape[1]
    scratch = np.empty(m, dtype=np.float32)  # the output row of warm-up days (t < lo)
    ninf = -np.inf
    sn = np.zeros((w + 1, m))
    sv = np.full((w + 1, m), ninf)
    sd = np.zeros((w + 1, m))
    pn = np.zeros(m)
    pv = np.full(m, ninf)
    pd = np.zeros(m)
    for t in range((lo // w) * w, hi):  # from the block holding day lo: the states are exact from there
        j = t % w
        if j == 0:
            if t >= w:
                for k in range(w - 1, -1, -1):
                    day = t - w + k
                    xr = x[day]
                    an, av, ad, bn, bv, bd = sn[k], sv[k], sd[k], sn[k + 1], sv[k + 1], sd[k + 1]
                    for i in range(m):
                        v = xr[i]
                        p = v == v
                        v_ = sign * np.float64(v) if p else ninf
                        an[i] = bn[i] + (1.0 if p else 0.0)
                        bvi, bdi = bv[i], bd[i]
                        take = v_ >= bvi  # ties: the earlier day wins
                        av[i] = v_ if take else bvi
                        ad[i] = np.float64(day) if take else bdi
            pn[:] = 0.0
            pv[:] = ninf
        xr, vr = x[t], valid[t]
        o = out[t] if t >= lo else scratch
        bn, bv, bd = sn[j + 1], sv[j + 1], sd[j + 1]
        for i in range(m):
            v = xr[i]
            p = v == v
            v_ = sign * np.float64(v) if p else ninf
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
            o[i] = _fin(r) if (vr[i] and n >= minp) else NAN32
        if has_epi and t >= lo and (t + 1 - efrom == EPI_ROWS or t + 1 == hi):
            program(eins, valid, eprog, econsts, eout, efrom, t + 1)
            efrom = t + 1


# ----------------------------------------------------------------------------------------------------
# time series: sorted window buffers (Med), direct sums over the lags (Rank, Mad), weighted blocks (EMA/WMA)
# ----------------------------------------------------------------------------------------------------


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


@njit(**_JIT)
def roll_median(x, valid, out, w, minp, epi, lo, hi):
    """Rolling median of the present values (mean of the two middle ones for an even count).

    Each stock keeps its window sorted, missing values (and days before the panel) as +inf at the end.
    A day's update removes the day leaving the window and inserts today's value, branch-free and
    vectorised across stocks: one select pass writes the next sorted window (:func:`_sorted_step`; rows
    1..w of a (w + 2, m) buffer, rows 0 and w + 1 are padding)."""
    eins, eprog, econsts, eout = epi
    has_epi = eprog.shape[0] > 0
    efrom = lo  # the first row the epilogue has not run on
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
                o[i] = _fin((np.float64(s[(k - 1) // 2 + 1, i]) + np.float64(s[k // 2 + 1, i])) * 0.5)
            else:
                o[i] = NAN32
        if has_epi and t >= lo and (t + 1 - efrom == EPI_ROWS or t + 1 == hi):
            program(eins, valid, eprog, econsts, eout, efrom, t + 1)
            efrom = t + 1


@njit(**_JIT)
def roll_rank(x, valid, out, w, minp, epi, lo, hi):
    """Percentile rank in (0, 1] of today's value among the window's present values, ties averaged:
    ``(n + 1 + less - greater) / (2 n)``; NaN if today's value is missing. ``less - greater`` is summed
    over the lags (integers, exact); the count n is kept by adding today and removing day t - w."""
    eins, eprog, econsts, eout = epi
    has_epi = eprog.shape[0] > 0
    efrom = lo  # the first row the epilogue has not run on
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
        if has_epi and t >= lo and (t + 1 - efrom == EPI_ROWS or t + 1 == hi):
            program(eins, valid, eprog, econsts, eout, efrom, t + 1)
            efrom = t + 1


@njit(**_JIT)
def roll_mad(x, valid, out, w, minp, epi, lo, hi):
    """Rolling mean absolute deviation around the window mean (two passes over the lags, float64)."""
    eins, eprog, econsts, eout = epi
    has_epi = eprog.shape[0] > 0
    efrom = lo  # the first row the epilogue has not run on
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
            o[i] = _fin(acc[i] / cnt[i]) if (vr[i] and cnt[i] >= minp) else NAN32
        if has_epi and (t + 1 - efrom == EPI_ROWS or t + 1 == hi):
            program(eins, valid, eprog, econsts, eout, efrom, t + 1)
            efrom = t + 1


@njit(**_JIT)
def roll_ema(x, valid, out, w, minp, a, epi, lo, hi):
    """EMA over the window: weight ``a**k`` on the value k days ago (k < w), renormalised over the
    present values. Van Herk blocks (O(1) per value): the current block's part is a running
    ``p = a * p + x`` (nothing subtracted), the previous block's suffix part is summed backwards with
    weight ``a**(b0 - 1 - s)`` and scaled by ``a**(j + 1)`` when it is merged."""
    eins, eprog, econsts, eout = epi
    has_epi = eprog.shape[0] > 0
    efrom = lo  # the first row the epilogue has not run on
    m = x.shape[1]
    scratch = np.empty(m, dtype=np.float32)  # the output row of warm-up days (t < lo)
    pw = np.empty(w + 1)
    pw[0] = 1.0
    for k in range(1, w + 1):
        pw[k] = pw[k - 1] * a
    sn = np.zeros((w + 1, m))
    sd = np.zeros((w + 1, m))
    ss = np.zeros((w + 1, m))
    pn = np.zeros(m)
    pd = np.zeros(m)
    ps = np.zeros(m)
    for t in range((lo // w) * w, hi):  # from the block holding day lo: the states are exact from there
        j = t % w
        if j == 0:
            if t >= w:
                for k in range(w - 1, -1, -1):
                    xr, c = x[t - w + k], pw[w - 1 - k]
                    an, ad, as_, bn, bd, bs = sn[k], sd[k], ss[k], sn[k + 1], sd[k + 1], ss[k + 1]
                    for i in range(m):
                        v = xr[i]
                        p = v == v
                        an[i] = bn[i] + (1.0 if p else 0.0)
                        ad[i] = bd[i] + (c if p else 0.0)
                        as_[i] = bs[i] + (c * np.float64(v) if p else 0.0)
            pn[:] = 0.0
            pd[:] = 0.0
            ps[:] = 0.0
        xr, vr = x[t], valid[t]
        o = out[t] if t >= lo else scratch
        f = pw[j + 1]
        qn, qd, qs = sn[j + 1], sd[j + 1], ss[j + 1]
        for i in range(m):
            v = xr[i]
            p = v == v
            pn[i] += 1.0 if p else 0.0
            pd[i] = a * pd[i] + (1.0 if p else 0.0)
            ps[i] = a * ps[i] + (np.float64(v) if p else 0.0)
            n = pn[i] + qn[i]
            r = (ps[i] + f * qs[i]) / (pd[i] + f * qd[i])
            o[i] = _fin(r) if (vr[i] and n >= minp) else NAN32
        if has_epi and t >= lo and (t + 1 - efrom == EPI_ROWS or t + 1 == hi):
            program(eins, valid, eprog, econsts, eout, efrom, t + 1)
            efrom = t + 1


@njit(**_JIT)
def roll_wma(x, valid, out, w, minp, epi, lo, hi):
    """Linearly weighted mean over the window: weight ``w - k`` on the value k days ago, renormalised
    over the present values. Van Herk blocks (O(1) per value): with r a day's offset in its block, the
    weights are ``(w - j) + r`` in the current block and ``r - j`` in the previous one, so both parts
    are (count, sum x, sum r x, sum r) states (no running add/remove). The suffix's weights come out as
    ``sum r x - j sum x``: that one subtraction loses at most log10(w) of float64's ~16 digits."""
    eins, eprog, econsts, eout = epi
    has_epi = eprog.shape[0] > 0
    efrom = lo  # the first row the epilogue has not run on
    m = x.shape[1]
    scratch = np.empty(m, dtype=np.float32)  # the output row of warm-up days (t < lo)
    sn = np.zeros((w + 1, m))
    s1 = np.zeros((w + 1, m))
    sr = np.zeros((w + 1, m))
    sc = np.zeros((w + 1, m))
    pn = np.zeros(m)
    p1 = np.zeros(m)
    pr = np.zeros(m)
    pc = np.zeros(m)
    for t in range((lo // w) * w, hi):  # from the block holding day lo: the states are exact from there
        j = t % w
        if j == 0:
            if t >= w:
                for k in range(w - 1, -1, -1):
                    xr, rk = x[t - w + k], np.float64(k)
                    an, a1, ar, ac = sn[k], s1[k], sr[k], sc[k]
                    bn, b1, br, bc = sn[k + 1], s1[k + 1], sr[k + 1], sc[k + 1]
                    for i in range(m):
                        v = xr[i]
                        p = v == v
                        vv = np.float64(v) if p else 0.0
                        an[i] = bn[i] + (1.0 if p else 0.0)
                        a1[i] = b1[i] + vv
                        ar[i] = br[i] + rk * vv
                        ac[i] = bc[i] + (rk if p else 0.0)
            pn[:] = 0.0
            p1[:] = 0.0
            pr[:] = 0.0
            pc[:] = 0.0
        xr, vr = x[t], valid[t]
        o = out[t] if t >= lo else scratch
        rj, cj = np.float64(j), np.float64(w - j)
        qn, q1, qr, qc = sn[j + 1], s1[j + 1], sr[j + 1], sc[j + 1]
        for i in range(m):
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
            o[i] = _fin(num / den) if (vr[i] and n >= minp) else NAN32
        if has_epi and t >= lo and (t + 1 - efrom == EPI_ROWS or t + 1 == hi):
            program(eins, valid, eprog, econsts, eout, efrom, t + 1)
            efrom = t + 1


# ----------------------------------------------------------------------------------------------------
# cross-sectional (per day; days lo..hi)
# ----------------------------------------------------------------------------------------------------


@njit(inline="always")
def _okey(b):
    """uint32 bits of a float32 -> uint32 whose unsigned order is the float order (-0.0 == 0.0)."""
    b = np.uint32(0) if b == np.uint32(0x80000000) else b
    return ~b if (b >> np.uint32(31)) else (b | np.uint32(0x80000000))


@njit(**_JIT)
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


@njit(**_JIT)
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


@njit(fastmath={"reassoc"}, **_JIT)  # vectorised row sums (a cross-section's sums, order-insensitive)
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
            o[i] = _fin((np.float64(v) - mu) / sd) if p else NAN32
