"""Market panel: a validated long table turned into a dense (days x stocks x fields) float32 tensor.

``load_panel(path)`` reads a parquet/CSV file (or a folder of them) or a Qlib dump directory, applies
the validation rules of :mod:`factors.validation` (errors raise ``DataError``; repairs are counted in
``panel.report``) and scatters the rows into a preallocated array in one vectorised step.

vwap: when the data has no ``vwap`` column it is derived as the typical price (high + low + close) / 3
and the report records ``vwap_derived``. It is *not* a traded VWAP; factors using it say so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from factors import market_io, qlib_dump
from factors.market_io import BASE_FIELDS, Validated, day_index
from factors.validation import ValidationReport
from finllm.errors import DataError

__all__ = ["BASE_FIELDS", "Panel", "load_panel", "to_dense"]
EXTREME_RETURN = 0.5


@dataclasses.dataclass
class Panel:
    """Dense market data. D days, S tickers, F fields.

    values: (D, S, F) float32, NaN where the row is missing or invalid.
    valid: (D, S) bool, a row exists and passed validation.
    in_universe: (D, S) bool, cross-section membership (subset of ``valid``; equals it when the
    input had no ``in_universe`` column).
    """

    dates: np.ndarray
    tickers: list[str]
    fields: list[str]
    values: torch.Tensor
    valid: torch.Tensor
    in_universe: torch.Tensor
    report: ValidationReport
    source: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.values.shape)  # type: ignore[return-value]

    def field(self, name: str) -> torch.Tensor:
        """(D, S) view of one field; an unknown name raises DataError listing the fields."""
        try:
            j = self.fields.index(name)
        except ValueError:
            raise DataError(f"{self.source}: no field {name!r} (fields: {', '.join(self.fields)})") from None
        return self.values[:, :, j]

    def slice_dates(self, start=None, end=None) -> Panel:
        """Days in [start, end] (inclusive; ISO strings, dates or datetime64). Tensors are views."""
        lo = 0 if start is None else int(np.searchsorted(self.dates, _day(start), "left"))
        hi = len(self.dates) if end is None else int(np.searchsorted(self.dates, _day(end), "right"))
        if hi <= lo:
            raise DataError(f"{self.source}: no dates between {start} and {end} "
                            f"(data covers {self.dates[0]} .. {self.dates[-1]})")
        return dataclasses.replace(self, dates=self.dates[lo:hi], values=self.values[lo:hi],
                                   valid=self.valid[lo:hi], in_universe=self.in_universe[lo:hi])

    def select_tickers(self, tickers_or_n: Sequence[str] | int) -> Panel:
        """Keep the named tickers (in the given order), or the ``n`` with most valid days (name order)."""
        if isinstance(tickers_or_n, int):
            idx = _top_n(self.valid.sum(0).numpy(), self.tickers, tickers_or_n)
        else:
            pos = {t: i for i, t in enumerate(self.tickers)}
            unknown = [t for t in tickers_or_n if t not in pos]
            if unknown:
                raise DataError(f"{self.source}: unknown ticker(s) {', '.join(unknown[:5])}")
            idx = [pos[t] for t in tickers_or_n]
        ix = torch.as_tensor(idx, dtype=torch.long)
        return dataclasses.replace(self, tickers=[self.tickers[i] for i in idx],
                                   values=self.values.index_select(1, ix),
                                   valid=self.valid.index_select(1, ix),
                                   in_universe=self.in_universe.index_select(1, ix))

    def summary(self) -> dict[str, Any]:
        d, s, f = self.shape
        n_valid = int(self.valid.sum())
        return {
            "source": self.source,
            "n_dates": d,
            "n_tickers": s,
            "n_fields": f,
            "fields": list(self.fields),
            "start": str(self.dates[0]) if d else None,
            "end": str(self.dates[-1]) if d else None,
            "rows_valid": n_valid,
            "rows_in_universe": int(self.in_universe.sum()),
            "coverage": round(n_valid / max(d * s, 1), 4),
            "tensor_mb": round(self.values.numel() * 4 / 2**20, 1),
            "rows_read": self.report.rows_read,
            "issues": {i.check: i.count for i in self.report.issues},
        }


def _day(x) -> np.datetime64:
    if isinstance(x, np.datetime64):
        return x.astype("datetime64[D]")
    if isinstance(x, dt.datetime):
        x = x.date()
    try:
        return np.datetime64(str(x), "D")
    except ValueError:
        raise DataError(f"{x!r} is not an ISO date (YYYY-MM-DD)") from None


def _top_n(counts: np.ndarray, tickers: list[str], n: int) -> list[int]:
    """Indices of the n tickers with most valid days (ties: name), returned in ticker order."""
    if n <= 0:
        raise DataError(f"max_tickers must be positive, got {n}")
    order = sorted(range(len(tickers)), key=lambda i: (-int(counts[i]), tickers[i]))
    return sorted(order[:n])


def to_dense(parts: Sequence[Validated], source: str, keep: Sequence[str] | None = None,
             ) -> tuple[np.ndarray, list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Scatter validated long tables into dense arrays in one vectorised step.

    ``keep``: tickers to keep (default all). Returns ``dates (D,) datetime64[D], tickers (S,),
    fields (F,), values (D, S, F) float32, valid (D, S), in_universe (D, S)``. A (date, ticker) seen
    twice (possible across the files of a folder) is an error.
    """
    fields: list[str] = []
    for part in parts:
        fields += [f for f in part.fields if f not in fields]
    tickers = sorted(set(keep) if keep is not None else {t for part in parts for t in part.tickers})
    pos = {t: i for i, t in enumerate(tickers)}
    frames = []
    for part in parts:  # remap each part's ticker codes into the union (-1: dropped)
        lut = np.array([pos.get(t, -1) for t in part.tickers], dtype=np.int64)
        codes = lut[part.frame["_t"].to_numpy()]
        fr = part.frame.with_columns(pl.Series("_t", codes))
        if keep is not None:
            fr = fr.filter(pl.col("_t") >= 0)
        frames.append(_with_fields(fr, fields))
    frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")
    days, d_idx = day_index(frame["date"])
    D, S, F = len(days), len(tickers), len(fields)
    flat = d_idx * S + frame["_t"].to_numpy()
    if len(parts) > 1:
        counts = np.bincount(flat, minlength=D * S)
        if counts.max(initial=0) > 1:
            k = int(np.argmax(counts))
            raise DataError(f"{source}: duplicate (date, ticker) ({days[k // S]}, {tickers[k % S]}) "
                            "across input files")
    values = np.full((D * S, F), np.nan, dtype=np.float32)
    rows = np.ascontiguousarray(frame.select(fields).to_numpy(order="c"), dtype=np.float32)
    cell = np.dtype((np.void, 4 * F))  # scatter whole (F,) rows as one opaque item: ~2x faster
    values.view(cell).reshape(-1)[flat] = rows.view(cell).reshape(-1)
    del rows
    valid = np.zeros(D * S, dtype=bool)
    valid[flat] = frame["valid"].to_numpy()
    uni = np.zeros(D * S, dtype=bool)
    uni[flat] = frame["in_universe"].to_numpy()
    return days, tickers, fields, values.reshape(D, S, F), valid.reshape(D, S), uni.reshape(D, S)


def _dense_checks(values: np.ndarray, valid: np.ndarray, fields: list[str], dates: np.ndarray,
                  tickers: list[str], report: ValidationReport) -> None:
    """Checks that need the dense layout: NaN runs inside ticker lives, extreme close-to-close moves."""
    D, S = valid.shape
    if D == 0 or S == 0:
        return
    alive = valid.any(0)
    first = np.where(alive, valid.argmax(0), D)
    last = np.where(alive, D - 1 - valid[::-1].argmax(0), -1)
    t = np.arange(D)[:, None]
    gaps = (t >= first) & (t <= last) & ~valid  # (D, S)
    n_gap = int(gaps.sum())
    if n_gap:
        col = np.vstack([gaps, np.zeros((1, S), dtype=bool)]).T.ravel()  # tickers back to back
        edges = np.diff(np.concatenate([[0], col.astype(np.int8)]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        k = int(np.argmax(ends - starts))
        s, d0 = divmod(int(starts[k]), D + 1)
        report.add("nan_runs", n_gap, "kept",
                   f"{n_gap} missing days inside the lives of {int(gaps.any(0).sum())} tickers, "
                   f"{len(starts)} runs; longest {int(ends[k] - starts[k])} days: {tickers[s]} from "
                   f"{dates[d0]}; left NaN (never filled)")
    close = values[:, :, fields.index("close")]
    both = valid[1:] & valid[:-1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.abs(close[1:] / close[:-1] - 1.0)
    ext = both & (r > EXTREME_RETURN)
    if ext.any():
        d, s = np.argwhere(ext)[0]
        report.add("extreme_return", int(ext.sum()), "kept",
                   f"|close/prev close - 1| > {EXTREME_RETURN:.0%} on adjacent days; first: {tickers[s]} "
                   f"{dates[d + 1]}")


def _market_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and (market_io.is_parquet(p) or market_io.is_csv(p)))
    if not files:
        raise DataError(f"{path}: folder has no .parquet/.csv files and is not a Qlib dump "
                        "(no calendars/day.txt)")
    return files


def load_panel(path: str | Path, *, start=None, end=None, tickers: Sequence[str] | None = None,
               max_tickers: int | None = None, progress: bool = False,
               instruments: str = "all") -> Panel:
    """Load, validate and densify market data.

    path: a parquet/CSV file, a folder of them (concatenated; each validated on its own) or a Qlib
    dump folder (``instruments`` picks ``instruments/<name>.txt``, which also sets ``in_universe``).
    start/end: inclusive ISO dates. tickers: keep only these (unknown ones are an error).
    max_tickers: keep the N tickers with most valid days (ties by name); recorded in the report.
    progress: show a rich progress display on stderr.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    report = ValidationReport(source=str(path))
    with _Progress(progress) as prog:
        parts: list[Validated] = []
        if qlib_dump.is_qlib_dir(path):
            task = prog.add("reading Qlib dump")
            raw = qlib_dump.read_qlib_frame(path, instruments=instruments, start=start, end=end,
                                            tickers=tickers,
                                            on_instrument=lambda i, n: prog.update(task, i + 1, n))
            parts.append(market_io.validate_frame(raw, path, lambda i: f"record {int(i) + 1}", report,
                                                  check_order=False))
        else:
            files = _market_files(path) if path.is_dir() else [path]
            for f in files:
                task = prog.add(f"reading {f.name}")
                raw, ref = market_io.read_market_frame(f, start=start, end=end, tickers=tickers)
                prog.update(task, 1, 2, f"validating {f.name}")
                parts.append(market_io.validate_frame(raw, f, ref, report))
                del raw
                prog.update(task, 2, 2)
        present = sorted({t for part in parts for t in part.tickers})
        if not present:
            span = f" between {start or 'start'} and {end or 'end'}" if start or end else ""
            raise DataError(f"{path}: no rows{span}" + (" for the requested tickers" if tickers else ""))
        if tickers is not None:
            missing = sorted(set(tickers) - set(present))
            if missing:
                raise DataError(f"{path}: no rows for ticker(s) {', '.join(missing[:5])}"
                                + (" in the selected dates" if start or end else ""))
        keep = None
        if max_tickers is not None:
            pos = {t: i for i, t in enumerate(present)}
            counts = np.zeros(len(present), dtype=np.int64)
            for part in parts:
                lut = np.array([pos[t] for t in part.tickers], dtype=np.int64)
                counts += np.bincount(lut[part.frame["_t"].to_numpy()],
                                      weights=part.frame["valid"].to_numpy(), minlength=len(present)
                                      ).astype(np.int64)
            keep = [present[i] for i in _top_n(counts, present, max_tickers)]
            report.add("max_tickers", len(present) - len(keep), "info",
                       f"kept {len(keep)} of {len(present)} tickers (most valid days)")
        task = prog.add("building dense tensor")
        dates, tick, fields, values, valid, uni = to_dense(parts, str(path), keep)
        del parts
        _dense_checks(values, valid, fields, dates, tick, report)
        prog.update(task, 1, 1)
    return Panel(dates=dates, tickers=tick, fields=fields, values=torch.from_numpy(values),
                 valid=torch.from_numpy(valid), in_universe=torch.from_numpy(uni), report=report,
                 source=str(path))


def _with_fields(frame: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Give a frame every field (NaN where a file lacked an extra field), in one column order."""
    nan = pl.lit(float("nan"), dtype=pl.Float32)
    return frame.select("date", "_t", *[pl.col(f) if f in frame.columns else nan.alias(f) for f in fields],
                        "valid", "in_universe")


class _Progress:
    """A rich progress display on stderr with one line per stage; a no-op when disabled."""

    def __init__(self, enabled: bool) -> None:
        self._p = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._p = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                               TimeElapsedColumn(), console=Console(stderr=True), transient=True)

    def __enter__(self) -> _Progress:
        if self._p:
            self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._p:
            self._p.stop()

    def add(self, description: str) -> int:
        return self._p.add_task(description, total=None) if self._p else 0

    def update(self, task: int, done: int, total: int, description: str | None = None) -> None:
        if self._p:
            kw = {"description": description} if description else {}
            self._p.update(task, completed=done, total=total, **kw)
