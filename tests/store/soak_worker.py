"""Soak-test worker processes (``python -m tests.store.soak_worker writer URL ID READY``
or ``... reader URL - OUT``).

A writer loops: start a run, save a pool of 3-8 factors drawn from a shared set of 40 (so writers race
on the same factor rows), replace the alerts of one of 4 batches of its fraud model, finish the run
with the pool size in its metrics; it creates the file READY after its first run. A reader loops over finished runs and alert batches and counts what
it sees that a committed transaction can never leave: a pool whose size differs from the run's record,
a batch with a partial alert set. It writes its counts as JSON to OUT when stopped (SIGTERM)."""

from __future__ import annotations

import json
import random
import signal
import sys
import time

ALERTS_PER_BATCH = 25


def writer(url: str, wid: int, ready: str) -> None:
    from finllm.store import open_store

    store = open_store(url)
    rng = random.Random(wid * 7919 + int(time.time() * 1000))
    model_id = store.save_fraud_model(name="soak", dataset=f"w{wid}", threshold=0.5, normalization={},
                                      config={}, metrics={}, path=f"/nonexistent/w{wid}")
    while True:
        k = rng.randint(3, 8)
        rid = store.start_run("soak", {"writer": wid, "n": k})
        picks = rng.sample(range(40), k)
        store.save_pool(rid, [{"tokens": ["$close", str(i), "Mean"], "formula": f"Mean($close, {i})",
                               "weight": rng.random()} for i in picks], source="rl")
        batch = f"b{rng.randint(0, 3)}"
        store.save_alerts(model_id, batch, [{"node": str(n), "score": rng.random(), "rank": n + 1,
                                             "above_threshold": False} for n in range(ALERTS_PER_BATCH)],
                          run_id=rid)
        store.finish_run(rid, metrics={"members": k})
        if ready:  # the parent kills only writers that are past start-up, i.e. inside the loop
            open(ready, "w").close()
            ready = ""


def reader(url: str, out: str) -> None:
    from sqlalchemy import func, select

    from finllm.store import Alert, Run, open_store

    store = open_store(url)
    seen = {"runs_checked": 0, "bad_pools": 0, "batches_checked": 0, "partial_batches": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        for run in store.latest_runs("soak", limit=15):
            if run.status == "finished":
                seen["runs_checked"] += 1
                seen["bad_pools"] += len(store.pool(run.id)) != run.metrics.get("members")
        with store.session() as s:
            for n in s.execute(select(func.count()).select_from(Alert).group_by(Alert.model_id, Alert.batch)).scalars():
                seen["batches_checked"] += 1
                seen["partial_batches"] += n != ALERTS_PER_BATCH
        time.sleep(0.05)
    with open(out, "w") as fh:
        json.dump(seen, fh)


if __name__ == "__main__":
    role, url = sys.argv[1], sys.argv[2]
    if role == "writer":
        writer(url, int(sys.argv[3]), sys.argv[4])
    else:
        reader(url, sys.argv[4])
