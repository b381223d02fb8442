"""Budgeted active query selection: ask the LLM only where its answer can matter.

A node is worth a query when the GNN is unsure about it (its score sits near the alert threshold,
measured in logit space so that imbalanced-class thresholds such as 0.05 work) or when its score
contradicts its neighbourhood (the mean of its neighbours' training labels where known, their
GNN scores otherwise). The two are mixed with weight ``alpha``.

Which nodes may be queried at all is decided by the caller (:mod:`fraud.supervisor.loop`): never
test nodes; validation nodes only for the calibration slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.utils import scatter


def _logit(p: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def uncertainty(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N,) in (0, 1]: 1 at the threshold, decaying with the logit distance from it."""
    t = torch.tensor(float(threshold)).clamp(1e-4, 1 - 1e-4)
    return torch.exp(-(_logit(probs.float()) - _logit(t)).abs())


def contradiction(probs: torch.Tensor, edge_index: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) in [0, 1]: |score - mean neighbour evidence|; 0 for isolated nodes.

    Neighbour evidence is the neighbour's training label where ``known`` >= 0, else its GNN score.
    """
    p = probs.float()
    ev = p.clone()
    if known is not None:
        lab = known >= 0
        ev[lab] = known[lab].float()
    n = p.numel()
    if edge_index.numel() == 0:
        return torch.zeros(n)
    src, dst = edge_index
    mean = scatter(ev[src], dst, dim=0, dim_size=n, reduce="mean")
    deg = scatter(torch.ones_like(src, dtype=torch.float), dst, dim=0, dim_size=n, reduce="sum")
    out = (p - mean).abs()
    out[deg == 0] = 0.0
    return out


def query_scores(probs: torch.Tensor, edge_index: torch.Tensor, *, threshold: float,
                 known: torch.Tensor | None = None, alpha: float = 0.6) -> torch.Tensor:
    """(N,) value of asking about each node: alpha * uncertainty + (1 - alpha) * contradiction."""
    return alpha * uncertainty(probs, threshold) + (1 - alpha) * contradiction(probs, edge_index, known)


def top_k(scores: torch.Tensor, candidates: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` candidates with the highest score (ties broken by node id), best first."""
    cand = torch.as_tensor(candidates, dtype=torch.long).unique()  # sorted ids -> stable ties
    if k <= 0 or cand.numel() == 0:
        return cand[:0]
    order = torch.argsort(scores[cand], descending=True, stable=True)
    return cand[order[:k]]


def calibration_slice(val_idx: torch.Tensor, y: torch.Tensor, probs: torch.Tensor, threshold: float,
                      n: int) -> torch.Tensor:
    """Up to ``n`` labelled validation nodes, half fraud and half normal where possible, each class
    taken most-uncertain first: reliability is measured where the LLM will be asked (hard nodes),
    and a balanced slice gives the measurement statistical power under heavy class imbalance."""
    val = torch.as_tensor(val_idx, dtype=torch.long)
    val = val[y[val] >= 0]
    u = uncertainty(probs, threshold)
    pos, neg = val[y[val] == 1], val[y[val] == 0]
    n_pos = min(pos.numel(), n // 2)
    n_neg = min(neg.numel(), n - n_pos)
    n_pos = min(pos.numel(), n - n_neg)
    return torch.cat([top_k(u, pos, n_pos), top_k(u, neg, n_neg)])


def label_disagreements(train_idx: torch.Tensor, y: torch.Tensor, probs: torch.Tensor,
                        threshold: float) -> torch.Tensor:
    """Training nodes whose GNN score is on the other side of the threshold from their given label,
    strongest disagreement first (candidates for the label-noise use)."""
    tr = torch.as_tensor(train_idx, dtype=torch.long)
    tr = tr[y[tr] >= 0]
    pred = (probs[tr] >= threshold).long()
    bad = tr[pred != y[tr]]
    strength = (_logit(probs[bad]) - _logit(torch.tensor(float(threshold)).clamp(1e-4, 1 - 1e-4))).abs()
    return bad[torch.argsort(strength, descending=True, stable=True)]


@dataclass(frozen=True)
class QueryPlan:
    """How a call budget is spent: ``samples`` calls per node (self-consistency when > 1)."""

    budget: int
    samples: int
    n_calibration: int
    n_noise: int
    n_query: int

    @property
    def calls(self) -> int:
        return self.samples * (self.n_calibration + self.n_noise + self.n_query)


def plan_budget(budget: int, *, uses: set[str], n_noise_candidates: int, samples: int | None = None,
                min_calibration: int = 12) -> QueryPlan:
    """Split ``budget`` LLM calls between the calibration slice, label-noise checks and queries.

    ``samples`` None: 3 per node (self-consistency) when the budget still leaves >= 40 nodes,
    else 1. The calibration slice takes 40% of the nodes (at least ``min_calibration``, at most
    half), because without it nothing else can be trusted.
    """
    budget = max(int(budget), 0)
    if samples is None:
        samples = 3 if budget // 3 >= 40 else 1
    samples = max(1, int(samples))
    nodes = budget // samples
    n_cal = min(nodes // 2 if nodes >= 2 * min_calibration else nodes,
                max(min_calibration, round(0.4 * nodes)))
    rest = nodes - n_cal
    n_noise = min(n_noise_candidates, rest // 2 if (uses & {"pseudo", "edges"}) else rest) if "noise" in uses else 0
    n_query = rest - n_noise if (uses & {"pseudo", "edges"}) else 0
    return QueryPlan(budget=budget, samples=samples, n_calibration=n_cal, n_noise=n_noise, n_query=n_query)


def pool_posterior(probs: torch.Tensor, val_idx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) P(fraud | score) at the validation slice's fraud rate: a class-weighted logistic map of
    the score's logit fitted on the labelled validation nodes, shifted from the balanced prior to the
    observed one. Monotone in the score; only validation labels are read."""
    from fraud.supervisor.calibrate import score_map

    val = torch.as_tensor(val_idx, dtype=torch.long)
    val = val[y[val] >= 0]
    yv = y[val].numpy().astype(int)
    a, b = score_map(probs[val].double().numpy(), yv)
    rate = min(max(float(yv.mean()) if yv.size else 0.5, 1e-3), 1 - 1e-3)
    z = a + b * _logit(probs.double()) + float(np.log(rate / (1 - rate)))
    return torch.sigmoid(z).float()


def band_queries(probs: torch.Tensor, val_idx: torch.Tensor, y: torch.Tensor, candidates: torch.Tensor,
                 k: int) -> torch.Tensor:
    """The ``k`` candidates whose fraud status is most uncertain at the real fraud rate (largest
    p (1 - p) of :func:`pool_posterior`), best first: the band of the ranking where a verdict moves a
    node past many others. (Uncertainty at the alert threshold picks nodes deep in the negatives when
    fraud is rare; the band around p = 0.5 sits near the top of the ranking, where AUPRC is made.)"""
    p = pool_posterior(probs, val_idx, y)
    return top_k(p * (1 - p), candidates, k)
