"""Parsing, printing, canonical form, hashing and validation errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from factors.expr import FEATURES, MAX_LEN, format_number, from_postfix, parse
from factors.ops import OPS
from finllm.errors import ExpressionError
from tests.factors.strategies import valid_postfix


def test_contract_names():
    assert FEATURES == ("$open", "$high", "$low", "$close", "$volume", "$vwap")
    e = parse("Mean($close, 20)")
    assert e.tokens == ("$close", "20", "Mean") and e.infix == "Mean($close, 20)"
    assert e.depth == 2 and e.length == 3 and len(e.key) == 24
    for spec in OPS.values():
        assert spec.category in ("unary", "binary", "ts", "ts_pair", "cs")
        assert all(k in ("expr", "window", "const", "expr_or_const") for k in spec.arg_kinds)
    assert OPS["Corr"].arg_kinds == ("expr", "expr", "window") and OPS["Pow"].arg_kinds == ("expr", "const")


def test_infix_forms_agree():
    a = parse("Div(Sub($close, Mean($close, 20)), Std($close, 20))")
    b = parse("div(sub(close, mean(close, 20)), STD(close, 20.0))")
    c = parse("(close - Mean(close, 20)) / Std(close, 20)")
    assert a == b == c and a.key == b.key == c.key
    assert a.tokens == ("$close", "$close", "20", "Mean", "Sub", "$close", "20", "Std", "Div")
    assert parse("-close").infix == "Mul($close, -1)"
    assert parse("close * -0.50").tokens == ("$close", "-0.5", "Mul")


@pytest.mark.parametrize("v,text", [(20, "20"), (20.0, "20"), (-1, "-1"), (0.5, "0.5"), (1e-5, "1e-05"),
                                    (-0.0, "0"), (2.5e20, "2.5e+20"), (1 / 3, "0.3333333333333333")])
def test_canonical_numbers(v, text):
    assert format_number(v) == text
    assert format_number(float(text)) == text


@settings(max_examples=300, deadline=None)
@given(valid_postfix(max_leaves=8))
def test_round_trip_is_exact(tokens):
    e = from_postfix(tokens)
    assert list(e.tokens) == tokens  # generated tokens are canonical
    assert parse(e.infix).tokens == e.tokens
    assert from_postfix(e.tokens).infix == e.infix
    assert parse(e.infix.replace("$", "")).key == e.key


def test_hash_is_stable_and_distinct():
    assert parse("Mean($close, 20)").key == "d3a6d8f6d4e4b4a3e1e7b2f1"[:0] + parse("Mean(close,20)").key
    keys = {parse(t).key for t in ["Mean($close, 20)", "Mean($close, 10)", "Mean($open, 20)", "Sum($close, 20)"]}
    assert len(keys) == 4
    # stable across processes: blake2b of the tokens joined by \x1f
    import hashlib

    assert parse("Mean($close, 20)").key == hashlib.blake2b("$close\x1f20\x1fMean".encode(), digest_size=12).hexdigest()


@pytest.mark.parametrize("text,token,pos", [
    ("Mean($close, 0)", "0", 13),
    ("Mean($close, 2.5)", "2.5", 13),
    ("Std($close, 1)", "1", 12),
    ("Foo($close)", "Foo", 0),
    ("Mean($close)", "Mean", 0),
    ("Add(1, 2)", "Add", 0),
    ("3", "3", 0),
    ("Mean(5, 10)", "5", 5),
    ("Pow($close, $open)", "$open", 12),
    ("Mean($nope, 5)", "$nope", 5),
    ("close # 2", "#", 6),
    ("Mean($close, 5", "", 14),
    ("Ref($close, -5)", "-5", 12),
    ("Mean($close, 300)", "300", 13),
])
def test_infix_errors_name_token_and_position(text, token, pos):
    with pytest.raises(ExpressionError) as ei:
        parse(text)
    err = ei.value
    assert err.token == token and err.position == pos, str(err)
    assert f"character {pos}" in str(err) and (token == "" or repr(token) in str(err))


@pytest.mark.parametrize("tokens,token,pos", [
    (["$close", "Mean"], "Mean", 1),
    (["$close", "20"], "20", 1),
    (["$close", "5", "mean"], "mean", 2),
    (["20"], "20", 0),
    (["$close", "$open", "Pow"], "$open", 1),
    (["$close", "nan", "Add"], "nan", 1),
    (["$close", "1e999", "Add"], "1e999", 1),
    (["$close", None, "Add"], None, 1),
])
def test_postfix_errors_name_token_and_position(tokens, token, pos):
    with pytest.raises(ExpressionError) as ei:
        from_postfix(tokens)
    assert ei.value.token == token and ei.value.position == pos, str(ei.value)
    assert f"position {pos}" in str(ei.value)


def test_limits():
    deep = "$close"
    for _ in range(20):
        deep = f"Abs({deep})"
    with pytest.raises(ExpressionError, match="max_depth"):
        parse(deep)
    assert parse(deep, max_depth=32).depth == 21
    with pytest.raises(ExpressionError, match=f"max_len={MAX_LEN}"):
        from_postfix(["$close"] + ["Abs"] * MAX_LEN)
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse("(" * 500 + "close" + ")" * 500)


def test_extra_features_and_future_flag():
    e = parse("Mean(market_cap, 5)", features=[*FEATURES, "market_cap"])
    assert e.tokens == ("$market_cap", "5", "Mean")
    with pytest.raises(ExpressionError, match="unknown feature"):
        parse("Mean(market_cap, 5)")
    t = from_postfix(["$close", "-20", "Ref"], allow_future=True)
    assert t.looks_ahead and not parse("Ref($close, 20)").looks_ahead
