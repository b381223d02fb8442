"""Small slices of the real US panel for the miner tests, written once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.conftest import DATA

US = DATA / "market" / "us_sp500_daily.parquet"
SPLITS = dict(train="2006-01-01:2009-12-31", valid="2010-01-01:2010-12-31", test="2011-01-01:2011-12-31")


@pytest.fixture(scope="session")
def us_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real rows 2005-07..2011 for the 60 tickers with the most rows, plus an in_universe column in which
    every 7th ticker leaves the universe in 2008 (the miner must rank only members)."""
    df = pl.read_parquet(US).filter((pl.col("date") >= pl.date(2005, 7, 1)) & (pl.col("date") <= pl.date(2011, 12, 31)))
    top = (df.group_by("ticker").len().sort(["len", "ticker"], descending=[True, False]).head(60)["ticker"]
           .sort().to_list())
    df = df.filter(pl.col("ticker").is_in(top))
    out_names = top[::7]
    df = df.with_columns((~(pl.col("ticker").is_in(out_names) & (pl.col("date").dt.year() == 2008)))
                         .alias("in_universe"))
    path = tmp_path_factory.mktemp("mining") / "us_slice.parquet"
    df.write_parquet(path)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
