"""Element-wise kernels (NaN propagates: the result is NaN wherever an input is, so ``valid`` is not
needed), the fused element-wise program (:mod:`factors.fuse`) and the epilogue that a window kernel runs
on the rows it has just written (:func:`flush`). Also the jit options and :func:`fin` that every kernel
family shares."""

# ruff: noqa: PLR0124, FURB136  (``v == v`` is the NaN test numba vectorises; selects, not max/min)
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from factors.kernels.codes import Binary, Instr, Unary

JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
NAN32 = np.float32(np.nan)
INF32 = np.float32(np.inf)

# plain-int copies of the codes: compile-time constants in the kernels (see factors.kernels.codes)
_ABS, _FINITE = int(Unary.ABS), int(Unary.FINITE)
_ADD, _SUB, _MUL, _DIV = int(Binary.ADD), int(Binary.SUB), int(Binary.MUL), int(Binary.DIV)
_GREATER, _LESS, _POW = int(Binary.GREATER), int(Binary.LESS), int(Binary.POW)
_RSUB, _RDIV = int(Binary.RSUB), int(Binary.RDIV)
_I_UNARY, _I_AA, _I_SHIFT = int(Instr.UNARY), int(Instr.AA), int(Instr.SHIFT)


@njit(inline="always")
def fin(v):
    """float32 ``v``, or NaN if it is not finite."""
    r = np.float32(v)
    return r if abs(r) < INF32 else NAN32


@njit(inline="always")
def _row_unary(xr, code, o):
    """``o = op(xr)`` for one row (``FINITE``: xr, NaN if not finite)."""
    if code == _ABS:
        for i in range(xr.size):
            o[i] = abs(xr[i])
    elif code == _FINITE:
        for i in range(xr.size):
            o[i] = fin(xr[i])
    else:
        for i in range(xr.size):
            v = xr[i]
            o[i] = np.float32(1.0) if v > 0 else (np.float32(-1.0) if v < 0 else v)  # 0 -> 0, NaN -> NaN


@njit(**JIT)
def unary(x, code, out, lo, hi):
    """``out = op(x)`` for rows lo..hi of (D, S) arrays."""
    for t in range(lo, hi):
        _row_unary(x[t], code, out[t])


@njit(**JIT)
def finite_inplace(x, lo, hi):
    """``x = x``, NaN where not finite, in place (rows lo..hi). A kernel of its own because LLVM
    vectorises a loop only after checking at run time that its output does not overlap its inputs, and
    ``unary(x, Unary.FINITE, x)`` fails that check (scalar code, 4x slower)."""
    for t in range(lo, hi):
        r = x[t]
        for i in range(r.size):
            r[i] = fin(r[i])


@njit(inline="always")
def _bin(a, b, code):
    a = np.float64(a)
    b = np.float64(b)
    if code == _ADD:
        return a + b
    if code == _SUB:
        return a - b
    if code == _MUL:
        return a * b
    if code == _DIV:
        return a / b
    if code == _RSUB:
        return b - a
    if code == _RDIV:
        return b / a
    if code == _GREATER:
        return np.nan if a != a or b != b else (a if a > b else b)
    if code == _LESS:
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
        o[i] = fin(_bin(ar[i], _at(b, i), code))


@njit(inline="always")
def _row_bin(ar, b, code, o):
    """``o = ar op b`` for one row, ``b`` a row or a float (RSUB/RDIV give ``b - ar``, ``b / ar``),
    computed in float64 and rounded once."""
    # A call per code on purpose: with the operator a constant inside the inlined loop LLVM vectorises
    # it; a single loop dispatching on ``code`` per element does not vectorise.
    if code == _ADD:
        _bin_loop(ar, b, _ADD, o)
    elif code == _SUB:
        _bin_loop(ar, b, _SUB, o)
    elif code == _MUL:
        _bin_loop(ar, b, _MUL, o)
    elif code == _DIV:
        _bin_loop(ar, b, _DIV, o)
    elif code == _RSUB:
        _bin_loop(ar, b, _RSUB, o)
    elif code == _RDIV:
        _bin_loop(ar, b, _RDIV, o)
    elif code == _GREATER:
        _bin_loop(ar, b, _GREATER, o)
    elif code == _LESS:
        _bin_loop(ar, b, _LESS, o)
    else:
        _bin_loop(ar, b, _POW, o)


@njit(**JIT)
def binary_aa(a, b, code, out, lo, hi):
    """``out = a op b`` for rows lo..hi, both (D, S). Computed in float64 and rounded once."""
    for t in range(lo, hi):
        _row_bin(a[t], b[t], code, out[t])


@njit(**JIT)
def binary_ac(a, c, code, out, lo, hi):
    """``out = a op c`` (c a float; RSUB/RDIV give ``c - a``, ``c / a``) for rows lo..hi."""
    for t in range(lo, hi):
        _row_bin(a[t], c, code, out[t])


# a fused element-wise program (see :mod:`factors.fuse`): its input slots
P_INPUTS = 8  # operand k < P_INPUTS is input k; k >= P_INPUTS is the result of instruction k - P_INPUTS


@njit(**JIT)
def program(ins, valid, prog, consts, out, lo, hi):
    """Run an element-wise program row by row over rows lo..hi: instruction k is ``prog[k] = (kind, code,
    a, b)`` and writes its own one-row buffer (the last one writes ``out``), so intermediates stay in L1
    and only the inputs and the result cross memory. ``ins`` is a tuple of ``P_INPUTS`` (D, S) arrays
    (unused slots any float32 2-D array); ``kind`` an :class:`Instr`, ``code`` a :class:`Unary` or
    :class:`Binary` code; ``b`` is an operand for ``Instr.AA``, an index into ``consts`` for ``Instr.AC``,
    and the shift d for ``Instr.SHIFT`` (``Ref``: input ``a`` at day t - d where ``valid``, as
    :func:`factors.kernels.direct.shift` does; ``a`` must be an input). Each instruction computes and rounds exactly as its own
    kernel does: same values, bit for bit, as running the operators one by one."""
    n = prog.shape[0]
    d_all = out.shape[0]
    regs = np.empty((n, out.shape[1]), dtype=np.float32)
    for t in range(lo, hi):
        for k in range(n):
            kind, code, a, b = prog[k, 0], prog[k, 1], prog[k, 2], prog[k, 3]
            o = out[t] if k == n - 1 else regs[k]
            if kind == _I_SHIFT:
                src = t - b
                if src < 0 or src >= d_all:
                    o[:] = NAN32
                else:
                    sr, vr = ins[a][src], valid[t]
                    for i in range(o.size):
                        o[i] = sr[i] if vr[i] else NAN32
                continue
            xa = ins[a][t] if a < P_INPUTS else regs[a - P_INPUTS]
            if kind == _I_UNARY:
                _row_unary(xa, code, o)
            elif kind == _I_AA:
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


@njit(**JIT)
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


@njit(**JIT)
def clean(x, valid, out, lo, hi):
    """``out = x`` where valid and finite, else NaN (rows lo..hi)."""
    for t in range(lo, hi):
        xr, vr, o = x[t], valid[t], out[t]
        for i in range(o.size):
            v = xr[i]
            o[i] = fin(v) if vr[i] else NAN32


@njit(inline="always")
def has_epilogue(epi):
    """Whether ``epi`` has a program to run (is not :data:`NO_EPILOGUE`)."""
    return epi[1].shape[0] > 0


@njit(inline="always")
def due(has_epi, efrom, t, lo, hi):
    """Whether the epilogue should run now, after day ``t`` was written: :data:`EPI_ROWS` rows since
    ``efrom`` are ready or ``t`` ends the range ``lo .. hi`` (warm-up days ``t < lo`` never count)."""
    return has_epi and t >= lo and (t + 1 - efrom == EPI_ROWS or t + 1 == hi)


@njit(inline="always")
def flush(epi, valid, efrom, t):
    """Run the epilogue ``epi`` on rows ``efrom .. t``; returns the next row it has to run on. A time-series
    kernel calls it ``if due(...)`` only: touching the arrays of ``epi`` on every row (even passing them
    to an inlined function) costs reference counting that made a rolling mean 20% slower."""
    eins, eprog, econsts, eout = epi
    program(eins, valid, eprog, econsts, eout, efrom, t + 1)
    return t + 1
