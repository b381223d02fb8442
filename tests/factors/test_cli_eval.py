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
