"""Turn a finished token list into a reward: validate, evaluate (cached), offer to the alpha pool.

Shared by every RL env of a run (and by the GP baseline) so that they all feed one pool.

Caches, cheapest first:
* outcome cache: an expression already found mostly-NaN, constant, weak or invalid gets the same
  verdict again without evaluation (those verdicts do not depend on the pool);
* the evaluator's subexpression cache (a new factor usually reuses most of its subtrees).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from factors.expr import Expr, from_postfix
from factors.pool import AddResult, AlphaPool
from finllm.errors import ExpressionError

_FINAL = {"nan", "constant", "weak", "invalid"}  # verdicts independent of the pool's state


class PoolScorer:
    """Score expressions against ``pool``; ``rows`` selects the pool's days of the evaluator's panel."""

    def __init__(self, evaluator: Any, pool: AlphaPool, rows: slice, *, reward_mode: str = "objective",
                 max_len: int = 20) -> None:
        if reward_mode not in ("objective", "gain"):
            raise ValueError("reward_mode must be 'objective' or 'gain'")
        self.evaluator, self.pool, self.rows = evaluator, pool, rows
        self.reward_mode, self.max_len = reward_mode, max_len
        self.final: dict[str, tuple[str, float]] = {}
        self.n_scored = 0
        self.n_evaluated = 0
        self.eval_seconds = 0.0
        self.best_single: tuple[float, Expr | None] = (0.0, None)
        self.history: list[tuple[int, float]] = []  # (episode, pool objective) at each admission

    def parse(self, tokens: list[str] | tuple[str, ...]) -> Expr:
        return from_postfix(list(tokens), self.evaluator.features, max_len=self.max_len)

    def values(self, expr: Expr) -> torch.Tensor:
        """The factor on the pool's days (D_pool, S)."""
        t0 = time.perf_counter()
        out = self.evaluator.evaluate(expr)[self.rows]
        self.eval_seconds += time.perf_counter() - t0
        self.n_evaluated += 1
        return out

    def offer(self, expr: Expr) -> AddResult:
        """Offer ``expr`` to the pool (uses the outcome cache)."""
        self.n_scored += 1
        hit = self.final.get(expr.key)
        if hit is not None:
            self.pool.n_tried += 1
            self.pool.reasons[hit[0]] = self.pool.reasons.get(hit[0], 0) + 1
            return AddResult(False, hit[0], hit[1], self.pool.objective)
        if expr.key in self.pool:
            return self.pool.try_add(expr.key, expr.tokens, expr.infix)
        try:
            vals = self.values(expr)
        except (ExpressionError, RuntimeError, ValueError):  # an operator the panel cannot compute
            self.final[expr.key] = ("invalid", float("nan"))
            return AddResult(False, "invalid", float("nan"), self.pool.objective)
        prepared = self.pool.prepare(vals)
        z, ic, why = prepared
        if z is not None and abs(ic) > abs(self.best_single[0]):
            self.best_single = (ic, expr)
        res = self.pool.try_add(expr.key, expr.tokens, expr.infix, prepared=prepared)
        if res.reason in _FINAL:
            self.final[expr.key] = (res.reason, res.ic)
        if res.admitted:
            self.history.append((self.n_scored, res.objective))
        return res

    def score(self, tokens: list[str]) -> tuple[float, dict[str, Any]]:
        before = self.pool.objective
        try:
            expr = self.parse(tokens)
        except ExpressionError as exc:
            return -0.1, {"reason": "invalid", "error": str(exc)}
        res = self.offer(expr)
        if res.reason == "invalid":
            return -0.1, {"reason": "invalid"}
        reward = res.objective if self.reward_mode == "objective" else res.objective - before
        return float(reward), {"reason": res.reason, "ic": res.ic, "pool_ic": res.objective}

    def stats(self) -> dict[str, Any]:
        return {"scored": self.n_scored, "evaluated": self.n_evaluated,
                "eval_seconds": round(self.eval_seconds, 2), "outcome_cache": len(self.final),
                "pool_reasons": dict(self.pool.reasons), **{f"evaluator_{k}": v for k, v in
                                                            self.evaluator.cache_info().items()}}
