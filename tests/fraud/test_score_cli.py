"""Saving, scoring into alerts (real SQLite store + CSV), and the `finllm fraud` commands."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from finllm.cli.main import app
from finllm.errors import DataError
from finllm.store import open_store
from fraud.artifacts import load_model, save_model
from fraud.score import score_graph
from fraud.splits import make_split
from fraud.train import train_model

from .conftest import BITCOIN

runner = CliRunner()


@pytest.mark.parametrize("name", ["bwgnn", "xgbgraph"])
def test_saved_model_scores_like_training(amazon_slice, amazon_slice_path, tmp_path, name):
    store = open_store()
    res = train_model(amazon_slice, name, make_split(amazon_slice, "full", 0), 0, epochs=10, patience=10)
    mid = save_model(res, store, dataset=str(amazon_slice_path))
    loaded = load_model(mid, store)
    assert loaded.threshold == pytest.approx(res.threshold) and loaded.normalization == res.normalization
    df = score_graph(mid, amazon_slice_path, store, "b1", csv_path=tmp_path / "a.csv", top=50)
    by_node = df.set_index("node")["score"]
    expect = res.probs.numpy()
    got = np.array([by_node[str(i)] for i in range(amazon_slice.num_nodes)])
    assert np.allclose(got, expect, atol=1e-5)
    assert df["rank"].tolist() == list(range(1, len(df) + 1)) and df["score"].is_monotonic_decreasing
    alerts = store.alerts(mid, "b1")
    n_above = int((df["above_threshold"]).sum())
    assert len(alerts) == len(df[(df["above_threshold"]) | (df["rank"] <= 50)]) >= max(n_above, 50)
    assert len(pd.read_csv(tmp_path / "a.csv")) == amazon_slice.num_nodes
    run = store.get_run(df.attrs["run_id"])
    assert run.status == "finished" and run.metrics["labelled_eval"]["auroc"] > 0.7
    with pytest.raises(DataError, match="features"):
        score_graph(mid, BITCOIN, store)


def test_cli_train_and_score(tmp_path):
    r = runner.invoke(app, ["fraud", "train", "--data", str(BITCOIN), "--model", "sage", "--setting", "semi",
                            "--seeds", "2", "--epochs", "10", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["setting"] == "semi" and len(out["per_seed"]) == 2
    assert 0.5 < out["test"]["auroc"]["mean"] <= 1 and out["model_id"]
    store = open_store()
    rec = store.get_fraud_model(out["model_id"])
    assert rec.config["setting"] == "semi" and rec.normalization["transform"] == "signed_log1p_zscore"
    run = store.get_run(out["run_id"])
    assert run.status == "finished" and len(run.metrics["test"]["auprc"]) == 2 and rec.run_id == run.id
    pred = np.load(run.artifacts["predictions"])
    assert pred["score"].shape == (5881,) and set(np.unique(pred["split"])) == {-1, 0, 1, 2}
    assert int((pred["split"] == 0).sum()) == 100  # semi: 20 fraud + 80 normal

    csv = tmp_path / "alerts.csv"
    r = runner.invoke(app, ["fraud", "score", "--model", out["model_id"], "--data", str(BITCOIN),
                            "--batch", "2024-01-02", "--out", str(csv), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["nodes"] == 5881 and csv.is_file()
    assert len(store.alerts(out["model_id"], "2024-01-02")) == info["alerts_saved"] > 0

    r = runner.invoke(app, ["fraud", "train", "--data", str(BITCOIN), "--model", "sage", "--seeds", "1",
                            "--epochs", "2"])
    assert r.exit_code == 0 and "AUPRC" in r.stdout


def test_cli_bad_input_is_one_line(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, node_features=np.ones((4, 2)), node_labels=np.array([0, 1, 0, 1]), edges=np.array([[0, 9]]))
    r = runner.invoke(app, ["fraud", "train", "--data", str(p), "--model", "sage"])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "bad.npz" in err and "node count" in err and "Traceback" not in r.output
    r = runner.invoke(app, ["fraud", "train", "--data", str(BITCOIN), "--model", "nope"])
    assert r.exit_code == 2 and "unknown model" in r.stderr
    r = runner.invoke(app, ["fraud", "score", "--model", "missing", "--data", str(BITCOIN)])
    assert r.exit_code == 2 and "no fraud model" in r.stderr


def test_nan_features_and_isolated_nodes_train_without_nan_metrics(tmp_path, amazon_slice_path):
    z = dict(np.load(amazon_slice_path))
    x = z["node_features"].copy()
    x[::7, 3] = np.nan  # NaN features, imputed and counted
    e = np.concatenate([z["edges"], [[5, 5], [6, 6]], z["edges"][:50]])  # self-loops and duplicates
    p = tmp_path / "dirty.npz"
    np.savez(p, node_features=x, node_labels=z["node_labels"], edges=e)
    from fraud.datasets import load_graph

    ds = load_graph(p)
    assert ds.report["nan_features_imputed"] == len(x[::7]) and ds.report["self_loops_removed"] == 2
    assert ds.report["duplicate_edges_merged"] == 50 and ds.report["isolated_nodes"] > 0
    res = train_model(ds, "bwgnn", make_split(ds, "full", 0), 0, epochs=5, patience=5)
    assert all(np.isfinite(v) for v in res.metrics["test"].values()) and torch.isfinite(res.probs).all()
