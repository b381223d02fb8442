"""`finllm factors eval` end to end on a slice of the real US file."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from finllm.cli.main import app
from tests.factors.conftest import US

ARGS = ["--data", str(US), "--start", "2006-01-01", "--end", "2009-12-31", "--max-tickers", "60"]


def test_eval_json_per_split():
    res = CliRunner().invoke(app, ["factors", "eval", "(close - Mean(close, 20)) / Std(close, 20)", *ARGS,
                                   "--train", "2006-01-01:2007-12-31", "--valid", "2008-01-01:2008-12-31",
                                   "--test", "2009-01-01:2009-12-31", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["expr"] == "Div(Sub($close, Mean($close, 20)), Std($close, 20))"
    assert out["tokens"][-1] == "Div" and set(out["splits"]) == {"train", "valid", "test"}
    tr = out["splits"]["train"]
    assert tr["first_day"] >= "2006-01-01" and tr["last_day"] < "2007-12-31"  # purged by the horizon
    for k in ["ic", "rank_ic", "icir", "t_stat_nw", "quantile_returns", "rank_ic_decay", "backtest"]:
        assert k in tr
    assert -1 < tr["ic"] < 1 and len(tr["quantile_returns"]) == 5


def test_bad_expression_exits_2_with_parse_error():
    res = CliRunner().invoke(app, ["factors", "eval", "Mean($close, 0)", *ARGS])
    assert res.exit_code == 2
    assert "'0' at character 13" in res.output and "window" in res.output


def test_unknown_feature_and_bad_split_exit_2():
    res = CliRunner().invoke(app, ["factors", "eval", "Mean($foo, 5)", *ARGS])
    assert res.exit_code == 2 and "unknown feature '$foo'" in res.output
    res = CliRunner().invoke(app, ["factors", "eval", "Mean($close, 5)", *ARGS, "--train", "2009:2010"])
    assert res.exit_code == 2 and "--train" in res.output


def _csv(tmp_path, days: int, bad_close_row: int | None = None):
    """A small long-format CSV market (3 tickers, ``days`` business days); optionally one close <= 0."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for k in range(3):
        px = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, days)))
        for d, c in zip(pd.bdate_range("2021-03-01", periods=days), px):
            rows.append({"Date": d.strftime("%Y%m%d"), "Symbol": f"X{k}", "Open": c, "High": c * 1.01,
                         "Low": c * 0.99, "Close": c, "Volume": 1000})
    df = pd.DataFrame(rows)
    if bad_close_row is not None:
        df.loc[bad_close_row, "Close"] = -1.0
    path = tmp_path / "market.csv"
    df.to_csv(path, index=False)
    return path


def test_eval_reports_the_loaders_repairs(tmp_path):
    """A new market's quirks are visible where the factor is scored: the row set aside for a close <= 0."""
    path = _csv(tmp_path, 80, bad_close_row=10)
    res = CliRunner().invoke(app, ["factors", "eval", "Div($close, Mean($close, 5))", "--data", str(path),
                                   "--horizon", "5", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)["data_report"]
    assert rep["rows_read"] == 240 and rep["rows_valid"] == 239
    assert {i["check"]: i["count"] for i in rep["issues"]}["non_positive_price"] == 1
    res = CliRunner().invoke(app, ["factors", "eval", "Div($close, Mean($close, 5))", "--data", str(path),
                                   "--horizon", "5"])
    assert res.exit_code == 0 and "non_positive_price 1 (row invalid)" in " ".join(res.output.split())


def test_eval_on_a_panel_shorter_than_the_horizon_says_why(tmp_path):
    path = _csv(tmp_path, 12)
    res = CliRunner().invoke(app, ["factors", "eval", "Mean($close, 3)", "--data", str(path), "--horizon", "20"])
    assert res.exit_code == 2
    msg = " ".join(res.output.split())
    assert "the panel has 12 days: too few to split" in msg and "--whole" in msg
    res = CliRunner().invoke(app, ["factors", "eval", "Mean($close, 3)", "--data", str(path), "--horizon", "20",
                                   "--whole"])
    assert res.exit_code == 2
    msg = " ".join(res.output.split())
    assert "the panel: all its 12 day(s) are within its last 20 days" in msg and "shorter --horizon" in msg


def test_a_small_market_is_told_why_its_metrics_are_nan(tmp_path):
    """3 names a day: the default 10-name cross-section rule leaves every IC NaN, and the command says so;
    --min-names 3 --quantiles 3 scores it."""
    path = _csv(tmp_path, 80)
    args = ["factors", "eval", "Div($close, Mean($close, 5))", "--data", str(path), "--horizon", "5", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["splits"]["train"]["ic"] is None  # NaN, written as null: strict JSON parsers reject NaN
    assert len(doc["warnings"]) == 1 and "at most 3" in doc["warnings"][0]
    res = CliRunner().invoke(app, [*args, "--min-names", "3", "--quantiles", "3", "--whole"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 0 and doc["warnings"] == [] and -1 <= doc["splits"]["all"]["ic"] <= 1


def test_defaults_agree_with_mine_and_ask(tmp_path):
    """No split given: `eval` scores train / valid / test by the same rule as `mine` and `ask` (the documented
    ranges on the shipped US file when the panel reaches into each of them, 60/20/20 by time elsewhere), and
    the backtest holds the book for the target's horizon unless --rebalance is given."""
    import numpy as np
    import pandas as pd

    from factors.requests import default_splits as ask_splits
    from factors.splits import US_SPLITS, default_splits, time_splits

    args = ["factors", "eval", "Div($close, Mean($close, 10))", "--data", str(US), "--start", "2014-01-01",
            "--end", "2017-06-30", "--max-tickers", "30", "--horizon", "10", "--json"]
    doc = json.loads(CliRunner().invoke(app, args).stdout)
    assert doc["rebalance"] == 10 and doc["splits"]["test"]["backtest"]["rebalance"] == 10
    assert [doc["splits"][s]["range"] for s in ("train", "valid", "test")] == list(US_SPLITS)
    assert doc["splits"]["valid"]["first_day"] >= "2015-01-01" and doc["splits"]["test"]["last_day"] <= "2017-06-30"
    dates = np.array(["2014-01-02", "2015-06-01", "2017-03-01"], dtype="datetime64[D]")
    assert [s.text() for s in default_splits(dates, US)] == list(US_SPLITS)
    assert list(ask_splits(dates, str(US)).values()) == list(US_SPLITS)
    # a slice of the US file that misses a documented range, and any other file: 60/20/20 by time
    late = np.arange(np.datetime64("2018-01-01"), np.datetime64("2019-01-01"))
    assert default_splits(late, US) == time_splits(late) == default_splits(late, tmp_path / "mine.parquet")
    path = _csv(tmp_path, 100)
    doc = json.loads(CliRunner().invoke(app, ["factors", "eval", "Div($close, Mean($close, 5))", "--data", str(path),
                                              "--horizon", "5", "--min-names", "3", "--quantiles", "3",
                                              "--json"]).stdout)
    days = pd.bdate_range("2021-03-01", periods=100).values.astype("datetime64[D]")  # the file's days (_csv)
    assert [doc["splits"][s]["range"] for s in ("train", "valid", "test")] == [s.text() for s in time_splits(days)]
    assert doc["rebalance"] == 5
