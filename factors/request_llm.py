"""The LLM side of a factor request: prompts, the formula grammar, and what counts as an unusable endpoint.

Every call goes through the gateway with the GBNF grammar of :mod:`factors.grammar` (``{"formulas":
[...]}`` with exactly ``n`` formulas over the panel's fields): on llama.cpp servers (the embedded model
included) every formula parses by construction; other endpoints get the JSON schema, and what they write
is parsed and repaired with the parser's error (:mod:`factors.requests`). Model output is data: parsed by
:mod:`factors.expr`, never evaluated as code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel

from factors.grammar import DEFAULT_DEPTH, DEFAULT_WINDOWS, formulas_gbnf
from factors.request_intent import CONCEPTS, Intent
from finllm.errors import ConfigError

ARG_TEXT = {"expr": "x", "window": "d", "const": "c", "expr_or_const": "x"}
# failures that mean "this endpoint/model cannot be used", as opposed to one bad answer
CONFIG_KINDS = ("connection", "server", "timeout")


class Proposal(BaseModel):
    """What the model answers: formulas in the language (count trimmed in code; no maxItems, which
    llama.cpp's schema grammar compiles badly)."""

    formulas: list[str]


class FailureLike(Protocol):
    kind: str
    message: str
    status: int | None


def render_grammar(features: Sequence[str] | None = None) -> str:
    """A compact description of the expression language for prompts, generated from the operator registry."""
    from factors.expr import FEATURES
    from factors.ops import MAX_WINDOW, OPS

    feats = list(features or FEATURES)
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, spec in OPS.items():
        groups.setdefault(spec.arg_kinds, []).append(name)
    lines = [f"Fields (daily, per stock): {', '.join(feats)}.",
             f"x, y = any expression; d = a whole number of days 1..{MAX_WINDOW}; c = a number."]
    for kinds, names in groups.items():
        args = ", ".join(ARG_TEXT[k] for k in kinds)
        if kinds and kinds[0] == "expr_or_const" or kinds[:2] == ("expr", "expr"):
            args = "x, y" + args[4:]
        shown = ", ".join(f"{n}({args})" for n in names)
        if kinds == ("expr", "window"):
            shown += " (rolling over the last d days; Ref = value d days ago)"
        elif kinds == ("expr",) and any(OPS[n].category == "cs" for n in names):
            shown += " (CS = across stocks on the same day)"
        lines.append(f"- {shown}")
    lines.append("Numbers may be used where x or y is allowed in Add/Sub/Mul/Div/Greater/Less. "
                 "Windows must be positive: no looking into the future.")
    return "\n".join(lines)


def short_language(features: Sequence[str]) -> str:
    """The language in two lines, for endpoints that decode under the grammar (it enforces the rest)."""
    return (f"Fields: {', '.join(features)}. Formulas are calls of Qlib operators such as Mean(x, d), Std(x, d), "
            "Delta(x, d), Ref(x, d), Corr(x, y, d), Div(x, y), Mul(x, -1), CSRank(x); d is a window in days.")


def names_text(intent: Intent) -> str:
    """What the request names, as an instruction for the prompt (read by code, not by the model)."""
    by_name = {c.name: c for c in CONCEPTS}
    parts = list(intent.fields)
    parts += [f"a window of {w} days" for w in intent.windows]
    for name in intent.concepts:
        ops = sorted(by_name[name].ops)
        parts.append(f"{name} ({' or '.join(ops)})" if ops else name)
    return ", ".join(parts) if parts else "any fields and windows that fit the idea"


def grammar_for(n: int, features: Sequence[str], intent: Intent, max_depth: int = DEFAULT_DEPTH) -> str:
    """The request's grammar: the panel's fields; the default windows plus any window the request names."""
    windows = sorted(set(DEFAULT_WINDOWS) | set(intent.windows))
    return formulas_gbnf(n, features, windows=windows, max_depth=max_depth)


def clean_formula(text: str) -> str:
    s = (text or "").strip().strip("`").strip()
    return s[:-1].strip() if s.endswith(";") else s


def unusable_endpoint(fail: FailureLike) -> str | None:
    """A one-line message for the user when ``fail`` means the endpoint or model cannot be used
    (down, not starting, timing out, auth or unknown model); None for a single bad answer."""
    http_config = fail.kind == "http" and fail.status in (401, 403, 404)
    if fail.kind not in CONFIG_KINDS and not http_config:
        return None
    detail = re.sub(r"\s+", " ", fail.message)[:240]
    return (f"the LLM endpoint cannot be used ({fail.kind}: {detail}). Check FINLLM_LLM_BASE_URL (unset it to "
            f"use the embedded model) and FINLLM_LLM_MODEL, or pass --no-llm to use the built-in formulas only")


class LLMUnavailable(ConfigError):
    """The configured endpoint/model cannot be used (exit code 2: a configuration problem)."""
