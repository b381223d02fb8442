"""Mined formulas are stored and shown simplified (factors.simplify), with the mined form kept as lineage.

The pool is seeded from the library with redundant spellings of real factors (what miners produce), then a
real GP run on a slice of the US panel finishes it: the stored pool, the factor library and result.json hold
the simplified formulas, and the run's metrics keep the originals."""

from __future__ import annotations

import json

from factors.mine import MineConfig
from finllm.app.mine import mine_and_record
from factors.simplify import simplify_tokens
from finllm.store import open_store
from tests.mining.conftest import SPLITS

NOISY = {  # mined spelling -> simplified
    "Mul(Mul(Div(Delta($close, 5), Ref($close, 5)), -1), 1)": "Mul(Div(Delta($close, 5), Ref($close, 5)), -1)",
    "Div(Mul(Std($close, 20), -1), Mul(Mean($close, 20), -1))": "Div(Std($close, 20), Mean($close, 20))",
    "Log(Mul(Div($volume, Mean($volume, 20)), 1))": "Log(Div($volume, Mean($volume, 20)))",
}


def test_pool_is_stored_simplified(us_slice, tmp_path) -> None:
    from factors.expr import parse

    store = open_store(f"sqlite:///{tmp_path / 'f.db'}")
    for text in NOISY:
        store.save_factor(list(parse(text).tokens), text, "human")
    cfg = MineConfig(data=str(us_slice), method="gp", minutes=0, max_episodes=1, pool_size=3, seed=0,
                     seed_library="all", **SPLITS)
    res = mine_and_record(cfg, tmp_path / "out", store, progress=False, resume=False)
    assert res["mining"]["seeded_from_library"] >= 1
    changed = [m for m in res["pool"] if "original_formula" in m]
    assert changed and all(NOISY[m["original_formula"]] == m["formula"] for m in changed)
    for m in res["pool"]:
        assert list(simplify_tokens(m["tokens"]).tokens) == m["tokens"]  # every stored formula is simplified
    stored = {f.formula: f for f, _ in store.pool(res["run_id"])}
    assert set(stored) == {m["formula"] for m in res["pool"]}
    lineage = store.get_run(res["run_id"]).metrics["simplified"]
    assert {d["original"] for d in lineage} == {m["original_formula"] for m in changed}
    assert json.loads((tmp_path / "out" / "result.json").read_text())["pool"][0]["formula"] == res["pool"][0]["formula"]
