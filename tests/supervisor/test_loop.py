"""The supervised training loop: signal construction, failure handling, and one real end-to-end run.

* ``build_signals`` is tested with hand-made verdict records (pure arithmetic, no LLM involved).
* Endpoint down: a real gateway pointed at a closed port (real connection errors).
* Garbage: the scripted server (fault injection only) answers with text that is not JSON.
* End to end: the real embedded SmolLM2-135M server (``local_llm``) on the real Bitcoin OTC graph.
"""

from __future__ import annotations

import math
import socket

import pytest
import torch

from finllm.config import Settings
from finllm.errors import ConfigError
from fraud.supervisor.loop import build_signals, parse_uses, train_supervised

FAST = {"epochs": 3, "patience": 3}


def test_parse_uses():
    assert parse_uses("pseudo, noise") == {"pseudo", "noise"}
    assert parse_uses(None) == {"pseudo", "fuse"} == parse_uses("all")  # noise and edges only when named
    with pytest.raises(ConfigError, match="camouflage"):
        parse_uses("pseudo,camouflage")


def _rec(q, label, named=(), agreement=1.0):
    return {"q": q, "label": label, "agreement": agreement, "named": list(named)}


def test_build_signals_through_the_fitted_posterior(bitcoin, bitcoin_split):
    from fraud.supervisor.calibrate import AddedInfo

    ds, sp = bitcoin, bitcoin_split
    n = ds.num_nodes
    probs = torch.full((n,), 0.2)
    y = ds.data.y
    tr0 = int(sp.train[y[sp.train] == 0][0])  # given "normal"; the verdict says fraud -> disputed
    tr1 = int(sp.train[y[sp.train] == 1][0])  # given "fraud"; the verdict agrees -> kept
    src, dst = ds.data.edge_index
    q_node, nb = int(src[0]), int(dst[0])
    verdicts = {tr0: _rec(0.99, "fraud"), tr1: _rec(0.9, "fraud"),
                q_node: _rec(0.9, "fraud", named=[nb], agreement=0.5)}
    roles = {tr0: "noise", tr1: "noise", q_node: "query"}
    # posterior logit = logit(score) + 2 * logit(verdict) (score map identity, no residualisation)
    info = AddedInfo(n=40, coef=[0.0, 1.0, 2.0], resid=[0.0, 0.0], score_coef=[0.0, 1.0])
    post = lambda s, v: 1 / (1 + math.exp(-(math.log(s / (1 - s)) + 2 * math.log(v / (1 - v)))))  # noqa: E731
    sig = build_signals(ds, probs, verdicts, roles, info=info, uses={"pseudo", "noise", "edges"}, w_edge=0.4,
                        given_y=y, n_train=100)
    st = sig["soft_targets"]
    assert int(torch.isfinite(st).sum()) == 1 and sig["soft_weight"] == pytest.approx(1 / 100)
    assert float(st[q_node]) == pytest.approx(post(0.2, 0.9), rel=1e-5)
    nw = sig["node_weight"]
    assert float(nw[tr0]) == pytest.approx(2 * (1 - post(0.2, 0.99)), rel=1e-4) and float(nw[tr1]) == 1.0
    ew = sig["edge_weight"]
    both = ((src == q_node) & (dst == nb)) | ((src == nb) & (dst == q_node))
    assert int(both.sum()) >= 2 and torch.allclose(ew[both], torch.tensor(1 - 0.4 * 0.5))
    assert float(ew[~both].min()) == 1.0
    only = build_signals(ds, probs, verdicts, roles, info=info, uses={"noise"}, w_edge=0.4, given_y=y, n_train=100)
    assert only["soft_targets"] is None and only["edge_weight"] is None and only["node_weight"] is not None
    no_edges = build_signals(ds, probs, verdicts, roles, info=info, uses={"edges"}, w_edge=0.0, given_y=y, n_train=100)
    assert no_edges["edge_weight"] is None  # unmeasured edge reliability: edges untouched


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_endpoint_down_trains_without_supervision(bitcoin, bitcoin_split, round1, tmp_path):
    from finllm.llm import Gateway

    gw = Gateway(Settings(home=tmp_path, llm_base_url=f"http://127.0.0.1:{_closed_port()}/v1", llm_timeout_s=2),
                 max_retries=0)
    res, rep = train_supervised(bitcoin, "sage", bitcoin_split, 0, budget=6, uses="all", gateway=gw,
                                round1=round1, **FAST)
    assert res.probs is round1.probs and rep["status"] == "endpoint_failed" and not rep["supervised"]
    assert "supervisor" not in round1.config  # the caller's round 1 is not modified (a shared fixture here)
    assert "connection" in rep["reason"] and rep["llm"]["verdicts"] == 0
    assert res.config["supervisor"]["status"] == "endpoint_failed"  # the saved model's record says so
    res2, rep2 = train_supervised(bitcoin, "sage", bitcoin_split, 0, budget=6, uses="all", gateway=None,
                                  round1=round1, **FAST)
    assert res2.probs is round1.probs and rep2["status"] == "endpoint_failed"


def test_garbage_replies_train_without_supervision(bitcoin, bitcoin_split, round1, scripted_llm, tmp_path):
    """Fault injection: the (scripted) endpoint answers every request with prose, never JSON."""
    from finllm.llm import Gateway

    scripted_llm.script({"content": "I think this account is probably fine, hard to say."})
    gw = Gateway(Settings(home=tmp_path, llm_base_url=scripted_llm.url, llm_timeout_s=5), max_retries=0)
    res, rep = train_supervised(bitcoin, "sage", bitcoin_split, 0, budget=6, uses="all", gateway=gw,
                                round1=round1, **FAST)
    assert res.probs is round1.probs and rep["status"] == "endpoint_failed"
    assert rep["llm"]["failures"].get("invalid", 0) == rep["plan"]["calibration"] + rep["plan"]["noise"] + \
        rep["plan"]["queries"]


@pytest.mark.llm
def test_end_to_end_with_the_real_local_model(bitcoin, bitcoin_split, round1, local_llm, tmp_path, sqlite_url):
    """Round 1 -> prompts -> real SmolLM2-135M verdicts (schema-valid) -> calibration -> decision.

    With 3 calibration verdicts the added information cannot be measured (needs 12), so round 1 must be
    kept unchanged: a weak or unmeasured model cannot move the detector."""
    from finllm.llm import get_gateway
    from finllm.store import open_store

    store = open_store(sqlite_url)
    gw = get_gateway(store=store, settings=Settings(home=tmp_path, llm_base_url=local_llm, llm_timeout_s=120,
                                                          llm_concurrency=1))
    res, rep = train_supervised(bitcoin, "sage", bitcoin_split, 0, budget=3, uses="all", gateway=gw,
                                round1=round1, **FAST)
    assert rep["plan"]["calibration"] == 3 and rep["plan"]["prompt_tokens_max"] <= 80
    assert rep["llm"]["verdicts"] >= 1, rep["llm"]  # the real model produced schema-valid verdicts
    assert rep["status"] == "no_signal" and res.probs is round1.probs and "only" in rep["reason"]
    assert rep["trust"]["node"]["weight"] == 0.0
    assert gw.usage()["calls"] >= rep["llm"]["verdicts"]
    store.dispose()
