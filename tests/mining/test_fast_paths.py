"""The miner's speed paths must not change its answers: pool statistics on strided days, the member
buffer, the scorer's verdict / z caches and parallel evaluation, on a slice of the real US data."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from factors.metrics import ic_series
from factors.mine import MineConfig, build_train_side, load_for_mining
from factors.pool import AlphaPool
from factors.rl.builder import Builder
from factors.rl.scorer import PoolScorer
from tests.mining.conftest import SPLITS

D, S = 240, 80


@pytest.fixture(scope="module")
def side(us_slice):
    cfg = MineConfig(data=str(us_slice), pool_size=5, pool_day_stride=3, **SPLITS)
    panel, splits = load_for_mining(cfg)
    return build_train_side(panel, splits, cfg)


def _random_tokens(vocab, n: int, seed: int) -> list[list[str]]:
    b, r, out = Builder(vocab, 12), random.Random(seed), []
    while len(out) < n:
        b.reset()
        while True:
            a = r.choice(np.flatnonzero(b.mask_array()).tolist())
            if vocab.kinds[a] == "END":
                break
            b.step(a)
        out.append(b.tokens)
    return out


def test_strided_pool_objective_is_the_exact_ic_on_its_days() -> None:
    g = torch.Generator().manual_seed(1)
    f = [torch.randn(D, S, generator=g) for _ in range(4)]
    y = f[0] + 0.5 * f[1] + 0.3 * f[2] + 3.0 * torch.randn(D, S, generator=g)
    full, strided = AlphaPool(y, capacity=4), AlphaPool(y, capacity=4, day_stride=3)
    for i in range(3):
        assert full.try_add(str(i), (str(i),), str(i), f[i]).admitted
        assert strided.try_add(str(i), (str(i),), str(i), f[i]).admitted
    assert strided.combination().shape == (D // 3, S)
    direct = float(ic_series(strided.combination(), y[::3], min_names=2).mean())
    assert strided.objective == pytest.approx(direct, abs=1e-5)
    assert strided.objective == pytest.approx(full.objective, abs=0.02)  # a third of the days, same signal


def test_member_rows_survive_every_admission_path() -> None:
    """Replacements, evictions and rolled-back attempts reuse buffer rows; members' z must stay intact."""
    g = torch.Generator().manual_seed(2)
    base = [torch.randn(D, S, generator=g) for _ in range(6)]
    y = base[0] + 0.7 * base[1] + 0.5 * base[2] + 0.3 * base[3] + 2.0 * torch.randn(D, S, generator=g)
    pool = AlphaPool(y, capacity=3, min_abs_ic=0.0, day_stride=2)
    values, reasons = {}, set()
    for k in range(60):
        w = torch.randn(6, generator=g) * (torch.rand(6, generator=g) < 0.4)
        x = sum(wi * b for wi, b in zip(w, base)) + 0.05 * (k % 7) * torch.randn(D, S, generator=g)
        if not torch.is_tensor(x):
            continue
        values[str(k)] = x
        reasons.add(pool.try_add(str(k), (str(k),), str(k), x).reason)
    assert {"admitted", "no_gain", "duplicate"} <= reasons and pool.version >= 3
    for m in pool.members:
        assert torch.equal(m.z, pool.prepare(values[m.key])[0])
    assert pool.objective == pytest.approx(pool.combined_ic([m.z.clone() for m in pool.members], pool.weights)[0],
                                           abs=1e-6)


def _replay(side, tokens: list[list[str]], caches: bool) -> tuple[list[float], list[str], PoolScorer]:
    fresh = AlphaPool(side.scorer.evaluator.forward_return(20)[side.rows], side.evaluator.universe[side.rows],
                      capacity=5, day_stride=3)
    sc = PoolScorer(side.evaluator, fresh, side.rows, caches=caches)
    rewards = [sc.score(t)[0] for t in tokens]
    return rewards, [m.key for m in fresh.members], sc


def test_caches_change_speed_not_answers(side) -> None:
    uniq = _random_tokens(side.vocab, 40, seed=3)
    r = random.Random(4)
    seq = uniq + [r.choice(uniq) for _ in range(60)]  # re-generated factors, as a converging policy makes
    r_plain, m_plain, plain = _replay(side, seq, caches=False)
    r_fast, m_fast, fast = _replay(side, seq, caches=True)
    assert m_plain and r_fast == r_plain and m_fast == m_plain
    assert fast.n_evaluated < plain.n_evaluated and fast.n_cache_hits > 0


def test_parallel_evaluation_gives_the_same_run(side) -> None:
    seq = _random_tokens(side.vocab, 48, seed=5)
    r_seq, m_seq, _ = _replay(side, seq, caches=True)
    fresh = AlphaPool(side.scorer.evaluator.forward_return(20)[side.rows], side.evaluator.universe[side.rows],
                      capacity=5, day_stride=3)
    sc = PoolScorer(side.evaluator, fresh, side.rows)
    rewards = []
    for i in range(0, len(seq), 8):  # 8 envs finishing in the same step
        batch = seq[i:i + 8]
        sc.prefetch(batch, workers=2)
        rewards += [sc.score(t)[0] for t in batch]
    assert m_seq and rewards == r_seq and [m.key for m in fresh.members] == m_seq
    assert sc._workers, "no second evaluator was used"
