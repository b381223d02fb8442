"""How a pool's members are combined out of sample: the weights fitted on train, or re-fitted walk-forward.

A mined pool (or any linear factor set, e.g. the Alpha158-style baseline) is ``sum_i w_i z_i``: its members
z-scored per day, with weights fitted on the train split. Those weights go stale: on the crypto panel a
re-fit on the last 250 days added +0.04 to +0.10 test RankIC to every linear signal, mined or handcrafted
(``bench/results/mining_pool_reweight.md``); on the US panel +0.001 to +0.002.

Combiners (:data:`COMBINERS`):

* ``fitted``: the train weights, every day (what runs reported before stop 21);
* ``refit250`` / ``refit500`` / ``refit1000``: on every day t after the train split, the weights re-fitted by
  ridge least squares of the day-z-scored target on the members over the last W trading days whose targets
  are realised by t (days < t - horizon: nothing looks ahead), shrunk toward the train weights' direction
  (ridge ``shrink`` x 1% of the window's cells); ``refit1000s``: W = 1000, strongly shrunk;
* ``auto`` (the default of ``factors mine``): whichever of the above has the best RankIC on the **valid**
  split (``fitted`` on a tie, and where there is no valid split). Test figures are recorded, never used.

On train days every combiner is the fitted signal (a re-fit needs realised days after train). A window
with fewer than 10 cells per member keeps the train weights for that day.

Memory: the members' per-day Gram matrices (D', M, M) float32 over the days the windows read, and blocks
of z-scored members (B, S, M) of at most :data:`BLOCK_BYTES`. Above :data:`GRAM_LIMIT_BYTES` (a very large
pool on a long panel) the re-fits are skipped, ``fitted`` is used, and the record says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from finllm.errors import ConfigError

if TYPE_CHECKING:
    from factors.scoring import SplitScorer

Members = list[tuple[list[str], float]]  # (postfix tokens, train weight)


@dataclass(frozen=True)
class Refit:
    name: str
    window: int  # trading days of realised targets
    shrink: float  # ridge toward the train direction, x 1% of the window's cells


REFITS = (Refit("refit250", 250, 10.0), Refit("refit500", 500, 10.0), Refit("refit1000", 1000, 10.0),
          Refit("refit1000s", 1000, 1000.0))
COMBINERS = ("auto", "fitted", *(r.name for r in REFITS))
GRAM_LIMIT_BYTES = 1 << 30
BLOCK_BYTES = 256 << 20


def check_combiner(name: str) -> str:
    if name not in COMBINERS:
        raise ConfigError(f"--combiner {name!r}: choose one of {', '.join(COMBINERS)}")
    return name


def _first_out_of_sample(sc: SplitScorer) -> int | None:
    """Index of the first panel day after the first (train) split's last day, or None (one split)."""
    if len(sc.splits) < 2:
        return None
    end = sc.splits[0].end
    if end is None:
        return None
    i = int(np.searchsorted(np.asarray(sc.panel.dates).astype("datetime64[D]"), end, "right"))
    return i if i < len(sc.panel.dates) else None


def _z_block(sc: SplitScorer, members: Members, lo: int, hi: int, need: int | None) -> torch.Tensor:
    """The members z-scored per day on days [lo, hi): (hi - lo, S, M) float32, zeros off the universe.

    Evaluated on days [lo - need, hi) only, ``need`` being the most history any member needs
    (:func:`factors.splits.history_needed`, exact): the values are the whole panel's at the cost of the block
    (bit for bit, except windowed moments such as ``Std`` or ``Cov``, which accumulate from the evaluated
    panel's first day and can differ in float32's last bits: at most 2.4e-7 on a z-score in 120 members).
    ``need=None`` evaluates the whole panel per block, the former way and the baseline of
    ``bench/bench_pool_scoring.py``: once the pool outgrows the scorer's cache, every block re-evaluates every
    member from scratch."""
    from factors.evaluate import Evaluator
    from factors.pool import zscore_days

    start = 0 if need is None else max(0, lo - need)
    dates = sc.panel.dates
    whole = need is None or (start, hi) == (0, len(dates))
    ev = sc.ev if whole else Evaluator(sc.panel.slice_dates(dates[start], dates[hi - 1]))
    m = sc.mask[lo:hi]
    return torch.stack([zscore_days(ev.evaluate(t)[lo - start:hi - start], m)[0] for t, _ in members], -1)


class _Window:
    """Sums of the per-day Gram matrices, target products and cell counts over a sliding window of days."""

    def __init__(self, m: int) -> None:
        self.G = torch.zeros(m, m, dtype=torch.float64)
        self.b = torch.zeros(m, dtype=torch.float64)
        self.n, self.lo, self.hi = 0.0, 0, 0

    def slide(self, lo: int, hi: int, G: torch.Tensor, b: torch.Tensor, cells: torch.Tensor) -> None:
        """Move to rows [lo, hi) of the per-day arrays (both ends only move forward)."""
        while self.hi < hi:
            self.G += G[self.hi].double()
            self.b += b[self.hi]
            self.n += float(cells[self.hi])
            self.hi += 1
        while self.lo < lo:
            self.G -= G[self.lo].double()
            self.b -= b[self.lo]
            self.n -= float(cells[self.lo])
            self.lo += 1


def combiner_signals(sc: SplitScorer, members: Members, names: tuple[str, ...] | None = None, *,
                     block_panels: bool = True) -> tuple[dict[str, torch.Tensor], str | None]:
    """``({combiner: (D, S) signal, NaN off the universe}, why the re-fits were skipped or None)`` for
    ``fitted`` and each re-fit of ``names`` (default all), for members given as expressions.
    ``block_panels=False``: evaluate the whole panel for every block of days (the bench's baseline)."""
    from factors.splits import history_needed

    w = torch.tensor([wi for _, wi in members], dtype=torch.float64)
    need = history_needed([t for t, _ in members]) if block_panels else None
    return _signals(sc, lambda lo, hi: _z_block(sc, members, lo, hi, need), w, sc.combine(members), names)


def feature_combiner_signals(sc: SplitScorer, feats: torch.Tensor, weights: torch.Tensor,
                             names: tuple[str, ...] | None = None) -> tuple[dict[str, torch.Tensor], str | None]:
    """:func:`combiner_signals` for members already evaluated and z-scored: ``feats`` (F, D, S), NaN where
    undefined (read as 0, as the fitted combination does), ``weights`` (F,) fitted on train."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    fitted = torch.zeros(sc.mask.shape)
    for i, wi in enumerate(w.tolist()):
        fitted.add_(torch.nan_to_num(feats[i], nan=0.0), alpha=wi)
    return _signals(sc, lambda lo, hi: torch.nan_to_num(feats[:, lo:hi], nan=0.0).permute(1, 2, 0), w,
                    sc.masked(fitted), names)


def _signals(sc: SplitScorer, z_block: Callable[[int, int], torch.Tensor], w_fit: torch.Tensor,
             fitted: torch.Tensor, names: tuple[str, ...] | None) -> tuple[dict[str, torch.Tensor], str | None]:
    """One pass over blocks of days: each block's members (``z_block(lo, hi)``: (hi - lo, S, M), zeros where
    undefined) are built once, their per-day Gram matrices stored, and each day's weights solved from the
    windows of earlier, realised days."""
    sig = {"fitted": fitted}
    refits = tuple(r for r in REFITS if names is None or r.name in names)
    M = len(w_fit)
    if not M or not refits:
        return sig, None
    first = _first_out_of_sample(sc)
    if first is None:
        return sig, "no day after the train split"
    D, S = sc.mask.shape
    h = sc.horizon
    lo_day = max(0, first - h - max(r.window for r in refits))
    n_days = D - lo_day
    if n_days * M * M * 4 > GRAM_LIMIT_BYTES:
        return sig, (f"{M} members over {n_days} days need {n_days * M * M * 4 / 2**30:.1f} GiB of Gram "
                     f"matrices (limit {GRAM_LIMIT_BYTES / 2**30:.0f} GiB)")
    ok = torch.isfinite(sc.target) & sc.mask
    tz = torch.where(ok, sc.zscore(sc.target), torch.zeros(())).double()
    G = torch.empty(n_days, M, M)  # per-day Gram of the members over the cells with a realised target
    b = torch.empty(n_days, M, dtype=torch.float64)
    cells = ok[lo_day:].sum(1).double()
    eye = torch.eye(M, dtype=torch.float64)
    windows = {r.name: _Window(M) for r in refits}
    out = {r.name: fitted.clone() for r in refits}
    step = max(1, BLOCK_BYTES // max(S * M * 8, 1))
    for lo in range(lo_day, D, step):
        hi = min(D, lo + step)
        Z = z_block(lo, hi)
        Zok = torch.where(ok[lo:hi, :, None], Z, torch.zeros(())).double()
        G[lo - lo_day:hi - lo_day] = torch.einsum("dsm,dsn->dmn", Zok, Zok).float()
        b[lo - lo_day:hi - lo_day] = torch.einsum("dsm,ds->dm", Zok, tz[lo:hi])
        del Zok
        for r in refits:
            win, x = windows[r.name], out[r.name]
            for d in range(max(lo, first), hi):
                # targets of days < d - h are realised on day d
                win.slide(max(0, d - h - r.window - lo_day), d - h - lo_day, G, b, cells)
                if win.n < 10 * M:
                    continue  # too few realised cells: the train weights stay
                lam = r.shrink * win.n / 100
                w0 = w_fit * float(win.b @ w_fit) / max(float(w_fit @ win.G @ w_fit), 1e-12)  # train direction
                w = torch.linalg.solve(win.G + lam * eye, win.b + lam * w0)
                x[d] = Z[d - lo] @ w.float()
    return {"fitted": fitted, **{k: sc.masked(v) for k, v in out.items()}}, None


def _split_rank_ic(sc: SplitScorer, x: torch.Tensor, split: str) -> float | None:
    from factors.metrics import rank_ic_series

    days = sc.days.get(split)
    if days is None or not bool(days.any()):
        return None
    s = rank_ic_series(x[days], sc.target[days], sc.mask[days])
    s = s[torch.isfinite(s)]
    return float(s.mean()) if s.numel() else None


def choose_on_valid(figures: dict[str, dict[str, float | None]]) -> str:
    """The ``auto`` rule: the combiner with the best valid RankIC (``figures[name]["valid"]``); ``fitted`` on a
    tie or where no candidate has a valid figure."""
    chosen, best = "fitted", figures.get("fitted", {}).get("valid")
    for k, f in figures.items():
        v = f.get("valid")
        if v is not None and (best is None or v > best):
            chosen, best = k, v
    return chosen


def pool_signal(sc: SplitScorer, members: Members, combiner: str = "auto", *,
                feats: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, object]]:
    """The pool's combined signal (D, S) under ``combiner`` and a record: the combiner asked for, the one
    used, and every candidate's valid and test RankIC (``auto`` chooses on valid only). ``feats``: members
    already evaluated, ``(F, D, S) z-scored values, (F,) weights)``, instead of ``members``."""
    check_combiner(combiner)
    names = None if combiner == "auto" else (combiner,)
    sig, skipped = (combiner_signals(sc, members, names) if feats is None
                    else feature_combiner_signals(sc, *feats, names))
    figures = {k: {"valid": _split_rank_ic(sc, v, "valid"), "test": _split_rank_ic(sc, v, "test")}
               for k, v in sig.items()}
    chosen = choose_on_valid(figures) if combiner == "auto" else combiner
    if chosen not in sig:  # an explicit re-fit that could not run
        chosen = "fitted"
    record: dict[str, object] = {"requested": combiner, "chosen": chosen, "candidates": figures}
    if skipped:
        record["skipped"] = skipped
    return sig[chosen], record
