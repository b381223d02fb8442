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
  restored unchanged ("admit only if it helps");
* ``valid_hurt`` (only with ``valid_frac > 0``): the pool's IC on the *inner validation window* drops
  by more than ``valid_eps`` -> restored unchanged.

Inner validation (``valid_frac > 0``, off by default). The last ``valid_frac`` of the pool's days with
a target form a validation window inside train; the ``valid_purge_days`` (the target's horizon) before it
are dropped, so no fitting day's forward return reaches into it. ICs, mutual ICs, weights and the
objective then use only the fitting days before that gap; the window only gates admission (a factor
must not lower the combination's mean daily IC there). It never touches the outer valid/test splits.

Day weights (``day_weights`` (D,), default all 1): every statistic above becomes a weighted mean over days
(the IC and mutual-IC dot products through ``cell_w``, the objective's mean daily IC), so a pool can be fit
on a bootstrap draw of its days (bagged restarts, :func:`factors.restarts.bag_weights`).

Objective (``objective``): ``"ic"`` (the default, AlphaGen's) is the combination's mean daily IC; ``"icir"`` is
its mean daily IC over the standard deviation of its daily ICs. Either way the weights are the ridge fit
above; the objective decides admission and eviction's last check, and is the RL reward.

Speed (the pool's statistics run once per mined factor):

* ``day_stride = k`` keeps every k-th training day for all pool statistics (z-scores, ICs, mutual ICs,
  weights, objective). Candidates are still *evaluated* on every day (rolling windows need them); only
  the statistics are thinned. With an h-day forward-return target consecutive daily ICs overlap
  almost entirely (h = 20: adjacent days share 19 of 20 return days), so k <= h/4 loses little
  information; the finished pool is always re-scored on every day (:mod:`factors.mine`).
* members' z-scores live in one (K + 2, D * S) float32 buffer: a candidate's mutual ICs with all
  members are one matrix-vector product, and so is the combination ``c = sum_i w_i z_i``;
* z-scoring plus the IC with the target is one fused numba pass (:func:`_zscore_kernel`);
* ``version`` counts changes of members or weights: a verdict (``duplicate``, ``no_gain``) found at
  one version is the verdict again at the same version (:class:`factors.rl.scorer.PoolScorer` caches it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import torch


@numba.njit(cache=True, nogil=True)
def _zscore_kernel(x: np.ndarray, mask: np.ndarray, out: np.ndarray, live: np.ndarray,
                   day_w: np.ndarray) -> tuple[int, float]:  # pragma: no cover - compiled
    """Per day d: mean/variance of finite x[d] over mask[d] (NaN filled with the mean), out[d] = z-scores
    (0 off the mask, at non-finite cells and on days without spread). Returns (finite masked cells,
    sum_d,s out * day_w[d, s]) -- the second is the IC with the target when ``day_w`` is the pool's
    weighted target, else 0 (``day_w`` empty)."""
    n_day, n_stock = x.shape
    n_fin_all = 0
    dot = 0.0
    use_w = day_w.shape[0] > 0
    for d in range(n_day):
        n_mask = 0
        n_fin = 0
        acc = 0.0
        for j in range(n_stock):
            if mask[d, j]:
                n_mask += 1
                v = x[d, j]
                if np.isfinite(v):
                    n_fin += 1
                    acc += v
        mean = acc / max(n_fin, 1)
        ss = 0.0
        for j in range(n_stock):
            if mask[d, j]:
                v = x[d, j]
                if np.isfinite(v):
                    ss += (v - mean) * (v - mean)
        scale = np.sqrt(ss / max(n_mask, 1))
        # a day is "live" when the factor has relative spread there (guards constants and float noise)
        ok = n_fin >= 2 and scale > 1e-6 * (abs(mean) + 1e-12) and scale > 1e-20
        live[d] = ok
        n_fin_all += n_fin
        if ok:
            inv = 1.0 / scale
            for j in range(n_stock):
                v = x[d, j]
                if mask[d, j] and np.isfinite(v):
                    zv = np.float32((v - mean) * inv)
                    out[d, j] = zv
                    if use_w:
                        dot += zv * day_w[d, j]
                else:
                    out[d, j] = 0.0
        else:
            for j in range(n_stock):
                out[d, j] = 0.0
    return n_fin_all, dot


_NO_W = np.zeros((0, 0), dtype=np.float32)


def warm_up() -> None:
    """Compile (after an install) or load the z-score kernel, with and without day weights."""
    x, m = torch.rand(4, 3), torch.ones(4, 3, dtype=torch.bool)
    _zscore(x, m)
    _zscore(x, m, np.ones((4, 3), dtype=np.float32))


def _zscore(x: torch.Tensor, mask: torch.Tensor, day_w: np.ndarray = _NO_W) -> tuple[torch.Tensor, float, float, float]:
    """(z, finite_frac, live_day_frac, dot with ``day_w``); see :func:`zscore_days`."""
    xa = torch.as_tensor(x).detach().to(torch.float32).numpy()
    ma = torch.as_tensor(mask, dtype=torch.bool).numpy()
    out = np.empty(xa.shape, dtype=np.float32)
    live = np.zeros(xa.shape[0], dtype=np.bool_)
    n_fin, dot = _zscore_kernel(xa, ma, out, live, day_w)
    n_mask_day = ma.sum(1)
    total = int(n_mask_day.sum())
    finite_frac = n_fin / total if total > 0 else 0.0
    has = n_mask_day > 0
    live_frac = float((live & has).sum()) / max(int(has.sum()), 1)
    return torch.from_numpy(out), finite_frac, live_frac, float(dot)


def zscore_days(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Z-score ``x`` (D, S) per day over ``mask`` (D, S) bool.

    Returns ``(z, finite_frac, live_day_frac)``: ``z`` (D, S) float32 with zeros outside the mask
    and at non-finite cells, unit variance per day over the mask (days with no spread are all 0);
    ``finite_frac`` = finite cells / masked cells; ``live_day_frac`` = share of days with spread.
    Sums are accumulated in float64.
    """
    z, finite_frac, live_frac, _ = _zscore(x, mask)
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
    row: int = -1  # its row in the pool's member buffer


@dataclass
class AddResult:
    admitted: bool
    reason: str  # "admitted" | "replaced" | "nan" | "constant" | "weak" | "duplicate" | "no_gain" | "valid_hurt" | "known"
    ic: float  # the candidate's train IC (nan when not computed)
    objective: float  # the pool objective after the attempt
    max_mutual: float = float("nan")


class AlphaPool:
    """Capacity-K linear alpha pool on a training target. Inputs are (D, S) on CPU; the statistics use
    every ``day_stride``-th day (D' = ceil(D / day_stride) rows)."""

    def __init__(self, target: torch.Tensor, mask: torch.Tensor | None = None, *, capacity: int = 20,
                 max_mutual_ic: float = 0.9, min_abs_ic: float = 0.005, min_valid_frac: float = 0.5,
                 min_live_day_frac: float = 0.5, l2: float = 1e-3, improve_eps: float = 1e-5,
                 day_stride: int = 1, valid_frac: float = 0.0, valid_purge_days: int = 0,
                 valid_eps: float = 0.0, day_weights: np.ndarray | None = None, objective: str = "ic") -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        if day_stride < 1:
            raise ValueError("day_stride must be >= 1")
        if not 0.0 <= valid_frac < 0.5:
            raise ValueError("valid_frac must be in [0, 0.5)")
        if objective not in ("ic", "icir"):
            raise ValueError("objective must be 'ic' or 'icir'")
        self.objective_kind = objective
        self.day_stride = int(day_stride)
        n_full = int(torch.as_tensor(target).shape[0])
        target = torch.as_tensor(target, dtype=torch.float32)[::self.day_stride]
        m = torch.isfinite(target)
        if mask is not None:
            m &= torch.as_tensor(mask, dtype=torch.bool)[::self.day_stride]
        self.mask = m.contiguous()
        self.capacity = capacity
        self.max_mutual_ic, self.min_abs_ic = max_mutual_ic, min_abs_ic
        self.min_valid_frac, self.min_live_day_frac = min_valid_frac, min_live_day_frac
        self.l2, self.improve_eps = l2, improve_eps
        self.zy, _, _ = zscore_days(target, m)
        self.n_day = m.sum(1).to(torch.float32)  # (D,)
        self.day_ok = self.n_day >= 2
        self.val_days, self.valid_eps = self._split_inner_valid(valid_frac, valid_purge_days), valid_eps
        self.val_objective = 0.0
        self.day_w = self._day_weights(day_weights, n_full)  # (D',), mean 1 over the fitting days
        d_eff = max(int(self.day_ok.sum()), 1)
        # per-cell weight turning a dot product of z-matrices into a (day-weighted) mean daily correlation
        self.cell_w = torch.where(self.day_ok, self.day_w / (self.n_day.clamp(min=1) * d_eff),
                                  torch.zeros_like(self.n_day))  # (D,)
        self.zy_w = self.zy * self.cell_w[:, None]
        self._zy_w_np = self.zy_w.numpy()
        self.shape = tuple(self.zy.shape)
        # members' z rows; K + 2 rows so that a failed attempt (one new member in, one replaced member
        # out) never overwrites a row of the state it restores
        self._buf = torch.zeros(capacity + 2, self.zy.numel())
        self._pinned: set[int] = set()
        self.members: list[PoolMember] = []
        self.mutual = np.zeros((0, 0))  # (K, K) mutual ICs of members
        self.objective = 0.0
        self.version = 0  # bumped whenever members or weights change
        self.n_tried = 0
        self.reasons: dict[str, int] = {}

    def _day_weights(self, weights: np.ndarray | None, n_full: int) -> torch.Tensor:
        """``weights`` (D,) (one per target day, before the stride; finite, >= 0) as (D',) float32 with mean 1
        over the fitting days; all ones when None."""
        if weights is None:
            return torch.ones(self.day_ok.shape[0])
        w = np.asarray(weights, dtype=np.float32)
        if w.shape != (n_full,) or not np.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"day_weights: need {n_full} finite weights >= 0 (one per target day), got shape {w.shape}")
        w = torch.from_numpy(np.ascontiguousarray(w[::self.day_stride]))
        mean = float(w[self.day_ok].mean()) if bool(self.day_ok.any()) else 0.0
        if not mean > 0:
            raise ValueError("day_weights: every fitting day has weight 0")
        return w / mean

    def _split_inner_valid(self, frac: float, purge_days: int) -> torch.Tensor | None:
        """Cut the last ``frac`` of the target days off as the inner validation window (D',) bool; drop the
        purge gap before it from ``day_ok`` (the fitting days). None when off."""
        if frac <= 0:
            return None
        rows = torch.nonzero(self.day_ok).squeeze(1)
        n_val = int(round(len(rows) * frac))
        gap = math.ceil(purge_days / self.day_stride)
        if n_val < 2 or len(rows) - n_val - gap < 2:
            raise ValueError(f"valid_frac {frac}: too few days ({len(rows)}) for an inner validation window")
        cut = int(rows[len(rows) - n_val])
        val = torch.zeros_like(self.day_ok)
        val[cut:] = self.day_ok[cut:]
        self.day_ok = self.day_ok.clone()
        self.day_ok[max(cut - gap, 0):] = False
        return val

    # ---- statistics ---------------------------------------------------------------------------
    def prepare(self, values: torch.Tensor) -> tuple[torch.Tensor | None, float, str]:
        """Z-score a candidate's (D, S) values on the pool's days; returns ``(z, ic, reason)`` (z (D', S)),
        ``z=None`` when it is unusable."""
        z, finite_frac, live_frac, ic = _zscore(torch.as_tensor(values)[::self.day_stride], self.mask,
                                                self._zy_w_np)
        if finite_frac < self.min_valid_frac:
            return None, float("nan"), "nan"
        if live_frac < self.min_live_day_frac:
            return None, float("nan"), "constant"
        if not math.isfinite(ic):
            return None, float("nan"), "nan"
        return z, ic, "ok"

    def ic_of(self, z: torch.Tensor) -> float:
        return float((z * self.zy_w).sum())

    def mutual_with(self, z: torch.Tensor) -> np.ndarray:
        """Mutual ICs (K,) between ``z`` (D', S) and the current members (one matrix-vector product)."""
        if not self.members:
            return np.zeros(0)
        zw = (z * self.cell_w[:, None]).reshape(-1)
        allrows = torch.mv(self._buf, zw).double().numpy()
        return allrows[[m.row for m in self.members]]

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

    def _members_combination(self, w: np.ndarray) -> torch.Tensor:
        """``sum_i w_i z_i`` over the current members (D', S), one matrix-vector product."""
        wfull = torch.zeros(self._buf.shape[0])
        for m, wi in zip(self.members, w):
            wfull[m.row] = float(wi)
        return torch.mv(self._buf.t(), wfull).view(self.shape)

    def combined_ic(self, zs: list[torch.Tensor], w: np.ndarray) -> tuple[float, float]:
        """Exact (mean daily IC, ICIR) of ``sum_i w_i zs_i`` (each (D', S)) against the training target."""
        if not zs:
            return 0.0, 0.0
        c = torch.zeros_like(self.zy)
        for zi, wi in zip(zs, w):
            c.add_(zi, alpha=float(wi))
        return self._ic_of_combination(c)

    def _ic_of_combination(self, c: torch.Tensor, days: torch.Tensor | None = None) -> tuple[float, float]:
        """(mean daily IC, ICIR) of ``c`` (D', S) on ``days`` (D',) bool, default the fitting days. The mean is
        weighted by the day weights (all 1 unless bagged); the ICIR's standard deviation is unweighted."""
        days = self.day_ok if days is None else days
        cov = (c * self.zy).sum(1)
        var = (c * c).sum(1)
        ok = days & (var > 0)
        ic_d = cov[ok] / torch.sqrt(var[ok] * self.n_day[ok])  # zy has unit variance per day
        if ic_d.numel() == 0:
            return 0.0, 0.0
        # days where the combination is flat count as IC 0
        mean = float((ic_d * self.day_w[ok]).sum()) / max(float(self.day_w[days].sum()), 1e-12)
        sd = float(ic_d.std()) if ic_d.numel() > 1 else 0.0
        return mean, (mean / sd if sd > 0 else 0.0)

    def _objective_of(self, c: torch.Tensor, days: torch.Tensor | None = None) -> float:
        """The admission objective of ``c`` (D', S): its mean daily IC, or its ICIR (``objective="icir"``)."""
        mean, icir = self._ic_of_combination(c, days)
        return icir if self.objective_kind == "icir" else mean

    # ---- admission ----------------------------------------------------------------------------
    def _state(self) -> tuple[list[PoolMember], np.ndarray, float, float]:
        return list(self.members), self.mutual.copy(), self.objective, self.val_objective

    def _restore(self, state: tuple[list[PoolMember], np.ndarray, float, float]) -> None:
        self.members, self.mutual, self.objective, self.val_objective = state

    def _refit(self) -> None:
        r = np.array([m.ic for m in self.members])
        w = self._fit(r, self.mutual) if len(r) else np.zeros(0)
        for m, wi in zip(self.members, w):
            m.weight = float(wi)
        if not len(r):
            self.objective = self.val_objective = 0.0
            return
        c = self._members_combination(w)
        self.objective = self._objective_of(c)
        if self.val_days is not None:
            self.val_objective = self._objective_of(c, self.val_days)

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
        used = {m.row for m in self.members} | self._pinned
        row = next(r for r in range(self._buf.shape[0]) if r not in used)
        self._buf[row].copy_(member.z.reshape(-1))
        member.row, member.z = row, self._buf[row].view(self.shape)
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
        self._pinned = {m.row for m in old[0]}
        try:
            res = self._attempt(key, tokens, formula, z, ic, mut, max_mut, old)
        finally:
            self._pinned = set()
        if res.admitted:
            self.version += 1
        return res

    def _attempt(self, key: str, tokens: tuple[str, ...], formula: str, z: torch.Tensor, ic: float,
                 mut: np.ndarray, max_mut: float, old: tuple[list[PoolMember], np.ndarray, float, float]
                 ) -> AddResult:
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
        if self.val_days is not None and self.val_objective < old[3] - self.valid_eps:
            self._restore(old)
            self._refit_weights_only()
            return AddResult(False, "valid_hurt", ic, self.objective, max_mut)
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
        """The combined training factor on the pool's days (D', S)."""
        if not self.members:
            return torch.zeros_like(self.zy)
        return self._members_combination(self.weights).clone()

    def describe(self) -> list[dict[str, Any]]:
        """Members as JSON-able dicts (tokens, formula, weight, train IC, whether it is scale-free: see
        :mod:`factors.units`), in pool order."""
        from factors.units import tokens_scale_free

        return [{"tokens": list(m.tokens), "formula": m.formula, "weight": m.weight, "train_ic": m.ic,
                 "scale_free": tokens_scale_free(m.tokens)} for m in self.members]

    def state(self) -> dict[str, Any]:
        """Serializable state (no tensors): rebuild with :meth:`load_members` (re-evaluating each member's
        ``tokens``)."""
        return {"members": self.describe(), "keys": [m.key for m in self.members],
                "objective": self.objective, "inner_valid_objective": self.val_objective,
                "n_tried": self.n_tried, "reasons": dict(self.reasons)}

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
        self.version += 1
