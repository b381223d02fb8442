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

from typing import Any

import numpy as np
import torch

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


def feature_matrix(evaluator: Any, exprs: dict[str, str], progress: Any = None) -> tuple[list[str], torch.Tensor]:
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

    zs (F, D, S) z-scored per day (0 where missing), target_z (D, S), cell_w (D,) per-day weight
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
        x = (zs[:, idx] * sw).reshape(f, -1)
        y = (target_z[idx] * sw[0]).reshape(-1)
        sigma += (x @ x.T).double().numpy()
        r += (x @ y).double().numpy()
    return np.linalg.solve(sigma + l2 * np.eye(f), r)
