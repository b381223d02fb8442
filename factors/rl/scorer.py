"""Turn a finished token list into a reward: validate, evaluate (cached), offer to the alpha pool.

Shared by every RL env of a run (and by the GP baseline) so that they all feed one pool.

Caches, cheapest first (all keyed by the expression's canonical postfix hash):
* outcome cache: an expression already found mostly-NaN, constant, weak or invalid gets the same
  verdict again without evaluation (those verdicts do not depend on the pool); with ``scale_free`` a
  factor that is not scale-free (:mod:`factors.units`) gets the verdict ``units`` before any evaluation;
* verdict cache: a ``duplicate`` / ``no_gain`` verdict is reused while the pool's ``version`` (its
  members and weights) is unchanged -- the attempt is deterministic, so the answer is the same;
* z cache: the z-scored training values (and IC) of recently rejected factors (``zcache_bytes``), so a
  re-generated factor met by a changed pool skips evaluation and z-scoring: only its mutual ICs with
  the members and the refit are recomputed;
* the evaluator's subexpression cache (a new factor usually reuses some of its subtrees).

Timing (``stats()``): ``eval_seconds`` (the evaluator), ``pool_seconds`` (z-scoring, ICs, mutual ICs,
weight fits) and ``cache_hits`` (offers answered without evaluation).

Parallel evaluation (:meth:`PoolScorer.prefetch`, ``workers > 1``): the factors that several
vectorised envs finish in the same step are evaluated and z-scored concurrently, one thread and one
:class:`~factors.evaluate.Evaluator` (own subexpression cache) per worker -- torch and numba release the
GIL -- and then offered to the pool one by one in env order, so the pool, the rewards and the run are
the same as with one worker. ``eval_seconds`` then counts the wall time of the parallel batch.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import torch

from factors.expr import Expr, from_postfix
from factors.pool import AddResult, AlphaPool
from factors.units import is_scale_free
from finllm.errors import ExpressionError

if TYPE_CHECKING:
    from factors.evaluate import Evaluator

_FINAL = {"nan", "constant", "weak", "invalid", "units"}  # verdicts independent of the pool's state
INVALID_REWARD = -0.1  # :meth:`PoolScorer.score` of an invalid expression; AlphaEnv pays its own invalid_reward


class PoolScorer:
    """Score expressions against ``pool``; ``rows`` selects the pool's days of the evaluator's panel."""

    def __init__(self, evaluator: Evaluator, pool: AlphaPool, rows: slice, *, reward_mode: str = "objective",
                 max_len: int = 20, zcache_bytes: int = 128 << 20, caches: bool = True,
                 scale_free: bool = False) -> None:
        if reward_mode not in ("objective", "gain"):
            raise ValueError("reward_mode must be 'objective' or 'gain'")
        self.evaluator, self.pool, self.rows = evaluator, pool, rows
        self.reward_mode, self.max_len = reward_mode, max_len
        self.scale_free = scale_free  # True: a factor whose ranking depends on price scale is refused (factors.units)
        self.final: dict[str, tuple[str, float]] = {}
        self.caches = caches  # False: only the outcome cache (for tests and A/B checks)
        self.verdicts: OrderedDict[str, tuple[int, AddResult]] = OrderedDict()  # key -> (pool version, result)
        self.zcache: OrderedDict[str, tuple[torch.Tensor, float]] = OrderedDict()  # key -> (z (D', S), ic)
        self.zcache_max = max(int(zcache_bytes) // max(pool.zy.numel() * 4, 1), 0)
        self.n_scored = 0
        self.n_evaluated = 0
        self.n_cache_hits = 0
        self.eval_seconds = 0.0
        self.pool_seconds = 0.0
        self._prefetched: dict[str, tuple[torch.Tensor | None, float, str] | None] = {}  # None = invalid
        self._workers: list[Any] = []  # extra evaluators, one per extra thread
        self._executor: ThreadPoolExecutor | None = None
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

    def _needs_eval(self, expr: Expr) -> bool:
        key = expr.key
        if key in self.final or key in self.pool or key in self.zcache or key in self._prefetched:
            return False
        if self.scale_free and not is_scale_free(expr):  # offer() records the verdict (cheap checks first)
            return False
        seen = self.verdicts.get(key)
        return seen is None or seen[0] != self.pool.version

    def prefetch(self, token_lists: list[list[str]], workers: int) -> None:
        """Evaluate and z-score the factors of ``token_lists`` that :meth:`offer` would evaluate, on
        ``workers`` threads; :meth:`offer` then uses the results."""
        todo: dict[str, Expr] = {}
        for tokens in token_lists:
            try:
                expr = self.parse(tokens)
            except ExpressionError:
                continue
            if self._needs_eval(expr):
                todo.setdefault(expr.key, expr)
        if len(todo) < 2 or workers < 2:
            return
        if len(self._workers) < workers - 1:
            from factors.evaluate import Evaluator

            ev = self.evaluator
            self._workers += [Evaluator(ev.panel, cache_bytes=ev.cache_bytes // 2)
                              for _ in range(workers - 1 - len(self._workers))]
            self._executor = ThreadPoolExecutor(max_workers=workers)
        evaluators = [self.evaluator, *self._workers[:workers - 1]]
        exprs = list(todo.values())
        chunks = [exprs[i::workers] for i in range(workers)]

        def run(i: int) -> list[tuple[str, Any]]:
            out = []
            for e in chunks[i]:
                try:
                    vals = evaluators[i].evaluate(e)[self.rows]
                except (ExpressionError, RuntimeError, ValueError):
                    out.append((e.key, None))
                    continue
                out.append((e.key, self.pool.prepare(vals)))
            return out

        t0 = time.perf_counter()
        assert self._executor is not None
        for part in self._executor.map(run, range(workers)):
            self._prefetched.update(part)
        self.eval_seconds += time.perf_counter() - t0
        self.n_evaluated += len(exprs)

    def _count(self, reason: str) -> None:
        self.pool.n_tried += 1
        self.pool.reasons[reason] = self.pool.reasons.get(reason, 0) + 1
        self.n_cache_hits += 1

    def offer(self, expr: Expr) -> AddResult:
        """Offer ``expr`` to the pool (uses the caches of the module doc)."""
        self.n_scored += 1
        key = expr.key
        hit = self.final.get(key)
        if hit is not None:
            self._count(hit[0])
            return AddResult(False, hit[0], hit[1], self.pool.objective)
        if key in self.pool:
            return self.pool.try_add(key, expr.tokens, expr.infix)
        if self.scale_free and not is_scale_free(expr):
            self.final[key] = ("units", float("nan"))
            self._count("units")
            return AddResult(False, "units", float("nan"), self.pool.objective)
        seen = self.verdicts.get(key)
        if seen is not None and seen[0] == self.pool.version:
            self.verdicts.move_to_end(key)
            self._count(seen[1].reason)
            return seen[1]
        cached = self.zcache.pop(key, None)
        if cached is not None:
            self.n_cache_hits += 1
            prepared: tuple[torch.Tensor | None, float, str] = (cached[0], cached[1], "ok")
        elif key in self._prefetched:
            pre = self._prefetched.pop(key)
            if pre is None:
                self.final[key] = ("invalid", float("nan"))
                return AddResult(False, "invalid", float("nan"), self.pool.objective)
            prepared = pre
        else:
            try:
                vals = self.values(expr)
            except (ExpressionError, RuntimeError, ValueError):  # an operator the panel cannot compute
                self.final[key] = ("invalid", float("nan"))
                return AddResult(False, "invalid", float("nan"), self.pool.objective)
            t0 = time.perf_counter()
            prepared = self.pool.prepare(vals)
            self.pool_seconds += time.perf_counter() - t0
        z, ic, why = prepared
        if z is not None and abs(ic) > abs(self.best_single[0]):
            self.best_single = (ic, expr)
        t0 = time.perf_counter()
        res = self.pool.try_add(key, expr.tokens, expr.infix, prepared=prepared)
        self.pool_seconds += time.perf_counter() - t0
        if res.reason in _FINAL:
            self.final[key] = (res.reason, res.ic)
        elif res.admitted:
            self.history.append((self.n_scored, res.objective))
            self.verdicts.pop(key, None)
        elif self.caches:  # duplicate / no_gain: valid while the pool is unchanged; keep z for a changed pool
            self.verdicts[key] = (self.pool.version, res)
            if len(self.verdicts) > 100_000:
                self.verdicts.popitem(last=False)
            if z is not None and self.zcache_max > 0:
                self.zcache[key] = (z, ic)
                while len(self.zcache) > self.zcache_max:
                    self.zcache.popitem(last=False)
        return res

    def score(self, tokens: list[str]) -> tuple[float, dict[str, Any]]:
        """Reward and info for a finished factor; ``info["reason"] == "invalid"`` (reward
        :data:`INVALID_REWARD`) when it does not parse or cannot be computed."""
        before = self.pool.objective
        try:
            expr = self.parse(tokens)
        except ExpressionError as exc:
            return INVALID_REWARD, {"reason": "invalid", "error": str(exc)}
        res = self.offer(expr)
        if res.reason in ("invalid", "units"):  # "units": paid as invalid, so the policy learns the rule
            return INVALID_REWARD, {"reason": res.reason}
        reward = res.objective if self.reward_mode == "objective" else res.objective - before
        return float(reward), {"reason": res.reason, "ic": res.ic, "pool_ic": res.objective}

    def stats(self) -> dict[str, Any]:
        return {"scored": self.n_scored, "evaluated": self.n_evaluated, "cache_hits": self.n_cache_hits,
                "eval_seconds": round(self.eval_seconds, 2), "pool_seconds": round(self.pool_seconds, 2),
                "outcome_cache": len(self.final), "zcache": len(self.zcache),
                "pool_reasons": dict(self.pool.reasons), **{f"evaluator_{k}": v for k, v in
                                                            self.evaluator.cache_info().items()}}
