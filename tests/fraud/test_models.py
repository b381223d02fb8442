"""Each model trains a few epochs on a slice of a real graph and beats random ranking; the supervisor
hooks (edge_weight, node_weight, soft_targets) really change what the models compute."""

from __future__ import annotations

import pytest
import torch

from finllm.errors import ConfigError
from fraud.baselines import _with_soft, aggregate_features
from fraud.models import GNN_MODELS, GraphOps, build_model
from fraud.splits import make_split
from fraud.fit_loop import minibatch_available
from fraud.train import run_seeds, train_model

EPOCHS = {"sage": 25, "gat": 8, "bwgnn": 25, "rgnn": 12, "hsign": 25, "mlp": 25, "xgbgraph": 60, "rfgraph": 60,
          "ensemble": 40}
GRAPH_MODELS = [m for m in GNN_MODELS if m != "mlp"]  # the MLP ignores the graph by design


@pytest.mark.parametrize("name", ["sage", "gat", "bwgnn", "hsign", "mlp", "xgbgraph", "rfgraph", "ensemble"])
def test_model_beats_random_on_amazon_slice(amazon_slice, name):
    split = make_split(amazon_slice, "full", 0)
    res = train_model(amazon_slice, name, split, 0, epochs=EPOCHS[name], patience=EPOCHS[name])
    te = res.metrics["test"]
    prevalence = te["n_fraud"] / te["n"]
    assert te["auroc"] > 0.75, te
    assert te["auprc"] > 2 * prevalence, te  # random ranking has AUPRC ~ prevalence
    assert res.probs.shape == (amazon_slice.num_nodes,) and torch.isfinite(res.probs).all()
    assert res.embeddings.shape[0] == amazon_slice.num_nodes
    assert 0 < res.threshold < 1 and res.config["model"] == name
    assert len(res.normalization["mean"]) == amazon_slice.data.x.size(1)


def test_relation_aware_model_on_bitcoin_two_relations(bitcoin):
    summary, kept = run_seeds(bitcoin, "rgnn", "semi", [0, 1], epochs=EPOCHS["rgnn"], patience=12)
    assert summary["test"]["auroc"]["mean"] > 0.75
    assert summary["test"]["auprc"]["mean"] > 2 * 301 / 2389
    assert len(summary["per_seed"]) == 2 and kept.config["num_relations"] == 2


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_edge_weight_zero_equals_removing_the_edge(bitcoin, name):
    torch.manual_seed(0)
    d = bitcoin.data
    e = d.edge_index.size(1)
    w = (torch.rand(e) > 0.5).float() * torch.rand(e)  # about half the edges weight 0, the rest in (0,1)
    keep = w > 0
    model = build_model(name, d.x.size(1), 2).eval()
    g_w = GraphOps(d.edge_index, d.num_nodes, edge_type=d.edge_type, edge_weight=w, num_relations=2)
    g_cut = GraphOps(d.edge_index[:, keep], d.num_nodes, edge_type=d.edge_type[keep], edge_weight=w[keep],
                     num_relations=2)
    g_full = GraphOps(d.edge_index, d.num_nodes, edge_type=d.edge_type, num_relations=2)
    x = (d.x - d.x.mean(0)) / (d.x.std(0) + 1e-6)
    with torch.no_grad():
        a, b, c = model(x, g_w), model(x, g_cut), model(x, g_full)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)  # the weights did change the messages


def test_hsign_bins_are_frozen_and_saved(bitcoin):
    """HSIGN fits its quantile bins (no labels) on the first graph it sees; a reloaded model keeps them and
    scores another graph exactly like the original."""
    d = bitcoin.data
    x = (d.x - d.x.mean(0)) / (d.x.std(0) + 1e-6)
    g = GraphOps(d.edge_index, d.num_nodes, edge_type=d.edge_type, num_relations=2)
    model = build_model("hsign", d.x.size(1), 2).eval()
    assert not bool(model.fitted)
    with torch.no_grad():
        first = model(x, g)
    assert bool(model.fitted) and torch.isfinite(model.edges).all()
    clone = build_model("hsign", d.x.size(1), 2).eval()
    clone.load_state_dict(model.state_dict())
    sub = torch.arange(0, d.num_nodes, 2)  # another graph: every other node and the edges among them
    keep = (d.edge_index % 2 == 0).all(0)
    g2 = GraphOps(d.edge_index[:, keep] // 2, len(sub), edge_type=d.edge_type[keep], num_relations=2)
    with torch.no_grad():
        assert torch.allclose(clone(x, g), first, atol=1e-6)
        other = model(x[sub], g2)
    with torch.inference_mode():  # how fraud.score runs it
        assert torch.allclose(clone(x[sub], g2), other, atol=1e-6)
    assert torch.equal(clone.edges, model.edges)  # scoring g2 did not refit the bins


def test_xgbgraph_features_honour_edge_weight(bitcoin):
    d = bitcoin.data
    w = torch.zeros(d.edge_index.size(1))
    f = aggregate_features(d.x, GraphOps(d.edge_index, d.num_nodes, edge_weight=w))
    assert torch.equal(f[:, d.x.size(1):], torch.zeros(d.num_nodes, 2 * d.x.size(1)))  # no neighbours left


def test_supervisor_hooks_change_training(amazon_slice):
    split = make_split(amazon_slice, "semi", 0)
    n = amazon_slice.num_nodes
    kw = {"epochs": 8, "patience": 8}
    base = train_model(amazon_slice, "sage", split, 0, **kw)
    same = train_model(amazon_slice, "sage", split, 0, node_weight=torch.ones(n),
                       soft_targets=torch.full((n,), float("nan")), soft_weight=1.0, **kw)
    assert torch.allclose(base.probs, same.probs, atol=1e-6)  # neutral hooks: identical run
    nw = torch.ones(n)
    nw[amazon_slice.data.y == 1] = 0.0  # ignore every labelled fraud
    down = train_model(amazon_slice, "sage", split, 0, node_weight=nw + 1e-3, **kw)
    assert down.probs.mean() < base.probs.mean()
    soft = torch.full((n,), float("nan"))
    unl = torch.ones(n, dtype=torch.bool)
    unl[split.train] = False
    soft[unl] = 1.0  # soft targets "everything is fraud" on non-training nodes
    pushed = train_model(amazon_slice, "sage", split, 0, soft_targets=soft, soft_weight=2.0, **kw)
    assert pushed.probs.mean() > base.probs.mean() + 0.05
    tree = train_model(amazon_slice, "xgbgraph", split, 0, soft_targets=soft, soft_weight=2.0, **kw)
    assert tree.config["soft_nodes"] == int(unl.sum())
    with pytest.raises(ConfigError):
        train_model(amazon_slice, "sage", split, 0, edge_weight=torch.full((3,), 0.5), **kw)


def test_tree_soft_rows_weigh_as_in_the_networks_loss():
    """soft_weight means the same for trees as for networks: the soft rows together weigh soft_weight x
    the training rows' total (the networks' loss is a weighted mean over training rows plus soft_weight x
    the mean over soft rows), whatever the number of training and soft rows."""
    import numpy as np

    feats = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = np.array([1, 0] * 10)
    train = np.arange(10)
    w = np.where(y[train] == 1, 4.0, 1.0)  # class weights
    for n_soft, sw in ((3, 0.5), (10, 2.0)):
        soft_idx = np.arange(10, 10 + n_soft)
        X, Y, W = _with_soft(feats, y, train, w, soft_idx, np.full(n_soft, 0.7), sw)
        assert X.shape == (10 + n_soft, 2) and np.allclose(Y[10:], 0.7)
        assert np.allclose(W[:10], w) and np.allclose(W[10:], W[10])  # every soft row the same
        assert W[10:].sum() == pytest.approx(sw * w.sum())


def test_ensemble_members_take_the_hooks(amazon_slice):
    """The ensemble passes the supervisor hooks to every member (so a supervised round 2 of an auto run
    whose winner is the ensemble retrains its members with them); the same run twice is identical."""
    split = make_split(amazon_slice, "full", 0)
    spec = {"members": [{"model": "xgbgraph", "hparams": {"n_estimators": 30}}, {"model": "mlp"}]}
    kw = {"epochs": 10, "patience": 10, "hparams": spec}
    base = train_model(amazon_slice, "ensemble", split, 0, **kw)
    assert torch.equal(base.probs, train_model(amazon_slice, "ensemble", split, 0, **kw).probs)
    nw = torch.ones(amazon_slice.num_nodes)
    nw[amazon_slice.data.y == 1] = 1e-3
    down = train_model(amazon_slice, "ensemble", split, 0, node_weight=nw, **kw)
    assert not torch.allclose(base.probs, down.probs, atol=1e-4)
    assert [m.name for m in down.model.members] == ["xgbgraph", "mlp"] and down.config["uses_node_weight"]


def test_hsign_member_losses_take_the_hooks(amazon_slice):
    """HSIGN trains its members on the labelled rows only: the soft-target and node-weight hooks still
    reach every member."""
    split = make_split(amazon_slice, "semi", 0)
    n = amazon_slice.num_nodes
    kw = {"epochs": 8, "patience": 8}
    base = train_model(amazon_slice, "hsign", split, 0, **kw)
    soft = torch.full((n,), float("nan"))
    unl = torch.ones(n, dtype=torch.bool)
    unl[split.train] = False
    soft[unl] = 1.0
    pushed = train_model(amazon_slice, "hsign", split, 0, soft_targets=soft, soft_weight=2.0, **kw)
    assert pushed.probs.mean() > base.probs.mean() + 0.05
    nw = torch.ones(n)
    nw[amazon_slice.data.y == 1] = 0.0
    down = train_model(amazon_slice, "hsign", split, 0, node_weight=nw + 1e-3, **kw)
    assert down.probs.mean() < base.probs.mean()


def test_minibatch_path():
    if minibatch_available():  # pragma: no cover - only with the optional [sparse] extra
        pytest.skip("covered by test_minibatch_trains when pyg-lib/torch-sparse are installed")
    from fraud.datasets import load_graph

    from .conftest import BITCOIN

    ds = load_graph(BITCOIN)
    with pytest.raises(ConfigError, match="pyg-lib or torch-sparse"):
        train_model(ds, "sage", make_split(ds, "semi", 0), 0, epochs=1, minibatch=True)


@pytest.mark.skipif(not minibatch_available(), reason="needs pyg-lib or torch-sparse (finllm[sparse])")
def test_minibatch_trains(bitcoin):  # pragma: no cover - optional extra
    res = train_model(bitcoin, "sage", make_split(bitcoin, "full", 0), 0, epochs=10, patience=10, minibatch=True,
                      batch_size=256)
    assert res.metrics["test"]["auroc"] > 0.7
