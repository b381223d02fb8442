"""Paths in the store are absolute, so that any folder can render any run or load any model.

Writers usually build paths from ``$FINLLM_HOME`` (absolute since :class:`finllm.config.Settings` resolves
it), but some come from the command line (``--out runs/mine``, ``--data data/market/...``) relative to the
folder the command ran in. :func:`absolute_paths` turns those into absolute paths as the store saves them;
:func:`resolve_stored` reads the relative paths of rows written before this rule.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from finllm.config import Settings, load_settings

V = TypeVar("V")


def _absolute(value: V) -> V | str:
    """``value`` as an absolute path string when it is a relative path to something that exists here."""
    if not isinstance(value, str) or not value or "\n" in value or len(value) > 4096:
        return value
    p = Path(value).expanduser()
    try:
        if p.is_absolute() or not p.exists():
            return value
    except OSError:  # e.g. a name too long for the file system: not a path
        return value
    return os.path.abspath(p)


def absolute_paths(values: Mapping[str, V] | None, keys: Iterable[str] | None = None) -> dict[str, V | str] | None:
    """A copy of ``values`` in which the entries under ``keys`` (all entries when None) that are relative
    paths of existing files or folders are made absolute; other entries are kept as they are."""
    if values is None:
        return None
    wanted = None if keys is None else set(keys)
    return {k: (_absolute(v) if wanted is None or k in wanted else v) for k, v in values.items()}


def resolve_stored(path: str | os.PathLike, settings: Settings | None = None) -> Path:
    """A path read from the store, usable from any folder (see :meth:`finllm.config.Settings.resolve`)."""
    return (settings or load_settings()).resolve(path)
