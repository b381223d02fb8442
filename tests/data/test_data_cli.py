"""`finllm data info|validate`: JSON output, exit codes, one-line errors, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from finllm.cli.main import app
from tests.data.conftest import CRYPTO, MARKET

runner = CliRunner()
FRAUD = MARKET.parent / "fraud"


def _run(*args: str):
    return runner.invoke(app, ["data", *map(str, args)])


def test_info_json_real_slice():
    r = _run("info", MARKET / "us_sp500_daily.parquet", "--start", "2021-04-01", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["kind"] == "market" and out["n_tickers"] == 504 and out["start"] == "2021-04-01"
    assert out["fields"] == ["open", "high", "low", "close", "volume", "vwap"]
    assert out["issues"]["vwap_derived"] == out["rows_valid"]


def test_validate_json_and_strict():
    r = _run("validate", CRYPTO, "--json", "--start", "2017-01-01")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    checks = {i["check"]: i for i in rep["issues"]}
    assert checks["zero_volume"]["action"] == "kept" and rep["rows_read"] == rep["rows_valid"] + rep["rows_invalid"]
    assert _run("validate", CRYPTO, "--strict").exit_code == 1  # 65 high/low repairs
    human = _run("validate", CRYPTO, "--start", "2017-08-01")
    assert human.exit_code == 0 and "zero_volume" in human.stdout and "rows read" in human.stdout


def test_bad_inputs_exit_2_one_line(tmp_path: Path, us_csv: Path, us_slice: pl.DataFrame):
    trunc = tmp_path / "t.parquet"
    us_slice.write_parquet(trunc)
    trunc.write_bytes(trunc.read_bytes()[:1000])
    noclose = tmp_path / "noclose.csv"
    us_slice.drop("close").write_csv(noclose)
    garbage = tmp_path / "garbage.csv"
    us_slice.with_columns(pl.lit("??").alias("date")).write_csv(garbage)
    for path, what in [(trunc, "parquet"), (noclose, "close"), (garbage, "column 'date'")]:
        for cmd in (["info"], ["validate", "--json"]):
            r = _run(*cmd, path)
            assert r.exit_code == 2
            assert r.stdout == ""
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and what in lines[0]
    assert not (Path(os.environ["FINLLM_HOME"])).exists()  # nothing written to the store


def test_bad_input_subprocess_has_no_traceback(tmp_path: Path, us_slice: pl.DataFrame):
    p = tmp_path / "t.parquet"
    us_slice.write_parquet(p)
    p.write_bytes(p.read_bytes()[:-20])
    r = subprocess.run([sys.executable, "-m", "finllm.cli.main", "data", "validate", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and str(p) in r.stderr


def test_graph_files_go_to_the_graph_loader():
    pytest.importorskip("fraud.datasets")
    # a CSV without date/ticker columns is a graph (the .mat route is by suffix only)
    r = _run("info", FRAUD / "soc-sign-bitcoinotc.csv", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["kind"] == "graph" and out["nodes"] == 5881
    r = _run("validate", FRAUD / "soc-sign-bitcoinotc.csv", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["kind"] == "graph"


def test_help_everywhere():
    for args in (["data", "--help"], ["data", "info", "--help"], ["data", "validate", "--help"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0 and "Usage" in r.stdout
    assert "--strict" in runner.invoke(app, ["data", "validate", "--help"]).stdout
