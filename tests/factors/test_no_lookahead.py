"""No look-ahead: perturbing every input after day t leaves every factor value up to day t unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factors.evaluate import Evaluator
from factors.expr import from_postfix, parse
from factors.ops import OPS
from tests.factors.strategies import valid_postfix
from tests.factors.test_ops_reference import cases


def perturb_after(panel, t: int, seed: int = 1):
    """Replace everything after day t: new prices/volumes, new holes, a new universe."""
    g = np.random.default_rng(seed)
    shape = tuple(panel.values[t + 1:].shape)
    values = panel.values.clone()
    values[t + 1:] = torch.from_numpy(g.lognormal(3.0, 1.0, size=shape).astype(np.float32))
    valid = panel.valid.clone()
    valid[t + 1:] = torch.from_numpy(g.random(shape[:2]) < 0.8)
    values[~valid] = float("nan")
    uni = panel.in_universe.clone()
    uni[t + 1:] = valid[t + 1:] & torch.from_numpy(g.random(shape[:2]) < 0.7)
    return dataclasses.replace(panel, values=values, valid=valid, in_universe=uni)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)))


@pytest.fixture(scope="module")
def pairs(us_panel):
    d = us_panel.values.shape[0]
    out = []
    for t in (7, d // 2, d - 30):
        out.append((t, Evaluator(us_panel), Evaluator(perturb_after(us_panel, t))))
    return out


@pytest.mark.parametrize("op", list(OPS))
def test_operator_never_looks_ahead(op, pairs):
    for text in cases(op):
        for t, ev, ev_p in pairs:
            a, b = ev.evaluate(text), ev_p.evaluate(text)
            assert same(a[: t + 1], b[: t + 1]), f"{text} changed at or before day {t} when only later data changed"
            assert not same(a, b), f"{text}: perturbation had no effect at all (vacuous test)"


def test_the_check_detects_a_leak(pairs):
    """A forward-looking target must fail the same check (so the check can fail)."""
    t, ev, ev_p = pairs[1]
    a, b = ev.target("Ref($close, -5)"), ev_p.target("Ref($close, -5)")
    assert not same(a[: t + 1], b[: t + 1])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens=valid_postfix(), which=st.integers(0, 2))
def test_random_expressions_never_look_ahead(tokens, which, pairs):
    t, ev, ev_p = pairs[which]
    e = from_postfix(tokens)
    assert same(ev.evaluate(e)[: t + 1], ev_p.evaluate(e)[: t + 1]), e.infix


def test_factor_rejects_forward_ref(us_panel):
    from finllm.errors import ExpressionError

    ev = Evaluator(us_panel)
    with pytest.raises(ExpressionError, match="'Ref' at character 0: argument 2 '-5'"):
        ev.evaluate("Ref($close, -5)")
    with pytest.raises(ExpressionError):
        ev.evaluate(parse("Ref($close, -5)", allow_future=True))  # an Expr built for targets
