"""JSON documents that strict parsers accept: the platform's one sanitiser.

Python's ``json`` writes ``NaN`` / ``Infinity``, which jq, JavaScript's ``JSON.parse`` and PostgreSQL's
``jsonb`` reject. Metrics are often NaN (a day with too few names, a constant factor), so every JSON the
platform prints or stores goes through :func:`json_safe` first (the store, ``--json`` output, model
records, report facts).
"""

from __future__ import annotations

import math
from typing import Any


def round_sig(x: float, sig: int = 4) -> float:
    """Round to ``sig`` significant digits (non-finite, zero and non-float values unchanged)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x) or x == 0:
        return x
    return round(float(x), sig - 1 - int(math.floor(math.log10(abs(x)))))


def json_safe(x: Any, *, sig: int | None = None) -> Any:
    """A JSON-able copy of ``x``: every non-finite float becomes None, numpy / torch scalars and arrays
    become Python numbers and lists, tuples become lists, dict keys become strings. With ``sig`` every
    finite float is rounded to that many significant digits (what a report shows)."""
    if x is None or isinstance(x, (str, bool, int)):
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return round_sig(float(x), sig) if sig else x
    if isinstance(x, dict):
        return {k if isinstance(k, str) else str(k): json_safe(v, sig=sig) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v, sig=sig) for v in x]
    tolist = getattr(x, "tolist", None)  # numpy scalar / array, torch tensor
    if callable(tolist):
        return json_safe(tolist(), sig=sig)
    return x
