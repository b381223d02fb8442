"""Library monitoring judges decay only on live days: after the data a factor was found on (its run's last
split end), and only once the factor has ``window`` such days. A real SQLite store; the daily ICs are
written as evaluate_library writes them (the IC values are the rule's inputs, chosen to look decayed)."""

from __future__ import annotations

import datetime as dt

from finllm.app.monitor import flag_decay
from finllm.store import open_store
from finllm.store.tables import FactorDailyMetric

WINDOW = 5
MINED_TO = dt.date(2021, 3, 31)  # the mining run's test split ends here


def _days(start: dt.date, n: int) -> list[str]:
    out, d = [], start
    while len(out) < n:
        d += dt.timedelta(days=1)
        if d.weekday() < 5:
            out.append(d.isoformat())
    return out


def test_decay_waits_for_window_live_days(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'f.db'}")
    run = store.start_run("factor_mine", {"splits": {"train": "2015-01-01:2019-12-31", "valid": "2020-01-01:2020-06-30",
                                                     "test": f"2020-07-01:{MINED_TO}"}})
    fid = store.save_factor(["$close", "5", "Mean"], "Mean($close, 5)", "mined_gp", run_id=run,
                            metrics={"valid": {"ic": 0.05}})
    before = _days(MINED_TO - dt.timedelta(days=30), 15)  # the factor's own test period: IC looks decayed
    live = _days(MINED_TO, 10)
    with store.session() as s:
        s.add_all(FactorDailyMetric(factor_id=fid, date=d, ic=-0.02) for d in before + live)

    def flagged(end: str) -> tuple[bool, int]:
        out = flag_decay(end=end, window=WINDOW, store=store)
        return fid in out["decayed"], out["latest"][fid]["live_days"]

    assert flagged(before[-1]) == (False, 0)  # the day it was mined: nothing is live yet
    assert flagged(live[WINDOW - 2]) == (False, WINDOW - 1)
    assert flagged(live[WINDOW - 1]) == (True, WINDOW)
    assert flag_decay(end=live[-1], window=WINDOW, store=store)["latest"][fid]["live_since"] == MINED_TO.isoformat()


def test_a_factor_without_a_run_is_live_from_the_day_it_was_saved(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'f.db'}")
    fid = store.save_factor(["$close", "$open", "Sub"], "Sub($close, $open)", "human", metrics={"valid": {"ic": 0.03}})
    past = _days(dt.date(2020, 1, 1), 3 * WINDOW)
    with store.session() as s:
        s.add_all(FactorDailyMetric(factor_id=fid, date=d, ic=-0.03) for d in past)
    out = flag_decay(end=past[-1], window=WINDOW, store=store)
    assert out["n_decayed"] == 0 and out["latest"][fid]["live_days"] == 0
    assert out["latest"][fid]["live_since"] == dt.date.today().isoformat()
