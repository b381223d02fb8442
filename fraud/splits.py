"""Train/validation/test splits under the GADBench protocol.

* ``full``: the dataset's own split masks when the file has them (row ``seed % k`` of k rows; the
  Split records ``source="file_masks"`` and ``mask_row``), else a stratified 40/20/40 split of the
  labelled nodes.
* ``semi``: 20 fraud + 80 normal labelled nodes for training, the same for validation, the rest of the
  labelled nodes for test. With file masks, training/validation nodes are drawn from the file's
  train/val masks and the test set is the file's test mask.

Unlabelled nodes (y = -1) are never in any split. A split with a single class is a :class:`DataError`.

File masks (:func:`read_masks`): keys ``train_masks``/``val_masks``/``test_masks`` or the singular
``train_mask``/``val_mask``/``test_mask`` (``valid_mask(s)`` too), each (k, N) or (N, k) or (N,),
values 0/1; the three must have the same k, and a node in two splits of the same row is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from finllm.errors import DataError

if TYPE_CHECKING:
    from fraud.datasets import GraphDataset

SETTINGS = ("full", "semi")
SEMI_POS, SEMI_NEG = 20, 80
MASK_ALIASES = {"train": ("train_masks", "train_mask"),
                "val": ("val_masks", "val_mask", "valid_masks", "valid_mask"),
                "test": ("test_masks", "test_mask")}
MASK_KEYS = tuple(k for keys in MASK_ALIASES.values() for k in keys)


def _mask_matrix(p: Path, key: str, a: np.ndarray, n: int) -> np.ndarray:
    """One file mask as a (k, N) bool array: accepts (N,), (k, N) and (N, k) with values 0/1."""
    if a.dtype.kind not in "biuf":
        raise DataError(f"{p}: {key} holds dtype {a.dtype.str}; expected 0/1 or booleans")
    if a.dtype != bool and a.size and not np.isin(a, (0, 1)).all():
        raise DataError(f"{p}: {key} holds values other than 0/1 (node index lists are not masks)")
    a = a.astype(bool)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise DataError(f"{p}: {key} has shape {a.shape}, expected (splits, {n}) or ({n}, splits)")
    if a.shape[1] != n and a.shape[0] == n:
        a = a.T
    if a.shape[1] != n:
        raise DataError(f"{p}: {key} has shape {a.shape}, expected (splits, {n}) or ({n}, splits)")
    return np.ascontiguousarray(a)


def read_masks(p: Path, raw: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray] | None:
    """``{"train"|"val"|"test": (k, N) bool}`` from a file's mask arrays (any alias, any orientation),
    or None when the file has none. DataError on a missing part, different k, or overlapping masks."""
    masks: dict[str, np.ndarray] = {}
    for split, aliases in MASK_ALIASES.items():
        found = [k for k in aliases if k in raw]
        if len(found) > 1:
            raise DataError(f"{p}: both {found[0]} and {found[1]} are present; keep one")
        if found:
            masks[split] = _mask_matrix(p, found[0], raw[found[0]], n)
    if not masks:
        return None
    if set(masks) != set(MASK_ALIASES):
        raise DataError(f"{p}: split masks must come together (train, val, test); found only {sorted(masks)}")
    rows = {s: m.shape[0] for s, m in masks.items()}
    if len(set(rows.values())) != 1:
        raise DataError(f"{p}: train/val/test masks have different numbers of rows ({rows})")
    overlap = (masks["train"].astype(np.int8) + masks["val"] + masks["test"]) > 1
    if overlap.any():
        r = int(np.flatnonzero(overlap.any(1))[0])
        node = int(np.flatnonzero(overlap[r])[0])
        raise DataError(f"{p}: split masks overlap: {int(overlap[r].sum()):,} node(s) of row {r} are in two "
                        f"of train/val/test (first: node {node}; {int(overlap.any(1).sum())} of "
                        f"{overlap.shape[0]} rows overlap)")
    return masks


@dataclass
class Split:
    """Index tensors (long) into the node set."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    setting: str = "full"
    seed: int = 0
    source: str = "stratified"  # "stratified" | "file_masks"
    mask_row: int | None = None  # with file masks: the row used (seed mod k)
    mask_rows: int | None = None  # with file masks: k

    def describe(self) -> dict:
        """How the split was made, for run records: source, seed, and the file-mask row used."""
        out = {"setting": self.setting, "seed": self.seed, "source": self.source, **self.sizes()}
        if self.source == "file_masks":
            out.update(mask_row=self.mask_row, mask_rows=self.mask_rows)
        return out

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


def make_split(ds: GraphDataset, setting: str, seed: int) -> Split:
    """Split ``ds`` (a GraphDataset) for ``setting`` in {"full", "semi"} with ``seed``."""
    if setting not in SETTINGS:
        raise DataError(f"unknown setting {setting!r} (use one of {', '.join(SETTINGS)})")
    y = ds.data.y.numpy()
    rng = np.random.default_rng(seed)
    labelled = np.flatnonzero(y >= 0)
    row: int | None = None
    k: int | None = None
    if ds.has_masks():
        k = int(ds.data.train_masks.shape[0])
        row = seed % k
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
                  source=source, mask_row=row, mask_rows=k)
    check_split(split, ds.data.y, ds.name)
    return split
