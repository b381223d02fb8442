"""The detector protocol: what training, scoring, saving, explaining and the ensemble need of a model.

Every detector — the GNNs (subclasses of :class:`GraphModule`), the tree models
(:class:`fraud.baselines.TreeModel`) and the rank ensemble (:class:`fraud.models.ensemble.RankEnsemble`) —
scores a graph with ``predict_proba(x, g)``, gives per-node representations with ``embed(x, g)``, and is
written with ``save(path)`` and read back by :func:`fraud.detectors.load_detector` (which calls the class's
own loader: ``GraphModule.load_weights``, ``TreeModel.load``, ``RankEnsemble.load``, since a GNN must first be
rebuilt from its record); the ones trained directly also ``fit(data, opts)``. :func:`fraud.train.train_model` and :mod:`fraud.artifacts` call these and nothing
model-specific. ``differentiable`` says whether gradients w.r.t. the input exist (GNNs: gradient x input
attributions; trees and ensembles: occlusion).

A GNN's own training needs (HSIGN's label-free bins, its L1 penalty, its internal ensemble's one loss per
member) are :class:`GraphModule` methods with neutral defaults, so the one fit loop
(:mod:`fraud.fit_loop`) has no model-specific branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from fraud.models.graph_ops import GraphOps

if TYPE_CHECKING:
    from torch_geometric.data import Data

    from fraud.baselines import FeatureBank


@dataclass
class FitOptions:
    """How a detector is fitted: epochs / boosting rounds and early-stopping patience (on validation
    AUPRC), optimiser settings (GNNs), progress bar, and mini-batch sampling (GNNs, optional extra)."""

    epochs: int = 200
    patience: int = 50
    lr: float = 0.01
    weight_decay: float = 0.0
    progress: bool = False
    label: str = ""
    minibatch: bool = False
    batch_size: int = 2048
    fanout: tuple[int, ...] = (15, 10)
    seed: int = 0


@dataclass
class FitData:
    """One training problem on a graph of N nodes.

    ``x`` (N, F) normalised features, ``g`` the graph operators, ``y`` (N,) labels (-1 unlabelled), ``train`` /
    ``val`` node indices, ``weight`` (len(train),) class weight x node weight per training node,
    ``soft_idx`` (S,) nodes with soft targets ``soft_targets`` (N,) weighted ``soft_weight``; ``bank`` the
    aggregated-feature cache (tree models); ``data`` / ``edge_weight`` the PyG graph for mini-batch sampling."""

    x: torch.Tensor
    g: GraphOps
    y: torch.Tensor
    train: torch.Tensor
    val: torch.Tensor
    weight: torch.Tensor
    bank: FeatureBank
    data: Data
    soft_idx: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    soft_targets: torch.Tensor | None = None
    soft_weight: float = 0.0
    edge_weight: torch.Tensor | None = None

    @property
    def soft_y(self) -> torch.Tensor | None:
        """(S,) soft targets of ``soft_idx``, or None when there are none."""
        if self.soft_targets is None or not len(self.soft_idx):
            return None
        return self.soft_targets[self.soft_idx].float()


@dataclass
class FitOutcome:
    """What fitting returns: the history (one dict per epoch / boosting round, with ``val_auprc``) and the
    epoch or number of rounds kept."""

    history: list[dict]
    best_epoch: int


@runtime_checkable
class Detector(Protocol):
    """A fitted detector: scores, representations, persistence."""

    suffix: str
    differentiable: bool

    def predict_proba(self, x: torch.Tensor, g: GraphOps) -> np.ndarray:
        """(N, F) normalised features -> (N,) fraud probabilities."""
        ...

    def embed(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        """(N, H) per-node representation (GNN embeddings; tree models: their input features)."""
        ...

    def save(self, path: str) -> None:
        """Write the fitted model to ``path`` (ending in ``suffix``)."""
        ...


@runtime_checkable
class TrainableDetector(Detector, Protocol):
    """A detector trained directly on a :class:`FitData` (the ensemble is built from trained members)."""

    def fit(self, data: FitData, opts: FitOptions) -> FitOutcome:
        ...


class GraphModule(nn.Module):
    """Base of every GNN detector: ``forward(x (N,F), g) -> logits (N,)``, ``embed(x, g) -> (N,H)``, ``head``
    maps embeddings to logits; the protocol methods and the training hooks with neutral defaults."""

    suffix = ".pt"
    differentiable = True

    def fit_encoding(self, x: torch.Tensor, g: GraphOps) -> None:
        """Fit label-free input statistics on the whole graph before training (default: none)."""

    def regularization(self, n_train: int) -> torch.Tensor:
        """The model's own penalty added to the loss, given the number of training labels (default 0)."""
        return torch.zeros(())

    def member_logits(self, x: torch.Tensor, g: GraphOps, rows: torch.Tensor) -> torch.Tensor:
        """(R, k) logits of the model's k internal members on ``rows`` (R,); each member gets its own
        loss. Default: one member, the model itself."""
        return self(x, g)[rows].unsqueeze(1)

    def fit(self, data: FitData, opts: FitOptions) -> FitOutcome:
        """Train in place (Adam, early stopping on validation AUPRC, best weights kept)."""
        from fraud.fit_loop import fit_module

        self.fit_encoding(data.x, data.g)
        history, best_epoch = fit_module(self, data, opts)
        self.eval()
        return FitOutcome(history, best_epoch)

    def predict_proba(self, x: torch.Tensor, g: GraphOps) -> np.ndarray:
        self.eval()
        with torch.inference_mode():
            return torch.sigmoid(self(x, g)).numpy()

    def save(self, path: str) -> None:
        torch.save({"state_dict": self.state_dict()}, path)

    def load_weights(self, path: str) -> GraphModule:
        """Load the weights :meth:`save` wrote (a file with other keys, e.g. an older ``config``, is fine)."""
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        return self.eval()
