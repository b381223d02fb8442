"""Fraud-report figures and the threshold views a fraud analyst reads: ROC / PR with the stored metric in
the legend, confusion counts, precision / recall / alert volume against the threshold, calibration.

Inputs are a run's stored predictions (labels ``y`` (N,) in {0, 1}, scores (N,)); figures are ``data:`` URIs.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

from finllm.grounding.numbers import fmt_number
from finllm.reports.plots import to_data_uri

Curve = tuple[np.ndarray, np.ndarray, Mapping[str, float | None]]  # (labels, scores, stored {"auroc", "auprc"})


def roc_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(false-positive rate, true-positive rate, AUROC) of scores against binary labels. Arrays: (N,)."""
    from fraud.evaluate import roc_curve

    fpr, tpr = roc_curve(score, np.asarray(y).astype(bool))
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def pr_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(recall, precision, average precision) of scores against binary labels. Arrays: (N,)."""
    from fraud.evaluate import pr_curve

    return pr_curve(score, np.asarray(y).astype(bool))


def _legend(name: str, metric: str, stored: float | None, computed: float) -> str:
    if stored is not None:
        return f"{name} ({metric} {fmt_number(stored, 'score')})"
    return f"{name} ({metric} {fmt_number(computed, 'score')}, from these scores)"


def roc_curves(curves: Mapping[str, Curve]) -> str:
    """ROC curve of each named (labels, scores, stored metrics) on the same axes."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    for name, (y, s, stored) in curves.items():
        fpr, tpr, auc = roc_points(y, s)
        ax.plot(fpr, tpr, lw=1.4, label=_legend(name, "AUROC", stored.get("auroc"), auc))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate (recall)")
    ax.set_title("ROC curve (test split)")
    ax.legend(fontsize=7, loc="lower right")
    return to_data_uri(fig)


def pr_curves(curves: Mapping[str, Curve]) -> str:
    """Precision-recall curve of each named curve; dotted line = fraud base rate."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    base = None
    for name, (y, s, stored) in curves.items():
        r, p, ap = pr_points(y, s)
        ax.step(r, p, where="post", lw=1.4, label=_legend(name, "AUPRC", stored.get("auprc"), ap))
        base = float(np.mean(np.asarray(y) == 1))
    if base is not None:
        ax.axhline(base, color="grey", lw=0.6, ls=":", label=f"base rate {fmt_number(base, 'pct')}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall curve (test split)")
    ax.legend(fontsize=7, loc="upper right")
    return to_data_uri(fig)


def confusion(y: np.ndarray, score: np.ndarray, threshold: float) -> list[list[int]]:
    """[[TN, FP], [FN, TP]] with "fraud" = score > threshold (as alerts are flagged)."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(score) > threshold
    return [[int((~y & ~pred).sum()), int((~y & pred).sum())], [int((y & ~pred).sum()), int((y & pred).sum())]]


def at_threshold(y: np.ndarray, score: np.ndarray, threshold: float) -> tuple[float, float, float, int]:
    """(precision, recall, alert volume = share flagged, alerts) at ``threshold``; precision NaN when none flagged."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(score) > threshold
    n = int(pred.sum())
    tp = int((y & pred).sum())
    return (tp / n if n else float("nan"), tp / max(int(y.sum()), 1), n / max(len(y), 1), n)


def _sweep(y: np.ndarray, score: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.array([at_threshold(y, score, t)[:3] for t in grid])


def threshold_sweep(y_valid: np.ndarray, s_valid: np.ndarray, y_test: np.ndarray, s_test: np.ndarray,
                    threshold: float | None) -> str:
    """Precision, recall and alert volume against the threshold: valid (solid), test (dashed)."""
    lo = float(min(np.min(s_valid), np.min(s_test)))
    hi = float(max(np.max(s_valid), np.max(s_test)))
    grid = np.linspace(lo, hi, 101)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for (y, s), ls, part in (((y_valid, s_valid), "-", "valid"), ((y_test, s_test), "--", "test")):
        v = _sweep(y, s, grid)
        for j, (name, colour) in enumerate((("precision", "#1f77b4"), ("recall", "#d62728"),
                                            ("alert volume", "#7f7f7f"))):
            ax.plot(grid, v[:, j], ls=ls, lw=1.3 if part == "valid" else 0.9, color=colour,
                    label=f"{name} ({part})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls=":", lw=1, label=f"chosen threshold {fmt_number(threshold, 'score')}")
    ax.set_xlabel("threshold (flag when score > threshold)")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision, recall and alert volume vs threshold")
    ax.legend(fontsize=7, ncol=2, loc="center right")
    return to_data_uri(fig)


def calibration(y: np.ndarray, score: np.ndarray, bins: int = 10) -> str:
    """Reliability plot: observed fraud share per equal-width score bin against the bin's mean score."""
    y = np.asarray(y).astype(float)
    s = np.asarray(score, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1) if s.min() >= 0 and s.max() <= 1 else np.linspace(s.min(), s.max(), bins + 1)
    idx = np.clip(np.digitize(s, edges[1:-1]), 0, bins - 1)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    xs, ys, ns = [], [], []
    for b in range(bins):
        m = idx == b
        if m.any():
            xs.append(s[m].mean())
            ys.append(y[m].mean())
            ns.append(int(m.sum()))
    ax.plot([edges[0], edges[-1]], [0, 1] if edges[-1] <= 1 else [edges[0], edges[-1]], color="grey", ls=":", lw=0.8,
            label="calibrated")
    ax.plot(xs, ys, "o-", color="#d62728", lw=1.3, label="observed fraud share")
    for x, v, n in zip(xs, ys, ns):
        ax.annotate(f"{n:,}", (x, v), fontsize=6, xytext=(2, 3), textcoords="offset points")
    ax.set_xlabel("mean score in bin")
    ax.set_ylabel("share of actual fraud")
    ax.set_title("Calibration (test split; labels = nodes per bin)")
    ax.legend(fontsize=7, loc="upper left")
    return to_data_uri(fig)
