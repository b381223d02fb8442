"""Token vocabulary and the stack-based builder that yields invalid-action masks.

A postfix expression is built one token at a time. The builder tracks abstract *items* on the stack:
a sub-expression of height ``h`` (``h``), a constant (:data:`C`), a window ``w`` (:func:`window`). The
type rules are :mod:`factors.expr`'s (:func:`~factors.expr.slot_accepts`: each operator's ``arg_kinds``,
``min_window`` and ``MAX_WINDOW``; at least one sub-expression argument; height at most ``MAX_DEPTH``),
plus the vocabulary's own typing of literals: a window action fills only window slots, a constant action
only the others (a constant's value therefore never matters).

Masks are exact: a token is legal iff afterwards the stack can still reduce to one E within the
length limit (so every allowed sequence parses with :func:`factors.expr.from_postfix`, and every
expression that parses within the limit, with its literals in the vocabulary, is reachable). The minimal
number of tokens to finish, ``g(stack)``, has a closed recursion: the top item must be argument ``j`` of
some operator; arguments ``0..j-1`` are exactly the items just below it (nothing below the top can change
first), arguments ``j+1..`` are fresh (1 token each at best), plus 1 for the operator, then recurse on the
shortened stack with an E on top. ``<end>`` is legal only when the stack is exactly one E.

Heights: an item can grow by at most one level per remaining token, so an E whose height ``h`` satisfies
``h + left <= MAX_DEPTH`` can never break the depth limit; its height is then stored as 0 (unknown,
harmless; counted as 1). Only items that might break it keep their exact height, which keeps
the mask cache about as small as without heights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from factors.expr import MAX_DEPTH, Node, from_postfix, slot_accepts
from factors.ops import OPS

END = "<end>"
# AlphaGen's constant and window sets (windows in trading days).
DEFAULT_CONSTS = ("-30", "-10", "-5", "-2", "-1", "-0.5", "-0.01", "0.01", "0.5", "1", "2", "5", "10", "30")
DEFAULT_WINDOWS = ("5", "10", "20", "40")

# Stack items are ints (cheap to hash: stacks key the mask cache): ``h >= 0`` a sub-expression of height h
# (0: it cannot break the depth limit, see "Heights"), :data:`C` a constant, ``window(w) = -1 - w`` a window.
Item = int
Stack = tuple[int, ...]
C = -1


def window(w: int) -> int:
    """The stack item of window ``w``."""
    return -1 - w


@dataclass(frozen=True)
class Vocab:
    """Action ids -> tokens. ``kinds[i]`` is "F" (feature), "O" (operator), "C", "W" or "END".
    ``const_free``: operators that may not take a constant argument here, though :mod:`factors.expr` allows
    one (a miner's restriction: ``Less(5, $close)`` parses, but a search need not write it)."""

    tokens: tuple[str, ...]
    kinds: tuple[str, ...]
    const_free: frozenset[str] = frozenset()

    @classmethod
    def build(cls, features: Iterable[str], ops: Iterable[str], consts: Iterable[str] = DEFAULT_CONSTS,
              windows: Iterable[str] = DEFAULT_WINDOWS, const_free: Iterable[str] = ()) -> Vocab:
        """``ops``: operator names of :data:`factors.ops.OPS` (a mapping's keys will do); ``const_free``: a
        subset of them that may not take a constant argument."""
        ops = list(ops)
        const_free = frozenset(const_free)
        if const_free - set(ops):
            raise ValueError(f"const_free operator(s) {sorted(const_free - set(ops))} are not in the vocabulary")
        toks: list[str] = []
        kinds: list[str] = []
        for f in features:
            toks.append(f), kinds.append("F")
        for name in ops:
            if name not in OPS:
                raise ValueError(f"unknown operator {name!r}")
            toks.append(name), kinds.append("O")
        for c in consts:
            float(c)  # a number, or ValueError
            toks.append(str(c)), kinds.append("C")
        for w in windows:
            if float(w) != int(float(w)) or int(float(w)) < 1:
                raise ValueError(f"window {w!r} is not a positive integer")
            toks.append(str(w)), kinds.append("W")
        toks.append(END), kinds.append("END")
        return cls(tuple(toks), tuple(kinds), const_free)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def end_id(self) -> int:
        return len(self.tokens) - 1

    def of_kind(self, kind: str) -> list[str]:
        """The tokens of one kind, in action order."""
        return [t for t, k in zip(self.tokens, self.kinds) if k == kind]

    def ids_for(self, tokens: Sequence[str]) -> list[int]:
        """Action ids of a postfix expression (validated by :func:`factors.expr.from_postfix`), a literal
        typed by the slot it fills: a window action in a window slot, a constant action elsewhere."""
        kinds = _action_kinds(from_postfix(tokens, self.of_kind("F"), max_len=len(tokens)).root)
        out = []
        for tok, kind in zip(tokens, kinds):
            cands = [i for i, (t, k) in enumerate(zip(self.tokens, self.kinds))
                     if k == kind and (t == tok or (kind in ("C", "W") and float(t) == float(tok)))]
            if not cands:
                raise KeyError(f"token {tok!r} ({kind}) is not in the vocabulary")
            out.append(cands[0])
        return out


def _action_kinds(node: Node, window_slot: bool = False) -> list[str]:
    """Per postfix token of ``node``: "F", "O", or "W"/"C" for a literal (by the slot it fills)."""
    if node.kind == "feature":
        return ["F"]
    if node.kind == "const":
        return ["W" if window_slot else "C"]
    out: list[str] = []
    for kind, c in zip(OPS[node.token].arg_kinds, node.children):
        out += _action_kinds(c, kind == "window")
    return out + ["O"]


class StackRules:
    """A vocabulary's operators, windows and constants compiled for fast masks (memoised over stacks)."""

    def __init__(self, vocab: Vocab, max_depth: int = MAX_DEPTH) -> None:
        self.max_depth = max_depth
        self.has_feature = bool(vocab.of_kind("F"))
        windows = sorted({int(float(w)) for w in vocab.of_kind("W")})
        has_const = bool(vocab.of_kind("C"))
        self.specs = {name: OPS[name] for name in vocab.of_kind("O")}
        # per operator and slot, from factors.expr's rules: (takes an E, takes a C, the window items it takes)
        self.slots: dict[str, tuple[tuple[bool, bool, frozenset[int]], ...]] = {
            name: tuple((slot_accepts(spec, k, None),
                         kind != "window" and name not in vocab.const_free and slot_accepts(spec, k, 0.0),
                         frozenset(window(w) for w in windows if kind == "window" and slot_accepts(spec, k, float(w))))
                        for k, kind in enumerate(spec.arg_kinds))
            for name, spec in self.specs.items()}
        # ... and whether a fresh single token (a feature, a vocabulary window or constant) can fill it
        self.fresh = {name: tuple((e and self.has_feature) or (c and has_const) or bool(ws) for e, c, ws in slots)
                      for name, slots in self.slots.items()}
        seen: dict[tuple, str] = {}  # operators that behave alike for g(stack): the same slots
        for name, slots in self.slots.items():
            seen.setdefault(slots, name)
        self.distinct = list(seen.values())
        self.leaf: list[Item | None] = [  # the item a feature / constant / window action pushes
            1 if k == "F" else C if k == "C" else window(int(float(t))) if k == "W" else None
            for t, k in zip(vocab.tokens, vocab.kinds)]
        self.mask_cache: dict[tuple[Stack, int], np.ndarray] = {}
        self._finish: dict[Stack, float] = {}

    @staticmethod
    def _fits(slots: tuple[tuple[bool, bool, frozenset[int]], ...], items: Stack) -> bool:
        """Whether ``items`` may be the first ``len(items)`` arguments (the sub-expression rule aside)."""
        for (e_ok, c_ok, ws), it in zip(slots, items):
            if not (e_ok if it >= 0 else c_ok if it == C else it in ws):
                return False
        return True

    def apply(self, stack: Stack, op: str, left: int = 0) -> Stack | None:
        """Stack after applying ``op`` with ``left`` tokens to go (its item's height exact, or 0 when it
        cannot break the depth limit any more), or None when the arguments do not match."""
        slots = self.slots[op]
        n = len(slots)
        if len(stack) < n:
            return None
        items = stack[len(stack) - n:]
        if not self._fits(slots, items) or max(items) < 0:  # max < 0: no sub-expression among them
            return None
        h = 1 + max(max(items), 1)
        if h > self.max_depth:
            return None
        return stack[:len(stack) - n] + ((0 if h + left <= self.max_depth else h),)

    def push(self, stack: Stack, item: int, left: int) -> Stack:
        """``stack`` with a leaf ``item`` on top (a feature's height 0 when it cannot break the depth limit
        in ``left`` more tokens)."""
        return stack + ((0 if item == 1 and 1 + left <= self.max_depth else item),)

    def settle(self, stack: Stack, left: int) -> Stack:
        """``stack`` with the heights that can no longer break the depth limit in ``left`` more tokens set
        to 0 (fewer distinct stacks: more hits in the mask cache)."""
        top = max(stack, default=0)
        if top <= 0 or top + left > self.max_depth and min(it for it in stack if it > 0) + left > self.max_depth:
            return stack
        return tuple(0 if 0 < it and it + left <= self.max_depth else it for it in stack)

    def to_finish(self, stack: Stack) -> float:
        """Minimal number of tokens (not counting <end>) that reduce ``stack`` to one E; inf if none."""
        hit = self._finish.get(stack)
        if hit is None:
            hit = self._finish[stack] = self._to_finish(stack)
        return hit

    def _to_finish(self, stack: Stack) -> float:
        if len(stack) == 1 and stack[0] >= 0:
            return 0
        if not stack:
            return 1 if self.has_feature else math.inf
        best = math.inf
        h = len(stack)
        for name in self.distinct:
            slots, fresh = self.slots[name], self.fresh[name]
            n = len(slots)
            for j in range(min(n, h)):  # top item is argument j
                if j == 0 and stack[-1] >= 0:
                    continue  # an E consumed first by an operator: the same stack with a taller top
                below = stack[h - 1 - j:h]  # args 0..j
                if not self._fits(slots, below) or not all(fresh[j + 1:]):
                    continue
                if max(below) < 0 and not (self.has_feature and any(e for e, _, _ in slots[j + 1:])):
                    continue  # no sub-expression argument possible
                height = 1 + max(max(below), 1)
                if height > self.max_depth:
                    continue
                rest = self.to_finish(stack[:h - 1 - j] + (height,))
                best = min(best, n - 1 - j + 1 + rest)
        return best


_RULES: dict[int, tuple[Vocab, StackRules]] = {}


def rules_for(vocab: Vocab) -> StackRules:
    """One :class:`StackRules` (and so one mask cache) per vocabulary, shared by all its builders."""
    hit = _RULES.get(id(vocab))
    if hit is None or hit[0] is not vocab:
        hit = _RULES[id(vocab)] = (vocab, StackRules(vocab))
    return hit[1]


class Builder:
    """Incremental postfix builder over a :class:`Vocab` with a length limit ``max_len`` (tokens)."""

    def __init__(self, vocab: Vocab, max_len: int = 20) -> None:
        self.vocab, self.max_len = vocab, max_len
        self.rules = rules_for(vocab)
        self.reset()

    def reset(self) -> None:
        self.ids: list[int] = []
        self.stack: Stack = ()

    @property
    def tokens(self) -> list[str]:
        return [self.vocab.tokens[i] for i in self.ids]

    def mask(self) -> list[bool]:
        """Legal actions now (one bool per vocabulary entry)."""
        return list(self.mask_array())

    def mask_array(self) -> np.ndarray:
        """:meth:`mask` as a shared read-only bool array (no copy)."""
        return _mask(self.rules, self.vocab, self.stack, self.max_len - len(self.ids))

    def done(self) -> bool:
        return len(self.stack) == 1 and self.stack[0] >= 0

    def step(self, a: int) -> None:
        if self.vocab.kinds[a] == "END":
            if not self.done():
                raise ValueError("<end> with an incomplete expression")
            return
        left = self.max_len - len(self.ids)
        new = _after(self.rules, self.vocab, self.stack, a, left - 1) if left > 0 else None
        if new is None:
            raise ValueError(f"illegal token {self.vocab.tokens[a]!r} after {self.tokens}")
        self.ids.append(a)
        self.stack = self.rules.settle(new, left - 1)


def _after(rules: StackRules, vocab: Vocab, stack: Stack, a: int, left: int) -> Stack | None:
    """The stack after action ``a`` with ``left`` tokens to go, or None if its arguments do not match."""
    item = rules.leaf[a]
    if item is not None:
        return rules.push(stack, item, left)
    return rules.apply(stack, vocab.tokens[a], left)


def _mask(rules: StackRules, vocab: Vocab, stack: Stack, left: int) -> np.ndarray:
    key = (stack, left)
    hit = rules.mask_cache.get(key)
    if hit is None:
        out = []
        for a, kind in enumerate(vocab.kinds):
            if kind == "END":
                out.append(len(stack) == 1 and stack[0] >= 0)
                continue
            new = _after(rules, vocab, stack, a, left - 1) if left > 0 else None
            out.append(new is not None and rules.to_finish(rules.settle(new, left - 1)) <= left - 1)
        hit = np.asarray(out, dtype=bool)
        hit.flags.writeable = False
        rules.mask_cache[key] = hit
    return hit
