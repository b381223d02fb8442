"""Training under the GADBench protocol: class-weighted loss, early stopping on validation AUPRC,
decision threshold chosen on validation macro-F1, metrics on validation and test.

Hooks for the LLM supervisor (all optional, all honoured for every model):

* ``node_weight`` (N,): per-node multiplier of the loss of labelled training nodes;
* ``soft_targets`` (N,) in [0,1], NaN = none: an extra BCE term on those nodes, weighted ``soft_weight``
  (typically LLM verdicts on unlabelled nodes);
* ``edge_weight`` (E,) in [0,1]: message weight per edge (0 = the edge is ignored).

Features go through a signed log1p and a z-score fitted on all nodes' features (no labels involved);
the statistics are returned in ``TrainResult.normalization`` so scoring reuses them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from finllm.errors import ConfigError, DataError
from fraud.baselines import FeatureBank
from fraud.detectors import new_detector
from fraud.evaluate import choose_threshold, evaluate
from fraud.models import AUTO, ENSEMBLE, GNN_MODELS, GraphOps, canonical_name
from fraud.models.detector import FitData, FitOptions
from fraud.splits import Split, check_split, make_split

if TYPE_CHECKING:
    from fraud.datasets import GraphDataset
    from fraud.models.detector import Detector

DEFAULTS: dict[str, dict[str, Any]] = {
    "sage": {"lr": 0.01, "weight_decay": 0.0, "hparams": {"hidden": 64, "layers": 2, "dropout": 0.1}},
    "gat": {"lr": 0.01, "weight_decay": 0.0, "hparams": {"hidden": 32, "layers": 2, "heads": 4, "dropout": 0.1}},
    "bwgnn": {"lr": 0.01, "weight_decay": 0.0, "hparams": {"hidden": 64, "order": 2}},
    "rgnn": {"lr": 0.01, "weight_decay": 0.0, "hparams": {"hidden": 64, "layers": 2, "dropout": 0.1}},
    "hsign": {"lr": 0.01, "weight_decay": 0.0,
              "hparams": {"hidden": 64, "hops": 2, "bins": 8, "ensemble": 5, "l1": 0.3, "nb_l1": 10.0}},
    "mlp": {"lr": 0.01, "weight_decay": 0.0, "hparams": {"hidden": 64, "layers": 2, "dropout": 0.0,
                                                         "activation": "relu"}},
    # trees: GADBench's parameter names (fraud/baselines.py); hops = GADBench's num_layers
    "xgbgraph": {"hparams": {"hops": 2, "agg": "all", "relations": True, "n_estimators": 200, "eta": 0.1,
                             "lambda": 1.0, "subsample": 1.0}},
    "rfgraph": {"hparams": {"hops": 2, "agg": "all", "relations": True, "n_estimators": 100, "max_samples": 1.0,
                            "max_features": "sqrt"}},
}


# ---- feature normalisation ---------------------------------------------------------------------
def fit_normalization(x: torch.Tensor) -> dict:
    """Signed-log1p + z-score statistics of ``x`` (N,F) as a JSON-able dict."""
    t = torch.sign(x) * torch.log1p(x.abs())
    mean, std = t.mean(0), t.std(0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return {"transform": "signed_log1p_zscore", "mean": mean.tolist(), "std": std.tolist()}


def apply_normalization(x: torch.Tensor, norm: dict, *, source: str = "graph") -> torch.Tensor:
    mean, std = torch.tensor(norm["mean"]), torch.tensor(norm["std"])
    if x.size(1) != mean.numel():
        raise DataError(f"{source}: has {x.size(1)} features, the model was trained on {mean.numel()}")
    t = torch.sign(x) * torch.log1p(x.abs())
    return ((t - mean) / std).float()


# ---- result ------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """``probs`` (N,) fraud probability of every node; ``embeddings`` (N,H); metrics {"val","test",...}.

    ``candidate_probs``: for ``--model auto``, every candidate's (N,) probabilities (its best trial, same node
    order as ``probs``), e.g. for a baseline curve beside the winner's; empty for a single model."""

    model: Detector
    probs: torch.Tensor
    embeddings: torch.Tensor
    threshold: float
    metrics: dict
    history: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    normalization: dict = field(default_factory=dict)
    candidate_probs: dict[str, torch.Tensor] = field(default_factory=dict)


def _check_hooks(n: int, e: int, node_weight, soft_targets, edge_weight) -> None:
    if node_weight is not None:
        if node_weight.numel() != n or not torch.isfinite(node_weight).all() or (node_weight < 0).any():
            raise ConfigError(f"node_weight must be ({n},), finite and >= 0")
    if soft_targets is not None:
        st = soft_targets[torch.isfinite(soft_targets)]
        if soft_targets.numel() != n or (st < 0).any() or (st > 1).any():
            raise ConfigError(f"soft_targets must be ({n},) with values in [0,1] or NaN")
    if edge_weight is not None:
        if edge_weight.numel() != e or not torch.isfinite(edge_weight).all() or (edge_weight < 0).any() \
                or (edge_weight > 1).any():
            raise ConfigError(f"edge_weight must be ({e},) with values in [0,1]")


def prepare_graph(ds: GraphDataset, edge_weight: torch.Tensor | None = None, cache: dict | None = None
                  ) -> tuple[dict, torch.Tensor, GraphOps, FeatureBank]:
    """(normalisation, normalised x (N,F), GraphOps, FeatureBank) of ``ds`` under ``edge_weight``; kept in
    ``cache`` (a dict owned by the caller, e.g. one model search) so trials share the graph operators."""
    key = ("graph", None if edge_weight is None else id(edge_weight))
    if cache is not None and key in cache and cache[key][0] is edge_weight:
        return cache[key][1]
    data = ds.data
    norm = fit_normalization(data.x)
    x = apply_normalization(data.x, norm, source=ds.name)
    g = GraphOps(data.edge_index, int(data.num_nodes), edge_type=getattr(data, "edge_type", None),
                 edge_weight=edge_weight, num_relations=len(ds.relations))
    out = (norm, x, g, FeatureBank(x, g))
    if cache is not None:
        cache[key] = (edge_weight, out)
    return out


def train_model(ds: GraphDataset, model_name: str, split: Split | None, seed: int, *, epochs: int = 200, patience: int = 50,
                lr: float | None = None, weight_decay: float | None = None, hparams: dict | None = None,
                node_weight: torch.Tensor | None = None, soft_targets: torch.Tensor | None = None,
                soft_weight: float = 0.0, edge_weight: torch.Tensor | None = None, progress: bool = False,
                minibatch: bool = False, batch_size: int = 2048, fanout: tuple[int, ...] = (15, 10),
                setting: str = "full", cache: dict | None = None, auto: dict | None = None) -> TrainResult:
    """Train ``model_name`` on ``ds`` (GraphDataset) with ``split`` (made from ``setting`` if None).

    ``model_name="auto"``: :func:`fraud.auto.train_auto` (every candidate tuned, the best on validation
    AUPRC kept); ``auto`` holds its options (``budget_s``, ``trials``, ``candidates``).
    ``"ensemble"``: :func:`fraud.models.ensemble.train_ensemble` (members in ``hparams["members"]``). ``cache``: see
    :func:`prepare_graph`."""
    name = canonical_name(model_name)
    split = split if split is not None else make_split(ds, setting, seed)
    check_split(split, ds.data.y, ds.name)
    if name == AUTO:
        from fraud.auto import train_auto

        return train_auto(ds, split, seed, epochs=epochs, patience=patience, node_weight=node_weight,
                          soft_targets=soft_targets, soft_weight=soft_weight, edge_weight=edge_weight,
                          progress=progress, minibatch=minibatch, batch_size=batch_size, fanout=fanout,
                          **(auto or {}))
    if name == ENSEMBLE:
        from fraud.models.ensemble import train_ensemble

        return train_ensemble(ds, split, seed, hparams, epochs=epochs, patience=patience, node_weight=node_weight,
                              soft_targets=soft_targets, soft_weight=soft_weight, edge_weight=edge_weight,
                              progress=progress, minibatch=minibatch, batch_size=batch_size, fanout=fanout,
                              cache=cache)
    data = ds.data
    n, e = int(data.num_nodes), int(data.edge_index.size(1))
    _check_hooks(n, e, node_weight, soft_targets, edge_weight)
    torch.manual_seed(seed)
    np.random.seed(seed)
    defaults = DEFAULTS[name]
    hp = {**defaults["hparams"], **(hparams or {})}
    norm, x, g, bank = prepare_graph(ds, edge_weight, cache)
    y = data.y
    tr, va, te = split.train, split.val, split.test
    ytr = y[tr].float()
    pos_weight = float((ytr == 0).sum() / (ytr == 1).sum())
    w_tr = torch.where(ytr == 1, pos_weight, 1.0)
    if node_weight is not None:
        w_tr = w_tr * node_weight[tr].float()
    soft_idx = torch.empty(0, dtype=torch.long)
    if soft_targets is not None and soft_weight > 0:
        soft_idx = torch.nonzero(torch.isfinite(soft_targets)).flatten()
    config = {"model": name, "dataset": ds.name, "seed": seed, "setting": split.setting,
              "split_source": split.source, "split_sizes": split.sizes(), "hparams": hp, "epochs": epochs,
              "patience": patience, "pos_weight": pos_weight, "in_dim": int(data.x.size(1)),
              "num_relations": len(ds.relations), "relations": list(ds.relations),
              "feature_names": ds.feature_names, "soft_weight": soft_weight,
              "uses_node_weight": node_weight is not None, "uses_edge_weight": edge_weight is not None,
              "soft_nodes": int(len(soft_idx)), "minibatch": minibatch}
    config["split"] = split.describe()  # source, and the file-mask row this seed used
    opts = FitOptions(epochs=epochs, patience=patience, progress=progress, label=f"{name} seed {seed}",
                      minibatch=minibatch, batch_size=batch_size, fanout=tuple(fanout), seed=seed)
    if "lr" in defaults:  # the networks' optimiser (tree models take GADBench's own parameters in hp)
        opts.lr = defaults["lr"] if lr is None else lr
        opts.weight_decay = defaults["weight_decay"] if weight_decay is None else weight_decay
        config.update(lr=opts.lr, weight_decay=opts.weight_decay)
        if minibatch:
            config.update(batch_size=batch_size, fanout=list(fanout))
    fit_data = FitData(x=x, g=g, y=y, train=tr, val=va, weight=w_tr, bank=bank, data=data, soft_idx=soft_idx,
                       soft_targets=soft_targets, soft_weight=soft_weight, edge_weight=edge_weight)
    t0 = time.perf_counter()
    model = new_detector(name, hp, in_dim=x.size(1), num_relations=len(ds.relations))
    outcome = model.fit(fit_data, opts)
    history = outcome.history
    config["best_epoch"] = outcome.best_epoch
    probs = torch.from_numpy(model.predict_proba(x, g)).float()
    with torch.no_grad():
        emb = model.embed(x, g)
    train_time = time.perf_counter() - t0
    if not torch.isfinite(probs).all():
        raise DataError(f"{ds.name}: {name} produced non-finite scores (training diverged)")
    thr = choose_threshold(probs[va], y[va])
    metrics = {"val": evaluate(probs, y, va, thr), "test": evaluate(probs, y, te, thr),
               "threshold": thr, "train_time_s": round(train_time, 3), "best_epoch": config["best_epoch"]}
    return TrainResult(model=model, probs=probs, embeddings=emb.detach(), threshold=thr, metrics=metrics,
                       history=history, config=config, normalization=norm)


# ---- several seeds -----------------------------------------------------------------------------
METRIC_KEYS = ("auroc", "auprc", "rec@k", "macro_f1")


def summarize(per_seed: list[dict]) -> dict:
    """{"test": {metric: {"mean","std"}}, "val": ..., "train_time_s": {...}} over seeds (std: ddof=0)."""
    out: dict[str, Any] = {}
    for part in ("val", "test"):
        out[part] = {}
        for k in METRIC_KEYS:
            v = np.array([m[part][k] for m in per_seed], dtype=float)
            out[part][k] = {"mean": float(v.mean()), "std": float(v.std())}
    t = np.array([m["train_time_s"] for m in per_seed], dtype=float)
    out["train_time_s"] = {"mean": float(t.mean()), "std": float(t.std())}
    return out


def split_record(config: dict) -> dict:
    """{"split": {"source", and "mask_row"/"mask_rows" for a file's masks}} of a trained model's config."""
    sp = config.get("split") or {}
    return {"split": {k: sp[k] for k in ("source", "mask_row", "mask_rows") if k in sp}}


def run_seeds(ds: GraphDataset, model_name: str, setting: str, seeds: int | list[int] = 5, *, progress: bool = False,
              keep: str = "best_val", **train_opts: Any) -> tuple[dict, TrainResult]:
    """Train over ``seeds`` (count or list); returns (summary dict, the kept TrainResult).

    ``keep="best_val"`` keeps the run with the highest validation AUPRC (never chosen on test).
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("need at least one seed")
    per_seed, kept = [], None
    for s in seed_list:
        split = make_split(ds, setting, s)
        res = train_model(ds, model_name, split, s, progress=progress, **train_opts)
        per_seed.append({"seed": s, **split_record(res.config), **res.metrics})
        if kept is None or res.metrics["val"]["auprc"] > kept.metrics["val"]["auprc"]:
            kept = res
    summary = {"dataset": ds.name, "model": canonical_name(model_name), "setting": setting,
               "seeds": seed_list, "per_seed": per_seed, **summarize(per_seed),
               "kept_seed": kept.config["seed"]}
    return summary, kept


__all__ = ["TrainResult", "train_model", "run_seeds", "summarize", "fit_normalization", "apply_normalization",
           "prepare_graph", "split_record", "GNN_MODELS"]
