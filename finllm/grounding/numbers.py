"""Numbers for people: the one formatter of report tables and figure labels.

Fixed decimals per kind of metric, thousands separators, percentages where the value is a rate, never an
exponent (``-7.21e-04`` becomes ``-0.0007``, ``1.002e+04`` becomes ``10,020``). ``kind_of`` picks the
kind from a metric's name; a table column may also name its kind.
"""

from __future__ import annotations

import math

KINDS = ("ic", "score", "ratio", "pct", "count", "bps", "weight", "auto")
# metric name (or its suffix) -> kind; first match wins
_BY_NAME: tuple[tuple[str, str], ...] = (
    ("n_days", "count"), ("rows", "count"), ("features", "count"), ("best_iteration", "count"), ("count", "count"),
    ("rank_autocorr", "score"),
    ("icir", "ratio"), ("sharpe", "ratio"), ("t_nw", "ratio"), ("t_stat", "ratio"), ("excess_ir", "ratio"),
    ("ann_return_gross", "pct"), ("ann_return", "pct"), ("ann_vol", "pct"), ("max_drawdown", "pct"),
    ("cum_return", "pct"), ("turnover", "pct"),
    ("fraud_rate", "pct"), ("rate", "pct"), ("top_minus_bottom", "bps"), ("quantile", "bps"),
    ("ic_std", "ic"), ("ic", "ic"), ("weight", "weight"), ("cost_bps", "auto"),
    ("auroc", "score"), ("auprc", "score"), ("rec@k", "score"), ("recall_at_k", "score"), ("f1", "score"),
    ("precision", "score"), ("recall", "score"), ("threshold", "score"), ("brier", "score"),
)
DECIMALS = {"ic": 4, "score": 3, "ratio": 2, "pct": 2, "bps": 1, "weight": 3}


def kind_of(name: str) -> str:
    """The display kind of a metric called ``name`` (``auto`` when none matches)."""
    n = name.lower()
    for key, kind in _BY_NAME:
        if n == key or n.endswith(key) or n.endswith(key + "_std"):
            return kind
    return "auto"


def auto_number(v: float) -> str:
    """4 significant digits, thousands commas, no exponent (``0.0007213``, ``10,020``, ``3.142``)."""
    if v == 0:
        return "0"
    r = round(v, 3 - math.floor(math.log10(abs(v))))
    if abs(r) >= 1000:
        return f"{r:,.0f}"
    text = f"{r:.{max(0, 3 - math.floor(math.log10(abs(r))))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_number(v: object, kind: str = "auto") -> str:
    """``v`` as a table shows it; non-numbers as text, None / NaN as an em dash."""
    if v is None:
        return "—"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if not math.isfinite(v):
        return "—"
    if kind == "count" or (isinstance(v, int) and kind == "auto"):
        return f"{round(v):,}"
    if kind == "pct":
        return f"{v * 100:,.{DECIMALS['pct']}f}%"
    if kind == "bps":
        return f"{v * 1e4:,.{DECIMALS['bps']}f} bps"
    if kind in DECIMALS:
        text = f"{v:,.{DECIMALS[kind]}f}"
        return "0." + "0" * DECIMALS[kind] if text.lstrip("-").strip("0.,") == "" else text
    return auto_number(float(v))
