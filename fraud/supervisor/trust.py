"""Calibrated trust: how much the LLM's verdicts may weigh, measured before they are used.

Node verdicts: on a held-out calibration slice of labelled validation nodes (labels never shown to
the LLM), the AUROC of the LLM's fraud probability against the true labels is measured together
with a one-sided lower confidence bound (stratified bootstrap, fixed seed). The reliability weight is
``2 * (AUROC_lower - 0.5)`` clipped to [0, 1]: zero unless the verdicts beat chance with confidence,
so verdicts that carry no signal (random, constant, always the same label) get weight 0 and cannot
move the detector.

Edge verdicts ("this neighbour is camouflage"): among the calibration nodes' *shown* neighbours whose
label is known (training or validation labels — used for this measurement only, never in prompts),
a named neighbour is a hit when its label differs from the target's. The weight is the lift of the
hits' Wilson lower bound over the base rate of differing neighbours, scaled to [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata


def auroc(score: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney AUROC with ties counted half; NaN when a class is missing."""
    score, y = np.asarray(score, float), np.asarray(y).astype(int)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(score)
    return float((r[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _boot_auroc(score: np.ndarray, y: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified bootstrap AUROCs (B,): resample positives and negatives separately."""
    pos, neg = score[y == 1], score[y == 0]
    bp = pos[rng.integers(0, pos.size, size=(n_boot, pos.size))]
    bn = neg[rng.integers(0, neg.size, size=(n_boot, neg.size))]
    # pairwise comparison per bootstrap sample: (B, P, 1) vs (B, 1, Q)
    gt = (bp[:, :, None] > bn[:, None, :]).mean(axis=(1, 2))
    eq = (bp[:, :, None] == bn[:, None, :]).mean(axis=(1, 2))
    return gt + 0.5 * eq


@dataclass
class Reliability:
    """Measured reliability of node verdicts on the calibration slice."""

    weight: float
    n: int
    n_valid: int
    auroc: float | None = None
    auroc_lower: float | None = None
    agreement: float | None = None  # share of verdict labels equal to the true label
    balanced_accuracy: float | None = None
    gnn_auroc: float | None = None  # the GNN's AUROC on the same slice, for comparison
    reason: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def node_reliability(q: np.ndarray, y: np.ndarray, *, labels: np.ndarray | None = None,
                     gnn: np.ndarray | None = None, min_valid: int = 8, level: float = 0.05,
                     n_boot: int = 1000, seed: int = 0) -> Reliability:
    """Reliability of LLM fraud probabilities ``q`` (n,) (NaN = no valid verdict) against true labels
    ``y`` (n,) in {0, 1}. ``labels`` (n,) optional verdict labels in {0, 1} for agreement figures;
    ``gnn`` (n,) optional GNN scores for the side-by-side AUROC."""
    q, y = np.asarray(q, float), np.asarray(y).astype(int)
    ok = ~np.isnan(q)
    n, nv = int(q.size), int(ok.sum())
    rel = Reliability(weight=0.0, n=n, n_valid=nv)
    if gnn is not None and n:
        g = auroc(np.asarray(gnn, float), y)
        rel.gnn_auroc = None if math.isnan(g) else g
    if nv < min_valid:
        rel.reason = f"only {nv} valid verdicts on the calibration slice (need {min_valid})"
        return rel
    qv, yv = q[ok], y[ok]
    if (yv == 1).sum() == 0 or (yv == 0).sum() == 0:
        rel.reason = "calibration slice has verdicts for one class only"
        return rel
    if labels is not None:
        lv = np.asarray(labels)[ok].astype(int)
        rel.agreement = float((lv == yv).mean())
        rel.balanced_accuracy = float(0.5 * ((lv[yv == 1] == 1).mean() + (lv[yv == 0] == 0).mean()))
    rel.auroc = auroc(qv, yv)
    boots = _boot_auroc(qv, yv, n_boot, np.random.default_rng(seed))
    rel.auroc_lower = float(np.quantile(boots, level))
    rel.weight = float(np.clip(2.0 * (rel.auroc_lower - 0.5), 0.0, 1.0))
    rel.reason = ("verdicts beat chance on held-out labels" if rel.weight > 0 else
                  f"no measurable signal (AUROC {rel.auroc:.3f}, {100 * (1 - level):.0f}% lower bound "
                  f"{rel.auroc_lower:.3f} <= 0.5)")
    return rel


def wilson_lower(hits: int, n: int, z: float = 1.645) -> float:
    """One-sided Wilson lower bound of a proportion (z=1.645 -> 95%)."""
    if n == 0:
        return 0.0
    p = hits / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / denom)


def edge_reliability(named_differs: list[bool], shown_differs: list[bool], *, min_named: int = 5) -> dict:
    """Weight for camouflage-edge verdicts from calibration nodes.

    ``named_differs``: for each (target, named neighbour) pair with a known neighbour label, whether
    the labels differ; ``shown_differs``: the same for every shown neighbour with a known label.
    """
    n_named, hits = len(named_differs), int(sum(named_differs))
    base = float(np.mean(shown_differs)) if shown_differs else float("nan")
    out = {"named": n_named, "hits": hits, "base_rate": None if math.isnan(base) else round(base, 4),
           "precision": round(hits / n_named, 4) if n_named else None, "weight": 0.0, "measurable": False}
    if n_named < min_named or math.isnan(base) or base >= 1.0:
        out["reason"] = f"only {n_named} named neighbours with a known label (need {min_named})"
        return out
    out["measurable"] = True
    lo = wilson_lower(hits, n_named)
    out["precision_lower"] = round(lo, 4)
    out["weight"] = round(float(np.clip((lo - base) / (1.0 - base), 0.0, 1.0)), 4)
    out["reason"] = ("named neighbours differ from the target more often than chance" if out["weight"] > 0
                     else "named neighbours are no more often camouflage than any shown neighbour")
    return out
