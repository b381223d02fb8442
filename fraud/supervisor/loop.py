"""LLM-supervised GNN training: round 1 -> select -> ask -> calibrate -> use -> round 2.

1. Train the GNN (round 1) on the given labels.
2. Plan the call budget (:func:`fraud.supervisor.select.plan_budget`): a calibration slice of
   labelled *validation* nodes (balanced, hardest first), training nodes whose label the GNN
   disputes (label-noise check) and the most valuable queries among unlabelled nodes.
3. Ask the LLM (template ``fraud_verdict``; ``samples`` > 1 -> self-consistency: several sampled
   verdicts per node, majority label, mean probability, agreement and spread recorded).
4. Calibrate trust on the calibration slice (:mod:`fraud.supervisor.trust`); weight 0 without signal.
5. Turn verdicts into training signal, each use switchable:
   ``pseudo``  soft targets on queried unlabelled nodes (LLM probability, shrunk towards the GNN's
               own score by the sample agreement), loss weight = node reliability;
   ``noise``   a training label that both the LLM and the GNN dispute is down-weighted by
               reliability x agreement;
   ``edges``   edges to neighbours the LLM names as camouflage get weight 1 - edge reliability x
               agreement (both directions); edge reliability is measured on the calibration slice,
               or taken as half the node reliability when too few named neighbours have known labels.
6. Train round 2 with those signals (same model, split and seed). If nothing is trusted, round 2 is
   skipped and round 1 is returned unchanged; with ``val_guard`` round 2 is kept only when its
   validation AUPRC is not below round 1's (validation only - test is never looked at).

Which nodes are ever prompted: validation nodes for calibration (labels hidden), training nodes
(own label hidden), and the query pool: ``pool="transductive"`` (default) = every node outside
train/val, test nodes included as *unlabelled* nodes (their labels are never read; the GNN sees
their features and edges too); ``pool="unlabelled"`` = only nodes outside every split.

Failure: if the endpoint is down, refuses, or returns garbage, training finishes without
supervision and the report says why (``status``: applied | no_signal | endpoint_failed | skipped).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
import torch

from finllm.errors import ConfigError
from fraud.supervisor.prompt import build_context, describe_node, train_label_view
from fraud.supervisor.select import (calibration_slice, label_disagreements, plan_budget, query_scores,
                                     top_k)
from fraud.supervisor.trust import edge_reliability, node_reliability
from fraud.supervisor.verdict import FraudVerdict, clean_neighbors

USES = ("pseudo", "noise", "edges")
TEMPLATE = "fraud_verdict"
ENDPOINT_FAILURES = {"connection", "timeout", "http", "auth", "budget", "internal", "server"}


def parse_uses(text: str | list[str] | set[str] | None) -> set[str]:
    """"pseudo,noise" -> {"pseudo", "noise"}; "all" or None -> all three; unknown names raise."""
    if text is None or text == "all":
        return set(USES)
    items = text.split(",") if isinstance(text, str) else list(text)
    out = {s.strip().lower() for s in items if s.strip()}
    bad = out - set(USES)
    if bad:
        raise ConfigError(f"unknown supervisor use(s) {sorted(bad)} (choose from {', '.join(USES)})")
    return out


# ---- asking ----------------------------------------------------------------------------------------
def _aggregate(samples: list[Any], n: int) -> dict | None:
    """Self-consistency over ``n`` requested samples (failures count as disagreeing)."""
    vals = [s.value for s in samples if s]
    if not vals:
        return None
    labels = Counter(v.label for v in vals)
    top, count = labels.most_common(1)[0]
    group = [v for v in vals if v.label == top]
    probs = np.array([v.fraud_probability for v in vals])
    return {"q": float(probs.mean()), "label": top, "agreement": count / n,
            "prob_std": float(probs.std()), "confidence": float(np.mean([v.confidence for v in group])),
            "rationale": group[0].rationale, "named": sorted({i for v in group for i in v.suspicious_neighbors}),
            "valid_samples": len(vals)}


def _concurrency(gateway: Any) -> int:
    """The embedded llama.cpp server answers one request at a time: queueing several behind it only
    makes them time out and retry, so requests go one by one there."""
    if getattr(gateway, "embedded", False):
        return 1
    return max(1, int(getattr(getattr(gateway, "settings", None), "llm_concurrency", 1)))


def ask(gateway: Any, prompts: dict[int, Any], *, dataset: str, samples: int, progress: bool = False,
        max_tokens: int = 120) -> tuple[dict[int, dict], Counter]:
    """One verdict per node (``samples`` sampled verdicts aggregated when > 1).

    Returns ({node: verdict record}, failure kinds counted). Never raises on model output.
    """
    nodes = list(prompts)
    reqs, owners = [], []
    for node in nodes:
        for k in range(samples):
            reqs.append(dict(template=TEMPLATE, variables={"description": prompts[node].text, "dataset": dataset},
                             schema=FraudVerdict, temperature=0.0 if samples == 1 else 0.7,
                             max_tokens=max_tokens, max_repairs=1, sample=None if samples == 1 else k))
            owners.append(node)
    try:
        results = gateway.structured_many(reqs, progress=progress, concurrency=_concurrency(gateway))
    except Exception as exc:  # a broken gateway must not break training
        return {}, Counter({f"gateway:{type(exc).__name__}": len(reqs)})
    by_node: dict[int, list[Any]] = {n: [] for n in nodes}
    failures: Counter = Counter()
    for node, res in zip(owners, results):
        by_node[node].append(res)
        if not res:
            failures[getattr(res, "kind", "unknown")] += 1
    out: dict[int, dict] = {}
    for node, res in by_node.items():
        rec = _aggregate(res, samples)
        if rec is None:
            continue
        rec["named"], rec["dropped_ids"] = clean_neighbors(rec["named"], prompts[node].shown_neighbors)
        out[node] = rec
    return out, failures


# ---- turning verdicts into signal ------------------------------------------------------------------
def _edge_ids(edge_index: torch.Tensor, n: int, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """Indices of edges (both directions) between each (a, b) pair. Shape (M,)."""
    if not pairs:
        return torch.empty(0, dtype=torch.long)
    key = edge_index[0] * n + edge_index[1]
    p = torch.tensor(pairs, dtype=torch.long)
    want = torch.cat([p[:, 0] * n + p[:, 1], p[:, 1] * n + p[:, 0]])
    return torch.nonzero(torch.isin(key, want)).flatten()


def build_signals(ds: Any, split: Any, probs: torch.Tensor, threshold: float, verdicts: dict[int, dict],
                  roles: dict[int, str], *, uses: set[str], w_node: float, w_edge: float,
                  given_y: torch.Tensor) -> dict[str, Any]:
    """Training hooks for round 2 from verdicts and trust weights (see module docstring)."""
    n = ds.num_nodes
    out: dict[str, Any] = {"node_weight": None, "soft_targets": None, "soft_weight": 0.0, "edge_weight": None,
                           "counts": {"pseudo": 0, "noise_downweighted": 0, "edges_downweighted": 0}}
    if "pseudo" in uses and w_node > 0:
        st = torch.full((n,), float("nan"))
        for node, v in verdicts.items():
            if roles[node] == "query":
                p = float(probs[node])
                st[node] = min(1.0, max(0.0, p + v["agreement"] * (v["q"] - p)))
        k = int(torch.isfinite(st).sum())
        if k:
            out.update(soft_targets=st, soft_weight=float(w_node))
            out["counts"]["pseudo"] = k
    if "noise" in uses and w_node > 0:
        nw = torch.ones(n)
        for node, v in verdicts.items():
            if roles[node] != "noise":
                continue
            given = int(given_y[node])
            llm_says = 1 if v["label"] == "fraud" else 0
            gnn_says = int(float(probs[node]) >= threshold)
            if llm_says != given and gnn_says != given:
                nw[node] = 1.0 - w_node * v["agreement"]
                out["counts"]["noise_downweighted"] += 1
        if out["counts"]["noise_downweighted"]:
            out["node_weight"] = nw
    if "edges" in uses and w_edge > 0:
        ew = torch.ones(ds.data.edge_index.size(1))
        for node, v in verdicts.items():
            if roles[node] == "calibration" or not v["named"]:
                continue
            idx = _edge_ids(ds.data.edge_index, n, [(node, j) for j in v["named"]])
            ew[idx] = torch.minimum(ew[idx], torch.tensor(1.0 - w_edge * v["agreement"]))
            out["counts"]["edges_downweighted"] += int(idx.numel())
        if out["counts"]["edges_downweighted"]:
            out["edge_weight"] = ew
    return out


def _edge_evidence(verdicts: dict[int, dict], prompts: dict[int, Any], roles: dict[int, str],
                   measure_y: torch.Tensor) -> tuple[list[bool], list[bool]]:
    named, shown = [], []
    for node, v in verdicts.items():
        if roles[node] != "calibration":
            continue
        t = int(measure_y[node])
        for j in prompts[node].shown_neighbors:
            lj = int(measure_y[j])
            if lj < 0:
                continue
            shown.append(lj != t)
            if j in v["named"]:
                named.append(lj != t)
    return named, shown


# ---- the loop ------------------------------------------------------------------------------------
def train_supervised(ds: Any, model_name: str, split: Any, seed: int, *, budget: int, uses: set[str] | str | None,
                     gateway: Any, progress: bool = False, samples: int | None = None, token_budget: int = 250,
                     pool: str = "transductive", val_guard: bool = True, trust_override: float | None = None,
                     round1: Any = None, plan_uses: set[str] | str | None = None,
                     **train_opts: Any) -> tuple[Any, dict]:
    """Train ``model_name`` with the LLM supervisor; returns (TrainResult, supervisor report).

    ``gateway``: a :class:`finllm.llm.Gateway` (or None: then no supervision, reported). ``budget``:
    verdict requests to plan (self-consistency samples count; repair rounds are counted by the
    gateway's own Budget). ``trust_override`` (benchmarks only) replaces measured trust, to show what
    uncalibrated verdicts would do. ``round1``: reuse an already trained round-1 TrainResult.
    ``plan_uses`` (default ``uses``): the uses the query budget is planned for - benchmarks plan for all
    three and apply subsets, so every variant sees the same (cached) verdicts.
    ``train_opts`` go to :func:`fraud.train.train_model` (epochs, patience, ...).
    """
    from fraud.train import train_model

    uses = parse_uses(uses)
    if pool not in ("transductive", "unlabelled"):
        raise ConfigError(f"pool must be 'transductive' or 'unlabelled', got {pool!r}")
    t0 = time.perf_counter()
    r1 = round1 if round1 is not None else train_model(ds, model_name, split, seed, progress=progress, **train_opts)
    report: dict[str, Any] = {"uses": sorted(uses), "budget": int(budget), "pool": pool, "template": TEMPLATE,
                              "round1": {"val": r1.metrics["val"], "test": r1.metrics["test"]}}

    def finish(result: Any, status: str, reason: str) -> tuple[Any, dict]:
        report.update(status=status, reason=reason, supervised=status == "applied",
                      seconds=round(time.perf_counter() - t0, 1))
        # the saved model's config says how it was trained (explain prints the measured trust)
        result.config = {**result.config, "supervisor": supervisor_summary(report)}
        return result, report

    if gateway is None:
        return finish(r1, "endpoint_failed", "no LLM gateway available; trained without supervision")
    if budget <= 0 or not uses:
        return finish(r1, "skipped", "LLM budget 0 or no uses selected")

    y = ds.data.y
    known = train_label_view(y, split.train)
    thr = float(r1.threshold)
    ctx = build_context(ds.data.x, ds.data.edge_index, known, r1.probs, threshold=thr,
                        embeddings=r1.embeddings, edge_type=getattr(ds.data, "edge_type", None),
                        relations=ds.relations, feature_names=ds.feature_names)
    disputed = label_disagreements(split.train, y, r1.probs, thr)
    planned_for = parse_uses(plan_uses) if plan_uses is not None else uses
    plan = plan_budget(budget, uses=planned_for, n_noise_candidates=int(disputed.numel()), samples=samples)
    cal = calibration_slice(split.val, y, r1.probs, thr, plan.n_calibration)
    noise = disputed[: plan.n_noise]
    in_split = torch.zeros(ds.num_nodes, dtype=torch.bool)
    in_split[torch.cat([split.train, split.val])] = True
    if pool == "unlabelled":
        in_split[split.test] = True
    cand = torch.nonzero(~in_split).flatten()
    scores = query_scores(r1.probs, ds.data.edge_index, threshold=thr, known=known)
    queries = top_k(scores, cand, plan.n_query)
    roles = {int(i): "calibration" for i in cal} | {int(i): "noise" for i in noise} | \
            {int(i): "query" for i in queries}
    prompts = {node: describe_node(ctx, node, token_budget=token_budget, max_features=6, max_neighbors=4,
                                   max_examples=2) for node in roles}
    report["plan"] = {"samples": plan.samples, "calibration": int(cal.numel()), "noise": int(noise.numel()),
                      "queries": int(queries.numel()), "planned_calls": plan.samples * len(roles),
                      "pool_size": int(cand.numel()), "prompt_tokens_max": max((p.tokens for p in prompts.values()), default=0)}
    usage0 = dict(gateway.usage()) if hasattr(gateway, "usage") else {}
    verdicts, failures = ask(gateway, prompts, dataset=ds.name, samples=plan.samples, progress=progress)
    usage1 = dict(gateway.usage()) if hasattr(gateway, "usage") else {}
    report["llm"] = {"usage": {k: usage1.get(k, 0) - usage0.get(k, 0) for k in usage1},
                     "verdicts": len(verdicts), "requested_nodes": len(roles), "failures": dict(failures),
                     "dropped_neighbor_ids": sum(v["dropped_ids"] for v in verdicts.values())}
    if plan.samples > 1 and verdicts:
        report["llm"]["self_consistency"] = {
            "mean_agreement": round(float(np.mean([v["agreement"] for v in verdicts.values()])), 4),
            "mean_prob_std": round(float(np.mean([v["prob_std"] for v in verdicts.values()])), 4),
            "disagreeing_nodes": sum(v["agreement"] < 1 for v in verdicts.values())}
    if verdicts:
        report["llm"]["label_counts"] = dict(Counter(v["label"] for v in verdicts.values()))

    # calibrated trust on the held-out validation slice
    cal_nodes = [int(i) for i in cal]
    q = np.array([verdicts[i]["q"] if i in verdicts else np.nan for i in cal_nodes])
    lab = np.array([(1 if verdicts[i]["label"] == "fraud" else 0) if i in verdicts else -1 for i in cal_nodes])
    rel = node_reliability(q, y[cal].numpy(), labels=np.where(lab < 0, 0, lab), gnn=r1.probs[cal].numpy(),
                           seed=seed)
    measure_y = torch.full_like(y, -1)  # edge trust is measured with train + val labels, never test labels
    tv = torch.cat([split.train, split.val])
    measure_y[tv] = y[tv]
    named, shown = _edge_evidence(verdicts, prompts, roles, measure_y)
    edge_rel = edge_reliability(named, shown)
    w_node = rel.weight
    if edge_rel["measurable"]:
        w_edge, edge_rel["source"] = float(edge_rel["weight"]), "measured"
    else:  # too few named neighbours with known labels to measure: borrow half the node reliability
        w_edge, edge_rel["source"] = 0.5 * w_node, "half the node reliability (edge reliability unmeasurable)"
    if trust_override is not None:
        w_node = w_edge = float(trust_override)
    report["trust"] = {"node": rel.as_dict(), "edges": edge_rel, "node_weight_used": round(w_node, 4),
                       "edge_weight_used": round(w_edge, 4), "override": trust_override}

    endpoint_dead = not verdicts and failures and set(failures) & (ENDPOINT_FAILURES | {"invalid"})
    if endpoint_dead or len(verdicts) < 0.25 * len(roles):
        kinds = ", ".join(f"{k}: {c}" for k, c in failures.most_common())
        return finish(r1, "endpoint_failed",
                      f"{len(verdicts)} of {len(roles)} nodes got a valid verdict ({kinds or 'no reply'}); "
                      f"trained without supervision")
    sig = build_signals(ds, split, r1.probs, thr, verdicts, roles, uses=uses, w_node=w_node, w_edge=w_edge,
                        given_y=y)
    report["signals"] = sig["counts"] | {"soft_weight": sig["soft_weight"]}
    if sig["soft_targets"] is None and sig["node_weight"] is None and sig["edge_weight"] is None:
        return finish(r1, "no_signal", f"nothing trusted: {rel.reason}; round 1 kept unchanged")
    r2 = train_model(ds, model_name, split, seed, progress=progress, node_weight=sig["node_weight"],
                     soft_targets=sig["soft_targets"], soft_weight=sig["soft_weight"],
                     edge_weight=sig["edge_weight"], **train_opts)
    report["round2"] = {"val": r2.metrics["val"], "test": r2.metrics["test"]}
    keep = r2
    if val_guard and r2.metrics["val"]["auprc"] < r1.metrics["val"]["auprc"]:
        keep = r1
        report["val_guard"] = "round 2 lost validation AUPRC; round 1 kept"
    return finish(keep, "applied", "verdicts trusted and used in round 2" +
                  ("" if keep is r2 else " (round 1 kept by the validation guard)"))


def run_seeds_supervised(ds: Any, model_name: str, setting: str, seeds: int | list[int], *, budget: int,
                         uses: set[str] | str | None, gateway: Any, progress: bool = False,
                         **train_opts: Any) -> tuple[dict, Any]:
    """:func:`fraud.train.run_seeds` with the supervisor: same summary format plus ``"supervisor"``
    (one compact report per seed). ``gateway``: a Gateway, None, or a zero-argument factory; a factory
    that raises (no local model, bad config) means no supervision, reported per seed."""
    from fraud.models import canonical_name
    from fraud.splits import make_split
    from fraud.train import summarize

    if callable(gateway) and not hasattr(gateway, "structured"):
        try:
            gateway = gateway()
        except Exception as exc:  # no endpoint -> train without supervision, say so
            gateway, why = None, f"{type(exc).__name__}: {exc}"
        else:
            why = None
    else:
        why = None
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("need at least one seed")
    per_seed, reports, kept = [], [], None
    for s in seed_list:
        split = make_split(ds, setting, s)
        res, rep = train_supervised(ds, model_name, split, s, budget=budget, uses=uses, gateway=gateway,
                                    progress=progress, **train_opts)
        if why and gateway is None:
            rep["reason"] = f"{rep['reason']} ({why})"
        reports.append({"seed": s, **supervisor_summary(rep)})
        per_seed.append({"seed": s, **res.metrics})
        if kept is None or res.metrics["val"]["auprc"] > kept.metrics["val"]["auprc"]:
            kept = res
    summary = {"dataset": ds.name, "model": canonical_name(model_name), "setting": setting, "seeds": seed_list,
               "per_seed": per_seed, **summarize(per_seed), "kept_seed": kept.config["seed"],
               "supervisor": reports}
    return summary, kept


def supervisor_summary(report: dict) -> dict:
    """A compact, JSON-able view of a supervisor report for run records and `--json` output."""
    # round1 = the same GNN, seed and split without the supervisor: the side-by-side baseline.
    keys = ("status", "reason", "supervised", "uses", "budget", "plan", "llm", "trust", "signals", "val_guard",
            "seconds", "round1", "round2")
    return {k: report[k] for k in keys if k in report}


__all__ = ["USES", "parse_uses", "ask", "build_signals", "train_supervised", "run_seeds_supervised",
           "supervisor_summary"]
