"""Helpers shared by every CLI command: one error path, safe printing of data, `--json` output.

Error path (:func:`friendly_errors`): a user-caused failure (``FinllmError``, a missing/unwritable
file) is one line ``error: ...`` on stderr and exit code 2; anything else is an internal failure: one
line ``internal error: ... (details: LOG)`` and exit code 1, the traceback written to the log file
``$FINLLM_HOME/logs/finllm.log`` (or the temp dir when the home is unwritable). Python warnings go to
the same log, never to the terminal.

Printing data (tickers, node ids, file names, LLM text): text from data is never rich markup and never
terminal control codes. Use :func:`safe` inside strings given to ``console.print`` / rich tables
(escapes ``[...]`` and strips control characters), :func:`plain` for ``typer.echo`` / ``print``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape

from finllm.errors import FinllmError

F = TypeVar("F", bound=Callable[..., Any])

console = Console(stderr=True)  # progress and human text go to stderr; stdout stays clean for --json

# C0 controls except tab/newline, DEL, C1 controls (CSI/OSC introducers), and bidi overrides/isolates
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# whole escape sequences first (CSI ... final byte; OSC ... BEL/ST), so no "[31m" residue is left
_SEQUENCE = re.compile("(\x1b\\[|\x9b)[0-?]*[ -/]*[@-~]|(\x1b\\]|\x9d).*?(\x07|\x1b\\\\|\x9c)", re.S)


def plain(text: object) -> str:
    """``str(text)`` with terminal control characters (ANSI/OSC escapes, bidi overrides) removed."""
    return _CONTROL.sub("", _SEQUENCE.sub("", str(text)))


def safe(text: object) -> str:
    """Data text made safe for ``console.print`` / rich tables: control characters removed and rich
    markup escaped, so ``[/bold]`` in a ticker prints as itself."""
    return escape(plain(text))


def log_path() -> Path:
    """Where internal errors and warnings are logged: ``$FINLLM_HOME/logs/finllm.log``."""
    home = os.environ.get("FINLLM_HOME") or ".finllm"
    return Path(home).expanduser() / "logs" / "finllm.log"


def _log(text: str) -> Path:
    """Append ``text`` to the log; falls back to the temp dir when the home cannot be written."""
    for path in (log_path(), Path(tempfile.gettempdir()) / "finllm-errors.log"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"--- {dt.datetime.now(dt.timezone.utc).isoformat()} pid {os.getpid()} "
                         f"{plain(' '.join(sys.argv))}\n{text}\n")
            return path
        except OSError:
            continue
    return log_path()


def _warning_to_log(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    _log(warnings.formatwarning(message, category, filename, lineno, line).rstrip())


def _fail(msg: str, code: int) -> typer.Exit:
    line = " ".join(plain(msg).split()) or "unknown error"
    typer.echo(f"error: {line}" if code == 2 else line, err=True)
    return typer.Exit(code)


def _os_error(exc: OSError) -> str:
    name = exc.filename or ""
    what = {FileNotFoundError: "no such file", IsADirectoryError: "is a directory, expected a file",
            NotADirectoryError: "a part of the path is not a directory",
            PermissionError: "permission denied"}.get(type(exc), exc.strerror or str(exc))
    return f"{name}: {what}" if name else what


def friendly_errors(fn: F) -> F:
    """One error path: user errors -> one line + exit 2; internal errors -> one line + log + exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        old_show = warnings.showwarning
        warnings.showwarning = _warning_to_log
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except FinllmError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
            raise _fail(_os_error(exc), 2) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", 130) from None
        except Exception as exc:  # noqa: BLE001 - the one place internal failures are reported
            path = _log(traceback.format_exc())
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise _fail(f"internal error: {type(exc).__name__}: {first} (details: {path})", 1) from None
        finally:
            warnings.showwarning = old_show

    return wrapper  # type: ignore[return-value]


def emit_json(obj: Any) -> None:
    """Write one JSON document to stdout (for pipelines and DAGs); NaN and +-inf are written as null."""
    from finllm.jsonsafe import json_safe

    sys.stdout.write(json.dumps(json_safe(obj), indent=2, default=str, allow_nan=False) + "\n")
