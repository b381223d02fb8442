"""The ceiling of the LLM supervisor's uses: what ``budget`` verdicts of AUROC Q can add at best.

``bench_supervisor.py --ceiling`` runs this beside the real rows, from the same plain run (round 1) of
each seed. The ceiling is *not* something finllm can do with a real endpoint; it removes, on purpose,
everything the real loop must pay for:

* no calibration: every verdict goes to the query band (:func:`fraud.supervisor.select.band_queries`,
  the same selection the loop uses, at the whole budget instead of what calibration leaves);
* an exact combination: the score's validation map (:func:`fraud.supervisor.calibrate.score_map`) plus
  the verdict's exact log-likelihood ratio (:func:`fraud.supervisor.simulated.exact_llr`, readable only
  because the source is simulated), no lower-bound caution, no validation guard.

Variants (each seed, Q and budget):

``fuse``         the queried nodes' scores become that exact posterior; every other node keeps its rank;
``pseudo+fuse``  round 2 trained with the exact posteriors as soft labels (weight as in the loop), its
                 log-odds averaged with round 1's (as in the loop), then fused as above;
``labels``       round 2 trained with the queried nodes' TRUE labels as soft labels, averaged with round 1,
                 no fusion: what the same nodes would be worth if an annotator labelled them (Q = 1).

If a ceiling row stays below a goal, no use of that many verdicts of that quality through these
mechanisms reaches it on that graph: the goal needs a better source or a bigger budget.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from fraud.datasets import GraphDataset
    from fraud.splits import Split
    from fraud.train import TrainResult

VARIANTS = ("fuse", "pseudo+fuse", "labels")


def _metrics(scores: np.ndarray, y: torch.Tensor, idx: torch.Tensor, thr: float) -> dict:
    from fraud.evaluate import evaluate

    m = evaluate(torch.from_numpy(np.asarray(scores, np.float32)), y, idx, thr)
    return {k: round(float(m[k]), 4) for k in ("auprc", "auroc", "rec@k")}


def _auprc(scores: np.ndarray, y: torch.Tensor, idx: torch.Tensor) -> float:
    from fraud.evaluate import auprc

    return round(float(auprc(np.asarray(scores)[idx.numpy()], y[idx].numpy())), 4)


def ceiling_seed(ds: GraphDataset, split: Split, seed: int, r1: TrainResult, qs: list[float], budget: int, *,
                 model: str, opts: dict, soft_scale: float = 1.0) -> list[dict]:
    """The ceiling rows of one seed and budget from round 1 ``r1`` (a TrainResult): ``fuse`` and
    ``pseudo+fuse`` for every Q in ``qs``, ``labels`` once (it does not depend on Q)."""
    from fraud.models.ensemble import RankEnsemble
    from fraud.supervisor.calibrate import logit, score_map
    from fraud.supervisor.loop import query_pool
    from fraud.supervisor.select import band_queries
    from fraud.supervisor.simulated import exact_llr
    from fraud.train import train_model

    y = ds.data.y
    yn = y.numpy()
    n = ds.num_nodes
    queried = band_queries(r1.probs, split.val, y, query_pool(ds, split), budget)  # the loop's default pool
    qi = queried.numpy()
    unq = split.test[~torch.isin(split.test, queried)]
    s1 = r1.probs.double().numpy()
    val = split.val[y[split.val] >= 0].numpy()
    thr = float(r1.threshold)

    def mapped(scores: np.ndarray) -> np.ndarray:
        """The score's validation map to balanced-prior log-odds (N,): monotone, ranks as the score."""
        a, b = score_map(scores[val], yn[val])
        return a + b * logit(scores)

    def fused(scores: np.ndarray, llr: np.ndarray) -> np.ndarray:
        z = mapped(scores)
        z[qi] += llr
        return 1.0 / (1.0 + np.exp(-z))

    def round2_averaged(targets: np.ndarray) -> np.ndarray:
        st = torch.full((n,), float("nan"))
        st[queried] = torch.from_numpy(targets).float()
        r2 = train_model(ds, model, split, seed, soft_targets=st,
                         soft_weight=soft_scale * len(qi) / max(int(split.train.numel()), 1), **opts)
        return RankEnsemble(how="logit_average").combine([s1, r2.probs.double().numpy()])  # as the loop does

    def row(q: float, variant: str, scores: np.ndarray) -> dict:
        out = {"dataset": ds.name, "seed": seed, "source": "ceiling", "q": q, "budget": budget, "variant": variant,
               "status": "ceiling", "calls": len(qi), "calibration": 0, "val_guard": None,
               "plain": _metrics(s1, y, split.test, thr), "final": _metrics(scores, y, split.test, thr),
               "unqueried": {"nodes": int(unq.numel()), "round1_auprc": _auprc(s1, y, unq),
                             "final_auprc": _auprc(scores, y, unq)}}
        print(f"  {ds.name} seed {seed} Q {q:g} budget {budget} ceiling {variant:<11} AUPRC "
              f"{out['plain']['auprc']:.4f} -> {out['final']['auprc']:.4f}", file=sys.stderr, flush=True)
        return out

    rows = []
    for q in qs:
        llr = np.array([exact_llr(int(i), int(yn[i]), q, 0) for i in qi])  # seed 0: the bench's server
        rows.append(row(q, "fuse", fused(s1, llr)))
        soft = 1.0 / (1.0 + np.exp(-(mapped(s1)[qi] + llr)))
        rows.append(row(q, "pseudo+fuse", fused(round2_averaged(soft), llr)))
    rows.append(row(1.0, "labels", round2_averaged(yn[qi].astype(float))))
    return rows


def ceiling_table(rows: list[dict]) -> str:
    """Markdown: one line per (graph, Q, budget, variant) of the ceiling rows, means over seeds."""
    out = ["| graph | Q | budget | ceiling of | verdicts | plain AUPRC | ceiling AUPRC | Δ AUPRC (± sd) | "
           "min Δ over seeds | Δ AUPRC, unqueried test nodes |", "|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["dataset"], r["q"], r["budget"], r["variant"]) for r in rows if r["source"] == "ceiling"},
                  key=lambda k: (k[0], k[1], k[2], VARIANTS.index(k[3])))
    for key in keys:
        g = [r for r in rows if r["source"] == "ceiling" and (r["dataset"], r["q"], r["budget"], r["variant"]) == key]
        d = np.array([r["final"]["auprc"] - r["plain"]["auprc"] for r in g])
        du = np.array([r["unqueried"]["final_auprc"] - r["unqueried"]["round1_auprc"] for r in g])
        out.append(f"| {key[0]} | {'1 (true labels)' if key[3] == 'labels' else f'{key[1]:g}'} | {key[2]} | "
                   f"{key[3]} | {np.mean([r['calls'] for r in g]):.0f} | "
                   f"{np.mean([r['plain']['auprc'] for r in g]):.4f} | {np.mean([r['final']['auprc'] for r in g]):.4f} "
                   f"| {d.mean():+.4f} ± {d.std():.4f} | {d.min():+.4f} | {du.mean():+.4f} |")
    return "\n".join(out)


__all__ = ["VARIANTS", "ceiling_seed", "ceiling_table"]
