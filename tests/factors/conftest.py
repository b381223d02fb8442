"""Panels for the factor tests: slices of the real shipped US and crypto data, plus generated holes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.conftest import DATA

US = DATA / "market" / "us_sp500_daily.parquet"
CRYPTO = DATA / "market" / "crypto_daily.parquet"
# Includes names listed inside the slice (PM, V, AWK, DISCK) and 2008's extreme movers (AIG, C).
US_TICKERS = ["AAPL", "AIG", "C", "XOM", "MSFT", "GE", "F", "ANTM", "PM", "V", "AWK", "DISCK", "BAC", "NVDA"]


def with_holes(panel, frac: float = 0.05, out_of_universe: float = 0.1, seed: int = 0):
    """Knock out ``frac`` of the rows (valid=False, values NaN) and drop names from the universe."""
    g = np.random.default_rng(seed)
    valid = panel.valid & ~torch.from_numpy(g.random(tuple(panel.valid.shape)) < frac)
    values = panel.values.clone()
    values[~valid] = float("nan")
    uni = panel.in_universe & valid & ~torch.from_numpy(g.random(tuple(panel.valid.shape)) < out_of_universe)
    return dataclasses.replace(panel, values=values, valid=valid, in_universe=uni)


@pytest.fixture(scope="session")
def us_panel():
    """Real US panel, 2008 (crisis year), 14 names, with 5% extra holes and a partial universe."""
    from factors.panel import load_panel

    p = load_panel(US, start="2008-01-01", end="2008-12-31", tickers=US_TICKERS)
    return with_holes(p)


@pytest.fixture(scope="session")
def us_wide():
    """Real US panel, 2006-2009, the 80 names with most valid days (for metrics and the CLI)."""
    from factors.panel import load_panel

    return load_panel(US, start="2006-01-01", end="2009-12-31", max_tickers=80)


@pytest.fixture(scope="session")
def crypto_panel():
    """Real crypto panel (dirty: missing days, zero volumes, market_cap extra field), 2015-2016."""
    from factors.panel import load_panel

    return load_panel(CRYPTO, start="2015-01-01", end="2016-06-30", max_tickers=20)
