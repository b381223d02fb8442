"""Verdict schema: what the gateway accepts from a model, and what it must reject."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fraud.supervisor.verdict import RATIONALE_MAX, FraudVerdict, clean_neighbors

GOOD = {"rationale": "Very high review counts, links to normal accounts.", "label": "fraud",
        "fraud_probability": 0.8, "confidence": 0.7, "suspicious_neighbors": [12, 40]}


def test_valid_verdict_round_trips():
    v = FraudVerdict.model_validate(GOOD)
    assert v.label == "fraud" and v.fraud_probability == 0.8 and v.suspicious_neighbors == [12, 40]


@pytest.mark.parametrize("patch", [
    {"fraud_probability": 1.5}, {"fraud_probability": -0.1}, {"confidence": 2}, {"label": "maybe"},
    {"rationale": ""}, {"suspicious_neighbors": ["abc"]}, {"fraud_probability": "high"},
    {"label": "fraud", "fraud_probability": 0.05},  # contradicts itself
    {"label": "normal", "fraud_probability": 0.95},
])
def test_invalid_verdicts_rejected(patch):
    with pytest.raises(ValidationError):
        FraudVerdict.model_validate({**GOOD, **patch})


def test_missing_field_rejected():
    bad = dict(GOOD)
    del bad["label"]
    with pytest.raises(ValidationError):
        FraudVerdict.model_validate(bad)


def test_lenient_normalisation():
    v = FraudVerdict.model_validate({**GOOD, "label": " Fraudulent ", "suspicious_neighbors": ["n7", "8", 9],
                                     "rationale": "x " * 400, "extra_key": 1})
    assert v.label == "fraud" and v.suspicious_neighbors == [7, 8, 9]
    assert len(v.rationale) <= RATIONALE_MAX
    assert FraudVerdict.model_validate({**GOOD, "suspicious_neighbors": None}).suspicious_neighbors == []


def test_neighbour_ids_must_have_been_shown():
    v = FraudVerdict.model_validate({**GOOD, "suspicious_neighbors": [12, 40, 12, 999]})
    kept, dropped = clean_neighbors(v, shown=[12, 40, 41])
    assert kept == [12, 40] and dropped == 2


def test_readable_rationale():
    from fraud.supervisor.verdict import readable

    assert readable(GOOD["rationale"]) and readable("Cuenta con reseñas muy altas")
    assert not readable("][") and not readable("0.9 0.8 fraud") and not readable("a b c d")


def test_compact_score_schema_derives_label_and_takes_longer_replies():
    from fraud.supervisor.verdict import FraudScore

    v = FraudScore.model_validate_json('{"fraud_probability": "0.83"}')
    assert v.fraud_probability == 0.83 and v.label == "fraud" and v.confidence == pytest.approx(0.66)
    assert v.suspicious_neighbors == [] and v.rationale == ""
    longer = FraudScore.model_validate({"rationale": "x", "label": "normal", "fraud_probability": "0.10"})
    assert longer.label == "normal"
    assert list(FraudScore.model_json_schema()["properties"]) == ["fraud_probability"]
    with pytest.raises(ValueError):
        FraudScore.model_validate({"fraud_probability": "1.57"})
