"""Scheduled fraud jobs (what the ``fraud_pipeline`` DAG runs): graph check, supervised training,
daily scoring into alerts, explanations of the top alerts.

Thin orchestration over :mod:`fraud.datasets`, :mod:`fraud.supervisor.loop`, :mod:`fraud.score` and
:mod:`fraud.supervisor.explain`. Each job writes to the store and returns a small JSON-able dict.
Idempotent per day: a training run keyed ``fraud_pipeline/train/<day>`` that runs again first deletes
the model it made before (with that model's alerts), so one day never leaves two models; alerts are
replaced per (model, batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finllm.errors import DataError


def _store(store: Any) -> Any:
    if store is not None:
        return store
    from finllm.store import open_store

    return open_store()


def dataset_keys(data: str) -> set[str]:
    """Names a stored model's ``dataset`` column may hold for the graph at ``data``."""
    p = Path(data)
    return {str(data), str(p.resolve()), p.name, p.stem}


def check_graph(data: str) -> dict[str, Any]:
    """Load the graph (raises DataError on a bad file) and return its summary."""
    from fraud.datasets import load_graph

    ds = load_graph(data)
    summary = ds.summary()
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool, type(None)))}


def latest_model(data: str, store: Any = None) -> str | None:
    """Id of the newest stored model trained on the graph at ``data`` (None if there is none)."""
    from sqlalchemy import select

    from finllm.store.tables import FraudModel

    store = _store(store)
    with store.session() as s:
        row = s.scalar(select(FraudModel).where(FraudModel.dataset.in_(dataset_keys(data)))
                       .order_by(FraudModel.created_at.desc()).limit(1))
        return row.id if row else None


def forget_models(model_ids: list[str], store: Any) -> None:
    """Delete these models' rows, their alerts and their weight files."""
    from sqlalchemy import delete, select

    from finllm.store.tables import Alert, FraudModel

    with store.session() as s:
        paths = list(s.scalars(select(FraudModel.path).where(FraudModel.id.in_(model_ids))))
        s.execute(delete(Alert).where(Alert.model_id.in_(model_ids)))
        s.execute(delete(FraudModel).where(FraudModel.id.in_(model_ids)))
    for p in paths:
        Path(p).unlink(missing_ok=True)


def score_job(data: str, *, batch: str, model_id: str | None = None, idempotency_key: str | None = None,
              top: int = 1000, store: Any = None) -> dict[str, Any]:
    """Score every node of the graph with ``model_id`` (default: the newest model for this graph); the
    alerts of (model, ``batch``) are replaced. Returns counts and the model id."""

    from fraud.score import score_graph

    store = _store(store)
    model_id = model_id or latest_model(data, store)
    if model_id is None:
        raise DataError(f"{data}: no trained model for this graph in {store.url}; train one first "
                        "(`finllm fraud train --data ...` or the fraud_pipeline's train_detector)")
    df = score_graph(model_id, data, store, batch, top=top, idempotency_key=idempotency_key)
    return {"model_id": model_id, "batch": batch, "run_id": df.attrs.get("run_id"), "nodes": int(len(df)),
            "above_threshold": int(df["above_threshold"].sum()), "alerts_saved": df.attrs.get("alerts_saved")}


def _model_ids_of_run(run_id: str, store: Any) -> list[str]:
    from sqlalchemy import select

    from finllm.store.tables import FraudModel

    with store.session() as s:
        return list(s.scalars(select(FraudModel.id).where(FraudModel.run_id == run_id)))


def _metric_means(part: dict | None) -> dict[str, float]:
    """{"auroc": {"mean", "std"}, ...} or {"auroc": x} -> {"auroc": mean}."""
    out = {}
    for k, v in (part or {}).items():
        v = v.get("mean") if isinstance(v, dict) else v
        if isinstance(v, (int, float)):
            out[k] = float(v)
    return out


def train_plain(data: str, *, model: str, setting: str, seeds: int, epochs: int, run_id: str, store: Any,
                progress: bool = False) -> dict[str, Any]:
    """GADBench-protocol training without the LLM (``llm_budget=0``): several seeds, the best-validation
    seed's model saved. Writes the run's metrics; returns {model_id, test, val}."""
    from fraud.artifacts import save_model
    from fraud.datasets import load_graph
    from fraud.train import run_seeds

    ds = load_graph(data)
    summary, kept = run_seeds(ds, model, setting, seeds, progress=progress, epochs=epochs)
    model_id = save_model(kept, store, dataset=str(data), run_id=run_id,
                          extra_metrics={"seeds_summary": {"test": summary["test"], "val": summary["val"]}})
    store.finish_run(run_id, metrics={k: summary[k] for k in ("val", "test", "train_time_s", "per_seed")},
                     artifacts={"model_id": model_id})
    return {"model_id": model_id, "test": _metric_means(summary["test"]), "val": _metric_means(summary["val"])}


def _predictions_npz(path: Path, ds: Any, kept: Any, setting: str) -> str:
    """Arrays the report draws ROC/PR curves and score distributions from: y, score, split (0/1/2)."""
    import numpy as np

    from fraud.splits import make_split

    split = make_split(ds, setting, int(kept.config["seed"]))
    part = np.full(ds.num_nodes, -1, dtype=np.int8)
    for code, idx in enumerate((split.train, split.val, split.test)):
        part[idx.numpy()] = code
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, y=ds.data.y.numpy().astype(np.int64), score=kept.probs.numpy().astype(np.float32),
                        split=part)
    return str(path)


def train_job(data: str, *, model: str = "auto", setting: str = "semi", seeds: int = 3, epochs: int = 200,
              llm_budget: int = 60, uses: str | None = None, idempotency_key: str | None = None,
              progress: bool = False, store: Any = None, auto: dict | None = None) -> dict[str, Any]:
    """Train a detector with the LLM supervisor (:func:`fraud.supervisor.loop.run_seeds_supervised`;
    ``llm_budget=0``: plain training) over ``seeds``, keep the best-validation seed's model, record
    the ``fraud_train`` run (metrics, supervisor reports, predictions for the report).

    Re-running the same ``idempotency_key`` replaces the model the run made before (and its alerts).
    ``model="auto"``: every candidate tuned per seed, the best on validation kept (``auto``: options of
    :func:`fraud.auto.train_auto`, e.g. ``{"budget_s": 60}``); ``winner`` names the saved model's family.
    Returns {run_id, model_id, model, winner, test, val, baseline_test} (baseline = round 1, same seeds and
    splits without the supervisor, where the supervisor reports it)."""
    from finllm.config import load_settings
    from fraud.artifacts import save_model
    from fraud.datasets import load_graph
    from fraud.models import canonical_name
    from fraud.train import run_seeds

    store = _store(store)
    name = canonical_name(model)
    cfg = {"data": str(data), "dataset": Path(data).stem, "model": name, "setting": setting, "seeds": seeds,
           "epochs": epochs, "llm_budget": llm_budget, "supervisor_uses": uses or "all",
           **({"auto": auto} if name == "auto" and auto else {})}
    opts: dict[str, Any] = {"epochs": epochs, **({"auto": auto} if name == "auto" and auto else {})}
    run_id = store.start_run("fraud_train", cfg, name=f"{name} {setting} {Path(data).stem} + LLM supervisor"
                             if llm_budget > 0 else f"{name} {setting} {Path(data).stem}",
                             idempotency_key=idempotency_key)
    old_models = _model_ids_of_run(run_id, store)
    try:
        ds = load_graph(data)
        if llm_budget > 0:
            from finllm.llm import get_gateway
            from fraud.supervisor.loop import run_seeds_supervised

            summary, kept = run_seeds_supervised(ds, name, setting, seeds, budget=llm_budget, uses=uses,
                                                 gateway=lambda: get_gateway(run_id=run_id, store=store),
                                                 progress=progress, **opts)
        else:
            summary, kept = run_seeds(ds, name, setting, seeds, progress=progress, **opts)
        model_id = save_model(kept, store, dataset=str(data), run_id=run_id,
                              extra_metrics={"seeds_summary": {"test": summary["test"], "val": summary["val"]}})
        slug = (idempotency_key or run_id).replace("/", "_")
        preds = _predictions_npz(Path(load_settings().home) / "runs" / slug / "predictions.npz", ds, kept, setting)
        metrics = {k: summary[k] for k in ("val", "test", "train_time_s", "per_seed") if k in summary}
        metrics["threshold"] = float(kept.threshold)
        baseline = _round1_test(summary.get("supervisor") or [])
        if baseline:
            metrics["baselines"] = {"no_supervisor": {"test": baseline}}
        if "supervisor" in summary:
            metrics["supervisor"] = summary["supervisor"]
        store.finish_run(run_id, metrics=metrics, artifacts={"model_id": model_id, "predictions": preds})
    except BaseException as exc:
        store.finish_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    if old_models:  # the day's earlier model (a re-run): drop it only now that the new one is saved
        forget_models(old_models, store)
    sup = summary.get("supervisor") or []
    winner = kept.config["model"]
    shown = f"{name} ({winner})" if winner != name else name  # "auto (xgbgraph)": what the demo prints
    return {"run_id": run_id, "model_id": model_id, "model": shown, "winner": winner, "setting": setting,
            "test": _metric_means(summary["test"]), "val": _metric_means(summary["val"]),
            "baseline_test": baseline, "supervisor_status": [r.get("status") for r in sup]}


def _round1_test(reports: list[dict]) -> dict[str, float]:
    """Mean round-1 (no supervisor) test metrics over seeds, when the supervisor reports carry them."""
    rows = [r["round1"]["test"] for r in reports if isinstance(r.get("round1"), dict) and "test" in r["round1"]]
    if not rows:
        return {}
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))]
    return {k: float(sum(r[k] for r in rows) / len(rows)) for k in keys}


def explain_job(model_id: str, *, batch: str, data: str, top: int = 20, store: Any = None) -> dict[str, Any]:
    """Explanations for the ``top`` highest-ranked alerts of (model, batch), written into the alerts'
    ``explanation``: the detector's evidence rendered by code, plus LLM phrasings that pass the checks
    and the LLM verdict's note (reliability, agreement) (:func:`fraud.supervisor.explain.explain_alerts`).
    Idempotent: the same alerts get their explanation rewritten."""
    from fraud.artifacts import load_model
    from fraud.datasets import load_graph
    from fraud.supervisor.explain import explain_alerts, explanation_text
    from finllm.store.tables import Alert

    store = _store(store)
    alerts = store.alerts(model_id, batch)[:top]
    if not alerts or top <= 0:
        return {"model_id": model_id, "batch": batch, "explained": 0, "with_llm": 0}
    loaded = load_model(model_id, store)
    ds = load_graph(data)
    index = {nid: i for i, nid in enumerate(ds.node_ids)} if ds.node_ids else {}
    nodes = [index[a.node] if index else int(a.node) for a in alerts]
    from finllm.llm import get_gateway

    try:
        gateway = get_gateway(store=store)
    except Exception as exc:  # noqa: BLE001 - no LLM endpoint: explain with attributions only, say so
        gateway, why = None, f"{type(exc).__name__}: {exc}"
    else:
        why = None
    explained = explain_alerts(loaded, ds, nodes, gateway=gateway, llm_budget=top if gateway else 0)
    with store.session() as s:
        for a, node in zip(alerts, nodes):
            row = s.get(Alert, a.id)
            row.explanation = explanation_text(explained[int(node)])
    with_llm = sum("note" in (e.get("llm") or {}) for e in explained.values())
    out = {"model_id": model_id, "batch": batch, "explained": len(explained), "with_llm": with_llm,
           "llm_disagreements": sum((e.get("llm") or {}).get("shown_as") == "disagreement"
                                    for e in explained.values()),
           "llm_phrasings_kept": sum(s["source"] == "llm" for e in explained.values()
                                     for s in e["explanation"]["sentences"])}
    if why:
        out["llm_unavailable"] = why[:300]
    return out
