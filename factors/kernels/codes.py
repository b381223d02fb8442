"""Named codes the kernels dispatch on: element-wise operators, shifts, fused-program instructions and
block-window statistics. Each is its own :class:`~enum.IntEnum` (values may coincide across enums; a
code is read only by the kernel family it belongs to). The numba kernels compare plain ``int``
copies of these values (compile-time constants); Python code passes the enum members."""

from __future__ import annotations

from enum import IntEnum


class Unary(IntEnum):
    """:func:`factors.kernels.elementwise.unary` (``FINITE``: x, NaN if not finite)."""

    ABS = 0
    FINITE = 1
    SIGN = 2


class Binary(IntEnum):
    """:func:`factors.kernels.elementwise.binary_aa` / ``binary_ac``; ``RSUB``/``RDIV`` are ``b - a``,
    ``b / a`` (a constant on the left)."""

    ADD = 0
    SUB = 1
    MUL = 2
    DIV = 3
    GREATER = 4
    LESS = 5
    POW = 6
    RSUB = 7
    RDIV = 8


class Shift(IntEnum):
    """The time-series operators that fuse into element-wise programs (a shifted read)."""

    REF = 0
    DELTA = 1


class Instr(IntEnum):
    """Instruction kinds of a fused element-wise program (:func:`factors.kernels.elementwise.program`)."""

    UNARY = 0
    AA = 1
    AC = 2
    SHIFT = 3


class Stat(IntEnum):
    """Statistics of :func:`factors.kernels.blocks.block_window` (van Herk / Gil-Werman blocks)."""

    SUM = 0
    MEAN = 1
    VAR = 2
    STD = 3
    SKEW = 4
    KURT = 5
    CORR = 6
    COV = 7
    SLOPE = 8
    MAX = 9
    MIN = 10
    IDXMAX = 11
    IDXMIN = 12
    EMA = 13
    WMA = 14
