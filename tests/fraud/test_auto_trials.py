"""XGBGraph's trial ensemble (``tune(keep=3)``, auto's :data:`fraud.auto.TRIAL_ENSEMBLE`): the rank average of
the best trials on validation, chosen on validation only, and saved / loaded / scored like any detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fraud.train as train_mod
from fraud.models.ensemble import RankEnsemble, rank_average
from fraud.splits import make_split
from fraud.train import prepare_graph, train_model
from fraud.tuning import tune

QUICK = {"epochs": 10, "patience": 10}


def test_keep_three_averages_the_three_best_validation_trials(amazon_slice):
    split = make_split(amazon_slice, "full", 0)
    best, log = tune(amazon_slice, "xgbgraph", split, 0, trials=5, deadline=float("inf"), keep=3, **QUICK)
    order = sorted(range(len(log)), key=lambda t: -log[t]["val_auprc"])[:3]
    assert best.config["model"] == "ensemble" and isinstance(best.model, RankEnsemble)
    assert best.config["tuned"] == {"candidate": "xgbgraph", "trials": order}
    assert [m.hparams for m in best.model.members] == [log[t]["hparams"] for t in order]
    _, x, g, _ = prepare_graph(amazon_slice)
    member_probs = [m.predict_proba(x, g) for m in best.model.members]
    assert np.allclose(best.probs.numpy(), rank_average(member_probs), atol=1e-6)
    y = amazon_slice.data.y
    assert best.metrics["test"]["auprc"] > 2 * float(y[split.test].float().mean())  # beats random ranking
    single, _ = tune(amazon_slice, "xgbgraph", split, 0, trials=5, deadline=float("inf"), **QUICK)
    assert single.config["model"] == "xgbgraph" and single.config["tuned"]["trials"] == order[:1]


def test_a_trial_best_on_test_only_is_not_kept(amazon_slice, monkeypatch):
    """Trial 2's scores are made perfect on test and worst-possible on validation: it must not be a member."""
    real = train_mod.train_model
    y = amazon_slice.data.y
    split = make_split(amazon_slice, "full", 0)
    calls = []

    def rigged(ds, name, sp, seed, **kw):
        res = real(ds, name, sp, seed, **kw)
        calls.append(res)
        if len(calls) == 3:
            from fraud.evaluate import choose_threshold, evaluate

            p = res.probs.clone()
            p[sp.test] = y[sp.test].float() * 0.9 + 0.05
            p[sp.val] = 0.95 - y[sp.val].float() * 0.9
            res.probs = p
            res.threshold = choose_threshold(p[sp.val], y[sp.val])
            res.metrics.update(val=evaluate(p, y, sp.val, res.threshold), test=evaluate(p, y, sp.test, res.threshold))
        return res

    monkeypatch.setattr(train_mod, "train_model", rigged)
    best, log = tune(amazon_slice, "xgbgraph", split, 0, trials=4, deadline=float("inf"), keep=3, **QUICK)
    assert log[2]["test_auprc"] == pytest.approx(1.0)
    assert 2 not in best.config["tuned"]["trials"] and len(best.config["tuned"]["trials"]) == 3


def test_auto_keeps_the_xgbgraph_trial_ensemble_and_it_round_trips(amazon_slice, amazon_slice_path, tmp_path):
    from finllm.store import open_store
    from fraud.artifacts import load_model, save_model
    from fraud.score import predict

    split = make_split(amazon_slice, "full", 0)
    res = train_model(amazon_slice, "auto", split, 0, auto={"candidates": ["xgbgraph", "mlp"], "budget_s": 600.0,
                                                            "trials": {"xgbgraph": 4, "mlp": 1}}, **QUICK)
    auto = res.metrics["auto"]
    row = auto["candidates"]["xgbgraph"]
    assert row["trials"] == 4 and len(row["kept_trials"]) == 3 and len(row["hparams"]["members"]) == 3
    assert auto["candidates"]["mlp"]["kept_trials"] == [0]
    assert res.config["auto"]["trial_ensemble"] == {"xgbgraph": 3}
    # a trial ensemble saves as the ensemble family, whichever of xgbgraph or the auto ensemble won
    assert res.config["model"] == {"xgbgraph": "ensemble", "mlp": "mlp", "ensemble": "ensemble"}[auto["winner"]]
    store = open_store()
    loaded = load_model(save_model(res, store, dataset=str(amazon_slice_path), models_dir=tmp_path), store)
    assert np.allclose(predict(loaded, amazon_slice).numpy(), res.probs.numpy(), atol=1e-5)
    # the outer ensemble holding the trial ensemble as a member (nested manifests) round-trips too
    from fraud.models.ensemble import combine_results

    xgb = res if auto["winner"] == "xgbgraph" else None
    if xgb is None:
        xgb, _ = tune(amazon_slice, "xgbgraph", split, 0, trials=4, deadline=float("inf"), keep=3, **QUICK)
    mlp = train_model(amazon_slice, "mlp", split, 0, **QUICK)
    outer = combine_results([xgb, mlp], split, amazon_slice.data.y)
    loaded = load_model(save_model(outer, store, dataset=str(amazon_slice_path), models_dir=tmp_path), store)
    assert torch.allclose(predict(loaded, amazon_slice), outer.probs, atol=1e-5)
    # what a supervised run's round 2 does with an ensemble winner: retrain it from its record (nested spec)
    again = train_model(amazon_slice, "ensemble", split, 0, hparams=outer.config["hparams"], **QUICK)
    inner = again.model.members[0].model
    assert isinstance(inner, RankEnsemble) and [m.hparams for m in inner.members] == \
        [m.hparams for m in xgb.model.members]
    assert torch.allclose(again.probs, outer.probs, atol=1e-4)  # same seed, same settings, same scores
