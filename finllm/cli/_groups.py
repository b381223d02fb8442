"""Mount optional sub-command modules: each defines ``register(app)``; a missing module is skipped."""

from __future__ import annotations

import importlib

import typer


def mount(app: typer.Typer, modules: list[str]) -> None:
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        mod.register(app)
