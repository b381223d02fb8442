"""Structured output: ask for JSON that fits a Pydantic schema, then validate what came back.

Response-format modes, tried in this order by ``mode="auto"`` (a server that rejects one with an
error that names ``response_format`` is downgraded to the next, and remembered):

* ``json_schema`` - OpenAI-style ``{"type": "json_schema", "json_schema": {...}}`` (OpenAI, vLLM,
  Ollama, llama.cpp's C++ server);
* ``json_object_schema`` - ``{"type": "json_object", "schema": {...}}``, the llama-cpp-python
  extension that compiles the schema into a grammar (the embedded server uses this directly: the
  grammar makes even a 135M model emit schema-shaped JSON);
* ``json_object`` - plain JSON mode;
* ``none`` - no ``response_format``; the schema is only described in the prompt.

Model output is data: it is parsed with ``json.loads`` and validated by Pydantic, never evaluated.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

MODES = ("json_schema", "json_object_schema", "json_object", "none")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def schema_of(model: type[BaseModel]) -> dict:
    return model.model_json_schema()


def response_format(mode: str, model: type[BaseModel]) -> dict | None:
    schema = schema_of(model)
    if mode == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": model.__name__[:64], "schema": schema, "strict": False}}
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def _untitled(node: Any, in_properties: bool = False) -> Any:
    """The schema without pydantic's auto ``title`` keys (prompt tokens are slow on small CPUs)."""
    if isinstance(node, dict):
        return {k: _untitled(v, k in ("properties", "$defs")) for k, v in node.items()
                if in_properties or not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_untitled(v) for v in node]
    return node


def schema_hint(model: type[BaseModel]) -> str:
    """A line for the system prompt: the JSON schema the answer must satisfy (titles dropped)."""
    return ("Reply with a single JSON object and nothing else. It must satisfy this JSON schema: "
            + json.dumps(_untitled(schema_of(model)), separators=(",", ":")))


def extract_json(text: str) -> str:
    """Strip code fences / chatter around the first JSON object (no eval, just slicing)."""
    s = text.strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1).strip()
    if s.startswith("{"):
        return s
    start, end = s.find("{"), s.rfind("}")
    return s[start:end + 1] if 0 <= start < end else s


def validate(text: str | None, model: type[BaseModel]) -> tuple[BaseModel | None, str | None]:
    """(instance, None) when ``text`` is JSON that fits ``model``; else (None, a short error)."""
    if not text or not text.strip():
        return None, "the reply was empty"
    candidate = extract_json(text)
    try:
        data = json.loads(candidate)
    except json.JSONDecodeError as exc:
        return None, f"the reply is not valid JSON ({exc.msg} at position {exc.pos})"
    if not isinstance(data, dict):
        return None, f"the reply must be a JSON object, got {type(data).__name__}"
    try:
        return model.model_validate(data), None
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
                         for e in exc.errors()[:8])
        return None, f"the JSON does not fit the schema: {errs}"


def repair_messages(reply: str | None, error: str, model: type[BaseModel]) -> list[dict[str, Any]]:
    """Messages appended for a repair round: the bad reply, then what was wrong with it."""
    shown = (reply or "")[:2000]
    return [
        {"role": "assistant", "content": shown},
        {"role": "user", "content": (f"That reply was rejected: {error}. "
                                     f"{schema_hint(model)} Reply with the corrected JSON object only.")},
    ]
