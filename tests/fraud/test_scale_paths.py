"""The fast paths behind the scale goals compute what the plain formulas compute.

* The CSR operators (numba counting sort + CSR x dense kernel) against an edge-list gather/scatter
  reference written here with ``index_add_`` (duplicates, zero weights, relations, isolated nodes).
* Their gradients (the backward multiplies by the transpose) against autograd through a dense matrix.
* GraphSAGE's inference path (``torch.inference_mode``: blockwise head, in-place products) against the
  training-time path (``head(embed(x))``) and against a from-scratch edge-list forward, on a slice of
  the real Amazon graph with a trained model, through ``fraud.score.predict`` (what ``fraud score`` runs).
* The NeighborLoader mini-batch path, when the optional ``finllm[sparse]`` extra (torch-sparse) is
  installed; without it (the CI case) those tests skip and the clear error is checked instead.
"""

from __future__ import annotations

import pytest
import torch

from fraud.artifacts import LoadedModel
from fraud.models import GNN_MODELS, GraphOps, build_model
from fraud.models.graph_ops import spmm
from fraud.score import predict
from fraud.splits import make_split
from fraud.fit_loop import minibatch_available
from fraud.train import apply_normalization, train_model


def _random_graph(seed: int, n: int = 300, e: int = 3000):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 20, (2, e), generator=g)  # the last 20 nodes are isolated
    ei = torch.cat([ei, ei[:, :50]], 1)  # duplicate edges: their weights add up
    et = torch.randint(0, 3, (ei.size(1),), generator=g)
    w = torch.rand(ei.size(1), generator=g)
    w[torch.rand(ei.size(1), generator=g) < 0.3] = 0.0
    return ei, et, w, n


def _ref_agg(ei, w, n, h, norm: str) -> torch.Tensor:
    """Edge-list reference: messages src -> dst weighted by w, mean or symmetric normalisation."""
    src, dst = ei
    deg = torch.zeros(n, dtype=torch.float64).index_add_(0, dst, w.double())
    if norm == "mean":
        coef = w.double() / deg[dst].clamp_min(1e-300)
    else:
        dinv = torch.where(deg > 0, deg.clamp_min(1e-300).rsqrt(), torch.zeros_like(deg))
        coef = dinv[dst] * w.double() * dinv[src]
    return torch.zeros(n, h.size(1), dtype=torch.float64).index_add_(0, dst, coef[:, None] * h.double()[src])


@pytest.mark.parametrize("weighted", [False, True])
def test_csr_operators_match_edge_list_reference(weighted):
    ei, et, w, n = _random_graph(0)
    w = w if weighted else torch.ones(ei.size(1))
    g = GraphOps(ei, n, edge_type=et, edge_weight=w if weighted else None, num_relations=3)
    h = torch.randn(n, 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(spmm(g.mean_adj(), h).double(), _ref_agg(ei, w, n, h, "mean"), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(spmm(g.sym_adj(), h).double(), _ref_agg(ei, w, n, h, "sym"), atol=1e-5, rtol=1e-5)
    for r in range(3):
        m = et == r
        torch.testing.assert_close(spmm(g.mean_adj(r), h).double(), _ref_agg(ei[:, m], w[m], n, h, "mean"),
                                   atol=1e-5, rtol=1e-5)
    # isolated nodes aggregate to exactly 0; a 1-D vector is a one-column product
    assert torch.equal(spmm(g.mean_adj(), h)[-20:], torch.zeros(20, 5))
    torch.testing.assert_close(spmm(g.mean_adj(), h[:, 2]), spmm(g.mean_adj(), h)[:, 2])
    # the torch CSR view and the transpose hold the same matrix
    a = g.mean_adj()
    torch.testing.assert_close(a.at.to_dense(), a.to_dense().t())
    torch.testing.assert_close(torch.sparse.mm(a.a, h), spmm(a, h))


def test_zero_weight_edges_are_removed_edges():
    ei, et, w, n = _random_graph(2)
    keep = w > 0
    g_w = GraphOps(ei, n, edge_type=et, edge_weight=w, num_relations=3)
    g_cut = GraphOps(ei[:, keep], n, edge_type=et[keep], edge_weight=w[keep], num_relations=3)
    assert g_w.mean_adj().nnz == int(keep.sum())
    for a, b in [(g_w.mean_adj(), g_cut.mean_adj()), (g_w.sym_adj(), g_cut.sym_adj()),
                 (g_w.mean_adj(1), g_cut.mean_adj(1))]:
        torch.testing.assert_close(a.at.to_dense(), b.at.to_dense())
        assert a.nnz == b.nnz
        torch.testing.assert_close(a.to_dense(), b.to_dense())


def test_spmm_gradient_matches_dense_autograd():
    ei, _, w, n = _random_graph(3)
    g = GraphOps(ei, n, edge_weight=w)
    for a in (g.mean_adj(), g.sym_adj()):
        h = torch.randn(n, 4, generator=torch.Generator().manual_seed(4), requires_grad=True)
        up = torch.randn(n, 4, generator=torch.Generator().manual_seed(5))
        (spmm(a, h) * up).sum().backward()
        got = h.grad.clone()
        h.grad = None
        (a.to_dense() @ h * up).sum().backward()
        torch.testing.assert_close(got, h.grad, atol=1e-5, rtol=1e-5)
        with torch.no_grad():  # no graph recorded when autograd is off
            assert not spmm(a, h).requires_grad


def test_spmm_same_result_on_one_and_two_threads():
    ei, _, w, n = _random_graph(6, n=5000, e=60000)
    a = GraphOps(ei, n, edge_weight=w).mean_adj()
    h = torch.randn(n, 64, generator=torch.Generator().manual_seed(7))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = spmm(a, h)
        torch.set_num_threads(2)
        two = spmm(a, h)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two)  # rows are split between threads, each row's sum keeps its order


_FORK_SCRIPT = """
import os, sys, numpy as np, torch
from fraud.models import GraphOps
from fraud.models.graph_ops import spmm
g = torch.Generator().manual_seed(8)
n = 20000
ei = torch.randint(0, n, (2, 200000), generator=g)
a = GraphOps(ei, n, edge_weight=torch.rand(200000, generator=g)).mean_adj()
h = torch.randn(n, 16, generator=g)
torch.set_num_threads(2)
parent = spmm(a, h).numpy().copy()
pid = os.fork()
if pid == 0:  # numpy for the comparison: torch's own OpenMP regions are not fork-safe (a torch matter)
    os._exit(0 if np.array_equal(spmm(a, h).numpy(), parent) else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_two_thread_product_survives_fork():
    """Airflow and multiprocessing fork: a process that ran the product on two threads can still fork,
    and the child computes the same product (the thread pool is rebuilt there, not inherited; numba's
    OpenMP layer, which kills such a child, is not used). Run in a fresh interpreter: forking this test
    session, with its many threads, would test the session rather than the product."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])  # 3: a different product; < 0: killed


def _sage_reference(model, x, ei, n) -> torch.Tensor:
    """GraphSAGE forward written from scratch: edge-list mean aggregation, concatenated head."""
    w = torch.ones(ei.size(1))
    h = torch.relu(x.double() @ model.inp.weight.double().t() + model.inp.bias.double())
    outs = [h]
    for ls, ln in zip(model.self_lin, model.nb_lin):
        agg = _ref_agg(ei, w, n, h, "mean")
        h = torch.relu(h @ ls.weight.double().t() + ls.bias.double() + agg @ ln.weight.double().t())
        outs.append(h)
    z = torch.relu(torch.cat(outs, 1) @ model.head[0].weight.double().t() + model.head[0].bias.double())
    return (z @ model.head[2].weight.double().t() + model.head[2].bias.double()).squeeze(-1)


def test_sage_scoring_path_equals_training_path_and_reference(amazon_slice):
    ds = amazon_slice
    tr = train_model(ds, "sage", make_split(ds, "full", 0), 0, epochs=5, patience=5)
    loaded = LoadedModel(id="t", name="sage", model=tr.model, threshold=tr.threshold,
                         normalization=tr.normalization, config=tr.config, metrics={}, dataset=ds.name)
    fast = predict(loaded, ds)
    assert fast.dtype == torch.float32 and not fast.is_inference()
    torch.testing.assert_close(fast, tr.probs, atol=2e-6, rtol=1e-5)  # train_model scores via head(embed)
    x = apply_normalization(ds.data.x, tr.normalization)
    g = GraphOps(ds.data.edge_index, ds.num_nodes)
    model = tr.model.eval()
    with torch.inference_mode():
        logits_fast = model(x, g)
    logits_train_path = model.head(model.embed(x, g)).squeeze(-1)  # autograd on: the training path
    assert logits_train_path.requires_grad
    torch.testing.assert_close(logits_fast, logits_train_path.detach(), atol=1e-5, rtol=1e-5)
    ref = _sage_reference(model, x, ds.data.edge_index, ds.num_nodes)
    torch.testing.assert_close(logits_fast.double(), ref, atol=1e-4, rtol=1e-4)


# ---- mini-batch (NeighborLoader) -----------------------------------------------------------------
# Without the extra (the CI case) these skip; tests/fraud/test_models.py::test_minibatch_path then checks
# the clear ConfigError instead.
needs_sparse = pytest.mark.skipif(not minibatch_available(),
                                  reason="needs torch-sparse (optional extra finllm[sparse])")


@needs_sparse
def test_neighbor_loader_batches_carry_weights_relations_and_targets(bitcoin):
    from fraud.fit_loop import neighbor_loader

    d = bitcoin.data
    e = d.edge_index.size(1)
    w = torch.rand(e, generator=torch.Generator().manual_seed(0))
    split = make_split(bitcoin, "full", 0)
    w_tr = torch.where(d.y[split.train] == 1, 5.0, 1.0)
    soft = torch.full((bitcoin.num_nodes,), float("nan"))
    soft_idx = split.test[:100]
    soft[soft_idx] = 0.25
    loader = neighbor_loader(d.x, d, d.y, split.train, w_tr, soft_idx, soft, 0.5, edge_weight=w, batch_size=128,
                             fanout=(5, 3))
    seen = 0
    for b in loader:
        bs, nid, eid = b.batch_size, b.n_id, b.e_id
        seeds = nid[:bs]
        in_train = torch.isin(seeds, split.train)
        assert (in_train | torch.isin(seeds, soft_idx)).all()
        assert torch.equal(nid[b.edge_index], d.edge_index[:, eid])  # local edges are the sampled global ones
        assert torch.equal(b.edge_weight, w[eid]) and torch.equal(b.edge_type, d.edge_type[eid])
        assert torch.equal(b.x, d.x[nid])
        assert torch.equal(b.target[:bs][in_train], d.y[seeds[in_train]].float())
        assert torch.equal(b.target[:bs][~in_train], torch.full((int((~in_train).sum()),), 0.25))
        assert torch.equal(b.soft_w[:bs] > 0, ~in_train) and torch.equal(b.node_w[:bs] > 0, in_train)
        # fanout: at most 5 sampled in-edges per seed
        assert torch.bincount(b.edge_index[1][b.edge_index[1] < bs], minlength=bs).max() <= 5
        seen += bs
    assert seen == len(split.train) + len(soft_idx)  # every seed once per epoch


@needs_sparse
@pytest.mark.parametrize("name", sorted(GNN_MODELS))
def test_minibatch_training_beats_random(bitcoin, name):
    split = make_split(bitcoin, "full", 0)
    res = train_model(bitcoin, name, split, 0, epochs=6, patience=6, minibatch=True, batch_size=512)
    te = res.metrics["test"]
    assert res.config["minibatch"] and res.config["fanout"] == [15, 10]
    assert len(res.history) >= 1 and all(h["batches"] == -(-len(split.train) // 512) for h in res.history)
    assert torch.isfinite(res.probs).all()
    assert te["auroc"] > 0.7, te
    assert te["auprc"] > 1.5 * te["n_fraud"] / te["n"], te


@needs_sparse
def test_minibatch_honours_the_supervisor_hooks(bitcoin):
    split = make_split(bitcoin, "semi", 0)
    n = bitcoin.num_nodes
    kw = {"epochs": 4, "patience": 4, "minibatch": True, "batch_size": 256}
    base = train_model(bitcoin, "sage", split, 0, **kw)
    soft = torch.full((n,), float("nan"))
    unl = torch.ones(n, dtype=torch.bool)
    unl[split.train] = False
    soft[unl] = 1.0  # soft targets "everything is fraud" on non-training nodes: they become seeds too
    pushed = train_model(bitcoin, "sage", split, 0, soft_targets=soft, soft_weight=2.0, **kw)
    assert pushed.config["soft_nodes"] == int(unl.sum())
    assert pushed.probs.mean() > base.probs.mean() + 0.05
    w0 = train_model(bitcoin, "sage", split, 0, edge_weight=torch.zeros(bitcoin.data.edge_index.size(1)), **kw)
    assert w0.config["uses_edge_weight"] and torch.isfinite(w0.probs).all()
    # weight 0 = no edge in every sampled batch: the neighbour weights get no gradient (Adam, no weight
    # decay, leaves them at their initial values), while with the edges they do learn
    torch.manual_seed(0)
    fresh = build_model("sage", bitcoin.data.x.size(1), len(bitcoin.relations), **w0.config["hparams"])
    assert torch.equal(w0.model.nb_lin[0].weight, fresh.nb_lin[0].weight)
    assert not torch.equal(base.model.nb_lin[0].weight, fresh.nb_lin[0].weight)


@needs_sparse
def test_minibatch_training_is_reproducible(bitcoin):
    split = make_split(bitcoin, "full", 0)
    a, b = (train_model(bitcoin, "sage", split, 3, epochs=2, patience=2, minibatch=True, batch_size=256)
            for _ in range(2))
    assert torch.equal(a.probs, b.probs)  # the sampler draws from torch's seeded generator
