"""An RL mining run writes only under its --out (and FINLLM_HOME): nothing in the system temp directory."""

from __future__ import annotations

import tempfile

from factors.mine import MineConfig, mine
from tests.factors.conftest import US


def test_rl_mine_run_creates_no_sb3_folder_in_tmp(tmp_path, monkeypatch) -> None:
    tmp = tmp_path / "system_tmp"  # the temp directory as every library sees it, for this test only
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    cfg = MineConfig(data=str(US), train="2007-01-01:2008-12-31", valid="2009-01-01:2009-06-30",
                     test="2009-07-01:2009-12-31", method="rl", minutes=0, max_episodes=40, pool_size=3, seed=0,
                     max_tickers=15, rl={"n_envs": 4, "n_steps": 16, "batch_size": 64, "n_epochs": 1})
    res = mine(cfg, tmp_path / "out", progress=False, resume=False)
    assert res["mining"]["episodes"] >= 40
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("SB3-")) == []
