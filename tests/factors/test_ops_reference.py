"""Every operator against the independent pandas reference (tests/factors/pandas_ref.py) on real data."""

from __future__ import annotations

import numpy as np
import pytest

from factors.evaluate import Evaluator
from factors.expr import parse
from factors.ops import OPS
from tests.factors import pandas_ref as pr

RET = "Div($close, Ref($close, 1))"
CASES: dict[str, list[str]] = {
    "unary": ["{op}(Delta($close, 1))", "{op}(Sub($high, $vwap))"],
    "binary": ["{op}($close, $open)", "{op}(Delta($close, 1), 0.5)", "{op}(2, $volume)"],
    "ts": ["{op}($close, 10)", "{op}($volume, 5)", "{op}(" + RET + ", 20)"],
    "ts_pair": ["{op}($close, $volume, 10)", "{op}($high, Delta($low, 1), 5)"],
    "cs": ["{op}($close)", "{op}(Delta($volume, 1))"],
}
POW = ["Pow($close, 2)", "Pow(Delta($close, 1), 0.5)", "Pow($volume, -1)"]


def cases(op: str) -> list[str]:
    if op == "Pow":
        return POW
    return [c.format(op=op) for c in CASES[OPS[op].category]]


def compare(ours: np.ndarray, ref: np.ndarray, what: str, atol: float = 1e-6) -> None:
    nan_a, nan_b = np.isnan(ours), np.isnan(ref)
    bad = nan_a != nan_b
    assert not bad.any(), f"{what}: NaN pattern differs at {np.argwhere(bad)[:5].tolist()}"
    assert (~nan_a).sum() > 0, f"{what}: all NaN (test would be vacuous)"
    scale = np.nanmax(np.abs(ref))
    np.testing.assert_allclose(ours[~nan_a], ref[~nan_b], rtol=2e-5, atol=atol * scale, err_msg=what)


@pytest.fixture(scope="module")
def us(us_panel):
    return us_panel, Evaluator(us_panel), *pr.panel_frame(us_panel)


@pytest.mark.parametrize("op", list(OPS))
def test_operator_matches_pandas_on_us(op, us):
    panel, ev, df, valid, uni = us
    for text in cases(op):
        e = parse(text)
        ours = ev.evaluate(e).numpy().astype(np.float64)
        ref = pr.to_dense(pr.evaluate(e, df, valid, uni), panel)
        compare(ours, ref, text)


def test_every_operator_is_covered():
    assert set(OPS) == {
        "Abs", "Log", "Sign", "Add", "Sub", "Mul", "Div", "Greater", "Less", "Pow", "Ref", "Mean", "Sum", "Std",
        "Var", "Max", "Min", "Med", "Mad", "Delta", "WMA", "EMA", "Skew", "Kurt", "Rank", "IdxMax", "IdxMin",
        "Slope", "Corr", "Cov", "CSRank", "CSZScore"}


@pytest.mark.parametrize("op", [o for o in OPS if OPS[o].category in ("ts", "ts_pair", "cs")])
def test_operator_matches_pandas_on_crypto(op, crypto_panel):
    """Dirty data: missing days, zero volumes, an extra field (market_cap)."""
    ev = Evaluator(crypto_panel)
    df, valid, uni = pr.panel_frame(crypto_panel)
    spec = OPS[op]
    text = {"ts": f"{op}($market_cap, 10)", "ts_pair": f"{op}($close, $volume, 10)", "cs": f"{op}($market_cap)"}[
        spec.category]
    e = ev.parse(text)
    compare(ev.evaluate(e).numpy().astype(np.float64), pr.to_dense(pr.evaluate(e, df, valid, uni), crypto_panel), text)


def test_nested_alpha158_style_matches_pandas(us):
    panel, ev, df, valid, uni = us
    for text in ["Div(Sub($close, Mean($close, 20)), Std($close, 20))",
                 "Corr(CSRank($close), Log(Add($volume, 1)), 10)",
                 "Div(Sub($close, Min($low, 10)), Add(Sub(Max($high, 10), Min($low, 10)), 0.001))",
                 "Sub(Rank(Div($close, Ref($close, 5)), 10), IdxMax($high, 15))"]:
        e = parse(text)
        # nested float32 nodes compound rounding: a looser absolute tolerance (1e-5 of the scale)
        compare(ev.evaluate(e).numpy().astype(np.float64), pr.to_dense(pr.evaluate(e, df, valid, uni), panel), text,
                atol=1e-5)
