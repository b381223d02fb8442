"""Use case: monitor the factor library (the factor_pipeline's daily branch): check the day's market data,
evaluate the stored factors' daily IC, flag decay, record the day's ``factor_monitor`` run.

Each job takes plain arguments, writes its results to the store and returns a small JSON-able dict
(the DAG passes it on through XCom). Every write is idempotent for a given day:

* daily metrics are keyed by (factor, date) in ``factor_daily_metrics`` and replaced on a re-run;
* runs are keyed by the caller's ``idempotency_key`` (``factor_pipeline/<step>/<day>``).

Monitoring, in words: on day ``end`` the factors are evaluated over ``lookback_days`` calendar days of
history, or more when a factor needs more (:func:`factors.expr.needed_history`: nested windows add up). A
signal date t gets an IC only when its ``horizon``-day forward return is known on ``end`` (t + h <= end),
so nothing looks ahead. Only the last ``write_days`` of signal dates are written: older dates in the
window are warm-up for the rolling operators, and the written ones have each factor's whole needed
history, so they equal the values of a run with a longer history. The rolling IC of date t is the mean IC of the factor's last ``window`` stored dates up to t;
the factor has *decayed* at t when that rolling IC, taken in the direction of the factor's reference IC
(its validation IC, else train IC, else the mean of its older stored ICs), falls below
``decay_ratio`` x |reference IC|.

Decay is judged only on *live* days: dates after the last date of the data the factor was found on
(the end of its run's last split; for a factor without one, the day it entered the library). Earlier
dates are in- or near-sample (a mined factor's own valid/test period), so a freshly mined pool is never
flagged on the day it was mined: a date is flagged only once the factor has ``window`` live days of IC
up to it, so its whole rolling window is live.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from finllm.errors import DataError
from finllm.store.db import store_or_default

if TYPE_CHECKING:
    from finllm.store.db import Store
    from finllm.store.tables import Factor, Run

MAX_LISTED = 50  # cap on ids listed in a job's returned dict (XCom stays small)


def _day(value: str | dt.date) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def validate_market_data(data: str, *, end: str | dt.date, lookback_days: int = 365,
                         max_tickers: int | None = None, max_stale_days: int = 7) -> dict[str, Any]:
    """Load and validate the last ``lookback_days`` of ``data`` up to ``end``.

    Raises DataError when the file is bad or has no rows within ``max_stale_days`` of ``end`` (the day's
    data has not arrived). Returns the shape, date range and the validation report (counts only).
    """
    from factors.panel import load_panel

    end_d = _day(end)
    panel = load_panel(data, start=end_d - dt.timedelta(days=lookback_days), end=end_d, max_tickers=max_tickers)
    last = _day(str(panel.dates[-1])[:10])
    stale = (end_d - last).days
    if stale > max_stale_days:
        raise DataError(f"{data}: newest row is {last}, {stale} days before {end_d} "
                        f"(more than {max_stale_days}): the day's market data has not arrived")
    report = panel.report.to_dict()
    return {"data": str(data), "end": end_d.isoformat(), "first_date": str(panel.dates[0])[:10],
            "last_date": last.isoformat(), "days": int(panel.shape[0]), "tickers": int(panel.shape[1]),
            "valid_rows": int(panel.valid.sum()), "stale_days": stale,
            "clean": bool(report.get("clean", True)), "issues": report.get("issues", [])[:MAX_LISTED]}


def reference_ic(metrics: dict | None) -> float | None:
    """A factor's reference IC from its stored metrics: validation IC, else train IC, else top-level IC."""
    metrics = metrics or {}
    for split in ("valid", "train"):
        v = _finite((metrics.get(split) or {}).get("ic"))
        if v is not None:
            return v
    return _finite(metrics.get("ic"))


def evaluate_library(data: str, *, end: str | dt.date, lookback_days: int = 365, write_days: int = 90,
                     horizon: int = 20, max_tickers: int | None = None, max_factors: int | None = None,
                     factor_ids: Sequence[str] | None = None, store: Store | None = None) -> dict[str, Any]:
    """Daily IC / RankIC of the stored factors over the window ending ``end``; writes them to
    ``factor_daily_metrics`` (replacing the same (factor, date) rows). Factors that cannot be evaluated
    on this data (e.g. a field it lacks) are listed under ``skipped`` with the reason."""
    import numpy as np

    from factors.evaluate import Evaluator
    from factors.metrics import ic_series, rank_ic_series
    from factors.panel import load_panel
    from factors.splits import calendar_days_for, history_needed
    from finllm.errors import FinllmError
    from finllm.store.tables import FactorDailyMetric

    store = store_or_default(store)
    end_d = _day(end)
    factors = store.factors()
    if factor_ids is not None:
        factors = [f for f in factors if f.id in set(factor_ids)]
    factors = sorted(factors, key=lambda f: f.created_at, reverse=True)[:max_factors]
    out: dict[str, Any] = {"end": end_d.isoformat(), "horizon": horizon, "factor_ids": [], "skipped": {},
                           "dates_written": 0, "first_date": None, "last_date": None}
    if not factors:
        return out
    # the written days need each factor's whole history (nested windows add up): load at least that much
    need = write_days + calendar_days_for(history_needed([f.tokens for f in factors]))
    out["history_days"] = max(lookback_days, need)
    panel = load_panel(data, start=end_d - dt.timedelta(days=out["history_days"]), end=end_d, max_tickers=max_tickers)
    ev = Evaluator(panel)
    target = ev.forward_return(horizon)  # NaN where t + h is past ``end``: those dates get no IC
    dates = [str(d)[:10] for d in panel.dates]
    first_write = (end_d - dt.timedelta(days=write_days)).isoformat()
    rows: list[FactorDailyMetric] = []
    for f in factors:
        try:
            values = ev.evaluate(list(f.tokens))
        except FinllmError as exc:
            out["skipped"][f.id] = str(exc)[:200]
            continue
        ic = np.asarray(ic_series(values, target, panel.in_universe), dtype=float)
        ric = np.asarray(rank_ic_series(values, target, panel.in_universe), dtype=float)
        for i, day in enumerate(dates):
            if day >= first_write and (math.isfinite(ic[i]) or math.isfinite(ric[i])):
                rows.append(FactorDailyMetric(factor_id=f.id, date=day, ic=_finite(ic[i]), rank_ic=_finite(ric[i])))
        out["factor_ids"].append(f.id)
    with store.session() as s:  # one transaction: replace this window's rows of these factors
        from sqlalchemy import delete

        s.execute(delete(FactorDailyMetric).where(FactorDailyMetric.factor_id.in_(out["factor_ids"]),
                                                  FactorDailyMetric.date >= first_write,
                                                  FactorDailyMetric.date <= end_d.isoformat()))
        s.add_all(rows)
    written = sorted({r.date for r in rows})
    out.update(dates_written=len(written), rows_written=len(rows), first_date=written[0] if written else None,
               last_date=written[-1] if written else None)
    return out


def live_since(factor: Factor, run: Run | None) -> str:
    """ISO date after which ``factor``'s daily ICs are out of sample: the latest end date among its run's
    split ranges (``config["splits"]``, e.g. a mining run's test end), else the day it was saved."""
    ends = []
    for text in ((getattr(run, "config", None) or {}).get("splits") or {}).values():
        end = str(text or "").partition(":")[2].strip()
        if end:
            ends.append(_day(end).isoformat())
    if ends:
        return max(ends)
    created = getattr(factor, "created_at", None)
    return (created.date() if created is not None else dt.date.today()).isoformat()


def flag_decay(*, end: str | dt.date, window: int = 20, decay_ratio: float = 0.5,
               factor_ids: Sequence[str] | None = None, store: Store | None = None) -> dict[str, Any]:
    """Rolling IC and decay flags from the stored daily ICs up to ``end`` (rows after ``end`` untouched).

    Returns, for the newest stored date of each factor, its rolling and reference IC, the date after which
    its days are live and how many live IC days it has, and the ids of the factors flagged decayed on that
    date (only factors with ``window`` live days can be; module doc)."""
    from sqlalchemy import select

    from finllm.store.tables import Factor, FactorDailyMetric, Run

    store = store_or_default(store)
    end_s = _day(end).isoformat()
    latest: dict[str, dict[str, Any]] = {}
    with store.session() as s:
        q = select(Factor)
        if factor_ids is not None:
            q = q.where(Factor.id.in_(list(factor_ids)))
        for f in s.scalars(q):
            rows = list(s.scalars(select(FactorDailyMetric).where(FactorDailyMetric.factor_id == f.id,
                                                                  FactorDailyMetric.date <= end_s)
                                  .order_by(FactorDailyMetric.date)))
            ics = [r.ic for r in rows]
            since = live_since(f, s.get(Run, f.run_id) if f.run_id else None)
            live = 0
            ref, ref_source = reference_ic(f.metrics), "stored metrics"
            if ref is None:
                older = [x for x in ics[:-window] if x is not None]
                ref, ref_source = (sum(older) / len(older), "own history") if len(older) >= window else (None, "none")
            for i, r in enumerate(rows):
                recent = [x for x in ics[max(0, i - window + 1): i + 1] if x is not None]
                r.rolling_ic = sum(recent) / len(recent) if len(recent) >= max(2, window // 2) else None
                live += int(r.date > since and r.ic is not None)
                r.decayed = bool(live >= window and ref is not None and ref != 0 and r.rolling_ic is not None
                                 and r.rolling_ic * math.copysign(1.0, ref) < decay_ratio * abs(ref))
            if rows:
                last = rows[-1]
                latest[f.id] = {"date": last.date, "rolling_ic": last.rolling_ic, "reference_ic": ref,
                                "reference": ref_source, "live_since": since, "live_days": live,
                                "decayed": last.decayed, "formula": f.formula[:120]}
    decayed = sorted(fid for fid, v in latest.items() if v["decayed"])
    return {"end": end_s, "window": window, "decay_ratio": decay_ratio, "factors": len(latest),
            "decayed": decayed[:MAX_LISTED], "n_decayed": len(decayed),
            "latest": dict(list(latest.items())[:MAX_LISTED])}


def record_monitor_run(idempotency_key: str, *, day: str, params: dict[str, Any], checked: dict[str, Any],
                       evaluated: dict[str, Any], decay: dict[str, Any], store: Store | None = None) -> dict[str, Any]:
    """One ``factor_monitor`` run in the store holding the day's figures (replaced on a re-run)."""
    store = store_or_default(store)
    with store.run("factor_monitor", params, name=f"factor monitor {day}", idempotency_key=idempotency_key) as run:
        run.metrics.update(
            data={k: checked[k] for k in ("first_date", "last_date", "days", "tickers", "valid_rows", "clean")},
            factors_evaluated=len(evaluated["factor_ids"]), factors_skipped=len(evaluated["skipped"]),
            dates_written=evaluated["dates_written"], n_decayed=decay["n_decayed"], decayed=decay["decayed"],
            latest=decay["latest"])
    return {"run_id": run.id, "day": day, "factors": len(evaluated["factor_ids"]), "n_decayed": decay["n_decayed"]}
