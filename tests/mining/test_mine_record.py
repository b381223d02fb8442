"""Mine-and-record around the engine: bad input leaves no run; the finished pool is scored with the
history its members need (nested windows add up), not a fixed 126-day warm-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from factors.expr import parse
from factors.mine import MineConfig, load_for_mining, scoring_warmup
from factors.scoring import SplitScorer
from finllm.app.mine import mine_and_record
from finllm.errors import ConfigError
from finllm.store import open_store

LATE = dict(train="2008-01-01:2009-12-31", valid="2010-01-01:2010-12-31", test="2011-01-01:2011-12-31")


def test_too_short_train_split_fails_before_any_run(us_slice, tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    cfg = MineConfig(data=str(us_slice), train="2009-12-01:2009-12-31", valid=LATE["valid"], test=LATE["test"],
                     method="gp", minutes=0, max_episodes=1, pool_size=2)
    with pytest.raises(ConfigError, match="--train"):
        mine_and_record(cfg, tmp_path / "out", store, progress=False)
    assert store.latest_runs("factor_mine") == []


def test_pool_scoring_loads_the_history_its_members_need(us_slice) -> None:
    cfg = MineConfig(data=str(us_slice), method="gp", **LATE)
    panel, splits = load_for_mining(cfg)
    deep = list(parse("Mean(Mean($close, 100), 100)").tokens)  # needs 99 + 99 = 198 trading days
    assert scoring_warmup(cfg, [deep]) == 198 and scoring_warmup(cfg, [list(parse("$close").tokens)]) == 126
    first = np.datetime64(splits[0].start, "D")

    def first_train_day(warmup: int) -> torch.Tensor:
        sc = SplitScorer(panel, splits, cfg.horizon, cfg.cost_bps, warmup)
        d = int(np.searchsorted(sc.panel.dates.astype("datetime64[D]"), first))
        return sc.ev.evaluate(deep)[d]

    full = SplitScorer(panel, splits, cfg.horizon, cfg.cost_bps, None)  # the whole loaded history
    d = int(np.searchsorted(full.panel.dates.astype("datetime64[D]"), first))
    exact = full.ev.evaluate(deep)[d]
    assert torch.isfinite(exact).sum() > 20
    assert torch.allclose(first_train_day(scoring_warmup(cfg, [deep])), exact, equal_nan=True)
    short = first_train_day(126)  # the fixed warm-up cannot fill the nested windows: other values
    assert not torch.allclose(short, exact, equal_nan=True)
