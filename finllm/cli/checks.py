"""Flag checks shared by the commands: each raises :class:`~finllm.errors.UsageError` (exit 2, one line
naming the flag) for a value that cannot be right, before any work starts.

Output paths: a command writes only where it is told. ``--out FILE`` must not be a directory and its
folder must exist (nothing creates folders on a typo); ``--out DIR`` must be a folder or a new name in
an existing folder. Names that become file names (``--batch``) are plain names, never paths.
"""

from __future__ import annotations

import math
from pathlib import Path

from finllm.errors import UsageError
from finllm.names import check_name

__all__ = ["SEED_MAX", "check_name", "check_nonempty", "check_number", "check_out_dir", "check_out_file",
           "check_seed"]
SEED_MAX = 2**32 - 1  # numpy / torch / gymnasium all accept seeds in [0, 2**32)


def check_seed(seed: int, flag: str = "--seed") -> int:
    if not 0 <= seed <= SEED_MAX:
        raise UsageError(f"{flag} {seed}: must be between 0 and {SEED_MAX}")
    return seed


def check_number(value: float | int | None, flag: str, lo: float | None = None, hi: float | None = None,
                 ) -> float | int | None:
    """``value`` if None or finite and within [lo, hi]; else UsageError naming ``flag``."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{flag} {value}: must be a finite number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f"between {lo} and {hi}" if lo is not None and hi is not None else (
            f"at least {lo}" if lo is not None else f"at most {hi}")
        raise UsageError(f"{flag} {value}: must be {span}")
    return value


def check_nonempty(value: str | None, flag: str) -> str | None:
    if value is not None and not value.strip():
        raise UsageError(f"{flag}: empty value")
    return value


def check_out_file(path: Path | None, flag: str = "--out") -> Path | None:
    """An output file path: not a directory, in a folder that exists."""
    if path is None:
        return None
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; give a file name")
    parent = path.expanduser().parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: folder {parent} does not exist (create it first)")
    return path


def check_out_dir(path: Path, flag: str = "--out", *, need_parent: bool = True) -> Path:
    """An output folder: an existing folder, or a new name inside a folder that exists (``need_parent``;
    False for a command whose default folder is created with its parents, e.g. ``runs/mine``)."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: exists and is not a folder")
    parent = path.expanduser().absolute().parent
    if need_parent and not path.exists() and not parent.is_dir():
        raise UsageError(f"{flag} {path}: folder {parent} does not exist (create it first)")
    return path
