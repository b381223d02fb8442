"""Waiting on the LLM in the CLI: fail fast with one line that says what to do, and a spinner meanwhile.

    gw = get_gateway(...)
    ensure_llm(gw)                      # ConfigError (exit 2) naming FINLLM_LLM_BASE_URL / FINLLM_LLM_MODEL
    with waiting("asking the LLM") as update:
        ...; update("refining")         # spinner + elapsed seconds on stderr (stdout stays clean for --json)

Any LLM command may use both; messages talk to the user (what failed, which setting to change).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from finllm.cli.common import console, safe
from finllm.errors import ConfigError

FIX = ("Set FINLLM_LLM_BASE_URL to a running OpenAI-compatible endpoint (or unset it to use the embedded "
       "model) and FINLLM_LLM_MODEL to a model it serves")


class _Probing(Protocol):
    model: str
    endpoint: str

    def probe(self, timeout_s: float = ...) -> object: ...


def _one_line(text: str, limit: int = 240) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ensure_llm(gw: _Probing, *, timeout_s: float = 10.0, hint: str = "") -> None:
    """Start/reach the endpoint and check it serves the model; raise ConfigError (one line) if not.
    ``hint``: what else the user can do (e.g. "or pass --no-llm")."""
    with waiting(f"connecting to the LLM ({'embedded model' if gw.endpoint == 'embedded' else gw.endpoint})"):
        fail = gw.probe(timeout_s)
    if fail is None:
        return
    kind, message = getattr(fail, "kind", "?"), _one_line(str(getattr(fail, "message", fail)))
    what = {"server": "the embedded LLM server could not start",
            "connection": "nothing answers at the LLM endpoint",
            "timeout": "the LLM endpoint does not answer in time",
            "http": "the LLM endpoint refused the request",
            "model": "the LLM endpoint does not serve the configured model"}.get(kind, "the LLM cannot be used")
    raise ConfigError(f"{what} ({message}). {FIX}{hint}.")


@contextmanager
def waiting(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the elapsed time on stderr while the block runs; yields ``update(new_message)``."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task(safe(message), total=None)

        def update(new: str) -> None:
            bar.update(task, description=safe(new))

        yield update
