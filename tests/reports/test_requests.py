"""Natural-language factor requests (factors.requests.ask and `finllm factors ask`).

The repair/refine protocol is tested against the SCRIPTED OpenAI-compatible server because it needs exact
faults on demand (a formula with a known grammar error, then a known fix); the real local model is
exercised in test_local_model_ask_runs_and_is_honest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factors.requests import ask, render_grammar
from finllm.config import Settings
from finllm.llm import Gateway
from tests.reports.conftest import SPLITS


def _gw(url: str, tmp_path: Path, store, model: str = "scripted") -> Gateway:
    return Gateway(Settings(home=tmp_path, llm_base_url=url, llm_model=model, llm_timeout_s=180), store=store,
                   sleep=lambda s: None)


def _answer(*formulas: str) -> dict:
    return {"content": json.dumps({"candidates": [{"formula": f, "explanation": f"idea {i}"}
                                                  for i, f in enumerate(formulas)]})}


def _user(req: dict) -> str:
    return req["messages"][1]["content"]


def test_grammar_is_rendered_from_the_operator_registry():
    from factors.ops import OPS

    g = render_grammar()
    assert all(f"{name}(" in g for name in OPS)
    assert "Corr(x, y, d)" in g and "$volume" in g and "1..252" in g


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
              refine_rounds=1, store=store, n_save=2)
    reqs = scripted_llm.requests
    assert len(reqs) == res.llm_calls == 5
    # propose prompt: grammar + examples + the request in an untrusted block
    assert "Corr(x, y, d)" in reqs[0]["messages"][0]["content"]
    assert "<<<UNTRUSTED analyst request" in _user(reqs[0])
    # repair round: the exact parser error goes back, only for the broken formula
    first = res.candidates[0]
    assert first.formula == "Mean($close)" and "takes 2 arguments" in first.error
    assert f"error: {first.error}" in _user(reqs[1])
    assert "Div($volume" not in _user(reqs[1])
    # refine round: the evaluator's train/valid scores go back; the test split never does
    scored = {c.expr.infix: c for c in res.candidates if c.scores}
    fixed = scored["Mul(Delta($close, 5), -1)"]
    assert fixed.stage == "repair" and fixed.repaired_from == "Mean($close)"
    assert f"valid RankIC {fixed.scores['valid']['rank_ic']:.3g}" in _user(reqs[2])
    assert all("test" not in _user(r).lower().replace("untrusted", "") for r in reqs)
    # look-ahead is a grammar error; repairs are bounded (2 rounds) and the last errors are kept
    lookahead = next(c for c in res.candidates if c.formula == "Ref($close, -5)")
    assert "window" in lookahead.error and "Ref" in lookahead.error
    assert "Ref($close, -5)" in _user(reqs[3]) and [c.formula for c in res.candidates][-2:] == ["Foo($close)", "Sub($close)"]
    # duplicates are scored once
    dup = [c for c in res.candidates if c.formula == "Div($volume, Mean($volume, 20))"]
    assert dup[0].scores and dup[1].note and dup[1].note.startswith("duplicate")
    # the best by valid RankIC are saved with request text, explanation, train/valid/test metrics
    assert res.ok and len(res.saved) == 2
    assert res.saved[0].objective >= res.saved[1].objective
    lib = {f.id: f for f in store.factors("llm")}
    for c in res.saved:
        f = lib[c.factor_id]
        assert f.request_text == "stocks that fall on heavy volume tend to rebound" and f.explanation.startswith("idea")
        assert set(f.metrics) == {"train", "valid", "test"} and math.isfinite(f.metrics["test"]["rank_ic"])
        assert f.run_id == res.run_id
    run = store.get_run(res.run_id)
    assert run.kind == "factor_ask" and run.status == "finished" and run.metrics["n_saved"] == 2
    assert len(run.metrics["grammar_errors"]) == 4


def test_no_valid_formula_is_reported_with_grammar_errors(scripted_llm, tmp_path, store, market_panel):
    scripted_llm.script(_answer("1.5, 2"), _answer("Abs($close, $volume)"))
    res = ask("momentum", market_panel, gateway=_gw(scripted_llm.url, tmp_path, store), splits=SPLITS,
              n_candidates=2, repair_rounds=1, refine_rounds=1, store=store)
    assert res.status == "no_valid_formula" and not res.saved and res.llm_calls == 2
    assert [e["formula"] for e in res.grammar_errors] == ["1.5, 2", "Abs($close, $volume)"]
    assert "Abs" in res.grammar_errors[1]["error"] and "takes 1 arguments" in res.grammar_errors[1]["error"]
    assert store.factors("llm") == []
    run = store.get_run(res.run_id)
    assert run.status == "failed" and "no valid formula" in run.error


def test_cli_ask_json_and_llm_failure_exit_codes(scripted_llm, tmp_path, store, market_file, monkeypatch):
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
    assert doc["status"] == "ok" and doc["saved"][0]["canonical"] == "Mul(Delta($close, 5), Div($volume, Mean($volume, 20)))"
    assert set(doc["saved"][0]["scores"]) == {"train", "valid", "test"}
    scripted_llm.script({"status": 400, "error": "no such model"})
    args[2] = "a new idea (not in the LLM cache)"
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["status"] == "llm_failed" and "http" in doc["llm_failures"][0] and doc["saved"] == []


@pytest.mark.llm
def test_local_model_ask_runs_and_is_honest(local_llm, tmp_path, store, market_panel):
    """The real embedded 135M model: the pipeline runs end to end; whatever the model writes is parsed,
    and either a scored factor is saved or the failure is stated with the grammar errors."""
    gw = _gw(local_llm, tmp_path, store, model="smollm2-135m-instruct")
    res = ask("stocks that fall on heavy volume tend to rebound", market_panel, gateway=gw, splits=SPLITS,
              n_candidates=2, repair_rounds=0, refine_rounds=0, store=store, max_tokens=160)
    assert res.llm_calls >= 1 and res.status in {"ok", "no_valid_formula", "no_usable_factor", "llm_failed"}
    if res.ok:
        saved = store.factors("llm")
        assert saved and all(math.isfinite(f.metrics["valid"]["rank_ic"]) for f in saved)
    else:
        assert res.message and not res.saved and store.factors("llm") == []
        if res.status == "no_valid_formula":
            assert res.grammar_errors and all(e["error"] for e in res.grammar_errors)
        assert store.get_run(res.run_id).status == "failed"
