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

Speed notes (CPU, one thread): time-series kernels work stock-major ((S, D), each stock's days contiguous,
in cache-sized chunks of stocks), where ``torch.cumsum`` over the last dim is ~20x faster than over dim 0
of (D, S). Window statistics that need a second pass (Skew, Kurt, Mad, EMA, Rank) sum lag by lag over
contiguous days (w vectorised passes; no FFT or matmul over the time axis, so every output stays a
function of past values only, bit for bit). Max/Min/IdxMax/IdxMin use O(log w) doubling steps. In this
torch CPU build ``torch.where``/``torch.fmax`` are several times slower than arithmetic, so hot paths use
``torch.maximum`` on +-inf-filled values and multiply by 1/NaN masks (see :func:`_minp`).
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
_CHUNK_DAYS_X_STOCKS = 1 << 17  # elements per stock chunk of per-stock kernels: float64 temporaries stay in
# cache, and small panels run in one chunk (fewer Python-level calls)


def _rows(d: int) -> int:
    """Stocks per chunk for a panel of ``d`` days."""
    return max(1, _CHUNK_DAYS_X_STOCKS // max(1, d))
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


def _cumsum(x: Tensor) -> Tensor:
    """Cumulative sum along the last dim (days, stock-major layout): torch's contiguous inner-dim scan
    is ~20x faster than a scan over dim 0 of a (D, S) tensor, and each output is a sum of past values
    only, in an order that depends on the length alone (so strictly causal to the last bit)."""
    return torch.cumsum(x, -1)


def _wsum(c: Tensor, w: int, sign: float = -1.0) -> Tensor:
    """Window sums from a cumulative sum ``c`` along the last dim: ``out[t] = c[t] - c[t-w]``
    (``sign=+1``: ``c[t] + c[t-w]``)."""
    if w >= c.shape[-1]:
        return c.clone()
    out = torch.empty_like(c)
    out[..., :w] = c[..., :w]
    torch.add(c[..., w:], c[..., :-w], alpha=sign, out=out[..., w:])
    return out


def _offset(x: Tensor, fin: Tensor | None = None) -> Tensor:
    """Per-stock first finite value (s, 1) of a stock-major (s, D) tensor (0 if none): a past value,
    so subtracting it is leak-free."""
    fin = torch.isfinite(x) if fin is None else fin
    first = fin.to(torch.uint8).argmax(dim=-1, keepdim=True)
    c = x.gather(-1, first)
    return torch.where(torch.isfinite(c), c, torch.zeros_like(c))


def _sm(x: Tensor) -> Tensor:
    """(D, S) -> stock-major (S, D) contiguous (each stock's days contiguous)."""
    return x.T.contiguous()


class RunningSums:
    """Cumulative sums of one input shared by every window length, stock-major (S, D): present-value
    counts (float32, exact), and float64 sums of ``x - offset`` and its square (offset = the stock's
    first finite value: a past value, so leak-free, and it keeps the sums small relative to the spread).
    The evaluator caches one per subexpression, so ``Mean(x, 5)``, ``Std(x, 20)``, ... share them.
    ``x`` is (D, S) unless ``stock_major``; :meth:`cols` gives a view of some stocks."""

    def __init__(self, x: Tensor | None, mask: Tensor | None = None, stock_major: bool = False,
                 counts: bool = True):
        self._c2: Tensor | None = None
        self.cn: Tensor | None = None
        if x is None:
            return
        xt = x if stock_major else _sm(x)
        mt = mask if (mask is None or stock_major) else _sm(mask)
        s, d = xt.shape
        self.off = torch.empty((s, 1), dtype=torch.float64)
        self.xc = torch.empty((s, d), dtype=torch.float64)
        if counts:
            self.cn = torch.empty((s, d), dtype=torch.float32)
        self.c1 = torch.empty((s, d), dtype=torch.float64)
        step = _rows(d)
        for j in range(0, s, step):
            sl = slice(j, j + step)
            xj = xt[sl]
            m = ~torch.isnan(xj) if mt is None else mt[sl]  # inputs hold no +-inf (see module doc)
            x64 = xj.double()
            off = _offset(x64, m)
            self.off[sl] = off
            xc = self.xc[sl]
            torch.sub(x64, off, out=xc)
            if mt is None:
                xc.nan_to_num_(0.0)  # missing = NaN here (no +-inf); much faster than torch.where
            else:
                xc.masked_fill_(~m, 0.0)
            if self.cn is not None:
                torch.cumsum(m.to(torch.float32), -1, out=self.cn[sl])
            torch.cumsum(xc, -1, out=self.c1[sl])

    @property
    def c2(self) -> Tensor:
        if self._c2 is None:
            c2 = torch.empty_like(self.c1)
            step = _rows(c2.shape[1])
            for j in range(0, c2.shape[0], step):
                xc = self.xc[j:j + step]
                torch.cumsum(xc * xc, -1, out=c2[j:j + step])
            self._c2 = c2
            self.xc = None  # type: ignore[assignment]  # not needed once c2 exists; halves the cached size
        return self._c2

    def cols(self, sl: slice) -> RunningSums:
        """A view of the stocks in ``sl`` (no copy)."""
        v = RunningSums(None)
        v.off, v.c1 = self.off[sl], self.c1[sl]
        v.cn = None if self.cn is None else self.cn[sl]
        v.xc = None if self.xc is None else self.xc[sl]  # type: ignore[assignment]
        v._c2 = None if self._c2 is None else self._c2[sl]
        return v

    @property
    def nbytes(self) -> int:
        ts = [t for t in (self.off, self.xc, self.cn, self.c1, self._c2) if t is not None]
        return sum(t.element_size() * t.nelement() for t in ts)


def _sums_chunks(needs_c2: bool = False) -> Callable:
    """Run a RunningSums kernel ``fn(w, pre) -> (s, D)`` on chunks of stocks (cache-sized temporaries);
    the wrapper takes and returns (D, S)."""
    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(x: Tensor, w: int, pre: RunningSums | None = None) -> Tensor:
            if pre is None:
                pre = RunningSums(x)
            if needs_c2:
                pre.c2  # noqa: B018  # build it once, chunk-wise, before taking views
            s = x.shape[1]
            out = torch.empty((s, x.shape[0]), dtype=torch.float32)
            step = _rows(x.shape[0])
            for j in range(0, s, step):
                sl = slice(j, j + step)
                out[sl] = fn(w, pre.cols(sl))
            return out.T.contiguous()

        return run

    return deco


class _Moments:
    """Window count, sum and central sum of squares from :class:`RunningSums` (stock-major (s, D))."""

    def __init__(self, x: Tensor | None, w: int, mask: Tensor | None = None, n: Tensor | None = None,
                 pre: RunningSums | None = None):
        self.pre = pre if pre is not None else RunningSums(x, mask, stock_major=True, counts=n is None)
        self.off, self.xc = self.pre.off, self.pre.xc
        self.n = _wsum(self.pre.cn, w).double() if n is None else n  # type: ignore[arg-type]
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
        # m2 where m2 > bound, else 0 (NaN stays NaN), by arithmetic (faster than torch.where):
        # keep = clamp(sign(m2 - bound), 0) is 1 or 0 (torch.sign(NaN) = 0), and + 0.0 turns -0.0 into 0.0
        keep = torch.sign(m2 - bound).clamp_(min=0.0)
        return m2.mul_(keep).add_(0.0)

    def var(self, ddof: int = 1) -> Tensor:
        return self.m2() / (self.n - ddof)


def _minp(x: Tensor, n: Tensor, need: int) -> Tensor:
    """``x`` where at least ``need`` values are present (``n``, integer-valued floats), else NaN.
    Arithmetic instead of ``torch.where`` (about 10x slower than a multiply in this CPU build):
    ``k = clamp(n - need + 1, 0, 1)`` is 1 or 0, ``k / k`` is 1 or NaN, and ``x * 1`` is ``x`` exactly."""
    if not n.is_floating_point():
        n = n.to(torch.float32)
    k = (n - (need - 1)).clamp_(0.0, 1.0)
    k.div_(k)
    return torch.mul(x, k).to(x.dtype)


def _out(x: Tensor) -> Tensor:
    return x.to(torch.float32)


def _rolling_fmax(x: Tensor, w: int, fn: Callable, dim: int = 0) -> Tensor:
    """Sliding max/min along ``dim`` skipping NaN in O(D*S*log w): doubling windows, then two
    overlapping halves."""
    def step(cur: Tensor, k: int) -> Tensor:
        n = cur.shape[dim]
        if k >= n:
            return cur
        out = torch.empty_like(cur)
        out.narrow(dim, 0, k).copy_(cur.narrow(dim, 0, k))
        fn(cur.narrow(dim, k, n - k), cur.narrow(dim, 0, n - k), out=out.narrow(dim, k, n - k))
        return out

    cur, size = x, 1
    while size * 2 <= w:
        cur = step(cur, size)
        size *= 2
    if size < w:
        cur = step(cur, w - size)
    return cur


def _count_sm(xt: Tensor, w: int, fin: Tensor | None = None) -> Tensor:
    """Present values per window of a stock-major (s, D) tensor (float32: exact below 2**24 days)."""
    fin = torch.isfinite(xt) if fin is None else fin
    return _wsum(_cumsum(fin.to(torch.float32)), w)


def _stock_chunks(fn: Callable) -> Callable:
    """Run a per-stock kernel ``fn(*xs, w)`` on stock-major (s, D) chunks of stocks so its float64
    temporaries stay in cache; the wrapper takes and returns (D, S) (stocks are independent)."""
    @functools.wraps(fn)
    def run(*args: Any) -> Tensor:
        *xs, w = args
        xs = [_sm(x) for x in xs]
        s = xs[0].shape[0]
        step = _rows(xs[0].shape[1])
        if s <= step:
            return fn(*xs, w).T.contiguous()
        out = torch.empty(xs[0].shape, dtype=torch.float32)
        for j in range(0, s, step):
            out[j:j + step] = fn(*[x[j:j + step] for x in xs], w)
        return out.T.contiguous()

    return run


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
def _mean(w: int, pre: RunningSums) -> Tensor:
    """Rolling mean of the present values."""
    m = _Moments(None, w, pre=pre)
    return _out(_minp(m.mean(), m.n, OPS["Mean"].min_periods(w)))


@op("Sum", ("expr", "window"), "ts", prefix=True)
@_sums_chunks(needs_c2=False)
def _sum(w: int, pre: RunningSums) -> Tensor:
    """Rolling sum of the present values."""
    m = _Moments(None, w, pre=pre)
    return _out(_minp(m.s1 + m.off * m.n, m.n, OPS["Sum"].min_periods(w)))


@op("Std", ("expr", "window"), "ts", prefix=True, min_window=2)
@_sums_chunks(needs_c2=True)
def _std(w: int, pre: RunningSums) -> Tensor:
    """Rolling standard deviation (ddof=1)."""
    m = _Moments(None, w, pre=pre)
    return _out(_minp(torch.sqrt(m.var()), m.n, OPS["Std"].min_periods(w)))


@op("Var", ("expr", "window"), "ts", prefix=True, min_window=2)
@_sums_chunks(needs_c2=True)
def _var(w: int, pre: RunningSums) -> Tensor:
    """Rolling variance (ddof=1)."""
    m = _Moments(None, w, pre=pre)
    return _out(_minp(m.var(), m.n, OPS["Var"].min_periods(w)))


@op("Max", ("expr", "window"), "ts")
@_stock_chunks
def _max(x: Tensor, w: int) -> Tensor:
    """Rolling max of the present values."""
    v = torch.nan_to_num(x, nan=-math.inf)  # torch.maximum is vectorised, torch.fmax is not (~5x slower)
    return _minp(_rolling_fmax(v, w, torch.maximum, dim=-1), _count_sm(x, w), OPS["Max"].min_periods(w))


@op("Min", ("expr", "window"), "ts")
@_stock_chunks
def _min(x: Tensor, w: int) -> Tensor:
    """Rolling min of the present values."""
    v = torch.nan_to_num(x, nan=math.inf)
    return _minp(_rolling_fmax(v, w, torch.minimum, dim=-1), _count_sm(x, w), OPS["Min"].min_periods(w))


_NETWORK_MAX_W = 10  # Med: up to this window a sorting network beats numpy's per-window sort


@functools.cache
def _batcher_pairs(n: int) -> tuple[tuple[int, int], ...]:
    """Comparators (a, b), a < b, of Batcher's odd-even merge sort for ``n`` inputs (padded to a power of
    two with +inf; comparators touching the padding never move anything and are dropped)."""
    size = 1 << max(0, (n - 1).bit_length())
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return tuple(pairs)


@_stock_chunks
def _med_network(x: Tensor, w: int) -> Tensor:
    """Small-window median on stock-major chunks: the w lagged copies of each window sorted by a min/max
    network (vectorised over all days), missing values as +inf (sorted last, like NaN in np.sort)."""
    s, d = x.shape
    v = torch.nan_to_num(x, nan=math.inf)
    pad = torch.cat([torch.full((s, w - 1), math.inf, dtype=v.dtype), v], 1)
    cols = [pad[:, k:k + d] for k in range(w)]  # window element k (0 = oldest) for every day
    for a, b in _batcher_pairs(w):
        cols[a], cols[b] = torch.minimum(cols[a], cols[b]), torch.maximum(cols[a], cols[b])
    srt = torch.stack(cols, -1)  # (s, D, w) sorted
    n = _count_sm(x, w)
    ni = n.to(torch.int64)
    lo = srt.gather(-1, ((ni - 1).clamp(min=0) // 2).unsqueeze(-1)).squeeze(-1)
    hi = srt.gather(-1, (ni // 2).clamp(max=w - 1).unsqueeze(-1)).squeeze(-1)
    return _minp((lo + hi) / 2, n, OPS["Med"].min_periods(w))


@op("Med", ("expr", "window"), "ts")
def _med(x: Tensor, w: int) -> Tensor:
    """Rolling median of the present values (mean of the two middle values for an even count)."""
    if w <= _NETWORK_MAX_W:
        return _med_network(x, w)
    xt = _sm(x)
    s, d = xt.shape
    n = _count_sm(xt, w)  # (S, D), from one cumulative sum instead of a count per window
    pad = torch.cat([torch.full((s, w - 1), NAN, dtype=xt.dtype), xt], 1) if w > 1 else xt
    ni = n.to(torch.int64)
    lo_i, hi_i = ((ni - 1).clamp(min=0) // 2).unsqueeze(-1), (ni // 2).clamp(max=w - 1).unsqueeze(-1)
    out = torch.empty((s, d), dtype=torch.float32)
    step = max(1, _CHUNK_ELEMS // max(1, d * w))
    buf = np.empty((min(step, s), d, w), dtype=np.float32)  # reused: fresh big buffers cost page faults
    for j in range(0, s, step):
        win = pad[j:j + step].unfold(1, w, 1).numpy()  # (s, D, w), oldest first
        b = buf[:win.shape[0]]
        np.copyto(b, win)
        b.sort(axis=-1)  # in place; NaN sorts last; numpy's sort is SIMD
        srt = torch.from_numpy(b)
        lo = srt.gather(-1, lo_i[j:j + step]).squeeze(-1)
        hi = srt.gather(-1, hi_i[j:j + step]).squeeze(-1)
        torch.add(lo, hi, out=out[j:j + step]).div_(2)
    return _minp(out, n, OPS["Med"].min_periods(w)).T.contiguous()


def _window_count_mean(x: Tensor, w: int) -> tuple[Tensor, Tensor]:
    """Per-window observation count and mean (float64) from running sums; x: (S, D) stock-major."""
    pre = RunningSums(x, stock_major=True)
    n = _wsum(pre.cn, w).double()  # type: ignore[arg-type]
    return n, _wsum(pre.c1, w) / n + pre.off


@op("Mad", ("expr", "window"), "ts")
@_stock_chunks
def _mad(x: Tensor, w: int) -> Tensor:
    """Rolling mean absolute deviation around the window mean (Qlib's Mad)."""
    # two-pass: the window mean from running sums, then |value - mean| summed lag by lag (float64)
    s, d = x.shape
    n, mean = _window_count_mean(x, w)
    x64 = x.double()
    acc = torch.zeros((s, d), dtype=torch.float64)
    dev = torch.empty_like(acc)
    for k in range(min(w, d)):
        ln = d - k
        dv = dev[:, :ln]
        torch.sub(x64[:, :ln], mean[:, k:], out=dv)  # the value k days before t minus the mean at t
        dv.abs_().nan_to_num_(0.0)
        acc[:, k:] += dv
    return _out(_minp(acc / n, n, OPS["Mad"].min_periods(w)))


@op("WMA", ("expr", "window"), "ts")
@_stock_chunks
def _wma(x: Tensor, w: int) -> Tensor:
    """Linearly weighted mean: weight 1 on the oldest day of the window .. w on today; the weights
    of the present values are renormalised."""
    d = x.shape[-1]
    m = torch.isfinite(x)
    x64 = x.double()
    x64 = torch.where(m, x64 - _offset(x64), torch.zeros((), dtype=torch.float64))
    t = torch.arange(d, dtype=torch.float64).unsqueeze(0)
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
    m = torch.isfinite(x)
    x64 = x.double()
    off = _offset(x64)
    xc = torch.where(m, x64 - off, torch.zeros((), dtype=torch.float64))
    mf = m.double()
    s, d = x.shape
    num = torch.zeros((s, d), dtype=torch.float64)
    den = torch.zeros_like(num)
    for k in range(min(w, d)):  # lag by lag on contiguous days (a direct sum: no recursion, so causal)
        num[:, k:].add_(xc[:, :d - k], alpha=a ** k)
        den[:, k:].add_(mf[:, :d - k], alpha=a ** k)
    n = _count_sm(x, w)
    return _out(_minp(num / den + off, n, OPS["EMA"].min_periods(w)))


def _lag_moments(x: Tensor, w: int, fourth: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Stock-major (s, D) -> n, m2, m3, m4 (central sums of the window's present values, float64;
    m4 is None unless ``fourth``) and a "window is constant" flag. Two-pass: the window mean from running
    sums, then the deviations summed lag by lag (w passes over contiguous days; power sums would
    cancel catastrophically for the 3rd and 4th moments). The mean is not bit-exact, so constant windows
    are found exactly as rolling max == rolling min."""
    s, d = x.shape
    n, mean = _window_count_mean(x, w)
    x64 = x.double()
    m2 = torch.zeros((s, d), dtype=torch.float64)
    m3 = torch.zeros_like(m2)
    m4 = torch.zeros_like(m2) if fourth else None
    dev = torch.empty_like(m2)
    d2 = torch.empty_like(m2)
    for k in range(min(w, d)):
        ln = d - k
        dv, q = dev[:, :ln], d2[:, :ln]
        torch.sub(x64[:, :ln], mean[:, k:], out=dv)  # the value k days before t minus the mean at t
        dv.nan_to_num_(0.0)
        torch.mul(dv, dv, out=q)
        m2[:, k:] += q
        m3[:, k:].addcmul_(q, dv)
        if m4 is not None:
            m4[:, k:].addcmul_(q, q)
    hi = _rolling_fmax(torch.nan_to_num(x, nan=-math.inf), w, torch.maximum, dim=-1)
    const = hi == _rolling_fmax(torch.nan_to_num(x, nan=math.inf), w, torch.minimum, dim=-1)
    return n, m2, m3, m4, const  # type: ignore[return-value]


@op("Skew", ("expr", "window"), "ts", min_window=3)
@_stock_chunks
def _skew(x: Tensor, w: int) -> Tensor:
    """Rolling sample skewness (pandas' adjusted Fisher-Pearson G1); NaN for a constant window."""
    n, m2, m3, _, const = _lag_moments(x, w, fourth=False)
    v = m2 / n
    g = torch.sqrt(n * (n - 1)) / (n - 2) * (m3 / n) / (v * torch.sqrt(v))
    g = torch.where((m2 > 0) & ~const, g, torch.full_like(g, NAN))
    return _out(_minp(g, n, OPS["Skew"].min_periods(w)))


@op("Kurt", ("expr", "window"), "ts", min_window=4)
@_stock_chunks
def _kurt(x: Tensor, w: int) -> Tensor:
    """Rolling sample excess kurtosis (pandas' bias-corrected G2); NaN for a constant window."""
    n, m2, _, m4, const = _lag_moments(x, w, fourth=True)
    g = (n * (n + 1) * (n - 1) * m4 / (m2 * m2) - 3 * (n - 1) ** 2) / ((n - 2) * (n - 3))
    g = torch.where((m2 > 0) & ~const, g, torch.full_like(g, NAN))
    return _out(_minp(g, n, OPS["Kurt"].min_periods(w)))


@op("Rank", ("expr", "window"), "ts")
@_stock_chunks
def _rank(x: Tensor, w: int) -> Tensor:
    """Percentile rank of today's value among the window's present values, in (0, 1]
    (ties averaged, as pandas ``rolling(w).rank(pct=True)``); NaN if today's value is missing."""
    # rank = less + (equal + 1) / 2 = (n + less - greater + 1) / 2, and less - greater is the sum over the
    # window of sign(today - value); torch.sign maps NaN (missing values) to 0, so they drop out. Summed
    # lag by lag on contiguous days (integers: exact in float32).
    d = x.shape[-1]
    balance = torch.zeros_like(x)
    tmp = torch.empty_like(x)
    for k in range(1, min(w, d)):
        t = tmp[:, k:]
        torch.sub(x[:, k:], x[:, :-k], out=t)
        t.sign_()
        balance[:, k:] += t
    n = _count_sm(x, w)
    r = (n + balance + 1) / 2 / n
    r = torch.where(torch.isnan(x), torch.full_like(r, NAN), r)
    return _out(_minp(r, n, OPS["Rank"].min_periods(w)))


def _idx(x: Tensor, w: int, largest: bool, name: str) -> Tensor:
    """Rolling arg-max/min of a stock-major (s, D) chunk in O(D*s*log w) (doubling windows as
    :func:`_rolling_fmax`, carrying the day of the extreme; on ties the older window wins, so the first
    occurrence is kept, as ``argmax``)."""
    need = OPS[name].min_periods(w)
    d = x.shape[-1]
    val = torch.nan_to_num(x, nan=-math.inf if largest else math.inf)
    day = torch.arange(d, dtype=torch.float32).unsqueeze(0).expand(x.shape).contiguous()
    better = torch.ge if largest else torch.le
    ext = torch.maximum if largest else torch.minimum

    def step(val: Tensor, day: Tensor, k: int) -> tuple[Tensor, Tensor]:
        if k >= d:
            return val, day
        old = better(val[:, :-k], val[:, k:]).to(torch.float32)  # the earlier window's extreme is as good
        nv, nd = val.clone(), day.clone()
        ext(val[:, :-k], val[:, k:], out=nv[:, k:])
        # day = new + old * (earlier - new): exact on integer-valued floats, and much faster than where
        torch.sub(day[:, :-k], day[:, k:], out=nd[:, k:])
        nd[:, k:].mul_(old).add_(day[:, k:])
        return nv, nd

    size = 1
    while size * 2 <= w:
        val, day = step(val, day, size)
        size *= 2
    if size < w:
        val, day = step(val, day, w - size)
    t = torch.arange(d, dtype=torch.float32).unsqueeze(0)
    pos = day - t + w  # 1-based position in the nominal window ending t
    return _minp(pos, _count_sm(x, w), need)


@op("IdxMax", ("expr", "window"), "ts")
@_stock_chunks
def _idxmax(x: Tensor, w: int) -> Tensor:
    """1-based position of the window max, 1 = oldest day of the window, w = today (first on ties)."""
    return _idx(x, w, True, "IdxMax")


@op("IdxMin", ("expr", "window"), "ts")
@_stock_chunks
def _idxmin(x: Tensor, w: int) -> Tensor:
    """1-based position of the window min, 1 = oldest day of the window, w = today (first on ties)."""
    return _idx(x, w, False, "IdxMin")


@op("Slope", ("expr", "window"), "ts", min_window=2)
@_stock_chunks
def _slope(x: Tensor, w: int) -> Tensor:
    """Least-squares slope of x on the day index over the window's present values (per day)."""
    m = torch.isfinite(x)
    t = torch.arange(x.shape[-1], dtype=torch.float64).unsqueeze(0).expand(x.shape)
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


_CS_ROWS = 256  # days per block in cs_rank


def cs_rank(x: Tensor, mask: Tensor) -> Tensor:
    """Per-day percentile rank in (0, 1] among ``mask`` (ties averaged, like pandas'
    ``rank(pct=True)``) of the float32 values; NaN outside ``mask``. (D, S) -> (D, S) float64.

    One SIMD sort of packed ``(order key << 32) | column`` uint64 words gives every row's order and
    its column indices at once; tie groups are found with running max/min along the sorted rows.
    Days are independent and done in blocks, so the temporaries stay small (fresh memory costs page
    faults, which on a shared VM cost more than the sort)."""
    d = x.shape[0]
    if d > _CS_ROWS:
        out = torch.empty(x.shape, dtype=torch.float64)
        for j in range(0, d, _CS_ROWS):
            out[j:j + _CS_ROWS] = cs_rank(x[j:j + _CS_ROWS], mask[j:j + _CS_ROWS])
        return out
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
    if x.shape[0] > _CS_ROWS:  # days are independent: blocks keep the temporaries small (as cs_rank)
        out = torch.empty(x.shape, dtype=torch.float32)
        for j in range(0, x.shape[0], _CS_ROWS):
            out[j:j + _CS_ROWS] = _cszscore(x[j:j + _CS_ROWS], universe[j:j + _CS_ROWS])
        return out
    m = universe & torch.isfinite(x)
    x64 = torch.where(m, x.double(), torch.zeros((), dtype=torch.float64))
    n = m.sum(1, keepdim=True).double()
    mean = x64.sum(1, keepdim=True) / n
    dev = torch.where(m, x64 - mean, torch.zeros((), dtype=torch.float64))
    std = torch.sqrt((dev * dev).sum(1, keepdim=True) / (n - 1))
    z = dev / std
    return _out(torch.where(m & (std > 0), z, torch.full((), NAN, dtype=torch.float64)))
