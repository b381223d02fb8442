"""Alpha158-style handcrafted factors (Qlib's classic set) in our expression language, and their
linear combination fit on train.

The set follows Qlib's ``Alpha158`` feature handler: 9 candlestick (KBAR) features, 4 price ratios
and, for windows 5/10/20/30/60, the rolling families ROC, MA, STD, BETA, MAX, MIN, RANK, RSV, IMAX,
IMIN, IMXD, CORR, CORD, CNTP, CNTN, CNTD, SUMP, SUMN, SUMD, VMA, VSTD, WVMA, VSUMP, VSUMN, VSUMD.
Differences from Qlib, forced by the operator set: no RSQR/RESI/QTLU/QTLD (no Rsquare, Resi or
Quantile operators), so 138 factors instead of 158; indicator means (``close > Ref(close, 1)``) are
written with ``Sign``: ``CNTP = Mean(Greater(Sign(Delta(close, 1)), 0), d)``; BETA is ``Slope``; vwap
is the typical price when the panel has no vwap column (see ``factors.panel``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from factors.evaluate import Evaluator
    from factors.mine import SplitScorer

WINDOWS = (5, 10, 20, 30, 60)
EPS = "0.000000000001"


def alpha158_style(windows: tuple[int, ...] = WINDOWS) -> dict[str, str]:
    """Name -> infix expression."""
    c, o, h, l, v, vw = "$close", "$open", "$high", "$low", "$volume", "$vwap"
    f: dict[str, str] = {
        "KMID": f"({c}-{o})/{o}",
        "KLEN": f"({h}-{l})/{o}",
        "KMID2": f"({c}-{o})/({h}-{l}+{EPS})",
        "KUP": f"({h}-Greater({o}, {c}))/{o}",
        "KUP2": f"({h}-Greater({o}, {c}))/({h}-{l}+{EPS})",
        "KLOW": f"(Less({o}, {c})-{l})/{o}",
        "KLOW2": f"(Less({o}, {c})-{l})/({h}-{l}+{EPS})",
        "KSFT": f"(2*{c}-{h}-{l})/{o}",
        "KSFT2": f"(2*{c}-{h}-{l})/({h}-{l}+{EPS})",
        "OPEN0": f"{o}/{c}",
        "HIGH0": f"{h}/{c}",
        "LOW0": f"{l}/{c}",
        "VWAP0": f"{vw}/{c}",
    }
    ret = f"({c}/Ref({c}, 1)-1)"
    up = f"Greater(Sign(Delta({c}, 1)), 0)"
    dn = f"Greater(Sign(0-Delta({c}, 1)), 0)"
    dv = f"Delta({v}, 1)"
    for d in windows:
        f.update({
            f"ROC{d}": f"Ref({c}, {d})/{c}",
            f"MA{d}": f"Mean({c}, {d})/{c}",
            f"STD{d}": f"Std({c}, {d})/{c}",
            f"BETA{d}": f"Slope({c}, {d})/{c}",
            f"MAX{d}": f"Max({h}, {d})/{c}",
            f"MIN{d}": f"Min({l}, {d})/{c}",
            f"RANK{d}": f"Rank({c}, {d})",
            f"RSV{d}": f"({c}-Min({l}, {d}))/(Max({h}, {d})-Min({l}, {d})+{EPS})",
            f"IMAX{d}": f"IdxMax({h}, {d})/{d}",
            f"IMIN{d}": f"IdxMin({l}, {d})/{d}",
            f"IMXD{d}": f"(IdxMax({h}, {d})-IdxMin({l}, {d}))/{d}",
            f"CORR{d}": f"Corr({c}, Log({v}+1), {d})",
            f"CORD{d}": f"Corr({c}/Ref({c}, 1), Log({v}/Ref({v}, 1)+1), {d})",
            f"CNTP{d}": f"Mean({up}, {d})",
            f"CNTN{d}": f"Mean({dn}, {d})",
            f"CNTD{d}": f"Mean({up}, {d})-Mean({dn}, {d})",
            f"SUMP{d}": f"Sum(Greater(Delta({c}, 1), 0), {d})/(Sum(Abs(Delta({c}, 1)), {d})+{EPS})",
            f"SUMN{d}": f"Sum(Greater(0-Delta({c}, 1), 0), {d})/(Sum(Abs(Delta({c}, 1)), {d})+{EPS})",
            f"SUMD{d}": f"(Sum(Greater(Delta({c}, 1), 0), {d})-Sum(Greater(0-Delta({c}, 1), 0), {d}))"
                        f"/(Sum(Abs(Delta({c}, 1)), {d})+{EPS})",
            f"VMA{d}": f"Mean({v}, {d})/({v}+{EPS})",
            f"VSTD{d}": f"Std({v}, {d})/({v}+{EPS})",
            f"WVMA{d}": f"Std(Abs({ret})*{v}, {d})/(Mean(Abs({ret})*{v}, {d})+{EPS})",
            f"VSUMP{d}": f"Sum(Greater({dv}, 0), {d})/(Sum(Abs({dv}), {d})+{EPS})",
            f"VSUMN{d}": f"Sum(Greater(0-{dv}, 0), {d})/(Sum(Abs({dv}), {d})+{EPS})",
            f"VSUMD{d}": f"(Sum(Greater({dv}, 0), {d})-Sum(Greater(0-{dv}, 0), {d}))/(Sum(Abs({dv}), {d})+{EPS})",
        })
    return f


def alpha158_library(windows: tuple[int, ...] = WINDOWS) -> list[list[str]]:
    """The Alpha158-style set as postfix token lists, in :func:`alpha158_style`'s order: the built-in
    library a miner's pool can be seeded from (``MineConfig.seed_library = "alpha158"``)."""
    from factors.expr import parse

    return [list(parse(text).tokens) for text in alpha158_style(windows).values()]


def feature_matrix(evaluator: Evaluator, exprs: dict[str, str], progress: Any = None) -> tuple[list[str], torch.Tensor]:
    """Evaluate every expression: names and a (F, D, S) float32 tensor (NaN where undefined).

    The evaluator's subexpression cache is cleared afterwards (these trees are not reused)."""
    names, mats = [], []
    for i, (name, text) in enumerate(exprs.items()):
        mats.append(evaluator.evaluate(text))
        names.append(name)
        if progress is not None:
            progress(i + 1, len(exprs))
    evaluator.clear_cache()
    return names, torch.stack(mats)


def fit_linear(zs: torch.Tensor, target_z: torch.Tensor, cell_w: torch.Tensor, l2: float = 1e-2,
               day_stride: int = 1, chunk_days: int = 64) -> np.ndarray:
    """Ridge weights of the z-scored target on z-scored factors pooled over days.

    zs (F, D, S) z-scored per day (0 or NaN where missing), target_z (D, S), cell_w (D,) per-day weight
    (1 / (n_d * D_eff), 0 on days to leave out) so that ``Sigma`` is the mutual-IC matrix and ``r``
    the ICs: w = (Sigma + l2 I)^-1 r. Accumulated in day chunks (float32 products, float64 sums).
    """
    f = zs.shape[0]
    sigma = np.zeros((f, f))
    r = np.zeros(f)
    days = torch.nonzero(cell_w > 0).squeeze(1)[::day_stride]
    for lo in range(0, len(days), chunk_days):
        idx = days[lo:lo + chunk_days]
        sw = (cell_w[idx] * day_stride).sqrt()[None, :, None]
        x = (torch.nan_to_num(zs[:, idx], nan=0.0) * sw).reshape(f, -1)  # missing (NaN or 0) adds nothing
        y = (target_z[idx] * sw[0]).reshape(-1)
        sigma += (x @ x.T).double().numpy()
        r += (x @ y).double().numpy()
    return np.linalg.solve(sigma + l2 * np.eye(f), r)


@dataclass
class Alpha158Features:
    """The Alpha158-style features on a scorer's panel, ready for the baselines' fits."""

    names: list[str]
    feats: torch.Tensor  # (F, D, S) float32 z-scored per day over the universe, NaN where undefined
    target_z: torch.Tensor  # (D, S) forward return z-scored per day (0 where missing)
    label_mask: torch.Tensor  # (D, S) bool: in the universe with a forward return
    seconds: float


def alpha158_features(sc: SplitScorer, windows: tuple[int, ...] = WINDOWS) -> Alpha158Features:
    """Evaluate and z-score the features (in place: one (F, D, S) tensor) and the target on ``sc``'s panel."""
    from factors.pool import zscore_days

    t0 = time.perf_counter()
    names, feats = feature_matrix(sc.ev, alpha158_style(windows))
    for i in range(feats.shape[0]):
        z = zscore_days(feats[i], sc.mask)[0]
        feats[i] = torch.where(torch.isfinite(feats[i]), z, torch.full((), float("nan")))
    ym = sc.mask & torch.isfinite(sc.target)
    return Alpha158Features(names, feats, zscore_days(sc.target, ym)[0], ym, time.perf_counter() - t0)


def alpha158_linear_weights(sc: SplitScorer, f: Alpha158Features) -> np.ndarray:
    """(F,) ridge weights of the features fitted on the train split's days (the Alpha158-linear baseline)."""
    train = sc.days["train"]
    n_day = (f.label_mask & train[:, None]).sum(1).double()
    ok = n_day >= 2
    cell_w = torch.where(ok, 1.0 / (n_day.clamp(min=1) * max(int(ok.sum()), 1)), torch.zeros_like(n_day)).float()
    return fit_linear(f.feats, torch.where(train[:, None], f.target_z, torch.zeros(())), cell_w, day_stride=2)


def fit_alpha158_linear(sc: SplitScorer, f: Alpha158Features) -> torch.Tensor:
    """The ridge combination of the features fitted on the train split's days; (D, S), NaN off the universe."""
    from factors.combiner import feature_combiner_signals

    w = torch.as_tensor(alpha158_linear_weights(sc, f))
    return feature_combiner_signals(sc, f.feats, w, names=())[0]["fitted"]


def alpha158_linear(sc: SplitScorer, f: Alpha158Features, combiner: str = "fitted",
                    ) -> tuple[torch.Tensor, dict[str, object]]:
    """The Alpha158-linear baseline (ridge on train) combined after train by ``combiner``, as a pool is
    (:func:`factors.combiner.pool_signal`): its (D, S) signal and the combiner's record."""
    from factors.combiner import pool_signal

    return pool_signal(sc, [], combiner, feats=(f.feats, torch.as_tensor(alpha158_linear_weights(sc, f))))


def fit_alpha158_lgbm(sc: SplitScorer, f: Alpha158Features, *, seed: int = 0, threads: int = 2,
                      extra: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """LightGBM on the features (plus ``extra`` (E, D, S) ones, e.g. a mined pool's): trained on train days,
    early-stopped on valid; (D, S) prediction and info."""
    from factors.lgbm_baseline import fit_predict

    label = torch.where(f.label_mask, f.target_z, torch.full((), float("nan")))
    return fit_predict(f.feats, label, sc.mask, sc.days["train"], sc.days["valid"], seed=seed, num_threads=threads,
                       extra=extra)


def day_z(sc: SplitScorer, x: torch.Tensor) -> torch.Tensor:
    """``x`` (D, S) z-scored per day over ``sc``'s universe, NaN where undefined or outside it: a feature
    on the same footing as the Alpha158-style ones."""
    return torch.where(torch.isfinite(x) & sc.mask, sc.zscore(x), torch.full((), float("nan")))


def pool_member_features(sc: SplitScorer, pool_tokens: list[list[str]]) -> torch.Tensor:
    """Each pool member's values as a feature, z-scored per day: (E, D, S). The weights are not used."""
    extra = torch.stack([day_z(sc, sc.ev.evaluate(tokens)) for tokens in pool_tokens])
    sc.ev.clear_cache()
    return extra


def pool_signal_feature(sc: SplitScorer, members: list[tuple[list[str], float]] | torch.Tensor) -> torch.Tensor:
    """The pool's combined signal (members z-scored per day, weighted as the miner fitted them on train;
    or an already combined (D, S) signal) as ONE feature, z-scored per day: (1, D, S)."""
    if isinstance(members, torch.Tensor):
        return day_z(sc, members)[None]
    x = sc.combine(members)
    sc.ev.clear_cache()
    return day_z(sc, x)[None]


def baseline_factors(sc: SplitScorer, *, seed: int = 0, lgbm: bool = True, threads: int = 2,
                     pool_signal: torch.Tensor | None = None, combiner: str = "fitted",
                     ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The two classic baselines on the scorer's panel, fitted without look-ahead: the Alpha158-style
    linear combination (ridge on the train split's days) and LightGBM on the same features (trained on
    train, early-stopped on valid). With ``pool_signal`` (D, S, the mined pool's combined signal, as the run
    combines it) also ``lgbm_alpha158_pool``: LightGBM with the same settings and seed on
    the features plus that signal as one feature, the pool's incremental value. Returns ``{name: (D, S)
    factor}`` (NaN outside the universe) and ``{name: fit info}``; every split is then scored like the pool.

    ``combiner``: how the linear set is combined after train, as a pool is (:mod:`factors.combiner`: the train
    weights, or a walk-forward re-fit), so the two compare on the same footing. LightGBM is trained once."""
    t0 = time.perf_counter()
    f = alpha158_features(sc)
    lin, comb = alpha158_linear(sc, f, combiner)
    out = {"alpha158_linear": lin}
    info: dict[str, Any] = {"alpha158_linear": {"features": len(f.names), "fit": "ridge on train days (l2 0.01)",
                                                "combiner": comb, "seconds": round(time.perf_counter() - t0, 1),
                                                "feature_seconds": round(f.seconds, 1)}}
    if lgbm:
        t1 = time.perf_counter()
        out["lgbm_alpha158"], fit = fit_alpha158_lgbm(sc, f, seed=seed, threads=threads)
        info["lgbm_alpha158"] = {"features": len(f.names), "fit": "trained on train days, early-stopped on valid",
                                 "best_iteration": fit["best_iteration"], "train_rows": fit["train_rows"],
                                 "seconds": round(time.perf_counter() - t1, 1), "seed": seed}
        if pool_signal is not None:
            t2 = time.perf_counter()
            out["lgbm_alpha158_pool"], fit = fit_alpha158_lgbm(sc, f, seed=seed, threads=threads,
                                                              extra=pool_signal_feature(sc, pool_signal))
            info["lgbm_alpha158_pool"] = {"features": len(f.names) + 1,
                                          "fit": "as lgbm_alpha158, plus the pool's combined signal as one feature",
                                          "best_iteration": fit["best_iteration"], "train_rows": fit["train_rows"],
                                          "seconds": round(time.perf_counter() - t2, 1), "seed": seed}
    return out, info
