"""An independent, straightforward pandas implementation of the expression operators.

Used two ways: as the correctness reference in tests (every operator vs :mod:`factors.ops`), and as the
baseline in ``bench/bench_eval.py``. It shares nothing with the torch kernels except the parsed tree and
the documented semantics (window NaN skipping with ``min_periods = max(op minimum, ceil(w / 2))``, ddof=1,
IdxMax positions in the nominal window, inf -> NaN, NaN outside ``valid``, cross-sections over the
universe). Data is long format: a Series indexed by (ticker, date), sorted, one row per panel cell.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from factors.expr import Expr, Node

MIN_OBS = {"Std": 2, "Var": 2, "Corr": 2, "Cov": 2, "Slope": 2, "Skew": 3, "Kurt": 4}


def minp(name: str, w: int) -> int:
    return max(MIN_OBS.get(name, 1), math.ceil(w / 2))


def panel_frame(panel) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """(features frame, valid, universe), each indexed by (ticker, date)."""
    d, s, f = panel.values.shape
    idx = pd.MultiIndex.from_product([list(panel.tickers), pd.to_datetime(panel.dates)], names=["ticker", "date"])
    vals = panel.values.numpy().transpose(1, 0, 2).reshape(s * d, f).astype(np.float64)
    df = pd.DataFrame(vals, index=idx, columns=[f"${c}" for c in panel.fields])
    valid = pd.Series(panel.valid.numpy().T.reshape(-1), index=idx)
    uni = pd.Series((panel.in_universe & panel.valid).numpy().T.reshape(-1), index=idx)
    return df.where(valid, np.nan), valid, uni


def to_dense(s: pd.Series, panel) -> np.ndarray:
    """(D, S) array in the panel's order."""
    d, n = len(panel.dates), len(panel.tickers)
    return s.to_numpy(dtype=np.float64).reshape(n, d).T


def _roll(s: pd.Series, w: int, name: str):
    return s.groupby(level="ticker", sort=False).rolling(w, min_periods=minp(name, w))


def _flat(r: pd.Series, like: pd.Series) -> pd.Series:
    return r.droplevel(0).reindex(like.index)


def _apply(s: pd.Series, w: int, name: str, fn) -> pd.Series:
    return _flat(_roll(s, w, name).apply(fn, raw=True), s)


def _wma(w: int):
    def f(a: np.ndarray) -> float:
        wts = np.arange(w - len(a) + 1, w + 1, dtype=np.float64)
        v = ~np.isnan(a)
        return float(np.sum(wts[v] * a[v]) / np.sum(wts[v]))
    return f


def _ema(w: int):
    alpha = 1 - 2 / (w + 1)

    def f(a: np.ndarray) -> float:
        wts = alpha ** np.arange(len(a) - 1, -1, -1, dtype=np.float64)
        v = ~np.isnan(a)
        return float(np.sum(wts[v] * a[v]) / np.sum(wts[v]))
    return f


def _slope(w: int):
    def f(a: np.ndarray) -> float:
        pos = np.arange(w - len(a), w, dtype=np.float64)
        v = ~np.isnan(a)
        return float(np.polyfit(pos[v], a[v], 1)[0])
    return f


def _pair(x: pd.Series, y: pd.Series, w: int, name: str) -> pd.Series:
    out = []
    for t in x.index.get_level_values("ticker").unique():
        xs, ys = x.xs(t, level="ticker", drop_level=False), y.xs(t, level="ticker", drop_level=False)
        both = xs.notna() & ys.notna()
        xs, ys = xs.where(both), ys.where(both)
        r = xs.rolling(w, min_periods=minp(name, w))
        out.append(r.corr(ys) if name == "Corr" else r.cov(ys))
    return pd.concat(out).reindex(x.index)


def evaluate(node: Node | Expr, df: pd.DataFrame, valid: pd.Series, uni: pd.Series) -> pd.Series:
    """Evaluate a parsed tree with pandas; returns a float64 Series indexed like ``df``."""
    if isinstance(node, Expr):
        node = node.root
    if node.kind == "feature":
        return df[node.token].astype(np.float32).astype(np.float64)
    name = node.token
    kids = node.children

    def ev(k: Node):
        return k.value if k.kind == "const" else evaluate(k, df, valid, uni)

    if name in ("Abs", "Log", "Sign"):
        x = ev(kids[0])
        with np.errstate(all="ignore"):
            out = {"Abs": np.abs, "Log": np.log, "Sign": np.sign}[name](x)
    elif name in ("Add", "Sub", "Mul", "Div", "Pow", "Greater", "Less"):
        a, b = ev(kids[0]), ev(kids[1])
        with np.errstate(all="ignore"):
            if name == "Add":
                out = a + b
            elif name == "Sub":
                out = a - b
            elif name == "Mul":
                out = a * b
            elif name == "Div":
                out = a / b
            elif name == "Pow":
                out = (a ** b).where(a.notna())  # NaN ** 0 is NaN: element-wise ops propagate NaN
            else:
                aa = a if isinstance(a, pd.Series) else pd.Series(a, index=b.index)
                bb = b if isinstance(b, pd.Series) else pd.Series(b, index=a.index)
                pick = aa.gt(bb) if name == "Greater" else aa.lt(bb)
                out = aa.where(pick, bb).where(aa.notna() & bb.notna())
    elif name in ("Corr", "Cov"):
        out = _pair(ev(kids[0]), ev(kids[1]), int(kids[2].value), name)
    elif name in ("CSRank", "CSZScore"):
        x = ev(kids[0]).where(uni)
        g = x.groupby(level="date")
        out = g.rank(pct=True) if name == "CSRank" else (x - g.transform("mean")) / g.transform("std")
    else:
        x, w = ev(kids[0]), int(kids[1].value)
        g = x.groupby(level="ticker", sort=False)
        if name == "Ref":
            out = g.shift(w)
        elif name == "Delta":
            out = x - g.shift(w)
        elif name in ("Mean", "Sum", "Std", "Var", "Max", "Min", "Skew", "Kurt"):
            r = _roll(x, w, name)
            out = _flat(getattr(r, {"Med": "median"}.get(name, name.lower()))(), x)
        elif name == "Med":
            out = _flat(_roll(x, w, name).median(), x)
        elif name == "Rank":
            out = _flat(_roll(x, w, name).rank(pct=True), x).where(x.notna())
        elif name == "Mad":
            out = _apply(x, w, name, lambda a: float(np.nanmean(np.abs(a - np.nanmean(a)))))
        elif name == "IdxMax":
            out = _apply(x, w, name, lambda a: float(np.nanargmax(a) + 1 + (w - len(a))))
        elif name == "IdxMin":
            out = _apply(x, w, name, lambda a: float(np.nanargmin(a) + 1 + (w - len(a))))
        elif name == "WMA":
            out = _apply(x, w, name, _wma(w))
        elif name == "EMA":
            out = _apply(x, w, name, _ema(w))
        elif name == "Slope":
            out = _apply(x, w, name, _slope(w))
        else:
            raise NotImplementedError(name)
    if not isinstance(out, pd.Series):
        raise TypeError(f"{name} produced a constant")
    # The evaluator stores every node in float32: round the same way so that ties and cancellation match.
    out = out.astype(np.float32).astype(np.float64).replace([np.inf, -np.inf], np.nan)
    return out.where(valid)
