"""JSON documents that strict parsers accept: NaN and +-inf become null.

Python's ``json`` writes ``NaN`` / ``Infinity``, which jq, JavaScript's ``JSON.parse`` and PostgreSQL's
``jsonb`` reject. Metrics are often NaN (a day with too few names, a constant factor), so every JSON the
platform prints or stores goes through :func:`json_safe` first.
"""

from __future__ import annotations

import math
from typing import Any


def json_safe(x: Any) -> Any:
    """``x`` with every non-finite float (also inside dicts, lists and tuples) replaced by None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x
