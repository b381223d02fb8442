"""Time series for a factor report, recomputed from the run's panel and its saved pool.

A mining run stores its configuration (data path, splits, horizon, costs; :class:`factors.mine.MineConfig`)
and its pool (tokens + weights). The report rebuilds the same scoring panel with
:class:`factors.mine.SplitScorer` (same warm-up, same per-day z-scoring and combination), so the plotted
IC, long-short returns and quantile returns are the ones the run's metrics summarise — the report's
"recomputed" table shows both side by side.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finllm.errors import DataError

NAN = float("nan")


@dataclass
class FactorSeries:
    """D = days of the scoring panel (warm-up + all splits), K = pool members."""

    dates: np.ndarray  # (D,) datetime64[D]
    split_of: np.ndarray  # (D,) "train" | "valid" | "test" | "" (warm-up / purged)
    ic: np.ndarray  # (D,) daily IC of the combination with the horizon-day forward return
    rank_ic: np.ndarray  # (D,)
    ls_net: np.ndarray  # (D,) daily long-short return after costs (NaN where none)
    ls_gross: np.ndarray  # (D,) before costs
    quantile_returns: dict[str, list[float]]  # split -> mean forward return per quantile (lowest first)
    corr: np.ndarray | None  # (K, K) mean daily cross-sectional correlation on the valid split
    labels: list[str]
    horizon: int
    cost_bps: float
    table: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _mine_config(config: dict[str, Any]) -> Any:
    from factors.mine import MineConfig

    names = {f.name for f in dataclasses.fields(MineConfig)}
    missing = [k for k in ("data", "train", "valid", "test") if not config.get(k)]
    if missing:
        raise DataError(f"the run's config lacks {', '.join(missing)}: cannot rebuild its panel")
    from finllm.store.paths import resolve_stored

    cfg = MineConfig(**{k: v for k, v in config.items() if k in names})
    cfg.data = str(resolve_stored(cfg.data))  # an older run may have stored it relative to its folder
    return cfg


def factor_series(run: Any, pool: list[tuple[Any, float]], *, quantiles: int = 5) -> FactorSeries:
    """Recompute the plotted series of mining run ``run`` from its panel and ``pool`` [(Factor, weight)]."""
    from factors.backtest import long_short
    from factors.metrics import ic_series, quantile_returns, rank_ic_series
    from factors.mine import SplitScorer, load_for_mining

    if not pool:
        raise DataError("the run saved no pool")
    cfg = _mine_config(run.config or {})
    if not Path(cfg.data).exists():
        raise DataError(f"{cfg.data}: the run's market data is not available here")
    panel, splits = load_for_mining(cfg)
    sc = SplitScorer(panel, splits, cfg.horizon, cfg.cost_bps, cfg.warmup_days, cfg.rebalance)
    members = [(list(f.tokens), float(w)) for f, w in pool]
    combo = sc.combine(members)  # (D, S)
    ic = ic_series(combo, sc.target, sc.mask).numpy()
    ric = rank_ic_series(combo, sc.target, sc.mask).numpy()
    dates = np.asarray(sc.panel.dates).astype("datetime64[D]")
    d = len(dates)
    split_of = np.full(d, "", dtype=object)
    for name, days in sc.days.items():
        split_of[days.numpy()] = name

    bt = long_short(combo, sc.fwd1, sc.mask, quantiles=quantiles, cost_bps=cfg.cost_bps, delay=1,
                    periods_per_year=sc.periods_per_year, rebalance=sc.rebalance)
    has = torch.isfinite(sc.fwd1[1:]).any(1).numpy()  # decision days kept by long_short (delay 1)
    idx = np.flatnonzero(has)
    net, gross = np.full(d, NAN), np.full(d, NAN)
    net[idx], gross[idx] = bt.returns.numpy(), bt.gross.numpy()
    in_splits = split_of != ""
    net[~in_splits], gross[~in_splits] = NAN, NAN  # plot the evaluated periods only

    qret = {name: quantile_returns(combo[days], sc.target[days], sc.mask[days], quantiles)
            for name, days in sc.days.items()}

    corr = None
    labels = [str(i + 1) for i in range(len(members))]
    if len(members) > 1:
        vdays = sc.days.get("valid", next(iter(sc.days.values())))
        xs = [torch.where(sc.mask, sc.ev.evaluate(t), torch.full((), NAN))[vdays] for t, _ in members]
        k = len(xs)
        corr = np.eye(k)
        m = sc.mask[vdays]
        for i in range(k):
            for j in range(i + 1, k):
                s = ic_series(xs[i], xs[j], m)
                s = s[torch.isfinite(s)]
                corr[i, j] = corr[j, i] = float(s.mean()) if s.numel() else NAN

    stored = (run.metrics or {}).get("pool", {})
    rows = []
    for name, days in sc.days.items():
        sel = days.numpy()
        ics, rics = ic[sel], ric[sel]
        rows.append([name, float(np.nanmean(ics)), (stored.get(name) or {}).get("ic"), float(np.nanmean(rics)),
                     (stored.get(name) or {}).get("rank_ic"), float(np.nansum(net[sel])), float(np.nansum(gross[sel]))])
    table = {"columns": ["split", "IC (recomputed)", "IC (stored)", "RankIC (recomputed)", "RankIC (stored)",
                         "long-short net (sum)", "long-short gross (sum)"],
             "rows": rows, "empty": "", "formula_cols": [], "id": "series-table"}
    return FactorSeries(dates=dates, split_of=split_of, ic=ic, rank_ic=ric, ls_net=net, ls_gross=gross,
                        quantile_returns=qret, corr=corr, labels=labels, horizon=cfg.horizon,
                        cost_bps=cfg.cost_bps, table=table)
