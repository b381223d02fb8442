"""Long-short top-minus-bottom quantile backtest with transaction costs.

Timing (no look-ahead): the factor value of day t uses data up to day t's close. With ``delay = 1``
(default) the portfolio formed from it is bought at the close of day t+1 and earns the return from close
t+1 to close t+2; ``delay = 0`` trades at day t's own close (optimistic, the usual IC convention).

Portfolio: equal weights +1/n_top on the top quantile and -1/n_bottom on the bottom quantile of
``mask & finite(x)`` names (gross exposure 2, dollar neutral). Costs: ``cost_bps`` per unit of traded
notional, ``sum |w_t - w_{t-1}|`` (entering from cash on the first day counts). A held name whose next-day
return is missing (no row) earns 0 that day. A rebalance day with fewer than ``min_names`` names holds
nothing (until the next rebalance).

Holding period (``rebalance = N``): the portfolio is re-formed on decision days 0, N, 2N, ... of the
series (its first day, then every N-th) from *that day's* factor values only, and held with constant
weights for the next N decision days; turnover, and so cost, arises only on rebalance days. ``N = 1`` is
daily rebalancing. Between rebalances the weights are kept at their targets without charge (the same
convention as the daily backtest, which also ignores intra-day drift); an h-day signal is naturally
traded with ``N = h``.

Summary figures (decided in stop 28): the book is dollar neutral and re-set to its targets every day, so
its daily returns are summed, not compounded (Qlib's ``risk_analysis`` default): ``ann_return`` is the
mean net daily return x ``periods_per_year``, ``cum_return`` their sum, ``max_drawdown`` the largest fall
of the summed returns below their running peak. Compounding a spread whose short leg can lose more than
the book in one day (a crypto microcap rising several-fold) wipes the wealth out (-100%) or inflates it
by orders of magnitude; the compounded figure is still reported as ``ann_return_compounded`` (-1.0 once
the compounded wealth reaches 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from factors.metrics import MIN_NAMES, quantile_labels

NAN = float("nan")


@dataclass
class BacktestResult:
    returns: Tensor  # (T,) float64 net daily returns (after costs), indexed by decision day
    gross: Tensor  # (T,) before costs
    turnover: Tensor  # (T,) sum |w_t - w_{t-1}| (0 between rebalances)
    periods_per_year: float
    cost_bps: float
    rebalance: int = 1

    def summary(self) -> dict[str, Any]:
        r = self.returns
        n = r.numel()
        sd = float(r.std()) if n > 1 else NAN
        sharpe = float(r.mean()) / sd * math.sqrt(self.periods_per_year) if n > 1 and sd > 0 else NAN
        return {"cum_return": float(r.sum()) if n else NAN, "ann_return": _ann(r, self.periods_per_year),
                "ann_vol": sd * math.sqrt(self.periods_per_year), "sharpe": sharpe,
                "max_drawdown": additive_drawdown(r.numpy()),
                "turnover": float(self.turnover.mean()) if n else NAN,
                "gross_ann_return": _ann(self.gross, self.periods_per_year),
                "ann_return_compounded": _ann_compounded(r, self.periods_per_year),
                "cost_bps": self.cost_bps, "rebalance": self.rebalance, "n_days": n}


def _ann(r: Tensor, ppy: float) -> float:
    """Mean daily return x periods per year (summed, not compounded: module doc)."""
    return float(r.mean()) * ppy if r.numel() else NAN


def _ann_compounded(r: Tensor, ppy: float) -> float:
    if r.numel() == 0:
        return NAN
    w = float(torch.prod(1 + r))
    return w ** (ppy / r.numel()) - 1 if w > 0 else -1.0


def drawdown_series(r: np.ndarray) -> np.ndarray:
    """(T,) -> (T,): each day's fall of the summed returns below their running peak, from 0 (Qlib's convention)."""
    c = np.concatenate([[0.0], np.cumsum(r)])
    return (c - np.maximum.accumulate(c))[1:]


def additive_drawdown(r: np.ndarray) -> float:
    """Largest fall of the summed returns (T,) below their running peak (:func:`drawdown_series`)."""
    return float(drawdown_series(r).min()) if len(r) else NAN


def weights(x: Tensor, mask: Tensor, quantiles: int = 5, min_names: int = MIN_NAMES) -> Tensor:
    """Daily long-short weights (D, S) float64: +1/n on the top quantile, -1/n on the bottom one."""
    lab = quantile_labels(x, mask, quantiles)
    top = lab == quantiles - 1
    bot = lab == 0
    ok = ((lab >= 0).sum(1) >= max(min_names, quantiles)).unsqueeze(1)
    top, bot = top & ok, bot & ok
    wt = top.double() / top.sum(1, keepdim=True).clamp(min=1)
    wb = bot.double() / bot.sum(1, keepdim=True).clamp(min=1)
    return wt - wb


def hold(w: Tensor, rebalance: int) -> Tensor:
    """Hold the weights of every ``rebalance``-th row (0, N, 2N, ...) until the next one. (D, S) -> (D, S)."""
    if rebalance == 1 or w.shape[0] == 0:
        return w
    idx = (torch.arange(w.shape[0]) // rebalance) * rebalance  # the last rebalance day <= t
    return w[idx]


def long_short(x: Tensor, fwd_1d: Tensor, mask: Tensor, quantiles: int = 5, cost_bps: float = 10.0,
               delay: int = 1, periods_per_year: float = 252.0, min_names: int = MIN_NAMES,
               rebalance: int = 1) -> BacktestResult:
    """Backtest the top-minus-bottom quantile portfolio of factor ``x`` (D, S), re-formed every
    ``rebalance`` days (module doc).

    ``fwd_1d[t]`` is the return from close t to close t+1 (``Evaluator.forward_return(1)``)."""
    if delay < 0:
        raise ValueError("delay must be >= 0 (a negative delay would trade on the past's future)")
    if int(rebalance) != rebalance or rebalance < 1:
        raise ValueError(f"rebalance must be a whole number of days >= 1, got {rebalance!r}")
    w = hold(weights(x, mask, quantiles, min_names), int(rebalance))
    d = w.shape[0]
    if delay:
        w = w[: d - delay] if d > delay else w[:0]
        r = fwd_1d[delay:]
    else:
        r = fwd_1d
    r64 = torch.where(torch.isfinite(r), r.double(), torch.zeros((), dtype=torch.float64))
    gross = (w * r64).sum(1)
    prev = torch.cat([torch.zeros_like(w[:1]), w[:-1]], 0)
    turn = (w - prev).abs().sum(1)
    net = gross - turn * cost_bps * 1e-4
    has = torch.isfinite(r).any(1)  # drop days with no return at all (the panel's last days)
    net, gross, turn = net[has], gross[has], turn[has]
    return BacktestResult(returns=net, gross=gross, turnover=turn, periods_per_year=periods_per_year,
                          cost_bps=cost_bps, rebalance=int(rebalance))


@dataclass
class QuantileBooks:
    """Equal-weight long-only books of each factor quantile and of the whole cross-section, held like the
    long-short book (same ``delay`` and ``rebalance``). T = decision days with a return (as in :func:`long_short`)."""

    returns: Tensor  # (Q, T) float64 daily return of quantile q's book (lowest factor first), before costs
    turnover: Tensor  # (Q, T) sum |w_t - w_{t-1}| of each book
    market: Tensor  # (T,) equal-weight return of every name with a factor value
    days: Tensor  # (T,) int64 decision-day index into the input rows


def _book(w: Tensor, r64: Tensor, delay: int) -> tuple[Tensor, Tensor]:
    d = w.shape[0]
    w = w[: d - delay] if delay else w
    prev = torch.cat([torch.zeros_like(w[:1]), w[:-1]], 0)
    return (w * r64).sum(1), (w - prev).abs().sum(1)


def quantile_books(x: Tensor, fwd_1d: Tensor, mask: Tensor, quantiles: int = 5, delay: int = 1,
                   min_names: int = MIN_NAMES, rebalance: int = 1) -> QuantileBooks:
    """Per-quantile and equal-weight market books of factor ``x`` (D, S), timing as :func:`long_short`."""
    if delay < 0:
        raise ValueError("delay must be >= 0 (a negative delay would trade on the past's future)")
    lab = quantile_labels(x, mask, quantiles)
    ok = ((lab >= 0).sum(1) >= max(min_names, quantiles)).unsqueeze(1)
    d = lab.shape[0]
    r = fwd_1d[delay:] if delay else fwd_1d
    r = r[: max(0, d - delay)]
    r64 = torch.where(torch.isfinite(r), r.double(), torch.zeros((), dtype=torch.float64))
    has = torch.isfinite(r).any(1)
    rets, turns = [], []
    for q in range(quantiles):
        sel = (lab == q) & ok
        w = hold(sel.double() / sel.sum(1, keepdim=True).clamp(min=1), int(rebalance))
        g, t = _book(w, r64, delay)
        rets.append(g[has])
        turns.append(t[has])
    allm = (lab >= 0) & ok
    mkt, _ = _book(hold(allm.double() / allm.sum(1, keepdim=True).clamp(min=1), int(rebalance)), r64, delay)
    return QuantileBooks(returns=torch.stack(rets) if rets else torch.zeros(0, 0, dtype=torch.float64),
                         turnover=torch.stack(turns) if turns else torch.zeros(0, 0, dtype=torch.float64),
                         market=mkt[has], days=torch.nonzero(has).squeeze(1))
