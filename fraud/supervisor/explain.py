"""Why is a node flagged? Features and neighbours that drive the detector's score, plus an LLM rationale.

* Features: gradient x input on the node's normalised features (GNNs), or occlusion (feature set to
  the population mean, i.e. 0 after the z-score) for the tree model. Positive = pushes the score up.
* Neighbours: occlusion - the edges between the node and one neighbour get weight 0 and the node is
  re-scored; the change in the score's logit is that neighbour's contribution (exact for the model,
  not an approximation; logits, because probability changes vanish for scores near 0 or 1).
  Feature attributions are relative to the population mean (features are z-scored). At most ``max_neighbors`` neighbours are tested (highest-scoring first).
* LLM rationale (optional): the same subgraph prompt the supervisor uses (neighbours' labels from the
  graph file; the node's own label never shown), one verdict through the gateway. It is the model's
  opinion, not a measured fact - the measured reliability of the supervisor, when the detector was
  trained with one, is printed beside it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from fraud.supervisor.prompt import build_context, describe_node


def _inputs(loaded: Any, ds: Any, edge_weight: torch.Tensor | None = None):
    from fraud.models import GraphOps
    from fraud.train import apply_normalization

    x = apply_normalization(ds.data.x, loaded.normalization, source=ds.name)
    g = GraphOps(ds.data.edge_index, ds.num_nodes, edge_type=getattr(ds.data, "edge_type", None),
                 edge_weight=edge_weight, num_relations=len(ds.relations))
    return x, g


def _score(loaded: Any, x: torch.Tensor, g: Any) -> torch.Tensor:
    from fraud.baselines import TreeModel

    if isinstance(loaded.model, TreeModel):
        return torch.from_numpy(loaded.model.predict_proba(x, g)).float()
    with torch.no_grad():
        return torch.sigmoid(loaded.model(x, g))


def feature_attribution(loaded: Any, ds: Any, node: int, top: int = 5) -> list[dict]:
    """Top ``top`` features of ``node`` by |attribution| (logit units for GNNs, probability for trees)."""
    from fraud.baselines import TreeModel

    x, g = _inputs(loaded, ds)
    f = x.size(1)
    if isinstance(loaded.model, TreeModel):
        base = float(_score(loaded, x, g)[node])
        xs = x.clone()
        attr = torch.zeros(f)
        for j in range(f):
            xs[node, j] = 0.0
            attr[j] = base - float(_score(loaded, xs, g)[node])
            xs[node, j] = x[node, j]
        method = "occlusion"
    else:
        xg = x.clone().requires_grad_(True)
        loaded.model.eval()
        logit = loaded.model(xg, g)[node]
        (grad,) = torch.autograd.grad(logit, xg)
        attr = (grad[node] * x[node]).detach()
        method = "gradient_x_input"
    names = ds.feature_names or [f"f{j}" for j in range(f)]
    raw = ds.data.x[node]
    order = torch.argsort(attr.abs(), descending=True)[:top]
    return [{"feature": names[j], "value": round(float(raw[j]), 6), "attribution": round(float(attr[j]), 6),
             "method": method} for j in order.tolist()]


def _logit(p: float, eps: float = 1e-7) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


def neighbor_attribution(loaded: Any, ds: Any, node: int, *, top: int = 5, max_neighbors: int = 30) -> list[dict]:
    """Neighbours of ``node`` ranked by |score change when their edges to ``node`` are removed|."""
    x, g = _inputs(loaded, ds)
    base_probs = _score(loaded, x, g)
    base = float(base_probs[node])
    src, dst = ds.data.edge_index
    nb = torch.unique(torch.cat([dst[src == node], src[dst == node]]))
    nb = nb[nb != node]
    if nb.numel() == 0:
        return []
    nb = nb[torch.argsort(base_probs[nb], descending=True)][:max_neighbors]
    out = []
    for j in nb.tolist():
        w = torch.ones(src.numel())
        w[((src == node) & (dst == j)) | ((src == j) & (dst == node))] = 0.0
        xo, go = _inputs(loaded, ds, edge_weight=w)
        delta = _logit(base) - _logit(float(_score(loaded, xo, go)[node]))
        out.append({"node": ds.node_ids[j] if ds.node_ids else str(j), "index": j,
                    "score": round(float(base_probs[j]), 4), "contribution": round(delta, 6),
                    "label": int(ds.data.y[j])})
    out.sort(key=lambda d: -abs(d["contribution"]))
    return out[:top]


def llm_rationale(loaded: Any, ds: Any, node: int, gateway: Any, probs: torch.Tensor) -> dict:
    """One LLM verdict on ``node`` (dict with verdict fields, or ``{"error": ...}``); never raises."""
    from fraud.baselines import TreeModel
    from fraud.supervisor.verdict import FraudVerdict, clean_neighbors

    emb = None
    if not isinstance(loaded.model, TreeModel):
        x, g = _inputs(loaded, ds)
        with torch.no_grad():
            emb = loaded.model.embed(x, g)
    known = ds.data.y.clone()  # labels from the file; the target's own label is never printed
    ctx = build_context(ds.data.x, ds.data.edge_index, known, probs, threshold=loaded.threshold, embeddings=emb,
                        edge_type=getattr(ds.data, "edge_type", None), relations=ds.relations,
                        feature_names=ds.feature_names)
    prompt = describe_node(ctx, node, token_budget=250, max_features=6, max_neighbors=4, max_examples=2)
    try:
        res = gateway.structured("fraud_verdict", {"description": prompt.text, "dataset": ds.name}, FraudVerdict,
                                 max_tokens=120, max_repairs=1)
    except Exception as exc:  # the explanation must still print without the LLM
        return {"error": f"{type(exc).__name__}: {exc}"}
    if not res:
        return {"error": f"{res.kind}: {res.message}"}
    v = res.value
    named, _ = clean_neighbors(v, prompt.shown_neighbors)
    return {"label": v.label, "fraud_probability": v.fraud_probability, "confidence": v.confidence,
            "rationale": v.rationale, "suspicious_neighbors": [ds.node_ids[i] if ds.node_ids else str(i) for i in named],
            "cached": res.cached}


def explain_node(loaded: Any, ds: Any, node: int, *, gateway: Any = None, top: int = 5,
                 max_neighbors: int = 30) -> dict:
    """Everything `finllm fraud explain` prints, as a JSON-able dict."""
    x, g = _inputs(loaded, ds)
    probs = _score(loaded, x, g)
    out = {"model": loaded.id, "node": ds.node_ids[node] if ds.node_ids else str(node), "index": int(node),
           "score": round(float(probs[node]), 6), "threshold": loaded.threshold,
           "flagged": bool(float(probs[node]) >= loaded.threshold),
           "rank": int((probs > probs[node]).sum()) + 1, "nodes": ds.num_nodes,
           "features": feature_attribution(loaded, ds, node, top=top),
           "neighbors": neighbor_attribution(loaded, ds, node, top=top, max_neighbors=max_neighbors)}
    sup = (loaded.config or {}).get("supervisor")
    if sup:
        out["supervisor_trust"] = sup.get("trust", {}).get("node", {}).get("weight")
    if gateway is not None:
        out["llm"] = llm_rationale(loaded, ds, node, gateway, probs)
    return out


def explanation_text(e: dict) -> str:
    """A short, plain-language explanation (what alerts store)."""
    up = [f["feature"] for f in e["features"] if f["attribution"] > 0][:3]
    down = [f["feature"] for f in e["features"] if f["attribution"] < 0][:2]
    parts = [f"score {e['score']:.3f} (threshold {e['threshold']:.3f}, rank {e['rank']} of {e['nodes']})"]
    if up:
        parts.append("raised by features " + ", ".join(up))
    if down:
        parts.append("lowered by " + ", ".join(down))
    nb = [n for n in e["neighbors"] if abs(n["contribution"]) > 1e-4][:3]
    if nb:
        parts.append("neighbours " + ", ".join(f"{n['node']} ({n['contribution']:+.3f})" for n in nb))
    llm = e.get("llm")
    if llm and "rationale" in llm:
        parts.append(f"LLM ({llm['label']}, p={llm['fraud_probability']:.2f}): {llm['rationale']}")
    return "; ".join(parts)


def explain_alerts(loaded: Any, ds: Any, nodes: list[int], *, gateway: Any = None, llm_budget: int = 0,
                   max_neighbors: int = 10) -> dict[int, str]:
    """Explanations for alert ``nodes`` (highest rank first); only the first ``llm_budget`` get an LLM
    rationale. Returns {node index: text}."""
    out = {}
    for i, node in enumerate(nodes):
        e = explain_node(loaded, ds, node, gateway=gateway if i < llm_budget else None, top=3,
                         max_neighbors=max_neighbors)
        out[int(node)] = explanation_text(e)
    return out
