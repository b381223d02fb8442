"""User-facing errors: one clear line, exit code 2 in the CLI, never a deep traceback."""

from __future__ import annotations


class FinllmError(Exception):
    """Base class for errors a user can act on; `str(err)` is the one line shown."""

    exit_code = 2


class DataError(FinllmError):
    """Bad input data: the message names the file and the column/row/key at fault."""


class ExpressionError(FinllmError):
    """A factor expression that does not parse or validate; names the token and position."""


class ConfigError(FinllmError):
    """Bad or missing configuration."""


class UsageError(FinllmError):
    """A command-line flag with a value that cannot be right; the message names the flag."""
