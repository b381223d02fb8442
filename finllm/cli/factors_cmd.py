"""`finllm factors ...`: evaluate expressions, mine factor pools, ask for factors in words."""

import typer

from finllm.cli._groups import mount

app = typer.Typer(help="Formulaic alpha factors: evaluate, mine (RL / GP), ask in plain language; list, show and "
                       "export the factor library.", no_args_is_help=True)
mount(app, ["finllm.cli.factors_eval_cmd", "finllm.cli.factors_mine_cmd", "finllm.cli.factors_ask_cmd",
            "finllm.cli.factors_library_cmd"])
