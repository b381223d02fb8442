"""Options shared by the use cases that read a market panel and cut it into time splits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PanelWindow:
    """Which part of the panel to load (``--start/--end/--max-tickers``) and the explicit time splits
    (``--train/--valid/--test`` as ``START:END``; none of them = the shared default split rule)."""

    start: str | None = None
    end: str | None = None
    max_tickers: int | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None
