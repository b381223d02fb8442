"""Trust calibration: random or constant verdicts get weight 0; informative ones get weight > 0."""

from __future__ import annotations

import numpy as np

from fraud.supervisor.trust import auroc, edge_reliability, node_reliability, wilson_lower


def _labels(n_pos, n_neg):
    return np.array([1] * n_pos + [0] * n_neg)


def test_auroc_matches_definition():
    y = np.array([1, 1, 0, 0, 0])
    assert auroc(np.array([0.9, 0.4, 0.5, 0.1, 0.4]), y) == (1 + 1 + 1 + 0 + 0.5 + 1) / 6
    assert np.isnan(auroc(np.array([0.1, 0.2]), np.array([0, 0])))


def test_random_verdicts_get_zero_weight():
    """Over many random calibration slices, verdicts that carry no signal almost never get weight;
    their mean weight is tiny (the 95% lower bound must clear chance)."""
    rng = np.random.default_rng(0)
    weights = []
    for trial in range(200):
        y = _labels(15, 15)
        q = rng.random(30)
        weights.append(node_reliability(q, y, seed=trial).weight)
    weights = np.array(weights)
    assert (weights == 0).mean() >= 0.9
    assert weights.mean() < 0.03


def test_constant_and_label_only_verdicts_get_zero_weight():
    y = _labels(10, 10)
    assert node_reliability(np.full(20, 0.9), y).weight == 0.0
    assert node_reliability(np.full(20, 0.1), y, labels=np.zeros(20)).weight == 0.0


def test_informative_verdicts_get_weight():
    rng = np.random.default_rng(1)
    y = _labels(15, 15)
    perfect = node_reliability(y * 0.8 + 0.1, y, labels=y)
    assert perfect.weight > 0.8 and perfect.agreement == 1.0 and perfect.balanced_accuracy == 1.0
    noisy = node_reliability(np.clip(y * 0.4 + rng.random(30) * 0.6, 0, 1), y)
    assert 0 < noisy.weight < perfect.weight


def test_too_few_valid_verdicts_means_no_trust():
    y = _labels(10, 10)
    q = np.full(20, np.nan)
    q[:5] = y[:5]
    r = node_reliability(q, y)
    assert r.weight == 0.0 and r.n_valid == 5 and "only 5 valid" in r.reason


def test_one_class_slice_means_no_trust():
    r = node_reliability(np.linspace(0, 1, 12), np.ones(12))
    assert r.weight == 0.0 and "one class" in r.reason


def test_gnn_auroc_reported_side_by_side():
    y = _labels(6, 6)
    r = node_reliability(np.full(12, 0.5), y, gnn=y.astype(float))
    assert r.gnn_auroc == 1.0 and r.weight == 0.0


def test_edge_reliability():
    assert wilson_lower(0, 0) == 0.0 and 0 < wilson_lower(8, 10) < 0.8
    few = edge_reliability([True] * 3, [True, False] * 20)
    assert few["weight"] == 0.0 and not few["measurable"]  # too few named
    chance = edge_reliability([True, False] * 10, [True, False] * 50)
    assert chance["weight"] == 0.0 and chance["measurable"]  # at base rate: measured, no signal
    good = edge_reliability([True] * 20, [True] + [False] * 9)
    assert good["weight"] > 0.5 and good["precision"] == 1.0
