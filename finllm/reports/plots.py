"""Report figures: matplotlib (Agg) -> PNG -> ``data:`` URI, so the HTML needs no other file.

Every function takes plain arrays and returns a data URI string; none reads the store.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from finllm.grounding.numbers import fmt_number  # noqa: E402

SPLIT_COLOURS = {"train": "#dbe9f6", "valid": "#fdebd0", "test": "#e3f4e1"}
DPI = 96


def to_data_uri(fig: plt.Figure) -> str:
    """Render ``fig`` to PNG, close it, return ``data:image/png;base64,...``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _shade_splits(ax: plt.Axes, dates: np.ndarray, split_of: np.ndarray | None) -> None:
    """Shade the background of each split's date range (split_of: per-date split name or '')."""
    if split_of is None or len(dates) == 0:
        return
    for name, colour in SPLIT_COLOURS.items():
        idx = np.flatnonzero(split_of == name)
        if idx.size:
            ax.axvspan(dates[idx[0]], dates[idx[-1]], color=colour, alpha=0.8, zorder=0, label=f"{name} period")


def ic_over_time(dates: np.ndarray, ic: np.ndarray, rank_ic: np.ndarray, split_of: np.ndarray | None = None,
                 window: int = 20) -> str:
    """Daily IC / RankIC of the pool's combined factor (faint) and their rolling means. Arrays: (D,)."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    _shade_splits(ax, dates, split_of)
    for series, colour, name in ((ic, "#1f77b4", "IC"), (rank_ic, "#d62728", "RankIC")):
        s = np.asarray(series, dtype=float)
        ax.plot(dates, s, color=colour, alpha=0.18, lw=0.6)
        roll = _rolling_mean(s, window)
        ax.plot(dates, roll, color=colour, lw=1.4, label=f"{name} ({window}-day mean)")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("cross-sectional correlation")
    ax.set_title("Information coefficient over time (pool combination)")
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    return to_data_uri(fig)


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` finite values (NaN until enough data)."""
    ok = np.isfinite(x)
    c = np.concatenate([[0.0], np.cumsum(np.where(ok, x, 0.0))])
    n = np.concatenate([[0], np.cumsum(ok)])
    w = np.minimum(np.arange(1, len(x) + 1), window)
    start = np.arange(1, len(x) + 1) - w
    cnt = n[1:] - n[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (c[1:] - c[start]) / cnt
    out[cnt < max(2, window // 2)] = np.nan
    return out


def cumulative_long_short(dates: np.ndarray, net: np.ndarray, gross: np.ndarray | None,
                          split_of: np.ndarray | None = None, cost_bps: float | None = None) -> str:
    """Cumulative (summed) daily long-short returns, after and before trading costs. Arrays: (D,)."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    _shade_splits(ax, dates, split_of)
    cost = f" ({cost_bps:g} bps per unit turnover)" if cost_bps is not None else ""
    ax.plot(dates, np.nancumsum(net), color="#2ca02c", lw=1.5, label="net of costs" + cost)
    if gross is not None:
        ax.plot(dates, np.nancumsum(gross), color="#7f7f7f", lw=1.0, ls="--", label="before costs")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("cumulative return")
    ax.set_title("Long-short portfolio (top minus bottom quantile), cumulative")
    ax.legend(loc="upper left", fontsize=8)
    return to_data_uri(fig)


def quantile_returns(per_split: Mapping[str, Sequence[float]]) -> str:
    """Mean forward return of each factor quantile (1 = lowest), one bar group per split."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(per_split)
    q = max((len(v) for v in per_split.values()), default=0)
    width = 0.8 / max(1, len(names))
    colours = {"train": "#1f77b4", "valid": "#ff7f0e", "test": "#2ca02c"}
    for i, name in enumerate(names):
        vals = np.asarray(per_split[name], dtype=float) * 1e4
        ax.bar(np.arange(1, len(vals) + 1) + (i - (len(names) - 1) / 2) * width, vals, width,
               label=name, color=colours.get(name))
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(np.arange(1, q + 1))
    ax.set_xlabel("factor quantile (1 = lowest score)")
    ax.set_ylabel("mean forward return (bps)")
    ax.set_title("Quantile returns")
    ax.legend(fontsize=8)
    return to_data_uri(fig)


def correlation_heatmap(corr: np.ndarray, labels: Sequence[str]) -> str:
    """Heatmap of the (K, K) correlation matrix between pool factors."""
    k = len(labels)
    size = min(8.0, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(k), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                if np.isfinite(corr[i, j]):
                    ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(corr[i, j]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title("Correlation between pool factors (valid period)")
    return to_data_uri(fig)


def metric_bars(table: Mapping[str, Mapping[str, float]], metric: str, title: str) -> str:
    """Bars of ``metric`` for each model/baseline (rows of ``table``) in each split (columns)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    names = list(table)
    splits = [s for s in ("train", "valid", "test") if any(s in table[n] for n in names)]
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        vals = [table[name].get(s, np.nan) for s in splits]
        ax.bar(np.arange(len(splits)) + (i - (len(names) - 1) / 2) * width, vals, width, label=name)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(range(len(splits)), splits)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return to_data_uri(fig)


# ---- fraud -------------------------------------------------------------------------------------
def score_distribution(y: np.ndarray, score: np.ndarray, threshold: float | None) -> str:
    """Histogram of fraud scores for honest and fraudulent test nodes, with the decision threshold."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    y = np.asarray(y).astype(bool)
    bins = np.linspace(float(np.min(score)), float(np.max(score)) + 1e-12, 40)
    ax.hist(score[~y], bins=bins, alpha=0.6, density=True, label=f"normal (n={int((~y).sum())})", color="#1f77b4")
    ax.hist(score[y], bins=bins, alpha=0.6, density=True, label=f"fraud (n={int(y.sum())})", color="#d62728")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {fmt_number(threshold, 'score')}")
    ax.set_xlabel("fraud score")
    ax.set_ylabel("density")
    ax.set_title("Score distributions (test split)")
    ax.legend(fontsize=8)
    return to_data_uri(fig)
