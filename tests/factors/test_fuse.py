"""Fused element-wise trees (factors.fuse) give the same values, bit for bit, as running the operators one
by one, and a tree really does run as one pass."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from factors import fuse
from factors import kernels as K
from factors.evaluate import Evaluator, shared_regions
from factors.expr import from_postfix, parse
from factors.ops import OPS
from finllm.errors import ExpressionError
from tests.factors.strategies import valid_postfix

NINE_MEANS = ("Add(Add(Add(Mean($close, 2), Mean($close, 3)), Add(Mean($close, 4), Mean($close, 5))), "
              "Add(Add(Mean($close, 6), Mean($close, 7)), "
              "Add(Mean($close, 8), Add(Mean($close, 9), Mean($close, 10)))))")
TEXTS = [
    "Div(Sub(Mul($close, 2), Add($high, $low)), $open)",  # KSFT
    "Sub(1, Div(2, $close))",  # constants first: flipped codes
    "Pow(Abs(Sub($close, $open)), 0.5)",
    "Greater(Sign(Sub($close, $open)), Less($high, Mul($low, 1.01)))",
    "Add(Mul($close, $close), Mul($close, $close))",  # a shared subtree, computed once
    "Mul(Add(Abs($low), Sub($close, $open)), Sub($close, $open))",  # ... and read again later
    "Div(Sub($close, Mean($close, 5)), Add(Std($close, 5), 1e-05))",  # inputs from cached window results
    "Mul(Log(Add($volume, 1)), Sub($close, $open))",  # Log is an input, not fused
    # fused below a window, and above it
    "Div(Mean(Abs(Sub(Div($close, Ref($close, 1)), 1)), 5), Add(Std($volume, 5), 1e-12))",
    "Div($close, Sub($open, $open))",  # division by zero: NaN everywhere (never inf)
    "Div(Ref($close, 5), $close)",  # a shifted read: no array for Ref($close, 5)
    "Mul(Ref($close, 5), 2)",  # ... NaN on the days the stock is not valid (nothing else would make it NaN)
    "Sub(Delta($close, 3), Ref(Mean($close, 5), 2))",  # Delta, and a shift of a cached window result
    "Mul(Ref(Sub($close, $open), 1), 2)",  # a shift of a fused result: Ref runs on its own
    "Greater(Ref($volume, 200), Mul($volume, 1.5))",  # a shift longer than most of the panel
    NINE_MEANS,  # more inputs than a program takes: the root is not fused, its subtrees are
]


# mostly element-wise operators (what fuses), with windows and Log in between (what feeds a fused tree)
ELEMENTWISE_HEAVY = [n for n, s in OPS.items() if s.category in ("unary", "binary")] * 3 + \
    ["Ref", "Delta"] * 3 + ["Mean", "Std"]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(0), b.nan_to_num(0))


def _both(panel, texts, monkeypatch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    fused = [Evaluator(panel).evaluate(t) for t in texts]
    with monkeypatch.context() as m:
        m.setattr(fuse, "run", lambda node, leaf, valid: None)
        plain = [Evaluator(panel).evaluate(t) for t in texts]
    return fused, plain


def test_fused_trees_equal_one_operator_at_a_time(us_panel, monkeypatch):
    fused, plain = _both(us_panel, TEXTS, monkeypatch)
    for t, a, b in zip(TEXTS, fused, plain, strict=True):
        assert _same(a, b), t
        if "Sub($open, $open)" in t:
            assert torch.isnan(a).all()
        else:
            assert torch.isfinite(a).any(), t  # not vacuous: real values were compared


def test_a_tree_runs_as_one_pass(us_panel, monkeypatch):
    calls = {"program": 0, "binary": 0}
    real_program, real_aa, real_ac = K.program, K.binary_aa, K.binary_ac

    def count(name, fn):
        def wrapped(*a):
            calls[name] += 1
            return fn(*a)
        return wrapped

    monkeypatch.setattr(K, "program", count("program", real_program))
    monkeypatch.setattr(K, "binary_aa", count("binary", real_aa))
    monkeypatch.setattr(K, "binary_ac", count("binary", real_ac))
    Evaluator(us_panel).evaluate(TEXTS[0])
    assert calls == {"program": 1, "binary": 0}
    leaves, prog, _ = fuse.compile_tree(parse(TEXTS[4]).root)
    assert [n.token for n in leaves] == ["$close"] and len(prog) == 2  # Mul($close, $close) once, then Add
    assert fuse.run(parse(NINE_MEANS).root, lambda n: pytest.fail("evaluated a leaf"), us_panel.valid) is None
    ev = Evaluator(us_panel)
    ev.evaluate("Div(Ref($close, 5), $close)")
    assert ev.cache_info()["entries"] == 0  # the shift was read in place, not made into an array


EPILOGUES = [
    "Div(Mean($close, 10), $close)",  # MA10: a single Div, run by the Mean kernel on each row it writes
    "Div(Sub($close, Min($low, 5)), Add(Sub(Max($high, 5), Min($low, 5)), 1e-12))",  # two windows: Max hosts
    "Sub(Med($close, 7), Corr($close, $volume, 9))",  # a pair window hosts
    "Div(Ref(Mean($close, 5), 2), Mean($close, 5))",  # read shifted too: no host, a plain fused pass
    "Mul(Ref(Sub($close, $open), 3), $open)",  # a shift kernel hosts
]


@pytest.mark.parametrize("threads", [1, 3])
def test_window_kernels_run_the_tree_above_them_as_an_epilogue(us_panel, monkeypatch, threads):
    """The tree above a window input runs inside that window's kernel, on each block of rows it writes,
    with the same values bit for bit, on any number of threads (each runs it on its own days)."""
    calls = {"program": 0}
    real_program = K.program

    def counted(*a):
        calls["program"] += 1
        return real_program(*a)

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with monkeypatch.context() as m:
            m.setattr(K, "program", counted)
            ev = Evaluator(us_panel)
            fused = [ev.evaluate(t) for t in EPILOGUES]
            again = [ev.evaluate(t) for t in EPILOGUES]  # the windows are cached now: plain fused passes
        fused_calls = calls["program"]
        fused2, plain = _both(us_panel, EPILOGUES, monkeypatch)
    finally:
        torch.set_num_threads(old)
    # first pass: a separate pass only for the tree that reads its window shifted; second pass: every tree
    assert fused_calls == 1 + len(EPILOGUES)
    for t, a, b, c, d in zip(EPILOGUES, fused, again, fused2, plain, strict=True):
        assert _same(a, d) and _same(b, d) and _same(c, d), t
        assert torch.isfinite(a).any(), t


def test_a_tree_under_two_windows_is_computed_once(us_panel, monkeypatch):
    """``M`` in ``Div(Std(M, 5), Mean(M, 5))`` is computed once per evaluation (and not cached)."""
    tree = "Mul(Abs(Sub(Div($close, Ref($close, 1)), 1)), $volume)"
    text = f"Div(Std({tree}, 5), Add(Mean({tree}, 5), 1e-12))"
    assert shared_regions(parse(text).root) == {parse(tree).root.key}
    runs = []
    real_run = fuse.run
    with monkeypatch.context() as m:
        m.setattr(fuse, "run", lambda node, leaf, valid: runs.append(node.key) or real_run(node, leaf, valid))
        ev = Evaluator(us_panel)
        a = ev.evaluate(text)
    assert runs.count(parse(tree).root.key) == 1
    assert ev.cache_info()["entries"] == 2 and not ev._memo  # Std and Mean; M only while the expression ran
    fused, plain = _both(us_panel, [text], monkeypatch)
    assert _same(a, plain[0]) and _same(fused[0], plain[0]) and torch.isfinite(a).any()


def test_targets_with_a_forward_shift_fuse_the_same(us_panel, monkeypatch):
    text = "Sub(Div(Ref($close, -5), $close), 1)"
    fused = Evaluator(us_panel).target(text)
    with monkeypatch.context() as m:
        m.setattr(fuse, "run", lambda node, leaf, valid: None)
        plain = Evaluator(us_panel).target(text)
    assert _same(fused, plain) and torch.isnan(fused[-5:]).all() and torch.isfinite(fused[:-5]).any()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=valid_postfix(max_leaves=10, ops=ELEMENTWISE_HEAVY))
def test_random_trees_fused_equal_unfused(us_panel, monkeypatch, tokens):
    try:
        e = from_postfix(tokens)
    except ExpressionError as err:  # only the size limits may reject a well-typed tree
        assert "max_depth" in str(err) or "max_len" in str(err)
        return
    fused, plain = _both(us_panel, [e], monkeypatch)
    assert _same(fused[0], plain[0]), e.infix
