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

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from finllm.errors import ConfigError, DataError
from fraud.baselines import FeatureBank, TreeModel, feature_spec, fit_tree
from fraud.evaluate import auprc, choose_threshold, evaluate
from fraud.models import AUTO, ENSEMBLE, GNN_MODELS, TREE_MODELS, GraphOps, build_model, canonical_name
from fraud.splits import Split, check_split, make_split

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

    model: Any
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


def _progress(enabled: bool, total: int, label: str):
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)


def prepare_graph(ds, edge_weight: torch.Tensor | None = None, cache: dict | None = None
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


def train_model(ds, model_name: str, split: Split | None, seed: int, *, epochs: int = 200, patience: int = 50,
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
    t0 = time.perf_counter()
    if name in TREE_MODELS:
        hops, aggs, rel = feature_spec(hp)
        feats_t = bank.get(hops, aggs, rel)
        feats = feats_t.numpy()
        soft_y = soft_targets[soft_idx].numpy() if len(soft_idx) else None
        common = {"seed": seed, "sample_weight": w_tr.numpy(), "soft_idx": soft_idx.numpy(), "soft_y": soft_y,
                  "soft_w": soft_weight}
        booster, history, kind, rounds = fit_tree(name, feats, y.numpy(), tr.numpy(), va.numpy(), hp,
                                                  patience=patience, **common)
        model = TreeModel(booster, hops, aggs, rel, kind, hp)
        probs = torch.from_numpy(model.predict_features(feats)).float()
        emb = feats_t
        config["best_epoch"] = rounds
    else:
        lr = defaults["lr"] if lr is None else lr
        weight_decay = defaults["weight_decay"] if weight_decay is None else weight_decay
        config.update(lr=lr, weight_decay=weight_decay)
        model = build_model(name, x.size(1), len(ds.relations), **hp)
        if hasattr(model, "fit_encoding"):  # label-free input statistics (HSIGN's bins) from the whole graph
            model.fit_encoding(x, g)
        if minibatch:
            fit = _fit_minibatch
            config.update(batch_size=batch_size, fanout=list(fanout))
        else:
            fit = _fit_full
        model, history, best_epoch = fit(
            model, x, g, y, tr, va, w_tr, soft_idx, soft_targets, soft_weight, epochs=epochs, patience=patience,
            lr=lr, weight_decay=weight_decay, progress=progress, label=f"{name} seed {seed}",
            data=data, edge_weight=edge_weight, batch_size=batch_size, fanout=fanout)
        model.eval()
        with torch.no_grad():
            emb = model.embed(x, g)
            probs = torch.sigmoid(model.head(emb).squeeze(-1))
        config["best_epoch"] = best_epoch
    train_time = time.perf_counter() - t0
    if not torch.isfinite(probs).all():
        raise DataError(f"{ds.name}: {name} produced non-finite scores (training diverged)")
    thr = choose_threshold(probs[va], y[va])
    metrics = {"val": evaluate(probs, y, va, thr), "test": evaluate(probs, y, te, thr),
               "threshold": thr, "train_time_s": round(train_time, 3), "best_epoch": config["best_epoch"]}
    return TrainResult(model=model, probs=probs, embeddings=emb.detach(), threshold=thr, metrics=metrics,
                       history=history, config=config, normalization=norm)


def _loss(logits_tr, ytr, w_tr, logits_soft, soft_y, soft_weight) -> torch.Tensor:
    loss = (F.binary_cross_entropy_with_logits(logits_tr, ytr, reduction="none") * w_tr).sum() / w_tr.sum()
    if logits_soft is not None and logits_soft.numel():
        loss = loss + soft_weight * F.binary_cross_entropy_with_logits(logits_soft, soft_y)
    return loss


def _fit_full(model, x, g, y, tr, va, w_tr, soft_idx, soft_targets, soft_weight, *, epochs, patience, lr,
              weight_decay, progress, label, **_):
    """Full-batch training; returns (best model, history, best epoch)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    ytr, yva = y[tr].float(), y[va]
    soft_y = soft_targets[soft_idx].float() if len(soft_idx) else None
    members = hasattr(model, "member_logits")
    need = torch.cat([tr, soft_idx]) if soft_y is not None else tr

    def step() -> tuple[float, float, dict]:
        model.train()
        opt.zero_grad()
        if members:  # an ensemble inside the model: one loss per member, averaged; only the rows needed
            out = model.member_logits(x, g, rows=need)
            cols = [(c[: len(tr)], c[len(tr):] if soft_y is not None else None) for c in out.unbind(1)]
        else:
            out = model(x, g)
            cols = [(out[tr], out[soft_idx] if soft_y is not None else None)]
        loss = torch.stack([_loss(c_tr, ytr, w_tr, c_soft, soft_y, soft_weight) for c_tr, c_soft in cols]).mean()
        if hasattr(model, "regularization"):  # a model's own penalty (e.g. HSIGN's L1), given the label count
            loss = loss + model.regularization(len(tr))
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            val_logits = model.member_logits(x, g, rows=va).mean(1) if members else model(x, g)[va]
            val_ap = auprc(val_logits, yva) if torch.isfinite(loss) else -math.inf
        return float(loss.detach()), val_ap, {}

    return _early_stopping_loop(model, step, epochs=epochs, patience=patience, progress=progress, label=label)


def _early_stopping_loop(model, step, *, epochs: int, patience: int, progress: bool, label: str):
    """Run ``step() -> (loss, val AUPRC, extra history fields)`` once per epoch; keep the weights of the best
    validation AUPRC; stop after ``patience`` epochs without a new best or on a non-finite loss.
    Returns (model with the best weights, history, best epoch)."""
    best, best_state, best_epoch, history = -math.inf, None, 0, []
    with _progress(progress, epochs, label) as bar:
        task = bar.add_task("train", total=epochs, info="") if bar else None
        for epoch in range(1, epochs + 1):
            loss, val_ap, extra = step()
            history.append({"epoch": epoch, "loss": loss, "val_auprc": val_ap, **extra})
            if val_ap > best:
                best, best_epoch, best_state = val_ap, epoch, copy.deepcopy(model.state_dict())
            if bar:
                bar.update(task, advance=1, info=f"loss {loss:.4f} val AUPRC {val_ap:.4f} (best {best:.4f})")
            if epoch - best_epoch >= patience or not math.isfinite(loss):
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, history, best_epoch


def minibatch_available() -> bool:
    """NeighborLoader needs pyg-lib or torch-sparse (optional extra ``finllm[sparse]``), importable: PyG
    silently disables a torch-sparse that fails to import (e.g. without its dependency torch-scatter)."""
    import torch_geometric.typing as pyg_typing

    return bool(pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE)


def _fit_minibatch(model, x, g, y, tr, va, w_tr, soft_idx, soft_targets, soft_weight, *, epochs, patience, lr,
                   weight_decay, progress, label, data, edge_weight, batch_size, fanout, **_):
    """Mini-batch training with PyG's NeighborLoader over the training (and soft-target) nodes.

    Each batch's sampled subgraph gets its own GraphOps (edge weights and relations carried along, so a
    weight-0 edge is still no edge); the loss is taken on the batch's seed nodes only (an ensemble model such
    as HSIGN trains on its averaged logits here, not one loss per member as in full batch). Validation runs
    full-batch (sparse products keep that cheap). Needs pyg-lib or torch-sparse.
    """
    if not minibatch_available():
        raise ConfigError("mini-batch training needs pyg-lib or torch-sparse "
                          "(pip install 'finllm[sparse]'); use full-batch training")
    loader = neighbor_loader(x, data, y, tr, w_tr, soft_idx, soft_targets, soft_weight, edge_weight=edge_weight,
                             batch_size=batch_size, fanout=fanout)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    def step() -> tuple[float, float, dict]:
        model.train()
        total, batches = 0.0, 0
        for b in loader:
            opt.zero_grad()
            bg = GraphOps(b.edge_index, b.num_nodes, edge_type=getattr(b, "edge_type", None),
                          edge_weight=b.edge_weight, num_relations=g.num_relations)
            # forward = head(embed) for every GNN here; the head runs on the seed rows only
            logits = model.head(model.embed(b.x, bg)[: b.batch_size]).squeeze(-1)
            t, hw, sw = b.target[: b.batch_size], b.node_w[: b.batch_size], b.soft_w[: b.batch_size]
            hard = hw > 0
            loss = (F.binary_cross_entropy_with_logits(logits[hard], t[hard], reduction="none")
                    * hw[hard]).sum() / hw[hard].sum().clamp_min(1e-12)
            soft = sw > 0
            if soft.any():
                loss = loss + soft_weight * F.binary_cross_entropy_with_logits(logits[soft], t[soft])
            if hasattr(model, "regularization"):  # the model's own penalty (HSIGN's L1), as in full batch
                loss = loss + model.regularization(len(tr))
            loss.backward()
            opt.step()
            total += float(loss.detach())
            batches += 1
        model.eval()
        mean_loss = total / max(batches, 1)
        with torch.no_grad():
            val_ap = auprc(model(x, g)[va], y[va]) if math.isfinite(mean_loss) else -math.inf
        return mean_loss, val_ap, {"batches": batches}

    return _early_stopping_loop(model, step, epochs=epochs, patience=patience, progress=progress, label=label)


def neighbor_loader(x, data, y, tr, w_tr, soft_idx, soft_targets, soft_weight, *, edge_weight=None,
                    batch_size: int = 2048, fanout: tuple[int, ...] = (15, 10), shuffle: bool = True):
    """PyG NeighborLoader over the training (and soft-target) seed nodes of ``data``.

    Batches carry ``x`` (normalised), ``edge_weight`` (E_b,), ``edge_type`` (when the graph has one),
    ``target`` (label, or soft target, NaN elsewhere), ``node_w`` (class weight x node weight on
    training nodes, 0 elsewhere) and ``soft_w``; the first ``batch_size`` nodes of a batch are its seeds.
    """
    import warnings

    from torch_geometric.data import Data
    from torch_geometric.loader import NeighborLoader

    n = x.size(0)
    node_w = torch.zeros(n)
    node_w[tr] = w_tr
    target = torch.full((n,), float("nan"))
    target[tr] = y[tr].float()
    soft_w = torch.zeros(n)
    if len(soft_idx):
        keep = torch.isnan(target[soft_idx])
        target[soft_idx[keep]] = soft_targets[soft_idx[keep]].float()
        soft_w[soft_idx[keep]] = soft_weight
    ew = edge_weight.float() if edge_weight is not None else torch.ones(data.edge_index.size(1))
    sub = Data(x=x, edge_index=data.edge_index, edge_weight=ew, target=target, node_w=node_w, soft_w=soft_w,
               num_nodes=n)
    et = getattr(data, "edge_type", None)
    if et is not None:
        sub.edge_type = et
    seeds = torch.cat([tr, soft_idx[torch.isin(soft_idx, tr, invert=True)]]) if len(soft_idx) else tr
    with warnings.catch_warnings():  # "NeighborSampler without pyg-lib is deprecated": torch-sparse is our path
        warnings.filterwarnings("ignore", message=".*without a 'pyg-lib' installation is deprecated.*")
        return NeighborLoader(sub, num_neighbors=list(fanout), batch_size=batch_size, input_nodes=seeds,
                              shuffle=shuffle)


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


def run_seeds(ds, model_name: str, setting: str, seeds: int | list[int] = 5, *, progress: bool = False,
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
           "minibatch_available", "prepare_graph", "split_record", "GNN_MODELS"]
