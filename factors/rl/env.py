"""Gymnasium environment: an agent writes one factor per episode, one postfix token per step.

* Action: a token id of the :class:`~factors.rl.builder.Vocab` (features, operators, constants,
  windows, ``<end>``). ``action_masks()`` (read by sb3-contrib ``MaskablePPO``) allows only tokens
  after which the expression can still be completed within ``max_len`` tokens; ``<end>`` only when
  exactly one complete expression is on the stack.
* Observation: ``(max_len,)`` int64, the token ids so far **plus one** (0 is padding).
* Reward: 0 on every token; on ``<end>`` the scorer offers the factor to the shared alpha pool.

Reward choice: ``"objective"`` (the default, as in AlphaGen) pays the pool's combined train IC
*after* the admission attempt; ``"gain"`` pays its improvement (0 for a rejected factor). Measured
with ``bench/bench_mining.py --quick --seeds 2 --reward-ablation`` (100 tickers, 1 min per run, on a
shared 2-core machine): final train pool IC 0.076/0.087 (objective) vs 0.077/0.087 (gain), test
RankIC 0.034 +- 0.011 vs 0.024 +- 0.026 -- indistinguishable at this budget. We keep
``"objective"``: it is a dense, slowly rising signal for the value head, while ``"gain"`` is
sparse (most factors are rejected) and its scale shrinks as the pool fills.

Rejected factors (mostly NaN, constant, weak, near-duplicate, no gain) still end the episode; an
expression the evaluator cannot compute ends it with reward ``invalid_reward``. An action outside the
mask (never chosen by MaskablePPO; ``check_env`` may send one) ends the episode with
``invalid_reward`` instead of raising.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from factors.rl.builder import Builder, Vocab
from factors.rl.scorer import INVALID_REWARD


class Scorer(Protocol):
    def score(self, tokens: list[str]) -> tuple[float, dict[str, Any]]:
        """Reward for a finished postfix expression, and an info dict (``reason`` "invalid" when the
        expression cannot be computed)."""


class AlphaEnv(gym.Env):
    """One episode = one factor. Several envs may share one scorer (and so one pool)."""

    metadata = {"render_modes": []}

    def __init__(self, vocab: Vocab, scorer: Scorer, max_len: int = 20, invalid_reward: float = INVALID_REWARD) -> None:
        super().__init__()
        self.vocab, self.scorer, self.max_len = vocab, scorer, max_len
        self.invalid_reward = invalid_reward
        self.builder = Builder(vocab, max_len)
        self.action_space = spaces.Discrete(len(vocab))
        self.observation_space = spaces.Box(low=0, high=len(vocab), shape=(max_len,), dtype=np.int64)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.max_len, dtype=np.int64)
        ids = self.builder.ids
        obs[:len(ids)] = np.asarray(ids, dtype=np.int64) + 1
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.builder.reset()
        return self._obs(), {}

    def action_masks(self) -> np.ndarray:
        return self.builder.mask_array()

    def finishing(self, action: int) -> list[str] | None:
        """The finished factor's tokens if ``action`` is a legal ``<end>`` now, else None (lets a
        vectorised env evaluate all factors finished in one step together, before stepping)."""
        a = int(action)
        if self.vocab.kinds[a] == "END" and self.builder.done():
            return self.builder.tokens
        return None

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = int(action)
        if not self.builder.mask_array()[a]:
            return self._obs(), float(self.invalid_reward), True, False, {"invalid_action": True}
        if self.vocab.kinds[a] == "END":
            tokens = self.builder.tokens
            reward, info = self.scorer.score(tokens)
            if info.get("reason") == "invalid":
                reward = self.invalid_reward
            info = {**info, "tokens": tokens}
            return self._obs(), float(reward), True, False, info
        self.builder.step(a)
        return self._obs(), 0.0, False, False, {}
