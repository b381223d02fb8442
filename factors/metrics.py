"""Factor metrics over (D, S) tensors: daily IC / RankIC, their summary statistics, IC decay, quantile
returns and turnover. All statistics are computed per day over ``mask & finite(x) & finite(y)``
(``mask`` is normally ``panel.in_universe``) in float64; a day with fewer than ``min_names`` names is NaN
and is left out of the means.

Note on t-statistics: with an h-day forward-return target consecutive daily ICs overlap, so the naive
``t_stat = mean / std * sqrt(n)`` overstates significance; ``t_stat_nw`` uses Newey-West standard errors
with ``h - 1`` lags and is the one to trust.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from factors.ops import cs_rank

MIN_NAMES = 10
NAN = float("nan")


def _joint(x: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
    m = torch.isfinite(x) & torch.isfinite(y)
    return m if mask is None else m & mask


def _pearson_rows(x: Tensor, y: Tensor, m: Tensor, min_names: int) -> Tensor:
    """Per-row Pearson correlation over ``m`` (float64 inside). (D,)."""
    zero = torch.zeros((), dtype=torch.float64)
    n = m.sum(1).double()
    xd = torch.where(m, x.double(), zero)
    yd = torch.where(m, y.double(), zero)
    xd = torch.where(m, xd - xd.sum(1, keepdim=True) / n.clamp(min=1).unsqueeze(1), zero)
    yd = torch.where(m, yd - yd.sum(1, keepdim=True) / n.clamp(min=1).unsqueeze(1), zero)
    sxy = (xd * yd).sum(1)
    sxx = (xd * xd).sum(1)
    syy = (yd * yd).sum(1)
    r = sxy / torch.sqrt(sxx * syy)
    ok = (n >= min_names) & (sxx > 0) & (syy > 0)
    return torch.where(ok, r, torch.full_like(r, NAN))


def ic_series(x: Tensor, y: Tensor, mask: Tensor | None = None, min_names: int = MIN_NAMES) -> Tensor:
    """Daily cross-sectional Pearson IC between factor ``x`` and target ``y`` (D, S) -> (D,) float64."""
    return _pearson_rows(x, y, _joint(x, y, mask), min_names)


def rank_ic_series(x: Tensor, y: Tensor, mask: Tensor | None = None, min_names: int = MIN_NAMES) -> Tensor:
    """Daily Spearman IC: Pearson of average ranks over the joint mask. (D, S) -> (D,) float64."""
    m = _joint(x, y, mask)
    return _pearson_rows(cs_rank(x, m), cs_rank(y, m), m, min_names)


def newey_west_t(s: Tensor, lags: int) -> float:
    """t-statistic of the mean of ``s`` (NaN dropped) with Newey-West (Bartlett) standard errors."""
    v = s[torch.isfinite(s)].double()
    n = v.numel()
    if n < 3:
        return NAN
    d = v - v.mean()
    var = (d * d).sum() / n
    for k in range(1, min(lags, n - 1) + 1):
        var = var + 2 * (1 - k / (lags + 1)) * (d[k:] * d[:-k]).sum() / n
    if var <= 0:
        return NAN
    return float(v.mean() / torch.sqrt(var / n))


def summarize(s: Tensor, lags: int = 0) -> dict[str, float]:
    """mean, std, ir (mean/std), naive t-stat, Newey-West t-stat and day count of a daily series."""
    v = s[torch.isfinite(s)].double()
    n = v.numel()
    mean = float(v.mean()) if n else NAN
    std = float(v.std()) if n > 1 else NAN
    ir = mean / std if n > 1 and std > 0 else NAN
    return {"mean": mean, "std": std, "ir": ir, "t_stat": ir * math.sqrt(n) if n > 1 else NAN,
            "t_stat_nw": newey_west_t(s, lags) if lags > 0 else (ir * math.sqrt(n) if n > 1 else NAN),
            "n_days": n}


def quantile_labels(x: Tensor, mask: Tensor, q: int = 5) -> Tensor:
    """Per-day quantile bucket 0..q-1 (q-1 = highest factor) over ``mask & finite(x)``; -1 elsewhere."""
    m = mask & torch.isfinite(x)
    r = cs_rank(x, m)  # (0, 1]
    lab = torch.ceil(r * q).clamp(1, q) - 1
    return torch.where(m, lab, torch.full_like(lab, -1)).to(torch.int64)


def quantile_returns(x: Tensor, y: Tensor, mask: Tensor, q: int = 5, min_names: int = MIN_NAMES) -> list[float]:
    """Mean over days of each quantile's equal-weighted mean target (lowest factor first)."""
    m = _joint(x, y, mask)
    lab = quantile_labels(x, m, q)
    ok_day = m.sum(1) >= max(min_names, q)
    out = []
    yd = torch.where(m, y.double(), torch.zeros((), dtype=torch.float64))
    for k in range(q):
        sel = lab == k
        cnt = sel.sum(1)
        day = (yd * sel).sum(1) / cnt.clamp(min=1)
        good = ok_day & (cnt > 0)
        out.append(float(day[good].mean()) if bool(good.any()) else NAN)
    return out


def top_turnover(x: Tensor, mask: Tensor, q: int = 5, top: bool = True) -> float:
    """Average daily fraction of the top (or bottom) quantile's names that were not in it the day before."""
    lab = quantile_labels(x, mask, q)
    sel = lab == (q - 1 if top else 0)
    prev, cur = sel[:-1], sel[1:]
    cnt = cur.sum(1)
    new = (cur & ~prev).sum(1)
    ok = (cnt > 0) & (prev.sum(1) > 0)
    if not bool(ok.any()):
        return NAN
    return float((new[ok].double() / cnt[ok].double()).mean())


def ic_decay(x: Tensor, targets: dict[int, Tensor], mask: Tensor, rank: bool = True,
             min_names: int = MIN_NAMES) -> dict[int, float]:
    """Mean (Rank)IC of ``x`` against forward returns of several horizons ``{h: (D, S)}``."""
    f = rank_ic_series if rank else ic_series
    out = {}
    for h, y in sorted(targets.items()):
        s = f(x, y, mask, min_names)
        v = s[torch.isfinite(s)]
        out[h] = float(v.mean()) if v.numel() else NAN
    return out


def factor_report(x: Tensor, target: Tensor, mask: Tensor, fwd_1d: Tensor | None = None,
                  cost_bps: float = 10.0, quantiles: int = 5, horizon: int = 20, delay: int = 1,
                  periods_per_year: float = 252.0, days: Tensor | None = None,
                  min_names: int = MIN_NAMES, rebalance: int = 1) -> dict[str, Any]:
    """All single-factor metrics on days ``days`` (a (D,) bool selector; all days if None).

    x, target, mask, fwd_1d: (D, S). ``horizon`` sets the Newey-West lags (horizon - 1). With ``fwd_1d``
    (the 1-day forward return) a long-short top-minus-bottom quantile backtest with costs is included
    (see :func:`factors.backtest.long_short`), re-formed every ``rebalance`` days from the first selected day."""
    from factors.backtest import long_short

    if days is not None:
        x, target, mask = x[days], target[days], mask[days]
        fwd_1d = None if fwd_1d is None else fwd_1d[days]
    ic = ic_series(x, target, mask, min_names)
    ric = rank_ic_series(x, target, mask, min_names)
    lags = max(0, horizon - 1)
    si, sr = summarize(ic, lags), summarize(ric, lags)
    out: dict[str, Any] = {
        "ic": si["mean"], "ic_std": si["std"], "icir": si["ir"], "t_stat": si["t_stat"],
        "t_stat_nw": si["t_stat_nw"],
        "rank_ic": sr["mean"], "rank_ic_std": sr["std"], "rank_icir": sr["ir"], "rank_t_stat": sr["t_stat"],
        "rank_t_stat_nw": sr["t_stat_nw"], "n_days": si["n_days"],
        "coverage": float((torch.isfinite(x) & mask).sum() / mask.sum().clamp(min=1)),
        "quantile_returns": quantile_returns(x, target, mask, quantiles, min_names),
        "top_turnover": top_turnover(x, mask, quantiles, True),
        "bottom_turnover": top_turnover(x, mask, quantiles, False),
    }
    qr = out["quantile_returns"]
    out["top_minus_bottom"] = qr[-1] - qr[0] if qr else NAN
    if fwd_1d is not None:
        bt = long_short(x, fwd_1d, mask, quantiles=quantiles, cost_bps=cost_bps, delay=delay,
                        periods_per_year=periods_per_year, min_names=min_names, rebalance=rebalance)
        out["backtest"] = bt.summary()
    return out


def periods_per_year(dates: Sequence[object] | np.ndarray) -> float:
    """Trading days per calendar year of a panel's dates (252 for stocks, ~365 for crypto); 252 when the
    panel spans less than half a year. Annualises the backtest's return and Sharpe."""
    d = np.asarray(dates).astype("datetime64[D]")
    if len(d) < 2:
        return 252.0
    years = (d[-1] - d[0]).astype(int) / 365.25
    return float(round(len(d) / years)) if years > 0.5 else 252.0


def mean_ic(x: Tensor, y: Tensor, mask: Tensor | None = None, rank: bool = False) -> float:
    """Mean daily (Rank)IC: the scalar the miners optimise."""
    s = (rank_ic_series if rank else ic_series)(x, y, mask)
    v = s[torch.isfinite(s)]
    return float(v.mean()) if v.numel() else NAN


__all__: Sequence[str] = ["ic_series", "rank_ic_series", "summarize", "newey_west_t", "quantile_labels",
                          "quantile_returns", "top_turnover", "ic_decay", "factor_report", "mean_ic",
                          "periods_per_year"]


def rank_autocorrelation(x: Tensor, mask: Tensor, lag: int = 1, min_names: int = MIN_NAMES) -> Tensor:
    """Day t's cross-sectional Spearman correlation of ``x`` with its own values ``lag`` days before
    (alphalens' factor rank autocorrelation; NaN on the first ``lag`` days). (D, S) -> (D,) float64."""
    out = torch.full((x.shape[0],), NAN, dtype=torch.float64)
    if lag < 1 or x.shape[0] <= lag:
        return out
    out[lag:] = rank_ic_series(x[lag:], x[:-lag], mask[lag:] & mask[:-lag], min_names)
    return out


def quantile_turnover(x: Tensor, mask: Tensor, q: int = 5, lag: int = 1) -> Tensor:
    """Share of the names in quantile k on day t that were not in it ``lag`` days before (alphalens'
    quantile turnover). (D, S) -> (q, D) float64, NaN where undefined."""
    lab = quantile_labels(x, mask, q)
    out = torch.full((q, x.shape[0]), NAN, dtype=torch.float64)
    if lag < 1 or x.shape[0] <= lag:
        return out
    for k in range(q):
        cur, prev = lab[lag:] == k, lab[:-lag] == k
        cnt = cur.sum(1)
        new = (cur & ~prev).sum(1).double() / cnt.clamp(min=1).double()
        out[k, lag:] = torch.where((cnt > 0) & (prev.sum(1) > 0), new, torch.full_like(new, NAN))
    return out
