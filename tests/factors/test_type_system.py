"""One type system: the RL action masks and the GP trees follow factors.expr's rules exactly."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from factors.expr import FEATURES, MAX_DEPTH, from_postfix
from factors.gp import GPConfig, TreeFactory
from factors.ops import OPS
from factors.rl.builder import Builder, Vocab
from finllm.errors import ExpressionError
from tests.factors.strategies import CONSTS, WINDOWS, valid_postfix

# windows 1 and 2 are below some operators' min_window (Std 2, Skew 3, Kurt 4): the masks must know
VOCAB = Vocab.build(FEATURES, OPS, CONSTS, [str(w) for w in WINDOWS])


def parses(tokens: list[str], max_len: int) -> bool:
    try:
        from_postfix(tokens, max_len=max_len)
    except ExpressionError:
        return False
    return True


def slot_kinds(vocab: Vocab, tokens: list[str]) -> list[str] | None:
    """The action kinds the vocabulary gives a parseable expression's tokens, None if it lacks a literal."""
    try:
        return [vocab.kinds[i] for i in vocab.ids_for(tokens)]
    except KeyError:
        return None


def walk(vocab: Vocab, ids: list[int], max_len: int) -> bool:
    """Whether the masks allow ``ids`` and then <end>."""
    b = Builder(vocab, max_len)
    for a in ids:
        if not b.mask_array()[a]:
            return False
        b.step(a)
    return bool(b.mask_array()[vocab.end_id])


def test_the_known_drift_is_gone() -> None:
    b = Builder(VOCAB, 20)
    for tok in ("$close", "2"):
        b.step(next(i for i, (t, k) in enumerate(zip(VOCAB.tokens, VOCAB.kinds)) if t == tok and k != "C"))
    legal = {VOCAB.tokens[i] for i, ok in enumerate(b.mask()) if ok and VOCAB.kinds[i] == "O"}
    assert "Kurt" not in legal and "Skew" not in legal and {"Std", "Mean", "Corr"} - {"Corr"} <= legal
    with pytest.raises(ExpressionError):
        from_postfix(["$close", "2", "Kurt"])


def test_depth_limit_is_in_the_mask() -> None:
    """A chain of unary operators fits max_len=20 but not MAX_DEPTH=16: the mask stops it in time."""
    b = Builder(VOCAB, 20)
    b.step(VOCAB.tokens.index("$close"))
    abs_id = VOCAB.tokens.index("Abs")
    for _ in range(MAX_DEPTH - 1):
        assert b.mask_array()[abs_id]
        b.step(abs_id)
    assert not b.mask_array()[abs_id]
    assert parses(b.tokens, 20) and not parses([*b.tokens, "Abs"], 20)


def test_exhaustively_equal_up_to_three_tokens() -> None:
    """Every sequence of at most 3 actions: the masks allow it iff it parses with its literals typed by
    their slots (a window action in a window slot, a constant action elsewhere)."""
    small = Vocab.build(FEATURES[:2], OPS, ["-1", "0.5", "2"], ["1", "2", "5"])
    acts = [i for i, k in enumerate(small.kinds) if k != "END"]
    n_legal = 0
    for n in (1, 2, 3):
        for ids in itertools.product(acts, repeat=n):
            toks = [small.tokens[i] for i in ids]
            ok = parses(toks, 3) and slot_kinds(small, toks) == [small.kinds[i] for i in ids]
            assert walk(small, list(ids), 3) == ok, toks
            n_legal += ok
    assert n_legal > 200  # not vacuous (258 with this vocabulary)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 10**6), max_size=21), st.sampled_from([4, 8, 20]))
def test_every_sequence_the_mask_allows_parses(choices: list[int], max_len: int) -> None:
    b = Builder(VOCAB, max_len)
    for c in itertools.chain(choices, itertools.repeat(0)):
        legal = [i for i, ok in enumerate(b.mask_array()) if ok]
        assert legal, f"dead end after {b.tokens}"
        a = legal[c % len(legal)]
        if a == VOCAB.end_id:
            break
        b.step(a)
    e = from_postfix(b.tokens, max_len=max_len)
    assert e.length == len(b.tokens) <= max_len


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_postfix(max_leaves=8), st.sampled_from([6, 12, 20]))
def test_every_parseable_expression_is_reachable(tokens: list[str], max_len: int) -> None:
    assume(parses(tokens, max_len))
    assert walk(VOCAB, VOCAB.ids_for(tokens), max_len), tokens


def test_gp_trees_are_well_typed() -> None:
    """GP grows and mutates factors.expr trees; with windows 1-2 in the vocabulary it never gives
    Std/Skew/Kurt a window they reject."""
    rng = random.Random(0)
    fac = TreeFactory(VOCAB, rng, GPConfig())
    trees = [fac.grow(rng.randint(2, 4)) for _ in range(300)]
    for _ in range(300):
        a, b = rng.choice(trees), rng.choice(trees)
        trees += [fac.crossover(a, b), fac.subtree_mutate(a), fac.point_mutate(b)]
    bad = [t for t in trees if t.depth <= MAX_DEPTH and not parses(list(t.postfix), 10**6)]
    assert not bad, [t.infix() for t in bad[:3]]
    assert from_postfix(list(trees[0].postfix)).tokens == trees[0].postfix
