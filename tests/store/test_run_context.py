"""``Store.run``: the one place a run's lifecycle is written (start, finished / failed / interrupted),
on SQLite and a real PostgreSQL."""

from __future__ import annotations

import pytest

from finllm.store import open_store


def test_run_context_finished_records_metrics_and_artifacts(db_url: str, tmp_path) -> None:
    store = open_store(db_url)
    with store.run("factor_mine", {"seed": 3, "data": "x.parquet"}, name="ctx", idempotency_key="k/1") as run:
        assert store.get_run(run.id).status == "running"
        run.metrics["test"] = {"ic": float("nan"), "rank_ic": 0.02}
        run.artifacts["result_json"] = str(tmp_path / "result.json")
    row = store.get_run(run.id)
    assert (row.status, row.name, row.error) == ("finished", "ctx", None)
    assert row.metrics == {"test": {"ic": None, "rank_ic": 0.02}}  # NaN stored as null on both back ends
    assert row.artifacts["result_json"] == str(tmp_path / "result.json")
    assert row.finished_at is not None
    with store.run("factor_mine", {"seed": 4}, idempotency_key="k/1") as again:  # same key: same row reused
        pass
    assert again.id == run.id and store.get_run(run.id).config["seed"] == 4
    store.dispose()


def test_run_context_failed_and_interrupted_reraise(db_url: str) -> None:
    store = open_store(db_url)
    with pytest.raises(ValueError, match="bad column"):
        with store.run("fraud_train", {}) as run:
            run.metrics["partial"] = 1
            raise ValueError("bad column")
    row = store.get_run(run.id)
    assert (row.status, row.error) == ("failed", "ValueError: bad column")
    assert row.metrics == {}  # nothing half-recorded from the failed block
    with pytest.raises(KeyboardInterrupt):
        with store.run("factor_mine", {}) as run2:
            raise KeyboardInterrupt
    assert store.get_run(run2.id).status == "interrupted"
    with store.run("factor_ask", {}) as run3:
        run3.metrics["status"] = "no_usable_factor"
        run3.fail("every valid formula was a duplicate")
    row3 = store.get_run(run3.id)
    assert (row3.status, row3.error, row3.metrics["status"]) == ("failed", "every valid formula was a duplicate",
                                                                 "no_usable_factor")
    store.dispose()
