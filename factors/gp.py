"""Genetic-programming baseline over the same tokens, operators, features and scorer as the RL miner.

Individuals are expression trees over the RL vocabulary (:class:`factors.rl.builder.Vocab`: same
features, operators, constants and windows, same ``max_len``). Fitness is the factor's |train IC|
(gplearn-style, each factor judged alone, which is what the RL pool reward improves on). Every
evaluated factor is also offered to an :class:`~factors.pool.AlphaPool` with the same capacity and
admission rules as the RL run, so the GP's pool is built from its best *diverse* factors.

Operators (``GPConfig``): tournament selection (size 5) with elitism; subtree crossover (p 0.6),
subtree mutation (0.2), point mutation of an operator/window/constant (0.15), else reproduction.
Offspring longer than ``max_len`` or invalid are replaced by a fresh random tree. Runs until the
wall-clock budget or ``max_evals`` is spent (a generation is cut short at the deadline).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from factors.rl.builder import Vocab, literal_kinds
from factors.rl.scorer import PoolScorer
from finllm.errors import ExpressionError


@dataclass
class GPConfig:
    population: int = 100
    tournament: int = 5
    elitism: int = 5
    p_crossover: float = 0.6
    p_subtree: float = 0.2
    p_point: float = 0.15
    init_depth: int = 4
    p_const_arg: float = 0.2  # chance an expr_or_const argument is a constant
    max_len: int = 20


class Node:
    __slots__ = ("tok", "kind", "kids")

    def __init__(self, tok: str, kind: str, kids: list[Node] | None = None) -> None:
        self.tok, self.kind, self.kids = tok, kind, kids or []

    def postfix(self) -> list[str]:
        out: list[str] = []
        for k in self.kids:
            out += k.postfix()
        out.append(self.tok)
        return out

    def copy(self) -> Node:
        return Node(self.tok, self.kind, [k.copy() for k in self.kids])

    def expr_nodes(self) -> list[tuple[Node | None, int, Node]]:
        """(parent, child index, node) for every expression node (features and operators)."""
        out: list[tuple[Node | None, int, Node]] = [(None, -1, self)] if self.kind in ("F", "O") else []
        stack = [self]
        while stack:
            n = stack.pop()
            for i, k in enumerate(n.kids):
                if k.kind in ("F", "O"):
                    out.append((n, i, k))
                    stack.append(k)
        return out


class TreeFactory:
    """Random trees and postfix <-> tree over a vocabulary."""

    def __init__(self, vocab: Vocab, rng: random.Random, cfg: GPConfig) -> None:
        self.vocab, self.rng, self.cfg = vocab, rng, cfg
        self.features = [t for t, k in zip(vocab.tokens, vocab.kinds) if k == "F"]
        self.ops = [t for t, k in zip(vocab.tokens, vocab.kinds) if k == "O"]
        self.consts = [t for t, k in zip(vocab.tokens, vocab.kinds) if k == "C"]
        self.windows = [t for t, k in zip(vocab.tokens, vocab.kinds) if k == "W"]
        self.sigs = vocab.signatures

    def leaf(self) -> Node:
        return Node(self.rng.choice(self.features), "F")

    def grow(self, depth: int) -> Node:
        if depth <= 1 or self.rng.random() < 0.3:
            return self.leaf()
        op = self.rng.choice(self.ops)
        kids: list[Node] = []
        for kind in self.sigs[op]:
            if kind == "window":
                kids.append(Node(self.rng.choice(self.windows), "W"))
            elif kind == "const":
                kids.append(Node(self.rng.choice(self.consts), "C"))
            elif kind == "expr_or_const" and self.consts and self.rng.random() < self.cfg.p_const_arg:
                kids.append(Node(self.rng.choice(self.consts), "C"))
            else:
                kids.append(self.grow(depth - 1))
        if all(k.kind == "C" for k in kids):
            kids[0] = self.grow(depth - 1)
        return Node(op, "O", kids)

    def from_postfix(self, tokens: list[str]) -> Node:
        kinds = literal_kinds(tokens, self.sigs)
        stack: list[Node] = []
        for tok, kind in zip(tokens, kinds):
            if kind == "O":
                n = len(self.sigs[tok])
                kids = stack[len(stack) - n:]
                del stack[len(stack) - n:]
                stack.append(Node(tok, "O", kids))
            else:
                stack.append(Node(tok, kind))
        return stack[0]

    def point_mutate(self, tree: Node) -> Node:
        t = tree.copy()
        nodes: list[Node] = []
        stack = [t]
        while stack:
            n = stack.pop()
            nodes.append(n)
            stack.extend(n.kids)
        n = self.rng.choice(nodes)
        if n.kind == "F":
            n.tok = self.rng.choice(self.features)
        elif n.kind == "W":
            n.tok = self.rng.choice(self.windows)
        elif n.kind == "C":
            n.tok = self.rng.choice(self.consts)
        else:
            same = [o for o in self.ops if self.sigs[o] == self.sigs[n.tok]]
            n.tok = self.rng.choice(same)
        return t

    def subtree_mutate(self, tree: Node) -> Node:
        t = tree.copy()
        parent, i, _ = self.rng.choice(t.expr_nodes())
        new = self.grow(self.rng.randint(1, 3))
        if parent is None:
            return new
        parent.kids[i] = new
        return t

    def crossover(self, a: Node, b: Node) -> Node:
        t = a.copy()
        parent, i, _ = self.rng.choice(t.expr_nodes())
        _, _, donor = self.rng.choice(b.expr_nodes())
        if parent is None:
            return donor.copy()
        parent.kids[i] = donor.copy()
        return t


def run_gp(vocab: Vocab, scorer: PoolScorer, *, minutes: float, seed: int, cfg: GPConfig | None = None,
           max_evals: int | None = None, progress: Any = None) -> dict[str, Any]:
    """Evolve factors for ``minutes``; every evaluated factor is offered to ``scorer.pool``."""
    cfg = cfg or GPConfig()
    rng = random.Random(seed)
    fac = TreeFactory(vocab, rng, cfg)
    fitness: dict[str, float] = {}
    deadline = time.perf_counter() + minutes * 60.0
    t0 = time.perf_counter()
    n_evals = 0
    generation = 0

    def out_of_budget() -> bool:
        return time.perf_counter() >= deadline or (max_evals is not None and n_evals >= max_evals)

    def fit(tree: Node) -> tuple[float, str | None]:
        nonlocal n_evals
        toks = tree.postfix()
        if len(toks) > cfg.max_len:
            return -1.0, None
        try:
            expr = scorer.parse(toks)
        except ExpressionError:
            return -1.0, None
        if expr.key in fitness:
            return fitness[expr.key], expr.key
        res = scorer.offer(expr)
        n_evals += 1
        f = abs(res.ic) if res.ic == res.ic else 0.0  # NaN (unusable factor) -> 0
        fitness[expr.key] = f
        if progress is not None:
            progress({"evals": n_evals, "generation": generation, "elapsed": time.perf_counter() - t0})
        return f, expr.key

    def fresh() -> tuple[Node, float]:
        for _ in range(20):
            tr = fac.grow(rng.randint(2, cfg.init_depth))
            f, key = fit(tr)
            if key is not None:
                return tr, f
        return fac.leaf(), fit(fac.leaf())[0]

    pop: list[tuple[Node, float]] = []
    while len(pop) < cfg.population and not out_of_budget():
        pop.append(fresh())
    while not out_of_budget():
        generation += 1
        pop.sort(key=lambda p: -p[1])
        nxt = pop[:cfg.elitism]

        def pick() -> Node:
            return max(rng.sample(pop, min(cfg.tournament, len(pop))), key=lambda p: p[1])[0]

        while len(nxt) < cfg.population and not out_of_budget():
            r = rng.random()
            if r < cfg.p_crossover:
                child = fac.crossover(pick(), pick())
            elif r < cfg.p_crossover + cfg.p_subtree:
                child = fac.subtree_mutate(pick())
            elif r < cfg.p_crossover + cfg.p_subtree + cfg.p_point:
                child = fac.point_mutate(pick())
            else:
                child = pick().copy()
            f, key = fit(child)
            if key is None:
                child, f = fresh()
            nxt.append((child, f))
        pop = nxt
    best = max(pop, key=lambda p: p[1]) if pop else None
    run_s = time.perf_counter() - t0
    return {"evaluations": n_evals, "generations": generation, "elapsed_s": round(run_s, 1),
            "evals_per_s": round(n_evals / max(run_s, 1e-9), 2), "unique_factors": len(fitness),
            "best_abs_ic": best[1] if best else None, "config": asdict(cfg)}
