"""Soak: 4 writers and 2 readers on the real PostgreSQL store, writers killed with SIGKILL at random and
replaced, then an integrity check; and stale `running` rows of dead processes marked failed on open."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from finllm.store import Run, open_store

REPO = Path(__file__).resolve().parents[2]
SOAK_S = float(os.environ.get("FINLLM_SOAK_S", "10"))  # CI keeps it short; longer runs: FINLLM_SOAK_S=300


def _spawn(*args: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:  # a file, not a pipe: a chatty worker can never block on a full pipe
        return subprocess.Popen([sys.executable, "-m", "tests.store.soak_worker", *args], cwd=REPO,
                                stdout=fh, stderr=fh)


def _kill(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait()  # reaped: no zombie keeps its pid "alive"


@pytest.mark.postgres
def test_soak_writers_killed_readers_consistent(postgres_url, tmp_path):
    open_store(postgres_url).dispose()  # migrate once, before the workers race
    log = tmp_path / "workers.log"
    rng = random.Random(0)

    def writer(w: int) -> subprocess.Popen:
        return _spawn("writer", postgres_url, str(w), str(tmp_path / f"ready{w}"), log=log)

    writers = {w: writer(w) for w in range(4)}
    outs = [tmp_path / f"reader{i}.json" for i in range(2)]
    readers = [_spawn("reader", postgres_url, "-", str(o), log=log) for o in outs]
    kills, next_id = 0, 4
    t_start = time.monotonic()
    while not any((tmp_path / f"ready{w}").exists() for w in writers) and time.monotonic() - t_start < 120:
        time.sleep(0.2)  # interpreter start-up on a loaded 2-core box takes seconds
    probe = sa.create_engine(postgres_url)

    def finished() -> int:
        with probe.connect() as c:
            return c.execute(sa.text("SELECT count(*) FROM runs WHERE status = 'finished'")).scalar()

    # SOAK_S of kills, extended (up to 120 s) on a slow machine until 20 runs and 5 kills have happened
    t_end, t_cap = time.monotonic() + SOAK_S, time.monotonic() + 120
    while time.monotonic() < t_end or (time.monotonic() < t_cap and (kills < 5 or finished() < 20)):
        time.sleep(rng.uniform(0.3, 1.0))
        grown = [w for w in writers if (tmp_path / f"ready{w}").exists()]  # killed mid-loop, not in start-up
        if not grown:
            continue
        w = rng.choice(grown)
        assert writers[w].poll() is None, log.read_text()[-2000:]  # died on its own: a bug
        _kill(writers.pop(w))
        kills += 1
        writers[next_id] = writer(next_id)
        next_id += 1
    for p in writers.values():
        assert p.poll() is None, log.read_text()[-2000:]
        _kill(p)
    for p in readers:
        p.terminate()
        p.wait(timeout=30)
    store = open_store(postgres_url)  # reaps the runs the killed writers left `running`
    with store.session() as s:
        status = dict(s.execute(sa.select(Run.status, sa.func.count()).group_by(Run.status)).all())
        assert status.get("running", 0) == 0 and status.get("finished", 0) >= 20, (status, log.read_text()[-2000:])
        assert status.get("failed", 0) >= 1  # some writer was killed inside a run, and that run was reaped
        finished = {r.id: r for r in s.scalars(sa.select(Run).where(Run.status == "finished"))}
        sizes = dict(s.execute(sa.text("SELECT run_id, count(*) FROM pool_members GROUP BY run_id")).all())
        for rid, run in finished.items():  # no partial pool of a finished run
            assert run.metrics["members"] == run.config["n"] == sizes.get(rid, 0)
        dup = s.execute(sa.text("SELECT count(*) - count(DISTINCT expr_hash) FROM factors")).scalar()
        assert dup == 0 and s.execute(sa.text("SELECT count(*) FROM factors")).scalar() <= 40
        batches = s.execute(sa.text("SELECT count(*), count(DISTINCT node) FROM alerts GROUP BY model_id, batch")).all()
        assert batches and all(n == d == 25 for n, d in batches)  # whole batches, no duplicate nodes
    store.dispose()
    probe.dispose()
    seen = [json.loads(o.read_text()) for o in outs]
    assert all(r["runs_checked"] > 0 and r["batches_checked"] > 0 for r in seen), seen
    assert sum(r["bad_pools"] + r["partial_batches"] for r in seen) == 0, seen
    assert kills >= 5


def test_stale_running_rows_are_marked_failed(db_url):
    store = open_store(db_url)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    live = store.start_run("soak", {})
    ids = {k: store.start_run("soak", {}) for k in ("dead", "reused", "other")}
    with store.session() as s:
        s.get(Run, ids["dead"]).pid = child.pid  # owned by the child, which is then killed
        reused = s.get(Run, ids["reused"])  # its pid belongs to a process started after the run
        reused.started_at = datetime.now(timezone.utc) - timedelta(days=3650)
        other = s.get(Run, ids["other"])
        other.host, other.pid = "another-host.example", 1
    _kill(child)
    store.dispose()
    store = open_store(db_url)
    runs = {k: store.get_run(v) for k, v in ids.items()}
    assert runs["dead"].status == "failed" and str(child.pid) in runs["dead"].error
    assert runs["reused"].status == "failed"
    assert runs["other"].status == "running"  # another host's process cannot be checked from here
    assert store.get_run(live).status == "running"  # this process is alive
    store.finish_run(live)
    store.dispose()
