"""The LLM's judgment of one node: a validated pydantic schema.

The gateway validates raw model output against :class:`FraudVerdict` (and asks for a repair when it
fails); :func:`clean_neighbors` then drops neighbour ids the prompt never showed, because a model
that invents ids must not be able to down-weight arbitrary edges.
"""

from __future__ import annotations

import re

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

RATIONALE_MAX = 200
MAX_NEIGHBORS = 10
# Probabilities are validated as floats in [0, 1]. Their *JSON schema* is a string pattern "0.00".."1.00"
# because schema-to-grammar converters (llama.cpp) cannot bound numbers: a small model then emits 1.57
# and burns repair calls. Pydantic's lax mode turns "0.83" (or a plain 0.83 from other endpoints) into
# a float, so both forms validate.
_UNIT_PATTERN = r"^(0[.][0-9][0-9]|1[.]00)$"  # "[.]" not "\.": llama.cpp grammars reject "\."
Unit = Annotated[float, Field(ge=0.0, le=1.0),
                 WithJsonSchema({"type": "string", "pattern": _UNIT_PATTERN, "description": "0.00 to 1.00"})]


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


# A label and a probability that point in opposite directions by more than this are rejected.
CONTRADICTION_MARGIN = 0.25


def readable(rationale: str, min_words: int = 3) -> bool:
    """Whether a (schema-valid) rationale reads as an explanation: at least ``min_words`` words of two or
    more letters, in any script. A tiny model under a JSON grammar can fill the field with ``"]["``;
    such a verdict still counts as a verdict, but its text is not shown as an explanation."""
    return len(re.findall(r"[^\W\d_]{2,}", rationale)) >= min_words


class FraudVerdict(BaseModel):
    """An LLM judgment of one account. suspicious_neighbors: numeric ids of shown neighbours
    whose link to the account looks like camouflage."""

    model_config = ConfigDict(extra="ignore")

    # Field order is generation order under a schema grammar: reason first, then decide.
    rationale: str = Field(min_length=1, max_length=RATIONALE_MAX)
    label: Literal["fraud", "normal"]
    fraud_probability: Unit
    confidence: Unit
    suspicious_neighbors: list[int] = Field(default_factory=list, max_length=MAX_NEIGHBORS)

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The schema without pydantic's "title" keys: it is sent with every request, so it is kept short."""
        return _strip_titles(super().model_json_schema(*args, **kwargs))

    @field_validator("label", mode="before")
    @classmethod
    def _norm_label(cls, v: object) -> object:
        if isinstance(v, str):
            s = v.strip().lower()
            return {"fraudulent": "fraud", "benign": "normal", "legit": "normal", "legitimate": "normal",
                    "not fraud": "normal"}.get(s, s)
        return v

    @field_validator("rationale", mode="before")
    @classmethod
    def _short_rationale(cls, v: object) -> object:
        if isinstance(v, str):
            v = " ".join(v.split())
            if len(v) > RATIONALE_MAX:
                v = v[: RATIONALE_MAX - 1].rstrip() + "…"
        return v

    @field_validator("suspicious_neighbors", mode="before")
    @classmethod
    def _ids(cls, v: object) -> object:
        if v is None:
            return []
        if isinstance(v, list):
            out: list[object] = []
            for item in v:
                # "n123" / "123" / 123 are all accepted; anything else fails validation.
                if isinstance(item, str) and item.strip().lower().startswith("n"):
                    item = item.strip()[1:]
                out.append(item)
            return out[: MAX_NEIGHBORS]
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FraudVerdict:
        p = self.fraud_probability
        if self.label == "fraud" and p < 0.5 - CONTRADICTION_MARGIN:
            raise ValueError(f"label 'fraud' contradicts fraud_probability {p}")
        if self.label == "normal" and p > 0.5 + CONTRADICTION_MARGIN:
            raise ValueError(f"label 'normal' contradicts fraud_probability {p}")
        return self


class FraudScore(BaseModel):
    """The supervisor's compact verdict: one probability, nothing else to generate.

    A 135M model on 2 CPU cores spends most of a call on tokens, so the supervisor asks only for
    ``fraud_probability`` (about 10 output tokens under the schema grammar, against about 80 for a
    :class:`FraudVerdict` with its rationale). ``label`` and ``confidence`` are derived from it; the
    simulated source's longer replies validate too (extra keys are ignored)."""

    model_config = ConfigDict(extra="ignore")

    fraud_probability: Unit

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return _strip_titles(super().model_json_schema(*args, **kwargs))

    @property
    def label(self) -> str:
        return "fraud" if self.fraud_probability >= 0.5 else "normal"

    @property
    def confidence(self) -> float:
        return abs(2.0 * self.fraud_probability - 1.0)

    @property
    def rationale(self) -> str:
        return ""

    @property
    def suspicious_neighbors(self) -> list[int]:
        return []


def clean_neighbors(named: FraudVerdict | Iterable[int], shown: Iterable[int]) -> tuple[list[int], int]:
    """Keep only suspicious neighbour ids that the prompt showed (a verdict or a list of ids);
    returns (kept ids without duplicates, dropped count)."""
    ids = list(named.suspicious_neighbors if isinstance(named, FraudVerdict) else named)
    allowed = set(int(i) for i in shown)
    kept = list(dict.fromkeys(i for i in ids if i in allowed))
    return kept, len(ids) - len(kept)
