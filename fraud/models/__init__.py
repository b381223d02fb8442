"""Fraud detectors, one per file, and the registry ``MODELS`` (name -> class / kind).

Every detector implements the protocol of :mod:`fraud.models.detector` (``fit``, ``predict_proba``, ``embed``,
``save``, ``load``). GNNs subclass :class:`~fraud.models.detector.GraphModule`: ``model(x (N,F), g: GraphOps) ->
logits (N,)`` and ``model.embed(x, g) -> (N,H)``. ``xgbgraph`` and ``rfgraph`` are GADBench's tree detectors
(``fraud.baselines.TreeModel``); ``auto`` (``fraud.auto``) tunes every candidate and keeps the best on
validation; ``ensemble`` (``fraud.models.ensemble``) rank-averages trained members. ``fraud.detectors`` makes
and loads any of them by name.
"""

from __future__ import annotations

from finllm.errors import ConfigError
from fraud.models.bwgnn import BWGNN
from fraud.models.detector import GraphModule
from fraud.models.gat import GAT
from fraud.models.graph_ops import GraphOps
from fraud.models.hsign import HSIGN
from fraud.models.mlp import MLP
from fraud.models.rgnn import RGNN
from fraud.models.sage import SAGE

# torch models trained by fraud.train's epoch loop (the MLP ignores the graph but trains the same way)
GNN_MODELS: dict[str, type[GraphModule]] = {"sage": SAGE, "gat": GAT, "bwgnn": BWGNN, "rgnn": RGNN, "hsign": HSIGN,
                                          "mlp": MLP}
TREE_MODELS = ("xgbgraph", "rfgraph")
AUTO = "auto"
ENSEMBLE = "ensemble"  # fraud.models.ensemble: a rank average of trained members (saved like a tree model)
MODEL_NAMES = (AUTO, *GNN_MODELS, *TREE_MODELS, ENSEMBLE)
ALIASES = {"graphsage": "sage", "rgcn": "rgnn", "xgb": "xgbgraph", "beta": "bwgnn", "rf": "rfgraph",
           "rf-graph": "rfgraph", "xgb-graph": "xgbgraph"}


def canonical_name(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in MODEL_NAMES:
        raise ConfigError(f"unknown model {name!r} (choose from {', '.join(MODEL_NAMES)})")
    return key


def build_model(name: str, in_dim: int, num_relations: int = 1, **hparams) -> GraphModule:
    """A fresh GNN ``name`` for ``in_dim`` features and ``num_relations`` edge types."""
    key = canonical_name(name)
    if key not in GNN_MODELS:
        raise ConfigError(f"{key} is not a GNN (train it through fraud.train.train_model)")
    return GNN_MODELS[key](in_dim, num_relations=num_relations, **hparams)


__all__ = ["GNN_MODELS", "TREE_MODELS", "MODEL_NAMES", "AUTO", "ENSEMBLE", "GraphOps", "build_model",
           "canonical_name",
           "SAGE", "GAT", "BWGNN", "RGNN", "HSIGN", "MLP"]
