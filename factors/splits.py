"""Time splits by date ranges: ``--train 2005-01-01:2014-12-31 --valid 2015-01-01:2017-12-31 ...``.

A range is ``START:END`` (inclusive ISO dates; either side may be empty: ``:2010-12-31``). Splits must be
in time order and must not overlap. Factors are always evaluated on the whole panel (windows see the
history before a split, never after), and metrics are computed per split on the split's days.

Purging: a day's h-day forward-return target reaches h days past it, so the last h days of a split
would score against prices inside the next split. :meth:`Split.days` drops them (``purge=h``); the
CLI purges by the target horizon.

The default split (one rule for ``factors eval``, ``factors mine`` and ``factors ask``,
:func:`default_splits`): on the shipped S&P 500 file the documented ranges :data:`US_SPLITS` (train
2003-2014, valid 2015-2016, test 2017-01-01..2021-04-21) when the loaded panel has days in all three;
on any other market (or a slice of the US file that misses one of them) the panel's own days cut
60 / 20 / 20 by time (:func:`time_splits`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from finllm.errors import ConfigError


@dataclass(frozen=True)
class Split:
    name: str
    start: np.datetime64 | None
    end: np.datetime64 | None

    def text(self) -> str:
        return f"{self.start if self.start is not None else ''}:{self.end if self.end is not None else ''}"

    def days(self, dates: np.ndarray, purge: int = 0) -> torch.Tensor:
        """(D,) bool selector of the panel days in this split, minus its last ``purge`` days."""
        d = np.asarray(dates).astype("datetime64[D]")
        sel = np.ones(len(d), dtype=bool)
        if self.start is not None:
            sel &= d >= self.start
        if self.end is not None:
            sel &= d <= self.end
        if purge > 0:
            idx = np.flatnonzero(sel)
            sel[idx[max(0, len(idx) - purge):]] = False
        return torch.from_numpy(sel)


def _date(text: str, what: str) -> np.datetime64 | None:
    text = text.strip()
    if not text:
        return None
    try:
        return np.datetime64(dt.date.fromisoformat(text), "D")
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a date (use YYYY-MM-DD)") from None


def parse_range(name: str, text: str) -> Split:
    """``"A:B"`` -> Split (inclusive); raises ConfigError naming the option on a bad range."""
    if text.count(":") != 1:
        raise ConfigError(f"--{name} {text!r}: expected START:END, e.g. 2010-01-01:2014-12-31")
    a, b = text.split(":")
    start, end = _date(a, f"--{name}"), _date(b, f"--{name}")
    if start is not None and end is not None and end < start:
        raise ConfigError(f"--{name} {text!r}: end is before start")
    return Split(name, start, end)


def parse_splits(train: str | None = None, valid: str | None = None, test: str | None = None) -> list[Split]:
    """Parse the given ranges (in train, valid, test order) and check they are ordered and disjoint."""
    out = [parse_range(n, t) for n, t in (("train", train), ("valid", valid), ("test", test)) if t]
    for a, b in zip(out, out[1:]):
        if a.end is None or b.start is None or b.start <= a.end:
            raise ConfigError(f"--{a.name} {a.text()} and --{b.name} {b.text()} overlap or are out of order: "
                              f"splits must be disjoint and in time order (give both ends)")
    return out


AUTO = "auto"  # a split given as "auto": the default rule (default_splits) on the loaded panel
TIME_FRACTIONS = (0.6, 0.2, 0.2)
SHIPPED_US_FILE = "us_sp500_daily.parquet"  # data/market/ in the repository
US_SPLITS = ("2003-01-01:2014-12-31", "2015-01-01:2016-12-31", "2017-01-01:2021-04-21")  # documented ranges


def time_splits(dates: np.ndarray, fractions: tuple[float, float, float] = TIME_FRACTIONS) -> list[Split]:
    """Train / valid / test as consecutive blocks of the panel's days, ``fractions`` of them each (the
    default when a market comes without split dates: the first 60% train, then 20% valid, 20% test)."""
    d = np.asarray(dates).astype("datetime64[D]")
    n = len(d)
    if n < 60:
        raise ConfigError(f"the panel has {n} days: too few to split into train/valid/test (need 60+)")
    c1, c2 = int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))
    return [Split("train", d[0], d[c1 - 1]), Split("valid", d[c1], d[c2 - 1]), Split("test", d[c2], d[-1])]


def default_splits(dates: np.ndarray, source: str | Path | None = None) -> list[Split]:
    """Train / valid / test when the user gives none (module doc): the documented US ranges on the shipped
    US file if the panel has days in each, else 60 / 20 / 20 of the panel's days by time."""
    if source is not None and Path(str(source)).name == SHIPPED_US_FILE:
        us = parse_splits(*US_SPLITS)
        if all(bool(sp.days(dates).any()) for sp in us):
            return us
    return time_splits(dates)


def check_covered(split: Split, dates: np.ndarray, purge: int = 0) -> torch.Tensor:
    """``split.days`` that raises ConfigError when the split selects no day of the panel."""
    sel = split.days(dates, purge)
    if not bool(sel.any()):
        what = "the panel" if split.start is None and split.end is None else f"--{split.name} {split.text()}"
        n = int(split.days(dates).sum())
        if n:  # the range has days, but all of them are purged (no full forward-return horizon after them)
            raise ConfigError(f"{what}: all its {n} day(s) are within its last {purge} days, which are dropped "
                              f"because their {purge}-day forward return reaches past it; use a shorter "
                              f"--horizon or a longer range (panel covers {dates[0]} .. {dates[-1]})")
        raise ConfigError(f"{what}: no panel days in this range (panel covers {dates[0]} .. {dates[-1]})")
    return sel


def calendar_days_for(trading_days: int) -> int:
    """Calendar days that hold at least ``trading_days`` trading days on any exchange calendar (stock
    markets trade about 252 of 365 days, crypto every day; 1.5 covers long holiday weeks) plus a week."""
    return int(math.ceil(1.5 * max(0, trading_days))) + 7


def history_needed(token_lists: Sequence[Sequence[str]]) -> int:
    """The most trading days of history any of these postfix factors needs for exact values
    (:func:`factors.expr.needed_history_tokens`; a factor that does not parse counts 0: it fails later
    with its own message)."""
    from factors.expr import needed_history_tokens
    from finllm.errors import ExpressionError

    most = 0
    for tokens in token_lists:
        try:
            most = max(most, needed_history_tokens(list(tokens)))
        except ExpressionError:
            continue
    return most
