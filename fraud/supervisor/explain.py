"""Why does the detector score a node as it does? Its own evidence first, rendered by code.

* Decision: score, threshold, flagged or not, rank - the detector's, never the LLM's.
* Features: gradient x input on the node's normalised features (GNNs), or occlusion (feature set to
  the population mean, i.e. 0 after the z-score) for the tree model. Positive = pushes the score up.
* Neighbours: occlusion - the edges between the node and one neighbour get weight 0 and the node is
  re-scored; the change in the score's logit is that neighbour's contribution (exact for the model,
  not an approximation; logits, because probability changes vanish for scores near 0 or 1).
  Feature attributions are relative to the population mean (features are z-scored). At most ``max_neighbors`` neighbours are tested (highest-scoring first).
* The explanation text is sentences over this evidence as flat facts (:func:`evidence_facts`), each
  citing its keys, every number inserted by code. An LLM may add phrasings under the narrative rule
  (:func:`finllm.grounding.check.check_sentence`) and may not state a verdict in its own words.
* LLM verdict (optional): the supervisor's subgraph prompt (neighbours' labels from the graph file; the
  node's own label never shown). It is shown only beside its measured reliability (the trained model's
  supervisor record, else "unmeasured"), and one that contradicts the detector's flag is reported as a
  disagreement, never as the explanation.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import torch

from finllm.grounding.facts import FactValue, fmt_fact
from finllm.grounding.check import PLACEHOLDER, SentenceCheck, check_sentence
from fraud.supervisor.prompt import build_context, describe_node

if TYPE_CHECKING:
    from finllm.llm.client import Gateway
    from fraud.artifacts import LoadedModel
    from fraud.datasets import GraphDataset
    from fraud.models.graph_ops import GraphOps

PHRASE_TEMPLATE = "explain_alert"


def _inputs(loaded: LoadedModel, ds: GraphDataset,
            edge_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, GraphOps]:
    from fraud.models import GraphOps
    from fraud.train import apply_normalization

    x = apply_normalization(ds.data.x, loaded.normalization, source=ds.name)
    g = GraphOps(ds.data.edge_index, ds.num_nodes, edge_type=getattr(ds.data, "edge_type", None),
                 edge_weight=edge_weight, num_relations=len(ds.relations))
    return x, g


def _score(loaded: LoadedModel, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
    return torch.from_numpy(loaded.model.predict_proba(x, g)).float()


def feature_attribution(loaded: LoadedModel, ds: GraphDataset, node: int, top: int = 5) -> list[dict]:
    """Top ``top`` features of ``node`` by |attribution| (gradient x input in logit units for a
    differentiable detector, occlusion in probability for trees and ensembles)."""
    x, g = _inputs(loaded, ds)
    f = x.size(1)
    if not loaded.model.differentiable:
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


def neighbor_attribution(loaded: LoadedModel, ds: GraphDataset, node: int, *, top: int = 5, max_neighbors: int = 30) -> list[dict]:
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


def llm_rationale(loaded: LoadedModel, ds: GraphDataset, node: int, gateway: Gateway, probs: torch.Tensor) -> dict[str, Any]:
    """One LLM verdict on ``node`` (dict with verdict fields, or ``{"error": ...}``); never raises."""
    from fraud.supervisor.verdict import FraudVerdict, clean_neighbors

    emb = None
    if loaded.model.differentiable:  # learned embeddings (a tree's "embedding" is its raw feature table)
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


def reliability_of(loaded: LoadedModel) -> dict[str, Any] | str:
    """The measured reliability of the LLM's node verdicts for this detector (its supervisor's trust
    record: weight, AUROC, its lower bound, n), or ``"unmeasured"`` when it was trained without one."""
    node = ((loaded.config or {}).get("supervisor") or {}).get("trust", {}).get("node")
    if not isinstance(node, dict) or node.get("weight") is None:
        return "unmeasured"
    return {k: node.get(k) for k in ("weight", "auroc", "auroc_lower", "n_valid", "reason") if node.get(k) is not None}


def evidence_facts(e: dict[str, Any]) -> dict[str, FactValue]:
    """The detector's evidence on one node as flat facts (what explanation sentences may cite)."""
    facts: dict[str, FactValue] = {
        "node": str(e["node"]), "score": e["score"], "threshold": float(e["threshold"]),
        "decision": "flagged (at or above the threshold)" if e["flagged"] else "not flagged (below the threshold)",
        "rank": e["rank"], "nodes": e["nodes"], "score_minus_threshold": e["score"] - float(e["threshold"])}
    for i, f in enumerate(e["features"], 1):
        facts.update({f"feature_{i}_name": str(f["feature"]), f"feature_{i}_value": f["value"],
                      f"feature_{i}_attribution": f["attribution"]})
    for i, n in enumerate(e["neighbors"], 1):
        facts.update({f"neighbor_{i}_id": str(n["node"]), f"neighbor_{i}_contribution": n["contribution"],
                      f"neighbor_{i}_score": n["score"],
                      f"neighbor_{i}_label": {1: "fraud", 0: "normal"}.get(n["label"], "unlabelled")})
    return facts


def evidence_sentences(e: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The explanation written by code: the decision, then the features and neighbours that drive it."""
    out = [("Node {node} scores {score} against the threshold {threshold}: {decision}, rank {rank} of {nodes}.", [])]
    up = [i for i, f in enumerate(e["features"], 1) if f["attribution"] > 0][:3]
    down = [i for i, f in enumerate(e["features"], 1) if f["attribution"] < 0][:2]
    if up:
        out.append(("Features raising the score most: "
                    + ", ".join(f"{{feature_{i}_name}} ({{feature_{i}_attribution}})" for i in up) + ".", []))
    if down:
        out.append(("Features lowering it: "
                    + ", ".join(f"{{feature_{i}_name}} ({{feature_{i}_attribution}})" for i in down) + ".", []))
    nb = [i for i, n in enumerate(e["neighbors"], 1) if abs(n["contribution"]) > 1e-4][:3]
    if nb:
        out.append(("Neighbours whose link changes the score most (change in logit): " + ", ".join(
            f"{{neighbor_{i}_id}} ({{neighbor_{i}_contribution}}, {{neighbor_{i}_label}})" for i in nb) + ".", []))
    return out


# A verdict in the LLM's own words ("this account is fraudulent") is not its to give: {decision} says it.
_VERDICT_WORDS = re.compile(r"\b(fraud\w*|suspicious\w*|scam\w*|flag\w*|legit\w*|normal|benign|innocent|genuine|"
                            r"honest|safe|risky|malicious|anomal\w*)\b", re.I)
_SCORE_NOUNS = re.compile(r"\bfraud (?:score|probability|detector|model)\b", re.I)


def phrase_sentences(facts: dict[str, FactValue], gateway: Gateway,
                     max_tokens: int = 160) -> tuple[list[SentenceCheck], list[SentenceCheck]]:
    """(kept, dropped) LLM phrasings of the evidence, each checked like a narrative sentence and dropped
    when its own words state a verdict. One request, no repair round (see summary.llm_sentences)."""
    from finllm.grounding.cited import narrative_schema, salvage

    keys = list(facts)
    lines = "\n".join(f"{k} = {fmt_fact(k, facts[k])}" for k in keys)
    res = gateway.structured(PHRASE_TEMPLATE, {"facts": lines}, narrative_schema(keys), temperature=0.0,
                             max_tokens=max_tokens, max_repairs=0)
    raw = [(s.text, list(s.facts)) for s in res.value.sentences] if res else (
        salvage(res.raw) if res.kind == "invalid" else [])
    kept, dropped = [], []
    for template, cited in raw[:3]:
        c = check_sentence(template, cited, facts)
        own = _SCORE_NOUNS.sub(" ", PLACEHOLDER.sub(" ", c.template))
        if c.ok and _VERDICT_WORDS.search(own):
            c.text, c.reason = None, "states a verdict in its own words (the detector's decision is {decision})"
        (kept if c.ok else dropped).append(c)
    return kept, dropped


def verdict_view(verdict: dict[str, Any], flagged: bool, reliability: dict[str, Any] | str) -> dict[str, Any]:
    """The LLM verdict as it may be shown: with its measured reliability, and marked as a disagreement
    when it contradicts the detector's flag (the detector's decision stands)."""
    agrees = (verdict["label"] == "fraud") == flagged
    rel = ("unmeasured" if reliability == "unmeasured" else
           f"measured reliability weight {fmt_fact('w', float(reliability['weight']))}"
           + (f", AUROC {fmt_fact('a', float(reliability['auroc']))}" if reliability.get("auroc") is not None else "")
           + (f" on {reliability['n_valid']} validation nodes" if reliability.get("n_valid") else ""))
    detector = "flagged" if flagged else "not flagged"
    note = (f"An LLM verdict (reliability: {rel}) says {verdict['label']}, "
            + (f"agreeing with the detector ({detector})." if agrees else
               f"which disagrees with the detector ({detector}); the detector's decision stands."))
    return {**verdict, "agrees_with_detector": agrees, "reliability": reliability, "shown_as":
            "opinion" if agrees else "disagreement", "note": note}


def explain_node(loaded: LoadedModel, ds: GraphDataset, node: int, *, gateway: Gateway | None = None, top: int = 5,
                 max_neighbors: int = 30, phrase: bool = True, verdict: bool = True) -> dict[str, Any]:
    """Everything `finllm fraud explain` prints, as a JSON-able dict: ``score``, ``threshold``,
    ``flagged``, ``rank``, ``features``, ``neighbors``, ``evidence`` (flat facts), ``explanation``
    ({sentences: [{text, facts, source}], dropped}), ``text``; with a gateway, ``llm`` (the verdict
    view, :func:`verdict_view`; ``verdict``) and LLM phrasings (``phrase``) checked like narrative sentences."""
    x, g = _inputs(loaded, ds)
    probs = _score(loaded, x, g)
    e: dict[str, Any] = {
        "model": loaded.id, "node": ds.node_ids[node] if ds.node_ids else str(node), "index": int(node),
        "score": round(float(probs[node]), 6), "threshold": float(loaded.threshold),
        "flagged": bool(float(probs[node]) >= loaded.threshold),
        "rank": int((probs > probs[node]).sum()) + 1, "nodes": ds.num_nodes,
        "features": feature_attribution(loaded, ds, node, top=top),
        "neighbors": neighbor_attribution(loaded, ds, node, top=top, max_neighbors=max_neighbors),
        "reliability": reliability_of(loaded)}
    facts = evidence_facts(e)
    kept = [c for c in (check_sentence(t, k, facts) for t, k in evidence_sentences(e)) if c.ok]
    sentences = [{"text": c.text, "facts": c.facts, "source": "code"} for c in kept]
    dropped: list[dict[str, Any]] = []
    if gateway is not None:
        if verdict:
            said = llm_rationale(loaded, ds, node, gateway, probs)
            e["llm"] = verdict_view(said, e["flagged"], e["reliability"]) if "label" in said else said
        if phrase:
            good, bad = phrase_sentences(facts, gateway)
            sentences += [{"text": c.text, "facts": c.facts, "source": "llm"} for c in good]
            dropped = [{"template": c.template, "facts": c.facts, "reason": c.reason} for c in bad]
    e["evidence"] = facts
    e["explanation"] = {"sentences": sentences, "dropped": dropped}
    e["text"] = " ".join(s["text"] for s in sentences)
    return e


def explanation_text(e: dict[str, Any]) -> str:
    """What an alert stores: the evidence sentences, then the LLM verdict's note (reliability, agreement)
    when there is one - whole sentences only, never the LLM's own rationale."""
    llm = e.get("llm") or {}
    return " ".join([e["text"]] + ([llm["note"]] if "note" in llm else []))


LLM_PROBE = 3  # alerts on which the LLM must deliver once before a batch keeps asking it


def explain_alerts(loaded: LoadedModel, ds: GraphDataset, nodes: list[int], *, gateway: Gateway | None = None, llm_budget: int = 0,
                   max_neighbors: int = 10, probe: int = LLM_PROBE) -> dict[int, dict[str, Any]]:
    """Explanations (:func:`explain_node` dicts) for alert ``nodes`` (highest rank first); only the first
    ``llm_budget`` may get an LLM verdict and phrasing. Returns {node index: explanation}.

    The LLM is measured before it costs more: when none of its verdicts on the first ``probe`` alerts asked was
    usable, or none of its phrasings passed the check, the rest of the batch is not asked for that part; a
    detector whose supervisor measured the LLM's verdicts at weight 0 is never asked for one. An explanation
    that skipped a part says why (``llm_skipped``). The code's evidence sentences never depend on the LLM."""
    rel = reliability_of(loaded)
    no_signal = isinstance(rel, dict) and float(rel.get("weight") or 0.0) <= 0.0
    tries = {"verdict": [0, 0], "phrase": [0, 0]}  # part -> [alerts asked, alerts where it delivered]

    def stopped(part: str) -> bool:
        return tries[part][0] >= probe and tries[part][1] == 0

    out: dict[int, dict[str, Any]] = {}
    for i, node in enumerate(nodes):
        gw = gateway if i < llm_budget else None
        ask_verdict = gw is not None and not no_signal and not stopped("verdict")
        ask_phrase = gw is not None and not stopped("phrase")
        e = explain_node(loaded, ds, node, gateway=gw, top=3, max_neighbors=max_neighbors, verdict=ask_verdict,
                         phrase=ask_phrase)
        skipped = []
        if gw is not None and no_signal:
            skipped.append("verdict: the supervisor measured the LLM's verdicts on this detector at weight 0")
        elif gw is not None and not ask_verdict:
            skipped.append(f"verdict: none of the LLM's verdicts on the first {probe} alerts was usable")
        if gw is not None and not ask_phrase:
            skipped.append(f"phrasing: none of the LLM's phrasings on the first {probe} alerts passed the check")
        if skipped:
            e["llm_skipped"] = skipped
        if ask_verdict:
            tries["verdict"][0] += 1
            tries["verdict"][1] += "label" in (e.get("llm") or {})
        if ask_phrase:
            tries["phrase"][0] += 1
            tries["phrase"][1] += any(s["source"] == "llm" for s in e["explanation"]["sentences"])
        out[int(node)] = e
    return out
