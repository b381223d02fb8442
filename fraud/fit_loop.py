"""The one epoch loop of the GNN detectors: a step per epoch (full batch or mini-batch), early stopping on
validation AUPRC, the best weights kept.

The loss is the class-weighted BCE on the training nodes plus, for the LLM supervisor's soft targets, a
BCE term weighted ``soft_weight``, plus the model's own penalty (:meth:`GraphModule.regularization`). A
model with internal members (HSIGN) trains one loss per member (:meth:`GraphModule.member_logits`) in
full batch; mini-batch training takes the averaged logit (``head(embed)``) on each batch's seed nodes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from finllm.errors import ConfigError
from fraud.evaluate import auprc
from fraud.models.graph_ops import GraphOps

if TYPE_CHECKING:
    from rich.progress import Progress
    from torch_geometric.data import Data
    from torch_geometric.loader import NeighborLoader

    from fraud.models.detector import FitData, FitOptions, GraphModule

Step = Callable[[], tuple[float, float, dict]]  # one epoch -> (mean loss, validation AUPRC, history extras)


def progress_bar(enabled: bool, total: int, label: str) -> AbstractContextManager[Progress | None]:
    """A rich progress bar on stderr (or a null context when ``enabled`` is False)."""
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)


def weighted_loss(logits_tr: torch.Tensor, ytr: torch.Tensor, w_tr: torch.Tensor, logits_soft: torch.Tensor | None,
                  soft_y: torch.Tensor | None, soft_weight: float) -> torch.Tensor:
    """Class/node-weighted BCE on the training rows (R,) plus ``soft_weight`` x BCE on the soft rows (S,)."""
    loss = (F.binary_cross_entropy_with_logits(logits_tr, ytr, reduction="none") * w_tr).sum() / w_tr.sum()
    if logits_soft is not None and logits_soft.numel():
        loss = loss + soft_weight * F.binary_cross_entropy_with_logits(logits_soft, soft_y)
    return loss


def early_stopping(model: GraphModule, step: Step, opts: FitOptions) -> tuple[list[dict], int]:
    """Run ``step`` once per epoch; keep the weights of the best validation AUPRC; stop after ``patience``
    epochs without a new best or on a non-finite loss. Returns (history, best epoch); ``model`` ends
    with the best weights."""
    best, best_state, best_epoch, history = -math.inf, None, 0, []
    with progress_bar(opts.progress, opts.epochs, opts.label) as bar:
        task = bar.add_task("train", total=opts.epochs, info="") if bar else None
        for epoch in range(1, opts.epochs + 1):
            loss, val_ap, extra = step()
            history.append({"epoch": epoch, "loss": loss, "val_auprc": val_ap, **extra})
            if val_ap > best:
                best, best_epoch, best_state = val_ap, epoch, copy.deepcopy(model.state_dict())
            if bar:
                bar.update(task, advance=1, info=f"loss {loss:.4f} val AUPRC {val_ap:.4f} (best {best:.4f})")
            if epoch - best_epoch >= opts.patience or not math.isfinite(loss):
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history, best_epoch


def full_batch_step(model: GraphModule, d: FitData, opt: torch.optim.Optimizer) -> Step:
    """One full-graph gradient step per epoch, one loss per internal member (on the rows needed only)."""
    tr, va = d.train, d.val
    ytr, yva, soft_y = d.y[tr].float(), d.y[va], d.soft_y
    need = torch.cat([tr, d.soft_idx]) if soft_y is not None else tr

    def step() -> tuple[float, float, dict]:
        model.train()
        opt.zero_grad()
        out = model.member_logits(d.x, d.g, need)
        cols = [(c[: len(tr)], c[len(tr):] if soft_y is not None else None) for c in out.unbind(1)]
        loss = torch.stack([weighted_loss(c_tr, ytr, d.weight, c_soft, soft_y, d.soft_weight)
                            for c_tr, c_soft in cols]).mean()
        loss = loss + model.regularization(len(tr))
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            val_logits = model.member_logits(d.x, d.g, va).mean(1)
            val_ap = auprc(val_logits, yva) if torch.isfinite(loss) else -math.inf
        return float(loss.detach()), val_ap, {}

    return step


def minibatch_available() -> bool:
    """NeighborLoader needs pyg-lib or torch-sparse (optional extra ``finllm[sparse]``), importable: PyG
    silently disables a torch-sparse that fails to import (e.g. without its dependency torch-scatter)."""
    import torch_geometric.typing as pyg_typing

    return bool(pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE)


def minibatch_step(model: GraphModule, d: FitData, opt: torch.optim.Optimizer, opts: FitOptions) -> Step:
    """One pass over PyG NeighborLoader batches of the training (and soft-target) nodes per epoch.

    Each batch's sampled subgraph gets its own GraphOps (edge weights and relations carried along, so a
    weight-0 edge is still no edge); the loss is taken on the batch's seed nodes. Validation runs
    full-batch (sparse products keep that cheap). Needs pyg-lib or torch-sparse."""
    if not minibatch_available():
        raise ConfigError("mini-batch training needs pyg-lib or torch-sparse "
                          "(pip install 'finllm[sparse]'); use full-batch training")
    loader = neighbor_loader(d.x, d.data, d.y, d.train, d.weight, d.soft_idx, d.soft_targets, d.soft_weight,
                             edge_weight=d.edge_weight, batch_size=opts.batch_size, fanout=opts.fanout)

    def step() -> tuple[float, float, dict]:
        model.train()
        total, batches = 0.0, 0
        for b in loader:
            opt.zero_grad()
            bg = GraphOps(b.edge_index, b.num_nodes, edge_type=getattr(b, "edge_type", None),
                          edge_weight=b.edge_weight, num_relations=d.g.num_relations)
            logits = model.head(model.embed(b.x, bg)[: b.batch_size]).squeeze(-1)  # the seed rows only
            t, hw, sw = b.target[: b.batch_size], b.node_w[: b.batch_size], b.soft_w[: b.batch_size]
            hard = hw > 0
            loss = (F.binary_cross_entropy_with_logits(logits[hard], t[hard], reduction="none")
                    * hw[hard]).sum() / hw[hard].sum().clamp_min(1e-12)
            soft = sw > 0
            if soft.any():
                loss = loss + d.soft_weight * F.binary_cross_entropy_with_logits(logits[soft], t[soft])
            loss = loss + model.regularization(len(d.train))
            loss.backward()
            opt.step()
            total += float(loss.detach())
            batches += 1
        model.eval()
        mean_loss = total / max(batches, 1)
        with torch.no_grad():
            val_ap = auprc(model(d.x, d.g)[d.val], d.y[d.val]) if math.isfinite(mean_loss) else -math.inf
        return mean_loss, val_ap, {"batches": batches}

    return step


def fit_module(model: GraphModule, d: FitData, opts: FitOptions) -> tuple[list[dict], int]:
    """Train ``model`` in place on ``d``: Adam, full batch or mini-batch, early stopping. Returns (history,
    best epoch)."""
    opt = torch.optim.Adam(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    step = minibatch_step(model, d, opt, opts) if opts.minibatch else full_batch_step(model, d, opt)
    return early_stopping(model, step, opts)


def neighbor_loader(x: torch.Tensor, data: Data, y: torch.Tensor, tr: torch.Tensor, w_tr: torch.Tensor,
                    soft_idx: torch.Tensor, soft_targets: torch.Tensor | None, soft_weight: float, *,
                    edge_weight: torch.Tensor | None = None, batch_size: int = 2048,
                    fanout: tuple[int, ...] = (15, 10), shuffle: bool = True) -> NeighborLoader:
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
    if len(soft_idx) and soft_targets is not None:
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
