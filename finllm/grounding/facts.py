"""A fact's value as people read it: the text a cited ``{key}`` placeholder is replaced by."""

from __future__ import annotations

import math

from finllm.grounding.numbers import auto_number
from finllm.jsonsafe import round_sig

FactValue = int | float | str
PERCENT_KEYS = ("fraud_rate", "ann_return", "max_drawdown")


def fmt_fact(key: str, value: FactValue) -> str:
    """A fact as people read it: 4 significant digits, thousands commas, no exponent; rates as %."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if any(key.endswith(p) for p in PERCENT_KEYS):
            return f"{auto_number(round_sig(value * 100, 3))}%"
        return auto_number(value)
    return str(value)

