"""Splits (GADBench full/semi) and metrics (checked against brute-force definitions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finllm.errors import DataError
from fraud.datasets import load_graph
from fraud.evaluate import auprc, auroc, choose_threshold, evaluate, macro_f1, recall_at_k
from fraud.splits import make_split


def test_full_split_is_stratified_40_20_40(amazon):
    s = make_split(amazon, "full", 0)
    y = amazon.data.y
    parts = [s.train, s.val, s.test]
    assert sum(len(p) for p in parts) == amazon.num_nodes
    assert len(set(torch.cat(parts).tolist())) == amazon.num_nodes
    assert abs(len(s.train) / amazon.num_nodes - 0.4) < 0.01 and abs(len(s.val) / amazon.num_nodes - 0.2) < 0.01
    for p in parts:
        assert abs(float((y[p] == 1).float().mean()) - 693 / 10224) < 0.005
    assert not torch.equal(make_split(amazon, "full", 1).train, s.train)
    assert torch.equal(make_split(amazon, "full", 0).train, s.train)


def test_semi_split_and_unlabelled_excluded(bitcoin):
    s = make_split(bitcoin, "semi", 3)
    y = bitcoin.data.y
    for p in (s.train, s.val):
        assert int((y[p] == 1).sum()) == 20 and int((y[p] == 0).sum()) == 80
    assert len(s.test) == 2389 - 200 and bool((y[s.test] >= 0).all())
    assert not set(s.train.tolist()) & set(s.test.tolist())


def test_file_masks_are_used(tmp_path, amazon_slice_path):
    z = dict(np.load(amazon_slice_path))
    n = len(z["node_labels"])
    perm = np.random.default_rng(0).permutation(n)
    tr, va, te = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    tr[perm[:1200]], va[perm[1200:1800]], te[perm[1800:]] = True, True, True
    p = tmp_path / "m.npz"
    np.savez(p, **z, train_masks=tr, val_masks=va, test_masks=te)
    ds = load_graph(p)
    s = make_split(ds, "full", 4)
    assert s.source == "file_masks" and s.train.tolist() == sorted(perm[:1200].tolist())
    assert s.test.tolist() == sorted(perm[1800:].tolist())
    semi = make_split(ds, "semi", 0)
    assert len(semi.train) == 100 and set(semi.train.tolist()) <= set(perm[:1200].tolist())
    assert torch.equal(semi.test, s.test)


def test_single_class_split_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    y = np.zeros(n)
    y[:3] = 1
    tr, va, te = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    tr[:20], va[20:30], te[30:] = True, True, True  # all frauds in train: val/test single-class
    p = tmp_path / "one_class.npz"
    np.savez(p, node_features=rng.random((n, 3)), node_labels=y, edges=np.array([[0, 1], [2, 3]]),
             train_masks=tr, val_masks=va, test_masks=te)
    with pytest.raises(DataError, match="single class"):
        make_split(load_graph(p), "full", 0)
    with pytest.raises(DataError, match="needs 20 fraud"):
        make_split(load_graph(p), "semi", 0)


def test_metrics_match_brute_force():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.random(400) + 0.4 * y, 2)  # ties on purpose
    pos, neg = s[y == 1], s[y == 0]
    brute_auc = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
    assert auroc(s, y) == pytest.approx(brute_auc)
    ap, prev = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        pred = s >= t
        rec = (pred & (y == 1)).sum() / y.sum()
        ap += (rec - prev) * (pred & (y == 1)).sum() / pred.sum()
        prev = rec
    assert auprc(s, y) == pytest.approx(ap)
    assert recall_at_k(np.r_[0.9, 0.8, 0.1, 0.7], np.r_[1, 0, 1, 0]) == 0.5
    assert macro_f1(np.r_[0.9, 0.2], np.r_[1, 0], 0.5) == 1.0


def test_threshold_chosen_on_validation_and_errors():
    y = np.r_[np.zeros(90), np.ones(10)].astype(int)
    p = np.r_[np.linspace(0, 0.5, 90), np.linspace(0.6, 1, 10)]
    t = choose_threshold(p, y)
    assert 0.5 < t <= 0.6 and macro_f1(p, y, t) == 1.0
    m = evaluate(torch.tensor(p), torch.tensor(y), torch.arange(100), t)
    assert m["auroc"] == 1.0 and m["rec@k"] == 1.0 and m["n_fraud"] == 10
    with pytest.raises(DataError, match="only class 0"):
        auroc(p[:90], y[:90])
    with pytest.raises(DataError, match="NaN"):
        auprc(np.r_[np.nan, 0.5], np.r_[0, 1])
