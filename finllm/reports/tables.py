"""Report tables and figure records: plain dicts the template renders (each cell formatted by its
column's kind, :mod:`finllm.grounding.numbers`; the raw value kept in ``data-value``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finllm.reports.facts import SPLITS
from finllm.grounding.numbers import kind_of


LABELS = {"ic": "IC", "rank_ic": "RankIC", "icir": "ICIR", "rank_icir": "RankICIR", "ic_t_nw": "IC t (Newey-West)",
          "sharpe": "Sharpe", "ann_return": "ann. return", "max_drawdown": "max drawdown", "turnover": "turnover",
          "excess_ann_return": "excess ann. return", "excess_ir": "excess IR",
          "excess_ann_return_gross": "excess ann. return before costs", "excess_max_drawdown": "excess max drawdown",
          "rank_autocorr": "rank autocorr.",
          "auroc": "AUROC", "auprc": "AUPRC", "rec@k": "Rec@K", "recall_at_k": "Rec@K", "macro_f1": "macro F1",
          "n_days": "days"}


def label(metric: str) -> str:
    """A metric's column header (``auroc_std`` -> ``AUROC std``)."""
    if metric.endswith("_std") and metric[:-4] in LABELS:
        return f"{LABELS[metric[:-4]]} std"
    return LABELS.get(metric, metric.replace("_", " "))


def table(columns: list[str], rows: list[list[Any]], *, empty: str = "nothing recorded",
          formula_cols: tuple[int, ...] = (), id: str | None = None,
          kinds: Sequence[str | None] | None = None, caption: str | None = None) -> dict[str, Any]:
    """``kinds``: one display kind per column (None = text or automatic)."""
    return {"columns": columns, "rows": rows, "empty": empty, "formula_cols": list(formula_cols), "id": id,
            "kinds": [k or "auto" for k in (kinds or [None] * len(columns))], "caption": caption}


def fig(title: str, uri: str, caption: str) -> dict[str, str]:
    return {"title": title, "uri": uri, "caption": caption}


def split_table(named: dict[str, dict[str, dict[str, Any]]], metrics: tuple[str, ...], only: bool = False,
                id: str | None = None) -> dict[str, Any]:
    """Rows = (model, split), columns = ``metrics`` present (then any others unless ``only``);
    ``named`` = {model: {split: {metric: v}}}."""
    have = {m for per in named.values() for blk in per.values() for m in blk}
    present = [m for m in metrics if m in have]
    extra = [] if only else sorted(have - set(present) - {f"{m}_std" for m in present})
    cols = [c for m in present for c in (m, f"{m}_std") if c in have and (c == m or not only)] + extra
    rows = []
    for name, per in named.items():
        for split in SPLITS:
            if split in per:
                rows.append([name, split] + [per[split].get(m) for m in cols])
    return table(["model", "split"] + [label(c) for c in cols], rows, empty="no metrics recorded", id=id,
                 kinds=[None, None] + [kind_of(m) for m in cols])
