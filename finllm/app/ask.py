"""Use case: ask for a factor in plain language (``finllm factors ask``).

Loads the market, then :func:`factors.requests.ask` reads the request, lets the LLM propose formulas under
the grammar, scores them on train / valid (test only for the saved ones) and saves the best with lineage,
all inside one ``factor_ask`` run (``failed`` with the reason when no usable factor came out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from finllm.app.options import PanelWindow
from finllm.errors import ConfigError

if TYPE_CHECKING:
    from factors.requests import AskResult
    from finllm.store.db import Store


@dataclass
class AskOptions(PanelWindow):
    """What ``factors ask`` takes besides the request and the data (see its ``--help``)."""

    candidates: int = 4
    repair_rounds: int = 1
    refine_rounds: int = 1
    horizon: int = 20
    cost_bps: float = 10.0
    save: int = 3
    use_llm: bool = True
    fallback: bool = True

    def validate(self) -> None:
        if (self.train or self.valid or self.test) and not (self.train and self.valid):
            raise ConfigError("give at least --train and --valid (START:END), or none of the split options")


def ask_for_factor(request: str, data: str | Path, opts: AskOptions, store: Store, *,
                   progress: Callable[[str], None] | None = None) -> AskResult:
    """Answer ``request`` on the market at ``data`` (module doc); ``progress`` gets short status lines."""
    from factors.panel import load_panel
    from factors.requests import ask

    opts.validate()
    splits = {k: v for k, v in (("train", opts.train), ("valid", opts.valid), ("test", opts.test)) if v} or None
    say = progress or (lambda _msg: None)
    say(f"loading {data}")
    panel = load_panel(data, start=opts.start, end=opts.end, max_tickers=opts.max_tickers)
    return ask(request, panel, splits=splits, n_candidates=opts.candidates, repair_rounds=opts.repair_rounds,
               refine_rounds=opts.refine_rounds, store=store, horizon=opts.horizon, cost_bps=opts.cost_bps,
               n_save=opts.save, progress=say, use_llm=opts.use_llm, fallback=opts.fallback)
