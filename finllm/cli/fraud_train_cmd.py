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
                                  "this graph, keeps the best on validation AUPRC per seed; see fraud/auto.py) | "
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
                                                 "(all: every one)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    ) -> None:
        """Train a fraud detector over several seeds under the GADBench protocol and print the metrics.

        Class-weighted loss, early stopping on validation AUPRC, threshold chosen on validation macro-F1;
        AUROC / AUPRC / Recall@K / macro-F1 on the test nodes. The model of the seed with the best
        validation AUPRC is saved (threshold, normalisation, config) and recorded in the store.
        """
        import torch

        from finllm.errors import ConfigError
        from finllm.store import open_store
        from finllm.config import load_settings
        from fraud.artifacts import _jsonable, run_metrics, save_model, save_predictions
        from fraud.datasets import load_graph
        from fraud.models import canonical_name
        from fraud.splits import SETTINGS, make_split
        from fraud.train import run_seeds

        from fraud.supervisor.sources import check_source, verdict_source

        check_source(supervisor, simulated_auroc)
        if setting not in SETTINGS:
            raise ConfigError(f"--setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
        name = canonical_name(model)
        if threads:
            torch.set_num_threads(threads)
        opts = {"nodes": nodes} if nodes else {}
        ds = load_graph(data, **opts)
        store = open_store()
        cfg = {"data": str(data), "dataset": ds.name, "model": name, "setting": setting,
               "seeds": list(range(seeds)), "epochs": epochs, "patience": patience, "minibatch": minibatch,
               "supervisor": supervisor, "llm_budget": llm_budget, "supervisor_uses": supervisor_uses,
               **({"simulated_auroc": simulated_auroc} if supervisor == "simulated" else {})}
        sim_tag = f" + SIMULATED verdicts (AUROC {simulated_auroc:g})" if supervisor == "simulated" else ""
        run_id = store.start_run("fraud_train", cfg, name=f"{name} {setting} {ds.name}{sim_tag}")
        try:
            if supervisor != "none":
                from fraud.supervisor.loop import run_seeds_supervised

                with verdict_source(supervisor, ds.data.y.numpy(), auroc=simulated_auroc, run_id=run_id,
                                    store=store, calls=seeds * llm_budget) as (gateway, source):
                    summary, kept = run_seeds_supervised(
                        ds, name, setting, seeds, budget=llm_budget, uses=supervisor_uses, progress=not as_json,
                        gateway=gateway, source=source, epochs=epochs, patience=patience, minibatch=minibatch)
                summary["supervisor_source"] = source
            else:
                summary, kept = run_seeds(ds, name, setting, seeds, progress=not as_json, epochs=epochs,
                                          patience=patience, minibatch=minibatch)
            summary["graph"] = ds.summary()
            model_id = None
            if save:
                model_id = save_model(kept, store, dataset=str(data), run_id=run_id,
                                      extra_metrics={"seeds_summary": {"test": summary["test"], "val": summary["val"]}})
            summary["model_id"] = model_id
            summary["run_id"] = run_id
            pred = save_predictions(kept, make_split(ds, setting, summary["kept_seed"]), ds.data.y,
                                    Path(load_settings().home) / "runs" / run_id / "predictions.npz")
            arts = {"predictions": pred, **({"model_id": model_id} if model_id else {})}
            metrics = run_metrics(summary, kept)
            if "supervisor" in summary:
                metrics["supervisor"] = _jsonable(summary["supervisor"])
            store.finish_run(run_id, metrics=metrics, artifacts=arts)
        except BaseException as exc:
            store.finish_run(run_id, status="failed", error=str(exc))
            raise
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
        from finllm.store import open_store
        from fraud.score import score_graph

        opts = {"nodes": nodes} if nodes else {}
        df = score_graph(model, data, open_store(), batch, csv_path=out, top=top, **opts)
        info = {"model_id": model, "batch": batch, "run_id": df.attrs["run_id"], "csv": df.attrs["csv"],
                "alerts_saved": df.attrs["alerts_saved"], **df.attrs["metrics"],
                "top": df.head(10).to_dict(orient="records")}
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
