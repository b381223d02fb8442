"""Qlib dump: write a real slice, read it back, get the same panel; the byte format matches Qlib's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from factors.panel import load_panel
from factors.qlib_dump import is_qlib_dir, write_qlib_dump
from finllm.errors import DataError


def _same(a, b) -> None:
    assert a.tickers == b.tickers and a.fields == b.fields
    np.testing.assert_array_equal(a.dates, b.dates)
    assert torch.equal(torch.nan_to_num(a.values, -1.0), torch.nan_to_num(b.values, -1.0))
    assert torch.equal(a.valid, b.valid) and torch.equal(a.in_universe, b.in_universe)


@pytest.fixture
def gappy(tmp_path: Path, us_slice: pl.DataFrame) -> Path:
    """The real slice with a hole inside one life, an invalid row and a late-listing ticker."""
    df = us_slice.filter(~((pl.col("ticker") == "AAPL") & pl.col("date").is_between(pl.date(2008, 5, 1),
                                                                                     pl.date(2008, 5, 9))))
    df = df.filter(~((pl.col("ticker") == "ABC") & (pl.col("date") < pl.date(2008, 3, 1))))
    df = df.with_columns(pl.when((pl.col("ticker") == "ABT") & (pl.col("date") == pl.date(2008, 6, 2)))
                         .then(-1.0).otherwise(pl.col("close")).alias("close"))
    p = tmp_path / "gappy.parquet"
    df.write_parquet(p)
    return p


def test_round_trip_all(tmp_path: Path, gappy: Path):
    panel = load_panel(gappy)
    assert panel.report.count("nan_runs") > 0 and not bool(panel.valid[0, panel.tickers.index("ABC")])
    out = write_qlib_dump(panel, tmp_path / "qlib")
    assert is_qlib_dir(out)
    back = load_panel(out)
    _same(panel, back)
    assert back.report.count("unsorted") == 0  # no row order in a dump
    # byte format: little-endian float32, first value = start index into the calendar
    cal = (out / "calendars" / "day.txt").read_text().split()
    raw = np.fromfile(out / "features" / "abc" / "close.day.bin", dtype="<f4")
    start = int(raw[0])
    assert cal[start] == "2008-03-03" and start == int(np.searchsorted(panel.dates, np.datetime64("2008-03-03")))
    assert raw[1] == pytest.approx(float(panel.field("close")[start, panel.tickers.index("ABC")]))
    assert len(raw) - 1 == len(cal) - start
    lines = (out / "instruments" / "all.txt").read_text().splitlines()
    assert "ABC\t2008-03-03\t2008-12-31" in lines


def test_round_trip_with_universe_and_slicing(tmp_path: Path, us_slice: pl.DataFrame):
    # point-in-time membership: every ticker is a member in H2 only, AAPL also in January
    df = us_slice.with_columns(((pl.col("date") >= pl.date(2008, 7, 1))
                                | ((pl.col("ticker") == "AAPL") & (pl.col("date").dt.month() == 1)))
                               .alias("in_universe"))
    src = tmp_path / "u.parquet"
    df.write_parquet(src)
    panel = load_panel(src)
    out = write_qlib_dump(panel, tmp_path / "qlib", instruments_name="sp30")
    back = load_panel(out, instruments="sp30")
    _same(panel, back)
    spans = [ln for ln in (out / "instruments" / "sp30.txt").read_text().splitlines() if ln.startswith("AAPL\t")]
    assert spans == ["AAPL\t2008-01-02\t2008-01-31", "AAPL\t2008-07-01\t2008-12-31"]
    part = load_panel(out, start="2008-10-01", end="2008-10-31", tickers=["AAPL", "ABT"], instruments="sp30")
    _same(part, panel.slice_dates("2008-10-01", "2008-10-31").select_tickers(["AAPL", "ABT"]))


def test_bad_dumps(tmp_path: Path, us_slice: pl.DataFrame):
    src = tmp_path / "s.parquet"
    us_slice.filter(pl.col("ticker").is_in(["AAPL", "ABT"])).write_parquet(src)
    out = write_qlib_dump(load_panel(src), tmp_path / "q")
    with pytest.raises(DataError, match=r"instruments/csi300.txt: no such instruments file \(available: all\)"):
        load_panel(out, instruments="csi300")
    with pytest.raises(DataError, match="ZZZ not in instruments/all.txt"):
        load_panel(out, tickers=["ZZZ"])
    b = out / "features" / "aapl" / "close.day.bin"
    b.write_bytes(b.read_bytes()[:-2])
    with pytest.raises(DataError, match=r"close.day.bin: truncated .bin file"):
        load_panel(out)
    b.write_bytes(np.array([10_000, 1.0], dtype="<f4").tobytes())
    with pytest.raises(DataError, match="start index 10000.0 does not fit the calendar"):
        load_panel(out)
    cal = out / "calendars" / "day.txt"
    cal.write_text("2008-01-02\nyesterday\n")
    with pytest.raises(DataError, match=r"day.txt: line 2: cannot parse 'yesterday'"):
        load_panel(out)
