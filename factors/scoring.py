"""Scoring factors per time split: the one scorer behind ``factors eval``, mining (the finished pool and
its members), natural-language requests and the reports.

A :class:`SplitScorer` holds one panel that spans every split (plus ``warmup_days`` trading days of
history before the first, so rolling windows are full; ``None``: the whole panel as loaded), its
evaluator, the target, the universe mask and each split's days purged by the horizon (the last
``horizon`` days of a split would score against prices inside the next one). Factors are always
evaluated on the whole panel (windows see the history before a split, never after).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from finllm.jsonsafe import json_safe

if TYPE_CHECKING:
    from factors.expr import Expr
    from factors.panel import Panel
    from factors.splits import Split


def warm_start(dates: np.ndarray, start: np.datetime64 | None, warmup: int) -> np.datetime64 | None:
    """The panel day ``warmup`` trading days before ``start`` (the first day when there are fewer)."""
    if start is None:
        return None
    i = int(np.searchsorted(dates, start, "left"))
    return dates[max(0, i - warmup)]


class SplitScorer:
    """Scores (D, S) factors on every split of one panel that spans them all.

    ``target``: a target expression (may look ahead, e.g. ``Ref($close, -h)``); default the ``horizon``-day
    forward return. ``rebalance``: the backtest's holding period (default: the horizon)."""

    def __init__(self, panel: Panel, splits: list[Split], horizon: int, cost_bps: float,
                 warmup_days: int | None = 126, rebalance: int | None = None, *, target: str | None = None,
                 cache_bytes: int = 512 << 20) -> None:
        from factors.evaluate import Evaluator
        from factors.metrics import periods_per_year
        from factors.splits import check_covered

        if warmup_days is not None:
            panel = panel.slice_dates(warm_start(panel.dates, splits[0].start, warmup_days), splits[-1].end)
        self.panel = panel
        self.ev = Evaluator(self.panel, cache_bytes=cache_bytes)
        self.horizon, self.cost_bps = horizon, cost_bps
        self.rebalance = horizon if rebalance is None else rebalance
        self.target = self.ev.forward_return(horizon) if target is None else self.ev.target(target)
        self.fwd1 = self.ev.forward_return(1)
        self.mask = self.ev.universe
        self.days = {s.name: check_covered(s, self.panel.dates, purge=horizon) for s in splits}
        self.splits = splits
        self.periods_per_year = periods_per_year(self.panel.dates)  # 252 stocks, ~365 crypto
        self._memo: dict[tuple[str, str], dict[str, float]] = {}

    def parse(self, text: str) -> Expr:
        return self.ev.parse(text)

    def masked(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with NaN outside the universe. (D, S)."""
        return torch.where(self.mask, x, torch.full((), float("nan")))

    def zscore(self, x: torch.Tensor) -> torch.Tensor:
        from factors.pool import zscore_days

        return zscore_days(x, self.mask)[0]

    def combine(self, members: list[tuple[list[str], float]]) -> torch.Tensor:
        """sum_i w_i zscore(member_i), NaN outside the universe. (D, S)."""
        c = torch.zeros(self.mask.shape)
        for tokens, w in members:
            c.add_(self.zscore(self.ev.evaluate(tokens)), alpha=float(w))
        return self.masked(c)

    def full_report(self, x: torch.Tensor, name: str, **opts: Any) -> dict[str, Any]:
        """:func:`factors.metrics.factor_report` of ``x`` (D, S) on split ``name`` (``opts``: quantiles,
        delay, min_names)."""
        from factors.metrics import factor_report

        return factor_report(x, self.target, self.mask, fwd_1d=self.fwd1, cost_bps=self.cost_bps,
                             horizon=self.horizon, days=self.days[name], periods_per_year=self.periods_per_year,
                             rebalance=self.rebalance, **opts)

    def report(self, x: torch.Tensor) -> dict[str, dict[str, float]]:
        """Per split: ic, rank_ic, icir, rank_icir, long-short sharpe / annual return / turnover (with costs)."""
        out = {}
        for name in self.days:
            r = self.full_report(x, name)
            bt = r.get("backtest", {})
            out[name] = {k: json_safe(v) for k, v in {
                "ic": r["ic"], "rank_ic": r["rank_ic"], "icir": r["icir"], "rank_icir": r["rank_icir"],
                "ic_t_nw": r["t_stat_nw"], "sharpe": bt.get("sharpe"), "ann_return": bt.get("ann_return"),
                "turnover": bt.get("turnover"), "n_days": r["n_days"]}.items()}
        return out

    def member_metrics(self, tokens: list[str]) -> dict[str, dict[str, float]]:
        """Cheap per-split IC / RankIC of one factor (series computed once over all days)."""
        from factors.metrics import ic_series, rank_ic_series

        x = self.masked(self.ev.evaluate(tokens))
        ic, ric = ic_series(x, self.target, self.mask), rank_ic_series(x, self.target, self.mask)
        out = {}
        for name, days in self.days.items():
            a, b = ic[days], ric[days]
            out[name] = {"ic": json_safe(float(a[torch.isfinite(a)].mean())),
                         "rank_ic": json_safe(float(b[torch.isfinite(b)].mean()))}
        return out

    def score(self, expr: Expr, split_names: Sequence[str]) -> dict[str, dict[str, float]]:
        """Per split: ic, rank_ic, icir, top-quintile turnover, coverage, n_days, on the split's days only;
        each (expression, split) is computed once per scorer (factor requests score many candidates)."""
        from factors.metrics import ic_series, rank_ic_series, summarize, top_turnover

        todo = [n for n in split_names if (expr.key, n) not in self._memo]
        if todo:
            x = self.masked(self.ev.evaluate(expr))
            for name in todo:
                days = self.days[name]
                xs, ts, m = x[days], self.target[days], self.mask[days]
                si, sr = summarize(ic_series(xs, ts, m)), summarize(rank_ic_series(xs, ts, m))
                row = {"ic": si["mean"], "rank_ic": sr["mean"], "icir": si["ir"], "turnover": top_turnover(xs, m),
                       "coverage": float((xs.isfinite() & m).sum() / m.sum().clamp(min=1)), "n_days": si["n_days"]}
                self._memo[(expr.key, name)] = {k: (float(v) if isinstance(v, (int, float)) else v)
                                                for k, v in row.items()}
        return {n: dict(self._memo[(expr.key, n)]) for n in split_names}
