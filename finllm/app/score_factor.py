"""Use case: score one factor expression per time split (``finllm factors eval``).

IC, RankIC, ICIR, Newey-West t-stats, quantile returns, turnover, the RankIC decay curve and a long-short
backtest with costs, per split, by the shared :class:`factors.scoring.SplitScorer` on the whole loaded
panel (windows see the history before a split, never after). Nothing is written to the store.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finllm.app.options import PanelWindow
from finllm.errors import ConfigError


@dataclass
class EvalOptions(PanelWindow):
    """What ``factors eval`` takes besides the expression and the data (see its ``--help``)."""

    horizon: int = 20
    target: str | None = None
    cost_bps: float = 10.0
    quantiles: int = 5
    delay: int = 1
    rebalance: int | None = None
    whole: bool = False
    decay: str = "1,5,10,20,60"
    min_names: int = 10


def precheck(text: str) -> None:
    """Fail fast on syntax / operator errors before loading data (features are checked after)."""
    from factors.expr import parse
    from factors.ops import OPS

    ops = {k.lower() for k in OPS}
    names = {n for n in re.findall(r"\$?([A-Za-z_][A-Za-z0-9_]*)", text) if n.lower() not in ops}
    parse(text, features=sorted(names) or None)


def _decay_horizons(decay: str) -> list[int]:
    try:
        hs = sorted({int(h) for h in decay.split(",") if h.strip()})
    except ValueError:
        raise ConfigError(f"--decay {decay!r}: expected comma-separated integers, e.g. 1,5,20") from None
    if any(h < 1 or h > 252 for h in hs):
        raise ConfigError(f"--decay {decay!r}: horizons must be in 1..252")
    return hs


def score_factor(expr: str, data: str | Path, opts: EvalOptions, *, progress: bool = False,
                 busy: Callable[[str], AbstractContextManager[object]] | None = None) -> dict[str, Any]:
    """The per-split report of ``expr`` on the market at ``data`` (what ``factors eval --json`` prints).

    ``busy``: a context-manager factory shown while evaluating (the CLI's spinner)."""
    import torch

    from factors.evaluate import target_expr
    from factors.metrics import ic_decay
    from factors.panel import load_panel
    from factors.scoring import SplitScorer
    from factors.splits import Split, default_splits, parse_splits

    precheck(expr)
    if opts.whole and (opts.train or opts.valid or opts.test):
        raise ConfigError("--whole scores the whole panel: give it without --train / --valid / --test")
    splits = [Split("all", None, None)] if opts.whole else parse_splits(opts.train, opts.valid, opts.test)
    hs = _decay_horizons(opts.decay)
    panel = load_panel(data, start=opts.start, end=opts.end, max_tickers=opts.max_tickers, progress=progress)
    if not splits:
        try:
            splits = default_splits(panel.dates, data)
        except ConfigError as exc:  # too few days to cut by time
            raise ConfigError(f"{exc}; give --train/--valid/--test, or score it as one split with --whole") from None
    tgt_text = opts.target or target_expr(opts.horizon)
    with (busy or (lambda _msg: nullcontext()))("evaluating"):
        # the whole loaded panel (no warm-up cut): --start/--end choose the history
        sc = SplitScorer(panel, splits, opts.horizon, opts.cost_bps, warmup_days=None, rebalance=opts.rebalance,
                         target=tgt_text)
        e = sc.parse(expr)
        x = sc.ev.evaluate(e)
        fwd = {h: sc.ev.forward_return(h) for h in hs}
    mask = sc.mask
    warnings: list[str] = []
    need = max(opts.min_names, opts.quantiles)
    widest = int((mask & torch.isfinite(x)).sum(1).max()) if mask.numel() else 0
    if widest < need:
        warnings.append(f"no day has {need} names with a factor value (at most {widest}): "
                        f"cross-sectional metrics need --min-names {opts.min_names} names per day and --quantiles "
                        f"{opts.quantiles} at least one name per bucket, so IC, quantile returns and the backtest "
                        f"are NaN or flat; lower --min-names / --quantiles or use a wider universe")
    out: dict[str, Any] = {"expr": e.infix, "tokens": list(e.tokens), "key": e.key, "data": str(data),
                           "target": sc.ev.parse(tgt_text, allow_future=True).infix, "horizon": opts.horizon,
                           "cost_bps": opts.cost_bps, "delay": opts.delay, "rebalance": sc.rebalance,
                           "periods_per_year": sc.periods_per_year,
                           "panel": {"days": len(panel.dates), "tickers": len(panel.tickers),
                                     "start": str(panel.dates[0]), "end": str(panel.dates[-1])},
                           "min_names": opts.min_names, "data_report": panel.report.to_dict(),
                           "warnings": warnings, "splits": {}}
    for sp in splits:
        days = sc.days[sp.name]
        rep = sc.full_report(x, sp.name, quantiles=opts.quantiles, delay=opts.delay, min_names=opts.min_names)
        rep["range"] = sp.text()
        sel = days.numpy()
        rep["first_day"], rep["last_day"] = str(panel.dates[sel][0]), str(panel.dates[sel][-1])
        rep["rank_ic_decay"] = {str(h): v for h, v in ic_decay(x[days], {h: t[days] for h, t in fwd.items()},
                                                                 mask[days], min_names=opts.min_names).items()}
        out["splits"][sp.name] = rep
    return out
