"""Fuzz: thousands of random token lists and strings. Never an unhandled exception; every rejection is an
ExpressionError with a message; everything accepted evaluates to a finite-or-NaN (D, S) float32 tensor."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from factors.evaluate import Evaluator
from factors.expr import from_postfix, parse
from finllm.errors import ExpressionError
from tests.factors.strategies import random_infix, random_token_lists, valid_postfix

FUZZ = settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def ev(us_panel):
    return Evaluator(us_panel.slice_dates("2008-09-01", "2008-12-31"), cache_bytes=64 << 20)


def _check(ev, expr) -> None:
    y = ev.evaluate(expr)
    assert y.shape == ev.shape and y.dtype == torch.float32 and not torch.isinf(y).any()


@FUZZ
@given(random_token_lists)
def test_random_token_lists(ev, tokens):
    try:
        e = from_postfix(tokens)
    except ExpressionError as err:
        assert str(err) and hasattr(err, "position")
        return
    _check(ev, e)


@FUZZ
@given(random_infix)
def test_random_strings(ev, text):
    try:
        e = parse(text)
    except ExpressionError as err:
        assert str(err) and hasattr(err, "position")
        return
    _check(ev, e)
    assert parse(e.infix) == e


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_postfix(max_leaves=10))
def test_random_valid_expressions_evaluate(ev, tokens):
    try:
        e = from_postfix(tokens)
    except ExpressionError as err:  # only the size limits may reject a well-typed tree
        assert "max_depth" in str(err) or "max_len" in str(err)
        return
    _check(ev, e)
