"""Read and write a Qlib binary dump directory (the format most factor-mining code uses).

Layout (Qlib ``scripts/dump_bin.py``)::

    <dir>/calendars/day.txt                 one trading day per line, YYYY-MM-DD (YYYYMMDD accepted)
    <dir>/instruments/<name>.txt            SYMBOL<TAB>start<TAB>end per membership span (all.txt: life)
    <dir>/features/<symbol lower>/<field>.day.bin
                                            little-endian float32: [start index into the calendar,
                                            value at calendar[start], value at calendar[start+1], ...]

Reading returns a long polars frame that then goes through the same validation as parquet/CSV input.
Days inside a span where every field is NaN are treated as absent rows. ``in_universe`` is True on the
days inside a ticker's spans in ``instruments/<name>.txt`` (rows outside a span are kept for history).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from finllm.errors import DataError
from finllm.names import check_name

if TYPE_CHECKING:
    from factors.panel import Panel

FREQ = "day"


def is_qlib_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "calendars" / f"{FREQ}.txt").is_file()


def _read_text(path: Path) -> str:
    """A dump's text file as UTF-8; anything else is a DataError naming the file and the byte."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_calendar(root: Path) -> np.ndarray:
    """``calendars/day.txt`` -> (T,) datetime64[D]."""
    path = root / "calendars" / f"{FREQ}.txt"
    lines = [ln.strip() for ln in _read_text(path).splitlines()]
    out = np.empty(len(lines), dtype="datetime64[D]")
    for i, ln in enumerate(lines):
        text = f"{ln[:4]}-{ln[4:6]}-{ln[6:8]}" if len(ln) == 8 and ln.isdigit() else ln[:10]
        try:
            out[i] = np.datetime64(text, "D")
        except ValueError:
            raise DataError(f"{path}: line {i + 1}: cannot parse {ln!r} as a date") from None
    if len(out) and not (np.diff(out.astype(np.int64)) > 0).all():
        i = int(np.argmax(np.diff(out.astype(np.int64)) <= 0)) + 2
        raise DataError(f"{path}: line {i}: calendar is not strictly increasing")
    return out


def read_instruments(root: Path, name: str) -> dict[str, list[tuple[np.datetime64, np.datetime64]]]:
    """``instruments/<name>.txt`` -> {symbol: [(start, end), ...]} (inclusive spans)."""
    check_name(name, "instruments")  # a file name inside the dump, never a path out of it
    path = root / "instruments" / f"{name}.txt"
    if not path.is_file():
        have = sorted(p.stem for p in (root / "instruments").glob("*.txt"))
        raise DataError(f"{path}: no such instruments file (available: {', '.join(have) or 'none'})")
    spans: dict[str, list[tuple[np.datetime64, np.datetime64]]] = {}
    for i, ln in enumerate(_read_text(path).splitlines()):
        parts = ln.split("\t") if "\t" in ln else ln.split()
        if not parts or not parts[0].strip():
            continue
        if len(parts) < 3:
            raise DataError(f"{path}: line {i + 1}: expected SYMBOL<TAB>start<TAB>end, got {ln!r}")
        try:
            a, b = (np.datetime64(p.strip()[:10], "D") for p in parts[1:3])
        except ValueError:
            raise DataError(f"{path}: line {i + 1}: cannot parse dates in {ln!r}") from None
        spans.setdefault(parts[0].strip(), []).append((a, b))
    return spans


def _read_bin(path: Path, n_cal: int) -> tuple[int, np.ndarray]:
    raw = path.read_bytes()
    if len(raw) % 4 or len(raw) < 4:
        raise DataError(f"{path}: truncated .bin file ({len(raw)} bytes, expected 4*(1+n))")
    arr = np.frombuffer(raw, dtype="<f4")
    start = arr[0]
    if not np.isfinite(start) or start < 0 or start != int(start) or int(start) + len(arr) - 1 > n_cal:
        raise DataError(f"{path}: start index {start} does not fit the calendar ({n_cal} days)")
    return int(start), arr[1:]


def read_qlib_frame(root: str | Path, *, instruments: str = "all", start=None, end=None,
                    tickers: Sequence[str] | None = None, fields: Sequence[str] | None = None,
                    on_instrument: Callable[[int, int], None] | None = None) -> pl.DataFrame:
    """Read a Qlib dump into a long frame: ``_row, date, ticker, <fields>..., in_universe``.

    ``fields`` defaults to every ``<field>.day.bin`` found; ``on_instrument(i, n)`` reports progress.
    """
    root = Path(root)
    cal = read_calendar(root)
    spans = read_instruments(root, instruments)
    symbols = sorted(spans)
    if tickers is not None:
        missing = sorted(set(tickers) - set(symbols))
        if missing:
            raise DataError(f"{root}: ticker(s) {', '.join(missing[:5])} not in instruments/{instruments}.txt")
        symbols = [s for s in symbols if s in set(tickers)]
    lo = 0 if start is None else int(np.searchsorted(cal, np.datetime64(str(start), "D"), "left"))
    hi = len(cal) if end is None else int(np.searchsorted(cal, np.datetime64(str(end), "D"), "right"))

    feat_root = root / "features"
    if fields is None:
        found: set[str] = set()
        for sym in symbols:
            d = feat_root / sym.lower()
            found |= {p.name[: -len(f".{FREQ}.bin")] for p in d.glob(f"*.{FREQ}.bin")}
        fields = sorted(found)
    fields = list(fields)

    cols_d, cols_t, cols_u, cols_v = [], [], [], []
    for k, sym in enumerate(symbols):
        if on_instrument:
            on_instrument(k, len(symbols))
        d = feat_root / sym.lower()
        parts = {}
        for f in fields:
            p = d / f"{f}.{FREQ}.bin"
            if p.is_file():
                parts[f] = _read_bin(p, len(cal))
        if not parts:
            continue
        a = max(min(s for s, _ in parts.values()), lo)
        b = min(max(s + len(v) for s, v in parts.values()), hi)
        if b <= a:
            continue
        block = np.full((b - a, len(fields)), np.nan, dtype=np.float32)
        for j, f in enumerate(fields):
            if f in parts:
                s, v = parts[f]
                i0, i1 = max(s, a), min(s + len(v), b)
                if i1 > i0:
                    block[i0 - a: i1 - a, j] = v[i0 - s: i1 - s]
        present = ~np.isnan(block).all(axis=1)
        idx = np.arange(a, b)[present]
        uni = np.zeros(len(idx), dtype=bool)
        for sa, sb in spans[sym]:
            uni |= (cal[idx] >= sa) & (cal[idx] <= sb)
        cols_d.append(idx)
        cols_t.append(np.full(len(idx), k, dtype=np.int32))
        cols_u.append(uni)
        cols_v.append(block[present])
    if not cols_d:
        raise DataError(f"{root}: no feature data for instruments/{instruments}.txt in the selected dates")
    didx = np.concatenate(cols_d)
    vals = np.concatenate(cols_v)
    data = {
        "date": pl.Series("date", cal[didx]).cast(pl.Date),
        "ticker": pl.Series("ticker", symbols, dtype=pl.String).gather(np.concatenate(cols_t)),
    }
    for j, f in enumerate(fields):
        data[f] = pl.Series(f, vals[:, j])
    data["in_universe"] = pl.Series("in_universe", np.concatenate(cols_u))
    return pl.DataFrame(data).with_row_index("_row")


def write_qlib_dump(panel: Panel, out_dir: str | Path, *, instruments_name: str = "all",
                    fields: Sequence[str] | None = None) -> Path:
    """Write ``panel`` as a Qlib dump; returns ``out_dir``.

    Each ticker is written from its first to its last valid day (invalid days inside as NaN);
    ``instruments/all.txt`` holds those life spans. With ``instruments_name`` other than ``all``,
    ``instruments/<name>.txt`` also holds the runs of ``panel.in_universe`` (point-in-time membership).
    """
    out = Path(out_dir)
    fields = list(fields or panel.fields)
    lower = [t.lower() for t in panel.tickers]
    if len(set(lower)) != len(lower):
        raise DataError(f"{out}: tickers that differ only in case cannot share a Qlib features folder")
    (out / "calendars").mkdir(parents=True, exist_ok=True)
    (out / "instruments").mkdir(parents=True, exist_ok=True)
    days = [str(d) for d in panel.dates]
    (out / "calendars" / f"{FREQ}.txt").write_text("\n".join(days) + "\n")

    valid = panel.valid.numpy()
    values = panel.values.numpy()
    fidx = [panel.fields.index(f) for f in fields]
    any_valid = valid.any(axis=0)
    first = valid.argmax(axis=0)
    last = len(panel.dates) - 1 - valid[::-1].argmax(axis=0)
    life_lines = []
    for s, sym in enumerate(panel.tickers):
        if not any_valid[s]:
            continue
        a, b = int(first[s]), int(last[s])
        life_lines.append(f"{sym}\t{days[a]}\t{days[b]}")
        d = out / "features" / lower[s]
        d.mkdir(parents=True, exist_ok=True)
        for f, j in zip(fields, fidx):
            col = np.where(valid[a: b + 1, s], values[a: b + 1, s, j], np.nan)
            np.concatenate([[a], col]).astype("<f4").tofile(d / f"{f}.{FREQ}.bin")
    (out / "instruments" / "all.txt").write_text("\n".join(life_lines) + "\n")

    if instruments_name != "all":
        uni = panel.in_universe.numpy()
        pad = np.zeros((1, uni.shape[1]), dtype=bool)
        edges = np.diff(np.vstack([pad, uni, pad]).astype(np.int8), axis=0)  # (D+1, S)
        lines = []
        for s, sym in enumerate(panel.tickers):
            starts = np.flatnonzero(edges[:, s] == 1)
            ends = np.flatnonzero(edges[:, s] == -1) - 1
            lines += [f"{sym}\t{days[a]}\t{days[b]}" for a, b in zip(starts, ends)]
        (out / "instruments" / f"{instruments_name}.txt").write_text("\n".join(lines) + "\n")
    return out
