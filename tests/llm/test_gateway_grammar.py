"""Gateway: GBNF grammars, endpoint-aware cache keys, secrets scrubbed from successful answers.

These run against the SCRIPTED OpenAI-compatible server (tests/fixtures_llm.py) because each needs a
fault a real model cannot produce on demand: an endpoint that rejects the ``grammar`` field, one that
echoes the API key in a valid answer, a dead endpoint with the same model name. The real embedded
server decoding under a grammar is tested in tests/llm/test_formula_grammar.py.
"""

from __future__ import annotations

import json
import socket

from pydantic import BaseModel
from sqlalchemy import select

from finllm.llm import client as client_mod
from finllm.store import LLMCache, LLMCall
from tests.llm.test_faults import GOOD, ask, make_gw, store  # noqa: F401 - store is a fixture

GRAMMAR = 'root ::= "{\\"sentiment\\": \\"positive\\", \\"confidence\\": 0.5}"'


class Note(BaseModel):
    text: str


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


def test_grammar_goes_in_the_body_instead_of_response_format(scripted_llm, tmp_path):
    scripted_llm.script({"content": GOOD})
    res = ask(make_gw(scripted_llm.url, tmp_path), grammar=GRAMMAR)
    assert res and res.value.sentiment == "positive"
    body = scripted_llm.requests[0]
    assert body["grammar"] == GRAMMAR and "response_format" not in body


def test_endpoint_rejecting_the_grammar_is_remembered_and_validated_instead(scripted_llm, tmp_path):
    # what a strict OpenAI-style endpoint answers to an unknown request field
    scripted_llm.script({"status": 400, "error": "Unrecognized request argument supplied: grammar"},
                        {"content": '{"sentiment": "great"}'}, {"content": GOOD})
    gw = make_gw(scripted_llm.url, tmp_path)
    res = ask(gw, grammar=GRAMMAR)
    assert res and res.attempts == 3  # rejected, then schema + one repair round
    assert gw.grammar_supported is False
    second = scripted_llm.requests[1]
    assert "grammar" not in second and second["response_format"]["type"] == "json_schema"
    assert "does not fit the schema" in scripted_llm.requests[2]["messages"][-1]["content"]
    scripted_llm.script({"content": GOOD})
    gw2 = make_gw(scripted_llm.url, tmp_path)  # a new gateway of this process starts without the field
    assert ask(gw2, headline="other", grammar=GRAMMAR) and "grammar" not in scripted_llm.requests[3]
    client_mod._no_grammar.discard(scripted_llm.url)


def test_api_key_echoed_in_a_successful_answer_is_never_returned_cached_or_recorded(scripted_llm, tmp_path, store):
    key = "abc123-SECRET-not-key-shaped"  # scrubbed because it is the configured key
    other = "sk-live-OTHERSECRET987654"  # scrubbed because it looks like a key
    scripted_llm.script({"content": json.dumps({"text": f"you sent {key} and {other}; Bearer SECRETTOKEN"})})
    gw = make_gw(scripted_llm.url, tmp_path, store, api_key=key)
    res = gw.structured("check", {"headline": "echo"}, Note)
    assert res and "[redacted]" in res.value.text
    for text in (res.value.text, res.raw):
        assert "SECRET" not in text
    with store.session() as s:
        cached = [r.response for r in s.scalars(select(LLMCache))]
        rows = json.dumps([(r.error, r.cache_key, r.status) for r in s.scalars(select(LLMCall))])
    assert cached and all("SECRET" not in r for r in cached) and "SECRET" not in rows
    again = make_gw(scripted_llm.url, tmp_path, store, api_key=key).structured("check", {"headline": "echo"}, Note)
    assert again.cached and "SECRET" not in again.value.text


def test_cache_is_per_endpoint_and_per_grammar(scripted_llm, tmp_path, store):
    scripted_llm.script({"content": GOOD})
    assert ask(make_gw(scripted_llm.url, tmp_path, store))
    hit = ask(make_gw(scripted_llm.url, tmp_path, store))
    assert hit.cached  # same endpoint, same request: served from the cache
    dead = ask(make_gw(_dead_url(), tmp_path, store, max_retries=0))  # same model name "scripted"
    assert not dead and dead.kind == "connection"
    other = ask(make_gw(scripted_llm.url, tmp_path, store), grammar=GRAMMAR)
    assert other and not other.cached and len(scripted_llm.requests) == 2


def test_failure_message_talks_to_the_user(scripted_llm, tmp_path):
    scripted_llm.script({"content": '{"sentiment": "pos', "finish_reason": "length"})
    res = ask(make_gw(scripted_llm.url, tmp_path), max_repairs=1)
    assert not res and res.kind == "invalid"
    assert "answer more briefly" not in res.message and "cut off at max_tokens" in res.message
    assert "answer more briefly" in scripted_llm.requests[1]["messages"][-1]["content"]  # that one is for the model


def test_llm_check_fails_fast_with_one_line_naming_the_settings(scripted_llm, monkeypatch):
    from typer.testing import CliRunner

    from finllm.cli.main import app

    monkeypatch.setenv("FINLLM_LLM_BASE_URL", _dead_url())
    monkeypatch.setenv("FINLLM_LLM_MODEL", "scripted")
    res = CliRunner().invoke(app, ["llm", "check", "--json"])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and res.stdout == ""
    assert "nothing answers at the LLM endpoint" in lines[0] and "FINLLM_LLM_BASE_URL" in lines[0]
    monkeypatch.setenv("FINLLM_LLM_BASE_URL", scripted_llm.url)
    monkeypatch.setenv("FINLLM_LLM_MODEL", "gpt-nonexistent")
    res = CliRunner().invoke(app, ["llm", "check"])
    assert res.exit_code == 2 and "does not serve model 'gpt-nonexistent'" in res.stderr
    assert "FINLLM_LLM_MODEL" in res.stderr and scripted_llm.requests == []  # no completion was sent
    monkeypatch.setenv("FINLLM_LLM_MODEL", "scripted")
    scripted_llm.script({"content": GOOD})
    res = CliRunner().invoke(app, ["llm", "check", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["value"]["sentiment"] == "positive"
