"""Fraud detectors, one per file, and the registry ``MODELS`` (name -> class / kind).

GNNs share one interface: ``model(x (N,F), g: GraphOps) -> logits (N,)`` and ``model.embed(x, g) -> (N,H)``.
``xgbgraph`` is the tree baseline (``fraud.baselines``), trained by its own path in ``fraud.train``.
"""

from __future__ import annotations

from torch import nn

from finllm.errors import ConfigError
from fraud.models.bwgnn import BWGNN
from fraud.models.gat import GAT
from fraud.models.graph_ops import GraphOps
from fraud.models.hsign import HSIGN
from fraud.models.rgnn import RGNN
from fraud.models.sage import SAGE

GNN_MODELS: dict[str, type[nn.Module]] = {"sage": SAGE, "gat": GAT, "bwgnn": BWGNN, "rgnn": RGNN, "hsign": HSIGN}
TREE_MODELS = ("xgbgraph",)
MODEL_NAMES = tuple(GNN_MODELS) + TREE_MODELS
ALIASES = {"graphsage": "sage", "rgcn": "rgnn", "xgb": "xgbgraph", "beta": "bwgnn"}


def canonical_name(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in MODEL_NAMES:
        raise ConfigError(f"unknown model {name!r} (choose from {', '.join(MODEL_NAMES)})")
    return key


def build_model(name: str, in_dim: int, num_relations: int = 1, **hparams) -> nn.Module:
    """A fresh GNN ``name`` for ``in_dim`` features and ``num_relations`` edge types."""
    key = canonical_name(name)
    if key not in GNN_MODELS:
        raise ConfigError(f"{key} is not a GNN (train it through fraud.train.train_model)")
    return GNN_MODELS[key](in_dim, num_relations=num_relations, **hparams)


__all__ = ["GNN_MODELS", "TREE_MODELS", "MODEL_NAMES", "GraphOps", "build_model", "canonical_name",
           "SAGE", "GAT", "BWGNN", "RGNN", "HSIGN"]
