"""Result tables on stdout (the CLI's convention: results on stdout, progress and messages on stderr).

Every cell is plain text: rich markup inside a value (a formula, a name from data, an LLM's words) is
shown as written, never interpreted.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from finllm.cli.common import plain

Cell = str | int | float | bool | None


def fmt(v: object, digits: int = 4) -> str:
    """A cell's text: floats to ``digits`` decimals, None / NaN as ``-``, terminal control characters
    (ANSI/OSC escapes from data) removed."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return plain(v)


def stdout() -> Console:
    """The console for results. Piped into a file or another program (no terminal, no COLUMNS) it is
    160 columns wide instead of rich's 80, so that tables keep one row per line."""
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=160 if wide else None)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Cell]], *, title: str | None = None,
                right: Sequence[str] = (), show_header: bool = True, wrap: Sequence[str] | None = None) -> None:
    """One table on stdout; ``right``: columns aligned right (numbers); ``wrap``: the columns that may
    wrap when the terminal is narrow (default: the last one; ids, dates and numbers stay on one line)."""
    wrap = columns[-1:] if wrap is None else wrap
    cells = [[fmt(v) for v in r] for r in rows]
    out = stdout()
    keep = [0 if c in wrap else min(max([len(r[j]) for r in cells] + [len(c)]), 20) for j, c in enumerate(columns)]
    if sum(keep) + 3 * len(columns) + 10 * len(wrap) > out.width:  # too narrow to keep them whole: all fold
        keep = [0] * len(columns)
    t = Table(title=Text(title) if title else None, title_justify="left", show_header=show_header)
    for c, k in zip(columns, keep):
        t.add_column(Text(c), justify="right" if c in right else "left", overflow="fold", min_width=k or None)
    for r in cells:
        t.add_row(*[Text(v) for v in r])
    out.print(t)


def print_mapping(title: str, values: Mapping[str, Cell]) -> None:
    """A two-column key / value table on stdout."""
    print_table(["", ""], [[k, v] for k, v in values.items()], title=title, show_header=False)


def print_metrics(title: str, metrics: Mapping[str, object]) -> None:
    """Metrics as a table on stdout: a flat dict as key / value rows; a dict of dicts (e.g. split ->
    metric -> value) as one row per inner key and one column per outer key; lists of numbers (per seed)
    as mean ± std."""
    def cell(v: object) -> Cell:
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                      for x in v):
            n = len(v)
            mean = sum(v) / n
            sd = (sum((x - mean) ** 2 for x in v) / (n - 1)) ** 0.5 if n > 1 else 0.0
            return f"{mean:.4f} ± {sd:.4f}" if n > 1 else f"{mean:.4f}"
        if isinstance(v, (Mapping, list, tuple)):
            return None
        return v  # type: ignore[return-value]

    def blocks(v: object) -> bool:  # e.g. pool -> split -> metric: a table of its own, one column per split
        return isinstance(v, Mapping) and bool(v) and all(isinstance(x, Mapping) for x in v.values())

    for k, v in metrics.items():
        if blocks(v):
            print_metrics(f"{title}: {k}", v)  # type: ignore[arg-type]
    metrics = {k: v for k, v in metrics.items() if not blocks(v)}
    nested = {k: v for k, v in metrics.items() if isinstance(v, Mapping)}
    flat = {k: cell(v) for k, v in metrics.items() if not isinstance(v, Mapping) and cell(v) is not None}
    if nested:
        nested = {k: v for k, v in nested.items() if any(cell(x) is not None for x in v.values())}
        keys: list[str] = []
        for v in nested.values():
            keys += [str(k) for k in v if str(k) not in keys and cell(v[k]) is not None]
        print_table(["metric", *nested], [[k, *[cell(v.get(k)) for v in nested.values()]] for k in keys],
                    title=title, right=list(nested))
    if flat:
        print_mapping(title if not nested else "", flat)
