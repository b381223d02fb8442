"""Explanations: features and neighbours that drive a saved detector's score; the CLI command."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import DATA

PATH = DATA / "fraud" / "soc-sign-bitcoinotc.csv"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, bitcoin, round1):
    """The session's small SAGE model on Bitcoin OTC, saved in a fresh store."""
    from finllm.store import open_store
    from fraud.artifacts import load_model, save_model

    home = tmp_path_factory.mktemp("explain_home")
    ds, res = bitcoin, round1
    url = f"sqlite:///{home / 'finllm.db'}"
    store = open_store(url)
    mid = save_model(res, store, dataset=str(PATH), models_dir=home / "models")
    return ds, load_model(mid, store), url, res


def test_neighbour_occlusion_matches_a_rescore_without_that_link(saved):
    from fraud.supervisor.explain import _inputs, _score, explain_node

    ds, loaded, _, res = saved
    node = int(torch.argmax(res.probs))
    e = explain_node(loaded, ds, node, top=3, max_neighbors=3)
    assert e["flagged"] == (e["score"] >= loaded.threshold) and e["rank"] == 1
    assert len(e["features"]) == 3 and e["features"][0]["method"] == "gradient_x_input"
    assert abs(e["features"][0]["attribution"]) >= abs(e["features"][-1]["attribution"])
    nb = e["neighbors"][0]
    src, dst = ds.data.edge_index
    w = torch.ones(src.numel())
    j = nb["index"]
    w[((src == node) & (dst == j)) | ((src == j) & (dst == node))] = 0
    x, g = _inputs(loaded, ds, edge_weight=w)
    p0, p1 = float(_score(loaded, *_inputs(loaded, ds))[node]), float(_score(loaded, x, g)[node])
    assert abs((math.log(p0 / (1 - p0)) - math.log(p1 / (1 - p1))) - nb["contribution"]) < 1e-4


def test_explain_cli_json(saved, monkeypatch):
    from finllm.cli.main import app

    ds, loaded, url, res = saved
    monkeypatch.setenv("FINLLM_DATABASE_URL", url)
    node_id = ds.node_ids[int(torch.argmax(res.probs))]
    out = CliRunner().invoke(app, ["fraud", "explain", "--model", loaded.id, "--node", node_id, "--no-llm",
                                   "--json", "--top", "2", "--max-neighbors", "2"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["node"] == node_id and len(doc["features"]) == 2 and "llm" not in doc and doc["summary"]
    bad = CliRunner().invoke(app, ["fraud", "explain", "--model", loaded.id, "--node", "no-such-node", "--no-llm"])
    assert bad.exit_code == 2 and "no node 'no-such-node'" in bad.output


def test_hsign_features_get_gradient_attributions(bitcoin, bitcoin_split):
    """HSIGN caches its label-free encoding without gradients for training; an explanation still needs
    d logit / d x, so the attribution must be finite and not all zero."""
    from fraud.artifacts import LoadedModel
    from fraud.supervisor.explain import feature_attribution
    from fraud.train import train_model

    res = train_model(bitcoin, "hsign", bitcoin_split, 0, epochs=3, patience=3)
    loaded = LoadedModel(id="t", name="hsign", model=res.model, threshold=res.threshold,
                         normalization=res.normalization, config=res.config, metrics={}, dataset="")
    node = int(torch.argmax(res.probs))
    feats = feature_attribution(loaded, bitcoin, node, top=3)
    assert len(feats) == 3 and feats[0]["method"] == "gradient_x_input"
    assert all(math.isfinite(f["attribution"]) for f in feats) and abs(feats[0]["attribution"]) > 0


VERDICT_FRAUD = {"rationale": "Many links to accounts with negative ratings.", "label": "fraud",
                 "fraud_probability": "0.95", "confidence": "0.90", "suspicious_neighbors": []}
PHRASINGS = {"sentences": [
    {"facts": ["feature_1_name", "score"], "text": "The score of {score} is driven mostly by {feature_1_name}."},
    {"facts": ["score"], "text": "This account is clearly fraudulent at {score}."},  # a verdict of its own
    {"facts": ["score"], "text": "A score of 0.95 is very high for {node}."}]}  # an invented number


def _below_threshold(res) -> int:
    """The node scoring closest to the threshold from below (the hardest case for 'agrees with the detector')."""
    gap = res.threshold - res.probs
    gap[gap <= 0] = float("inf")
    return int(torch.argmin(gap))


def test_below_threshold_node_explanation_agrees_with_the_detector(saved, scripted_llm, tmp_path):
    """A node under the threshold: the explanation says 'not flagged'; an LLM verdict of fraud is shown as a
    disagreement with its (unmeasured) reliability, never as the explanation. Scripted server: the real
    135M model cannot be made to contradict the detector, or to state a verdict, on cue."""
    from finllm.config import Settings
    from finllm.llm import Gateway
    from finllm.reports.facts import fmt_fact
    from finllm.grounding.check import unbacked_numbers
    from fraud.supervisor.explain import explain_node, explanation_text

    ds, loaded, _, res = saved
    node = _below_threshold(res)
    scripted_llm.script({"content": json.dumps(VERDICT_FRAUD)}, {"content": json.dumps(PHRASINGS)})
    gw = Gateway(Settings(home=tmp_path, llm_base_url=scripted_llm.url, llm_model="scripted"), sleep=lambda s: None)
    e = explain_node(loaded, ds, node, gateway=gw, top=3, max_neighbors=3)
    assert e["flagged"] is False and e["score"] < e["threshold"] == loaded.threshold
    first = e["explanation"]["sentences"][0]
    assert first["source"] == "code" and "not flagged (below the threshold)" in first["text"]
    assert first["text"].startswith(f"Node {e['node']} scores ") and "score" in first["facts"]
    v = e["llm"]
    assert v["label"] == "fraud" and v["shown_as"] == "disagreement" and v["agrees_with_detector"] is False
    assert e["reliability"] == "unmeasured" and "reliability: unmeasured" in v["note"]
    assert "disagrees with the detector (not flagged); the detector's decision stands." in v["note"]
    llm = [s for s in e["explanation"]["sentences"] if s["source"] == "llm"]
    feature = e["evidence"]["feature_1_name"]
    assert [s["text"] for s in llm] == [f"The score of {fmt_fact('score', e['score'])} is driven mostly by {feature}."]
    reasons = [d["reason"] for d in e["explanation"]["dropped"]]
    assert len(reasons) == 2 and "verdict" in reasons[0] and "0.95" in reasons[1]
    for text in (e["text"], explanation_text(e)):
        assert "Many links" not in text and "clearly fraudulent" not in text and "0.95" not in text
    assert explanation_text(e).endswith("the detector's decision stands.")
    assert unbacked_numbers(e["explanation"]["sentences"], e["evidence"]) == []


def test_verdict_shown_with_measured_reliability_and_agreement():
    from types import SimpleNamespace

    from fraud.supervisor.explain import reliability_of, verdict_view

    trained = SimpleNamespace(config={"supervisor": {"trust": {"node": {"weight": 0.0, "auroc": 0.5213, "n_valid": 40,
                                                                        "reason": "no signal"}}}})
    rel = reliability_of(trained)
    assert rel == {"weight": 0.0, "auroc": 0.5213, "n_valid": 40, "reason": "no signal"}
    assert reliability_of(SimpleNamespace(config={})) == "unmeasured"
    v = verdict_view({"label": "fraud", "fraud_probability": 0.9}, True, rel)
    assert v["shown_as"] == "opinion" and v["agrees_with_detector"]
    assert v["note"] == ("An LLM verdict (reliability: measured reliability weight 0, AUROC 0.5213 on 40 validation "
                         "nodes) says fraud, agreeing with the detector (flagged).")


def test_explain_cli_json_carries_the_decision_and_the_disagreement(saved, scripted_llm, monkeypatch):
    # Scripted server, as above: a contradicting verdict on cue.
    from finllm.cli.main import app

    ds, loaded, url, res = saved
    node_id = ds.node_ids[_below_threshold(res)]
    scripted_llm.script({"content": json.dumps(VERDICT_FRAUD)}, {"content": json.dumps(PHRASINGS)})
    monkeypatch.setenv("FINLLM_DATABASE_URL", url)
    monkeypatch.setenv("FINLLM_LLM_BASE_URL", scripted_llm.url)
    monkeypatch.setenv("FINLLM_LLM_MODEL", "scripted")
    out = CliRunner().invoke(app, ["fraud", "explain", "--model", loaded.id, "--node", node_id, "--json",
                                   "--top", "2", "--max-neighbors", "2"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["flagged"] is False and doc["score"] < doc["threshold"] and doc["evidence"]["score"] == doc["score"]
    assert "not flagged" in doc["text"] and doc["llm"]["shown_as"] == "disagreement"
    assert {"features", "neighbors", "explanation", "reliability"} <= set(doc)
    human = CliRunner().invoke(app, ["fraud", "explain", "--model", loaded.id, "--node", node_id,
                                     "--top", "2", "--max-neighbors", "2"])
    assert human.exit_code == 0 and "not flagged" in human.stdout and "LLM DISAGREES with the detector" in human.stdout


def test_alert_explanations_use_the_same_path_in_whole_sentences(saved, scripted_llm, monkeypatch):
    """explain_job (demo and DAG) stores the evidence sentences plus the verdict's note, never the LLM's
    rationale; a report shortens it only at a sentence boundary. Scripted server, as above."""
    from finllm.reports.facts import whole_sentences
    from finllm.store import open_store
    from finllm.app.explain import explain_top_alerts as explain_job

    ds, loaded, url, res = saved
    node = _below_threshold(res)
    store = open_store(url)
    store.save_alerts(loaded.id, "t", [{"node": ds.node_ids[node], "score": float(res.probs[node]), "rank": 1,
                                        "above_threshold": False, "explanation": None}])
    scripted_llm.script({"content": json.dumps(VERDICT_FRAUD)}, {"content": json.dumps(PHRASINGS)})
    monkeypatch.setenv("FINLLM_LLM_BASE_URL", scripted_llm.url)
    monkeypatch.setenv("FINLLM_LLM_MODEL", "scripted")
    out = explain_job(loaded.id, batch="t", data=str(PATH), top=1, store=store)
    assert out["explained"] == 1 and out["with_llm"] == 1 and out["llm_disagreements"] == 1
    text = store.alerts(loaded.id, "t")[0].explanation
    assert text.startswith(f"Node {ds.node_ids[node]} scores ") and "not flagged (below the threshold)" in text
    assert text.endswith("the detector's decision stands.") and "Many links" not in text
    short = whole_sentences(text, 120)
    assert short.endswith("…") and short[:-2] in text and short[-3] == "."


def _gateway(url: str, home):
    from finllm.config import Settings
    from finllm.llm import Gateway

    return Gateway(Settings(home=home, llm_base_url=url, llm_model="scripted"), sleep=lambda s: None)


def _top_nodes(res, k: int) -> list[int]:
    return [int(i) for i in torch.argsort(res.probs, descending=True)[:k]]


def test_a_batch_stops_asking_an_llm_that_has_not_delivered(saved, scripted_llm, tmp_path):
    """An endpoint whose verdicts and phrasings are unusable (scripted: a fault the real model cannot be made to
    show on cue) is asked for the first LLM_PROBE alerts only; the rest say why they were not asked, and the
    code's evidence sentences are the same either way."""
    from fraud.supervisor.explain import LLM_PROBE, explain_alerts

    ds, loaded, _, res = saved
    nodes = _top_nodes(res, LLM_PROBE + 3)
    scripted_llm.script({"content": "no JSON here"})
    few = explain_alerts(loaded, ds, nodes[:LLM_PROBE], gateway=_gateway(scripted_llm.url, tmp_path / "a"),
                         llm_budget=len(nodes), max_neighbors=3)
    asked = len(scripted_llm.requests)
    assert asked >= 2 * LLM_PROBE and not any("llm_skipped" in e for e in few.values())
    scripted_llm.script({"content": "no JSON here"})
    every = explain_alerts(loaded, ds, nodes, gateway=_gateway(scripted_llm.url, tmp_path / "b"),
                           llm_budget=len(nodes), max_neighbors=3)
    assert len(scripted_llm.requests) == 2 * asked  # not one request after the probe
    later = [every[n] for n in nodes[LLM_PROBE:]]
    assert all("llm" not in e and len(e["llm_skipped"]) == 2 for e in later)
    assert "verdict: none of the LLM's verdicts" in later[0]["llm_skipped"][0]
    assert "phrasing: none of the LLM's phrasings" in later[0]["llm_skipped"][1]
    assert all(s["source"] == "code" for e in later for s in e["explanation"]["sentences"]) and later[0]["text"]


def test_an_llm_that_delivers_is_asked_for_every_alert(saved, scripted_llm, tmp_path):
    from fraud.supervisor.explain import LLM_PROBE, explain_alerts

    ds, loaded, _, res = saved
    nodes = _top_nodes(res, LLM_PROBE + 2)
    scripted_llm.script(*[{"content": json.dumps(VERDICT_FRAUD)}, {"content": json.dumps(PHRASINGS)}] * len(nodes))
    out = explain_alerts(loaded, ds, nodes, gateway=_gateway(scripted_llm.url, tmp_path), llm_budget=len(nodes),
                         max_neighbors=3)
    assert all(out[n]["llm"]["label"] == "fraud" and "llm_skipped" not in out[n] for n in nodes)
    assert all(any(s["source"] == "llm" for s in out[n]["explanation"]["sentences"]) for n in nodes)


def test_verdicts_measured_at_weight_zero_are_not_asked_for(saved, scripted_llm, tmp_path):
    import dataclasses

    from fraud.supervisor.explain import explain_alerts

    ds, loaded, _, res = saved
    trust = {"node": {"weight": 0.0, "auroc": 0.49, "auroc_lower": 0.41, "n_valid": 40, "reason": "no signal"}}
    useless = dataclasses.replace(loaded, config={**loaded.config, "supervisor": {"trust": trust}})
    scripted_llm.script({"content": json.dumps(PHRASINGS)})
    nodes = _top_nodes(res, 2)
    out = explain_alerts(useless, ds, nodes, gateway=_gateway(scripted_llm.url, tmp_path), llm_budget=2,
                         max_neighbors=3)
    assert all("llm" not in out[n] and "weight 0" in out[n]["llm_skipped"][0] for n in nodes)
    assert len(scripted_llm.requests) == 2  # phrasings only
