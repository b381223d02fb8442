"""needed_history: evaluating with exactly that much history gives the values of a much longer history,
and one day less changes them."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings

from factors.evaluate import Evaluator
from factors.expr import from_postfix, needed_history, needed_history_tokens, parse
from factors.ops import OPS
from tests.factors.strategies import valid_postfix

TARGET_DAYS = 30


def tail(panel, n: int):
    """The last ``n`` days of ``panel``."""
    d = panel.values.shape[0]
    return dataclasses.replace(panel, dates=panel.dates[d - n:], values=panel.values[d - n:],
                               valid=panel.valid[d - n:], in_universe=panel.in_universe[d - n:])


def last_days(panel, text: str, history: int) -> torch.Tensor:
    """Values on the last TARGET_DAYS days, evaluated with ``history`` days before them."""
    return Evaluator(tail(panel, TARGET_DAYS + history)).evaluate(text)[-TARGET_DAYS:]


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)))


def block_period(text: str) -> int:
    """A multiple of every window of ``text``: the block kernels align blocks to ``day % w``, so a history
    longer by this many days sums in the same order (bit-for-bit comparable)."""
    e = parse(text)
    ws = [int(float(t)) for i, t in enumerate(e.tokens)
          if i + 1 < len(e.tokens) and e.tokens[i + 1] in OPS and t.lstrip("-").isdigit()]
    return math.lcm(*[abs(w) for w in ws if w], 1)


@pytest.fixture(scope="module")
def panel(us_wide):
    return us_wide.select_tickers(20)


@pytest.mark.parametrize(("text", "days"), [
    ("$close", 0),
    ("Mean($close, 20)", 19),
    ("Mean(Ref($close, 5), 20)", 24),
    ("Delta(Std($volume, 10), 3)", 12),
    ("Corr($close, Mean($volume, 5), 10)", 13),
    ("Div(Sub($close, Mean($close, 20)), Std($close, 20))", 19),
    ("Add(EMA($close, 30), WMA(Ref($open, 2), 3))", 29),
    ("CSRank(Kurt(Delta($close, 1), 10))", 10),
    ("Sub(Div(Ref($close, -20), $close), 1)", 0),  # a forward target reads no history
])
def test_rule(text, days):
    assert needed_history(text) == days
    e = parse(text, allow_future=True)
    assert needed_history(e) == needed_history_tokens(list(e.tokens)) == days


def test_tokens_over_any_feature():
    """A panel's extra field (crypto's $market_cap) needs no history either."""
    assert needed_history_tokens(["$market_cap", "5", "Ref", "10", "Mean"]) == 14


@pytest.mark.parametrize("text", [
    "Mean($close, 20)", "Mean(Ref($close, 5), 20)", "Delta(Std($volume, 10), 3)",
    "Corr($close, Mean($volume, 5), 10)", "Sum(Rank($close, 5), 10)", "Max(Delta($close, 1), 10)", "IdxMin(Med($low, 4), 6)",
    "EMA(Slope($close, 5), 4)", "Skew(Mad($high, 3), 5)", "CSZScore(Cov($close, $volume, 8))",
    "Greater(Mean($close, 3), Sum(Ref($vwap, 1), 12))", "Kurt(Var(Abs(Delta($close, 2)), 5), 20)",
])
def test_exact_and_tight(panel, text):
    h = needed_history(text)
    longer = last_days(panel, text, h + 2 * block_period(text))
    assert same(last_days(panel, text, h), longer), f"{text}: {h} days of history are not enough"
    assert not same(last_days(panel, text, h - 1), longer), f"{text}: {h - 1} days would do"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(valid_postfix(max_leaves=4))
def test_exact_for_random_expressions(panel, tokens):
    e = from_postfix(tokens)
    h = needed_history(e)
    period = block_period(e.infix)
    assume(TARGET_DAYS + h + period <= panel.values.shape[0])
    assert same(last_days(panel, e.infix, h), last_days(panel, e.infix, h + period)), e.infix
