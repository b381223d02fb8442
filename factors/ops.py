"""The operator registry: one small registered definition per operator (Qlib names).

Adding an operator touches only this file: write its kernel (usually a call into a numba kernel of
:mod:`factors.kernels`) and decorate it with ``@op(...)``. The parser, the validator, the evaluator, the
RL action masks and the fuzz/no-look-ahead tests all read :data:`OPS`.

Argument kinds (postfix order = argument order):

* ``"expr"``           a sub-expression (a (D, S) tensor at evaluation time)
* ``"window"``         a positive integer literal (days), ``spec.min_window <= w <= MAX_WINDOW``
* ``"const"``          a numeric literal (a Python float at evaluation time)
* ``"expr_or_const"``  either; an operator may not have *only* constants as arguments

Kernel signatures by category (all tensors are (D, S) float32 C-contiguous, D = days, S = stocks):

* ``unary``   ``fn(x) -> Tensor``
* ``binary``  ``fn(a, b) -> Tensor`` (``a``/``b`` a tensor or a float; never both floats)
* ``ts``      ``fn(x, w, valid, epi=None) -> Tensor`` (``w`` an int; only ``Ref`` accepts ``w < 0``, for
  targets; ``epi`` an :class:`Epilogue` for the kernel to run on each output row, see :mod:`factors.fuse`)
* ``ts_pair`` ``fn(x, y, w, valid, epi=None) -> Tensor``
* ``cs``      ``fn(x, universe) -> Tensor`` (``universe`` (D, S) bool: the names ranked each day)

``valid`` (D, S) bool is the panel's mask. Every kernel returns a *clean* result: NaN where the stock is
not valid that day (inputs are NaN there already, and element-wise operators propagate NaN) and NaN
instead of +-inf (division by zero, ``Log(0)``, float32 overflow), so the evaluator does no cleaning pass.

NaN semantics:

* Element-wise operators propagate NaN (``Greater``/``Less`` too: NaN if either side is NaN; ``Pow`` too,
  even with exponent 0). Binary arithmetic is done in float64 and rounded to float32 once; ``Log`` is
  numpy's float32 SIMD log (within a few ulp of the correctly rounded value).
* A rolling window at day t covers days ``t-w+1 .. t`` of the panel (calendar of the panel, not of the
  stock). Missing values inside the window are *skipped*; the result is NaN when fewer than
  ``min_periods(w) = max(spec.min_window, ceil(w / 2))`` values are present. This equals pandas'
  ``rolling(w, min_periods=min_periods(w))`` and keeps a stock usable across a few missing days.
  ``Sum`` is the sum of the values present (not rescaled).
* ``Ref(x, d)`` is a pure shift (``x[t-d]``; NaN before the panel start); ``Delta(x, d) = x - Ref(x, d)``.
* Variance-based statistics use ddof=1 (pandas). They are computed from (count, mean, central sums)
  states merged exactly (Chan / Pebay), so a window of identical values has exactly zero variance:
  ``Std = 0`` and NaN for ``Corr``/``Skew``/``Kurt``.
* Cross-sectional operators (an extension: Qlib has none) look only at names with
  ``universe & finite(x)`` that day and give NaN to every other name.

All statistics accumulate in float64, so outputs match pandas to float32 precision, and every value at
day t is computed from days <= t only (tested bit for bit by perturbing later days).

Speed notes (CPU): the kernels are numba loops over day-major (D, S) float32 arrays, one pass each, with
the valid mask and the inf -> NaN rule fused in; the inner loop runs over a day's stocks (contiguous,
vectorised). Window sums/moments/extremes and ``WMA``/``EMA`` use the van Herk / Gil-Werman block
scheme: O(1) per value for any window, no running add/remove drift (see :mod:`factors.kernels`). ``Med``
keeps a sorted window per stock, updated branch-free across stocks; ``Rank`` and ``Mad`` sum over the w
lags (O(w), exact); ``CSRank`` is one SIMD sort of packed uint32 keys per day. Window and cross-sectional
kernels split days over ``torch.get_num_threads()`` threads; memory-bound element-wise ones run
on one, and a tree of them runs as one fused pass (:mod:`factors.fuse`; the operators that take part
give their kernel code in ``@op(..., fuse=...)``), inside a window input's kernel when there is one to
compute (an :class:`Epilogue`, which every time-series kernel takes). Outputs live in recycled memory (:func:`factors.kernels.empty`): on a VM, faulting in fresh
memory costs more than a cheap operator's arithmetic. Compiled code is cached on disk by numba: after an
install, the first use of each kernel compiles it (1-4 s each, about 40 s for all; :func:`warm_up` does
them all), later processes load it in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from factors import kernels as K
from factors.kernels import Binary, Instr, Shift, Stat, Unary

MAX_WINDOW = 252  # one trading year
NAN = float("nan")


@dataclass(frozen=True)
class OpSpec:
    """One operator. ``arg_kinds`` are in postfix (= argument) order."""

    name: str
    arg_kinds: tuple[str, ...]
    category: str  # "unary" | "binary" | "ts" | "ts_pair" | "cs"
    fn: Callable
    min_window: int = 1  # smallest window allowed (also the minimum number of observations)
    doc: str = ""
    fuse: Unary | Binary | Shift | None = None  # element-wise ops: their code in a fused program (factors.fuse)
    shift: bool = False  # reads the single day t - w (Ref, Delta), not the window t-w+1 .. t

    @property
    def arity(self) -> int:
        return len(self.arg_kinds)

    def lookback(self, w: int) -> int:
        """Days before day t that this time-series operator reads with window ``w``: ``w`` for the shifts
        ``Ref``/``Delta`` (0 for a negative, forward shift), ``w - 1`` for a window ``t-w+1 .. t``."""
        if self.shift:
            return max(w, 0)
        return abs(w) - 1

    def min_periods(self, w: int) -> int:
        """Non-missing values a window of ``w`` days needs for a non-NaN result."""
        return max(self.min_window, (abs(w) + 1) // 2)


OPS: dict[str, OpSpec] = {}
CATEGORIES = ("unary", "binary", "ts", "ts_pair", "cs")
ARG_KINDS = ("expr", "window", "const", "expr_or_const")


def op(name: str, arg_kinds: tuple[str, ...], category: str, min_window: int = 1,
       fuse: Unary | Binary | Shift | None = None) -> Callable:
    """Register ``fn`` as operator ``name`` (the one place an operator is defined). ``fuse``: for a unary
    or binary operator whose kernel is one of :func:`factors.kernels.unary` / ``binary_*``, its code
    there (a :class:`~factors.kernels.Shift` for ``Ref``/``Delta``), so that chains of such operators
    run as one fused pass (:mod:`factors.fuse`)."""
    assert category in CATEGORIES and all(k in ARG_KINDS for k in arg_kinds)
    assert (fuse is None or (category == "unary" and isinstance(fuse, Unary))
            or (category == "binary" and isinstance(fuse, Binary)) or (category == "ts" and isinstance(fuse, Shift)))

    def deco(fn: Callable) -> Callable:
        if name in OPS:
            raise ValueError(f"operator {name} registered twice")
        OPS[name] = OpSpec(name, tuple(arg_kinds), category, fn, min_window, (fn.__doc__ or "").strip(), fuse,
                           shift=isinstance(fuse, Shift))
        return fn

    return deco


# ----------------------------------------------------------------------------------------------------
# glue: tensors <-> the (zero-copy) numpy arrays the numba kernels work on
# ----------------------------------------------------------------------------------------------------


def as_f32(x: Tensor) -> np.ndarray:
    """A (D, S) float32 C-contiguous numpy view of ``x`` (a copy only if it is not already one)."""
    if x.dtype != torch.float32:
        x = x.to(torch.float32)
    return x.detach().contiguous().numpy()


def _mask(m: Tensor) -> np.ndarray:
    return m.to(torch.bool).contiguous().numpy()


def _by_rows(kernel: Callable, x: np.ndarray, *args, parallel: bool = False) -> Tensor:
    """Run a per-day kernel ``kernel(x, *args, out, lo, hi)`` (``parallel``: days split over threads)."""
    out = K.empty(x.shape)
    K.run(kernel, x.shape[0], x, *args, out, parallel=parallel)
    return torch.from_numpy(out)


def _unary(x: Tensor, *, code: Unary) -> Tensor:
    return _by_rows(K.unary, as_f32(x), int(code))


@dataclass(eq=False)
class Epilogue:
    """An element-wise program that a time-series kernel runs on the rows of its output it has just
    written (see :mod:`factors.fuse`). ``ins``: the program's input arrays, float32 (D, S), with
    ``None`` at ``slot``, which is the kernel's own output; ``prog``/``consts`` as for
    :func:`factors.kernels.program`; the result goes to ``out`` (D, S). ``done`` is set once a kernel
    has taken it."""

    ins: list[np.ndarray | None]
    slot: int
    prog: np.ndarray
    consts: np.ndarray
    out: np.ndarray
    done: bool = False

    def bind(self, own: np.ndarray) -> tuple:
        """The kernel argument: (inputs with ``own`` at ``slot``, prog, consts, out)."""
        ins = [own if i == self.slot else a for i, a in enumerate(self.ins)]
        self.done = True
        return tuple(ins + [K.PAD] * (K.P_INPUTS - len(ins))), self.prog, self.consts, self.out


def _rolling(kernel: Callable, xs: tuple[Tensor, ...], valid: Tensor, w: int, *args, parallel: bool = True,
             epi: Epilogue | None = None) -> Tensor:
    """Run a time-series kernel ``kernel(*xs, valid, out, w, *args, epi, lo, hi)``, days split over threads
    (at least 4 w days each: a thread re-reads up to w days before its range)."""
    arrs = [as_f32(x) for x in xs]
    out = K.empty(arrs[0].shape)
    e = K.NO_EPILOGUE if epi is None else epi.bind(out)
    K.run(kernel, arrs[0].shape[0], *arrs, _mask(valid), out, w, *args, e, parallel=parallel,
          min_span=max(64, 4 * abs(w)))
    return torch.from_numpy(out)


def _window(x: Tensor, w: int, valid: Tensor, epi: Epilogue | None, *, stat: Stat, op: str,
            y: Tensor | None = None) -> Tensor:
    """Operator ``op``'s block-window statistic ``stat`` (:func:`factors.kernels.block_window`); ``y``:
    the second input of a pair statistic."""
    return _rolling(K.block_window, (x, x if y is None else y), valid, w, OPS[op].min_periods(w), int(stat),
                    epi=epi)


def _direct(kernel: Callable, x: Tensor, w: int, valid: Tensor, epi: Epilogue | None, *, op: str) -> Tensor:
    """A direct window kernel (:mod:`factors.kernels.direct`) with operator ``op``'s minimum count."""
    return _rolling(kernel, (x,), valid, w, OPS[op].min_periods(w), epi=epi)


def _shift(x: Tensor, d: int, valid: Tensor, epi: Epilogue | None, *, delta: bool) -> Tensor:
    return _rolling(K.shift, (x,), valid, d, delta, parallel=False, epi=epi)


# ----------------------------------------------------------------------------------------------------
# unary
# ----------------------------------------------------------------------------------------------------


@op("Abs", ("expr",), "unary", fuse=Unary.ABS)
def _abs(x: Tensor) -> Tensor:
    """|x|."""
    return _unary(x, code=Unary.ABS)


@op("Log", ("expr",), "unary")
def _log(x: Tensor) -> Tensor:
    """Natural log; x <= 0 gives NaN."""
    xa = as_f32(x)
    out = K.empty(xa.shape)
    K.run(_log_rows, xa.shape[0], xa, out)  # days split over threads (np.log releases the GIL)
    return torch.from_numpy(out)


def _log_rows(xa: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
    with np.errstate(all="ignore"):
        np.log(xa[lo:hi], out=out[lo:hi])  # numpy's SIMD float32 log (LLVM would call the scalar libm log)
    K.finite_inplace(out, lo, hi)  # log(0) = -inf -> NaN


@op("Sign", ("expr",), "unary", fuse=Unary.SIGN)
def _sign(x: Tensor) -> Tensor:
    """-1, 0 or 1 (NaN stays NaN)."""
    return _unary(x, code=Unary.SIGN)


# ----------------------------------------------------------------------------------------------------
# binary (Greater/Less are Qlib's element-wise max/min)
# ----------------------------------------------------------------------------------------------------

_EOC = ("expr_or_const", "expr_or_const")
FLIP = {Binary.SUB: Binary.RSUB, Binary.DIV: Binary.RDIV}  # c op x  ->  x op' c


def _binary(a: Tensor | float, b: Tensor | float, *, code: Binary) -> Tensor:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return _by_rows(K.binary_aa, as_f32(a), as_f32(b), int(code))
    if isinstance(a, Tensor):
        return _by_rows(K.binary_ac, as_f32(a), float(b), int(code))
    assert isinstance(b, Tensor)
    return _by_rows(K.binary_ac, as_f32(b), float(a), int(FLIP.get(code, code)))


# Element-wise binary operators on expressions or constants: (name, kernel code, docstring), in this
# order (the order is part of the RL vocabulary).
_BINARY_OPS: tuple[tuple[str, Binary, str], ...] = (
    ("Add", Binary.ADD, "a + b."),
    ("Sub", Binary.SUB, "a - b."),
    ("Mul", Binary.MUL, "a * b."),
    ("Div", Binary.DIV, "a / b; b == 0 gives NaN (never inf)."),
    ("Greater", Binary.GREATER, "Element-wise max(a, b) (Qlib's Greater); NaN if either is NaN."),
    ("Less", Binary.LESS, "Element-wise min(a, b) (Qlib's Less); NaN if either is NaN."),
)


def _binary_op(name: str, code: Binary, doc: str) -> Callable[..., Tensor]:
    """The operator function of one :data:`_BINARY_OPS` row: (D, S) or scalar a, b -> (D, S)."""
    def fn(a: Tensor | float, b: Tensor | float) -> Tensor:
        return _binary(a, b, code=code)
    fn.__name__ = fn.__qualname__ = f"_{name.lower()}"
    fn.__doc__ = doc
    return fn


for _name, _code, _doc in _BINARY_OPS:
    op(_name, _EOC, "binary", fuse=_code)(_binary_op(_name, _code, _doc))


@op("Pow", ("expr", "const"), "binary", fuse=Binary.POW)
def _pow(a: Tensor, b: float) -> Tensor:
    """a ** b; a negative base with a fractional exponent gives NaN (so does a NaN base, even for b = 0)."""
    return _binary(a, b, code=Binary.POW)


# ----------------------------------------------------------------------------------------------------
# time series with a window
# ----------------------------------------------------------------------------------------------------


@op("Ref", ("expr", "window"), "ts", fuse=Shift.REF)
def _ref(x: Tensor, w: int, valid: Tensor, epi: Epilogue | None = None) -> Tensor:
    """x of w days ago (w < 0 looks forward: targets only)."""
    return _shift(x, w, valid, epi, delta=False)


@op("Delta", ("expr", "window"), "ts", fuse=Shift.DELTA)
def _delta(x: Tensor, w: int, valid: Tensor, epi: Epilogue | None = None) -> Tensor:
    """x - Ref(x, w)."""
    return _shift(x, w, valid, epi, delta=True)


# One series, one window: (name, min_window, Stat of the block-window kernel or the name of the direct
# kernel, docstring). Registered in this order (the order is part of the RL vocabulary).
_WINDOW_OPS: tuple[tuple[str, int, Stat | str, str], ...] = (
    ("Mean", 1, Stat.MEAN,
     'Rolling mean of the present values.'),
    ("Sum", 1, Stat.SUM,
     'Rolling sum of the present values.'),
    ("Std", 2, Stat.STD,
     'Rolling standard deviation (ddof=1).'),
    ("Var", 2, Stat.VAR,
     'Rolling variance (ddof=1).'),
    ("Max", 1, Stat.MAX,
     'Rolling max of the present values.'),
    ("Min", 1, Stat.MIN,
     'Rolling min of the present values.'),
    ("Med", 1, "roll_median",
     'Rolling median of the present values (mean of the two middle values for an even count).'),
    ("Mad", 1, "roll_mad",
     "Rolling mean absolute deviation around the window mean (Qlib's Mad)."),
    ("WMA", 1, Stat.WMA,
     'Linearly weighted mean: weight 1 on the oldest day of the window .. w on today; the weights of the '
     'present values are renormalised.'),
    ("EMA", 1, Stat.EMA,
     'Exponentially weighted mean over the window: weight a**k on the value k days ago, a = 1 - 2 / (w + '
     "1) (Qlib's span convention); the weights of the present values are renormalised."),
    ("Skew", 3, Stat.SKEW,
     "Rolling sample skewness (pandas' adjusted Fisher-Pearson G1); NaN for a constant window."),
    ("Kurt", 4, Stat.KURT,
     "Rolling sample excess kurtosis (pandas' bias-corrected G2); NaN for a constant window."),
    ("Rank", 1, "roll_rank",
     "Percentile rank of today's value among the window's present values, in (0, 1] (ties averaged, as "
     "pandas ``rolling(w).rank(pct=True)``); NaN if today's value is missing."),
    ("IdxMax", 1, Stat.IDXMAX,
     '1-based position of the window max, 1 = oldest day of the window, w = today (first on ties).'),
    ("IdxMin", 1, Stat.IDXMIN,
     '1-based position of the window min, 1 = oldest day of the window, w = today (first on ties).'),
    ("Slope", 2, Stat.SLOPE,
     "Least-squares slope of x on the day index over the window's present values (per day)."),
)


def _window_op(name: str, how: Stat | str) -> Callable[..., Tensor]:
    """The operator function of one :data:`_WINDOW_OPS` row: (D, S) x, window w -> (D, S)."""
    if isinstance(how, Stat):
        def fn(x: Tensor, w: int, valid: Tensor, epi: Epilogue | None = None) -> Tensor:
            return _window(x, w, valid, epi, stat=how, op=name)
    else:
        kernel = getattr(K, how)

        def fn(x: Tensor, w: int, valid: Tensor, epi: Epilogue | None = None) -> Tensor:
            return _direct(kernel, x, w, valid, epi, op=name)
    fn.__name__ = fn.__qualname__ = f"_{name.lower()}"
    return fn


for _name, _min_w, _how, _doc in _WINDOW_OPS:
    _f = _window_op(_name, _how)
    _f.__doc__ = _doc
    op(_name, ("expr", "window"), "ts", min_window=_min_w)(_f)


@op("Corr", ("expr", "expr", "window"), "ts_pair", min_window=2)
def _corr(x: Tensor, y: Tensor, w: int, valid: Tensor, epi: Epilogue | None = None) -> Tensor:
    """Rolling Pearson correlation over days where both are present; NaN if either is constant."""
    return _window(x, w, valid, epi, stat=Stat.CORR, op="Corr", y=y)


@op("Cov", ("expr", "expr", "window"), "ts_pair", min_window=2)
def _cov(x: Tensor, y: Tensor, w: int, valid: Tensor, epi: Epilogue | None = None) -> Tensor:
    """Rolling covariance (ddof=1) over days where both are present."""
    return _window(x, w, valid, epi, stat=Stat.COV, op="Cov", y=y)


# ----------------------------------------------------------------------------------------------------
# cross-sectional (an extension to Qlib's set): per day, over universe & finite(x)
# ----------------------------------------------------------------------------------------------------

_CS_ROWS = 512  # days per block in cs_rank: the sort keys stay in cache


def _cs_rank_rows(x: np.ndarray, mask: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
    cb = max(1, (x.shape[1] - 1).bit_length())  # bits that hold a column index
    if cb > 20:
        raise ValueError(f"cs_rank supports at most 2**20 names per day, got {x.shape[1]}")
    keys = np.empty((min(_CS_ROWS, hi - lo), x.shape[1]), dtype=np.uint32)
    bits = x.view(np.uint32)
    for j in range(lo, hi, _CS_ROWS):
        e = min(j + _CS_ROWS, hi)
        kb = keys[: e - j]
        K.cs_keys(x, bits, mask, kb, cb, j, e)
        kb.sort(axis=1)  # numpy's SIMD sort; releases the GIL
        K.cs_rank_assign(x, bits, kb, mask, out, cb, j, e)


def cs_rank(x: Tensor, mask: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Per-day percentile rank in (0, 1] among ``mask`` (ties averaged, like pandas'
    ``rank(pct=True)``) of the float32 values; NaN outside ``mask``. (D, S) -> (D, S) ``dtype``.

    One SIMD sort of uint32 words ``(float order key, low bits replaced by the column)`` per row gives
    the order and the columns at once; runs of equal truncated keys are then ordered exactly, and ties
    (equal values) get their average rank. Non-finite x count as outside ``mask``."""
    xa, m = as_f32(x), _mask(mask)
    out = K.empty(xa.shape, np.float64 if dtype == torch.float64 else np.float32)
    K.run(_cs_rank_rows, xa.shape[0], xa, m, out)
    return torch.from_numpy(out)


@op("CSRank", ("expr",), "cs")
def _csrank(x: Tensor, universe: Tensor) -> Tensor:
    """Cross-sectional percentile rank in (0, 1] among the day's universe (ties averaged)."""
    return cs_rank(x, universe, torch.float32)


@op("CSZScore", ("expr",), "cs")
def _cszscore(x: Tensor, universe: Tensor) -> Tensor:
    """Cross-sectional z-score (x - mean) / std (ddof=1) among the day's universe; NaN if std is 0."""
    return _by_rows(K.cs_zscore, as_f32(x), _mask(universe), parallel=True)


def warm_up() -> None:
    """Run every operator once on a tiny panel, so that numba compiles the kernels (the first time after
    an install; a few seconds each) or loads them from its disk cache (later processes; milliseconds)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand((8, 3), generator=g) + 0.5
    x[0, 0] = NAN
    y = torch.rand((8, 3), generator=g)
    valid = torch.ones((8, 3), dtype=torch.bool)
    for spec in OPS.values():
        w = max(spec.min_window, 2)
        if spec.category == "unary":
            spec.fn(x)
        elif spec.category == "binary":
            spec.fn(x, y) if spec.arg_kinds[1] != "const" else None
            spec.fn(x, 2.0)
            spec.fn(2.0, y) if spec.arg_kinds[0] != "expr" else None
        elif spec.category == "ts":
            spec.fn(x, w, valid)
        elif spec.category == "ts_pair":
            spec.fn(x, y, w, valid)
        else:
            spec.fn(x, valid)
    cs_rank(x, valid)  # the float64 variant (metrics)
    xs = as_f32(x)  # a fused program (factors.fuse)
    prog = np.array([[Instr.SHIFT, 0, 0, 1], [Instr.AC, Binary.MUL, K.P_INPUTS, 0],
                     [Instr.AA, Binary.ADD, K.P_INPUTS + 1, 0]], dtype=np.int64)
    K.program((xs,) * K.P_INPUTS, _mask(valid), prog, np.array([2.0]), K.empty(xs.shape), 0, xs.shape[0])
    K.copy(xs, K.empty(xs.shape), 0, xs.shape[0])  # the evaluator's copies
    K.clean(xs, _mask(valid), K.empty(xs.shape), 0, xs.shape[0])  # ... and its features
    # the pool's z-score + IC kernel (mining)
    from factors.pool import warm_up as pool_warm_up

    pool_warm_up()
