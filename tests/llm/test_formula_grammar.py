"""The formula grammar (factors.grammar): every string it accepts parses and type-checks.

Two checks: a random walk over the GBNF text itself (a tiny sampler for the subset of GBNF the module
writes: literals, rule names, groups, alternatives) covers every operator and argument kind in
milliseconds; then the REAL embedded SmolLM2-135M decodes under the grammar through the gateway and
every formula it writes (>= 200) must parse with factors.expr.
"""

from __future__ import annotations

import json
import random
import re
import time

import pytest
from pydantic import BaseModel

from factors.expr import parse
from factors.grammar import formula_gbnf, formulas_gbnf, worst_length
from factors.ops import OPS
from finllm.config import Settings
from finllm.llm import Gateway

_TOK = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[a-z0-9-]+|[()|])')


def _rules(gbnf: str) -> dict[str, list]:
    out = {}
    for line in gbnf.strip().splitlines():
        name, body = line.split(" ::= ", 1)
        toks = _TOK.findall(body)
        pos = 0

        def alts() -> list:
            nonlocal pos
            options, seq = [], []
            while pos < len(toks) and toks[pos] != ")":
                t = toks[pos]
                pos += 1
                if t == "|":
                    options.append(seq)
                    seq = []
                elif t == "(":
                    seq.append(("group", alts()))
                    pos += 1  # the ")"
                elif t.startswith('"'):
                    seq.append(("lit", json.loads(t)))
                else:
                    seq.append(("ref", t))
            options.append(seq)
            return options

        out[name] = alts()
        assert pos == len(toks), f"unparsed GBNF in rule {name}"
    return out


def _sample(rules: dict[str, list], rng: random.Random, name: str = "root") -> str:
    def walk(options: list) -> str:
        parts = []
        for kind, val in rng.choice(options):
            parts.append(val if kind == "lit" else walk(val) if kind == "group" else walk(rules[val]))
        return "".join(parts)

    return walk(rules[name])


@pytest.mark.parametrize("features,depth", [(None, 4), (("$close", "$volume"), 3), (None, 2)])
def test_every_string_of_the_grammar_parses_and_type_checks(features, depth):
    rules = _rules(formula_gbnf(features, max_depth=depth))
    rng = random.Random(depth)
    used = set()
    for _ in range(3000):
        text = _sample(rules, rng)
        e = parse(text, features=features)  # raises on any invalid formula
        assert e.depth <= depth and e.infix == text  # written exactly in the canonical infix form
        used.update(t for t in e.tokens if t in OPS)
    assert used == set(OPS)  # every operator of the registry is reachable


def test_depth_is_bounded_by_the_token_limit():
    assert worst_length(list(OPS.values()), 5) <= 64
    with pytest.raises(ValueError, match="longer than"):
        formula_gbnf(max_depth=6)


class _Formulas(BaseModel):
    formulas: list[str]


@pytest.mark.llm
def test_real_model_under_the_grammar_writes_only_valid_formulas(local_llm, tmp_path):
    """>= 200 formulas from the real 135M model (8 requests x 25 formulas; tree height 2, and 3 for two of
    them, to keep the test near a minute of CPU; the random walk above covers height 4 and every operator)."""
    gw = Gateway(Settings(home=tmp_path, llm_base_url=local_llm, llm_model="smollm2-135m-instruct",
                          llm_timeout_s=300), store=None)
    ideas = ["stocks that fall on heavy volume rebound", "low volatility wins", "20-day momentum",
             "intraday range", "price-volume correlation", "distance from the 60-day high",
             "volume spikes", "weekly reversal"]
    formulas, t0 = [], time.monotonic()
    for k, idea in enumerate(ideas):
        feats = ("$close", "$volume") if k % 2 else None
        depth = 3 if k in (3, 6) else 2
        grammar = formulas_gbnf(25, feats, max_depth=depth)
        res = gw.structured("factor_request", {"request": idea, "grammar": "", "names": "", "examples": [], "n": 25,
                                               "horizon": 20}, _Formulas, temperature=1.0, max_tokens=1000,
                            max_repairs=0, sample=k, grammar=grammar, use_cache=False)
        assert res, res.message
        assert len(res.value.formulas) == 25
        for f in res.value.formulas:
            e = parse(f, features=feats)
            assert e.depth <= depth and (feats is None or set(e.features) <= set(feats))
        formulas += res.value.formulas
    assert len(formulas) >= 200
    print(f"{len(formulas)} formulas, {len(set(formulas))} distinct, {time.monotonic() - t0:.0f}s")
