"""Use case: mine a factor pool and record it (``finllm factors mine``, the factor_pipeline's weekly
``mine_pool``, the demo).

The engine (:func:`factors.mine.mine`) searches, scores the pool per split and writes ``result.json``;
here it runs inside one ``factor_mine`` run that stores the pool in the factor library (with the mined
form as lineage where a formula was simplified), the metrics and the artifacts. Bad input (too short a
train split, no target) fails before the run starts, so it leaves no run behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finllm.errors import ConfigError, DataError

if TYPE_CHECKING:
    from factors.mine import MineConfig
    from factors.panel import Panel
    from factors.splits import Split
    from finllm.store.db import Store


def _run_key(cfg: MineConfig, out: Path) -> str:
    """Default idempotency key: the same output folder and configuration reuse one run."""
    blob = json.dumps([str(out.resolve()), cfg.run_config()], sort_keys=True, default=str).encode()
    return "factor_mine:" + hashlib.sha256(blob).hexdigest()[:24]


def mine_and_record(cfg: MineConfig, out: str | Path, store: Store | None, *, progress: bool = True,
                    resume: bool = True, panel: Panel | None = None, splits: list[Split] | None = None,
                    idempotency_key: str | None = None, tearsheet_baselines: bool = True) -> dict[str, Any]:
    """Mine a pool with ``cfg`` (RL or GP) and, unless ``store`` is None, record the ``factor_mine`` run;
    returns the engine's result (pool, metrics per split, baselines, mining statistics, ``run_id``).

    ``tearsheet_baselines``: fit the tear sheet's Alpha158-style and LightGBM baselines (off for a quick demo)."""
    from factors.mine import BUILTIN_LIBRARIES, build_train_side, load_for_mining, mine, torch_threads

    cfg.validate()
    if store is None and cfg.seed_library and cfg.seed_library not in BUILTIN_LIBRARIES:
        raise ConfigError(f"--seed-library {cfg.seed_library!r}: a library source of the store, and this run has "
                          f"no store (drop --no-store, or seed from {', '.join(BUILTIN_LIBRARIES)})")
    out = Path(out)
    if panel is None or splits is None:
        panel, splits = load_for_mining(cfg)
    with torch_threads(cfg.threads):
        side = build_train_side(panel, splits, cfg)
    if store is None:
        return mine(cfg, out, progress=progress, resume=resume, panel=panel, splits=splits, side=side)
    library = []
    if cfg.seed_library and cfg.seed_library not in BUILTIN_LIBRARIES:  # a built-in one is the engine's
        library = [list(f.tokens) for f in store.factors(None if cfg.seed_library == "all" else cfg.seed_library)]
    with store.run("factor_mine", cfg.run_config(), name=f"{cfg.method} seed {cfg.seed}",
                   idempotency_key=idempotency_key or _run_key(cfg, out)) as run:
        result = mine(cfg, out, progress=progress, resume=resume, panel=panel, splits=splits, side=side,
                      library=library, run_id=run.id)
        store.save_pool(run.id, [{"tokens": m["tokens"], "formula": m["formula"], "weight": m["weight"],
                                  "metrics": m["metrics"]} for m in result["pool"]], source=f"mined_{cfg.method}")
        # --- tearsheet hook (H5) ---
        # In scope: panel, splits, cfg (MineConfig), result (engine result: "pool", "metrics", "baselines"),
        # out (run folder), run (RunHandle), tearsheet_baselines. One call writing an artifact into run.artifacts.
        from factors.tearsheet import save_tearsheet, tearsheet

        run.artifacts["tearsheet"] = str(save_tearsheet(
            tearsheet(panel, splits, result["pool"], cfg, baselines=tearsheet_baselines), out / "tearsheet.json"))
        simplified = [{"formula": m["formula"], "original": m["original_formula"],  # lineage: the mined form
                       "original_tokens": m["original_tokens"]} for m in result["pool"] if "original_formula" in m]
        run.metrics.update(pool=result["metrics"], baselines=result["baselines"], simplified=simplified,
                           combiner=result.get("combiner", {}),
                           mining={k: v for k, v in result["mining"].items() if k != "config"})
        run.artifacts.update(result_json=str(out / "result.json"), out_dir=str(out))
    return result


def _day(value: str | dt.date) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def mining_splits(end: str | dt.date, years: int) -> dict[str, str]:
    """Time splits ending on ``end``: train = the first ``years - 2`` years, then 1 year valid, 1 year test."""
    end_d = _day(end)
    if years < 3:
        raise DataError(f"mining needs at least 3 years of history (train, valid, test); got {years}")

    def back(n: int) -> dt.date:
        return end_d.replace(year=end_d.year - n) if not (end_d.month == 2 and end_d.day == 29) \
            else end_d.replace(year=end_d.year - n, day=28)

    one = dt.timedelta(days=1)
    return {"train": f"{back(years)}:{back(2)}", "valid": f"{back(2) + one}:{back(1)}",
            "test": f"{back(1) + one}:{end_d}"}


def mine_window(data: str, *, end: str | dt.date, years: int = 8, method: str = "rl",
                minutes: float = 20.0, pool_size: int = 10, seed: int = 0, horizon: int = 20,
                max_tickers: int | None = None, max_factors: int | None = None, out_dir: str | None = None,
                idempotency_key: str | None = None, progress: bool = False,
                store: Store | None = None) -> dict[str, Any]:
    """The scheduled mining run: the ``years`` ending ``end`` (train, 1 year valid, 1 year test), recorded
    under ``idempotency_key``; starts fresh (no checkpoint resume), so re-running a day replaces the run's
    pool. ``max_factors`` stops after that many candidate factors (repeatable runs). Returns small figures."""
    from factors.mine import MineConfig
    from finllm.config import load_settings
    from finllm.store.db import store_or_default

    splits = mining_splits(end, years)
    cfg = MineConfig(data=str(data), train=splits["train"], valid=splits["valid"], test=splits["test"],
                     method=method, minutes=minutes, pool_size=pool_size, seed=seed, horizon=horizon,
                     max_tickers=max_tickers, max_episodes=max_factors)
    slug = (idempotency_key or f"mine/{_day(end)}").replace("/", "_")
    out = Path(out_dir) if out_dir else Path(load_settings().home) / "runs" / slug
    res = mine_and_record(cfg, out, store_or_default(store), progress=progress, resume=False, idempotency_key=idempotency_key)
    test = (res.get("metrics") or {}).get("test") or {}
    finite = lambda x: None if x is None or x != x or abs(x) == float("inf") else float(x)  # noqa: E731
    return {"run_id": res["run_id"], "pool_size": len(res.get("pool", [])), "splits": splits,
            "test_ic": finite(test.get("ic")), "test_rank_ic": finite(test.get("rank_ic")), "out": str(out)}
