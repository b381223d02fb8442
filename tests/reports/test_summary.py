"""Run narratives as cited sentences: numbers rendered by code, unbacked claims dropped, a fallback that says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finllm.config import Settings
from finllm.llm import Gateway
from finllm.reports.facts import build_facts, narrative_facts
from finllm.grounding.check import unbacked_numbers
from finllm.reports.summary import build_narrative, narrative_from_stored, summarize_run


def _gw(url: str, tmp_path: Path, store, model: str = "scripted") -> Gateway:
    settings = Settings(home=tmp_path, llm_base_url=url, llm_model=model, llm_timeout_s=120)
    return Gateway(settings, store=store, sleep=lambda s: None)


def test_fraud_facts_are_built_from_the_store(store, fraud_run):
    facts = build_facts(fraud_run, store)
    assert facts["metrics"]["test"]["auroc"] == 0.9123
    assert facts["threshold"] == 0.4132
    assert facts["alerts"]["count"] == 12 and facts["alerts"]["top"][0]["rank"] == 1
    assert facts["test_set"]["n"] > 0 and 0 < facts["test_set"]["fraud_rate"] < 0.3
    cmp = {(c["baseline"], c["metric"]): c["difference"] for c in facts["comparisons"]}
    assert cmp[("xgbgraph", "auroc")] == pytest.approx(0.0812)
    json.dumps(facts)  # JSON-safe


def test_per_seed_metric_layout_is_read(store):
    """fraud.jobs writes {"val": {"auroc": {"mean", "std"}}, "test": {...}}: read as valid/test means + _std."""
    rid = store.start_run("fraud_train", {"model": "sage"})
    store.finish_run(rid, metrics={"val": {"auroc": {"mean": 0.81, "std": 0.02}}, "test": {"rec@k": {"mean": 0.4}},
                                   "per_seed": [{"seed": 0}], "train_time_s": 3.5, "threshold": 0.3})
    facts = build_facts(rid, store)
    assert facts["metrics"] == {"valid": {"auroc": 0.81, "auroc_std": 0.02}, "test": {"rec@k": 0.4}}
    assert facts["other_metrics"] == {"train_time_s": 3.5} and facts["threshold"] == 0.3


def _script(scripted_llm, *sentences: tuple[str, list[str]]) -> None:
    scripted_llm.script({"content": json.dumps({"sentences": [{"facts": f, "text": t} for t, f in sentences]})})


def test_invented_number_and_false_data_use_claim_are_dropped(scripted_llm, tmp_path, store, fraud_run):
    # Scripted server: a real model cannot be made to lie on cue, and this test needs one exact invented
    # number and one exact false data-use claim ("the test period was used for training").
    _script(scripted_llm,
            ("The detector reached a test AUROC of {test_auroc} on held-out nodes.", ["test_auroc", "test_use"]),
            ("It caught 87% of all fraud, with an AUROC of {test_auroc}.", ["test_auroc"]),
            ("The test period ({test_use}) was used for training and validation.", ["train_use", "valid_use"]),
            ("Its AUROC of 0.9123 beats the xgbgraph baseline by {vs_xgbgraph_test_auroc}.",
             ["test_auroc", "vs_xgbgraph_test_auroc"]),
            ("Its AUPRC of {test_auprc} was 0.9123.", ["test_auprc"]),  # a true number, but not the cited fact's
            ("Fraud fell sharply {no_such_key}.", []))
    res = summarize_run(fraud_run, store, _gw(scripted_llm.url, tmp_path, store))
    n = res.narrative
    assert res.ok and res.stored and n.source == "llm"
    assert [s.text for s in n.sentences] == [
        "The detector reached a test AUROC of 0.9123 on held-out nodes.",
        "Its AUROC of 0.9123 beats the xgbgraph baseline by 0.0812."]
    reasons = {s.template: s.reason for s in n.dropped}
    assert "87%" in reasons["It caught 87% of all fraud, with an AUROC of {test_auroc}."]
    assert "split was used to fit" in reasons["The test period ({test_use}) was used for training and validation."]
    assert "0.9123" in reasons["Its AUPRC of {test_auprc} was 0.9123."]
    assert "unknown fact" in reasons["Fraud fell sharply {no_such_key}."]
    assert unbacked_numbers(n.to_dict()["sentences"], res.facts) == []
    # stored as templates + citations (numbers are rendered again from the facts by each report)
    stored = json.loads(store.get_run(fraud_run).summary)
    assert stored["sentences"][0] == {"template": "The detector reached a test AUROC of {test_auroc} on held-out "
                                                  "nodes.", "facts": ["test_auroc", "test_use"]}
    # the prompt carried the flat facts, with what each split was used for, inside an untrusted block
    user = scripted_llm.requests[0]["messages"][1]["content"]
    assert "<<<UNTRUSTED run facts" in user and "test_auroc = 0.9123" in user and "test_use = held out" in user
    schema = scripted_llm.requests[0]["response_format"]
    assert "vs_xgbgraph_test_auroc" in json.dumps(schema)  # the cited keys are an enum in the schema


def test_nothing_survives_gives_the_deterministic_summary_and_says_so(scripted_llm, tmp_path, store, fraud_run):
    _script(scripted_llm, ("][", ["test_auroc"]), ("The AUROC was 1.234 in March.", ["test_auroc"]))
    res = summarize_run(fraud_run, store, _gw(scripted_llm.url, tmp_path, store))
    n = res.narrative
    assert not res.ok and res.stored and n.source == "fallback" and len(n.dropped) == 2
    assert "none of the LLM's 2 sentence(s) passed the checks" in n.note and "by code" in n.note
    text = n.text
    assert text.startswith("The bwgnn detector on amazon_upu.mat has a test AUROC of 0.9123")
    assert "][" not in text and "amazon bwgnn" not in text and "1.234" not in text
    assert unbacked_numbers(n.to_dict()["sentences"], res.facts) == []
    # a report renders the stored outcome again without asking the LLM
    calls = len(scripted_llm.requests)
    again = narrative_from_stored(store.get_run(fraud_run).summary, res.facts, "fraud_train")
    assert again.source == "fallback" and again.text == text and len(scripted_llm.requests) == calls


def test_llm_failure_is_named_and_not_stored(scripted_llm, tmp_path, store, fraud_run):
    scripted_llm.script({"status": 400, "error": "model exploded"})
    res = summarize_run(fraud_run, store, _gw(scripted_llm.url, tmp_path, store))
    assert not res.ok and not res.stored and res.failure.startswith("the LLM gave no narrative (http")
    assert res.narrative.source == "fallback" and "model exploded" in res.narrative.note
    assert store.get_run(fraud_run).summary is None


def test_fallback_for_both_run_kinds_passes_the_audit(store, factor_run, fraud_run):
    for rid, kind, first in ((factor_run, "factor_mine", "The 4-factor pool (gp, sp500_slice.parquet) has a test IC"),
                             (fraud_run, "fraud_train", "The bwgnn detector")):
        facts = narrative_facts(build_facts(rid, store))
        n = build_narrative(facts, kind, None, why_not="no LLM asked")
        assert n.source == "fallback" and n.text.startswith(first) and not n.dropped
        assert "baseline has a test" in n.text  # the longest sentence (a comparison) is there too
        assert any(s.facts == ["test_period", "test_use"] or s.facts == ["test_use"] for s in n.sentences)
        assert unbacked_numbers(n.to_dict()["sentences"], facts) == []
        assert all(s.facts for s in n.sentences)


@pytest.mark.llm
def test_local_model_narrative_states_no_unbacked_number(local_llm, tmp_path, store, fraud_run):
    """The real 135M model writes the narrative; whatever it writes, no shown sentence states a number that
    its cited facts do not carry, and the text is never the title, `][` or an error string."""
    res = summarize_run(fraud_run, store, _gw(local_llm, tmp_path, store, model="smollm2-135m-instruct"),
                        max_tokens=160)  # the complete sentences of a cut-off reply are checked like the rest
    doc = res.narrative.to_dict()
    assert doc["sentences"] and unbacked_numbers(doc["sentences"], res.facts) == []
    text = res.narrative.text
    assert "][" not in text and text.strip() != "amazon bwgnn" and "LLM failed" not in text
    assert res.stored == (res.failure is None)


def test_a_valid_chosen_combiner_makes_valid_a_selection_split_and_only_then():
    from finllm.grounding.check import check_sentence
    from finllm.reports.facts import REFIT_SPLIT_USE, split_roles, split_use

    claim = "The validation period ({valid_use}) was used to select the model."
    auto = split_use("factor_mine", {"combiner": "auto"})
    assert auto["valid"] == REFIT_SPLIT_USE["valid"] and "realised" in auto["test"]
    fitted = split_use("factor_mine", {})  # a run recorded before the combiner: train weights throughout
    assert "not used" in fitted["valid"] and fitted["test"] != REFIT_SPLIT_USE["test"]
    named = split_use("factor_mine", {"combiner": "refit500"})["valid"]  # named by the user, not chosen on valid
    assert named == REFIT_SPLIT_USE["valid_named"] and "not used for any choice" in named
    for use, ok in ((auto, True), (fitted, False)):
        facts = {"valid_use": use["valid"]}
        c = check_sentence(claim, ["valid_use"], facts, split_roles=split_roles("factor_mine", facts))
        assert c.ok is ok, c.reason
