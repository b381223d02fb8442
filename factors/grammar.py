"""A GBNF grammar (llama.cpp) for factor formulas, generated from the operator registry.

Every string the grammar accepts is a formula that :func:`factors.expr.parse` accepts *and* type-checks,
so a model decoding under it cannot write an invalid factor:

* functional infix with Qlib names, as people type it: ``Div(Sub($close, Mean($close, 20)), Std($close, 20))``;
* operators from :data:`factors.ops.OPS` with their arity and argument kinds: an ``expr`` argument is a
  field or a call, a ``window`` one of ``windows`` at least the operator's ``min_window``, a ``const`` one of
  ``constants``, and an ``expr_or_const`` pair never has only constants (the parser rejects that);
* fields of the panel only (``features``), and the root is always an operator call;
* bounded depth: tree height <= ``max_depth`` (a field is 1, ``Mean($close, 20)`` is 2), which also keeps
  every formula under :data:`factors.expr.MAX_LEN` tokens (checked when the grammar is built).

The grammar does not prefer the fields or windows a request names: that is the prompt's and the
retrieval's job (:mod:`factors.request_intent`). Rule names use only ``[a-z0-9-]`` (GBNF).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from factors.expr import FEATURES, MAX_DEPTH, MAX_LEN, format_number
from factors.ops import MAX_WINDOW, OPS, OpSpec

DEFAULT_WINDOWS = (1, 2, 3, 5, 10, 20, 30, 40, 60, 120, 252)
DEFAULT_CONSTANTS = ("-1", "0.5", "1", "2", "0.01")
DEFAULT_DEPTH = 4


def _lit(text: str) -> str:
    """A GBNF string literal."""
    return json.dumps(text)


def _windows_by_min(windows: Sequence[int], specs: Iterable[OpSpec]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for spec in specs:
        if "window" in spec.arg_kinds and spec.min_window not in out:
            allowed = [w for w in windows if spec.min_window <= w <= MAX_WINDOW]
            if not allowed:
                raise ValueError(f"no allowed window is >= {spec.min_window} (needed by {spec.name})")
            out[spec.min_window] = allowed
    return out


def _arg_sequences(spec: OpSpec, e: str) -> list[list[str]]:
    """Alternatives of argument rule names for one operator (expr_or_const: the first sub-expression
    among them is at position k, constants before it, anything after it)."""
    def one(kind: str, forced: str | None = None) -> str:
        if forced is not None:
            return forced
        return {"expr": e, "const": "const", "window": f"w{spec.min_window}", "expr_or_const": f"({e} | const)"}[kind]

    eoc = [i for i, k in enumerate(spec.arg_kinds) if k == "expr_or_const"]
    if not eoc or "expr" in spec.arg_kinds:
        return [[one(k) for k in spec.arg_kinds]]
    alts = []
    for k in eoc:
        seq = []
        for i, kind in enumerate(spec.arg_kinds):
            forced = "const" if (i in eoc and i < k) else (e if i == k else None)
            seq.append(one(kind, forced))
        alts.append(seq)
    return alts


def _call_alternatives(spec: OpSpec, e: str) -> list[str]:
    sep = ' ", " '
    return [f'{_lit(spec.name + "(")} {sep.join(seq)} {_lit(")")}' for seq in _arg_sequences(spec, e)]


def worst_length(specs: Sequence[OpSpec], depth: int) -> int:
    """Most postfix tokens a formula of tree height ``depth`` can have with these operators."""
    size = 1
    for _ in range(depth - 1):
        size = max(1 + sum(size if k in ("expr", "expr_or_const") else 1 for k in s.arg_kinds) for s in specs)
    return size


def formula_rules(features: Sequence[str] | None = None, *, ops: Sequence[str] | None = None,
                  windows: Sequence[int] = DEFAULT_WINDOWS, constants: Sequence[str] = DEFAULT_CONSTANTS,
                  max_depth: int = DEFAULT_DEPTH) -> str:
    """GBNF rules defining ``formula`` (an operator call of height <= ``max_depth``); no ``root`` rule."""
    feats = [f if f.startswith("$") else f"${f}" for f in (features or FEATURES)]
    specs = [OPS[name] for name in (ops or OPS)]
    if not feats or not specs:
        raise ValueError("a formula grammar needs at least one field and one operator")
    if not 2 <= max_depth <= MAX_DEPTH:
        raise ValueError(f"max_depth must be in 2..{MAX_DEPTH}")
    if worst_length(specs, max_depth) > MAX_LEN:
        raise ValueError(f"max_depth={max_depth} allows formulas longer than {MAX_LEN} tokens")
    consts = [format_number(float(c)) for c in constants]
    lines = [f"feat ::= {' | '.join(_lit(f) for f in feats)}",
             f"const ::= {' | '.join(_lit(c) for c in consts)}"]
    for lo, allowed in sorted(_windows_by_min(sorted(set(int(w) for w in windows)), specs).items()):
        lines.append(f"w{lo} ::= {' | '.join(_lit(str(w)) for w in allowed)}")
    lines.append("e1 ::= feat")
    for d in range(2, max_depth + 1):
        alts = [a for s in specs for a in _call_alternatives(s, f"e{d - 1}")]
        lines.append(f"call{d} ::= " + " | ".join(alts))
        if d < max_depth:
            lines.append(f"e{d} ::= feat | call{d}")
    lines.append(f"formula ::= call{max_depth}")
    return "\n".join(lines) + "\n"


def formula_gbnf(features: Sequence[str] | None = None, **kw: object) -> str:
    """A grammar whose language is exactly one formula (see :func:`formula_rules` for the options)."""
    return "root ::= formula\n" + formula_rules(features, **kw)  # type: ignore[arg-type]


def formulas_gbnf(n: int, features: Sequence[str] | None = None, **kw: object) -> str:
    """A grammar for ``{"formulas": ["...", ...]}`` with exactly ``n`` formulas (the JSON shape of
    :class:`factors.request_llm.Proposal`); see :func:`formula_rules` for the options."""
    if n < 1:
        raise ValueError("n must be >= 1")
    items = " ".join([f"item {_lit(', ')}"] * (n - 1) + ["item"])
    head, tail = _lit('{"formulas": ['), _lit("]}")
    return (f"root ::= {head} {items} {tail}\nitem ::= {_lit(chr(34))} formula {_lit(chr(34))}\n"
            + formula_rules(features, **kw))  # type: ignore[arg-type]
