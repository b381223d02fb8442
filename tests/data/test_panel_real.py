"""load_panel on the real shipped files: shapes, values at known positions, documented findings."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from factors.panel import BASE_FIELDS, load_panel
from finllm.errors import DataError
from tests.data.conftest import CRYPTO, US


def _at(panel, date: str, ticker: str, field: str) -> float:
    d = int(np.searchsorted(panel.dates, np.datetime64(date)))
    assert str(panel.dates[d]) == date
    return float(panel.field(field)[d, panel.tickers.index(ticker)])


def test_full_us_panel_matches_provenance():
    p = load_panel(US)
    assert p.shape == (5402, 504, 6)
    assert p.fields == list(BASE_FIELDS)
    assert p.values.dtype == torch.float32 and p.valid.dtype == torch.bool
    assert int(p.valid.sum()) == 2_402_891 == p.report.rows_read == p.report.rows_valid
    assert torch.equal(p.in_universe, p.valid)  # no in_universe column
    # counts stated in data/PROVENANCE.md
    assert p.report.count("zero_volume") == 187
    assert p.report.count("nan_runs") == 27
    assert p.report.count("extreme_return") == 43
    assert p.report.count("vwap_derived") == 2_402_891
    assert p.report.clean
    # NaN exactly where there is no row
    assert torch.equal(torch.isnan(p.values).any(-1), ~p.valid)
    assert str(p.dates[0]) == "1999-11-01" and str(p.dates[-1]) == "2021-04-21"


def test_us_slice_values_equal_source(us_slice: pl.DataFrame):
    p = load_panel(US, start="2008-01-01", end="2008-12-31", tickers=us_slice["ticker"].unique().to_list())
    assert p.shape == (253, 30, 6)
    row = us_slice.filter((pl.col("ticker") == "AAPL") & (pl.col("date") == pl.date(2008, 10, 10))).row(0, named=True)
    for f in ("open", "high", "low", "close", "volume"):
        assert _at(p, "2008-10-10", "AAPL", f) == pytest.approx(row[f], rel=0, abs=0)
    # every value of the long table lands in its (date, ticker) cell
    d = np.searchsorted(p.dates, us_slice["date"].to_numpy().astype("datetime64[D]"))
    s = np.searchsorted(np.array(p.tickers), us_slice["ticker"].to_numpy())
    np.testing.assert_array_equal(p.field("close").numpy()[d, s], us_slice["close"].to_numpy())
    vwap = (p.field("high") + p.field("low") + p.field("close")) / 3
    torch.testing.assert_close(p.field("vwap"), vwap, equal_nan=True)


def test_crypto_dirty_file_is_repaired_and_reported():
    p = load_panel(CRYPTO)
    assert p.fields == [*BASE_FIELDS, "market_cap"]
    assert p.shape == (1581, 560, 7)
    r = p.report
    assert r.count("range_contradiction") == 65
    assert r.count("missing_volume") == 4835
    assert r.count("zero_volume") > 20_000
    assert r.count("missing_extra") == 37_280
    assert r.count("nan_runs") > 0 and not r.clean
    v = p.valid
    hi, lo, op, cl = (p.field(f)[v] for f in ("high", "low", "open", "close"))
    assert bool((hi >= torch.maximum(op, cl)).all()) and bool((lo <= torch.minimum(op, cl)).all())
    # vwap is the typical price of the *repaired* high/low (float64, rounded once)
    typical = ((p.field("high").double() + p.field("low").double() + p.field("close").double()) / 3).float()
    assert torch.equal(torch.nan_to_num(p.field("vwap"), -1.0), torch.nan_to_num(typical, -1.0))
    # missing volume keeps the row valid, with NaN volume
    vol = p.field("volume")
    assert int((v & torch.isnan(vol)).sum()) == 4835
    assert not torch.isnan(p.field("close")[v]).any()


def test_select_slice_field_summary():
    p = load_panel(US, start="2020-03-01", end="2020-03-31", max_tickers=20)
    assert p.shape[1] == 20 and p.report.count("max_tickers") == 483  # 503 tickers trade in March 2020
    q = p.slice_dates("2020-03-09", "2020-03-13")
    assert [str(d) for d in q.dates] == ["2020-03-09", "2020-03-10", "2020-03-11", "2020-03-12", "2020-03-13"]
    i = int(np.searchsorted(p.dates, np.datetime64("2020-03-09")))
    assert torch.equal(torch.nan_to_num(q.values, -1.0), torch.nan_to_num(p.values[i:i + 5], -1.0))
    assert torch.equal(q.valid, p.valid[i:i + 5])
    two = p.select_tickers([p.tickers[3], p.tickers[0]])
    assert two.tickers == [p.tickers[3], p.tickers[0]]
    assert torch.equal(torch.nan_to_num(two.field("close")[:, 0]), torch.nan_to_num(p.field("close")[:, 3]))
    assert p.select_tickers(5).shape[1] == 5
    s = p.summary()
    assert s["n_tickers"] == 20 and s["start"] == "2020-03-02" and s["end"] == "2020-03-31"
    with pytest.raises(DataError, match="no field 'returns'"):
        p.field("returns")
    with pytest.raises(DataError, match="unknown ticker"):
        p.select_tickers(["NOPE"])
    with pytest.raises(DataError, match="no dates between"):
        p.slice_dates("2030-01-01", "2030-02-01")


def test_unknown_ticker_and_empty_range_are_errors():
    with pytest.raises(DataError, match=r"us_sp500_daily.parquet: no rows for ticker\(s\) ZZZZ"):
        load_panel(US, start="2020-01-02", end="2020-01-10", tickers=["AAPL", "ZZZZ"])
    with pytest.raises(DataError, match="no rows between"):
        load_panel(US, start="2030-01-01")
