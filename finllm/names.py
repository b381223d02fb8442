"""Names that become parts of file names (a scoring batch, a label): plain names, never paths."""

from __future__ import annotations

import re

from finllm.errors import UsageError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(value: str, what: str, *, allow_empty: bool = True) -> str:
    """``value`` if it is 1-64 letters, digits, ``.``, ``_`` or ``-``, not starting with ``.`` or ``-``
    and without ``..`` (so it can never leave its folder or hide a file); else UsageError naming ``what``."""
    if value == "" and allow_empty:
        return value
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise UsageError(f"{what} {value!r}: use 1-64 letters, digits, '.', '_' or '-' (no '/', no '..', "
                         f"not starting with '.' or '-')")
    return value
