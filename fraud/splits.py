"""Train/validation/test splits under the GADBench protocol.

* ``full``: the dataset's own split masks when the file has them (row ``seed % rows``), else a
  stratified 40/20/40 split of the labelled nodes.
* ``semi``: 20 fraud + 80 normal labelled nodes for training, the same for validation, the rest of the
  labelled nodes for test. With file masks, training/validation nodes are drawn from the file's
  train/val masks and the test set is the file's test mask.

Unlabelled nodes (y = -1) are never in any split. A split with a single class is a :class:`DataError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from finllm.errors import DataError

SETTINGS = ("full", "semi")
SEMI_POS, SEMI_NEG = 20, 80


@dataclass
class Split:
    """Index tensors (long) into the node set."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    setting: str = "full"
    seed: int = 0
    source: str = "stratified"  # "stratified" | "file_masks"

    def sizes(self) -> dict:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _stratified(idx: np.ndarray, y: np.ndarray, fracs: tuple[float, float], rng) -> tuple[np.ndarray, ...]:
    """Split ``idx`` per class into train/val/rest with fractions ``fracs`` (train, val)."""
    parts = ([], [], [])
    for c in (0, 1):
        ci = rng.permutation(idx[y[idx] == c])
        a = int(round(fracs[0] * len(ci)))
        b = a + int(round(fracs[1] * len(ci)))
        parts[0].append(ci[:a]), parts[1].append(ci[a:b]), parts[2].append(ci[b:])
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def _take(idx: np.ndarray, y: np.ndarray, n_pos: int, n_neg: int, rng, what: str, name: str) -> np.ndarray:
    pos, neg = idx[y[idx] == 1], idx[y[idx] == 0]
    if len(pos) < n_pos or len(neg) < n_neg:
        raise DataError(f"{name}: semi-supervised {what} needs {n_pos} fraud + {n_neg} normal labelled "
                        f"nodes, only {len(pos)} + {len(neg)} available")
    return np.sort(np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_neg, replace=False)]))


def check_split(split: Split, y: torch.Tensor, name: str) -> None:
    """Raise a clear DataError when a part of ``split`` is empty, unlabelled or has one class only."""
    for part in ("train", "val", "test"):
        idx = getattr(split, part)
        if len(idx) == 0:
            raise DataError(f"{name}: the {part} split is empty")
        yy = y[idx]
        if (yy < 0).any():
            raise DataError(f"{name}: the {part} split contains {int((yy < 0).sum())} unlabelled nodes")
        classes = sorted(set(yy.tolist()))
        if len(classes) < 2:
            raise DataError(f"{name}: the {part} split has a single class ({classes[0]}: "
                            f"{len(idx)} nodes); AUROC/AUPRC would be undefined")


def make_split(ds, setting: str, seed: int) -> Split:
    """Split ``ds`` (a GraphDataset) for ``setting`` in {"full", "semi"} with ``seed``."""
    if setting not in SETTINGS:
        raise DataError(f"unknown setting {setting!r} (use one of {', '.join(SETTINGS)})")
    y = ds.data.y.numpy()
    rng = np.random.default_rng(seed)
    labelled = np.flatnonzero(y >= 0)
    if ds.has_masks():
        row = seed % ds.data.train_masks.shape[0]
        tr, va, te = (np.flatnonzero(getattr(ds.data, f"{s}_masks")[row].numpy()) for s in ("train", "val", "test"))
        tr, va, te = (a[y[a] >= 0] for a in (tr, va, te))
        if setting == "semi":
            tr = _take(tr, y, SEMI_POS, SEMI_NEG, rng, "training", ds.name)
            va = _take(va, y, SEMI_POS, SEMI_NEG, rng, "validation", ds.name)
        source = "file_masks"
    elif setting == "full":
        tr, va, te = _stratified(labelled, y, (0.4, 0.2), rng)
        source = "stratified"
    else:
        tr = _take(labelled, y, SEMI_POS, SEMI_NEG, rng, "training", ds.name)
        rest = np.setdiff1d(labelled, tr)
        va = _take(rest, y, SEMI_POS, SEMI_NEG, rng, "validation", ds.name)
        te = np.setdiff1d(rest, va)
        source = "stratified"
    split = Split(*(torch.from_numpy(a.astype(np.int64)) for a in (tr, va, te)), setting=setting, seed=seed,
                  source=source)
    check_split(split, ds.data.y, ds.name)
    return split
