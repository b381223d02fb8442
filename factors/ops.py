"""The operator registry: one small registered definition per operator (Qlib names).

Adding an operator touches only this file: write its torch kernel and decorate it with ``@op(...)``.
The parser, the validator, the evaluator, the RL action masks and the fuzz/no-look-ahead tests all read
:data:`OPS`.

Argument kinds (postfix order = argument order):

* ``"expr"``           a sub-expression (a (D, S) tensor at evaluation time)
* ``"window"``         a positive integer literal (days), ``spec.min_window <= w <= MAX_WINDOW``
* ``"const"``          a numeric literal (a Python float at evaluation time)
* ``"expr_or_const"``  either; an operator may not have *only* constants as arguments

Kernel signatures by category (all tensors are (D, S) float32, D = days, S = stocks):

* ``unary``   ``fn(x) -> Tensor``
* ``binary``  ``fn(a, b) -> Tensor`` (``a``/``b`` a tensor or a float; never both floats)
* ``ts``      ``fn(x, w) -> Tensor`` (``w`` an int; only ``Ref`` accepts ``w < 0``, for targets); with
  ``spec.prefix`` also ``fn(x, w, pre=RunningSums(x))`` so windows of one input share running sums
* ``ts_pair`` ``fn(x, y, w) -> Tensor``
* ``cs``      ``fn(x, universe) -> Tensor`` (``universe`` (D, S) bool: the names ranked each day)

NaN semantics (the evaluator also maps every +-inf to NaN after each operator, so division by zero,
``Log(0)`` or a float32 overflow give NaN, never inf; kernels may therefore assume inputs hold NaN but
no +-inf):

* Element-wise operators propagate NaN (``Greater``/``Less`` too: NaN if either side is NaN).
* A rolling window at day t covers days ``t-w+1 .. t`` of the panel (calendar of the panel, not of the
  stock). Missing values inside the window are *skipped*; the result is NaN when fewer than
  ``min_periods(w) = max(spec.min_window, ceil(w / 2))`` values are present. This equals pandas'
  ``rolling(w, min_periods=min_periods(w))`` and keeps a stock usable across a few missing days.
  ``Sum`` is the sum of the values present (not rescaled).
* ``Ref(x, d)`` is a pure shift (``x[t-d]``; NaN before the panel start); ``Delta(x, d) = x - Ref(x, d)``.
* Variance-based statistics use ddof=1 (pandas); a window whose variance is zero within float64
  rounding gives ``Std = 0`` and NaN for ``Corr``/``Skew``/``Kurt``.
* Cross-sectional operators (an extension: Qlib has none) look only at names with
  ``universe & finite(x)`` that day and give NaN to every other name.

Running sums are accumulated in float64 (and per-stock offset by the stock's first finite value, which is
never a future value) so that O(D*S) cumulative-sum kernels stay exact to float32 output precision.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

MAX_WINDOW = 252  # one trading year; also bounds the memory of the sort-based kernels
_STOCK_CHUNK = 16  # stocks per chunk for per-stock kernels: keeps float64 temporaries in cache
_CHUNK_ELEMS = 1 << 18  # elements per chunk for (D, s, w) unfold kernels (64 MiB in float32)
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
    prefix: bool = False  # ts kernel accepts ``pre=RunningSums`` (shared running sums of its input)

    @property
    def arity(self) -> int:
        return len(self.arg_kinds)

    def min_periods(self, w: int) -> int:
        """Non-missing values a window of ``w`` days needs for a non-NaN result."""
        return max(self.min_window, (abs(w) + 1) // 2)


OPS: dict[str, OpSpec] = {}
CATEGORIES = ("unary", "binary", "ts", "ts_pair", "cs")
ARG_KINDS = ("expr", "window", "const", "expr_or_const")


def op(name: str, arg_kinds: tuple[str, ...], category: str, min_window: int = 1,
       prefix: bool = False) -> Callable:
    """Register ``fn`` as operator ``name`` (the one place an operator is defined)."""
    assert category in CATEGORIES and all(k in ARG_KINDS for k in arg_kinds)

    def deco(fn: Callable) -> Callable:
        if name in OPS:
            raise ValueError(f"operator {name} registered twice")
        OPS[name] = OpSpec(name, tuple(arg_kinds), category, fn, min_window, (fn.__doc__ or "").strip(),
                           prefix)
        return fn

    return deco


# ----------------------------------------------------------------------------------------------------
# kernels (private): all take/return (D, S) tensors; windows run along dim 0 (days)
# ----------------------------------------------------------------------------------------------------


def _shift(x: Tensor, d: int) -> Tensor:
    """``out[t] = x[t - d]`` (NaN where t - d is outside the panel); ``d < 0`` looks forward."""
    if d == 0:
        return x.clone()
    out = torch.full_like(x, NAN)
    n = x.shape[0]
    if abs(d) >= n:
        return out
    if d > 0:
        out[d:] = x[:-d]
    else:
        out[:d] = x[-d:]
    return out


_BLOCK = 32


def _cumsum(x: Tensor) -> Tensor:
    """Cumulative sum along dim 0, blocked: a log-step (Hillis-Steele) scan inside blocks of B days
    plus a short cumsum of the block totals. Several times faster on CPU than ``torch.cumsum`` over
    dim 0, and strictly causal to the last bit: each output is a sum of past values only (a
    triangular-matmul scan is not: MKL's rounding of row t depended on later rows of its block)."""
    d, s = x.shape
    if d <= _BLOCK:
        return torch.cumsum(x, 0)
    nb = -(-d // _BLOCK)
    cur = torch.nn.functional.pad(x, (0, 0, 0, nb * _BLOCK - d)).reshape(nb, _BLOCK, s)
    nxt = torch.empty_like(cur)
    k = 1
    while k < _BLOCK:
        nxt[:, :k] = cur[:, :k]
        torch.add(cur[:, k:], cur[:, :-k], out=nxt[:, k:])
        cur, nxt = nxt, cur
        k *= 2
    tot = cur[:, -1, :]
    cur[1:] += torch.cumsum(tot, 0)[:-1].unsqueeze(1)
    return cur.reshape(nb * _BLOCK, s)[:d]


def _wsum(c: Tensor, w: int, sign: float = -1.0) -> Tensor:
    """Window sums from a cumulative sum ``c`` along dim 0: ``out[t] = c[t] - c[t-w]``
    (``sign=+1``: ``c[t] + c[t-w]``)."""
    if w >= c.shape[0]:
        return c.clone()
    out = torch.empty_like(c)
    out[:w] = c[:w]
    torch.add(c[w:], c[:-w], alpha=sign, out=out[w:])
    return out


def _offset(x: Tensor, fin: Tensor | None = None) -> Tensor:
    """Per-stock first finite value (1, S) (0 if none): a past value, so subtracting it is leak-free."""
    fin = torch.isfinite(x) if fin is None else fin
    first = fin.to(torch.uint8).argmax(dim=0, keepdim=True)
    c = x.gather(0, first)
    return torch.where(torch.isfinite(c), c, torch.zeros_like(c))


class RunningSums:
    """Cumulative sums of one input (D, S) shared by every window length: present-value counts
    (float32, exact), and float64 sums of ``x - offset`` and its square (offset = the stock's first
    finite value: a past value, so leak-free, and it keeps the sums small relative to the spread).
    The evaluator caches one per subexpression, so ``Mean(x, 5)``, ``Std(x, 20)``, ... share them.
    Built in chunks of stocks (cache-sized temporaries); :meth:`cols` gives a view of some stocks."""

    def __init__(self, x: Tensor | None, mask: Tensor | None = None):
        self._c2: Tensor | None = None
        if x is None:
            return
        d, s = x.shape
        self.off = torch.empty((1, s), dtype=torch.float64)
        self.xc = torch.empty((d, s), dtype=torch.float64)
        self.cn = torch.empty((d, s), dtype=torch.float32)
        self.c1 = torch.empty((d, s), dtype=torch.float64)
        for j in range(0, s, _STOCK_CHUNK):
            sl = slice(j, j + _STOCK_CHUNK)
            xj = x[:, sl]
            m = ~torch.isnan(xj) if mask is None else mask[:, sl]  # inputs hold no +-inf (see module doc)
            x64 = xj.double()
            off = _offset(x64, m)
            self.off[:, sl] = off
            xc = torch.where(m, x64 - off, torch.zeros((), dtype=torch.float64))
            self.xc[:, sl] = xc
            self.cn[:, sl] = _cumsum(m.to(torch.float32))
            self.c1[:, sl] = _cumsum(xc)

    @property
    def c2(self) -> Tensor:
        if self._c2 is None:
            c2 = torch.empty_like(self.c1)
            for j in range(0, c2.shape[1], _STOCK_CHUNK):
                xc = self.xc[:, j:j + _STOCK_CHUNK]
                c2[:, j:j + _STOCK_CHUNK] = _cumsum(xc * xc)
            self._c2 = c2
            self.xc = None  # type: ignore[assignment]  # not needed once c2 exists; halves the cached size
        return self._c2

    def cols(self, sl: slice) -> RunningSums:
        """A view of the stocks in ``sl`` (no copy)."""
        v = RunningSums(None)
        v.off, v.cn, v.c1 = self.off[:, sl], self.cn[:, sl], self.c1[:, sl]
        v.xc = None if self.xc is None else self.xc[:, sl]  # type: ignore[assignment]
        v._c2 = None if self._c2 is None else self._c2[:, sl]
        return v

    @property
    def nbytes(self) -> int:
        ts = [t for t in (self.off, self.xc, self.cn, self.c1, self._c2) if t is not None]
        return sum(t.element_size() * t.nelement() for t in ts)


def _sums_chunks(needs_c2: bool = False) -> Callable:
    """Run a RunningSums kernel ``fn(x, w, pre)`` on chunks of stocks (cache-sized temporaries)."""
    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(x: Tensor, w: int, pre: RunningSums | None = None) -> Tensor:
            if pre is None:
                pre = RunningSums(x)
            if needs_c2:
                pre.c2  # noqa: B018  # build it once, chunk-wise, before taking views
            out = torch.empty(x.shape, dtype=torch.float32)
            for j in range(0, x.shape[1], _STOCK_CHUNK):
                sl = slice(j, j + _STOCK_CHUNK)
                out[:, sl] = fn(x[:, sl], w, pre=pre.cols(sl))
            return out

        return run

    return deco


class _Moments:
    """Window count, sum and central sum of squares from :class:`RunningSums`."""

    def __init__(self, x: Tensor, w: int, mask: Tensor | None = None, n: Tensor | None = None,
                 pre: RunningSums | None = None):
        self.pre = pre if pre is not None else RunningSums(x, mask)
        self.off, self.xc = self.pre.off, self.pre.xc
        self.n = _wsum(self.pre.cn, w).double() if n is None else n
        self.s1 = _wsum(self.pre.c1, w)
        self.w = w

    def mean(self) -> Tensor:
        return self.s1 / self.n + self.off

    def m2(self) -> Tensor:
        """Central sum of squares; exactly zero when below the float64 rounding of the running sums."""
        c2 = self.pre.c2
        s2 = _wsum(c2, self.w)
        m2 = s2 - self.s1 * self.s1 / self.n
        bound = _wsum(c2, self.w, sign=1.0)  # c2[t] + c2[t-w]
        bound *= 64 * torch.finfo(torch.float64).eps
        return torch.where(m2 <= bound, torch.zeros_like(m2), m2)

    def var(self, ddof: int = 1) -> Tensor:
        return self.m2() / (self.n - ddof)


def _minp(x: Tensor, n: Tensor, need: int) -> Tensor:
    return torch.where(n >= need, x, torch.full_like(x, NAN))


def _out(x: Tensor) -> Tensor:
    return x.to(torch.float32)


def _rolling_fmax(x: Tensor, w: int, fn: Callable) -> Tensor:
    """Sliding max/min skipping NaN in O(D*S*log w): doubling windows, then two overlapping halves."""
    def step(cur: Tensor, k: int) -> Tensor:
        if k >= cur.shape[0]:
            return cur
        out = torch.empty_like(cur)
        out[:k] = cur[:k]
        fn(cur[k:], cur[:-k], out=out[k:])
        return out

    cur, size = x, 1
    while size * 2 <= w:
        cur = step(cur, size)
        size *= 2
    if size < w:
        cur = step(cur, w - size)
    return cur


def _count(x: Tensor, w: int) -> Tensor:
    """Present values per window (float32: exact for any panel length below 2**24)."""
    return _wsum(_cumsum(torch.isfinite(x).to(torch.float32)), w)


def _unfold_apply(x: Tensor, w: int, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply ``fn`` to windows (s, D, w) (oldest first, NaN-padded before the panel start) and return
    (D, S). Works stock-major (each stock's days contiguous, so the window axis has stride 1) and in
    stock chunks so memory stays bounded; ``fn`` returns (s, D)."""
    d, s = x.shape
    xt = x.T.contiguous()
    pad = torch.cat([torch.full((s, w - 1), NAN, dtype=x.dtype), xt], 1) if w > 1 else xt
    step = max(1, _CHUNK_ELEMS // max(1, d * w))
    parts = []
    for j in range(0, s, step):
        parts.append(fn(pad[j:j + step].unfold(1, w, 1)))  # (s, D, w)
    out = torch.cat(parts, 0) if len(parts) > 1 else parts[0]
    return out.T.contiguous()


def _stock_chunks(fn: Callable) -> Callable:
    """Run a per-stock kernel ``fn(*xs, w)`` on chunks of stocks so its float64 temporaries stay in
    cache (1.3-2x faster than whole-panel passes); results are identical (stocks are independent)."""
    @functools.wraps(fn)
    def run(*args: Any) -> Tensor:
        *xs, w = args
        s = xs[0].shape[1]
        if s <= _STOCK_CHUNK:
            return fn(*xs, w)
        out = torch.empty(xs[0].shape, dtype=torch.float32)
        for j in range(0, s, _STOCK_CHUNK):
            out[:, j:j + _STOCK_CHUNK] = fn(*[x[:, j:j + _STOCK_CHUNK] for x in xs], w)
        return out

    return run


def _nan_fill(win: Tensor, value: float) -> Tensor:
    return torch.where(torch.isnan(win), torch.full((), value, dtype=win.dtype), win)


# ----------------------------------------------------------------------------------------------------
# unary
# ----------------------------------------------------------------------------------------------------


@op("Abs", ("expr",), "unary")
def _abs(x: Tensor) -> Tensor:
    """|x|."""
    return torch.abs(x)


@op("Log", ("expr",), "unary")
def _log(x: Tensor) -> Tensor:
    """Natural log; x <= 0 gives NaN."""
    return torch.log(x)


@op("Sign", ("expr",), "unary")
def _sign(x: Tensor) -> Tensor:
    """-1, 0 or 1 (NaN stays NaN; torch.sign alone would map NaN to 0)."""
    return torch.where(torch.isnan(x), x, torch.sign(x))


# ----------------------------------------------------------------------------------------------------
# binary (Greater/Less are Qlib's element-wise max/min)
# ----------------------------------------------------------------------------------------------------

_EOC = ("expr_or_const", "expr_or_const")


@op("Add", _EOC, "binary")
def _add(a: Tensor | float, b: Tensor | float) -> Tensor:
    """a + b."""
    return a + b  # type: ignore[return-value]


@op("Sub", _EOC, "binary")
def _sub(a: Tensor | float, b: Tensor | float) -> Tensor:
    """a - b."""
    return a - b  # type: ignore[return-value]


@op("Mul", _EOC, "binary")
def _mul(a: Tensor | float, b: Tensor | float) -> Tensor:
    """a * b."""
    return a * b  # type: ignore[return-value]


@op("Div", _EOC, "binary")
def _div(a: Tensor | float, b: Tensor | float) -> Tensor:
    """a / b; b == 0 gives NaN (never inf)."""
    return a / b  # type: ignore[return-value]


def _as_tensor(a: Tensor | float, like: Tensor | float) -> Tensor:
    if isinstance(a, Tensor):
        return a
    assert isinstance(like, Tensor)
    return torch.full_like(like, a)


@op("Greater", _EOC, "binary")
def _greater(a: Tensor | float, b: Tensor | float) -> Tensor:
    """Element-wise max(a, b) (Qlib's Greater); NaN if either is NaN."""
    return torch.maximum(_as_tensor(a, b), _as_tensor(b, a))


@op("Less", _EOC, "binary")
def _less(a: Tensor | float, b: Tensor | float) -> Tensor:
    """Element-wise min(a, b) (Qlib's Less); NaN if either is NaN."""
    return torch.minimum(_as_tensor(a, b), _as_tensor(b, a))


@op("Pow", ("expr", "const"), "binary")
def _pow(a: Tensor, b: float) -> Tensor:
    """a ** b; a negative base with a fractional exponent gives NaN."""
    return torch.pow(a, b)


# ----------------------------------------------------------------------------------------------------
# time series with a window
# ----------------------------------------------------------------------------------------------------


@op("Ref", ("expr", "window"), "ts")
def _ref(x: Tensor, w: int) -> Tensor:
    """x of w days ago (w < 0 looks forward: targets only)."""
    return _shift(x, w)


@op("Delta", ("expr", "window"), "ts")
def _delta(x: Tensor, w: int) -> Tensor:
    """x - Ref(x, w)."""
    return x - _shift(x, w)


@op("Mean", ("expr", "window"), "ts", prefix=True)
@_sums_chunks(needs_c2=False)
def _mean(x: Tensor, w: int, pre: RunningSums | None = None) -> Tensor:
    """Rolling mean of the present values."""
    m = _Moments(x, w, pre=pre)
    return _out(_minp(m.mean(), m.n, OPS["Mean"].min_periods(w)))


@op("Sum", ("expr", "window"), "ts", prefix=True)
@_sums_chunks(needs_c2=False)
def _sum(x: Tensor, w: int, pre: RunningSums | None = None) -> Tensor:
    """Rolling sum of the present values."""
    m = _Moments(x, w, pre=pre)
    return _out(_minp(m.s1 + m.off * m.n, m.n, OPS["Sum"].min_periods(w)))


@op("Std", ("expr", "window"), "ts", prefix=True, min_window=2)
@_sums_chunks(needs_c2=True)
def _std(x: Tensor, w: int, pre: RunningSums | None = None) -> Tensor:
    """Rolling standard deviation (ddof=1)."""
    m = _Moments(x, w, pre=pre)
    return _out(_minp(torch.sqrt(m.var()), m.n, OPS["Std"].min_periods(w)))


@op("Var", ("expr", "window"), "ts", prefix=True, min_window=2)
@_sums_chunks(needs_c2=True)
def _var(x: Tensor, w: int, pre: RunningSums | None = None) -> Tensor:
    """Rolling variance (ddof=1)."""
    m = _Moments(x, w, pre=pre)
    return _out(_minp(m.var(), m.n, OPS["Var"].min_periods(w)))


@op("Max", ("expr", "window"), "ts")
def _max(x: Tensor, w: int) -> Tensor:
    """Rolling max of the present values."""
    return _minp(_rolling_fmax(x, w, torch.fmax), _count(x, w), OPS["Max"].min_periods(w))


@op("Min", ("expr", "window"), "ts")
def _min(x: Tensor, w: int) -> Tensor:
    """Rolling min of the present values."""
    return _minp(_rolling_fmax(x, w, torch.fmin), _count(x, w), OPS["Min"].min_periods(w))


@op("Med", ("expr", "window"), "ts")
def _med(x: Tensor, w: int) -> Tensor:
    """Rolling median of the present values (mean of the two middle values for an even count)."""
    need = OPS["Med"].min_periods(w)

    def k(win: Tensor) -> Tensor:
        srt = torch.from_numpy(np.sort(win.numpy(), axis=-1))  # NaN sorts last; numpy's sort is SIMD
        n = (~torch.isnan(win)).sum(-1, keepdim=True)
        lo = srt.gather(-1, ((n - 1).clamp(min=0)) // 2).squeeze(-1)
        hi = srt.gather(-1, (n // 2).clamp(max=win.shape[-1] - 1)).squeeze(-1)
        return _minp((lo + hi) / 2, n.squeeze(-1), need)

    return _unfold_apply(x, w, k)


@op("Mad", ("expr", "window"), "ts")
def _mad(x: Tensor, w: int) -> Tensor:
    """Rolling mean absolute deviation around the window mean (Qlib's Mad)."""
    need = OPS["Mad"].min_periods(w)

    def k(win: Tensor) -> Tensor:
        win = win.double()
        n = (~torch.isnan(win)).sum(-1)
        mean = _nan_fill(win, 0.0).sum(-1) / n
        mad = _nan_fill((win - mean.unsqueeze(-1)).abs(), 0.0).sum(-1) / n
        return _out(_minp(mad, n, need))

    return _unfold_apply(x, w, k)


@op("WMA", ("expr", "window"), "ts")
@_stock_chunks
def _wma(x: Tensor, w: int) -> Tensor:
    """Linearly weighted mean: weight 1 on the oldest day of the window .. w on today; the weights
    of the present values are renormalised."""
    d = x.shape[0]
    m = torch.isfinite(x)
    x64 = x.double()
    x64 = torch.where(m, x64 - _offset(x64), torch.zeros((), dtype=torch.float64))
    t = torch.arange(d, dtype=torch.float64).unsqueeze(1)
    mf = m.double()
    n = _wsum(_cumsum(mf), w)
    s_x, s_tx = _wsum(_cumsum(x64), w), _wsum(_cumsum(t * x64), w)
    s_m, s_tm = n, _wsum(_cumsum(t * mf), w)
    base = t - w  # weight of day s in the window ending t is s - (t - w)
    num = s_tx - base * s_x
    den = s_tm - base * s_m
    off = _offset(x.double())
    return _out(_minp(num / den + off, n, OPS["WMA"].min_periods(w)))


@op("EMA", ("expr", "window"), "ts")
@_stock_chunks
def _ema(x: Tensor, w: int) -> Tensor:
    """Exponentially weighted mean over the window: weight a**k on the value k days ago,
    a = 1 - 2 / (w + 1) (Qlib's span convention); the weights of the present values are renormalised."""
    a = 1.0 - 2.0 / (w + 1.0)
    kernel = torch.tensor([a ** (w - 1 - i) for i in range(w)], dtype=torch.float64).view(1, 1, w)
    m = torch.isfinite(x)
    x64 = x.double()
    off = _offset(x64)
    xc = torch.where(m, x64 - off, torch.zeros((), dtype=torch.float64))
    inp = torch.stack([xc.T, m.double().T], 0).reshape(-1, 1, x.shape[0])  # (2S, 1, D)
    inp = torch.nn.functional.pad(inp, (w - 1, 0))
    out = torch.nn.functional.conv1d(inp, kernel).reshape(2, x.shape[1], x.shape[0])
    num, den = out[0].T, out[1].T
    n = _count(x, w)
    return _out(_minp(num / den + off, n, OPS["EMA"].min_periods(w)))


def _central_moments(win: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """n and central sums m2, m3, m4 of the present values of each window, two-pass in float64
    (running power sums would cancel catastrophically for the 3rd and 4th moments)."""
    win = win.double()
    ok = ~torch.isnan(win)
    n = ok.sum(-1).double()
    mean = _nan_fill(win, 0.0).sum(-1) / n
    dev = _nan_fill(win - mean.unsqueeze(-1), 0.0)
    d2 = dev * dev
    return n, d2.sum(-1), (d2 * dev).sum(-1), (d2 * d2).sum(-1)


@op("Skew", ("expr", "window"), "ts", min_window=3)
def _skew(x: Tensor, w: int) -> Tensor:
    """Rolling sample skewness (pandas' adjusted Fisher-Pearson G1); NaN for a constant window."""
    need = OPS["Skew"].min_periods(w)

    def k(win: Tensor) -> Tensor:
        n, m2, m3, _ = _central_moments(win)
        g = torch.sqrt(n * (n - 1)) / (n - 2) * (m3 / n) / (m2 / n) ** 1.5
        g = torch.where(m2 > 0, g, torch.full_like(g, NAN))
        return _out(_minp(g, n, need))

    return _unfold_apply(x, w, k)


@op("Kurt", ("expr", "window"), "ts", min_window=4)
def _kurt(x: Tensor, w: int) -> Tensor:
    """Rolling sample excess kurtosis (pandas' bias-corrected G2); NaN for a constant window."""
    need = OPS["Kurt"].min_periods(w)

    def k(win: Tensor) -> Tensor:
        n, m2, _, m4 = _central_moments(win)
        g = (n * (n + 1) * (n - 1) * m4 / (m2 * m2) - 3 * (n - 1) ** 2) / ((n - 2) * (n - 3))
        g = torch.where(m2 > 0, g, torch.full_like(g, NAN))
        return _out(_minp(g, n, need))

    return _unfold_apply(x, w, k)


@op("Rank", ("expr", "window"), "ts")
def _rank(x: Tensor, w: int) -> Tensor:
    """Percentile rank of today's value among the window's present values, in (0, 1]
    (ties averaged, as pandas ``rolling(w).rank(pct=True)``); NaN if today's value is missing."""
    need = OPS["Rank"].min_periods(w)

    def k(win: Tensor) -> Tensor:
        # rank = less + (equal + 1) / 2 = (n + less - greater + 1) / 2, and less - greater is the sum of
        # sign(today - value); torch.sign maps NaN (missing values) to 0, so they drop out.
        last = win[..., -1]
        balance = torch.sign(last.unsqueeze(-1) - win).sum(-1, dtype=torch.float32)
        n = (~torch.isnan(win)).sum(-1).to(torch.float32)
        r = (n + balance + 1) / 2 / n
        r = torch.where(torch.isnan(last), torch.full_like(r, NAN), r)
        return _out(_minp(r, n, need))

    return _unfold_apply(x, w, k)


def _idx(x: Tensor, w: int, largest: bool, name: str) -> Tensor:
    need = OPS[name].min_periods(w)

    def k(win: Tensor) -> Tensor:
        fill = -math.inf if largest else math.inf
        v = _nan_fill(win, fill)
        i = (v.argmax(-1) if largest else v.argmin(-1)).to(torch.float32) + 1
        return _minp(i, (~torch.isnan(win)).sum(-1), need)

    return _unfold_apply(x, w, k)


@op("IdxMax", ("expr", "window"), "ts")
def _idxmax(x: Tensor, w: int) -> Tensor:
    """1-based position of the window max, 1 = oldest day of the window, w = today (first on ties)."""
    return _idx(x, w, True, "IdxMax")


@op("IdxMin", ("expr", "window"), "ts")
def _idxmin(x: Tensor, w: int) -> Tensor:
    """1-based position of the window min, 1 = oldest day of the window, w = today (first on ties)."""
    return _idx(x, w, False, "IdxMin")


@op("Slope", ("expr", "window"), "ts", min_window=2)
@_stock_chunks
def _slope(x: Tensor, w: int) -> Tensor:
    """Least-squares slope of x on the day index over the window's present values (per day)."""
    m = torch.isfinite(x)
    t = torch.arange(x.shape[0], dtype=torch.float64).unsqueeze(1).expand(x.shape)
    tm = torch.where(m, t, torch.full((), NAN, dtype=torch.float64))
    return _cov_like(x.double(), tm, w, "Slope", slope=True)


def _cov_like(x: Tensor, y: Tensor, w: int, name: str, corr: bool = False, slope: bool = False) -> Tensor:
    m = torch.isfinite(x) & torch.isfinite(y)
    mx = _Moments(x, w, m)
    my = _Moments(y, w, m, n=mx.n)
    n = mx.n
    sxy = _wsum(_cumsum(mx.xc * my.xc), w) - mx.s1 * my.s1 / n
    if corr:
        vx, vy = mx.var(), my.var()
        res = (sxy / (n - 1)) / torch.sqrt(vx * vy)
        res = torch.where((vx > 0) & (vy > 0), res, torch.full_like(res, NAN))
        res = res.clamp(-1.0, 1.0)
    elif slope:
        res = sxy / (my.var() * (n - 1))
    else:
        res = sxy / (n - 1)
    return _out(_minp(res, n, OPS[name].min_periods(w)))


@op("Corr", ("expr", "expr", "window"), "ts_pair", min_window=2)
@_stock_chunks
def _corr(x: Tensor, y: Tensor, w: int) -> Tensor:
    """Rolling Pearson correlation over days where both are present; NaN if either is constant."""
    return _cov_like(x, y, w, "Corr", corr=True)


@op("Cov", ("expr", "expr", "window"), "ts_pair", min_window=2)
@_stock_chunks
def _cov(x: Tensor, y: Tensor, w: int) -> Tensor:
    """Rolling covariance (ddof=1) over days where both are present."""
    return _cov_like(x, y, w, "Cov")


# ----------------------------------------------------------------------------------------------------
# cross-sectional (an extension to Qlib's set): per day, over universe & finite(x)
# ----------------------------------------------------------------------------------------------------


def _order_key(v: np.ndarray) -> np.ndarray:
    """float32 -> uint32 whose unsigned order is the float order (-0.0 == 0.0; NaN must be removed)."""
    bits = (v + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into 0.0
    neg = (bits >> 31).astype(bool)
    return np.where(neg, ~bits, bits | np.uint32(0x80000000))


def cs_rank(x: Tensor, mask: Tensor) -> Tensor:
    """Per-day percentile rank in (0, 1] among ``mask`` (ties averaged, like pandas'
    ``rank(pct=True)``) of the float32 values; NaN outside ``mask``. (D, S) -> (D, S) float64.

    One SIMD sort of packed ``(order key << 32) | column`` uint64 words gives every row's order and
    its column indices at once; tie groups are found with running max/min along the sorted rows."""
    d, s = x.shape
    v = torch.where(mask, x.to(torch.float32), torch.full((), math.inf)).numpy()
    keys = (_order_key(v).astype(np.uint64) << np.uint64(32)) | np.arange(s, dtype=np.uint64)
    keys.sort(axis=1)
    col = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    sv = keys >> np.uint64(32)
    idx = np.broadcast_to(np.arange(s, dtype=np.int64), (d, s))
    first = np.ones((d, s), dtype=bool)
    first[:, 1:] = sv[:, 1:] != sv[:, :-1]
    last = np.ones((d, s), dtype=bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, idx, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, idx, s - 1)[:, ::-1], axis=1)[:, ::-1]
    avg = (start + end).astype(np.float64) / 2 + 1
    ranks = np.empty((d, s), dtype=np.float64)
    np.put_along_axis(ranks, col, avg, axis=1)
    r = torch.from_numpy(ranks) / mask.sum(1, keepdim=True).double()
    return torch.where(mask, r, torch.full((), NAN, dtype=torch.float64))


@op("CSRank", ("expr",), "cs")
def _csrank(x: Tensor, universe: Tensor) -> Tensor:
    """Cross-sectional percentile rank in (0, 1] among the day's universe (ties averaged)."""
    return _out(cs_rank(x, universe & torch.isfinite(x)))


@op("CSZScore", ("expr",), "cs")
def _cszscore(x: Tensor, universe: Tensor) -> Tensor:
    """Cross-sectional z-score (x - mean) / std (ddof=1) among the day's universe; NaN if std is 0."""
    m = universe & torch.isfinite(x)
    x64 = torch.where(m, x.double(), torch.zeros((), dtype=torch.float64))
    n = m.sum(1, keepdim=True).double()
    mean = x64.sum(1, keepdim=True) / n
    dev = torch.where(m, x64 - mean, torch.zeros((), dtype=torch.float64))
    std = torch.sqrt((dev * dev).sum(1, keepdim=True) / (n - 1))
    z = dev / std
    return _out(torch.where(m & (std > 0), z, torch.full((), NAN, dtype=torch.float64)))
