"""The factor tear sheet of a mined pool: every figure the factor report shows, computed once by the
engine and stored with the run (the report only reads it).

Per split (train / valid / test; the report shades test) for the pool's combination and for the
baselines fitted in the same run on the same splits (Alpha158-style linear, LightGBM, and LightGBM on
Alpha158 + the pool's combined signal as one feature, the pool's incremental value; see
:func:`factors.handcrafted.baseline_factors`): IC / RankIC summaries and daily series, long-short
top-minus-bottom returns before and after costs with the run's holding period (``rebalance``), drawdown,
excess return of the top-quantile book over the equal-weight market (after the book's costs), per-quantile
book returns, factor rank autocorrelation and quantile turnover at the holding period, IC decay over
horizons. For the pool also: the IC distribution (histogram + normal QQ data), a monthly IC table, quantile
turnover over time, member formulas with weights and figures (each member's test ICIR and long-short book,
signed by its weight), and the members' correlation on the valid split.

No look-ahead: the pool's weights come from the miner (train); the baselines fit on train (LightGBM
stops early on valid); every backtest of a split is formed from that split's days only, exactly as
:meth:`factors.mine.SplitScorer.report` scores the stored metrics, so the pool's figures here equal
``Run.metrics["pool"]``. IC decay at a horizon longer than the run's reads returns up to
``h - horizon`` days past a split's (purged) end; it is a description of the signal, not a choice.

Stored as ``tearsheet.json`` (summaries, small tables) plus ``tearsheet.npz`` next to it (daily series,
D = days of the scoring panel): :func:`save_tearsheet`, :func:`load_tearsheet`.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from finllm.jsonsafe import json_safe

if TYPE_CHECKING:
    from factors.mine import MineConfig, SplitScorer
    from factors.panel import Panel
    from factors.splits import Split

VERSION = 1
DECAY_HORIZONS = (1, 5, 10, 20, 40, 60)
HIST_BINS = 30
QQ_POINTS = 99
SPLIT_CODES = ("", "train", "valid", "test")
NAN = float("nan")


def _split_codes(sc: SplitScorer) -> np.ndarray:
    """(D,) int8: 0 = warm-up / purged, 1 train, 2 valid, 3 test."""
    codes = np.zeros(len(sc.panel.dates), dtype=np.int8)
    for name, days in sc.days.items():
        codes[days.numpy()] = SPLIT_CODES.index(name)
    return codes


def _place(d: int, at: np.ndarray, values: torch.Tensor | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.full(d, NAN) if out is None else out
    out[at] = np.asarray(values, dtype=float)
    return out


def _model_sheet(sc: SplitScorer, x: torch.Tensor, quantiles: int, decay: dict[int, torch.Tensor],
                 detail: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-split summaries and (D,)-long daily series of one (D, S) factor."""
    from factors.backtest import additive_drawdown, drawdown_series, long_short, quantile_books
    from factors.metrics import (factor_report, ic_decay, ic_series, quantile_turnover, rank_autocorrelation,
                                 rank_ic_series)

    d = x.shape[0]
    lag = int(sc.rebalance)
    ppy = sc.periods_per_year
    series = {"ic": ic_series(x, sc.target, sc.mask).numpy(), "rank_ic": rank_ic_series(x, sc.target, sc.mask).numpy(),
              "rank_autocorr": rank_autocorrelation(x, sc.mask, lag).numpy(),
              "ls_net": np.full(d, NAN), "ls_gross": np.full(d, NAN), "drawdown": np.full(d, NAN),
              "excess": np.full(d, NAN)}
    outside = ~_any_split(sc).numpy()  # warm-up and purged days: not evaluated, not drawn
    for key in ("ic", "rank_ic", "rank_autocorr"):
        series[key][outside] = NAN
    qturn = quantile_turnover(x, sc.mask, quantiles, lag)
    if detail:
        series["quantile_returns"] = np.full((quantiles, d), NAN)
        series["quantile_turnover"] = qturn.numpy()
        series["quantile_turnover"][:, outside] = NAN
    splits: dict[str, Any] = {}
    for name, days in sc.days.items():
        idx = torch.nonzero(days).squeeze(1).numpy()
        xs, ms, fs = x[days], sc.mask[days], sc.fwd1[days]
        r = factor_report(x, sc.target, sc.mask, cost_bps=sc.cost_bps, quantiles=quantiles, horizon=sc.horizon,
                          days=days, periods_per_year=ppy, rebalance=lag)
        bt = long_short(xs, fs, ms, quantiles=quantiles, cost_bps=sc.cost_bps, delay=1, periods_per_year=ppy,
                        rebalance=lag)
        at = idx[torch.nonzero(torch.isfinite(fs[1:]).any(1)).squeeze(1).numpy()]  # decision days kept
        _place(d, at, bt.returns, series["ls_net"])
        _place(d, at, bt.gross, series["ls_gross"])
        _place(d, at, drawdown_series(bt.returns.numpy()), series["drawdown"])
        books = quantile_books(xs, fs, ms, quantiles, delay=1, rebalance=lag)
        top_net = books.returns[-1] - books.turnover[-1] * sc.cost_bps * 1e-4
        excess = (top_net - books.market).numpy()
        excess_gross = (books.returns[-1] - books.market).numpy()
        bat = idx[books.days.numpy()]
        _place(d, bat, excess, series["excess"])
        if detail:
            for q in range(quantiles):
                series["quantile_returns"][q, bat] = books.returns[q].numpy()
        ex_sd = float(np.std(excess, ddof=1)) if len(excess) > 1 else NAN
        summ = bt.summary()
        splits[name] = {
            "ic": r["ic"], "rank_ic": r["rank_ic"], "icir": r["icir"], "rank_icir": r["rank_icir"],
            "ic_t_nw": r["t_stat_nw"], "ic_std": r["ic_std"], "n_days": r["n_days"],
            **{k: summ[k] for k in ("sharpe", "ann_return", "ann_vol", "max_drawdown", "turnover", "cum_return",
                                    "gross_ann_return")},
            "excess_ann_return": float(np.mean(excess)) * ppy if len(excess) else NAN,
            "excess_ir": float(np.mean(excess)) / ex_sd * math.sqrt(ppy) if ex_sd and ex_sd > 0 else NAN,
            "excess_ann_return_gross": float(np.mean(excess_gross)) * ppy if len(excess) else NAN,
            "excess_max_drawdown": additive_drawdown(excess),
            "quantile_returns": r["quantile_returns"], "top_minus_bottom": r["top_minus_bottom"],
            "rank_autocorr": _nanmean(series["rank_autocorr"][idx]),
            "quantile_turnover": [_nanmean(qturn[q, idx].numpy()) for q in range(quantiles)],
            "ic_decay": {str(h): v for h, v in ic_decay(xs, {h: t[days] for h, t in decay.items()}, ms,
                                                        rank=False).items()},
            "rank_ic_decay": {str(h): v for h, v in ic_decay(xs, {h: t[days] for h, t in decay.items()}, ms,
                                                             rank=True).items()},
        }
    return splits, series


def _any_split(sc: SplitScorer) -> torch.Tensor:
    """(D,) bool: the day belongs to a split (not warm-up, not purged)."""
    out = torch.zeros(len(sc.panel.dates), dtype=torch.bool)
    for days in sc.days.values():
        out |= days
    return out


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else NAN


def ic_distribution(ic: np.ndarray, codes: np.ndarray) -> dict[str, Any]:
    """Histogram (shared bins) and normal QQ points of the daily IC, per split. ic, codes: (D,)."""
    ok = np.isfinite(ic) & (codes > 0)
    if not ok.any():
        return {"bins": [], "splits": {}}
    lo, hi = float(np.min(ic[ok])), float(np.max(ic[ok]))
    bins = np.linspace(lo, hi + 1e-12, HIST_BINS + 1)
    probs = (np.arange(1, QQ_POINTS + 1) - 0.5) / QQ_POINTS
    z = np.array([statistics.NormalDist().inv_cdf(p) for p in probs])
    out: dict[str, Any] = {"bins": bins, "splits": {}}
    for code, name in enumerate(SPLIT_CODES):
        v = ic[(codes == code) & np.isfinite(ic)] if code else np.empty(0)
        if v.size < 3:
            continue
        m, s = float(v.mean()), float(v.std(ddof=1))
        c = (v - m) / s if s > 0 else v * 0
        out["splits"][name] = {"counts": np.histogram(v, bins)[0], "mean": m, "std": s,
                               "skew": float(np.mean(c ** 3)), "kurtosis": float(np.mean(c ** 4) - 3),
                               "qq_normal": z, "qq_ic": np.quantile(v, probs)}
    return out


def monthly_ic(dates: np.ndarray, ic: np.ndarray, codes: np.ndarray) -> dict[str, Any]:
    """Mean daily IC per calendar month of the evaluated days (warm-up / purged days left out)."""
    months = dates.astype("datetime64[M]")
    ok = np.isfinite(ic) & (codes > 0)
    keys = np.unique(months[ok])
    rows = [(str(k), float(ic[ok & (months == k)].mean()),
             SPLIT_CODES[int(np.bincount(codes[ok & (months == k)]).argmax())]) for k in keys]
    return {"months": [r[0] for r in rows], "ic": [r[1] for r in rows], "split": [r[2] for r in rows]}


def member_correlation(sc: SplitScorer, members: list[dict[str, Any]]) -> np.ndarray | None:
    """(K, K) mean daily cross-sectional correlation between members on the valid split."""
    from factors.metrics import ic_series

    if len(members) < 2:
        return None
    vdays = sc.days.get("valid", next(iter(sc.days.values())))
    m = sc.mask[vdays]
    xs = [torch.where(sc.mask, sc.ev.evaluate(list(mb["tokens"])), torch.full((), NAN))[vdays] for mb in members]
    k = len(xs)
    corr = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            corr[i, j] = corr[j, i] = _nanmean(ic_series(xs[i], xs[j], m).numpy())
    return corr


def member_figures(sc: SplitScorer, tokens: list[str], weight: float, quantiles: int,
                   split: str = "test") -> dict[str, dict[str, float]]:
    """On ``split``: ICIR and the long-short book of one member, signed as the pool uses it (sign of its weight)."""
    from factors.backtest import long_short
    from factors.metrics import ic_series, summarize

    days = sc.days.get(split)
    if days is None:
        return {}
    x = torch.where(sc.mask, sc.ev.evaluate(tokens), torch.full((), NAN))[days] * (1.0 if weight >= 0 else -1.0)
    ic = summarize(ic_series(x, sc.target[days], sc.mask[days]))
    bt = long_short(x, sc.fwd1[days], sc.mask[days], quantiles=quantiles, cost_bps=sc.cost_bps, delay=1,
                    periods_per_year=sc.periods_per_year, rebalance=sc.rebalance).summary()
    return {split: {"icir": ic["ir"], "sharpe": bt["sharpe"], "ann_return": bt["ann_return"],
                    "turnover": bt["turnover"]}}


def tearsheet(panel: Panel, splits: list[Split], members: list[dict[str, Any]], cfg: MineConfig, *,
              baselines: bool = True, scorer: SplitScorer | None = None, quantiles: int = 5,
              threads: int = 1) -> dict[str, Any]:
    """The tear sheet of the pool ``members`` ([{tokens, formula, weight[, metrics]}], as
    :func:`factors.mine.score_pool` returns them) on ``panel`` / ``splits`` with ``cfg``'s horizon, costs
    and holding period. ``baselines=False`` skips the Alpha158-style and LightGBM fits (the sheet says so).
    ``threads``: LightGBM's; 1 by default because on a busy 2-core machine two OpenMP threads spin-wait
    (measured on the full US panel under load: 38 CPU-s / 83 s wall with 2 threads vs 11 CPU-s / 22 s with 1).

    Returns a dict: JSON-able summaries plus ``"series"`` = {name: (D,) or (Q, D) numpy arrays}."""
    from factors.combiner import pool_signal
    from factors.mine import pool_scorer

    sc = scorer or pool_scorer(members, panel, splits, cfg)
    signal, comb = pool_signal(sc, [(list(m["tokens"]), float(m["weight"])) for m in members], cfg.combiner)
    factors = {"pool": signal}
    fit_info: dict[str, Any] = {"pool": {"fit": "the miner's weights, fitted on train", "features": len(members),
                                         "combiner": comb}}
    notes = []
    if baselines:
        from factors.handcrafted import baseline_factors

        fitted, base_info = baseline_factors(sc, seed=cfg.seed, threads=threads, pool_signal=signal,
                                             combiner=cfg.combiner)
        factors.update(fitted)
        fit_info.update(base_info)
    else:
        notes.append("Alpha158-style linear and LightGBM baselines were skipped for this run (quick mode).")
    decay = {h: sc.ev.forward_return(h) for h in sorted({*DECAY_HORIZONS, sc.horizon})}
    codes = _split_codes(sc)
    models: dict[str, Any] = {}
    series: dict[str, np.ndarray] = {"dates": np.asarray(sc.panel.dates).astype("datetime64[D]"), "split": codes}
    for name, x in factors.items():
        per_split, daily = _model_sheet(sc, x, quantiles, decay, detail=name == "pool")
        models[name] = {"splits": per_split, **({"fit": fit_info[name]} if name in fit_info else {})}
        series.update({f"{name}__{k}": v for k, v in daily.items()})
    pool_ic = series["pool__ic"]
    corr = member_correlation(sc, members)
    member_rows = [{"rank": i + 1, "formula": m.get("formula", " ".join(m["tokens"])), "weight": float(m["weight"]),
                    "metrics": m.get("metrics") or sc.member_metrics(list(m["tokens"])),
                    "figures": member_figures(sc, list(m["tokens"]), float(m["weight"]), quantiles)}
                   for i, m in enumerate(members)]
    sheet = {"version": VERSION, "horizon": sc.horizon, "rebalance": int(sc.rebalance), "cost_bps": sc.cost_bps,
             "quantiles": quantiles, "periods_per_year": sc.periods_per_year, "delay": 1,
             "decay_horizons": sorted(decay), "baselines_fitted": bool(baselines), "notes": notes,
             "models": models, "members": member_rows, "member_corr": corr,
             "ic_distribution": ic_distribution(pool_ic, codes),
             "monthly_ic": monthly_ic(series["dates"], pool_ic, codes)}
    return {**json_safe(sheet), "series": series}


def save_tearsheet(sheet: dict[str, Any], path: str | Path) -> Path:
    """Write ``path`` (JSON, no arrays) and the daily series next to it (same name, ``.npz``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    series = sheet.get("series", {})
    arrays = {k: (v.astype("datetime64[D]").astype(np.int64) if k == "dates" else v) for k, v in series.items()}
    np.savez_compressed(path.with_suffix(".npz"), **arrays)
    body = {k: v for k, v in sheet.items() if k != "series"}
    body["series_file"] = path.with_suffix(".npz").name
    path.write_text(json.dumps(json_safe(body), allow_nan=False), encoding="utf-8")
    return path


def load_tearsheet(path: str | Path) -> dict[str, Any]:
    """The sheet written by :func:`save_tearsheet` (``"series"`` read back from the ``.npz``)."""
    path = Path(path)
    sheet = json.loads(path.read_text(encoding="utf-8"))
    with np.load(path.parent / sheet.get("series_file", path.with_suffix(".npz").name), allow_pickle=False) as z:
        series = {k: z[k] for k in z.files}
    series["dates"] = series["dates"].astype("datetime64[D]")
    sheet["series"] = series
    return sheet
