"""One stdout convention: results (tables, JSON) on stdout, progress and messages on stderr; help text shown
as written (rich markup is not interpreted: `finllm[sparse]` survives); values from data or a run are
printed literally."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from finllm.cli.main import app
from tests.mining.conftest import SPLITS

runner = CliRunner()


def test_help_text_is_not_eaten_by_markup() -> None:
    res = runner.invoke(app, ["fraud", "train", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "pip install 'finllm[sparse]'" in res.stdout


def test_mine_prints_its_table_on_stdout(us_slice, tmp_path) -> None:
    res = runner.invoke(app, ["factors", "mine", "--data", str(us_slice), "--method", "gp", "--max-factors", "20",
                              "--pool-size", "2", "--out", str(tmp_path / "m"), "--no-store",
                              *[f"--{k}={v}" for k, v in SPLITS.items()]])
    assert res.exit_code == 0, res.output
    assert "RankIC" in res.stdout and "test" in res.stdout and "$" in res.stdout  # metrics and the formulas
    # the progress bar stays on stderr; the default 5 minutes are 3 searches, each with its own bar ("GP 1/3 ...")
    assert "RankIC" not in res.stderr and "GP 1/3 factors" in res.stderr and "GP 3/3 factors" in res.stderr


def test_fraud_train_prints_the_loader_report_as_a_table(tmp_path) -> None:
    g = np.random.default_rng(0)
    n = 300
    nodes = pd.DataFrame({"node": [f"n{i}" for i in range(n)], "f1": g.normal(size=n), "f2": g.normal(size=n),
                          "label": (g.random(n) < 0.15).astype(int)})
    nodes.to_csv(tmp_path / "nodes.csv", index=False)
    src, dst = g.integers(0, n, 1200), g.integers(0, n, 1200)
    pd.DataFrame({"src": [f"n{i}" for i in src], "dst": [f"n{i}" for i in dst]}).to_csv(tmp_path / "edges.csv",
                                                                                         index=False)
    res = runner.invoke(app, ["fraud", "train", "--data", str(tmp_path / "edges.csv"), "--nodes",
                              str(tmp_path / "nodes.csv"), "--model", "sage", "--seeds", "1", "--epochs", "2",
                              "--no-save"], env={"FINLLM_HOME": str(tmp_path / "home"), "COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "{'" not in res.output and "self_loops_removed" in res.stdout and "AUROC" in res.stdout


def test_values_from_the_store_are_printed_literally(tmp_path) -> None:
    from finllm.store import open_store

    env = {"FINLLM_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    store = open_store(f"sqlite:///{tmp_path / 'home' / 'finllm.db'}")
    rid = store.start_run("factor_mine", {}, name="[bold red]not markup[/]")
    res = runner.invoke(app, ["runs", "list"], env=env)
    assert res.exit_code == 0 and "[bold red]not markup[/]" in res.stdout
    assert rid in runner.invoke(app, ["runs", "show", rid], env=env).stdout
