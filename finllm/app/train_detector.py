"""Use case: train a fraud detector and record the run (``finllm fraud train``, the fraud_pipeline's
``train_detector``, the demo): one path for plain training, ``--model auto`` and LLM-supervised training.

GADBench protocol over ``seeds`` (class-weighted loss, early stopping and threshold on validation; test
measured once), the best-validation seed's model saved, and one ``fraud_train`` run holding the metrics in
the report's schema (:func:`fraud.artifacts.run_metrics`), the supervisor's reports, and the predictions
file the report draws ROC / PR curves from (with a baseline candidate's curve for ``--model auto``).

Re-running the same ``idempotency_key`` replaces the model the run made before (and its alerts), only once
the new one is saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finllm.errors import ConfigError
from finllm.store import queries as Q

if TYPE_CHECKING:
    import torch

    from finllm.store.db import Store
    from fraud.datasets import GraphDataset
    from fraud.train import TrainResult

BASELINE_CANDIDATE = "xgbgraph"  # the tree baseline drawn beside an auto winner (GADBench's strongest tree)


@dataclass
class TrainOptions:
    """What ``fraud train`` takes besides the graph (see its ``--help``). ``supervisor``: none | llm |
    simulated (verdicts of AUROC ``simulated_auroc`` drawn from the labels: a what-if, not an LLM)."""

    model: str = "auto"
    setting: str = "full"
    seeds: int = 5
    epochs: int = 200
    patience: int = 50
    minibatch: bool = False
    supervisor: str = "none"
    simulated_auroc: float | None = None
    llm_budget: int = 60
    supervisor_uses: str = "all"
    auto: dict[str, Any] | None = None  # fraud.auto.train_auto options, e.g. {"budget_s": 60}
    save: bool = True
    nodes: Path | None = None


@dataclass
class TrainOutcome:
    """The finished run: ``summary`` (:func:`fraud.train.run_seeds`' dict plus graph, run and model ids),
    the kept seed's result and the graph."""

    run_id: str
    model_id: str | None
    name: str
    setting: str
    summary: dict[str, Any]
    kept: TrainResult
    dataset: GraphDataset
    baseline_test: dict[str, float] = field(default_factory=dict)

    def brief(self) -> dict[str, Any]:
        """Small JSON-able figures (what the DAG passes on through XCom and the demo prints)."""
        winner = (self.kept.config.get("auto") or {}).get("winner") or self.kept.config["model"]
        return {"run_id": self.run_id, "model_id": self.model_id, "winner": winner, "setting": self.setting,
                "model": f"{self.name} ({winner})" if winner != self.name else self.name,  # "auto (xgbgraph)"
                "test": _means(self.summary["test"]), "val": _means(self.summary["val"]),
                "baseline_test": self.baseline_test,
                "supervisor_status": [r.get("status") for r in self.summary.get("supervisor") or []]}


def _means(part: dict | None) -> dict[str, float]:
    """{"auroc": {"mean", "std"}, ...} -> {"auroc": mean}."""
    out = {}
    for k, v in (part or {}).items():
        v = v.get("mean") if isinstance(v, dict) else v
        if isinstance(v, (int, float)):
            out[k] = float(v)
    return out


def _round1_test(reports: list[dict]) -> dict[str, float]:
    """Mean round-1 (no supervisor: same seeds and splits) test metrics, when the supervisor reports them."""
    rows = [r["round1"]["test"] for r in reports if isinstance(r.get("round1"), dict) and "test" in r["round1"]]
    if not rows:
        return {}
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))]
    return {k: float(sum(r[k] for r in rows) / len(rows)) for k in keys}


def baseline_curve(kept: TrainResult) -> dict[str, torch.Tensor]:
    """The candidate drawn beside an auto winner: XGBGraph, or (when it won) the other candidate with the
    best validation AUPRC; nothing for a single model."""
    probs = kept.candidate_probs
    winner = (kept.config.get("auto") or {}).get("winner") or kept.config["model"]  # auto: the candidate's name
    if not probs:
        return {}
    if BASELINE_CANDIDATE in probs and winner != BASELINE_CANDIDATE:
        return {BASELINE_CANDIDATE: probs[BASELINE_CANDIDATE]}
    val = (kept.config.get("auto") or {}).get("val_auprc") or {}
    others = [n for n in probs if n != winner and val.get(n) is not None]
    if not others:
        return {}
    best = max(others, key=lambda n: val[n])
    return {best: probs[best]}


def _config(data: str | Path, ds: GraphDataset, name: str, opts: TrainOptions) -> dict[str, Any]:
    return {"data": str(data), "dataset": ds.name, "model": name, "setting": opts.setting,
            "seeds": list(range(opts.seeds)), "epochs": opts.epochs, "patience": opts.patience,
            "minibatch": opts.minibatch, "supervisor": opts.supervisor, "llm_budget": opts.llm_budget,
            "supervisor_uses": opts.supervisor_uses,
            **({"simulated_auroc": opts.simulated_auroc} if opts.supervisor == "simulated" else {}),
            **({"auto": opts.auto} if name == "auto" and opts.auto else {})}


def train_and_record(data: str | Path, opts: TrainOptions, store: Store | None = None, *, idempotency_key: str | None = None,
                     progress: bool = False) -> TrainOutcome:
    """Train ``opts.model`` on the graph at ``data`` over ``opts.seeds`` seeds inside one ``fraud_train``
    run (module doc); returns the outcome (the run is ``failed`` and the error re-raised on any failure)."""
    from finllm.config import load_settings
    from finllm.store.db import store_or_default
    from fraud.artifacts import run_metrics, save_model, save_predictions
    from fraud.datasets import load_graph
    from fraud.models import canonical_name
    from fraud.splits import SETTINGS, make_split
    from fraud.supervisor.sources import check_source, verdict_source
    from fraud.train import run_seeds

    check_source(opts.supervisor, opts.simulated_auroc)
    if opts.setting not in SETTINGS:
        raise ConfigError(f"--setting must be one of {', '.join(SETTINGS)}, got {opts.setting!r}")
    name = canonical_name(opts.model)
    store = store_or_default(store)
    ds = load_graph(data, **({"nodes": opts.nodes} if opts.nodes else {}))
    train_opts: dict[str, Any] = {"epochs": opts.epochs, "patience": opts.patience, "minibatch": opts.minibatch,
                                  **({"auto": opts.auto} if name == "auto" and opts.auto else {})}
    tag = {"llm": " + LLM supervisor", "simulated": f" + SIMULATED verdicts (AUROC {opts.simulated_auroc})"}
    with store.run("fraud_train", _config(data, ds, name, opts), idempotency_key=idempotency_key,
                   name=f"{name} {opts.setting} {ds.name}{tag.get(opts.supervisor, '')}") as run:
        old_models = [m.id for m in Q.models(store, run_id=run.id, limit=1000)]
        if opts.supervisor != "none":
            from fraud.supervisor.loop import run_seeds_supervised

            with verdict_source(opts.supervisor, ds.data.y.numpy(), auroc=opts.simulated_auroc, run_id=run.id,
                                store=store, calls=opts.seeds * opts.llm_budget) as (gateway, source):
                summary, kept = run_seeds_supervised(ds, name, opts.setting, opts.seeds, budget=opts.llm_budget,
                                                     uses=opts.supervisor_uses, progress=progress, gateway=gateway,
                                                     source=source, **train_opts)
            summary["supervisor_source"] = source
        else:
            summary, kept = run_seeds(ds, name, opts.setting, opts.seeds, progress=progress, **train_opts)
        summary["graph"] = ds.summary()
        model_id = None
        if opts.save:
            model_id = save_model(kept, store, dataset=str(data), run_id=run.id,
                                  extra_metrics={"seeds_summary": {"test": summary["test"], "val": summary["val"]}})
        summary["model_id"], summary["run_id"] = model_id, run.id
        slug = (idempotency_key or run.id).replace("/", "_")
        run.artifacts["predictions"] = save_predictions(
            kept, make_split(ds, opts.setting, summary["kept_seed"]), ds.data.y,
            Path(load_settings().home) / "runs" / slug / "predictions.npz", baselines=baseline_curve(kept))
        if model_id:
            run.artifacts["model_id"] = model_id
        run.metrics.update(run_metrics(summary, kept))
        baseline = _round1_test(summary.get("supervisor") or [])
        if baseline:
            run.metrics["baselines"] = {"no_supervisor": {"test": baseline}}
        if "supervisor" in summary:
            run.metrics["supervisor"] = summary["supervisor"]
    if old_models:  # the run's earlier model (a re-run of the same key): dropped only now the new one is saved
        store.delete_fraud_models(old_models)
    return TrainOutcome(run.id, model_id, name, opts.setting, summary, kept, ds, baseline)
