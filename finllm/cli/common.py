"""Helpers shared by every CLI command: one-line errors with exit code 2, `--json` output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from finllm.errors import FinllmError

F = TypeVar("F", bound=Callable[..., Any])

console = Console(stderr=True)  # progress and human text go to stderr; stdout stays clean for --json


def friendly_errors(fn: F) -> F:
    """Turn FinllmError (and a missing file) into one clear line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FinllmError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except FileNotFoundError as exc:
            typer.echo(f"error: {exc.filename or exc}: no such file", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def emit_json(obj: Any) -> None:
    """Write one JSON document to stdout (for pipelines and DAGs); NaN and +-inf are written as null."""
    from finllm.jsonsafe import json_safe

    sys.stdout.write(json.dumps(json_safe(obj), indent=2, default=str, allow_nan=False) + "\n")
