"""Risk-seeking policy gradient for the RL miner (RiskMiner's objective, on MaskablePPO's rollouts).

A miner is judged by the best factors it finds, not by its average episode, so RiskMiner (Zhao et al.,
2024) trains the policy on the upper tail of the episode returns: with ``q`` the ``alpha``-quantile of
the returns, the gradient is ``E[(R - q) 1{R > q} grad log pi]``. Episodes at or below ``q`` --
duplicates, pool-neutral and invalid factors alike -- then teach the policy nothing, where plain PPO
pushes their tokens down.

:class:`RiskSeeking` applies it to each rollout after sb3 computes GAE: every step of an episode
that ends in this rollout gets the Monte Carlo advantage ``max(R - q, 0) / s`` (``gamma`` is 1 and
the only reward is at ``<end>``, so every token of an episode shares ``R``), where ``q`` is the
quantile of the returns of the episodes ending in this rollout (the pool, and so the reward scale,
moves between rollouts) and ``s`` the mean of the positive excesses (the mean positive advantage is
1, the scale PPO's normalised advantages have). Steps of an episode still running at the rollout's
end get 0: their return is not known yet. PPO's own advantage normalisation is switched off (it
would turn the zeros into a push down). The value head keeps learning the returns; it is unused.
"""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback


def tail_advantages(rewards: np.ndarray, starts: np.ndarray, last_starts: np.ndarray,
                    alpha: float) -> tuple[np.ndarray, dict[str, float]]:
    """Risk-seeking advantages of one rollout.

    rewards, starts: (T, E) -- the reward of each step, and whether the step begins an episode;
    last_starts: (E,) -- whether the step after the rollout begins one (the last step ended an episode).
    Returns the advantages (T, E) and ``{episodes, quantile, above}`` of the finished episodes.
    """
    t_len, n_env = rewards.shape
    ends = np.zeros_like(starts, dtype=bool)  # step t ends an episode when step t+1 starts one
    ends[:-1] = starts[1:].astype(bool)
    ends[-1] = last_starts.astype(bool)
    episode = np.full((t_len, n_env), -1, dtype=np.int64)  # the finished episode each step belongs to
    returns: list[float] = []
    for e in range(n_env):
        first = 0
        for t in range(t_len):
            if starts[t, e] and t > first:
                first = t
            if ends[t, e]:
                episode[first:t + 1, e] = len(returns)
                returns.append(float(rewards[first:t + 1, e].sum()))
                first = t + 1
    adv = np.zeros((t_len, n_env), dtype=np.float32)
    if not returns:
        return adv, {"episodes": 0.0, "quantile": float("nan"), "above": 0.0}
    r = np.asarray(returns)
    q = float(np.quantile(r, alpha))
    excess = np.maximum(r - q, 0.0)
    pos = excess[excess > 0]
    if pos.size:
        per_episode = (excess / pos.mean()).astype(np.float32)
        mask = episode >= 0
        adv[mask] = per_episode[episode[mask]]
    return adv, {"episodes": float(r.size), "quantile": q, "above": float(pos.size)}


class RiskSeeking(BaseCallback):
    """Replace each rollout's GAE advantages by :func:`tail_advantages` (``alpha`` in (0, 1))."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"risk quantile {alpha}: choose a level in (0, 1)")
        self.alpha = alpha
        self.episodes = 0
        self.above = 0

    def _on_training_start(self) -> None:
        self.model.normalize_advantage = False

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buf = self.model.rollout_buffer
        adv, info = tail_advantages(buf.rewards, buf.episode_starts, np.asarray(self.model._last_episode_starts),
                                    self.alpha)
        buf.advantages[...] = adv
        self.episodes += int(info["episodes"])
        self.above += int(info["above"])
