"""Build and load detectors by name: the one registry from a model name to its class.

``fraud.models`` holds the GNN classes and the names; this module adds the tree models and the ensemble,
which live outside that package (``fraud.baselines``, ``fraud.models.ensemble``), so that a saved detector
of any kind is read back by :func:`load_detector` and a fresh one is made by :func:`new_detector`.
"""

from __future__ import annotations

from fraud.baselines import TreeModel
from fraud.models import ENSEMBLE, TREE_MODELS, build_model
from fraud.models.detector import Detector, TrainableDetector


def new_detector(name: str, hparams: dict, *, in_dim: int, num_relations: int) -> TrainableDetector:
    """An untrained detector ``name`` (canonical) with hyperparameters ``hparams``."""
    if name in TREE_MODELS:
        return TreeModel.untrained(name, hparams)
    return build_model(name, in_dim, num_relations, **hparams)


def load_detector(name: str, path: str, *, hparams: dict | int | None, in_dim: int = 0,
                  num_relations: int = 1) -> Detector:
    """The detector ``name`` saved at ``path`` by its ``save``; ``hparams`` / ``in_dim`` / ``num_relations``
    from its record (a GNN is rebuilt from them before its weights are loaded)."""
    from fraud.models.ensemble import SUFFIX, RankEnsemble

    if name == ENSEMBLE or path.endswith(SUFFIX):  # a manifest (e.g. a supervised run's round-1/round-2 pair)
        return RankEnsemble.load(path)
    if name in TREE_MODELS:
        return TreeModel.load(path, hparams)
    return build_model(name, in_dim, num_relations, **dict(hparams or {})).load_weights(path)
