"""`finllm factors mine` on a real slice with an in_universe column; resume; clear errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from finllm.cli.main import app
from tests.mining.conftest import SPLITS

runner = CliRunner()


def _args(data, out, *extra: str) -> list[str]:
    # one search unless a test asks for restarts: --minutes 3 is only a cap here (--max-factors bounds the run),
    # and the auto rule would split 3 minutes into 2 searches
    single = [] if "--restarts" in extra else ["--restarts", "1"]
    return ["factors", "mine", "--data", str(data), "--train", SPLITS["train"], "--valid", SPLITS["valid"],
            "--test", SPLITS["test"], "--out", str(out), "--pool-size", "5", "--minutes", "3", "--json", *single,
            *extra]


def test_gp_mine_json_with_in_universe_column(us_slice, tmp_path) -> None:
    res = runner.invoke(app, _args(us_slice, tmp_path / "gp", "--method", "gp", "--max-factors", "60", "--seed", "3"))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["config"]["method"] == "gp" and doc["mining"]["evaluations"] >= 60
    assert 1 <= len(doc["pool"]) <= 5
    for split in ("train", "valid", "test"):
        m = doc["metrics"][split]
        assert m["n_days"] > 100 and m["ic"] is not None and m["sharpe"] is not None
    # the same seed and factor budget gives the same pool (repeatable runs)
    again = runner.invoke(app, _args(us_slice, tmp_path / "gp2", "--method", "gp", "--max-factors", "60",
                                     "--seed", "3", "--no-store"))
    assert [m["formula"] for m in json.loads(again.stdout)["pool"]] == [m["formula"] for m in doc["pool"]]


def test_rl_run_resumes_from_its_checkpoint(us_slice, tmp_path) -> None:
    out = tmp_path / "rl"
    first = runner.invoke(app, _args(us_slice, out, "--max-factors", "40", "--no-store"))
    assert first.exit_code == 0, first.output
    assert (out / "checkpoint" / "model.zip").exists() and (out / "checkpoint" / "state.json").exists()
    d1 = json.loads(first.stdout)
    assert not d1["mining"]["resumed"]
    second = runner.invoke(app, _args(us_slice, out, "--max-factors", "80", "--no-store"))
    assert second.exit_code == 0, second.output
    d2 = json.loads(second.stdout)
    assert d2["mining"]["resumed"] and d2["mining"]["episodes"] >= 80
    assert d2["mining"]["episodes_this_session"] < d2["mining"]["episodes"]
    assert d2["mining"]["timesteps"] > d1["mining"]["timesteps"]


def test_bad_input_is_one_clear_line(us_slice, tmp_path) -> None:
    res = runner.invoke(app, _args(us_slice, tmp_path / "x", "--method", "mcts"))
    assert res.exit_code == 2 and "--method 'mcts'" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["factors", "mine", "--data", str(us_slice), "--train", "2006-01-01:2009-12-31",
                              "--valid", "2009-06-01:2010-12-31", "--test", "2011-01-01:2011-12-31"])
    assert res.exit_code == 2 and "overlap" in res.output
    res = runner.invoke(app, ["factors", "mine", "--data", str(tmp_path / "missing.parquet")])
    assert res.exit_code == 2 and "missing.parquet" in res.output
    res = runner.invoke(app, _args(us_slice, tmp_path / "y", "--const-free", "Greater,Lesser"))
    assert res.exit_code == 2 and "--const-free" in res.output and "Lesser" in res.output
    res = runner.invoke(app, _args(us_slice, tmp_path / "y", "--pool-objective", "sharpe"))
    assert res.exit_code == 2 and "--pool-objective" in res.output and "sharpe" in res.output
    res = runner.invoke(app, _args(us_slice, tmp_path / "y", "--pool-target", "sharpe"))
    assert res.exit_code == 2 and "--pool-target" in res.output and "sharpe" in res.output
    res = runner.invoke(app, _args(us_slice, tmp_path / "y", "--recency-halflife", "-1"))
    assert res.exit_code == 2 and "--recency-halflife" in res.output
    res = runner.invoke(app, _args(us_slice, tmp_path / "y", "--bag-days", "-5"))
    assert res.exit_code == 2 and "--bag-days" in res.output
    res = runner.invoke(app, _args(us_slice, tmp_path / "y", "--jobs", "0"))
    assert res.exit_code == 2 and "--jobs" in res.output
    assert "Traceback" not in res.output


def test_a_market_without_split_dates_is_cut_by_time(us_slice, tmp_path) -> None:
    """Data other than the shipped US file, no --train/--valid/--test: its own days are cut 60/20/20 by
    time and the run records the ranges it used; giving only some of the three is an error."""
    import numpy as np
    import polars as pl

    from factors.splits import time_splits

    res = runner.invoke(app, ["factors", "mine", "--data", str(us_slice), "--out", str(tmp_path / "auto"),
                              "--method", "gp", "--max-factors", "30", "--pool-size", "3", "--no-store", "--json"])
    assert res.exit_code == 0, res.output
    splits = json.loads(res.stdout)["config"]["splits"]
    dates = np.unique(pl.read_parquet(us_slice, columns=["date"])["date"].to_numpy())
    n = len(dates)
    assert splits["train"] == f"{dates[0]}:{dates[int(0.6 * n) - 1]}"
    assert splits["valid"].startswith(str(dates[int(0.6 * n)])) and splits["test"].endswith(str(dates[-1]))
    assert [s.text() for s in time_splits(dates)] == [splits["train"], splits["valid"], splits["test"]]
    part = runner.invoke(app, ["factors", "mine", "--data", str(us_slice), "--train", SPLITS["train"],
                               "--out", str(tmp_path / "part"), "--no-store"])
    assert part.exit_code == 2 and "or none of them" in part.output


def test_defaults_on_the_shipped_us_file(tmp_path) -> None:
    """No split given on (a slice of) the shipped US file: the documented ranges, the same rule as `factors eval`
    and `factors ask` (factors.splits.default_splits); the backtest holds the book for the horizon."""
    import polars as pl

    from factors.splits import US_SPLITS
    from tests.mining.conftest import US

    df = pl.read_parquet(US).filter((pl.col("date") >= pl.date(2014, 6, 1)) & (pl.col("date") <= pl.date(2017, 6, 30)))
    top = df.group_by("ticker").len().sort(["len", "ticker"], descending=[True, False]).head(15)["ticker"].to_list()
    path = tmp_path / US.name
    df.filter(pl.col("ticker").is_in(top)).write_parquet(path)
    res = runner.invoke(app, ["factors", "mine", "--data", str(path), "--out", str(tmp_path / "m"), "--method", "gp",
                              "--max-factors", "10", "--pool-size", "2", "--horizon", "10", "--no-store", "--json"])
    assert res.exit_code == 0, res.output
    cfg = json.loads(res.stdout)["config"]
    assert [cfg["splits"][k] for k in ("train", "valid", "test")] == list(US_SPLITS)
    assert cfg["rebalance"] == 10


def test_restarts_flag_averages_pools_and_refuses_a_budget_too_small(us_slice, tmp_path) -> None:
    res = runner.invoke(app, _args(us_slice, tmp_path / "r", "--method", "gp", "--max-factors", "40",
                                   "--restarts", "2", "--no-store"))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["config"]["restarts"] == 2 and len(doc["mining"]["restarts"]) == 2
    assert {r for m in doc["pool"] for r in m["restarts"]} <= {0, 1} and len(doc["pool"]) <= 10
    bad = runner.invoke(app, _args(us_slice, tmp_path / "b", "--method", "gp", "--max-factors", "1",
                                   "--restarts", "2", "--no-store"))
    assert bad.exit_code == 2 and "--restarts 2" in bad.output and "Traceback" not in bad.output
