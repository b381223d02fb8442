"""`finllm fraud train` and `finllm fraud score` (GADBench-protocol training, batch scoring into alerts)."""

from __future__ import annotations

from pathlib import Path

import typer

from finllm.cli.common import console, emit_json, friendly_errors, plain


def _fmt(m: dict) -> str:
    return f"{m['mean']:.4f} ± {m['std']:.4f}"


def _supervisor_lines(summary: dict) -> list[str]:
    """What the supervisor did, one line per seed, plus the same seeds without it (round 1)."""
    reps = summary.get("supervisor") or []
    if not reps:
        return []
    src = summary.get("supervisor_source") or {}
    out = [src["note"]] if src.get("note") else []
    for r in reps:
        calls = ((r.get("llm") or {}).get("usage") or {}).get("calls", 0)
        out.append(f"supervisor seed {r['seed']}: {r['status']} ({calls} calls): {r['reason']}")
    base = [r["round1"]["test"]["auprc"] for r in reps if "round1" in r]
    if base:
        out.append(f"same seeds without the supervisor: test AUPRC {sum(base) / len(base):.4f}; with it: "
                   f"{summary['test']['auprc']['mean']:.4f}")
    return out


def register(app: typer.Typer) -> None:
    @app.command("train")
    @friendly_errors
    def train(
        data: Path = typer.Option(..., "--data", help="Graph file: .mat, .npz, CSV edge list (+ --nodes) or "
                                  "a signed trust CSV (source,target,rating,time) such as Bitcoin OTC."),
        model: str = typer.Option("auto", "--model", help="auto (tunes xgbgraph, rfgraph, mlp, bwgnn and hsign on "
                                  "this graph, adds the rank ensemble of the top 3 and keeps it unless one candidate clearly beats "
                                  "it on validation; see fraud/auto.py) | ensemble | "
                                  "hsign | sage | gat | bwgnn | rgnn | mlp | xgbgraph | rfgraph"),
        setting: str = typer.Option("full", "--setting", help="full: the file's split or stratified 40/20/40; "
                                    "semi: 20 fraud + 80 normal for train and for validation."),
        seeds: int = typer.Option(5, "--seeds", min=1, help="Number of seeds (0..N-1); mean ± std reported."),
        epochs: int = typer.Option(200, "--epochs", min=1, help="Max GNN epochs (xgbgraph: up to "
                                   "1000 boosting rounds, same patience)."),
        patience: int = typer.Option(50, "--patience", min=1, help="Early stopping on validation AUPRC."),
        nodes: Path | None = typer.Option(None, "--nodes", help="Node table CSV for an edge-list CSV."),
        save: bool = typer.Option(True, "--save/--no-save", help="Save the best-validation seed's model."),
        minibatch: bool = typer.Option(False, "--minibatch", help="NeighborLoader mini-batches (needs "
                                       "pyg-lib or torch-sparse: pip install 'finllm[sparse]')."),
        threads: int = typer.Option(0, "--threads", min=0, help="torch threads (0 = torch default)."),
        supervisor: str = typer.Option("none", "--supervisor", help="none | llm: LLM-supervised training with "
                                       "the configured endpoint (calibrated first on held-out labels; stops "
                                       "when the verdicts add nothing beyond the detector's score; see "
                                       "fraud/supervisor) | simulated: verdicts of known quality drawn from "
                                       "the true labels (needs --simulated-auroc; a what-if, not an LLM)."),
        simulated_auroc: float | None = typer.Option(None, "--simulated-auroc", help="AUROC Q of the "
                                                     "simulated verdicts (0 < Q < 1); only with --supervisor "
                                                     "simulated."),
        llm_budget: int = typer.Option(60, "--llm-budget", min=0, help="LLM verdict requests per seed."),
        supervisor_uses: str = typer.Option("all", "--supervisor-uses",
                                            help="Comma list of verdict uses: pseudo, fuse, noise, edges "
                                                 "(all: pseudo,fuse, the ones that carry the gain; "
                                                 "noise and edges only when named)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    ) -> None:
        """Train a fraud detector over several seeds under the GADBench protocol and print the metrics.

        Class-weighted loss, early stopping on validation AUPRC, threshold chosen on validation macro-F1;
        AUROC / AUPRC / Recall@K / macro-F1 on the test nodes. The model of the seed with the best
        validation AUPRC is saved (threshold, normalisation, config) and recorded in the store.
        """
        import torch

        from finllm.app.train_detector import TrainOptions, train_and_record
        from finllm.store import open_store

        if threads:
            torch.set_num_threads(threads)
        opts = TrainOptions(model=model, setting=setting, seeds=seeds, epochs=epochs, patience=patience,
                            minibatch=minibatch, supervisor=supervisor, simulated_auroc=simulated_auroc,
                            llm_budget=llm_budget, supervisor_uses=supervisor_uses, save=save, nodes=nodes)
        done = train_and_record(data, opts, open_store(), progress=not as_json)
        summary, ds, name, model_id, run_id = done.summary, done.dataset, done.name, done.model_id, done.run_id
        if as_json:
            emit_json(summary)
            return
        from rich.console import Console
        from rich.table import Table

        rep = {k: v for k, v in ds.report.items() if k != "label_rule"}
        from finllm.cli.tables import print_mapping  # a table of the loader's counts, not a raw dict

        print_mapping(f"{ds.name}: {ds.num_nodes} nodes, {ds.data.edge_index.size(1)} directed edges, "
                      f"{int((ds.data.y == 1).sum())} fraud / {int((ds.data.y >= 0).sum())} labelled",
                      {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
                       for k, v in rep.items()})
        t = Table(title=f"{name} · {setting} · {len(summary['seeds'])} seeds (test, mean ± std)")
        for col in ("AUROC", "AUPRC", "Rec@K", "macro-F1", "train s"):
            t.add_column(col, justify="right")
        te = summary["test"]
        t.add_row(_fmt(te["auroc"]), _fmt(te["auprc"]), _fmt(te["rec@k"]), _fmt(te["macro_f1"]),
                  f"{summary['train_time_s']['mean']:.1f}")
        Console(width=max(Console().width, 110)).print(t)
        for line in _supervisor_lines(summary):
            typer.echo(plain(line))
        if model_id:
            typer.echo(f"model {model_id} saved (seed {summary['kept_seed']}, best validation AUPRC); run {run_id}")

    @app.command("score")
    @friendly_errors
    def score(
        model: str = typer.Option(..., "--model", help="Model id printed by `finllm fraud train`."),
        data: Path = typer.Option(..., "--data", help="Graph to score (same formats as train)."),
        batch: str = typer.Option("", "--batch", help="Batch label (e.g. the logical date); re-scoring the "
                                  "same batch replaces its alerts."),
        out: Path | None = typer.Option(None, "--out", help="CSV of every node's score (default "
                                        "$FINLLM_HOME/alerts/<model>_<batch>.csv)."),
        top: int = typer.Option(1000, "--top", min=0, help="Store alerts for nodes above the threshold "
                                "plus the TOP highest-ranked nodes."),
        nodes: Path | None = typer.Option(None, "--nodes", help="Node table CSV for an edge-list CSV."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    ) -> None:
        """Score every node of a graph with a saved model; write alerts to the store and to CSV."""
        from finllm.app.score_graph import score_and_record
        from finllm.store import open_store

        info = score_and_record(data, open_store(), batch=batch, model_id=model, csv_path=out, top=top, nodes=nodes)
        if as_json:
            emit_json(info)
            return
        typer.echo(f"scored {info['nodes']} nodes ({info['nodes_per_s']:.0f} nodes/s): "
                   f"{info['above_threshold']} above threshold; {info['alerts_saved']} alerts saved; "
                   f"CSV {plain(info['csv'])}")
        for r in info["top"]:
            typer.echo(f"  #{r['rank']:>4}  node {plain(r['node']):<12} score {r['score']:.4f}"
                       f"{'  ALERT' if r['above_threshold'] else ''}")
        if "labelled_eval" in info:
            ev = info["labelled_eval"]
            typer.echo(f"labelled nodes: AUROC {ev['auroc']:.4f} AUPRC {ev['auprc']:.4f} Rec@K {ev['rec@k']:.4f}")
