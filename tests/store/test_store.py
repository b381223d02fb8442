"""Storage on SQLite and a real PostgreSQL (started by the test session): schema, idempotency,
transactions, and a writer killed mid-transaction leaving nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import sqlalchemy as sa

from finllm.store import Factor, PoolMember, Run, open_store
from finllm.store.db import tokens_hash

TABLES = {"runs", "factors", "pool_members", "factor_daily_metrics", "fraud_models", "alerts", "llm_calls",
          "llm_cache", "alembic_version"}


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from finllm.store.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_migrations_create_schema(db_url: str) -> None:
    store = open_store(db_url)
    names = set(sa.inspect(store.engine).get_table_names())
    assert TABLES <= names
    with store.engine.connect() as c:
        assert c.execute(sa.text("select version_num from alembic_version")).scalar() == _head()
    open_store(db_url).dispose()  # migrating twice is a no-op
    store.dispose()


def test_run_lifecycle_and_idempotency_key(db_url: str) -> None:
    store = open_store(db_url)
    rid = store.start_run("factor_mine", {"seed": 1}, name="a", idempotency_key="factor_pipeline/2021-01-04")
    store.save_pool(rid, [{"tokens": ["$close", "20", "Mean"], "formula": "Mean($close, 20)", "weight": 0.5}],
                    "rl")
    store.finish_run(rid, metrics={"test": {"ic": 0.03}}, artifacts={"json": "/tmp/x.json"})
    run = store.get_run(rid)
    assert run.status == "finished" and run.metrics["test"]["ic"] == 0.03 and run.finished_at is not None
    # same logical job again: same row, reset, old pool replaced -- never duplicated
    rid2 = store.start_run("factor_mine", {"seed": 2}, idempotency_key="factor_pipeline/2021-01-04")
    assert rid2 == rid
    assert store.get_run(rid).status == "running" and store.pool(rid) == []
    with store.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Run)) == 1
    store.dispose()


def test_save_factor_is_idempotent(db_url: str) -> None:
    store = open_store(db_url)
    toks = ["$close", "5", "Ref", "$close", "Div"]
    a = store.save_factor(toks, "Div(Ref($close, 5), $close)", "human", metrics={"train": {"ic": 0.01}})
    b = store.save_factor(toks, "Div(Ref($close, 5), $close)", "human", metrics={"train": {"ic": 0.02}})
    assert a == b
    [f] = store.factors()
    assert f.expr_hash == tokens_hash(toks) and f.metrics["train"]["ic"] == 0.02
    store.dispose()


def test_pool_save_is_atomic(db_url: str) -> None:
    store = open_store(db_url)
    rid = store.start_run("factor_mine", {})
    good = {"tokens": ["$open"], "formula": "$open", "weight": 1.0}
    bad = {"tokens": ["$high"], "formula": "$high"}  # no weight: fails after the first member was added
    with pytest.raises(KeyError):
        store.save_pool(rid, [good, bad], "rl")
    with store.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Factor)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(PoolMember)) == 0
    store.dispose()


def test_alerts_replace_per_batch(db_url: str) -> None:
    store = open_store(db_url)
    mid = store.save_fraud_model(name="sage", dataset="amazon", threshold=0.5, path="/tmp/m.pt")
    rows = [{"node": str(i), "score": 1 - i / 10, "rank": i + 1, "above_threshold": i < 2} for i in range(5)]
    store.save_alerts(mid, "2021-01-04", rows)
    store.save_alerts(mid, "2021-01-04", rows[:3])
    store.save_alerts(mid, "2021-01-05", rows)
    assert len(store.alerts(mid, "2021-01-04")) == 3 and len(store.alerts(mid)) == 8
    store.dispose()


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from finllm.store import open_store
    store = open_store(sys.argv[1])
    rid = store.start_run("factor_mine", {})
    with store.session() as s:
        for i in range(50):
            store.save_factor(["$close", str(i + 1), "Mean"], f"Mean($close, {i + 1})", "rl", session=s)
        s.flush()
        print("WROTE", flush=True)
        time.sleep(60)
""")


def test_killed_writer_leaves_no_rows(db_url: str) -> None:
    open_store(db_url).dispose()
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, db_url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "WROTE"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    time.sleep(0.2)
    store = open_store(db_url)
    with store.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Factor)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(Run)) == 1  # the run row committed before
    store.dispose()


_RACER = textwrap.dedent("""
    import os, sys, time
    from finllm.store import open_store
    url, go = sys.argv[1], sys.argv[2]
    while not os.path.exists(go):  # imports done: wait so that every process migrates at the same moment
        time.sleep(0.005)
    open_store(url).dispose()
""")


def test_parallel_first_opens_migrate_once(db_url: str, tmp_path) -> None:
    """Parallel jobs opening a fresh database at the same time (the mining bench's worker processes, two
    Airflow tasks) all succeed: migrations are serialised (a file lock / an advisory lock)."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, db_url, str(go)], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    time.sleep(3.0)  # let the interpreters import finllm
    go.touch()
    errs = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in errs), [e[-800:] for rc, e in errs if rc]
    store = open_store(db_url)
    with store.engine.connect() as c:
        assert c.execute(sa.text("select version_num from alembic_version")).scalar() == _head()
    store.dispose()


def test_settings_never_expose_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from finllm.config import load_settings

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    s = load_settings()
    assert "sk-secret" not in repr(s) and "sk-secret" not in str(s.redacted())
    assert s.redacted()["llm_api_key_set"] is True


def test_bad_config_file_is_clear(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finllm.config import load_settings
    from finllm.errors import ConfigError

    cfg = tmp_path / "finllm.toml"
    cfg.write_text("[finllm]\nllm_max_calls = 'many'\n")
    with pytest.raises(ConfigError, match="llm_max_calls"):
        load_settings(cfg)
    cfg.write_text("[finllm]\nnot_a_setting = 1\n")
    with pytest.raises(ConfigError, match="not_a_setting"):
        load_settings(cfg)


def test_non_finite_metrics_are_stored_as_null(db_url: str) -> None:
    """NaN is not JSON: PostgreSQL's json type rejects it. A run whose IC is NaN (too few names) is still
    stored, with null in its place, on both back ends."""
    store = open_store(db_url)
    rid = store.start_run("factor_eval", {"cost": float("inf")})
    store.finish_run(rid, metrics={"test": {"ic": float("nan"), "sharpe": 1.5, "path": [1.0, float("-inf")]}})
    run = store.get_run(rid)
    assert run.metrics == {"test": {"ic": None, "sharpe": 1.5, "path": [1.0, None]}}
    assert run.config == {"cost": None}
    store.dispose()
