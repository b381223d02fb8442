"""Added-information calibration: what verdicts add beyond the detector's score, decided sequentially.

Pure arithmetic on synthetic calibration slices (labels, detector scores and verdicts drawn from known
distributions), so the expected outcome of each case is known: an echo of the score and a constant add
exactly nothing, random verdicts add nothing, verdicts independent of the score with AUROC 0.95 add a lot.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from fraud.supervisor.calibrate import Rule, decide, measure, posterior, score_map, score_only


def _slice(n: int, score_auroc: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Alternating labels (n,) and calibrated detector scores (n,) of the given AUROC."""
    rng = np.random.default_rng(seed)
    y = np.array([1, 0] * (n // 2))
    mu = np.sqrt(2) * norm.ppf(score_auroc)
    z = rng.standard_normal(n) + mu * y
    return y, 1 / (1 + np.exp(-(mu * z - mu * mu / 2)))


def _verdicts(y: np.ndarray, q: float, seed: int) -> np.ndarray:
    mu = np.sqrt(2) * norm.ppf(q)
    z = np.random.default_rng(seed + 1000).standard_normal(y.size) + mu * y
    return 1 / (1 + np.exp(-max(mu, 1.0) * (z - mu / 2)))


@pytest.mark.parametrize("n", [6, 12])
@pytest.mark.parametrize("kind", ["echo", "rounded echo", "constant"])
def test_echo_and_constant_add_exactly_nothing_and_stop_at_the_first_look(kind, n):
    y, s = _slice(n, 0.8, 0)
    v = {"echo": s.copy(), "rounded echo": np.clip(np.round(s, 2), 0.01, 0.99), "constant": np.full(n, 0.9)}[kind]
    info = decide(s, v, y, final=False)
    assert info.effect == 0.0 and info.gain == pytest.approx(0.0, abs=1e-9) and info.upper < Rule().min_effect
    assert info.decision == "futile" and "no useful added information" in info.reason
    assert info.verdict_auroc == pytest.approx(0.5 if kind == "constant" else info.score_auroc, abs=0.05)


def _sequential(s: np.ndarray, v: np.ndarray, y: np.ndarray) -> tuple[str, int]:
    """Looks after 16, 24, ... verdicts, as the supervisor asks them; (decision, verdicts used)."""
    for n in range(16, y.size + 1, 8):
        info = decide(s[:n], v[:n], y[:n], final=n + 8 > y.size)
        if info.decision != "continue":
            return info.decision, n
    raise AssertionError("the last look must decide")


def test_random_verdicts_stop_early_and_informative_ones_are_proven():
    random_runs = [_sequential(*_slice(48, 0.75, seed)[::-1][:1], np.random.default_rng(seed + 500).random(48),
                               _slice(48, 0.75, seed)[0]) for seed in range(10)]
    assert all(d == "futile" for d, _ in random_runs)
    assert np.median([n for _, n in random_runs]) <= 24
    useful = [_sequential(_slice(48, 0.75, seed)[1], _verdicts(_slice(48, 0.75, seed)[0], 0.95, seed),
                          _slice(48, 0.75, seed)[0]) for seed in range(10)]
    assert all(d == "useful" for d, _ in useful)


def test_useful_sources_are_not_taken_for_degenerate_ones():
    """The early stop before the statistical look fires only on constant or echoing verdicts."""
    from fraud.supervisor.calibrate import degenerate

    for seed in range(50):
        y, s = _slice(6, 0.8, seed)
        assert degenerate(s, np.round(_verdicts(y, 0.7, seed), 2)) == ""


def test_too_few_verdicts_wait_then_give_up_at_the_last_look():
    y, s = _slice(8, 0.8, 0)
    v = _verdicts(y, 0.95, 0)
    assert decide(s, v, y, final=False).decision == "continue"
    last = decide(s, v, y, final=True)
    assert last.decision == "futile" and "only 8 calibration verdicts" in last.reason


def test_a_verdict_that_repeats_the_score_with_noise_adds_nothing():
    """A noisy echo ranks the labelled nodes almost as well as the score and is still worthless."""
    for seed in range(10):
        y, s = _slice(40, 0.9, seed)
        noisy = 1 / (1 + np.exp(-(np.log(s / (1 - s)) + 0.3 * np.random.default_rng(seed + 500).standard_normal(40))))
        info = decide(s, noisy, y, final=True)
        assert info.verdict_auroc > 0.7 and info.decision == "futile", info.reason


def test_posterior_moves_with_the_verdict_and_score_only_keeps_the_ranking():
    y, s = _slice(60, 0.75, 4)
    v = _verdicts(y, 0.95, 4)
    info = measure(s, v, y)
    assert info.effect > 0.5 and info.p_value < 0.01
    info.score_coef = score_map(s, y)
    assert info.coef[2] > 0  # the verdict's residual counts towards fraud
    lo, hi = posterior(info, np.array([0.5, 0.5]), np.array([0.05, 0.95]))
    assert lo < 0.5 < hi
    mapped = score_only(info, s)
    assert (np.argsort(mapped, kind="stable") == np.argsort(s, kind="stable")).all()
