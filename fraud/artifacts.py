"""Save and load trained detectors: weights on disk under ``$FINLLM_HOME/models``, the record (threshold,
feature normalisation, config, metrics, path) in the store's ``fraud_models`` table."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from finllm.config import load_settings
from finllm.errors import DataError
from finllm.jsonsafe import json_safe
from fraud.detectors import load_detector

if TYPE_CHECKING:
    from finllm.store.db import Store
    from fraud.models.detector import Detector
    from fraud.splits import Split
    from fraud.train import TrainResult


@dataclass
class LoadedModel:
    """A detector ready to score: ``model`` (any :class:`~fraud.models.detector.Detector`) plus its stored
    record fields."""

    id: str
    name: str
    model: Detector
    threshold: float
    normalization: dict
    config: dict
    metrics: dict
    dataset: str


def save_model(result: TrainResult, store: Store, *, dataset: str, run_id: str | None = None, models_dir: str | Path | None = None,
               extra_metrics: dict | None = None) -> str:
    """Write ``result`` (a TrainResult) to disk and record it in ``store``; returns the model id."""
    cfg = result.config
    folder = Path(models_dir) if models_dir else Path(load_settings().home) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{cfg['model']}_{uuid.uuid4().hex[:12]}"
    path = folder / f"{stem}{result.model.suffix}"
    result.model.save(str(path))
    metrics = {**result.metrics, **(extra_metrics or {})}
    return store.save_fraud_model(run_id=run_id, name=cfg["model"], dataset=str(dataset),
                                  threshold=float(result.threshold), normalization=json_safe(result.normalization),
                                  config=json_safe(cfg), metrics=json_safe(metrics), path=str(path))


def load_model(model_id: str, store: Store) -> LoadedModel:
    """Load model ``model_id`` from ``store`` (DataError if unknown or its file is gone)."""
    rec = store.get_fraud_model(model_id)
    if rec is None:
        raise DataError(f"no fraud model with id {model_id!r} in the store")
    from finllm.store.paths import resolve_stored

    path = resolve_stored(rec.path)  # absolute, or an older row's path relative to the home / working folder
    if not path.is_file():
        raise DataError(f"fraud model {model_id}: weights file {path} is missing")
    cfg = dict(rec.config)
    model = load_detector(rec.name, str(path), hparams=cfg.get("hparams", {}), in_dim=int(cfg.get("in_dim", 0)),
                          num_relations=int(cfg.get("num_relations", 1)))
    return LoadedModel(id=rec.id, name=rec.name, model=model, threshold=float(rec.threshold),
                       normalization=dict(rec.normalization), config=cfg, metrics=dict(rec.metrics),
                       dataset=rec.dataset)


def save_predictions(result: TrainResult, split: Split, y: torch.Tensor, path: str | Path, baselines: dict | None = None) -> str:
    """Write the report's predictions file: ``y`` (N,) int (-1 unlabelled), ``score`` (N,) float,
    ``split`` (N,) int8 (0 train, 1 valid, 2 test, -1 none) and ``score__<name>`` per baseline."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = np.full(len(y), -1, dtype=np.int8)
    for code, idx in enumerate((split.train, split.val, split.test)):
        part[idx.numpy()] = code
    extra = {f"score__{k}": np.asarray(v, dtype=np.float32) for k, v in (baselines or {}).items()}
    np.savez(path, y=y.numpy().astype(np.int64), score=result.probs.numpy().astype(np.float32), split=part, **extra)
    return str(path)


def run_metrics(summary: dict, kept: TrainResult) -> dict:
    """``Run.metrics`` of a fraud_train run in the report's schema: per-seed lists under "test"/"valid"."""
    names = {"auroc": "auroc", "auprc": "auprc", "rec@k": "recall_at_k", "macro_f1": "f1"}
    out: dict = {"threshold": float(kept.threshold), "kept_seed": summary.get("kept_seed")}
    for part, key in (("test", "test"), ("val", "valid")):
        out[key] = {new: [float(m[part][old]) for m in summary["per_seed"]] for old, new in names.items()}
    out["summary"] = {k: summary[k] for k in ("val", "test", "train_time_s") if k in summary}
    out["per_seed"] = summary["per_seed"]
    return json_safe(out)
