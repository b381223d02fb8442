"""Validation rules on broken copies of real data and on small generated tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factors.panel import load_panel
from finllm.errors import DataError


def _put(df: pl.DataFrame, row: int, col: str, value) -> pl.DataFrame:
    """Copy of df with one cell replaced (the column becomes text if value is text)."""
    s = df[col]
    if isinstance(value, str) and s.dtype != pl.String:
        s = s.cast(pl.String)
    vals = s.to_list()
    vals[row] = value
    return df.with_columns(pl.Series(col, vals, dtype=s.dtype))


def _cell(panel, date, ticker, field):
    d = int(np.searchsorted(panel.dates, np.datetime64(str(date))))
    return panel.field(field)[d, panel.tickers.index(ticker)], panel.valid[d, panel.tickers.index(ticker)]


# -- errors: one line naming the file and the row/column ---------------------------------------------

def test_truncated_parquet(tmp_path: Path, us_slice: pl.DataFrame):
    good = tmp_path / "good.parquet"
    us_slice.write_parquet(good)
    data = good.read_bytes()
    for n in (len(data) // 2, len(data) - 9):
        bad = tmp_path / f"cut{n}.parquet"
        bad.write_bytes(data[:n])
        with pytest.raises(DataError) as err:
            load_panel(bad)
        msg = str(err.value)
        assert msg.startswith(f"{bad}: ") and "\n" not in msg and "parquet" in msg


def test_csv_missing_close(tmp_path: Path, us_slice: pl.DataFrame):
    p = tmp_path / "noclose.csv"
    us_slice.drop("close").write_csv(p)
    with pytest.raises(DataError, match=r"noclose.csv: missing required column\(s\) close"):
        load_panel(p)


def test_garbage_dates(tmp_path: Path, us_slice: pl.DataFrame):
    p = tmp_path / "garbage.csv"
    us_slice.with_columns(pl.lit("not-a-date").alias("date")).write_csv(p)
    with pytest.raises(DataError, match=r"garbage.csv: column 'date' line 2: cannot parse 'not-a-date'"):
        load_panel(p)


def test_one_bad_date_names_its_line(tmp_path: Path, us_slice: pl.DataFrame):
    p = tmp_path / "onebad.csv"
    _put(us_slice, 500, "date", "2008-13-45").write_csv(p)
    with pytest.raises(DataError, match=r"onebad.csv: column 'date' line 502: cannot parse '2008-13-45'.*1 of"):
        load_panel(p)


def test_empty_date_and_ticker(tmp_path: Path, us_slice: pl.DataFrame):
    p = tmp_path / "nodate.csv"
    _put(us_slice, 3, "date", None).write_csv(p)
    with pytest.raises(DataError, match="line 5: empty date"):
        load_panel(p)
    p = tmp_path / "noticker.parquet"
    _put(us_slice, 7, "ticker", None).write_parquet(p)
    with pytest.raises(DataError, match="column 'ticker' row 8: empty ticker"):
        load_panel(p)


def test_duplicate_rows(tmp_path: Path, us_slice: pl.DataFrame):
    p = tmp_path / "dup.csv"
    pl.concat([us_slice, us_slice.slice(10, 1)]).write_csv(p)
    d, t = us_slice["date"][10], us_slice["ticker"][10]
    n = us_slice.height
    with pytest.raises(DataError, match=rf"dup.csv: duplicate \(date, ticker\) \({d}, {t}\) at line 12, line {n + 2}"):
        load_panel(p)


def test_text_in_number_column(tmp_path: Path, us_slice: pl.DataFrame):
    p = tmp_path / "badnum.csv"
    _put(us_slice, 4000, "close", "abc").write_csv(p)  # past polars' schema inference window
    with pytest.raises(DataError, match=r"badnum.csv: column 'close' line 4002: cannot parse 'abc' as a number"):
        load_panel(p)


def test_unsupported_and_missing(tmp_path: Path):
    with pytest.raises(DataError, match="no such file"):
        load_panel(tmp_path / "nope.parquet")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="unsupported file type"):
        load_panel(tmp_path / "x.json")
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="not a Qlib dump"):
        load_panel(tmp_path / "d")


# -- repairs: counted, rows invalidated ----------------------------------------------------------------

def test_high_below_low_and_bad_prices_invalidate_rows(tmp_path: Path, us_slice: pl.DataFrame):
    df = us_slice
    df = _put(df, 7, "high", float(df["low"][7]) / 2)  # high < low
    df = _put(df, 9, "close", -1.0)                     # non-positive
    df = _put(df, 11, "open", None)                     # missing
    df = _put(df, 13, "volume", 0.0)                    # zero volume: kept, valid
    df = _put(df, 15, "volume", -5.0)                   # negative volume: NaN, valid
    top = max(df["open"][17], df["close"][17])
    assert df["low"][17] < top
    df = _put(df, 17, "high", (df["low"][17] + top) / 2)  # high below open/close: widened
    p_csv = tmp_path / "dirty.csv"
    df.sample(fraction=1.0, shuffle=True, seed=3).write_csv(p_csv)  # unsorted too
    p = load_panel(p_csv)
    r = p.report
    assert (r.count("high_below_low"), r.count("non_positive_price"), r.count("missing_price")) == (1, 1, 1)
    assert r.count("negative_volume") == 1 and r.count("range_contradiction") == 1
    assert r.count("unsorted") > 0 and r.rows_valid == df.height - 3 and not r.clean
    for i in (7, 9, 11):
        vals, ok = _cell(p, df["date"][i], df["ticker"][i], "close")
        assert not bool(ok) and torch.isnan(vals)
    vol, ok = _cell(p, df["date"][13], df["ticker"][13], "volume")
    assert bool(ok) and float(vol) == 0.0
    vol, ok = _cell(p, df["date"][15], df["ticker"][15], "volume")
    assert bool(ok) and torch.isnan(vol)
    hi, ok = _cell(p, df["date"][17], df["ticker"][17], "high")
    assert bool(ok) and float(hi) == pytest.approx(max(df["open"][17], df["close"][17]))
    # shuffled CSV gives the same tensor as the sorted parquet of the same rows
    p_pq = tmp_path / "dirty.parquet"
    df.write_parquet(p_pq)
    q = load_panel(p_pq)
    assert torch.equal(torch.nan_to_num(p.values, -7.0), torch.nan_to_num(q.values, -7.0))
    assert torch.equal(p.valid, q.valid)


def _toy(n_days: int = 5, tickers=("A", "B", "C")) -> pl.DataFrame:
    dates = pd.bdate_range("2021-01-04", periods=n_days).date
    rows = [(d, t) for d in dates for t in tickers]
    n = len(rows)
    rng = np.random.default_rng(0)
    close = rng.uniform(10, 20, n)
    return pl.DataFrame({
        "date": [r[0] for r in rows], "ticker": [r[1] for r in rows],
        "open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
        "volume": rng.uniform(1e3, 1e4, n),
    })


@pytest.mark.parametrize("column,values", [
    ("in_universe", "bool"), ("in_universe", "int"), ("in_universe", "text"),
    # a membership column under another name is found (and reported) when it is the only one
    ("In Index", "bool"), ("in_csi300", "int"), ("sp500_member", "text"), ("is_constituent", "int")])
def test_in_universe_column(tmp_path: Path, column: str, values: str):
    df = _toy()
    member = [t != "C" or i >= 9 for i, t in enumerate(df["ticker"])]  # C joins the index on day 4
    col = {"bool": member, "int": [int(m) for m in member], "text": ["true" if m else "false" for m in member]}
    df = df.with_columns(pl.Series(column, col[values]))
    df = _put(df, 0, "close", -1.0)  # an invalid row is never in the universe
    p = tmp_path / "u.csv"
    df.write_csv(p)
    panel = load_panel(p)
    c = panel.tickers.index("C")
    assert panel.valid[:, c].all() and panel.in_universe[:, c].tolist() == [False] * 3 + [True] * 2
    assert not bool(panel.in_universe[0, 0]) and not bool(panel.valid[0, 0])
    assert torch.equal(panel.in_universe, panel.valid & torch.tensor(np.array(member).reshape(5, 3)))
    assert panel.report.count("outside_universe") == 3
    assert "in_universe" not in panel.fields
    assert panel.report.count("membership_column") == (column != "in_universe")


def test_membership_lookalikes(tmp_path: Path):
    """Two membership-like columns are the user's choice (error naming both); a numeric column named like
    one but holding levels (an index's close) stays a feature, and the universe is every valid row."""
    df = _toy().with_columns(pl.lit(1).alias("in_csi300"), pl.lit(0).alias("in_csi500"))
    p = tmp_path / "two.csv"
    df.write_csv(p)
    with pytest.raises(DataError, match=r"two.csv: columns 'in_csi300' and 'in_csi500' both look like index "
                                        r"membership; rename the one that defines the universe to 'in_universe'"):
        load_panel(p)
    q = tmp_path / "level.csv"
    _toy().with_columns(pl.lit(3127.5).alias("index")).write_csv(q)
    panel = load_panel(q)
    assert "index" in panel.fields and panel.report.count("membership_column") == 0
    assert torch.equal(panel.in_universe, panel.valid)


def test_in_universe_null_and_bad_values(tmp_path: Path):
    df = _toy().with_columns(pl.lit(True).alias("in_universe"))
    df = _put(df, 4, "in_universe", None)
    p = tmp_path / "u.parquet"
    df.write_parquet(p)
    panel = load_panel(p)
    assert panel.report.count("in_universe_null") == 1 and int(panel.in_universe.sum()) == df.height - 1
    bad = tmp_path / "ubad.csv"
    _toy().with_columns(pl.Series("in_universe", ["maybe"] * 15)).write_csv(bad)
    with pytest.raises(DataError, match=r"ubad.csv: column 'in_universe' line 2: 'maybe' is not a boolean"):
        load_panel(bad)


def test_aliases_date_formats_vwap_and_extras(tmp_path: Path):
    df = _toy()
    out = df.rename({"date": "Date", "ticker": "Symbol", "close": "Close"}).with_columns(
        pl.col("Date").dt.strftime("%Y%m%d").cast(pl.Int64),  # integer YYYYMMDD
        (pl.col("Close") * 1.001).alias("vwap"),
        pl.lit(7).alias("shares_out"),   # int extra -> float field
        pl.lit("x").alias("note"),        # text extra -> ignored, reported
    )
    p = tmp_path / "alias.csv"
    out.write_csv(p)
    panel = load_panel(p)
    assert panel.fields == ["open", "high", "low", "close", "volume", "vwap", "shares_out"]
    assert str(panel.dates[0]) == "2021-01-04"
    assert panel.report.count("vwap_derived") == 0 and panel.report.count("ignored_columns") == 1
    torch.testing.assert_close(panel.field("vwap"), (panel.field("close").double() * 1.001).float())
    # datetime strings with a time part are accepted too
    p2 = tmp_path / "dt.csv"
    df.with_columns(pl.col("date").cast(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(p2)
    assert load_panel(p2).shape == (5, 3, 6)


def test_folder_of_files(tmp_path: Path, us_slice: pl.DataFrame):
    d = tmp_path / "parts"
    d.mkdir()
    us_slice.filter(pl.col("date") < pl.date(2008, 7, 1)).write_parquet(d / "a.parquet")
    us_slice.filter(pl.col("date") >= pl.date(2008, 7, 1)).write_csv(d / "b.csv")
    whole = tmp_path / "whole.parquet"
    us_slice.write_parquet(whole)
    a, b = load_panel(d), load_panel(whole)
    assert torch.equal(torch.nan_to_num(a.values, -1.0), torch.nan_to_num(b.values, -1.0))
    us_slice.head(3).write_csv(d / "c.csv")  # overlaps a.parquet
    with pytest.raises(DataError, match=r"parts: duplicate \(date, ticker\).*across input files"):
        load_panel(d)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 8), st.integers(1, 6), st.floats(0.0, 0.6), st.integers(0, 2**31))
def test_dense_equals_pandas_pivot(tmp_path_factory, n_days, n_tick, drop, seed):
    """Property: the dense tensor equals a pandas pivot of the same (shuffled, gappy) long table."""
    rng = np.random.default_rng(seed)
    df = _toy(n_days, tuple(f"T{i}" for i in range(n_tick)))
    keep = rng.random(df.height) >= drop
    keep[0] = True
    df = df.filter(pl.Series(keep)).sample(fraction=1.0, shuffle=True, seed=seed % 1000)
    path = tmp_path_factory.mktemp("h") / "x.parquet"
    df.write_parquet(path)
    p = load_panel(path)
    piv = df.to_pandas().pivot(index="date", columns="ticker", values="close").sort_index()
    np.testing.assert_array_equal(p.field("close").numpy(), piv.to_numpy(dtype=np.float32))
    assert p.tickers == list(piv.columns)
    assert torch.equal(p.valid, torch.from_numpy(piv.notna().to_numpy().copy()))


def test_progress_display_and_null_date_inside_a_date_filter(tmp_path: Path, us_slice: pl.DataFrame):
    p = tmp_path / "x.parquet"
    us_slice.write_parquet(p)
    assert load_panel(p, progress=True, start="2008-06-01").shape[0] == 149
    q = tmp_path / "nulldate.parquet"
    _put(us_slice, 20, "date", None).write_parquet(q)
    with pytest.raises(DataError, match="nulldate.parquet: column 'date' row 21: empty date"):
        load_panel(q, start="2008-06-01")
