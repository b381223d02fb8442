"""LightGBM on the Alpha158-style features (Qlib's classic non-formulaic baseline).

Inputs per (day, stock): the handcrafted factors z-scored per day (NaN kept; LightGBM routes
missing values itself). Label: the forward return z-scored per day (Qlib's ``CSZScoreNorm`` label),
so the model learns cross-sectional ordering, not the market's level. Train rows are the train
split's days (every ``day_stride``-th day: 20-day labels of neighbouring days overlap almost fully,
so striding loses little and trains 5x faster); early stopping on the valid split. The prediction
on every day is the factor that is scored like any other.

Hyperparameters (Qlib's Alpha158 LightGBM benchmark, shrunk for 2 CPU cores): learning_rate 0.05,
num_leaves 63, max_depth 8, min_data_in_leaf 200, feature_fraction 0.8, bagging_fraction 0.8
(bagging_freq 1), lambda_l2 10, up to 400 rounds with early stopping after 40.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

PARAMS: dict[str, Any] = {
    "objective": "regression", "learning_rate": 0.05, "num_leaves": 63, "max_depth": 8,
    "min_data_in_leaf": 200, "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
    "lambda_l2": 10.0, "verbosity": -1,
}


def _cols(feats: torch.Tensor, extra: torch.Tensor | None, days: torch.Tensor | slice) -> torch.Tensor:
    """The features of ``days`` (F [+ E], d, S): extra columns joined per block, never for the whole panel."""
    f = feats[:, days]
    return f if extra is None else torch.cat([f, extra[:, days]])


def _rows(feats: torch.Tensor, y: torch.Tensor, days: torch.Tensor, mask: torch.Tensor,
          stride: int, extra: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    idx = torch.nonzero(days).squeeze(1)[::stride]
    f = _cols(feats, extra, idx)  # (F [+ E], d, S)
    yy, mm = y[idx], mask[idx] & torch.isfinite(y[idx])
    x = f.permute(1, 2, 0)[mm]  # (n, F)
    return x.numpy(), yy[mm].numpy()


def fit_predict(feats: torch.Tensor, target_z: torch.Tensor, mask: torch.Tensor, train_days: torch.Tensor,
                valid_days: torch.Tensor, *, seed: int = 0, day_stride: int = 5, num_threads: int = 2,
                num_boost_round: int = 400, extra: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Train on train days, early-stop on valid days, predict every day.

    feats (F, D, S) per-day z-scored features (NaN = missing); target_z (D, S) per-day z-scored label;
    mask (D, S) the cross-section; extra (E, D, S) more features after ``feats`` (joined per block of days,
    so the panel is never copied whole). Returns predictions (D, S) (NaN outside ``mask``) and info.
    """
    import lightgbm as lgb

    xtr, ytr = _rows(feats, target_z, train_days, mask, day_stride, extra)
    xva, yva = _rows(feats, target_z, valid_days, mask, day_stride, extra)
    params = {**PARAMS, "seed": seed, "num_threads": num_threads, "deterministic": True}
    dtr = lgb.Dataset(xtr, ytr, free_raw_data=True)
    dva = lgb.Dataset(xva, yva, reference=dtr)
    booster = lgb.train(params, dtr, num_boost_round=num_boost_round, valid_sets=[dva],
                        callbacks=[lgb.early_stopping(40, verbose=False)])
    d, s = mask.shape
    pred = torch.full((d, s), float("nan"))
    for lo in range(0, d, 256):  # predict in day chunks to bound memory
        hi = min(d, lo + 256)
        m = mask[lo:hi]
        x = _cols(feats, extra, slice(lo, hi)).permute(1, 2, 0)[m].numpy()
        if len(x):
            block = pred[lo:hi]
            block[m] = torch.from_numpy(booster.predict(x, num_iteration=booster.best_iteration).astype(np.float32))
    info = {"train_rows": int(len(ytr)), "valid_rows": int(len(yva)), "best_iteration": int(booster.best_iteration),
            "params": params, "day_stride": day_stride}
    return pred, info


def walk_forward_predict(feats: torch.Tensor, target_z: torch.Tensor, mask: torch.Tensor, first: int,
                         horizon: int, *, window: int, every: int, rounds: int, seed: int = 0, day_stride: int = 5,
                         num_threads: int = 2) -> torch.Tensor:
    """LightGBM re-trained walk-forward, the counterpart of a linear pool's re-fit (:mod:`factors.combiner`).

    From day ``first`` on, every ``every`` days t: a model trained on the last ``window`` days whose labels are
    realised by t (days < t - horizon; no look-ahead), with a fixed ``rounds`` boosting rounds (no data is left
    to stop on), predicts days t .. t + every - 1. Days before ``first`` stay NaN (the caller keeps its
    train-once predictions there). feats (F, D, S), target_z (D, S), mask (D, S) as :func:`fit_predict`.
    Returns (D, S) predictions."""
    import lightgbm as lgb

    d, s = mask.shape
    pred = torch.full((d, s), float("nan"))
    params = {**PARAMS, "seed": seed, "num_threads": num_threads, "deterministic": True}
    for t in range(first, d, every):
        days = torch.zeros(d, dtype=torch.bool)
        days[max(0, t - horizon - window):max(0, t - horizon)] = True
        xtr, ytr = _rows(feats, target_z, days, mask, day_stride)
        if len(ytr) < 1000:
            continue
        booster = lgb.train(params, lgb.Dataset(xtr, ytr, free_raw_data=True), num_boost_round=max(1, rounds))
        hi = min(d, t + every)
        m = mask[t:hi]
        x = feats[:, t:hi].permute(1, 2, 0)[m].numpy()
        if len(x):
            block = pred[t:hi]
            block[m] = torch.from_numpy(booster.predict(x).astype(np.float32))
    return pred
