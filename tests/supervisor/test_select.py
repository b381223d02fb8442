"""Query selection under a budget: uncertain and neighbourhood-contradicting nodes first."""

from __future__ import annotations

import torch

from fraud.supervisor.select import (calibration_slice, contradiction, label_disagreements, plan_budget,
                                     query_scores, top_k, uncertainty)


def test_uncertainty_peaks_at_threshold():
    p = torch.tensor([0.01, 0.05, 0.2, 0.9])
    u = uncertainty(p, 0.05)
    assert u.argmax() == 1 and u[1] == 1.0 and u[0] < 1 and u[3] < u[2]


def test_contradiction_with_neighbourhood():
    # path 0-1-2 plus isolated 3; node 1 scores high while both neighbours are known normal
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    p = torch.tensor([0.1, 0.9, 0.1, 0.5])
    known = torch.tensor([0, -1, 0, -1])
    c = contradiction(p, ei, known)
    assert torch.allclose(c[1], torch.tensor(0.9)) and c[3] == 0
    s = query_scores(p, ei, threshold=0.5, known=known, alpha=0.0)
    assert top_k(s, torch.arange(4), 1).tolist() == [1]


def test_top_k_deterministic_and_bounded():
    s = torch.tensor([0.5, 0.9, 0.5, 0.1])
    assert top_k(s, torch.tensor([3, 2, 0, 1]), 3).tolist() == [1, 0, 2]
    assert top_k(s, torch.tensor([3]), 5).tolist() == [3]
    assert top_k(s, torch.tensor([1, 2]), 0).numel() == 0


def test_calibration_slice_balanced_and_uncertain_first():
    y = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0])
    p = torch.tensor([0.5, 0.9, 0.99, 0.5, 0.1, 0.01, 0.45, 0.3])
    sl = calibration_slice(torch.arange(8), y, p, 0.5, 4)
    assert sl.tolist() == [0, 1, 3, 6]
    # too few positives: the slice fills up with negatives
    assert len(calibration_slice(torch.arange(8), y, p, 0.5, 7)) == 7


def test_label_disagreements():
    y = torch.tensor([1, 0, 1, 0])
    p = torch.tensor([0.1, 0.9, 0.8, 0.6])
    assert label_disagreements(torch.arange(4), y, p, 0.5).tolist() == [0, 1, 3]


def test_plan_budget_respects_budget():
    for b in (0, 5, 20, 60, 150, 500):
        for uses in ({"pseudo"}, {"noise"}, {"edges"}, {"pseudo", "noise", "edges"}):
            plan = plan_budget(b, uses=uses, n_noise_candidates=7)
            assert plan.calls <= b
            assert plan.n_noise <= 7
            if "noise" not in uses:
                assert plan.n_noise == 0
    assert plan_budget(150, uses={"pseudo"}, n_noise_candidates=0).samples == 3
    assert plan_budget(60, uses={"pseudo"}, n_noise_candidates=0).samples == 1
    p = plan_budget(60, uses={"pseudo"}, n_noise_candidates=0)
    assert p.n_calibration == 24 and p.n_query == 36


def test_band_queries_pick_the_uncertain_band_at_the_real_fraud_rate():
    """With 10% fraud, the nodes worth a verdict sit near p = 0.5 at that rate: high in the ranking,
    not at a balanced-prior midpoint deep in the negatives."""
    from fraud.supervisor.select import band_queries, pool_posterior

    g = torch.Generator().manual_seed(0)
    n = 2000
    y = (torch.rand(n, generator=g) < 0.1).long()
    probs = torch.sigmoid(torch.randn(n, generator=g) + 2.5 * y - 1.0)
    val = torch.arange(0, 400)
    p = pool_posterior(probs, val, y)
    assert torch.equal(torch.argsort(p, stable=True), torch.argsort(probs, stable=True))  # monotone map
    cand = torch.arange(400, n)
    picked = band_queries(probs, val, y, cand, 50)
    assert picked.numel() == 50 and set(picked.tolist()) <= set(cand.tolist())
    assert float((p[picked] - 0.5).abs().max()) < float((p[cand] - 0.5).abs().median())
    # the band is above the pool's median score: where AUPRC is made
    assert float(probs[picked].min()) > float(probs[cand].median())
