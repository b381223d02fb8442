"""Hypothesis strategies: random valid expression trees (as postfix) and random garbage."""

from __future__ import annotations

from hypothesis import strategies as st

from factors.expr import FEATURES
from factors.ops import OPS

WINDOWS = [1, 2, 3, 5, 10, 20]
CONSTS = ["0", "1", "-1", "0.5", "2", "1e-05", "-3.25"]
OP_NAMES = list(OPS)


def _const() -> st.SearchStrategy[list[str]]:
    return st.sampled_from(CONSTS).map(lambda c: [c])


def valid_postfix(max_leaves: int = 6, ops: list[str] | None = None) -> st.SearchStrategy[list[str]]:
    """Random well-typed postfix token lists (windows respect each operator's minimum), with operators
    from ``ops`` (default: all)."""
    leaf = st.sampled_from(FEATURES).map(lambda f: [f])

    def extend(sub: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
        def build(name: str) -> st.SearchStrategy[list[str]]:
            spec = OPS[name]
            parts = []
            for kind in spec.arg_kinds:
                if kind == "expr":
                    parts.append(sub)
                elif kind == "window":
                    parts.append(st.sampled_from([w for w in WINDOWS if w >= spec.min_window]).map(lambda w: [str(w)]))
                elif kind == "const":
                    parts.append(_const())
                else:
                    parts.append(st.one_of(sub, _const()))
            def join(ps: tuple[list[str], ...]) -> list[str]:
                if spec.category == "binary" and all(len(p) == 1 and p[0][0] in "-0123456789" for p in ps):
                    ps = (ps[0], [FEATURES[3]])  # both constant: make one side a feature
                return [t for p in ps for t in p] + [name]
            return st.tuples(*parts).map(join)

        return st.sampled_from(ops or OP_NAMES).flatmap(build)

    return st.recursive(leaf, extend, max_leaves=max_leaves)


TOKEN_SOUP = st.one_of(
    st.sampled_from(OP_NAMES + list(FEATURES) + CONSTS + ["close", "mean", "$nope", "-0", "1e999", "nan", "inf",
                                                            "20.0", "300", "-20", "", " ", "(", ")", ","]),
    st.text(max_size=6),
    st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
)
random_token_lists = st.lists(TOKEN_SOUP, max_size=25)
infix_alphabet = st.sampled_from(list("()$,+-*/.eE 0123456789_") + OP_NAMES + ["close", "open", "volume", "$high"])
random_infix = st.one_of(st.text(max_size=80), st.lists(infix_alphabet, max_size=40).map("".join))
