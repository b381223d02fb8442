"""GADBench-style tree features, the random search, and ``--model auto``: every candidate is trained on a
slice of the real Amazon graph, and the choice is made on validation only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fraud.train as train_mod
from fraud.auto import paired_win_rate, select_robust, select_winner
from fraud.baselines import AGGS, aggregate_features
from fraud.evaluate import choose_threshold, evaluate
from fraud.models import GraphOps
from fraud.splits import make_split
from fraud.train import train_model
from fraud.tuning import tune

QUICK = {"epochs": 10, "patience": 10}
ONE_TRIAL = {"trials": 1, "budget_s": 600.0}


def test_aggregations_match_brute_force(tiny_graph):
    """mean/max/min/sum per hop and per relation on a 5-node graph, checked by hand-rolled loops; a weight-0
    edge is no edge, and a node without neighbours gets 0."""
    x = tiny_graph.x
    f = aggregate_features(x, tiny_graph.ops(), hops=2, aggs=AGGS, relations=True)
    assert f.shape == (5, 2 * (1 + 3 * 4 * 2))

    def brute(h, agg, rel):
        out = torch.zeros_like(h)
        for i in range(5):
            sel = tiny_graph.in_edges(i, rel)
            if not sel:
                continue
            rows = torch.stack([h[s] for s, _ in sel])
            wts = torch.tensor([wt for _, wt in sel])[:, None]
            out[i] = {"mean": (rows * wts).sum(0) / wts.sum(), "sum": (rows * wts).sum(0),
                      "max": rows.max(0).values, "min": rows.min(0).values}[agg]
        return out

    cols = [x]
    for rel in (None, 0, 1):
        for agg in AGGS:
            h = x
            for _ in range(2):
                h = brute(h, agg, rel)
                cols.append(h)
    assert torch.allclose(f, torch.cat(cols, 1), atol=1e-5)
    assert torch.equal(f[4, 2:], torch.zeros(f.size(1) - 2))  # node 4 has no neighbours


def test_tree_features_honour_edge_weight(bitcoin):
    d = bitcoin.data
    torch.manual_seed(0)
    w = (torch.rand(d.edge_index.size(1)) > 0.5).float() * torch.rand(d.edge_index.size(1))
    keep = w > 0
    g_w = GraphOps(d.edge_index, d.num_nodes, edge_type=d.edge_type, edge_weight=w, num_relations=2)
    g_cut = GraphOps(d.edge_index[:, keep], d.num_nodes, edge_type=d.edge_type[keep], edge_weight=w[keep],
                     num_relations=2)
    a = aggregate_features(d.x, g_w, 2, AGGS, True)
    assert torch.allclose(a, aggregate_features(d.x, g_cut, 2, AGGS, True), rtol=1e-5, atol=1e-4)
    full = GraphOps(d.edge_index, d.num_nodes, edge_type=d.edge_type, num_relations=2)
    assert not torch.allclose(a, aggregate_features(d.x, full, 2, AGGS, True))


def test_random_search_keeps_the_best_validation_trial(amazon_slice):
    split = make_split(amazon_slice, "full", 0)
    rows: list[dict] = []
    best, log = tune(amazon_slice, "xgbgraph", split, 0, trials=4, deadline=float("inf"), on_trial=rows.append,
                     **QUICK)
    assert log == rows and len(log) == 4 and log[0]["hparams"] == train_mod.DEFAULTS["xgbgraph"]["hparams"]
    assert len({str(r["hparams"]) for r in log}) == 4  # trials 1.. drew other settings
    assert best.metrics["val"]["auprc"] == max(r["val_auprc"] for r in log)
    again, log2 = tune(amazon_slice, "xgbgraph", split, 0, trials=4, deadline=float("inf"), **QUICK)
    assert [r["hparams"] for r in log2] == [r["hparams"] for r in log]  # same seed, same draws
    _, cut = tune(amazon_slice, "xgbgraph", split, 0, trials=4, deadline=0.0, **QUICK)
    assert len(cut) == 1  # past the deadline: the defaults still run, nothing more


def test_a_challenger_must_beat_xgbgraph_by_a_standard_error():
    se = (0.8 * 0.2 / 100) ** 0.5  # 0.04 at AP 0.8 with 100 validation frauds
    assert select_winner({"xgbgraph": 0.8, "mlp": 0.8 + 0.9 * se, "bwgnn": 0.7}, 100, se_multiple=1) == ("xgbgraph", se)
    assert select_winner({"xgbgraph": 0.8, "mlp": 0.8 + 1.1 * se, "bwgnn": 0.83}, 100, se_multiple=1)[0] == "mlp"
    assert select_winner({"xgbgraph": 0.8, "mlp": 0.85}, 10_000, se_multiple=1)[0] == "mlp"  # many frauds
    assert select_winner({"xgbgraph": 0.8, "mlp": 0.8 + 0.1 * se}, 100) == ("mlp", 0.0)  # default: best on val
    assert select_winner({"rfgraph": 0.6, "mlp": 0.7}, 20) == ("mlp", 0.0)  # no incumbent: best on validation


def test_paired_bootstrap_sees_a_real_lead_not_noise():
    """A clearly better ranking wins nearly every paired resample; a copy plus noise of the same quality
    neither wins nor loses consistently; a candidate replaces the ensemble only past the 90% level."""
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(int)
    base = rng.normal(size=2000) + y
    better, same = base + 1.5 * y, base + rng.normal(scale=0.05, size=2000)
    assert paired_win_rate(base, better, y) > 0.99 and paired_win_rate(better, base, y) < 0.01
    assert 0.05 < paired_win_rate(base, same, y) < 0.95
    probs = {"ensemble": base, "mlp": better, "xgbgraph": same}
    vals = {"ensemble": 0.5, "mlp": 0.9, "xgbgraph": 0.51}
    assert select_robust(probs, y, vals)[0] == "mlp"
    assert select_robust({**probs, "mlp": same}, y, {**vals, "mlp": 0.52})[0] == "ensemble"
    assert select_robust({"mlp": better, "xgbgraph": base}, y, {"mlp": 0.9, "xgbgraph": 0.5})[0] == "mlp"


def _rescore(res, y, split, probs):
    """``res`` with new scores: threshold and metrics recomputed as train_model computes them."""
    res.probs = probs
    res.threshold = choose_threshold(probs[split.val], y[split.val])
    res.metrics.update(val=evaluate(probs, y, split.val, res.threshold),
                       test=evaluate(probs, y, split.test, res.threshold))
    return res


@pytest.mark.parametrize("looks_best_on", ["test", "val"])
def test_auto_picks_on_validation_only(amazon_slice, monkeypatch, looks_best_on):
    """A wrapped MLP whose scores are perfect on one part and random on the other: perfect on test only it
    must lose, perfect on validation only it must win (the choice reads validation, nothing else)."""
    real = train_mod.train_model
    y = amazon_slice.data.y
    split = make_split(amazon_slice, "full", 0)

    def rigged(ds, name, sp, seed, **kw):
        res = real(ds, name, sp, seed, **kw)
        if name != "mlp":
            return res
        probs = torch.rand(len(y), generator=torch.Generator().manual_seed(1))
        part = sp.test if looks_best_on == "test" else sp.val
        probs[part] = y[part].float() * 0.5 + 0.5 * probs[part] * 0.1 + 0.05  # frauds above every normal
        return _rescore(res, y, sp, probs)

    monkeypatch.setattr(train_mod, "train_model", rigged)
    res = real(amazon_slice, "auto", split, 0, auto=ONE_TRIAL, **QUICK)
    auto = res.metrics["auto"]
    table = auto["candidates"]
    assert set(table) == {"xgbgraph", "rfgraph", "mlp", "bwgnn", "hsign", "ensemble"}
    if looks_best_on == "test":
        assert table["mlp"]["test"]["auprc"] == pytest.approx(1.0) and table["mlp"]["val"]["auprc"] < 0.5
        assert auto["winner"] != "mlp" and "mlp" not in auto["ensemble_members"]  # the test scores never count
        vals = {n: r["val"]["auprc"] for n, r in table.items()}
        assert auto["ensemble_members"] == sorted((n for n in vals if n != "ensemble"), key=lambda n: -vals[n])[:3]
        assert auto["winner"] == res.config["model"]
        assert res.metrics["test"]["auprc"] == table[auto["winner"]]["test"]["auprc"]
    else:
        assert table["mlp"]["val"]["auprc"] == pytest.approx(1.0) and table["mlp"]["test"]["auprc"] < 0.5
        assert auto["winner"] == "mlp" == res.config["model"] and auto["best_single_win_rate"] >= 0.9


def test_auto_records_every_candidate_and_its_winner_scores_after_reload(amazon_slice, amazon_slice_path, tmp_path):
    """The run keeps every candidate's validation and test figures and probabilities (the ensemble's too);
    the winner saves, loads and scores like in training (for whichever family won), and so do a trained
    ensemble, the tree and the MLP candidates."""
    from finllm.store import open_store
    from fraud.artifacts import load_model, save_model
    from fraud.score import predict

    store = open_store()
    split = make_split(amazon_slice, "full", 0)
    res = train_model(amazon_slice, "auto", split, 0, auto=ONE_TRIAL, **QUICK)
    auto = res.metrics["auto"]
    for name, row in auto["candidates"].items():
        assert row["trials"] == (0 if name == "ensemble" else 1), name
        assert set(row["val"]) == set(row["test"]) == {"auroc", "auprc", "rec@k", "macro_f1"}
        assert row["test"]["auprc"] > 2 * res.metrics["test"]["n_fraud"] / res.metrics["test"]["n"], name
    vals = {n: r["val"]["auprc"] for n, r in auto["candidates"].items()}
    y, va = amazon_slice.data.y, split.val
    probs = res.candidate_probs
    assert set(probs) == set(vals) and all(p.shape == (amazon_slice.num_nodes,) for p in probs.values())
    assert torch.equal(probs[auto["winner"]], res.probs)
    for name, p in probs.items():  # the best trial of each candidate: its recorded validation figure
        assert evaluate(p, y, va, 0.5)["auprc"] == pytest.approx(vals[name]), name
    winner, rate = select_robust({n: p[va].numpy() for n, p in probs.items()}, y[va].numpy(), vals, seed=0)
    assert auto["winner"] == winner and auto["best_single_win_rate"] == pytest.approx(rate, abs=1e-4)
    assert res.metrics["val"]["auprc"] == vals[auto["winner"]]
    members = [{"model": "mlp"}, {"model": "xgbgraph"}]
    ens = train_model(amazon_slice, "ensemble", split, 0, hparams={"members": members}, **QUICK)
    assert ens.config["model"] == "ensemble" and len(ens.model.members) == 2
    others = [train_model(amazon_slice, n, split, 0, **QUICK) for n in ("rfgraph", "mlp", "xgbgraph")]
    for r in [res, ens, *others]:
        loaded = load_model(save_model(r, store, dataset=str(amazon_slice_path), models_dir=tmp_path), store)
        assert loaded.name == r.config["model"]
        got = predict(loaded, amazon_slice)
        assert np.allclose(got.numpy(), r.probs.numpy(), atol=1e-5), loaded.name


def test_rfgraph_explanation_falls_back_to_occlusion(amazon_slice, amazon_slice_path, tmp_path):
    from finllm.store import open_store
    from fraud.artifacts import load_model, save_model
    from fraud.supervisor.explain import feature_attribution, neighbor_attribution

    store = open_store()
    res = train_model(amazon_slice, "rfgraph", make_split(amazon_slice, "full", 0), 0,
                      hparams={"n_estimators": 20, "hops": 1})
    loaded = load_model(save_model(res, store, dataset=str(amazon_slice_path), models_dir=tmp_path), store)
    node = int(torch.argmax(res.probs))
    feats = feature_attribution(loaded, amazon_slice, node, top=3)
    assert len(feats) == 3 and {f["method"] for f in feats} == {"occlusion"}
    assert any(f["attribution"] != 0 for f in feats)
    assert isinstance(neighbor_attribution(loaded, amazon_slice, node, max_neighbors=5), list)
