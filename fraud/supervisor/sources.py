"""Where verdicts come from: the configured LLM endpoint, or finllm's simulated source of known quality.

``verdict_source(kind, ...)`` is a context manager yielding ``(gateway factory or None, description)``;
the description goes into every supervisor report, run record and output, so a simulated run can
never be mistaken for an LLM's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from finllm.errors import ConfigError

if TYPE_CHECKING:
    from finllm.llm.client import Gateway
    from finllm.store.db import Store

KINDS = ("none", "llm", "simulated")


def check_source(kind: str, auroc: float | None) -> None:
    """Raise ConfigError (one line naming the flag) for an unusable combination."""
    if kind not in KINDS:
        raise ConfigError(f"--supervisor must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "simulated" and auroc is None:
        raise ConfigError("--supervisor simulated needs --simulated-auroc Q (the verdicts' AUROC, 0 < Q < 1)")
    if auroc is not None and kind != "simulated":
        raise ConfigError("--simulated-auroc is only used with --supervisor simulated")
    if auroc is not None and not 0.0 < auroc < 1.0:
        raise ConfigError(f"--simulated-auroc must be strictly between 0 and 1, got {auroc}")


@contextmanager
def verdict_source(kind: str, labels: np.ndarray | None = None, *, auroc: float | None = None,
                   run_id: str | None = None, store: Store | None = None, calls: int = 0,
                   seed: int = 0) -> Iterator[tuple[Callable[[], Gateway] | None, dict]]:
    """Yield (gateway factory, description) for ``kind`` in none | llm | simulated.

    ``labels`` (N,) true labels: only the simulated server reads them (server-side, by node id).
    ``calls``: the verdict requests the run may make; the simulated source costs nothing, so its
    run budget is raised to fit them (a real endpoint keeps ``FINLLM_LLM_MAX_CALLS``).
    """
    check_source(kind, auroc)
    if kind == "none":
        yield None, {"kind": "none"}
        return
    from finllm.config import load_settings
    from finllm.llm import Budget, get_gateway
    from finllm.llm.client import describe

    settings = load_settings()
    if kind == "llm":
        yield (lambda: get_gateway(run_id=run_id, store=store)), {"kind": "llm", **describe(settings)}
        return
    from fraud.supervisor.simulated import SimulatedVerdictServer

    with SimulatedVerdictServer(np.asarray(labels), float(auroc), seed=seed) as srv:
        sim = dataclasses.replace(settings, llm_base_url=srv.url, llm_model=srv.model)
        budget = Budget(max(settings.llm_max_calls, 2 * calls), max(settings.llm_max_tokens, 2000 * calls))
        yield (lambda: get_gateway(run_id=run_id, store=store, settings=sim, budget=budget)), srv.describe()


__all__ = ["KINDS", "check_source", "verdict_source"]
