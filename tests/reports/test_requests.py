"""Natural-language factor requests (factors.requests.ask and `finllm factors ask`).

The repair/refine protocol, a useless model and endpoint faults are tested against the SCRIPTED
OpenAI-compatible server because they need exact answers on demand (a formula with a known grammar
error, then a known fix; formulas that ignore the request; a dead endpoint). The real embedded model,
decoding under the formula grammar, is exercised in test_local_model_ask_writes_valid_formulas.
"""

from __future__ import annotations

import json
import math
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factors.expr import FEATURES, parse
from factors.request_intent import check_relevance, read_intent
from factors.requests import ask, render_grammar, retrieve_examples
from finllm.config import Settings
from finllm.llm import Gateway
from tests.reports.conftest import SPLITS


def _gw(url: str, tmp_path: Path, store, model: str = "scripted") -> Gateway:
    return Gateway(Settings(home=tmp_path, llm_base_url=url, llm_model=model, llm_timeout_s=180), store=store,
                   sleep=lambda s: None)


def _answer(*formulas: str) -> dict:
    return {"content": json.dumps({"formulas": list(formulas)})}


def _user(req: dict) -> str:
    return req["messages"][1]["content"]


def test_grammar_is_rendered_from_the_operator_registry():
    from factors.ops import OPS

    g = render_grammar()
    assert all(f"{name}(" in g for name in OPS)
    assert "Corr(x, y, d)" in g and "$volume" in g and "1..252" in g


@pytest.mark.parametrize("text,fields,windows,concepts", [
    ("stocks that fall on heavy volume tend to rebound", {"$volume"}, set(), {"reversal", "volume"}),
    ("low volatility stocks outperform over 20 days", set(), {20}, {"volatility"}),
    ("high volume breakouts to new 60-day highs", {"$high", "$volume"}, {60}, {"volume", "extremes"}),
    ("weekly reversal of the daily high", {"$high"}, {5}, {"reversal"}),
    ("price and volume moving together over a quarter", {"$close", "$volume"}, {60}, {"correlation", "volume"}),
])
def test_intent_reads_fields_windows_and_concepts(text, fields, windows, concepts):
    i = read_intent(text)
    assert (set(i.fields), set(i.windows), set(i.concepts)) == (fields, windows, concepts)


def test_relevance_rule():
    i = read_intent("low volatility over 20 days")
    assert check_relevance(parse("Mul(Std(Div(Delta($close, 1), Ref($close, 1)), 20), -1)"), i) == []
    assert check_relevance(parse("Std($close, 10)"), i) == ["window 20d"]
    assert check_relevance(parse("Mean($close, 20)"), i)[0].startswith("volatility")
    i = read_intent("losers on heavy volume rebound")
    assert check_relevance(parse("Div($volume, Mean($volume, 5))"), i) == ["reversal (a price field)"]


def test_repair_and_refine_rounds(scripted_llm, tmp_path, store, market_panel):
    scripted_llm.script(
        _answer("Mean($close)", "Div($volume, Mean($volume, 20))", "Div($volume, Mean($volume, 20))"),  # propose
        _answer("Mul(Delta($close, 5), -1)"),                                # repair round 1: fixes Mean($close)
        _answer("Ref($close, -5)", "Mul(Delta($close, 5), Div($volume, Mean($volume, 20)))"),  # refine 1
        _answer("Foo($close)"),                                              # repair of the look-ahead: still bad
        _answer("Sub($close)"),                                              # repair round 2: still bad
    )
    res = ask("stocks that fall on heavy volume tend to rebound", market_panel,
              gateway=_gw(scripted_llm.url, tmp_path, store), splits=SPLITS, n_candidates=3, repair_rounds=2,
              refine_rounds=1, store=store, n_save=2, fallback=False)
    reqs = scripted_llm.requests
    assert len(reqs) == res.llm_calls == 5
    # every request carries the formula grammar for exactly n formulas over the panel's fields
    assert all("formula ::= call4" in r["grammar"] and '"$volume"' in r["grammar"] for r in reqs)
    assert reqs[0]["grammar"].count("item") == 4 and "response_format" not in reqs[0]
    # propose prompt: what the request names (read by code), built-in examples, the request as untrusted data
    assert "$volume" in _user(reqs[0]) and "reversal (" in _user(reqs[0])
    assert "<<<UNTRUSTED analyst request" in _user(reqs[0])
    assert "Mul(Mul(Div(Delta($close" in reqs[0]["messages"][0]["content"]  # a built-in reversal x volume example
    # repair round: the exact parser error goes back, only for the broken formula
    first = res.candidates[0]
    assert first.formula == "Mean($close)" and "takes 2 arguments" in first.error
    assert f"error: {first.error}" in _user(reqs[1]) and "Div($volume" not in _user(reqs[1])
    # refine round: the evaluator's train/valid scores go back; the test split never does
    scored = {c.expr.infix: c for c in res.candidates if c.scores}
    fixed = scored["Mul(Delta($close, 5), -1)"]
    assert fixed.stage == "repair" and fixed.repaired_from == "Mean($close)" and fixed.source == "llm"
    assert f"valid RankIC {fixed.scores['valid']['rank_ic']:.3g}" in _user(reqs[2])
    assert all("test" not in _user(r).lower().replace("untrusted", "") for r in reqs)
    lookahead = next(c for c in res.candidates if c.formula == "Ref($close, -5)")
    assert "window" in lookahead.error and "Ref" in lookahead.error
    assert [c.formula for c in res.candidates if c.stage == "repair"][-2:] == ["Foo($close)", "Sub($close)"]
    dup = [c for c in res.candidates if c.formula == "Div($volume, Mean($volume, 20))"]
    assert dup[0].scores and dup[1].note and dup[1].note.startswith("duplicate")
    # relevance first: the volume-only formula misses the reversal; the product covers both
    assert dup[0].missing == ["reversal (a price field)"]
    both = scored["Mul(Delta($close, 5), Div($volume, Mean($volume, 20)))"]
    assert both.relevant and res.saved[0].relevant
    assert res.ok and len(res.saved) == 2 and all(c.source == "llm" for c in res.candidates)
    lib = {f.id: f for f in store.factors("llm")}
    for c in res.saved:
        f = lib[c.factor_id]
        assert f.request_text == "stocks that fall on heavy volume tend to rebound"
        assert f.explanation.startswith("written by the LLM 'scripted'") and "valid RankIC" in f.explanation
        assert set(f.metrics) == {"train", "valid", "test"} and math.isfinite(f.metrics["test"]["rank_ic"])
    run = store.get_run(res.run_id)
    assert run.kind == "factor_ask" and run.status == "finished" and run.metrics["n_saved"] == 2
    best = run.metrics["best"][0]
    assert (best["source"], best["model"], best["endpoint"]) == ("llm", "scripted", scripted_llm.url)
    assert best["request"] == res.request and "valid_rank_ic" in best and len(run.metrics["grammar_errors"]) == 4


def test_useless_model_still_yields_a_relevant_scored_factor_from_the_fallback(scripted_llm, tmp_path, store,
                                                                             market_panel):
    # valid formulas that ignore the request; the first one even beats every relevant one on valid RankIC here
    scripted_llm.script(_answer("Mul(Log($open), -1)", "Abs($high)"))
    res = ask("low volatility stocks do better over 20 days", market_panel, gateway=_gw(scripted_llm.url, tmp_path,
              store), splits=SPLITS, n_candidates=2, refine_rounds=1, store=store)
    llm = [c for c in res.candidates if c.source == "llm"]
    assert llm and all(c.ok and not c.relevant for c in llm)
    assert res.ok and res.saved and all(c.relevant and c.source == "fallback" for c in res.saved)
    best = res.saved[0].expr
    assert {"Std", "Var", "Mad"} & set(best.tokens) and "20" in best.tokens
    # "low volatility": the built-in Std(...) has a negative train RankIC here, so its sign-flipped twin competes
    assert any(c.stage == "sign" and c.source == "fallback" for c in res.candidates)
    assert res.llm["usable"] and res.llm["relevant"] == 0
    strong = next(c for c in llm if c.formula == "Mul(Log($open), -1)")
    assert strong.objective > res.saved[0].objective  # relevance first, then valid RankIC
    assert {f.source for f in store.factors()} == {"builtin"}
    assert res.saved[0].explanation.startswith("built-in known formula for volatility")
    doc = res.to_dict()
    assert doc["saved"][0]["source"] == "fallback" and doc["intent"]["windows"] == [20]


def test_library_factors_most_similar_to_the_request_are_the_examples(store, market_panel):
    for formula in ("Corr($close, $volume, 10)", "Std($close, 10)", "Div($volume, Mean($volume, 20))"):
        e = parse(formula)
        store.save_factor(list(e.tokens), e.infix, "gp", metrics={"valid": {"rank_ic": 0.01}})
    ex = retrieve_examples(store, read_intent("volume spikes over 20 days"), list(FEATURES), k=3)
    assert ex[0]["formula"] == "Div($volume, Mean($volume, 20))" and ex[0]["idea"].startswith("library factor")
    assert "Std($close, 10)" not in [e["formula"] for e in ex]  # covers nothing the request names
    assert any(e["idea"].startswith("known") for e in ex)  # topped up with built-in formulas


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_cli_ask_json_fail_fast_and_no_llm(scripted_llm, tmp_path, store, market_file, monkeypatch):
    from finllm.cli.main import app

    monkeypatch.setenv("FINLLM_DATABASE_URL", store.url)
    monkeypatch.setenv("FINLLM_LLM_BASE_URL", scripted_llm.url)
    monkeypatch.setenv("FINLLM_LLM_MODEL", "scripted")
    args = ["factors", "ask", "heavy volume losers rebound", "--data", str(market_file), "--train", SPLITS["train"],
            "--valid", SPLITS["valid"], "--test", SPLITS["test"], "--refine-rounds", "0", "--json"]
    scripted_llm.script(_answer("Mul(Delta($close, 5), Div($volume, Mean($volume, 20)))"))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["status"] == "ok" and doc["llm"]["usable"] and doc["intent"]["concepts"] == ["reversal", "volume"]
    assert {c["source"] for c in doc["candidates"]} == {"llm", "fallback"}
    assert set(doc["saved"][0]["scores"]) == {"train", "valid", "test"}
    # endpoint down: one line naming what to set, exit 2, before any data is loaded
    monkeypatch.setenv("FINLLM_LLM_BASE_URL", _dead_url())
    t0 = time.monotonic()
    res = CliRunner().invoke(app, args[:-1])
    assert res.exit_code == 2 and time.monotonic() - t0 < 30
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "FINLLM_LLM_BASE_URL" in lines[0] and "--no-llm" in lines[0]
    # a model the endpoint does not serve
    monkeypatch.setenv("FINLLM_LLM_BASE_URL", scripted_llm.url)
    monkeypatch.setenv("FINLLM_LLM_MODEL", "no-such-model")
    res = CliRunner().invoke(app, args[:-1])
    assert res.exit_code == 2 and "FINLLM_LLM_MODEL" in res.stderr and "no-such-model" in res.stderr
    # --no-llm: the built-in formulas only, no endpoint needed
    monkeypatch.setenv("FINLLM_LLM_BASE_URL", _dead_url())
    res = CliRunner().invoke(app, [*args, "--no-llm"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["llm_calls"] == 0 and {c["source"] for c in doc["candidates"]} == {"fallback"} and doc["saved"]


def test_unusable_endpoint_mid_request_is_a_config_error(scripted_llm, tmp_path, store, market_panel):
    from factors.request_llm import LLMUnavailable

    scripted_llm.script({"status": 404, "error": "The model `x` does not exist"})
    with pytest.raises(LLMUnavailable, match="FINLLM_LLM_MODEL"):
        ask("momentum", market_panel, gateway=_gw(scripted_llm.url, tmp_path, store), splits=SPLITS, store=store)
    from sqlalchemy import select

    from finllm.store.tables import Run

    with store.session() as s:
        run = s.scalar(select(Run).where(Run.kind == "factor_ask"))
    assert run.status == "failed" and "FINLLM_LLM_MODEL" in run.error


@pytest.mark.llm
def test_local_model_ask_writes_valid_formulas(local_llm, tmp_path, store, market_panel):
    """The real embedded 135M model under the grammar: every formula it writes parses, and the request
    gets a relevant, scored, saved factor (from the model or the built-in pool, marked as such)."""
    gw = _gw(local_llm, tmp_path, store, model="smollm2-135m-instruct")
    res = ask("stocks that fall on heavy volume tend to rebound", market_panel, gateway=gw, splits=SPLITS,
              n_candidates=3, repair_rounds=0, refine_rounds=0, store=store)
    llm = [c for c in res.candidates if c.source == "llm"]
    assert res.llm_calls == 1 and len(llm) == 3 and res.llm["grammar"]
    assert not res.grammar_errors and all(c.ok for c in llm)
    assert res.ok and res.saved[0].relevant and res.saved[0].source in {"llm", "fallback"}
    saved = store.factors()
    assert saved and all(math.isfinite(f.metrics["valid"]["rank_ic"]) for f in saved)


def test_cli_ask_prints_results_on_stdout_and_the_status_on_stderr(tmp_path, store, market_file, monkeypatch):
    """The CLI's convention: the candidate table and the saved factors are results (stdout); the status
    line is a message (stderr). ``--no-llm``: no endpoint is needed."""
    from finllm.cli.main import app

    monkeypatch.setenv("FINLLM_DATABASE_URL", store.url)
    monkeypatch.setenv("FINLLM_LLM_BASE_URL", _dead_url())
    res = CliRunner().invoke(app, ["factors", "ask", "20-day volatility", "--data", str(market_file), "--train",
                                   SPLITS["train"], "--valid", SPLITS["valid"], "--test", SPLITS["test"], "--no-llm"])
    assert res.exit_code == 0, res.output
    assert "candidates for: 20-day volatility" in res.stdout and "saved" in res.stdout, (res.stdout, res.stderr)
    assert "candidates for" not in res.stderr and "saved" not in res.stderr and "run " in res.stderr
