"""Factor expressions: postfix tokens (canonical) <-> tree <-> infix (readable), validation, hashing.

Canonical form: a postfix (reverse Polish) token list, arguments in order then the operator, e.g.
``("$close", "20", "Mean")`` for ``Mean($close, 20)`` and ``("$close", "$volume", "10", "Corr")`` for
``Corr($close, $volume, 10)``. Token kinds:

* features: ``"$open"``, ``"$high"``, ``"$low"``, ``"$close"``, ``"$volume"``, ``"$vwap"`` (+ any extra
  numeric field of the panel, passed as ``features=``); ``close`` without ``$`` is accepted on input;
* numeric literals in the canonical number format (:func:`format_number`): integers without a decimal
  point (``"20"``, ``"-1"``), other numbers as Python's shortest round-trip ``repr`` (``"0.5"``,
  ``"1e-05"``). The operator's ``arg_kinds`` decide whether a literal is a window or a constant;
* operator names from :data:`factors.ops.OPS` (Qlib names, case-sensitive in postfix).

Infix input accepts ``$close`` or ``close``, case-insensitive operator names, and ``+ - * /`` and unary
minus (mapped to Add/Sub/Mul/Div and ``Mul(x, -1)``); the printed infix is always the functional form,
so ``parse(e.infix).tokens == e.tokens`` and ``from_postfix(e.tokens).infix == e.infix`` exactly.

Errors raise :class:`finllm.errors.ExpressionError` whose message names the token and its 0-based
position (the token index for postfix input, the character offset for infix input); the exception
also carries ``.token`` and ``.position``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from factors.ops import MAX_WINDOW, OPS, OpSpec
from finllm.errors import ExpressionError

BASE_FEATURES = ("open", "high", "low", "close", "volume", "vwap")
FEATURES: tuple[str, ...] = tuple(f"${f}" for f in BASE_FEATURES)
MAX_LEN = 64  # tokens
MAX_DEPTH = 16  # tree height: a feature or literal is 1, Mean($close, 20) is 2
MAX_TEXT = 4096  # characters of infix input

_NUM_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_NAME_RE = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]*\Z")
_OPS_LOWER = {k.lower(): k for k in OPS}


def _error(msg: str, token: object, position: int | None) -> ExpressionError:
    err = ExpressionError(msg)
    err.token = token  # type: ignore[attr-defined]
    err.position = position  # type: ignore[attr-defined]
    return err


def format_number(v: float) -> str:
    """Canonical literal text: integers as ``"20"``/``"-1"``, others as the shortest round-trip repr."""
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"not a finite number: {v}")
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


@dataclass(frozen=True, eq=False)
class Node:
    """A node of the expression tree. ``kind`` is "feature", "const" or "op"."""

    kind: str
    token: str
    children: tuple[Node, ...] = ()
    value: float | None = None  # for "const"
    postfix: tuple[str, ...] = ()
    depth: int = 1

    @property
    def spec(self) -> OpSpec:
        return OPS[self.token]

    @property
    def key(self) -> str:
        return _hash(self.postfix)

    def infix(self) -> str:
        if self.kind != "op":
            return self.token
        return f"{self.token}({', '.join(c.infix() for c in self.children)})"


def _hash(tokens: Sequence[str]) -> str:
    return hashlib.blake2b("\x1f".join(tokens).encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class Expr:
    """An immutable, validated factor expression. Equality and hash follow the canonical tokens."""

    tokens: tuple[str, ...]
    infix: str = field(compare=False)
    key: str = field(compare=False)
    depth: int = field(compare=False)
    length: int = field(compare=False)
    root: Node = field(compare=False, repr=False)
    looks_ahead: bool = field(compare=False, default=False)  # uses Ref with a negative window

    def __str__(self) -> str:
        return self.infix

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(sorted({t for t in self.tokens if t.startswith("$")}))


def _feature_map(features: Sequence[str] | None) -> dict[str, str]:
    """Lower-cased name with and without ``$`` -> canonical ``$name``."""
    out: dict[str, str] = {}
    for f in FEATURES if features is None else features:
        f = str(f)
        canon = f if f.startswith("$") else f"${f}"
        out[canon.lower()] = canon
        out[canon[1:].lower()] = canon
    return out


def _kind_text(kind: str, spec: OpSpec, allow_future: bool) -> str:
    if kind == "window":
        lo = spec.min_window
        neg = " (or a negative lag, for targets)" if allow_future and spec.name == "Ref" else ""
        return f"a window (integer literal {lo}..{MAX_WINDOW}){neg}"
    return {"expr": "a sub-expression", "const": "a numeric constant",
            "expr_or_const": "a sub-expression or a constant"}[kind]


def _signature(spec: OpSpec) -> str:
    return f"{spec.name}({', '.join(spec.arg_kinds)})"


# ----------------------------------------------------------------------------------------------------
# the type rules (also the RL action masks' and GP's: factors.rl.builder, factors.gp)
# ----------------------------------------------------------------------------------------------------


def window_ok(spec: OpSpec, v: float, allow_future: bool = False) -> bool:
    """Whether literal ``v`` may be ``spec``'s window: an integer, ``spec.min_window <= |v| <= MAX_WINDOW``,
    negative only for ``Ref`` in a target (``allow_future``)."""
    if v != int(v) or not spec.min_window <= abs(v) <= MAX_WINDOW:
        return False
    return v > 0 or (allow_future and spec.name == "Ref")


def slot_accepts(spec: OpSpec, slot: int, lit: float | None, allow_future: bool = False) -> bool:
    """Whether argument ``slot`` of ``spec`` may be a sub-expression (``lit`` None) or the literal ``lit``.
    (An operator also needs at least one sub-expression argument; the tree's height is at most
    ``MAX_DEPTH``.)"""
    kind = spec.arg_kinds[slot]
    if lit is None:
        return kind in ("expr", "expr_or_const")
    if kind == "window":
        return window_ok(spec, lit, allow_future)
    return kind != "expr"


def feature(token: str) -> Node:
    """A feature leaf (``token`` canonical, e.g. ``"$close"``)."""
    return Node("feature", token, (), None, (token,), 1)


def literal(v: float) -> Node:
    """A numeric literal leaf, in the canonical number format."""
    canon = format_number(v)
    return Node("const", canon, (), float(v), (canon,), 1)


def op_node(token: str, children: Sequence[Node]) -> Node:
    """Operator ``token`` over ``children`` (not checked: :func:`from_postfix` of its postfix checks)."""
    kids = tuple(children)
    post = tuple(t for c in kids for t in c.postfix) + (token,)
    return Node("op", token, kids, None, post, 1 + max(c.depth for c in kids))


def _build(tokens: Sequence[object], features: Sequence[str] | None, max_len: int, max_depth: int,
           allow_future: bool, positions: Sequence[int] | None = None) -> Expr:
    where = "character" if positions is not None else "position"

    def pos(i: int) -> int:
        return positions[i] if positions is not None else i

    if isinstance(tokens, (str, bytes)):
        raise _error("postfix input must be a sequence of tokens, not one string "
                     "(use factors.expr.parse for infix text)", tokens, None)
    toks = list(tokens)
    if not toks:
        raise _error("empty expression", "", 0)
    if len(toks) > max_len:
        raise _error(f"expression has {len(toks)} tokens, more than max_len={max_len} "
                     f"(token {toks[max_len]!r} at {where} {pos(max_len)})", toks[max_len], pos(max_len))
    fmap = _feature_map(features)
    stack: list[tuple[Node, int]] = []  # (node, index of the token that produced it)
    looks_ahead = False
    for i, raw in enumerate(toks):
        p = pos(i)
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise _error(f"token {raw!r} at {where} {p} is not a string", raw, p)
        if isinstance(raw, (int, float)):
            if not math.isfinite(raw):
                raise _error(f"number {raw!r} at {where} {p} is not finite", raw, p)
            tok = format_number(raw)
        else:
            tok = raw.strip()
        if tok in OPS:
            spec = OPS[tok]
            if len(stack) < spec.arity:
                raise _error(f"operator {tok!r} at {where} {p} needs {spec.arity} arguments "
                             f"{_signature(spec)} but only {len(stack)} precede it", tok, p)
            args = stack[len(stack) - spec.arity:]
            del stack[len(stack) - spec.arity:]
            for k, (kind, (child, ci)) in enumerate(zip(spec.arg_kinds, args)):
                lit = child.value if child.kind == "const" else None
                if slot_accepts(spec, k, lit, allow_future):
                    looks_ahead |= kind == "window" and lit is not None and lit < 0
                    continue
                sig = "" if kind == "window" and lit is not None else f" [{_signature(spec)}]"
                raise _error(f"{tok!r} at {where} {p}: argument {k + 1} {child.token!r} at {where} "
                             f"{pos(ci)} must be {_kind_text(kind, spec, allow_future)}{sig}",
                             child.token, pos(ci))
            children = tuple(c for c, _ in args)
            if not any(c.kind != "const" for c in children):
                raise _error(f"{tok!r} at {where} {p} has only constant arguments (a constant is not a "
                             f"factor)", tok, p)
            node = op_node(tok, children)
            if node.depth > max_depth:
                raise _error(f"{tok!r} at {where} {p} makes the expression deeper than max_depth="
                             f"{max_depth}", tok, p)
            stack.append((node, i))
            continue
        if _NUM_RE.match(tok):
            v = float(tok)
            if not math.isfinite(v):
                raise _error(f"number {tok!r} at {where} {p} is not finite", tok, p)
            stack.append((literal(v), i))
            continue
        if _NAME_RE.match(tok):
            canon = fmap.get(tok.lower())
            if canon is not None:
                stack.append((feature(canon), i))
                continue
            if tok.lower() in _OPS_LOWER:
                raise _error(f"unknown operator {tok!r} at {where} {p}; did you mean "
                             f"{_OPS_LOWER[tok.lower()]!r}? (operator names are case-sensitive)", tok, p)
            known = ", ".join(sorted(set(fmap.values())))
            raise _error(f"unknown feature or operator {tok!r} at {where} {p} (features: {known}; "
                         f"operators: {', '.join(OPS)})", tok, p)
        raise _error(f"invalid token {tok!r} at {where} {p}", tok, p)
    if len(stack) != 1:
        node, ci = stack[-1] if stack else (None, 0)
        raise _error(f"incomplete expression: {len(stack)} values left after the last token "
                     f"{toks[-1]!r} at {where} {pos(len(toks) - 1)} (an operator is missing)",
                     toks[-1], pos(len(toks) - 1))
    root, _ = stack[0]
    if root.kind == "const":
        raise _error(f"a constant alone is not a factor (token {root.token!r} at {where} {pos(0)})",
                     root.token, pos(0))
    return Expr(tokens=root.postfix, infix=root.infix(), key=_hash(root.postfix), depth=root.depth,
                length=len(root.postfix), root=root, looks_ahead=looks_ahead)


def from_postfix(tokens: Sequence[str], features: Sequence[str] | None = None, max_len: int = MAX_LEN,
                 max_depth: int = MAX_DEPTH, allow_future: bool = False) -> Expr:
    """Validate a postfix token list into an :class:`Expr`. ``allow_future`` permits ``Ref`` with a
    negative window (forward-looking: for targets only, never for factors)."""
    return _build(tokens, features, max_len, max_depth, allow_future)


# ----------------------------------------------------------------------------------------------------
# infix
# ----------------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>\$?[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>[(),+\-*/]))")
_MAX_NEST = 100


def _lex(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        m = _TOKEN_RE.match(text, i)
        if m is None or m.end() == i:
            ch = text[i]
            raise _error(f"unexpected character {ch!r} at character {i}", ch, i)
        kind = m.lastgroup
        assert kind is not None
        start = m.start(kind)
        out.append((kind, m.group(kind), start))
        i = m.end()
    return out


class _Parser:
    """Recursive descent over infix text, producing postfix tokens with their character offsets."""

    def __init__(self, text: str, features: Sequence[str] | None):
        self.text = text
        self.toks = _lex(text)
        self.i = 0
        self.out: list[str] = []
        self.pos: list[int] = []
        self.nest = 0
        self.fmap = _feature_map(features)

    def peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def fail_here(self, what: str) -> ExpressionError:
        t = self.peek()
        if t is None:
            return _error(f"unexpected end of expression at character {len(self.text)}: expected {what}",
                          "", len(self.text))
        return _error(f"unexpected {t[1]!r} at character {t[2]}: expected {what}", t[1], t[2])

    def expect(self, value: str) -> None:
        t = self.peek()
        if t is None or t[1] != value:
            raise self.fail_here(repr(value))
        self.i += 1

    def emit(self, tok: str, p: int) -> None:
        self.out.append(tok)
        self.pos.append(p)

    def parse(self) -> None:
        if not self.toks:
            raise _error("empty expression", "", 0)
        self.expr()
        if self.peek() is not None:
            raise self.fail_here("an operator such as + - * / or the end")

    def enter(self) -> None:
        self.nest += 1
        if self.nest > _MAX_NEST:
            t = self.peek()
            raise _error(f"expression nested deeper than {_MAX_NEST} at character "
                         f"{t[2] if t else len(self.text)}", t[1] if t else "", t[2] if t else len(self.text))

    def expr(self) -> None:
        self.enter()
        self.term()
        while (t := self.peek()) is not None and t[1] in "+-" and t[0] == "punct":
            self.i += 1
            self.term()
            self.emit("Add" if t[1] == "+" else "Sub", t[2])
        self.nest -= 1

    def term(self) -> None:
        self.unary()
        while (t := self.peek()) is not None and t[1] in "*/" and t[0] == "punct":
            self.i += 1
            self.unary()
            self.emit("Mul" if t[1] == "*" else "Div", t[2])

    def unary(self) -> None:
        t = self.peek()
        if t is not None and t[0] == "punct" and t[1] in "+-":
            self.i += 1
            nxt = self.peek()
            if nxt is not None and nxt[0] == "num":
                self.i += 1
                self.emit(t[1] + nxt[1] if t[1] == "-" else nxt[1], t[2])
                return
            self.enter()
            self.unary()
            self.nest -= 1
            if t[1] == "-":
                self.emit("-1", t[2])
                self.emit("Mul", t[2])
            return
        self.atom()

    def atom(self) -> None:
        t = self.peek()
        if t is None:
            raise self.fail_here("a feature, a number, an operator call or '('")
        kind, val, p = t
        if kind == "num":
            self.i += 1
            self.emit(val, p)
            return
        if kind == "punct" and val == "(":
            self.i += 1
            self.expr()
            self.expect(")")
            return
        if kind == "name":
            self.i += 1
            nxt = self.peek()
            if nxt is not None and nxt[1] == "(":
                name = val if val in OPS else _OPS_LOWER.get(val.lower())
                if name is None:
                    raise _error(f"unknown operator {val!r} at character {p} (operators: {', '.join(OPS)})",
                                 val, p)
                spec = OPS[name]
                self.i += 1
                for k in range(spec.arity):
                    if k:
                        t2 = self.peek()
                        if t2 is not None and t2[1] == ")":
                            raise _error(f"{name!r} at character {p} takes {spec.arity} arguments "
                                         f"{_signature(spec)}, got {k}", name, p)
                        self.expect(",")
                    self.expr()
                t2 = self.peek()
                if t2 is not None and t2[1] == ",":
                    raise _error(f"{name!r} at character {p} takes {spec.arity} arguments {_signature(spec)}, "
                                 f"got more (extra ',' at character {t2[2]})", name, p)
                self.expect(")")
                self.emit(name, p)
                return
            if val in OPS or val.lower() in _OPS_LOWER:
                name = val if val in OPS else _OPS_LOWER[val.lower()]
                raise _error(f"operator {val!r} at character {p} needs arguments: {_signature(OPS[name])}",
                             val, p)
            canon = self.fmap.get(val.lower())
            if canon is None:
                known = ", ".join(sorted(set(self.fmap.values())))
                raise _error(f"unknown feature {val!r} at character {p} (features: {known})", val, p)
            self.emit(canon, p)
            return
        raise self.fail_here("a feature, a number, an operator call or '('")


def parse(text: str, features: Sequence[str] | None = None, max_len: int = MAX_LEN,
          max_depth: int = MAX_DEPTH, allow_future: bool = False) -> Expr:
    """Parse infix text such as ``Div(Sub($close, Mean($close, 20)), Std($close, 20))`` (``$`` optional,
    ``+ - * /`` accepted) into a validated :class:`Expr`."""
    if not isinstance(text, str):
        raise _error(f"expression text must be a string, got {type(text).__name__}", text, None)
    if len(text) > MAX_TEXT:
        raise _error(f"expression text longer than {MAX_TEXT} characters (character {MAX_TEXT})",
                     text[MAX_TEXT], MAX_TEXT)
    p = _Parser(text, features)
    p.parse()
    return _build(p.out, features, max_len, max_depth, allow_future, positions=p.pos)


def to_expr(obj: Expr | str | Sequence[str], features: Sequence[str] | None = None,
            allow_future: bool = False) -> Expr:
    """Coerce an :class:`Expr`, infix text or a postfix token list to an :class:`Expr`."""
    if isinstance(obj, Expr):
        if obj.looks_ahead and not allow_future:
            raise _error(f"{obj.infix}: Ref with a negative window looks into the future "
                         f"(allowed only in targets)", obj.infix, None)
        return obj
    if isinstance(obj, str):
        return parse(obj, features, allow_future=allow_future)
    return from_postfix(obj, features, allow_future=allow_future)


# ----------------------------------------------------------------------------------------------------
# needed history
# ----------------------------------------------------------------------------------------------------


def node_history(node: Node) -> int:
    """:func:`needed_history` of one tree node."""
    if node.kind != "op":
        return 0
    spec = OPS[node.token]
    below = max(node_history(c) for c in node.children)
    if spec.category not in ("ts", "ts_pair"):
        return below  # element-wise and cross-sectional operators read day t only
    w = node.children[-1].value
    assert w is not None
    return below + spec.lookback(int(w))


def needed_history(expr: Expr | str | Sequence[str], features: Sequence[str] | None = None) -> int:
    """Trading days of panel history before a day t that ``expr`` needs so that its value at t is exact,
    i.e. the same as with any longer history (bit for bit up to the float64 summation order of the
    block kernels, i.e. within float32 rounding).

    The rule, on the tree: a feature or a literal needs 0; an element-wise or cross-sectional operator
    needs the maximum of its arguments; a window operator with window ``w`` reads days ``t-w+1 .. t``
    of its inputs, so it adds ``w - 1`` to the maximum of its arguments (``Corr(x, y, w)``: max of x, y,
    plus ``w - 1``); ``Ref(x, d)`` and ``Delta(x, d)`` read day ``t-d``, so they add ``d`` (0 for a
    negative ``d``, which reads the future: targets only). Nested windows add up:
    ``Mean(Ref($close, 5), 20)`` needs ``5 + 19 = 24`` days. No operator depends on all history
    (``EMA`` is truncated to its window). ``expr``: an :class:`Expr`, infix text or postfix tokens."""
    e = expr if isinstance(expr, Expr) else to_expr(expr, features, allow_future=True)
    return node_history(e.root)


def needed_history_tokens(tokens: Sequence[str], features: Sequence[str] | None = None) -> int:
    """:func:`needed_history` of a postfix token list (as the pools hold their members). A feature needs no
    history whatever it is, so with ``features`` None every ``$name`` token counts as one."""
    if features is None:
        features = sorted(set(FEATURES) | {t for t in tokens if isinstance(t, str) and t.startswith("$")})
    return node_history(from_postfix(tokens, features, max_len=max(MAX_LEN, len(tokens)), allow_future=True).root)

