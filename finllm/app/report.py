"""Use case: build a run's report (``finllm report``, the reports DAG, the demo).

A factor_mine run's report reads its tear sheet (``Run.artifacts["tearsheet"]``, written by the
mine-and-record use case). An older run without one gets it here, computed by the same engine function
(:func:`factors.tearsheet.tearsheet`) from the run's stored config and pool, and recorded with the run; the
report layer (:mod:`finllm.reports`) only renders.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finllm.errors import DataError, FinllmError

if TYPE_CHECKING:
    from factors.mine import MineConfig
    from finllm.llm.client import Gateway
    from finllm.store.db import Store
    from finllm.store.tables import Run


def _mine_config(config: dict[str, Any]) -> MineConfig:
    from factors.mine import MineConfig
    from finllm.store.paths import resolve_stored

    missing = [k for k in ("data", "train", "valid", "test") if not config.get(k)]
    if missing:
        raise DataError(f"the run's config lacks {', '.join(missing)}: cannot rebuild its panel")
    names = {f.name for f in dataclasses.fields(MineConfig)}
    # a run recorded before the combiner existed was scored with its train weights
    cfg = MineConfig(**{"combiner": "fitted", **{k: v for k, v in config.items() if k in names}})
    cfg.data = str(resolve_stored(cfg.data))  # an older run may have stored it relative to its folder
    return cfg


def _sheet_path(store: Store, run: Run) -> Path:
    from finllm.config import load_settings
    from finllm.store.paths import resolve_stored

    out_dir = (run.artifacts or {}).get("out_dir")
    base = resolve_stored(out_dir) if out_dir else load_settings().home / "runs" / run.id
    return base / "tearsheet.json"


def ensure_tearsheet(store: Store, run_id: str, *, baselines: bool = True) -> Path:
    """The run's tear sheet file; computed from the run's config and pool and recorded if missing."""
    from factors.mine import load_for_mining
    from factors.tearsheet import save_tearsheet, tearsheet
    from finllm.store.paths import resolve_stored
    from finllm.store.tables import Run

    run = store.get_run(run_id)
    if run is None:
        raise DataError(f"run {run_id!r}: no such run in {store.url}")
    stored = (run.artifacts or {}).get("tearsheet")
    if stored and resolve_stored(stored).is_file():
        return resolve_stored(stored)
    cfg = _mine_config(run.config or {})
    if not Path(cfg.data).exists():
        raise DataError(f"{cfg.data}: the run's market data is not available here")
    pool = store.pool(run_id)
    if not pool:
        raise DataError("the run saved no pool")
    panel, splits = load_for_mining(cfg)
    members = [{"tokens": list(f.tokens), "formula": f.formula, "weight": float(w), "metrics": f.metrics}
               for f, w in pool]
    path = save_tearsheet(tearsheet(panel, splits, members, cfg, baselines=baselines), _sheet_path(store, run))
    with store.session() as s:
        row = s.get(Run, run_id)
        row.artifacts = {**(row.artifacts or {}), "tearsheet": str(path.resolve())}
    return path


def build_report(store: Store, run_id: str, out: str | Path, *, narrative: bool = True, refresh: bool = False,
                 gateway: Gateway | None = None, baselines: bool = True) -> dict[str, Any]:
    """Write the HTML report of ``run_id`` to ``out``; returns :func:`finllm.reports.html.publish`'s dict
    (run_id, kind, path, bytes, facts, narrative). A factor run's missing tear sheet is computed and stored
    first (``baselines=False`` skips its Alpha158-style / LightGBM fits); if that cannot be done (its data
    is gone) the report says why."""
    from finllm.reports.html import publish

    run = store.get_run(run_id)
    if run is None:
        raise DataError(f"run {run_id!r}: no such run in {store.url}")
    notes = []
    if run.kind == "factor_mine":
        try:
            ensure_tearsheet(store, run_id, baselines=baselines)
        except FinllmError as exc:  # data gone, config unreadable, a formula this panel cannot evaluate
            notes.append(f"tear sheet not available: {exc}")
    return publish(run_id, store, out, narrative=narrative, refresh=refresh, gateway=gateway, notes=notes)
