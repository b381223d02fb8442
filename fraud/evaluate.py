"""Metrics of the GADBench protocol: AUROC, AUPRC (average precision), Recall@K, macro-F1.

All functions take scores/probabilities and binary labels (1 = fraud). A single-class set has no
AUROC/AUPRC: that is a :class:`DataError`, never a silent NaN.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

from finllm.errors import DataError


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _check(scores: np.ndarray, y: np.ndarray, what: str) -> None:
    if len(y) == 0:
        raise DataError(f"{what}: no nodes to evaluate")
    if not np.isfinite(scores).all():
        raise DataError(f"{what}: {int((~np.isfinite(scores)).sum())} scores are NaN/inf (model diverged?)")
    u = np.unique(y)
    if len(u) < 2:
        raise DataError(f"{what}: only class {int(u[0])} present ({len(y)} nodes); AUROC/AUPRC undefined")


def auroc(scores, y) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    s, y = _np(scores).astype(float), _np(y).astype(int)
    _check(s, y, "auroc")
    r = rankdata(s)
    npos = int(y.sum())
    nneg = len(y) - npos
    return float((r[y == 1].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def ranked_counts(scores, y) -> tuple[np.ndarray, np.ndarray, int]:
    """Cumulative (true positives, false positives) at each distinct score threshold, highest first,
    and the number of positives. tp, fp: (T,) for T distinct scores."""
    s, y = _np(scores).astype(float), _np(y).astype(int)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    return tp, (last + 1) - tp, int(y.sum())


def roc_curve(scores, y) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate), starting at (0, 0). Arrays: (T + 1,)."""
    tp, fp, npos = ranked_counts(scores, y)
    nneg = len(_np(y)) - npos
    return np.r_[0.0, fp / max(1, nneg)], np.r_[0.0, tp / max(1, npos)]


def pr_curve(scores, y) -> tuple[np.ndarray, np.ndarray, float]:
    """(recall, precision) starting at (0, 1), and the average precision:
    sum over distinct thresholds of (R_n - R_{n-1}) * P_n (sklearn's definition). Arrays: (T + 1,)."""
    tp, fp, npos = ranked_counts(scores, y)
    prec = tp / np.maximum(1, tp + fp)
    rec = tp / max(1, npos)
    return np.r_[0.0, rec], np.r_[1.0, prec], float(np.sum(np.diff(np.r_[0.0, rec]) * prec))


def auprc(scores, y) -> float:
    """Average precision (see :func:`pr_curve`)."""
    s, y = _np(scores).astype(float), _np(y).astype(int)
    _check(s, y, "auprc")
    return pr_curve(s, y)[2]


def recall_at_k(scores, y, k: int | None = None) -> float:
    """Share of frauds among the ``k`` highest scores (default k = number of frauds)."""
    s, y = _np(scores).astype(float), _np(y).astype(int)
    _check(s, y, "recall@k")
    k = int(y.sum()) if k is None else k
    top = np.argsort(-s, kind="mergesort")[:k]
    return float(y[top].sum() / y.sum())


def _macro_f1_many(s: np.ndarray, y: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Macro-F1 of ``s >= t`` for every t in ``thr`` (vectorised over sorted scores)."""
    pos = y == 1
    sp, sn = np.sort(s[pos]), np.sort(s[~pos])
    tp = len(sp) - np.searchsorted(sp, thr, side="left")
    fp = len(sn) - np.searchsorted(sn, thr, side="left")
    fn = len(sp) - tp
    tn = len(sn) - fp
    f1_pos = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    f1_neg = np.where(tn > 0, 2 * tn / np.maximum(2 * tn + fn + fp, 1), 0.0)
    return (f1_pos + f1_neg) / 2


def macro_f1(probs, y, threshold: float) -> float:
    s, y = _np(probs).astype(float), _np(y).astype(int)
    return float(_macro_f1_many(s, y, np.array([threshold]))[0])


def choose_threshold(probs_val, y_val) -> float:
    """The decision threshold that maximises macro-F1 on the validation nodes (never use test here)."""
    s, y = _np(probs_val).astype(float), _np(y_val).astype(int)
    _check(s, y, "choose_threshold (validation)")
    cand = np.unique(s)
    if len(cand) > 2000:
        cand = np.unique(np.quantile(s, np.linspace(0, 1, 2001)))
    f1 = _macro_f1_many(s, y, cand)
    return float(cand[int(np.argmax(f1))])


def evaluate(probs, y, idx, threshold: float) -> dict:
    """Metrics of ``probs[idx]`` against ``y[idx]``: auroc, auprc, rec@k, macro_f1 (at ``threshold``)."""
    p, yy = _np(probs), _np(y)
    i = _np(idx).astype(np.int64)
    s, t = p[i].astype(float), yy[i].astype(int)
    return {
        "auroc": auroc(s, t),
        "auprc": auprc(s, t),
        "rec@k": recall_at_k(s, t),
        "macro_f1": macro_f1(s, t, threshold),
        "n": int(len(t)),
        "n_fraud": int(t.sum()),
    }
