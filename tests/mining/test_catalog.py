"""Finding runs again (`finllm runs|models|factors list|show|export`, `--version`), and paths that work
from any folder: a mining run made in one folder with a relative FINLLM_HOME, data and --out is listed,
shown, exported and reported from another folder; rows written before paths were absolute still resolve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from finllm.cli.main import app
from tests.mining.conftest import SPLITS

runner = CliRunner()


@pytest.fixture(scope="module")
def mined(us_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A GP run made in folder A with FINLLM_HOME=.finllm, --data mkt.parquet and --out runs/m (all relative)."""
    a = tmp_path_factory.mktemp("folder_a")
    shutil.copy(us_slice, a / "mkt.parquet")
    mp = pytest.MonkeyPatch()
    mp.chdir(a)
    mp.setenv("FINLLM_HOME", ".finllm")
    mp.delenv("FINLLM_DATABASE_URL", raising=False)
    try:
        res = runner.invoke(app, ["factors", "mine", "--data", "mkt.parquet", "--method", "gp", "--max-factors", "40",
                                  "--pool-size", "3", "--out", "runs/m", "--json",
                                  *[f"--{k}={v}" for k, v in SPLITS.items()]])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
    finally:
        mp.undo()
    return {"folder": a, "home": a / ".finllm", "run_id": doc["run_id"], "pool": doc["pool"]}


@pytest.fixture
def elsewhere(mined: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Another folder, with FINLLM_HOME pointing at folder A's home."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINLLM_HOME", str(mined["home"]))
    monkeypatch.delenv("FINLLM_DATABASE_URL", raising=False)
    return tmp_path


def _json(args: list[str]) -> object:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_version() -> None:
    from finllm import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"finllm {__version__}"


def test_runs_list_and_show_from_another_folder(mined: dict, elsewhere: Path) -> None:
    rows = _json(["runs", "list", "--kind", "factor_mine"])
    assert [r["id"] for r in rows] == [mined["run_id"]] and rows[0]["status"] == "finished"
    assert _json(["runs", "list", "--status", "failed"]) == []
    run = _json(["runs", "show", mined["run_id"][:6]])  # a unique prefix is enough
    assert run["id"] == mined["run_id"] and Path(run["config"]["data"]) == mined["folder"] / "mkt.parquet"
    assert run["artifacts"]["result_json"] == {"path": str(mined["folder"] / "runs/m/result.json"), "exists": True}
    assert [m["formula"] for m in run["pool"]] == [m["formula"] for m in mined["pool"]]
    table = runner.invoke(app, ["runs", "list"])
    assert table.exit_code == 0 and mined["run_id"] in table.stdout and "factor_mine" in table.stdout


def test_report_from_another_folder_has_its_plots(mined: dict, elsewhere: Path) -> None:
    doc = _json(["report", mined["run_id"], "--no-narrative", "--out", "r.html"])
    html = Path(doc["path"]).read_text()
    assert Path(doc["path"]).parent == elsewhere and html.count("<img") >= 3
    assert "not available here" not in html


def test_factors_list_show_export(mined: dict, elsewhere: Path) -> None:
    import polars as pl

    from factors.evaluate import Evaluator
    from factors.panel import load_panel

    listed = _json(["factors", "list", "--run", mined["run_id"]])
    assert [f["formula"] for f in listed] == [m["formula"] for m in mined["pool"]]
    fid = listed[0]["id"]
    shown = _json(["factors", "show", fid])
    assert shown["pools"][0]["run_id"] == mined["run_id"] and shown["metrics"]["test"]["ic"] is not None
    assert shown["monitoring"]["days"] == 0
    data = mined["folder"] / "mkt.parquet"
    doc = _json(["factors", "export", "--run", mined["run_id"], "--data", str(data), "--start", "2010-01-01",
                 "--out", "f.parquet"])
    df = pl.read_parquet(doc["path"])
    assert df.columns == ["date", "ticker", "in_universe", *[f["id"] for f in listed]]
    assert str(df["date"].min()) >= "2010-01-01" and doc["rows"] == df.height
    # the exported values are the evaluator's (with the history before --start loaded for the windows)
    panel = load_panel(data)
    x = Evaluator(panel).evaluate(listed[0]["formula"]).numpy()
    d = {str(v): i for i, v in enumerate(panel.dates.astype("datetime64[D]"))}
    s = {t: j for j, t in enumerate(panel.tickers)}
    rows = df.select("date", "ticker", fid).to_numpy()
    ref = np.array([x[d[str(r[0])], s[r[1]]] for r in rows], dtype=np.float32)
    got = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float32)
    assert np.array_equal(got, ref, equal_nan=True) and np.isfinite(got).mean() > 0.9
    meta = json.loads(pl.read_parquet_metadata(doc["path"])["finllm"])
    assert meta["factors"][fid]["formula"] == listed[0]["formula"]


def test_rows_with_relative_paths_still_resolve(mined: dict, elsewhere: Path) -> None:
    """Rows written before paths were absolute hold `.finllm/...` (relative to the folder the command ran in)
    or a home-relative path: both are found from another folder."""
    from finllm.store import open_store
    from finllm.store.tables import FraudModel, Run

    home = mined["home"]
    (home / "models").mkdir(exist_ok=True)
    (home / "models" / "old.pt").write_bytes(b"weights")
    (home / "runs" / "old").mkdir(parents=True, exist_ok=True)
    (home / "runs" / "old" / "predictions.npz").write_bytes(b"npz")
    store = open_store()
    with store.session() as s:
        run = Run(kind="fraud_train", name="old run", status="finished",
                  artifacts={"predictions": "runs/old/predictions.npz"})
        s.add(run)
        s.flush()
        s.add(FraudModel(run_id=run.id, name="sage", dataset="x", threshold=0.5, path=".finllm/models/old.pt"))
        rid = run.id
    models = _json(["models", "list", "--name", "sage"])
    assert models[0]["path"] == str(home / "models" / "old.pt") and models[0]["exists"]
    shown = _json(["runs", "show", rid])
    assert shown["artifacts"]["predictions"] == {"path": str(home / "runs/old/predictions.npz"), "exists": True}


def test_bad_input_is_one_line(mined: dict, elsewhere: Path) -> None:
    for args, words in ((["runs", "show", "nope"], "no run 'nope'"), (["factors", "show", "zzzzzz"], "no factor"),
                        (["runs", "list", "--status", "done"], "--status 'done'"),
                        (["runs", "list", "--kind", "mining"], "--kind 'mining'"),
                        (["factors", "export", "--data", str(mined["folder"] / "mkt.parquet")], "--run")):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and words in res.output and "Traceback" not in res.output, (args, res.output)
