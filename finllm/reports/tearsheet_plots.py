"""Tear-sheet figures of a factor report (alphalens / Qlib / pyfolio panels), drawn from a stored sheet.

Every function takes plain arrays and returns a ``data:`` URI (:func:`finllm.reports.plots.to_data_uri`);
none computes a metric: the arrays come from :func:`factors.tearsheet.tearsheet`. ``split_of`` is the
(D,) split name per day ("" = warm-up / purged); the test period is shaded like the others and named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from finllm.reports.plots import _rolling_mean, _shade_splits, to_data_uri

MODEL_COLOURS = {"pool": "#2ca02c", "alpha158_linear": "#1f77b4", "lgbm_alpha158": "#9467bd",
                 "lgbm_alpha158_pool": "#ff7f0e"}
SPLIT_COLOURS = {"train": "#1f77b4", "valid": "#ff7f0e", "test": "#2ca02c"}


def _colour(name: str) -> str | None:
    return MODEL_COLOURS.get(name)


def _finish(ax: plt.Axes, title: str, ylabel: str, zero: bool = True, legend: str = "upper left") -> None:
    if zero:
        ax.axhline(0, color="black", lw=0.6)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(loc=legend, fontsize=8)


def cumulative_models(dates: np.ndarray, split_of: np.ndarray, net: Mapping[str, np.ndarray],
                      gross: np.ndarray | None, cost_bps: float, rebalance: int, title: str, ylabel: str) -> str:
    """Summed daily returns of each model (net of costs), plus the pool before costs. Arrays (D,)."""
    fig, ax = plt.subplots(figsize=(9, 3.4))
    _shade_splits(ax, dates, split_of)
    for name, r in net.items():
        ax.plot(dates, np.nancumsum(r), lw=1.6 if name == "pool" else 1.1, color=_colour(name),
                label=f"{name} (net of {cost_bps:g} bps)")
    if gross is not None:
        ax.plot(dates, np.nancumsum(gross), color="#7f7f7f", lw=1.0, ls="--", label="pool before costs")
    _finish(ax, f"{title} (held {rebalance} days)", ylabel)
    return to_data_uri(fig)


def drawdowns(dates: np.ndarray, split_of: np.ndarray, dd: Mapping[str, np.ndarray]) -> str:
    """Drawdown of each model's long-short book (summed net returns), restarted at each split. Arrays (D,) fractions."""
    fig, ax = plt.subplots(figsize=(9, 3.0))
    _shade_splits(ax, dates, split_of)
    for name, d in dd.items():
        ax.plot(dates, 100 * d, lw=1.3 if name == "pool" else 0.9, color=_colour(name), label=name)
    _finish(ax, "Drawdown of the long-short book (net of costs)", "drawdown (%)", legend="lower left")
    return to_data_uri(fig)


def ic_histogram(bins: Sequence[float], counts: Mapping[str, Sequence[int]], stats: Mapping[str, Mapping[str, float]]) -> str:
    """Histogram of the daily IC per split (shared bins, densities)."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    b = np.asarray(bins, dtype=float)
    width = np.diff(b)
    for name, c in counts.items():
        c = np.asarray(c, dtype=float)
        dens = c / max(c.sum(), 1) / width
        s = stats[name]
        ax.stairs(dens, b, fill=name == "test", alpha=0.35 if name == "test" else 1.0, lw=1.4,
                  color=SPLIT_COLOURS.get(name), label=f"{name}: mean {s['mean']:.4f}, std {s['std']:.4f}")
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("daily IC of the pool")
    _finish(ax, "IC distribution", "density", zero=False)
    return to_data_uri(fig)


def ic_qq(qq: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> str:
    """Quantiles of the daily IC (y) against standard normal quantiles (x), per split; line = normal fit."""
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    for name, (z, q) in qq.items():
        z, q = np.asarray(z, dtype=float), np.asarray(q, dtype=float)
        ax.plot(z, q, "o", ms=2.5, color=SPLIT_COLOURS.get(name), label=name)
        m, s = float(np.median(q)), float(np.std(q))
        ax.plot(z, m + s * z, lw=0.7, color=SPLIT_COLOURS.get(name))
    ax.set_xlabel("standard normal quantile")
    _finish(ax, "IC normal QQ plot", "daily IC quantile", zero=False)
    return to_data_uri(fig)


def monthly_heatmap(months: Sequence[str], values: Sequence[float | None], title: str) -> str:
    """Year x month heatmap of monthly mean IC (months 'YYYY-MM')."""
    years = sorted({m[:4] for m in months})
    grid = np.full((len(years), 12), np.nan)
    for m, v in zip(months, values):
        grid[years.index(m[:4]), int(m[5:7]) - 1] = np.nan if v is None else v
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.32 * len(years)))
    lim = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    im = ax.imshow(grid, cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(12), ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
                  fontsize=8)
    ax.set_yticks(range(len(years)), years, fontsize=8)
    if len(years) <= 25:
        for i in range(len(years)):
            for j in range(12):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    ax.set_title(title)
    return to_data_uri(fig)


def quantile_cumulative(dates: np.ndarray, split_of: np.ndarray, qret: np.ndarray) -> str:
    """Summed daily return of each quantile's equal-weight book, (Q, D); 1 = lowest factor."""
    fig, ax = plt.subplots(figsize=(9, 3.4))
    _shade_splits(ax, dates, split_of)
    cmap = plt.get_cmap("RdYlGn")
    q = qret.shape[0]
    for k in range(q):
        ax.plot(dates, np.nancumsum(qret[k]), lw=1.1, color=cmap(k / max(q - 1, 1)), label=f"quantile {k + 1}")
    _finish(ax, "Cumulative return by factor quantile (before costs)", "cumulative return")
    return to_data_uri(fig)


def rank_autocorr(dates: np.ndarray, split_of: np.ndarray, series: Mapping[str, np.ndarray], lag: int) -> str:
    """Factor rank autocorrelation at ``lag`` days, 20-day mean, per model. Arrays (D,)."""
    fig, ax = plt.subplots(figsize=(9, 3.0))
    _shade_splits(ax, dates, split_of)
    for name, s in series.items():
        ax.plot(dates, _rolling_mean(np.asarray(s, dtype=float), 20), lw=1.2, color=_colour(name), label=name)
    _finish(ax, f"Factor rank autocorrelation (lag {lag} days, 20-day mean)", "Spearman correlation")
    return to_data_uri(fig)


def quantile_turnover(per_model: Mapping[str, Sequence[float]], lag: int, split: str) -> str:
    """Mean share of each quantile's names replaced after ``lag`` days, one bar group per model."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(per_model)
    q = max((len(v) for v in per_model.values()), default=0)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        vals = 100 * np.asarray([np.nan if v is None else v for v in per_model[name]], dtype=float)
        ax.bar(np.arange(1, len(vals) + 1) + (i - (len(names) - 1) / 2) * width, vals, width, label=name,
               color=_colour(name))
    ax.set_xticks(np.arange(1, q + 1))
    ax.set_xlabel("factor quantile (1 = lowest)")
    _finish(ax, f"Quantile turnover after {lag} days ({split} split)", "names replaced (%)", legend="lower right")
    return to_data_uri(fig)


def ic_decay(per_model: Mapping[str, Mapping[str, float | None]], horizon: int, split: str) -> str:
    """Mean IC against the h-day forward return for several h, one line per model."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, d in per_model.items():
        hs = sorted(int(h) for h in d)
        ax.plot(hs, [np.nan if d[str(h)] is None else d[str(h)] for h in hs], "o-", lw=1.2, color=_colour(name),
                label=name)
    ax.axvline(horizon, color="grey", ls=":", lw=0.8, label=f"run horizon {horizon}")
    ax.set_xlabel("forward-return horizon (days)")
    _finish(ax, f"IC decay ({split} split)", "mean daily IC")
    return to_data_uri(fig)


def turnover_over_time(dates: np.ndarray, split_of: np.ndarray, qturn: np.ndarray, lag: int) -> str:
    """Top and bottom quantile turnover after ``lag`` days, 20-day means; qturn (Q, D) shares."""
    fig, ax = plt.subplots(figsize=(9, 3.0))
    _shade_splits(ax, dates, split_of)
    for k, name, colour in ((qturn.shape[0] - 1, "top quantile", "#2ca02c"), (0, "bottom quantile", "#d62728")):
        ax.plot(dates, 100 * _rolling_mean(np.asarray(qturn[k], dtype=float), 20), lw=1.2, color=colour, label=name)
    _finish(ax, f"Quantile turnover after {lag} days (20-day mean)", "names replaced (%)", zero=False)
    return to_data_uri(fig)
