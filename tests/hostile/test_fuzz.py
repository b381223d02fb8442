"""Property-based fuzzing (hypothesis, bounded examples): mutated real files (byte-wise and structural)
and random CLI flag values. Property: a file is either refused with one DataError line, or it loads
into a consistent dataset/panel (tests/hostile/mutators.py: `violations`); a flag is accepted or
refused with exit 2 and one line. Never a traceback, never a silent wrong answer.

The bench (bench/bench_fuzz.py) runs the same mutators over >= 10,000 files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from finllm.cli.main import app

from .mutators import SEED_NAMES, build_seeds, classify, make_case

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
runner = CliRunner()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Path]:
    return build_seeds(tmp_path_factory.mktemp("seeds"))


def test_seed_files_load_clean(seeds):
    for name in SEED_NAMES:
        assert classify(seeds[name], name) == ("ok", ""), name


@FUZZ
@given(seed=st.sampled_from(SEED_NAMES), key=st.integers(0, 2**32 - 1))
def test_mutated_files_are_refused_or_consistent(seeds, seed, key):
    with tempfile.TemporaryDirectory() as work:
        path = make_case(seeds, seed, np.random.default_rng(key), Path(work))
        outcome, detail = classify(path, seed)
    assert outcome in ("ok", "refused"), f"{seed} key={key}: {outcome}: {detail}"


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(cost=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["1e999", "-0", "x"])),
       delay=st.one_of(st.integers(-10, 10**6), st.just(10**30)),
       batch=st.text(min_size=0, max_size=70))
def test_flag_values_never_traceback(tmp_path_factory, cost, delay, batch):
    """Flags that are checked before any data is read: accepted flags stop at the next (deliberately
    missing) input; refused ones exit 2 with one line. Either way no traceback."""
    missing = tmp_path_factory.getbasetemp() / "no_such_market.parquet"
    r = runner.invoke(app, ["factors", "eval", "Mean($close, 5)", "--data", str(missing),
                            "--cost-bps", str(cost), "--delay", str(delay)])
    _exit2_clean(r)
    r = runner.invoke(app, ["fraud", "score", "--model", "m", "--data", str(missing), "--batch", batch])
    _exit2_clean(r)


def _exit2_clean(r) -> None:
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.exception is None or isinstance(r.exception, SystemExit)
    if r.stderr.startswith("error:"):  # our one-line errors (click's usage errors have their own box)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
