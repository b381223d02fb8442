"""Train-and-record, the one path of ``fraud train``, the DAG's train_detector and the demo: a real
``--model auto`` run on a slice of the Amazon graph, recorded in the store with the report's metrics
schema, the predictions file with a baseline candidate's curve, and idempotent re-runs."""

from __future__ import annotations

import numpy as np
import pytest

from finllm.app.score_graph import latest_model, score_batch
from finllm.app.train_detector import TrainOptions, baseline_curve, train_and_record
from finllm.errors import ConfigError
from finllm.store import open_store

AUTO = {"trials": 1, "budget_s": 600.0, "candidates": ["mlp", "xgbgraph"]}


def test_auto_run_is_recorded_with_a_baseline_curve_and_replaced_on_rerun(graph_slice, tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    opts = TrainOptions(model="auto", setting="full", seeds=1, epochs=10, patience=10, auto=AUTO)
    done = train_and_record(graph_slice, opts, store, idempotency_key="t/train/1")
    run = store.get_run(done.run_id)
    assert run.status == "finished" and run.kind == "fraud_train" and run.idempotency_key == "t/train/1"
    assert isinstance(run.metrics["test"]["auroc"], list) and len(run.metrics["test"]["auroc"]) == 1
    assert run.metrics["summary"]["test"]["auroc"]["mean"] == pytest.approx(done.brief()["test"]["auroc"])
    assert run.artifacts["model_id"] == done.model_id == latest_model(graph_slice, store)
    winner = done.kept.config["model"]
    drawn = baseline_curve(done.kept)
    assert len(drawn) == 1 and winner not in drawn  # XGBGraph, or the best other candidate when it won
    name = next(iter(drawn))
    assert name == "xgbgraph" or winner == "xgbgraph"
    npz = np.load(run.artifacts["predictions"])
    assert set(npz.files) == {"y", "score", "split", f"score__{name}"}
    assert np.allclose(npz[f"score__{name}"], done.kept.candidate_probs[name].numpy())
    assert np.allclose(npz["score"], done.kept.probs.numpy())
    scored = score_batch(graph_slice, batch="b", store=store)
    assert scored["model_id"] == done.model_id and scored["nodes"] == 3000 and store.alerts(done.model_id, "b")

    again = train_and_record(graph_slice, opts, store, idempotency_key="t/train/1")
    assert again.run_id == done.run_id and again.model_id != done.model_id
    assert store.get_fraud_model(done.model_id) is None and store.alerts(done.model_id, "b") == []
    assert latest_model(graph_slice, store) == again.model_id


def test_single_model_draws_no_baseline_and_bad_options_start_no_run(graph_slice, tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    done = train_and_record(graph_slice, TrainOptions(model="mlp", setting="full", seeds=1, epochs=5, patience=5,
                                                      save=False), store)
    assert done.model_id is None and baseline_curve(done.kept) == {}
    assert set(np.load(store.get_run(done.run_id).artifacts["predictions"]).files) == {"y", "score", "split"}
    with pytest.raises(ConfigError, match="--setting"):
        train_and_record(graph_slice, TrainOptions(setting="half"), store)
    with pytest.raises(ConfigError, match="simulated-auroc"):
        train_and_record(graph_slice, TrainOptions(supervisor="simulated"), store)
    assert [r.id for r in store.latest_runs("fraud_train")] == [done.run_id]
