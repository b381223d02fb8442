"""Train the RL miner: MaskablePPO + token LSTM on :class:`AlphaEnv`, under a wall-clock budget.

Hyperparameters (:class:`RLConfig`; AlphaGen's values scaled for 2 CPU cores):

| name          | value | why                                                                    |
|---------------|-------|------------------------------------------------------------------------|
| n_envs        | 16    | vectorised envs (one process) sharing one pool; one batched policy     |
|               |       | forward per step for all of them                                       |
| n_steps       | 32    | per env -> 512 tokens (~25 factors) per PPO update                     |
| batch_size    | 256   | AlphaGen: 128; larger batches are cheaper per sample on CPU            |
| n_epochs      | 3     | AlphaGen: 10; PPO updates are ~half the CPU time on small panels       |
| learning_rate | 3e-4  | sb3 default                                                            |
| gamma         | 1.0   | the only reward is at <end>; every token shares it                     |
| gae_lambda    | 0.95  | sb3 default                                                            |
| ent_coef      | 0.01  | AlphaGen; keeps exploring new factor shapes                            |
| d_model       | 48    | LSTM width (AlphaGen: 128)                                             |
| n_layers      | 1     | AlphaGen: 2. One 48-wide layer costs ~1/4 of two 64-wide ones          |
| eval_workers  | 1     | threads evaluating the factors finished in one step (2 on a free       |
|               |       | 2-core machine; 1 when two miners share 2 cores, as in the bench)      |
| max_len       | 20    | tokens per factor (AlphaGen: 20)                                       |
| risk_quantile | 0     | off: plain PPO. In (0, 1): RiskMiner's risk-seeking gradient, only the |
|               |       | episodes above this quantile of a rollout's returns teach the policy   |
|               |       | (:mod:`factors.rl.risk`; measured in the README, not the default)      |

Checkpoints (``<out>/checkpoint/``: ``model.zip`` + ``state.json`` with the pool's members, the
elapsed time and counters) are written every ``checkpoint_s`` seconds and at the end; a run started
again on the same ``out`` resumes from them (the budget counts the time already spent).

Policy cost (``python bench/bench_mining.py --policy-cost``: the same MaskablePPO loop with a reward
that costs nothing, 1 torch thread, shared 2-core machine at load ~6; both with 16 envs x 32 steps):
d_model 64 x 2 layers 40 ms/episode (33 ms of it in PPO updates); d_model 48 x 1 layer ~6-8 ms/episode.

Throughput accounting: ``episodes_per_s`` = episodes finished in this session / wall seconds of
``learn`` (rollouts, factor evaluation, pool updates, PPO updates and checkpoints all included);
``seconds`` splits that wall time into ``eval`` (the evaluator), ``pool`` (z-scores, ICs, weights),
``ppo`` (gradient updates) and ``policy_env`` (the rest: policy forwards, masks, Python); ``cpu`` is
the process's CPU time over the same span (all threads), so ``episodes / cpu`` is the rate on an idle
core when other processes share the machine (``cpu / search`` = the share of a core it got).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv

from factors.rl.builder import Vocab
from factors.rl.env import AlphaEnv
from factors.rl.policy import TokenLSTMExtractor
from factors.rl.risk import RiskSeeking
from factors.rl.scorer import PoolScorer
from finllm.errors import DataError

if TYPE_CHECKING:
    from sb3_contrib import MaskablePPO


@dataclass
class RLConfig:
    n_envs: int = 16
    n_steps: int = 32
    batch_size: int = 256
    n_epochs: int = 3
    learning_rate: float = 3e-4
    gamma: float = 1.0
    gae_lambda: float = 0.95
    ent_coef: float = 0.01
    clip_range: float = 0.2
    d_model: int = 48
    n_layers: int = 1
    max_len: int = 20
    checkpoint_s: float = 60.0
    eval_workers: int = 1
    risk_quantile: float = 0.0  # > 0: risk-seeking policy gradient on the returns above this quantile (factors.rl.risk)


class ScoringVecEnv(DummyVecEnv):
    """``DummyVecEnv`` that first evaluates, on ``workers`` threads, the factors its envs finish this step
    (:meth:`PoolScorer.prefetch`), then steps the envs in order as usual. Times its steps."""

    def __init__(self, env_fns: list[Any], scorer: PoolScorer, workers: int = 1) -> None:
        super().__init__(env_fns)
        self.scorer, self.workers = scorer, workers
        self.seconds = 0.0

    def step_wait(self) -> Any:
        t0 = time.perf_counter()
        if self.workers > 1:
            done = [env.finishing(a) for env, a in zip(self.envs, self.actions)]  # type: ignore[attr-defined]
            self.scorer.prefetch([t for t in done if t is not None], self.workers)
        out = super().step_wait()
        self.seconds += time.perf_counter() - t0
        return out


class _Budget(BaseCallback):
    """Counts episodes, stops at the budget, draws progress, writes checkpoints."""

    def __init__(self, scorer: PoolScorer, budget_s: float, max_episodes: int | None, elapsed0: float,
                 episodes0: int, ckpt: _Checkpointer | None, progress: Any) -> None:
        super().__init__()
        self.scorer, self.budget_s, self.max_episodes = scorer, budget_s, max_episodes
        self.elapsed0, self.episodes = elapsed0, episodes0
        self.ckpt, self.progress = ckpt, progress
        self.t0 = time.perf_counter()
        self.last_ckpt = self.t0
        self.episodes_this = 0
        self.ppo_s = 0.0  # wall time of PPO updates: from the end of one rollout to the start of the next
        self._rollout_end: float | None = None

    def _on_rollout_end(self) -> None:
        self._rollout_end = time.perf_counter()

    def _on_rollout_start(self) -> None:
        if self._rollout_end is not None:
            self.ppo_s += time.perf_counter() - self._rollout_end
            self._rollout_end = None

    @property
    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    @property
    def rate(self) -> float:
        """Episodes per wall second in this session (PPO updates included)."""
        return self.episodes_this / max(time.perf_counter() - self.t0, 1e-9)

    def _on_step(self) -> bool:
        n = int(np.sum(self.locals["dones"]))
        self.episodes += n
        self.episodes_this += n
        now = time.perf_counter()
        if self.progress is not None and n:
            self.progress(self)
        if self.ckpt is not None and now - self.last_ckpt >= self.ckpt.every_s:
            self.ckpt.save(self.model, self.scorer, self.elapsed, self.episodes)
            self.last_ckpt = now
        if self.max_episodes is not None and self.episodes >= self.max_episodes:
            return False
        return self.elapsed < self.budget_s


class _Checkpointer:
    def __init__(self, folder: Path, every_s: float, meta: dict[str, Any]) -> None:
        self.folder, self.every_s, self.meta = folder, every_s, meta

    def save(self, model: MaskablePPO, scorer: PoolScorer, elapsed: float, episodes: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "model.tmp.zip"
        model.save(tmp)
        state = {"meta": self.meta, "elapsed_s": elapsed, "episodes": episodes,
                 "num_timesteps": int(model.num_timesteps), "pool": scorer.pool.state()}
        (self.folder / "state.tmp.json").write_text(json.dumps(state))
        tmp.replace(self.folder / "model.zip")  # both renames are atomic; state last marks completion
        (self.folder / "state.tmp.json").replace(self.folder / "state.json")

    def load_state(self) -> dict[str, Any] | None:
        f = self.folder / "state.json"
        if not f.exists() or not (self.folder / "model.zip").exists():
            return None
        try:
            state = json.loads(f.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:  # truncated / hand-edited / not UTF-8
            raise self.unreadable(f, exc) from None
        if not isinstance(state, dict):
            raise self.unreadable(f, "not a JSON object")
        return state if state.get("meta") == self.meta else None

    def unreadable(self, f: Path, why: object) -> DataError:
        return DataError(f"{f}: checkpoint is unreadable ({str(why).splitlines()[0][:120] if str(why) else why}); "
                         f"start over with --fresh (or delete {self.folder})")

    def restore(self, state: dict[str, Any], env: Any, reload_member: Any) -> Any:
        """The saved model, and the pool members re-evaluated into the scorer; DataError (hint:
        ``--fresh``) when the checkpoint files are truncated or inconsistent."""
        from sb3_contrib import MaskablePPO

        path = self.folder / "model.zip"
        try:
            model = _silent(MaskablePPO.load(path, env=env, device="cpu"))
        except Exception as exc:  # noqa: BLE001 - zipfile/torch/pickle-free loaders raise many types
            raise self.unreadable(path, f"{type(exc).__name__}: {exc}") from None
        try:
            members = [reload_member(m["tokens"]) for m in state["pool"]["members"]]
            float(state["elapsed_s"]), int(state["episodes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise self.unreadable(self.folder / "state.json", f"{type(exc).__name__}: {exc}") from None
        return model, members


def make_model(vocab: Vocab, scorer: PoolScorer, cfg: RLConfig, seed: int) -> MaskablePPO:
    from sb3_contrib import MaskablePPO

    env = ScoringVecEnv([lambda: AlphaEnv(vocab, scorer, cfg.max_len) for _ in range(cfg.n_envs)], scorer,
                        workers=cfg.eval_workers)
    policy_kwargs = dict(features_extractor_class=TokenLSTMExtractor,
                         features_extractor_kwargs=dict(n_tokens=len(vocab), d_model=cfg.d_model,
                                                        n_layers=cfg.n_layers),
                         net_arch=dict(pi=[64], vf=[64]))
    model = MaskablePPO("MlpPolicy", env, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                        learning_rate=cfg.learning_rate, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
                        ent_coef=cfg.ent_coef, clip_range=cfg.clip_range, policy_kwargs=policy_kwargs,
                        seed=seed, device="cpu", verbose=0)
    return _silent(model)


def _silent(model: MaskablePPO) -> MaskablePPO:
    """``model`` with a logger that writes nothing: sb3's default one creates a ``SB3-<time>`` folder in
    the system temp directory on every ``learn`` (a write outside FINLLM_HOME and ``--out``)."""
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def train_rl(vocab: Vocab, scorer: PoolScorer, *, minutes: float, seed: int, cfg: RLConfig | None = None,
             out: Path | None = None, resume: bool = True, max_episodes: int | None = None,
             progress: Any = None, meta: dict[str, Any] | None = None,
             reload_member: Any = None) -> dict[str, Any]:
    """Run MaskablePPO until ``minutes`` of wall clock (or ``max_episodes``) are spent.

    ``reload_member(tokens) -> (key, tokens, formula, values)`` re-evaluates a checkpointed pool
    member (needed to resume). Returns training statistics.
    """
    cfg = cfg or RLConfig()
    torch.manual_seed(seed)
    same_run = {k: v for k, v in asdict(cfg).items() if k not in ("eval_workers", "checkpoint_s")}  # result-neutral
    ckpt = _Checkpointer(out / "checkpoint", cfg.checkpoint_s, {**(meta or {}), "rl": same_run}) \
        if out is not None else None
    model = make_model(vocab, scorer, cfg, seed)
    elapsed0, episodes0, resumed = 0.0, 0, False
    state = ckpt.load_state() if (ckpt is not None and resume) else None
    if state is not None and reload_member is not None:
        model, members = ckpt.restore(state, model.get_env(), reload_member)
        scorer.pool.load_members(members)
        elapsed0, episodes0, resumed = float(state["elapsed_s"]), int(state["episodes"]), True
    eval0, pool0 = scorer.eval_seconds, scorer.pool_seconds
    cb = _Budget(scorer, minutes * 60.0, max_episodes, elapsed0, episodes0, ckpt, progress)
    risk = RiskSeeking(cfg.risk_quantile) if cfg.risk_quantile > 0 else None
    t_learn, cpu0 = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=10**12, callback=cb if risk is None else CallbackList([cb, risk]),
                reset_num_timesteps=not resumed)
    search_s, cpu_s = time.perf_counter() - t_learn, time.process_time() - cpu0
    if ckpt is not None:
        ckpt.save(model, scorer, cb.elapsed, cb.episodes)
    ev_s, pl_s = scorer.eval_seconds - eval0, scorer.pool_seconds - pool0
    seconds = {"search": round(search_s, 2), "cpu": round(cpu_s, 2), "eval": round(ev_s, 2), "pool": round(pl_s, 2),
               "ppo": round(cb.ppo_s, 2), "policy_env": round(search_s - ev_s - pl_s - cb.ppo_s, 2)}
    n = max(cb.episodes_this, 1)
    return {"episodes": cb.episodes, "episodes_this_session": cb.episodes_this,
            "elapsed_s": round(cb.elapsed, 1), "episodes_per_s": round(cb.episodes_this / max(search_s, 1e-9), 2),
            "seconds": seconds, "ms_per_episode": {k: round(v / n * 1e3, 2) for k, v in seconds.items()},
            "timesteps": int(model.num_timesteps), "resumed": resumed, "config": asdict(cfg),
            **({"risk_seeking": {"quantile": risk.alpha, "episodes_used": risk.episodes, "episodes_above": risk.above}}
               if risk is not None else {})}
