"""Cited sentences: the JSON schema an LLM answers in, and the salvage of a reply cut off mid-way.

``{"sentences": [{"facts": [key, ...], "text": "... {key} ..."}]}``: each sentence names the fact keys it
uses; :mod:`finllm.grounding.check` then decides, sentence by sentence, whether it is kept."""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import BaseModel, WithJsonSchema, create_model

MAX_SENTENCES = 8
MAX_CITED = 4
MAX_TEXT = 180
_SENTENCE_START = re.compile(r'\{\s*"(?:facts|text)"\s*:')


def narrative_schema(keys: list[str]) -> type[BaseModel]:
    """``{"sentences": [{"facts": [key, ...], "text": str}]}`` with the keys as an enum in the JSON schema.
    Validation itself accepts any string: a sentence with an unknown key is dropped alone, not the whole
    answer, when an endpoint does not enforce the schema."""
    # maxItems / maxLength keep a small model from spending its tokens repeating keys or rambling (the
    # embedded server compiles them into its grammar, as for fraud.supervisor.verdict's rationale)
    cited = Annotated[list[str], WithJsonSchema({"type": "array", "items": {"type": "string", "enum": keys},
                                                 "maxItems": MAX_CITED, "description": "fact keys this sentence uses"})]
    text = Annotated[str, WithJsonSchema({"type": "string", "maxLength": MAX_TEXT,
                                          "description": "one sentence; {key} where a fact's value goes"})]
    sentence = create_model("CitedSentence", facts=(cited, ...), text=(text, ...))
    return create_model("RunNarrative", sentences=(list[sentence], ...))  # type: ignore[valid-type]


def salvage(reply: str | None) -> list[tuple[str, list[str]]]:
    """The complete ``{"facts": [...], "text": "..."}`` objects of a reply cut off at ``max_tokens`` (a
    small model rarely stops by itself); each is still checked like any other sentence."""
    out: list[tuple[str, list[str]]] = []
    decoder = json.JSONDecoder()
    for m in _SENTENCE_START.finditer(reply or ""):
        try:
            obj, _ = decoder.raw_decode(reply, m.start())
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("text"), str) and isinstance(obj.get("facts"), list):
            out.append((obj["text"], [str(k) for k in obj["facts"]]))
    return out[:MAX_SENTENCES]
