"""The synergistic alpha pool: a linear combination of at most K factors, fit to maximise train IC.

Maths (AlphaGen's linear pool). On each day d every factor is z-scored over the day's *target mask*
(stocks with a finite target that are valid and in the universe); cells where the factor is NaN/inf
are filled with the day's mean (0) and the day is re-scaled to unit variance, so for two such
z-scored matrices ``a, b`` (D, S) the mean daily Pearson correlation is a weighted dot product

    IC(a, b) = sum_{d,s} a[d,s] * b[d,s] / (n_d * D_eff)        (n_d stocks on day d, D_eff days)

With ``r`` the members' ICs with the target and ``Sigma`` their mutual-IC matrix, the combination
``c = sum_i w_i z_i`` that minimises the pooled squared error to the z-scored target (equivalently,
maximises the IC proxy ``w'r / sqrt(w' Sigma w)``) is ``w = (Sigma + l2 I)^-1 r`` (ridge keeps
near-collinear pools stable). The pool's *objective* is the exact mean daily IC of ``c``.

Admission (:meth:`AlphaPool.try_add`), in order, each failure named in ``AddResult.reason``:

* ``nan``: fewer than ``min_valid_frac`` of the masked cells are finite -> rejected;
* ``constant``: the factor has (near) zero cross-sectional variance on nearly every day -> rejected;
* ``weak``: |IC| < ``min_abs_ic`` -> rejected;
* ``duplicate``: mutual |IC| with a member > ``max_mutual_ic``; if the newcomer has the larger |IC|
  it *replaces* that member (kept only if the objective improves), otherwise rejected;
* otherwise it joins, weights are refit and, over capacity, the member whose removal costs the
  least objective (leave-one-out on the closed form) is evicted;
* ``no_gain``: the new objective is not above the old one (+ ``improve_eps``) -> the pool is
  restored unchanged ("admit only if it helps").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def zscore_days(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Z-score ``x`` (D, S) per day over ``mask`` (D, S) bool.

    Returns ``(z, finite_frac, live_day_frac)``: ``z`` (D, S) float32 with zeros outside the mask
    and at non-finite cells, unit variance per day over the mask (days with no spread are all 0);
    ``finite_frac`` = finite cells / masked cells; ``live_day_frac`` = share of days with spread.
    """
    x = x.to(torch.float32)
    fin = torch.isfinite(x) & mask
    n_mask = mask.sum(1).clamp(min=1).to(torch.float32)  # (D,)
    n_fin = fin.sum(1).to(torch.float32)
    xf = torch.where(fin, x, torch.zeros((), dtype=x.dtype))
    mean = xf.sum(1) / n_fin.clamp(min=1)
    dev = torch.where(fin, x - mean[:, None], torch.zeros((), dtype=x.dtype))
    ss = (dev * dev).sum(1) / n_mask  # variance over the mask after filling NaN with the mean
    scale = torch.sqrt(ss)
    # a day is "live" when the factor has relative spread there (guards constants and float noise)
    live = (n_fin >= 2) & (scale > 1e-6 * (mean.abs() + 1e-12)) & (scale > 1e-20)
    z = torch.where(live[:, None], dev / torch.where(live, scale, torch.ones_like(scale))[:, None],
                    torch.zeros((), dtype=x.dtype))
    total = float(mask.sum())
    finite_frac = float(fin.sum()) / total if total > 0 else 0.0
    days = int((mask.sum(1) > 0).sum())
    live_frac = float((live & (mask.sum(1) > 0)).sum()) / max(days, 1)
    return z, finite_frac, live_frac


@dataclass
class PoolMember:
    """One factor in the pool. ``z`` (D, S) is its z-scored training matrix."""

    key: str
    tokens: tuple[str, ...]
    formula: str
    ic: float
    z: torch.Tensor = field(repr=False)
    weight: float = 0.0


@dataclass
class AddResult:
    admitted: bool
    reason: str  # "admitted" | "replaced" | "nan" | "constant" | "weak" | "duplicate" | "no_gain" | "known"
    ic: float  # the candidate's train IC (nan when not computed)
    objective: float  # the pool objective after the attempt
    max_mutual: float = float("nan")


class AlphaPool:
    """Capacity-K linear alpha pool on a training target. All tensors are (D, S) on CPU."""

    def __init__(self, target: torch.Tensor, mask: torch.Tensor | None = None, *, capacity: int = 20,
                 max_mutual_ic: float = 0.9, min_abs_ic: float = 0.005, min_valid_frac: float = 0.5,
                 min_live_day_frac: float = 0.5, l2: float = 1e-3, improve_eps: float = 1e-5) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        target = torch.as_tensor(target, dtype=torch.float32)
        m = torch.isfinite(target)
        if mask is not None:
            m &= torch.as_tensor(mask, dtype=torch.bool)
        self.mask = m
        self.capacity = capacity
        self.max_mutual_ic, self.min_abs_ic = max_mutual_ic, min_abs_ic
        self.min_valid_frac, self.min_live_day_frac = min_valid_frac, min_live_day_frac
        self.l2, self.improve_eps = l2, improve_eps
        self.zy, _, _ = zscore_days(target, m)
        self.n_day = m.sum(1).to(torch.float32)  # (D,)
        self.day_ok = self.n_day >= 2
        d_eff = max(int(self.day_ok.sum()), 1)
        # per-cell weight turning a dot product of z-matrices into a mean daily correlation
        self.cell_w = torch.where(self.day_ok, 1.0 / (self.n_day.clamp(min=1) * d_eff),
                                  torch.zeros_like(self.n_day))  # (D,)
        self.zy_w = self.zy * self.cell_w[:, None]
        self.members: list[PoolMember] = []
        self.mutual = np.zeros((0, 0))  # (K, K) mutual ICs of members
        self.objective = 0.0
        self.n_tried = 0
        self.reasons: dict[str, int] = {}

    # ---- statistics ---------------------------------------------------------------------------
    def prepare(self, values: torch.Tensor) -> tuple[torch.Tensor | None, float, str]:
        """Z-score a candidate; returns ``(z, ic, reason)`` with ``z=None`` when it is unusable."""
        z, finite_frac, live_frac = zscore_days(torch.as_tensor(values), self.mask)
        if finite_frac < self.min_valid_frac:
            return None, float("nan"), "nan"
        if live_frac < self.min_live_day_frac:
            return None, float("nan"), "constant"
        ic = float((z * self.zy_w).sum())
        if not math.isfinite(ic):
            return None, float("nan"), "nan"
        return z, ic, "ok"

    def ic_of(self, z: torch.Tensor) -> float:
        return float((z * self.zy_w).sum())

    def mutual_with(self, z: torch.Tensor) -> np.ndarray:
        """Mutual ICs (K,) between ``z`` and the current members."""
        if not self.members:
            return np.zeros(0)
        zw = z * self.cell_w[:, None]
        return np.array([float((m.z * zw).sum()) for m in self.members])

    def _fit(self, r: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        k = len(r)
        return np.linalg.solve(sigma + self.l2 * np.eye(k), r)

    def _proxy(self, r: np.ndarray, sigma: np.ndarray) -> float:
        """Closed-form IC proxy w'r / sqrt(w' Sigma w) at the fitted weights."""
        if len(r) == 0:
            return 0.0
        w = self._fit(r, sigma)
        den = float(w @ sigma @ w)
        return float(w @ r) / math.sqrt(den) if den > 0 else 0.0

    def combined_ic(self, zs: list[torch.Tensor], w: np.ndarray) -> tuple[float, float]:
        """Exact (mean daily IC, ICIR) of ``sum_i w_i zs_i`` against the training target."""
        if not zs:
            return 0.0, 0.0
        c = torch.zeros_like(self.zy)
        for zi, wi in zip(zs, w):
            c.add_(zi, alpha=float(wi))
        cov = (c * self.zy).sum(1)
        var = (c * c).sum(1)
        ok = self.day_ok & (var > 0)
        ic_d = cov[ok] / torch.sqrt(var[ok] * self.n_day[ok])  # zy has unit variance per day
        if ic_d.numel() == 0:
            return 0.0, 0.0
        # days where the combination is flat count as IC 0
        n_days = int(self.day_ok.sum())
        mean = float(ic_d.sum()) / n_days
        sd = float(ic_d.std()) if ic_d.numel() > 1 else 0.0
        return mean, (mean / sd if sd > 0 else 0.0)

    # ---- admission ----------------------------------------------------------------------------
    def _state(self) -> tuple[list[PoolMember], np.ndarray, float]:
        return list(self.members), self.mutual.copy(), self.objective

    def _restore(self, state: tuple[list[PoolMember], np.ndarray, float]) -> None:
        self.members, self.mutual, self.objective = state[0], state[1], state[2]

    def _refit(self) -> None:
        r = np.array([m.ic for m in self.members])
        w = self._fit(r, self.mutual) if len(r) else np.zeros(0)
        for m, wi in zip(self.members, w):
            m.weight = float(wi)
        self.objective, _ = self.combined_ic([m.z for m in self.members], w)

    def _evict_one(self) -> None:
        """Drop the member whose removal leaves the best closed-form objective."""
        r = np.array([m.ic for m in self.members])
        best, best_val = 0, -np.inf
        for i in range(len(r)):
            keep = [j for j in range(len(r)) if j != i]
            val = self._proxy(r[keep], self.mutual[np.ix_(keep, keep)])
            if val > best_val:
                best, best_val = i, val
        keep = [j for j in range(len(r)) if j != best]
        self.members = [self.members[j] for j in keep]
        self.mutual = self.mutual[np.ix_(keep, keep)]

    def _insert(self, member: PoolMember, mut: np.ndarray) -> None:
        k = len(self.members)
        sigma = np.ones((k + 1, k + 1))
        sigma[:k, :k] = self.mutual
        sigma[k, :k] = sigma[:k, k] = mut
        self.members = self.members + [member]
        self.mutual = sigma

    def _remove(self, idx: int) -> None:
        keep = [j for j in range(len(self.members)) if j != idx]
        self.members = [self.members[j] for j in keep]
        self.mutual = self.mutual[np.ix_(keep, keep)]

    def __contains__(self, key: str) -> bool:
        return any(m.key == key for m in self.members)

    def try_add(self, key: str, tokens: tuple[str, ...] | list[str], formula: str,
                values: torch.Tensor | None = None, *, prepared: tuple[torch.Tensor | None, float, str] | None = None
                ) -> AddResult:
        """Offer a factor (its raw (D, S) ``values`` or a :meth:`prepare` result); see module doc."""
        self.n_tried += 1
        res = self._try_add(key, tuple(tokens), formula, values, prepared)
        self.reasons[res.reason] = self.reasons.get(res.reason, 0) + 1
        return res

    def _try_add(self, key: str, tokens: tuple[str, ...], formula: str, values: Any, prepared: Any) -> AddResult:
        if key in self:
            return AddResult(False, "known", float("nan"), self.objective)
        z, ic, why = prepared if prepared is not None else self.prepare(values)
        if z is None:
            return AddResult(False, why, ic, self.objective)
        if abs(ic) < self.min_abs_ic:
            return AddResult(False, "weak", ic, self.objective)
        mut = self.mutual_with(z)
        max_mut = float(np.abs(mut).max()) if len(mut) else 0.0
        old = self._state()
        member = PoolMember(key, tokens, formula, ic, z)
        if max_mut > self.max_mutual_ic:
            j = int(np.abs(mut).argmax())
            if abs(ic) <= abs(self.members[j].ic):
                return AddResult(False, "duplicate", ic, self.objective, max_mut)
            self._remove(j)
            mut = np.delete(mut, j)
            if len(mut) and np.abs(mut).max() > self.max_mutual_ic:
                self._restore(old)
                return AddResult(False, "duplicate", ic, self.objective, max_mut)
            reason = "replaced"
        else:
            reason = "admitted"
        self._insert(member, mut)
        while len(self.members) > self.capacity:
            self._evict_one()
        if not any(m is member for m in self.members):
            self._restore(old)
            return AddResult(False, "no_gain", ic, self.objective, max_mut)
        self._refit()
        if self.objective <= old[2] + self.improve_eps:
            self._restore(old)
            self._refit_weights_only()
            return AddResult(False, "no_gain", ic, self.objective, max_mut)
        return AddResult(True, reason, ic, self.objective, max_mut)

    def _refit_weights_only(self) -> None:
        r = np.array([m.ic for m in self.members])
        w = self._fit(r, self.mutual) if len(r) else np.zeros(0)
        for m, wi in zip(self.members, w):
            m.weight = float(wi)

    # ---- views --------------------------------------------------------------------------------
    @property
    def weights(self) -> np.ndarray:
        return np.array([m.weight for m in self.members])

    def combination(self) -> torch.Tensor:
        """The combined training factor (D, S)."""
        c = torch.zeros_like(self.zy)
        for m in self.members:
            c.add_(m.z, alpha=m.weight)
        return c

    def describe(self) -> list[dict[str, Any]]:
        """Members as JSON-able dicts (tokens, formula, weight, train IC), in pool order."""
        return [{"tokens": list(m.tokens), "formula": m.formula, "weight": m.weight, "train_ic": m.ic}
                for m in self.members]

    def state(self) -> dict[str, Any]:
        """Serializable state (no tensors): rebuild with :meth:`restore_members`."""
        return {"members": self.describe(), "keys": [m.key for m in self.members],
                "objective": self.objective, "n_tried": self.n_tried, "reasons": dict(self.reasons)}

    def load_members(self, items: list[tuple[str, tuple[str, ...], str, torch.Tensor]]) -> None:
        """Rebuild the pool from ``(key, tokens, formula, raw values)`` (a checkpoint) without gating."""
        self.members, self.mutual = [], np.zeros((0, 0))
        for key, tokens, formula, values in items:
            z, ic, why = self.prepare(values)
            if z is None:
                continue
            self._insert(PoolMember(key, tuple(tokens), formula, ic, z), self.mutual_with(z))
        while len(self.members) > self.capacity:
            self._evict_one()
        self._refit()
