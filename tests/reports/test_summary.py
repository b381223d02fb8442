"""Grounded run summaries: the narrative's numbers are checked against the run's facts before storing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finllm.config import Settings
from finllm.llm import Gateway
from finllm.reports.facts import build_facts
from finllm.reports.grounding import check_numbers
from finllm.reports.summary import summarize_run


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


def test_invented_number_is_removed_before_storing(scripted_llm, tmp_path, store, fraud_run):
    # Scripted server: a real model cannot be made to invent one exact wrong number on demand.
    narrative = ("The detector reached a test AUROC of 0.9123 and an AUPRC of 0.5512. "
                 "It caught 87% of all fraud. It beat the xgbgraph baseline by 0.0812 AUROC.")
    scripted_llm.script({"content": json.dumps({"summary": narrative})})
    res = summarize_run(fraud_run, store, _gw(scripted_llm.url, tmp_path, store))
    assert res.ok and res.grounding.unsupported == ["87%"]
    assert "87%" not in res.text.split("\n\n")[0]
    assert res.text.startswith("The detector reached a test AUROC of 0.9123 and an AUPRC of 0.5512. It beat")
    assert "[1 number(s) not found in the run's facts were removed: 87%]" in res.text
    assert store.get_run(fraud_run).summary == res.text
    # the prompt carried the facts inside an untrusted block
    user = scripted_llm.requests[0]["messages"][1]["content"]
    assert "<<<UNTRUSTED run facts" in user and "\"auroc\":0.912," in user  # rounded to 3 digits


def test_all_numbers_wrong_means_no_summary_stored(scripted_llm, tmp_path, store, fraud_run):
    scripted_llm.script({"content": json.dumps({"summary": "The AUROC was 1.234. It flagged 4,000 accounts."})})
    res = summarize_run(fraud_run, store, _gw(scripted_llm.url, tmp_path, store))
    assert not res.ok and "1.234" in res.failure
    assert store.get_run(fraud_run).summary is None


def test_llm_failure_is_reported_not_invented(scripted_llm, tmp_path, store, fraud_run):
    scripted_llm.script({"status": 400, "error": "model exploded"})
    res = summarize_run(fraud_run, store, _gw(scripted_llm.url, tmp_path, store))
    assert not res.ok and res.failure.startswith("LLM failed (http)")
    assert store.get_run(fraud_run).summary is None


@pytest.mark.llm
def test_local_model_summary_is_grounded(local_llm, tmp_path, store, fraud_run):
    """The real 135M model writes the narrative; whatever it writes, the stored text has only supported numbers."""
    res = summarize_run(fraud_run, store, _gw(local_llm, tmp_path, store, model="smollm2-135m-instruct"))
    facts = build_facts(fraud_run, store)
    if res.ok:
        body = res.text.split("\n\n[")[0]
        assert check_numbers(body, facts).ok
        assert store.get_run(fraud_run).summary == res.text
    else:  # honest failure: named, nothing stored
        assert res.failure and store.get_run(fraud_run).summary is None
