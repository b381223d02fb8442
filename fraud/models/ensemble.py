"""A rank-average ensemble of trained detectors (trees and networks alike): ``--model auto``'s ensemble
candidate, and ``--model ensemble`` (train the members, then combine).

Each member's probability is mapped to its quantile among that member's scores on the training graph (all
nodes, no labels: a fixed map, so a node scores the same whatever else is in a batch), and the ensemble
score is the mean of those quantiles: members on different scales (boosted trees, forests, networks) count
alike, and the order on the training graph is the rank average. The decision threshold is chosen on
validation like any model's.

It implements the :class:`fraud.models.detector.Detector` protocol (``predict_proba``, ``embed``, ``save``,
``load``); it is built from trained members, not fitted itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from fraud.models.graph_ops import GraphOps

if TYPE_CHECKING:
    from fraud.datasets import GraphDataset
    from fraud.models.detector import Detector
    from fraud.splits import Split
    from fraud.train import TrainResult

ENSEMBLE = "ensemble"
QUANTILES = 1001
SUFFIX = ".ens.json"


def quantile_reference(probs: np.ndarray) -> np.ndarray:
    """(2, K) map of a member's training-graph scores (N,): row 0 the distinct values among its
    ``QUANTILES`` quantiles (increasing), row 1 each one's mean quantile level (tied scores share one level,
    so the map is continuous: a score that moves by 1e-7 moves its level by as little)."""
    q = np.quantile(np.asarray(probs, dtype=np.float64), np.linspace(0, 1, QUANTILES))
    values, inverse = np.unique(q, return_inverse=True)
    levels = np.bincount(inverse, weights=np.linspace(0, 1, QUANTILES)) / np.bincount(inverse)
    return np.stack([values, levels])


def to_quantile(probs: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(N,) scores -> (N,) their level in [0, 1] under ``ref`` (:func:`quantile_reference`)."""
    return np.interp(np.asarray(probs, dtype=np.float64), ref[0], ref[1])


def rank_average(member_probs: list[np.ndarray]) -> np.ndarray:
    """(N,) ensemble score of members' training-graph scores [(N,), ...]: what :class:`RankEnsemble` gives."""
    return np.mean([to_quantile(p, quantile_reference(p)) for p in member_probs], axis=0)


@dataclass
class Member:
    """One member: its name, fitted detector and what rebuilds it."""

    name: str
    model: Detector
    reference: np.ndarray
    hparams: dict = field(default_factory=dict)
    in_dim: int = 0
    num_relations: int = 1

    def predict_proba(self, x: torch.Tensor, g: GraphOps) -> np.ndarray:
        return self.model.predict_proba(x, g)


@dataclass
class RankEnsemble:
    """Members' scores combined: (N, F) features -> (N,) scores in [0, 1]. ``how``: ``rank_average`` (the mean
    of quantile-mapped scores: members on different scales count alike) or ``logit_average`` (the mean
    log-odds of members on one scale, e.g. the LLM supervisor's round-1 and round-2 networks)."""

    members: list[Member] = field(default_factory=list)
    hparams: dict = field(default_factory=dict)
    how: str = "rank_average"
    suffix: ClassVar[str] = SUFFIX
    differentiable: ClassVar[bool] = False

    def combine(self, member_probs: list[np.ndarray]) -> np.ndarray:
        if self.how == "logit_average":
            q = [np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6) for p in member_probs]
            return 1.0 / (1.0 + np.exp(-np.mean([np.log(v / (1 - v)) for v in q], axis=0)))
        return np.mean([to_quantile(p, m.reference) for p, m in zip(member_probs, self.members)], axis=0)

    def predict_proba(self, x: torch.Tensor, g: GraphOps) -> np.ndarray:
        return self.combine([m.predict_proba(x, g) for m in self.members])

    def embed(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        """The first member's representation (what the ensemble's TrainResult carries)."""
        with torch.no_grad():
            return self.members[0].model.embed(x, g)

    def save(self, path: str) -> None:
        """A manifest at ``path`` and each member's file beside it (named after the manifest)."""
        p = Path(path)
        stem = p.name[: -len(SUFFIX)] if p.name.endswith(SUFFIX) else p.stem
        rows = []
        for i, m in enumerate(self.members):
            file = f"{stem}.m{i}{m.model.suffix}"
            m.model.save(str(p.parent / file))
            rows.append({"name": m.name, "file": file, "hparams": m.hparams, "in_dim": m.in_dim,
                         "num_relations": m.num_relations, "reference": m.reference.tolist()})
        p.write_text(json.dumps({"kind": self.how, "members": rows}))

    @classmethod
    def load(cls, path: str, hparams: dict | None = None) -> RankEnsemble:
        from fraud.detectors import load_detector

        p = Path(path)
        manifest = json.loads(p.read_text())
        members = []
        for row in manifest["members"]:
            model = load_detector(row["name"], str(p.parent / row["file"]), hparams=row["hparams"],
                                  in_dim=int(row["in_dim"]), num_relations=int(row["num_relations"]))
            members.append(Member(row["name"], model, np.asarray(row["reference"]), row["hparams"],
                                  int(row["in_dim"]), int(row["num_relations"])))
        return cls(members=members, hparams={"members": [m.name for m in members]},
                   how=manifest.get("kind", "rank_average"))


def member_of(result: TrainResult) -> Member:
    """A trained result as an ensemble member (its detector, scores' quantile map and record fields)."""
    c = result.config
    return Member(c["model"], result.model, quantile_reference(result.probs.numpy()), dict(c["hparams"]),
                  int(c["in_dim"]), int(c["num_relations"]))


def combine_results(results: list[TrainResult], split: Split, y: torch.Tensor) -> TrainResult:
    """The rank-average ensemble of trained ``results`` (same graph, same split) as a TrainResult: probs
    (N,), threshold on validation, validation and test metrics; members are not retrained."""
    from fraud.evaluate import choose_threshold, evaluate
    from fraud.train import TrainResult

    members = [member_of(r) for r in results]
    spec = [{"model": r.config["model"], "hparams": r.config["hparams"], "lr": r.config.get("lr")} for r in results]
    model = RankEnsemble(members=members, hparams={"members": spec})
    probs = torch.from_numpy(model.combine([r.probs.numpy() for r in results])).float()
    thr = choose_threshold(probs[split.val], y[split.val])
    secs = sum(float(r.metrics.get("train_time_s", 0.0)) for r in results)
    metrics = {"val": evaluate(probs, y, split.val, thr), "test": evaluate(probs, y, split.test, thr),
               "threshold": thr, "train_time_s": round(secs, 3), "best_epoch": None}
    config = {**results[0].config, "model": ENSEMBLE, "hparams": {"members": spec}, "best_epoch": None}
    config.pop("lr", None)
    return TrainResult(model=model, probs=probs, embeddings=results[0].embeddings, threshold=thr, metrics=metrics,
                       history=[], config=config, normalization=results[0].normalization)


DEFAULT_MEMBERS = ({"model": "xgbgraph"}, {"model": "rfgraph"}, {"model": "mlp"})


def train_ensemble(ds: GraphDataset, split: Split, seed: int, hparams: dict | None = None, **train_opts) -> TrainResult:
    """Train each member (``hparams["members"]``: [{"model", "hparams", "lr"}], default XGBGraph, RF-Graph and
    an MLP with their defaults) with ``train_opts`` (hooks included), then :func:`combine_results`."""
    from fraud.train import train_model

    spec = (hparams or {}).get("members") or DEFAULT_MEMBERS
    results = [train_model(ds, m["model"], split, seed, hparams=m.get("hparams"), lr=m.get("lr"), **train_opts)
               for m in spec]
    return combine_results(results, split, ds.data.y)
