"""Token vocabulary and the stack-based builder that yields invalid-action masks.

A postfix expression is built one token at a time. The builder tracks the *kinds* on the stack:
``E`` (an expression), ``C`` (a constant), ``W`` (a window). An operator pops its arguments, which
must match its ``arg_kinds`` ("expr" <- E, "const" <- C, "window" <- W, "expr_or_const" <- E|C, and
at least one argument must be an E so constants never combine alone), and pushes an E.

Masks are exact: a token is legal iff afterwards the stack can still reduce to one E within the
length limit. The minimal number of tokens to finish, ``g(stack)``, has a closed recursion: the
top item must be argument ``j`` of some operator; arguments ``0..j-1`` are exactly the items just
below it (nothing below the top can change first), arguments ``j+1..`` are fresh (1 token each at
best), plus 1 for the operator, then recurse on the shortened stack with an E on top. ``<end>`` is
legal only when the stack is exactly ``(E,)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

END = "<end>"
# AlphaGen's constant and window sets (windows in trading days).
DEFAULT_CONSTS = ("-30", "-10", "-5", "-2", "-1", "-0.5", "-0.01", "0.01", "0.5", "1", "2", "5", "10", "30")
DEFAULT_WINDOWS = ("5", "10", "20", "40")

_ACCEPT = {"expr": "E", "const": "C", "window": "W", "expr_or_const": "EC"}


@dataclass(frozen=True)
class Vocab:
    """Action ids -> tokens. ``kinds[i]`` is "F" (feature), "O" (operator), "C", "W" or "END"."""

    tokens: tuple[str, ...]
    kinds: tuple[str, ...]
    signatures: Mapping[str, tuple[str, ...]]  # operator -> arg_kinds

    @classmethod
    def build(cls, features: Iterable[str], ops: Mapping[str, Sequence[str]],
              consts: Iterable[str] = DEFAULT_CONSTS, windows: Iterable[str] = DEFAULT_WINDOWS) -> Vocab:
        toks: list[str] = []
        kinds: list[str] = []
        for f in features:
            toks.append(f), kinds.append("F")
        sigs = {}
        for name, arg_kinds in ops.items():
            bad = [k for k in arg_kinds if k not in _ACCEPT]
            if bad:
                raise ValueError(f"operator {name}: unknown arg kind {bad[0]!r}")
            sigs[name] = tuple(arg_kinds)
            toks.append(name), kinds.append("O")
        for c in consts:
            toks.append(str(c)), kinds.append("C")
        for w in windows:
            toks.append(str(w)), kinds.append("W")
        toks.append(END), kinds.append("END")
        return cls(tuple(toks), tuple(kinds), sigs)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def end_id(self) -> int:
        return len(self.tokens) - 1

    def ids_for(self, tokens: Sequence[str]) -> list[int]:
        """Map a postfix token list back to action ids, typing literals by their consumer.

        A literal is a window if its consumer's arg kind at that position is "window", else a const.
        """
        kinds = literal_kinds(tokens, self.signatures)
        out = []
        for tok, kind in zip(tokens, kinds):
            cands = [i for i, (t, k) in enumerate(zip(self.tokens, self.kinds)) if t == tok and k == kind]
            if not cands:
                raise KeyError(f"token {tok!r} ({kind}) is not in the vocabulary")
            out.append(cands[0])
        return out


def literal_kinds(tokens: Sequence[str], sigs: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Kind of each postfix token: "O" operator, "C"/"W" literal (typed by its consumer), "F" otherwise."""
    kinds = ["F"] * len(tokens)
    stack: list[int] = []  # positions of the roots of pending subtrees
    for i, tok in enumerate(tokens):
        if tok in sigs:
            kinds[i] = "O"
            n = len(sigs[tok])
            args = stack[len(stack) - n:] if n else []
            del stack[len(stack) - n:]
            for pos, kind in zip(args, sigs[tok]):
                if kinds[pos] == "L":
                    kinds[pos] = "W" if kind == "window" else "C"
            stack.append(i)
        else:
            if _is_number(tok):
                kinds[i] = "L"
            stack.append(i)
    return ["C" if k == "L" else k for k in kinds]


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


class StackRules:
    """Operator signatures compiled for fast mask computation (memoised over abstract stacks)."""

    def __init__(self, signatures: Mapping[str, tuple[str, ...]]) -> None:
        self.sigs = {name: tuple(_ACCEPT[k] for k in kinds) for name, kinds in signatures.items()}
        self.distinct = sorted(set(self.sigs.values()))
        self.mask_cache: dict[tuple, np.ndarray] = {}
        self._finish: dict[tuple[str, ...], float] = {}

    @staticmethod
    def _fits(accepts: tuple[str, ...], items: tuple[str, ...]) -> bool:
        return all(it in acc for acc, it in zip(accepts, items)) and "E" in items

    def apply(self, stack: tuple[str, ...], op: str) -> tuple[str, ...] | None:
        """Stack after applying ``op``, or None when its arguments do not match."""
        acc = self.sigs[op]
        n = len(acc)
        if len(stack) < n:
            return None
        items = stack[len(stack) - n:]
        if not self._fits(acc, items):
            return None
        return stack[:len(stack) - n] + ("E",)

    def to_finish(self, stack: tuple[str, ...]) -> float:
        """Minimal number of tokens (not counting <end>) that reduce ``stack`` to ``(E,)``; inf if none."""
        hit = self._finish.get(stack)
        if hit is None:
            hit = self._finish[stack] = self._to_finish(stack)
        return hit

    def _to_finish(self, stack: tuple[str, ...]) -> float:
        if stack == ("E",):
            return 0
        if not stack:
            return 1
        best = math.inf
        h = len(stack)
        for acc in self.distinct:
            n = len(acc)
            for j in range(n):  # top item is argument j
                if j > h - 1:
                    break
                below = stack[h - 1 - j:h]  # args 0..j
                if not all(it in a for a, it in zip(acc[:j + 1], below)):
                    continue
                fresh = acc[j + 1:]
                if not all(("E" in a) or ("C" in a) or ("W" in a) for a in fresh):
                    continue
                has_e = "E" in below or any("E" in a for a in fresh)
                if not has_e:
                    continue
                nxt = stack[:h - 1 - j] + ("E",)
                if nxt == stack:  # consuming an E at position 0 of an operator makes no progress
                    continue
                rest = self.to_finish(nxt)
                best = min(best, len(fresh) + 1 + rest)
        return best


_RULES: dict[int, tuple[Vocab, StackRules]] = {}


def rules_for(vocab: Vocab) -> StackRules:
    """One :class:`StackRules` (and so one mask cache) per vocabulary, shared by all its builders."""
    hit = _RULES.get(id(vocab))
    if hit is None or hit[0] is not vocab:
        hit = _RULES[id(vocab)] = (vocab, StackRules(vocab.signatures))
    return hit[1]


class Builder:
    """Incremental postfix builder over a :class:`Vocab` with a length limit ``max_len`` (tokens)."""

    def __init__(self, vocab: Vocab, max_len: int = 20) -> None:
        self.vocab, self.max_len = vocab, max_len
        self.rules = rules_for(vocab)
        self.reset()

    def reset(self) -> None:
        self.ids: list[int] = []
        self.stack: tuple[str, ...] = ()

    @property
    def tokens(self) -> list[str]:
        return [self.vocab.tokens[i] for i in self.ids]

    def _after(self, a: int) -> tuple[str, ...] | None:
        kind = self.vocab.kinds[a]
        if kind == "F":
            return self.stack + ("E",)
        if kind in ("C", "W"):
            return self.stack + (kind,)
        if kind == "O":
            return self.rules.apply(self.stack, self.vocab.tokens[a])
        return None

    def mask(self) -> list[bool]:
        """Legal actions now (one bool per vocabulary entry)."""
        return list(_mask(self.rules, self.vocab, self.stack, self.max_len - len(self.ids)))

    def mask_array(self) -> np.ndarray:
        """:meth:`mask` as a shared read-only bool array (no copy)."""
        return _mask(self.rules, self.vocab, self.stack, self.max_len - len(self.ids))

    def done(self) -> bool:
        return self.stack == ("E",)

    def step(self, a: int) -> None:
        if self.vocab.kinds[a] == "END":
            if not self.done():
                raise ValueError("<end> with an incomplete expression")
            return
        new = self._after(a)
        if new is None or len(self.ids) >= self.max_len:
            raise ValueError(f"illegal token {self.vocab.tokens[a]!r} after {self.tokens}")
        self.ids.append(a)
        self.stack = new


def _mask(rules: StackRules, vocab: Vocab, stack: tuple[str, ...], left: int) -> np.ndarray:
    key = (id(vocab), stack, left)
    hit = rules.mask_cache.get(key)
    if hit is None:
        out = []
        for a, kind in enumerate(vocab.kinds):
            if kind == "END":
                out.append(stack == ("E",))
                continue
            if left <= 0:
                out.append(False)
                continue
            if kind == "F":
                new: tuple[str, ...] | None = stack + ("E",)
            elif kind in ("C", "W"):
                new = stack + (kind,)
            else:
                new = rules.apply(stack, vocab.tokens[a])
            out.append(new is not None and rules.to_finish(new) <= left - 1)
        hit = np.asarray(out, dtype=bool)
        hit.flags.writeable = False
        rules.mask_cache[key] = hit
    return hit
