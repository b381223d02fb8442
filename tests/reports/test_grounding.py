"""Number-checking of LLM narratives against a run's facts (finllm.grounding.check)."""

from __future__ import annotations

import pytest

from finllm.reports.facts import clean, comparisons, round_sig
from finllm.grounding.check import check_numbers, find_numbers

FACTS = {
    "run": {"id": "abc123", "kind": "factor_mine", "started_at": "2024-03-01T10:00:00"},
    "config": {"splits": {"train": "2010-01-04:2015-12-31", "test": "2017-01-03:2019-12-31"}, "horizon": 20},
    "pool_size": 7,
    "pool": [{"rank": 1, "formula": "Mean($close, 20)", "weight": -0.4312}],
    "pool_metrics": {"test": {"ic": 0.04213, "rank_ic": -0.0301}},
    "comparisons": [{"baseline": "gp", "split": "test", "metric": "ic", "ours": 0.04213,
                     "baseline_value": 0.031, "difference": 0.01113}],
}


def test_supported_numbers_survive_at_any_shown_precision():
    text = ("The pool of 7 factors reached a test IC of 0.042 (4.2%), 0.011 above the gp baseline. "
            "Its RankIC was -0.03 over a 20-day horizon, tested from 2017-01-03.")
    rep = check_numbers(text, FACTS)
    assert rep.ok, rep.unsupported
    assert rep.text == text
    assert set(rep.supported) >= {"7", "0.042", "4.2%", "0.011", "-0.03", "20", "2017-01-03"}


def test_unsupported_number_sentence_is_removed():
    text = "The pool reached a test IC of 0.042. It beat the baseline by 35%. The weight of factor 1 is -0.4312."
    rep = check_numbers(text, FACTS)
    assert rep.unsupported == ["35%"]
    assert rep.removed_sentences == ["It beat the baseline by 35%."]
    assert rep.text == "The pool reached a test IC of 0.042. The weight of factor 1 is -0.4312."
    assert check_numbers(rep.text, FACTS).ok  # the cleaned text re-checks clean


def test_flag_policy_marks_each_unsupported_number():
    rep = check_numbers("Test IC was 0.042 and valid IC was 0.066.", FACTS, policy="flag")
    assert rep.unsupported == ["0.066"]
    assert rep.text == "Test IC was 0.042 and valid IC was [unverified: 0.066]."


@pytest.mark.parametrize("claim", ["0.05", "0.0422", "4.3%", "8 factors", "2018-01-02"])
def test_wrong_precision_or_value_is_not_supported(claim):
    # 0.05 is not 0.04213 at 2 decimals (0.04); 0.0422 overstates the 4th decimal; a date not in the facts.
    rep = check_numbers(f"The value was {claim}.", FACTS)
    assert not rep.ok and rep.text == ""


def test_identifiers_and_formula_numbers_are_not_claims():
    nums = [c.text for c in find_numbers("Recall@100 and f1 of `$close` with x2 rose 3.5% and 1,234 times")]
    assert nums == ["3.5%", "1,234"]


def test_numbers_in_fact_strings_count_as_supported():
    rep = check_numbers("The first factor, Mean($close, 20), uses a 20 day window starting 2010-01-04.", FACTS)
    assert rep.ok, rep.unsupported


def test_clean_rounds_to_four_significant_digits_and_drops_nan():
    assert round_sig(0.0421349) == 0.04213 and round_sig(123456.0) == 123500.0
    assert clean({"a": float("nan"), "b": [0.123456], "c": 3}) == {"a": None, "b": [0.1235], "c": 3}


def test_comparisons_give_the_llm_supported_differences():
    rows = comparisons({"test": {"ic": 0.05}}, {"gp": {"test": {"ic": 0.03, "rank_ic": 0.02}}})
    assert rows == [{"baseline": "gp", "split": "test", "metric": "ic", "ours": 0.05,
                     "baseline_value": 0.03, "difference": pytest.approx(0.02)}]


def test_digits_inside_identifiers_and_dates_ground_nothing():
    """A run id (a UUID with a "99" in it) or a date must not make an invented "99%" look supported."""
    facts = {"id": "9c99ab12-0f3e-4d99-8a1b-77c3d2e1f0aa", "run_id": "99", "name": "amazon hsign 99x",
             "started_at": "2026-11-28T19:59:27", "test": {"auroc": 0.9123}}
    rep = check_numbers("Test AUROC was 0.9123. About 99% of alerts are real fraud. There were 28 of them.", facts)
    assert rep.text == "Test AUROC was 0.9123."
    assert {"99%", "28"} <= set(rep.unsupported)


# ---- cited sentences (check_sentence): the narrative's rule --------------------------------------------
FLAT = {"test_auroc": 0.9123, "test_auprc": 0.5512, "horizon": 20, "test_period": "2017-01-03 to 2021-04-30",
        "test_use": "held out: not used for training or for any choice; only reported",
        "train_use": "the detector's weights were fitted on the training labels", "test_fraud_rate": 0.0875,
        "seeds": 3, "alerts_count": 1234}


@pytest.mark.parametrize("template,cited,rendered", [
    ("The test AUROC was {test_auroc}.", [], "The test AUROC was 0.9123."),  # a placeholder is a citation
    ("Over a 20-day horizon the AUROC was {test_auroc}", ["horizon"], "Over a 20-day horizon the AUROC was 0.9123."),
    ("About {test_fraud_rate} of test nodes are fraud and {alerts_count} alerts were kept.", [],
     "About 8.75% of test nodes are fraud and 1,234 alerts were kept."),
    ("Three seeds were averaged for an AUROC of {test_auroc}.", ["seeds"],
     "Three seeds were averaged for an AUROC of 0.9123."),
    ("Use of the test period ({test_period}): {test_use}.", [],
     "Use of the test period (2017-01-03 to 2021-04-30): held out: not used for training or for any choice; "
     "only reported."),
])
def test_backed_sentences_are_rendered_by_code(template, cited, rendered):
    from finllm.grounding.check import check_sentence

    c = check_sentence(template, cited, FLAT)
    assert c.ok, c.reason
    assert c.text == rendered


@pytest.mark.parametrize("template,cited,why", [
    ("The AUROC of {test_auroc} rounds to 0.95.", [], "0.95"),  # an invented number
    ("The AUPRC was {test_auprc}, up from 0.9123.", [], "0.9123"),  # a true number, but not of the cited fact
    ("The AUROC of {test_auroc} holds since 2018-01-02.", [], "2018-01-02"),
    ("Twelve analysts reviewed the {test_auroc} result.", [], "Twelve"),
    ("The AUROC of {test_auroc} was reached in March.", [], "March"),
    ("The test period was used for training the detector: {train_use}.", ["test_use"], "test split was used to fit"),
    ("The detector was tuned on the test split to get {test_auroc}.", ["test_use"], "used to select"),
    ("The AUROC of {test_auroc} on the test split shows no look-ahead bias.", ["test_use"], "look-ahead"),
    ("The AUROC of {test_auroc} on the test split was held out and never used.", [], "without citing test_use"),
    # true, but "fitting" next to "test" reads as a claim about fitting on test: conservative, dropped
    ("The test period, {test_period}, was held out from fitting.", ["test_use"], "test split was used to fit"),
    ("The AUROC was {test_auroc_typo}.", [], "unknown fact"),
    ("The AUROC was excellent overall.", [], "cites no fact"),
    # what SmolLM2-135M wrote for a demo run: cites a fact, states none
    ("Detection of frauds can be improved by more advanced models.", ["seeds"], "states no fact"),
    ("][", ["test_auroc"], "not a sentence"),
    ("The AUROC was {test auroc}.", ["test_auroc"], "malformed placeholder"),
])
def test_unbacked_claims_drop_the_sentence(template, cited, why):
    from finllm.grounding.check import check_sentence

    c = check_sentence(template, cited, FLAT)
    assert not c.ok and c.text is None and why in c.reason, c.reason


def test_audit_counts_sentences_whose_numbers_are_not_in_their_cited_facts():
    from finllm.grounding.check import unbacked_numbers

    good = {"text": "The test AUROC was 0.9123 with 8.75% fraud.", "facts": ["test_auroc", "test_fraud_rate"]}
    tampered = {"text": "The test AUROC was 0.9523.", "facts": ["test_auroc"]}
    borrowed = {"text": "The AUPRC was 0.9123.", "facts": ["test_auprc"]}
    assert unbacked_numbers([good], FLAT) == []
    assert unbacked_numbers([good, tampered, borrowed], FLAT) == [
        {"text": "The test AUROC was 0.9523.", "numbers": ["0.9523"]},
        {"text": "The AUPRC was 0.9123.", "numbers": ["0.9123"]}]


@pytest.mark.parametrize("template,cited,ok", [
    ("The detector beats the {xgbgraph_name} baseline by {vs_xgbgraph_test_auroc} AUROC.", [], True),
    ("The detector is below the {xgbgraph_name} baseline on AUROC.", ["vs_xgbgraph_test_auroc"], False),
    ("The test AUROC of {test_auroc} is worse than the baseline.", [], False),  # what SmolLM2-135M wrote
    ("The xgbgraph model trails the detector's {test_auroc} on every split.", [], False),  # a name, no vs_* cited
    ("The detector's AUROC was higher on the test split: {test_auroc}.", [], True),  # no baseline: no comparison
])
def test_baseline_comparisons_must_agree_with_the_cited_difference(template, cited, ok):
    from finllm.grounding.check import check_sentence

    facts = {**FLAT, "xgbgraph_name": "xgbgraph", "vs_xgbgraph_test_auroc": 0.0812}
    c = check_sentence(template, cited, facts)
    assert c.ok == ok, c.reason
