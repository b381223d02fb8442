"""The `finllm` command line. Each command group lives in its own module and stays thin."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    help="finllm: financial risk and factor-mining platform (RL alpha mining, LLM-supervised GNN fraud).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# (module, group name): a module that defines `app` (a Typer) is mounted as `finllm <name> ...`;
# a module that defines `register(app)` adds top-level commands.
_GROUPS = [
    ("finllm.cli.data_cmd", "data"),
    ("finllm.cli.factors_cmd", "factors"),
    ("finllm.cli.fraud_cmd", "fraud"),
    ("finllm.cli.llm_cmd", "llm"),
    ("finllm.cli.report_cmd", None),
    ("finllm.cli.demo_cmd", None),
]

for _module, _name in _GROUPS:
    try:
        mod = importlib.import_module(_module)
    except ModuleNotFoundError as exc:  # a group not built yet
        if exc.name != _module:
            raise
        continue
    if _name is not None:
        app.add_typer(mod.app, name=_name)
    else:
        mod.register(app)


@app.command()
def version() -> None:
    """Print the finllm version."""
    from finllm import __version__

    typer.echo(__version__)


if __name__ == "__main__":
    app()
