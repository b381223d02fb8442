"""XGBGraph-style baseline (GADBench): a gradient-boosted tree ensemble on neighbourhood features.

Per node: ``[x, mean_1hop(x), mean_2hop(x)]`` where ``mean_1hop = A x`` and ``mean_2hop = A (A x)`` with A
the row-normalised, edge-weighted adjacency (so ``edge_weight`` is honoured; weight 0 = no edge).
LightGBM stands in for xgboost (not a dependency here). Class weight #neg/#pos on fraud, early stopping
on validation average precision (= AUPRC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fraud.models.graph_ops import GraphOps, powers


def aggregate_features(x: torch.Tensor, g: GraphOps, hops: int = 2) -> torch.Tensor:
    """(N,F) -> (N, (hops+1)*F): ``[x, A x, A^2 x]``."""
    return torch.cat([x, *powers(g.mean_adj(), x, hops)], 1)


@dataclass
class TreeModel:
    """A fitted LightGBM booster plus the aggregation depth it was trained with."""

    booster: object
    hops: int = 2

    def predict_proba(self, x: torch.Tensor, g: GraphOps) -> np.ndarray:
        feats = aggregate_features(x, g, self.hops).numpy()
        return self.booster.predict(feats)

    def save(self, path: str) -> None:
        self.booster.save_model(path)

    @classmethod
    def load(cls, path: str, hops: int = 2) -> "TreeModel":
        import lightgbm as lgb

        return cls(lgb.Booster(model_file=path), hops)


def fit_xgbgraph(feats: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, *, seed: int,
                 sample_weight: np.ndarray, soft_idx: np.ndarray | None = None,
                 soft_y: np.ndarray | None = None, soft_w: float = 0.0, n_estimators: int = 1000,
                 learning_rate: float = 0.05, num_leaves: int = 31, patience: int = 50,
                 num_threads: int = 0) -> tuple[object, list[dict]]:
    """Fit LightGBM (cross-entropy objective, so soft targets in [0,1] are allowed).

    ``sample_weight`` (len(train),) already holds class weights x node weights. Returns (booster, history).
    """
    import lightgbm as lgb

    X, Y, W = feats[train], y[train].astype(float), sample_weight
    if soft_idx is not None and len(soft_idx) and soft_w > 0:
        X = np.concatenate([X, feats[soft_idx]])
        Y = np.concatenate([Y, soft_y])
        W = np.concatenate([W, np.full(len(soft_idx), soft_w)])
    params = {
        "objective": "cross_entropy", "metric": "average_precision", "learning_rate": learning_rate,
        "num_leaves": num_leaves, "min_data_in_leaf": 5, "feature_fraction": 0.8, "bagging_fraction": 0.8,
        "bagging_freq": 1, "lambda_l2": 1.0, "seed": seed, "deterministic": True, "verbosity": -1,
        "num_threads": num_threads,
    }
    dtrain = lgb.Dataset(X, Y, weight=W)
    dval = lgb.Dataset(feats[val], y[val].astype(float), reference=dtrain)
    record: dict = {}
    booster = lgb.train(params, dtrain, num_boost_round=n_estimators, valid_sets=[dval], valid_names=["val"],
                        callbacks=[lgb.early_stopping(patience, verbose=False), lgb.record_evaluation(record)])
    ap = record.get("val", {}).get("average_precision", [])
    history = [{"round": i + 1, "val_auprc": float(v)} for i, v in enumerate(ap)]
    return booster, history
