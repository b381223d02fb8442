"""Fixtures for the market-data tests: small slices of the real shipped files."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

MARKET = Path(__file__).resolve().parents[2] / "data" / "market"
US = MARKET / "us_sp500_daily.parquet"
CRYPTO = MARKET / "crypto_daily.parquet"


@pytest.fixture(scope="session")
def us_slice() -> pl.DataFrame:
    """Real US rows: 2008 for the 30 alphabetically first tickers (includes the 2008 crash)."""
    lf = pl.scan_parquet(US).filter(pl.col("date").dt.year() == 2008)
    first = lf.select(pl.col("ticker").unique().sort().head(30)).collect()["ticker"]
    return lf.filter(pl.col("ticker").is_in(first.implode())).collect()


@pytest.fixture
def us_csv(tmp_path: Path, us_slice: pl.DataFrame) -> Path:
    p = tmp_path / "us.csv"
    us_slice.write_csv(p)
    return p
