"""Stack builder / action masks over the real operator registry."""

from __future__ import annotations

import random

import pytest

from factors.expr import FEATURES, from_postfix
from factors.ops import OPS
from factors.rl.builder import C, Builder, StackRules, Vocab, window


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.build(FEATURES, OPS)


@pytest.mark.parametrize("max_len", [3, 8, 20])
def test_random_masked_rollouts_always_give_valid_expressions(vocab: Vocab, max_len: int) -> None:
    b = Builder(vocab, max_len)
    r = random.Random(max_len)
    for _ in range(150):
        b.reset()
        while True:
            legal = [i for i, ok in enumerate(b.mask()) if ok]
            assert legal, f"dead end after {b.tokens}"
            a = r.choice(legal)
            if vocab.kinds[a] == "END":
                break
            b.step(a)
        e = from_postfix(b.tokens, max_len=max_len)  # raises ExpressionError if the mask let junk through
        assert e.length == len(b.tokens) <= max_len


def test_end_only_when_one_complete_expression(vocab: Vocab) -> None:
    b = Builder(vocab, 20)
    assert not b.mask()[vocab.end_id]
    b.step(vocab.tokens.index("$close"))
    assert b.mask()[vocab.end_id]
    b.step(vocab.tokens.index("$open"))
    assert not b.mask()[vocab.end_id]
    with pytest.raises(ValueError):
        b.step(vocab.end_id)


def test_masks_respect_argument_kinds(vocab: Vocab) -> None:
    b = Builder(vocab, 20)
    m = b.mask()
    # nothing but features and literals can start an expression; a window can never be consumed first
    assert not any(m[i] for i, k in enumerate(vocab.kinds) if k in ("O", "W"))
    b.step(vocab.tokens.index("$close"))
    w = [i for i, k in enumerate(vocab.kinds) if k == "W"][0]
    b.step(w)
    m = b.mask()
    allowed_ops = {vocab.tokens[i] for i, k in enumerate(vocab.kinds) if k == "O" and m[i]}
    assert allowed_ops == {k for k, s in OPS.items() if s.arg_kinds == ("expr", "window")}
    assert not m[vocab.end_id]


def test_to_finish_is_exact_on_small_cases(vocab: Vocab) -> None:
    rules = StackRules(vocab)
    e, c, w5 = 0, C, window(5)
    assert rules.to_finish(()) == 1
    assert rules.to_finish((e,)) == 0
    assert rules.to_finish((e, e)) == 1  # Add
    assert rules.to_finish((c,)) == 2  # feature, Add
    assert rules.to_finish((e, w5)) == 1  # Mean
    assert rules.to_finish((e, e, w5)) == 1  # Corr
    assert rules.to_finish((c, w5)) == float("inf")  # a window must follow an expression
    assert rules.to_finish((w5,)) == float("inf")
    assert rules.to_finish((16,)) == 0  # a sub-expression of height 16
    assert rules.to_finish((16, e)) == float("inf")  # any operator over both is 17 deep


def test_ids_for_types_literals_by_their_slot(vocab: Vocab) -> None:
    ids = vocab.ids_for(["$close", "10", "Mean", "10", "Add"])
    assert [vocab.kinds[i] for i in ids] == ["F", "W", "O", "C", "O"]
