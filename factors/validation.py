"""Validation report for market panels: what was checked, how many rows, and what was done.

Every rule is either an *error* (raises :class:`finllm.errors.DataError`, nothing is loaded) or a
*documented repair* recorded here with a count. The rules (see ``factors/market_io.py``):

| check                  | action       | what happens                                                   |
|------------------------|--------------|----------------------------------------------------------------|
| missing_columns        | error        | a required column (date, ticker, open, high, low, close, volume)|
| bad_date               | error        | empty or unparseable date; names the first bad row and value   |
| bad_number             | error        | a numeric column holds text; names column, row and value       |
| missing_ticker         | error        | empty ticker; names the first row                              |
| duplicate_rows         | error        | the same (date, ticker) twice; names the first pair and rows   |
| unsorted               | reordered    | rows not in (date, ticker) order; the dense tensor is ordered  |
| missing_price          | row invalid  | open/high/low/close null, NaN or inf -> whole row NaN, valid=0 |
| non_positive_price     | row invalid  | open/high/low/close <= 0 -> whole row NaN, valid=False         |
| high_below_low         | row invalid  | high < low -> whole row NaN, valid=False                       |
| range_contradiction    | repaired     | high < max(open, close) or low > min(open, close): high/low are|
|                        |              | widened to cover open and close (quote rounding in the source) |
| missing_volume         | kept         | volume null/NaN -> NaN; the row stays valid                     |
| negative_volume        | repaired     | volume < 0 -> NaN; the row stays valid                         |
| zero_volume            | kept         | volume == 0 is a real no-trade day: kept as 0, row stays valid |
| bad_vwap               | repaired     | vwap null/NaN/<= 0 -> NaN; the row stays valid                  |
| vwap_derived           | derived      | no vwap column: vwap = (high + low + close) / 3 (typical price)|
| missing_extra          | kept         | an extra numeric field is null/NaN -> NaN                      |
| ignored_columns        | ignored      | non-numeric extra columns are not loaded                       |
| in_universe_null       | repaired     | in_universe null -> False                                      |
| outside_universe       | kept         | rows kept for time-series history, excluded from cross-sections|
| nan_runs               | kept         | missing days inside a ticker's life: left NaN, never filled    |
| extreme_return         | kept         | |close_t / close_{t-1} - 1| > 50% on adjacent valid days       |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Issue(NamedTuple):
    """One validation finding: ``(check, count, action, detail)``."""

    check: str
    count: int
    action: str
    detail: str


@dataclass
class ValidationReport:
    """Findings of one load. ``issues`` holds only checks that found something (count > 0)."""

    source: str
    rows_read: int = 0
    rows_valid: int = 0
    issues: list[Issue] = field(default_factory=list)

    def add(self, check: str, count: int, action: str, detail: str) -> None:
        """Record a finding; zero counts are dropped so the report lists only what happened."""
        if count:
            self.issues.append(Issue(check, int(count), action, detail))

    def count(self, check: str) -> int:
        """Total count recorded for ``check`` (0 if it never fired)."""
        return sum(i.count for i in self.issues if i.check == check)

    @property
    def rows_invalid(self) -> int:
        return self.rows_read - self.rows_valid

    @property
    def clean(self) -> bool:
        """True when nothing was repaired or invalidated (informational findings aside)."""
        return not any(i.action in ("row invalid", "repaired") for i in self.issues)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_valid": self.rows_valid,
            "rows_invalid": self.rows_invalid,
            "clean": self.clean,
            "issues": [i._asdict() for i in self.issues],
        }
