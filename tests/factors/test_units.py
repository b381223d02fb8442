"""factors.units: the scale-free verdict checked against evaluation on a real panel whose share units are changed.

Changing a stock's share unit by s multiplies its prices by s and divides its volume by s. A factor the analysis
calls scale-free must rank the stocks the same way before and after, on every day; the factors it calls
scale-dependent must (nearly all) rank them differently. The factors are the ones the RL miner writes: random
legal token sequences of its own vocabulary.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from factors.expr import from_postfix, parse
from factors.units import is_scale_free, unit


RULES = [
    ("Div(Mean($close, 20), $close)", True),
    ("Corr($close, $volume, 10)", True),
    ("Log(Mul($close, $volume))", True),
    ("Delta(Log($close), 5)", True),
    ("Sub(Log($high), Log($low))", True),
    ("Div(Delta($close, 5), Std($close, 20))", True),
    ("Sign(Less(Div(0.01, $vwap), $volume))", True),  # 1/price and volume scale alike
    ("CSRank(Div($open, $close))", True),
    ("Pow(Div($high, $low), 0.5)", True),
    ("Sum(Log(Div($close, Ref($close, 1))), 20)", True),
    ("Greater(1, Sign(Delta($close, 5)))", True),
    ("$close", False),
    ("Less(5, $close)", False),
    ("Add($close, 1)", False),
    ("Std($volume, 20)", False),
    ("Mean(Log($close), 5)", False),  # a logarithm keeps its offset
    ("Sum(Log($close), 5)", False),
    ("CSRank($close)", False),
    ("Mul(Log($close), $volume)", False),
    ("Abs(Log($close))", False),
    ("Cov($close, $volume, 20)", True),
    ("Var(Log($close), 20)", True),
]


@pytest.mark.parametrize("text, free", RULES)
def test_rules(text, free):
    assert is_scale_free(parse(text)) is free, unit(parse(text).root)


@pytest.fixture(scope="module")
def two_evaluators(us_panel):
    """Evaluators on a real panel and on the same panel with every stock's share unit changed."""
    from factors.evaluate import Evaluator

    panel = us_panel.slice_dates("2008-03-01", "2008-12-31")
    return Evaluator(panel, cache_bytes=64 << 20), Evaluator(_rescaled(panel), cache_bytes=64 << 20)


@pytest.mark.parametrize("text, free", RULES)
def test_rules_match_evaluation(two_evaluators, text, free):
    ev, ev2 = two_evaluators
    same = _same_ranking(ev.evaluate(parse(text)), ev2.evaluate(parse(text)))
    assert same >= 0.95 if free else same < 0.5, same


def test_offsets_keep_their_sign():
    assert is_scale_free(parse("Add(Sub(1, Log($close)), Log($high))"))  # -log s + log s
    assert not is_scale_free(parse("Add(Sub(1, Log($close)), Log($volume))"))  # -log s - log s
    assert unit(parse("Sub(2, Log($close))").root).d == -1.0


def test_other_columns_count_as_scale_free():
    e = parse("Div($market_cap, Mean($market_cap, 20))", features=["$close", "$volume", "$market_cap"])
    assert is_scale_free(e)


def _rescaled(panel, seed: int = 0):
    """``panel`` with each stock's share unit changed by a power of two (exact in float32)."""
    g = np.random.default_rng(seed)
    s = torch.from_numpy(2.0 ** g.integers(-3, 4, size=panel.values.shape[1])).float()
    values = panel.values.clone()
    for j, name in enumerate(panel.fields):
        if name in ("open", "high", "low", "close", "vwap"):
            values[:, :, j] *= s
        elif name == "volume":
            values[:, :, j] /= s
    return dataclasses.replace(panel, values=values)


def _same_ranking(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of days where two (D, S) factors order the stocks the same way (their rank correlation above 0.99:
    a logarithm's rounding may swap two near-ties)."""
    agree = []
    for x, y in zip(a.numpy(), b.numpy()):
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 3:
            continue
        rx, ry = x[ok].argsort(kind="stable").argsort(), y[ok].argsort(kind="stable").argsort()
        agree.append(bool((rx == ry).all()) or float(np.corrcoef(rx, ry)[0, 1]) > 0.99)
    return float(np.mean(agree)) if agree else 1.0


def test_verdicts_match_evaluation_on_rescaled_real_panel(two_evaluators):
    from factors.mine import MINER_CONSTS, MINER_WINDOWS, miner_ops
    from factors.rl.builder import Builder, Vocab

    ev, ev2 = two_evaluators
    vocab = Vocab.build(ev.features, miner_ops("fast"), MINER_CONSTS, MINER_WINDOWS)
    g = np.random.default_rng(1)
    free_agree, dep_agree = [], []
    for _ in range(3000):
        b = Builder(vocab, max_len=12)
        while not (b.done() and g.random() < 0.5):
            legal = np.flatnonzero(b.mask_array())
            legal = legal[legal != vocab.end_id]
            if len(legal) == 0:
                break
            b.step(int(g.choice(legal)))
        if not b.done():
            continue
        expr = from_postfix(b.tokens, ev.features)
        u = unit(expr.root)
        free = is_scale_free(expr)
        if not free and (u is None or u.log):
            continue  # mixed: the ranking may change or not, depending on the constants; no claim is made
        a, c = ev.evaluate(expr), ev2.evaluate(expr)
        if torch.isfinite(a).float().mean() < 0.5:
            continue
        (free_agree if free else dep_agree).append(_same_ranking(a, c))
        if len(free_agree) >= 40 and len(dep_agree) >= 40:
            break
    assert len(free_agree) >= 40 and len(dep_agree) >= 40, (len(free_agree), len(dep_agree))
    assert min(free_agree) >= 0.95, sorted(free_agree)[:5]
    assert np.mean([x < 0.5 for x in dep_agree]) >= 0.9, sorted(dep_agree)[-5:]
