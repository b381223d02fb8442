"""The simulated verdict source: a real loopback HTTP endpoint whose verdicts have a known AUROC.

It is what the supervisor tests and the dose-response bench use as a verdict source of known quality
(it is not an LLM, and says so in every verdict); the gateway talks to it over HTTP like to any
OpenAI-compatible endpoint.
"""

from __future__ import annotations

import numpy as np
import pytest

from finllm.config import Settings
from fraud.supervisor.simulated import SimulatedVerdictServer, exact_llr, verdict_for
from fraud.supervisor.trust import auroc
from fraud.supervisor.verdict import FraudVerdict


@pytest.mark.parametrize("q", [0.5, 0.8, 0.95])
def test_verdicts_have_the_requested_auroc_and_ignore_the_score(q):
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.3).astype(int)
    p = np.array([float(verdict_for(i, int(y[i]), q, seed=0)["fraud_probability"]) for i in range(y.size)])
    assert abs(auroc(p, y) - q) < 0.03
    score = rng.random(y.size)  # a detector score: the verdicts never see it
    for c in (0, 1):
        assert abs(np.corrcoef(p[y == c], score[y == c])[0, 1]) < 0.06


def test_calibrated_confidences_and_no_truth_for_unlabelled_nodes():
    y = np.array([1, 0] * 3000)
    p = np.array([float(verdict_for(i, int(y[i]), 0.9, seed=1)["fraud_probability"]) for i in range(y.size)])
    for lo, hi in ((0.0, 0.2), (0.4, 0.6), (0.8, 1.01)):
        m = (p >= lo) & (p < hi)
        assert abs(y[m].mean() - p[m].mean()) < 0.05  # balanced prior: the probability is the posterior
    v = verdict_for(7, -1, 0.9, seed=0)
    assert v["fraud_probability"] == "0.50" and "SIMULATED" in v["rationale"]
    assert verdict_for(3, 1, 0.9, seed=0) == verdict_for(3, 1, 0.9, seed=0)  # fixed per (seed, node)


def test_the_ceilings_exact_llr_is_the_verdicts_own_evidence():
    """The bench's ceiling reads the verdict exactly: for Q >= 0.76 the served probability is the
    sigmoid of that log-likelihood ratio (two decimals), and the ratio separates the classes as Q says."""
    y = np.array([1, 0] * 2000)
    llr = np.array([exact_llr(i, int(y[i]), 0.9, 0) for i in range(y.size)])
    p = np.array([float(verdict_for(i, int(y[i]), 0.9, seed=0)["fraud_probability"]) for i in range(y.size)])
    assert np.abs(p - 1.0 / (1.0 + np.exp(-llr))).max() <= 0.005 + 1e-9
    assert abs(auroc(llr, y) - 0.9) < 0.02


def test_the_gateway_talks_to_it_like_to_any_endpoint(tmp_path):
    from finllm.llm import Gateway

    y = np.array([0, 1, -1])
    with SimulatedVerdictServer(y, 0.9, seed=0) as srv:
        gw = Gateway(Settings(home=tmp_path, llm_base_url=srv.url, llm_model=srv.model), max_retries=0)
        res = gw.structured("fraud_verdict", {"description": "Target account n1\nFeatures: ...",
                                              "dataset": "toy"}, FraudVerdict, max_tokens=120)
        assert res and res.value.rationale.startswith("SIMULATED") and srv.requests == 1
        assert res.value.fraud_probability == float(verdict_for(1, 1, 0.9, seed=0)["fraud_probability"])
        none = gw.structured("fraud_verdict", {"description": "no id here", "dataset": "toy"}, FraudVerdict)
        assert none and none.value.fraud_probability == 0.5
    assert srv.describe()["kind"] == "simulated" and "SIMULATED" in srv.describe()["note"]
    assert "simulated" in srv.model
