"""`finllm fraud ...`: train detectors, score graphs into alerts, explain alerts."""

import typer

from finllm.cli._groups import mount

app = typer.Typer(help="Graph fraud detection: train (optionally LLM-supervised), score, explain.",
                  no_args_is_help=True)
mount(app, ["finllm.cli.fraud_train_cmd", "finllm.cli.fraud_explain_cmd"])
