"""Batch scoring: a saved detector scores every node of a (new) graph; alerts go to the store and CSV.

The graph is loaded and validated like training data, features are normalised with the statistics
saved at training time, and the model runs full-graph inference under ``torch.inference_mode`` (CSR
products, no (E, H) message tensors; GraphSAGE scores the 1M-node / 10M-edge bench graph at 150-300k
nodes/s on one core of the shared 2-core box, see ``bench/bench_fraud_scale.py``). Rank 1 = most suspicious.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from finllm.config import load_settings
from finllm.errors import DataError
from finllm.names import check_name
from fraud.artifacts import LoadedModel, load_model
from fraud.models import GraphOps
from fraud.train import apply_normalization

if TYPE_CHECKING:
    from finllm.store.db import Store
    from fraud.datasets import GraphDataset


def predict(loaded: LoadedModel, ds: GraphDataset, edge_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Fraud probabilities (N,) of every node of ``ds`` (a GraphDataset) under ``loaded``, with the LLM
    verdicts of its training run fused in when it had any (:func:`apply_verdict_fusion`)."""
    n_rel = int(loaded.config.get("num_relations", 1))
    if loaded.name == "rgnn" and n_rel > 1 and len(ds.relations) != n_rel:
        raise DataError(f"{ds.name}: has relations {ds.relations}, model {loaded.id} was trained on "
                        f"{loaded.config.get('relations')}")
    with torch.inference_mode():
        x = apply_normalization(ds.data.x, loaded.normalization, source=ds.name)
    g = GraphOps(ds.data.edge_index, ds.num_nodes, edge_type=getattr(ds.data, "edge_type", None),
                 edge_weight=edge_weight, num_relations=len(ds.relations))
    probs = loaded.model.predict_proba(x, g)
    fusion = loaded.config.get("verdict_fusion")
    return torch.from_numpy(apply_verdict_fusion(probs, fusion, ds) if fusion else probs).float()


def apply_verdict_fusion(probs: np.ndarray, fusion: dict, ds: GraphDataset) -> np.ndarray:
    """What an LLM-supervised run with ``fuse`` reported, again: every score through the run's monotone map
    (``score_map``: the scale its threshold was chosen on) and, on the graph the run trained on (same
    name and node count), the nodes the LLM reviewed at their fused score. (N,) -> (N,)."""
    from fraud.supervisor.calibrate import logit

    a, b = fusion["score_map"]
    out = 1.0 / (1.0 + np.exp(-(a + b * logit(probs))))
    if ds.name == fusion.get("dataset") and ds.num_nodes == fusion.get("nodes"):
        index = {str(n): i for i, n in enumerate(ds.node_ids or range(ds.num_nodes))}
        for node, p in fusion.get("reviewed", {}).items():
            if node in index:
                out[index[node]] = p
    return out


def rank_rows(node_ids: list[str], probs: torch.Tensor, threshold: float) -> pd.DataFrame:
    """DataFrame (node, score, rank, above_threshold), sorted by rank (1 = highest score)."""
    p = probs.numpy().astype(float)
    order = np.argsort(-p, kind="mergesort")
    rank = np.empty(len(p), dtype=np.int64)
    rank[order] = np.arange(1, len(p) + 1)
    df = pd.DataFrame({"node": np.asarray(node_ids, dtype=object), "score": p, "rank": rank,
                       "above_threshold": p >= threshold})
    return df.iloc[order].reset_index(drop=True)


def score_graph(model_id: str, path: str | Path, store: Store, batch: str = "", *, csv_path: str | Path | None = None,
                top: int = 1000, write: bool = True, idempotency_key: str | None = None,
                **load_opts) -> pd.DataFrame:
    """Score the graph at ``path`` with model ``model_id``.

    Returns every node's row (node, score, rank, above_threshold). With ``write``: the CSV (default
    ``$FINLLM_HOME/alerts/<model>_<batch>.csv``; ``batch`` is a plain name, see
    :func:`finllm.names.check_name`; a given ``csv_path`` must be in an existing folder) gets every node; the store's alerts for
    (model, batch) are replaced by the nodes above the threshold plus the ``top`` highest-ranked ones.
    The ``fraud_score`` run records counts, throughput and, where the graph has labels, the metrics;
    ``idempotency_key`` (e.g. ``fraud_pipeline/score/<day>``) makes a re-run replace that run.
    """
    from fraud.datasets import load_graph
    from fraud.evaluate import evaluate

    check_name(batch, "batch")  # it becomes part of the default CSV name: never a path
    if csv_path is not None:
        csv_path = Path(csv_path)
        if csv_path.is_dir():
            raise DataError(f"{csv_path}: is a directory; give a CSV file name")
        if not csv_path.expanduser().parent.is_dir():
            raise DataError(f"{csv_path}: folder {csv_path.expanduser().parent} does not exist (create it first)")
    loaded = load_model(model_id, store)
    ds = load_graph(path, **load_opts)
    t0 = time.perf_counter()
    probs = predict(loaded, ds)
    secs = time.perf_counter() - t0
    df = rank_rows(ds.node_ids, probs, loaded.threshold)
    df.attrs.update(model_id=model_id, batch=batch, seconds=secs, nodes_per_s=ds.num_nodes / max(secs, 1e-9))
    if not write:
        return df
    with store.run("fraud_score", {"model_id": model_id, "data": str(path), "batch": batch, "top": top},
                   name=f"score {Path(path).name}", idempotency_key=idempotency_key) as run:
        if csv_path is None:  # the only folder created here: $FINLLM_HOME/alerts
            csv_path = Path(load_settings().home) / "alerts" / f"{check_name(model_id, 'model id')}_{batch or 'default'}.csv"
            csv_path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(csv_path, index=False)
        keep = df[(df["above_threshold"]) | (df["rank"] <= top)]
        rows = [{"node": str(r.node), "score": float(r.score), "rank": int(r.rank),
                 "above_threshold": bool(r.above_threshold), "explanation": None}
                for r in keep.itertuples(index=False)]
        store.save_alerts(model_id, batch, rows, run_id=run.id)
        metrics = {"nodes": ds.num_nodes, "above_threshold": int(df["above_threshold"].sum()),
                   "alerts_saved": len(rows), "seconds": round(secs, 4),
                   "nodes_per_s": round(ds.num_nodes / max(secs, 1e-9), 1), "report": ds.report}
        fusion = loaded.config.get("verdict_fusion")
        if fusion:  # the training run's LLM verdicts are part of these scores: say so
            same = ds.name == fusion.get("dataset") and ds.num_nodes == fusion.get("nodes")
            metrics["verdict_fusion"] = {"reviewed_nodes": len(fusion.get("reviewed", {})) if same else 0,
                                         "note": "scores on the training run's fused scale; LLM-reviewed nodes "
                                                 "keep their fused score" if same else
                                                 "scores on the training run's fused scale; its LLM-reviewed "
                                                 "nodes belong to another graph and were not applied"}
        y = ds.data.y
        lab = torch.nonzero(y >= 0).flatten()
        if len(lab) and len(set(y[lab].tolist())) == 2:
            metrics["labelled_eval"] = evaluate(probs, y, lab, loaded.threshold)
        run.metrics.update(metrics)
        run.artifacts["alerts_csv"] = str(csv_path)
    run_id = run.id
    df.attrs.update(run_id=run_id, csv=str(csv_path), alerts_saved=len(rows), metrics=metrics)
    return df
