"""Genetic-programming baseline over the same tokens, operators, features and scorer as the RL miner.

Individuals are :class:`factors.expr.Node` trees over the RL vocabulary (:class:`factors.rl.builder.Vocab`: same
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

from factors.expr import Node, feature, literal, op_node, slot_accepts, window_ok
from factors.ops import OPS
from factors.rl.builder import Vocab
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


Path = tuple[int, ...]  # child indices from the root


def _replace(tree: Node, path: Path, new: Node) -> Node:
    """``tree`` with the subtree at ``path`` replaced by ``new`` (the nodes above it rebuilt)."""
    if not path:
        return new
    kids = list(tree.children)
    kids[path[0]] = _replace(kids[path[0]], path[1:], new)
    return op_node(tree.token, kids)


def _at(tree: Node, path: Path) -> Node:
    for i in path:
        tree = tree.children[i]
    return tree


class TreeFactory:
    """Random :class:`factors.expr.Node` trees over a vocabulary, typed by :mod:`factors.expr`'s rules:
    an operator's window slots get vocabulary windows it accepts (``min_window``), its constant slots
    vocabulary constants; an operator no vocabulary window or constant can complete is never grown."""

    def __init__(self, vocab: Vocab, rng: random.Random, cfg: GPConfig) -> None:
        self.vocab, self.rng, self.cfg = vocab, rng, cfg
        self.features = vocab.of_kind("F")
        self.consts = vocab.of_kind("C")
        self.windows = vocab.of_kind("W")
        self.op_windows = {o: [w for w in self.windows if window_ok(OPS[o], float(w))] for o in vocab.of_kind("O")}
        self.ops = [o for o in vocab.of_kind("O")
                    if all((k != "window" or self.op_windows[o]) and (k != "const" or self.consts)
                           for k in OPS[o].arg_kinds)]

    def leaf(self) -> Node:
        return feature(self.rng.choice(self.features))

    def grow(self, depth: int) -> Node:
        if depth <= 1 or self.rng.random() < 0.3:
            return self.leaf()
        op = self.rng.choice(self.ops)
        kids: list[Node] = []
        for kind in OPS[op].arg_kinds:
            if kind == "window":
                kids.append(literal(float(self.rng.choice(self.op_windows[op]))))
            elif kind == "const":
                kids.append(literal(float(self.rng.choice(self.consts))))
            elif (kind == "expr_or_const" and self.consts and op not in self.vocab.const_free
                  and self.rng.random() < self.cfg.p_const_arg):
                kids.append(literal(float(self.rng.choice(self.consts))))
            else:
                kids.append(self.grow(depth - 1))
        if all(k.kind == "const" for k in kids):
            kids[0] = self.grow(depth - 1)
        return op_node(op, kids)

    @staticmethod
    def expr_paths(tree: Node) -> list[Path]:
        """Paths of the expression nodes (features and operators, not literals), root first, then
        depth first from the last child."""
        out: list[Path] = [()] if tree.kind != "const" else []
        stack: list[Path] = [()]
        while stack:
            p = stack.pop()
            for i, k in enumerate(_at(tree, p).children):
                if k.kind != "const":
                    out.append(p + (i,))
                    stack.append(p + (i,))
        return out

    def point_mutate(self, tree: Node) -> Node:
        """Replace one node by another of its kind: a feature, a window the operator above accepts, a
        constant, or an operator with the same argument kinds that accepts the same window."""
        paths: list[Path] = []
        stack: list[Path] = [()]
        while stack:
            p = stack.pop()
            paths.append(p)
            stack.extend(p + (i,) for i in range(len(_at(tree, p).children)))
        p = self.rng.choice(paths)
        n = _at(tree, p)
        if n.kind == "feature":
            return _replace(tree, p, feature(self.rng.choice(self.features)))
        if n.kind == "const":
            parent = _at(tree, p[:-1]).token
            if OPS[parent].arg_kinds[p[-1]] == "window":
                return _replace(tree, p, literal(float(self.rng.choice(self.op_windows[parent]))))
            return _replace(tree, p, literal(float(self.rng.choice(self.consts))))
        spec = OPS[n.token]
        consts = [(k, c.value) for k, c in enumerate(n.children) if c.kind == "const"]
        same = [o for o in self.ops if OPS[o].arg_kinds == spec.arg_kinds
                and all(slot_accepts(OPS[o], k, v) for k, v in consts)
                and not (consts and o in self.vocab.const_free)]
        return _replace(tree, p, op_node(self.rng.choice(same), n.children))

    def subtree_mutate(self, tree: Node) -> Node:
        p = self.rng.choice(self.expr_paths(tree))
        return _replace(tree, p, self.grow(self.rng.randint(1, 3)))

    def crossover(self, a: Node, b: Node) -> Node:
        p = self.rng.choice(self.expr_paths(a))
        donor = self.rng.choice(self.expr_paths(b))
        return _replace(a, p, _at(b, donor))


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
        toks = list(tree.postfix)
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
                child = pick()  # trees are immutable: no copy needed
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
