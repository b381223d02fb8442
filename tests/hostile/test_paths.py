"""Paths are literal: a name with glob characters is that file (or an error naming it), never a sibling."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from factors.market_io import read_columns
from factors.panel import load_panel
from finllm.cli.main import app
from finllm.errors import DataError

runner = CliRunner()


def test_bracket_name_never_reads_a_sibling(tmp_path, us_small):
    us_small.write_parquet(tmp_path / "glob1.parquet")  # what polars' glob "glob[1].parquet" would match
    us_small.write_csv(tmp_path / "glob1.csv")
    for name in ("glob[1].parquet", "glob[1].csv"):
        with pytest.raises(DataError, match=r"glob\[1\]"):
            read_columns(tmp_path / name)  # the header reader too, not only the existence check before it
        with pytest.raises(DataError, match=r"glob\[1\]"):
            load_panel(tmp_path / name)


def test_bracket_name_reads_that_file(tmp_path, us_small):
    other = us_small.filter(pl.col("ticker") == us_small["ticker"][0])
    other.write_parquet(tmp_path / "x1.parquet")
    us_small.write_parquet(tmp_path / "x[1].parquet")
    us_small.write_csv(tmp_path / "x[:y].csv")  # a pattern polars cannot even compile
    for name in ("x[1].parquet", "x[:y].csv"):
        r = runner.invoke(app, ["data", "info", str(tmp_path / name), "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["n_tickers"] == us_small["ticker"].n_unique()


def test_folder_with_bracket_names(tmp_path, us_small):
    folder = tmp_path / "m[0-9]"
    folder.mkdir()
    tickers = sorted(us_small["ticker"].unique())
    us_small.filter(pl.col("ticker").is_in(tickers[:6])).write_parquet(folder / "part[1].parquet")
    us_small.filter(pl.col("ticker").is_in(tickers[6:])).write_parquet(folder / "part1.parquet")
    panel = load_panel(folder)
    assert len(panel.tickers) == len(tickers) and panel.report.rows_read == us_small.height
