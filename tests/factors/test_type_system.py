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


def _const_compares(node) -> int:
    """How many Greater/Less nodes of ``node`` have a constant argument."""
    own = node.token in ("Greater", "Less") and any(c.kind == "const" for c in node.children)
    return int(own) + sum(_const_compares(c) for c in node.children)


CF_VOCAB = Vocab.build(FEATURES, OPS, CONSTS, [str(w) for w in WINDOWS], const_free=("Greater", "Less"))


def test_const_free_operators_never_get_a_constant_from_rl_or_gp() -> None:
    """``const_free`` is a miner's restriction on top of the type rules: RL masks and GP growth/mutation never
    write Less(5, $close), while other binary operators still take constants and the parser still reads it."""
    r = random.Random(1)
    b = Builder(CF_VOCAB, 20)
    compares = consts_elsewhere = 0
    for _ in range(400):
        b.reset()
        while True:
            a = r.choice([i for i, ok in enumerate(b.mask()) if ok])
            if CF_VOCAB.kinds[a] == "END":
                break
            b.step(a)
        root = from_postfix(b.tokens, max_len=20).root
        assert _const_compares(root) == 0, root.infix()
        compares += any(t in ("Greater", "Less") for t in b.tokens)
        consts_elsewhere += any(k == "C" for k in (CF_VOCAB.kinds[i] for i in b.ids))
    assert compares > 20 and consts_elsewhere > 20  # the operators and the constants are still used
    rng = random.Random(0)
    fac = TreeFactory(CF_VOCAB, rng, GPConfig(p_const_arg=0.5))
    trees = [fac.grow(rng.randint(2, 4)) for _ in range(300)]
    for _ in range(300):
        a, c = rng.choice(trees), rng.choice(trees)
        trees += [fac.crossover(a, c), fac.subtree_mutate(a), fac.point_mutate(c)]
    assert sum(_const_compares(t) for t in trees) == 0
    # the same search without the restriction writes them (so the check above can fail)
    plain = TreeFactory(VOCAB, random.Random(0), GPConfig(p_const_arg=0.5))
    assert sum(_const_compares(plain.grow(4)) for _ in range(300)) > 0
    assert from_postfix(["5", "$close", "Less"]).infix == "Less(5, $close)"  # still valid for users and the library
    with pytest.raises(ValueError, match="Foo"):
        Vocab.build(FEATURES, ["Add"], CONSTS, const_free=("Foo",))
