"""The `finllm` command line. Each command group lives in its own module and stays thin."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # help texts are plain text: rich markup would eat `[sparse]` in `pip install 'finllm[sparse]'`
    rich_markup_mode=None,
)

# (module, group name): a module that defines `app` (a Typer) is mounted as `finllm <name> ...`;
# a module that defines `register(app)` adds top-level commands.
_GROUPS = [
    ("finllm.cli.data_cmd", "data"),
    ("finllm.cli.factors_cmd", "factors"),
    ("finllm.cli.fraud_cmd", "fraud"),
    ("finllm.cli.llm_cmd", "llm"),
    ("finllm.cli.runs_cmd", "runs"),
    ("finllm.cli.models_cmd", "models"),
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


def _print_version(value: bool) -> None:
    if value:
        from finllm import __version__

        typer.echo(f"finllm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the finllm version and exit."),
) -> None:
    """finllm: financial risk and factor-mining platform (RL alpha mining, LLM-supervised GNN fraud).

    Results go to stdout (one JSON document with --json), progress and messages to stderr. Settings come
    from FINLLM_* environment variables (FINLLM_HOME, FINLLM_DATABASE_URL, FINLLM_LLM_BASE_URL, ...).
    """


@app.command()
def version() -> None:
    """Print the finllm version."""
    _print_version(True)


def main() -> None:
    """The console script: ``app`` with click's own usage errors (unknown flag, missing argument, a value
    outside a declared range) turned into the CLI's one-line form, ``error: ...`` and exit code 2, instead
    of click's boxed usage text."""
    import sys

    # typer 0.29 (pinned in the lock) vendors click; its exceptions live here, not in `click`
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    try:
        rv = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `finllm` or `finllm data` alone: the help text, as before
        exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
        typer.echo(f"error: {where}{exc.format_message()} (see --help)", err=True)
        sys.exit(2)
    except ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
