"""Subgraph -> bounded text description of one node for the LLM (DGP-style numeric summary).

What a prompt may show (and nothing else):
* the target's features, named when the dataset names them, always with their percentile in the
  population (percentiles are computed over all nodes' features — features carry no labels);
* its k-hop neighbourhood: counts per relation, the labels of neighbours that are **training**
  nodes (``known`` is built by :func:`train_label_view` from the training index only, so
  validation/test labels can never reach a prompt; the target's own label is never shown, even
  when it is a training node, so the LLM's view of a training label stays independent of it),
  aggregated neighbour statistics, the most similar and most dissimilar neighbours;
* the GNN's current score for the target (unless ``show_score=False``, as the supervisor asks) and for
  the neighbours shown;
* a few retrieved examples: the training nodes most similar to the target (by GNN embedding),
  with their training labels.

The description is pruned to ``token_budget`` (approximate tokens, see :func:`count_tokens`):
fewer examples, fewer neighbours (least similar/dissimilar first), fewer features, then a hard cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from scipy.stats import rankdata

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Approximate token count: words and punctuation marks (numbers split at the decimal point).

    BPE tokenisers give about the same count for this kind of numeric text; it is an estimate,
    used to keep prompts bounded, not a billing figure.
    """
    return len(_TOKEN.findall(text))


def train_label_view(y: torch.Tensor, train_idx: torch.Tensor) -> torch.Tensor:
    """Labels a prompt may reveal: ``y`` on ``train_idx``, -1 everywhere else. Shape (N,) long."""
    known = torch.full_like(y, -1, dtype=torch.long)
    idx = torch.as_tensor(train_idx, dtype=torch.long)
    known[idx] = y[idx].long()
    known[known < 0] = -1
    return known


@dataclass
class PromptContext:
    """Everything prompts are built from, precomputed once per graph (numpy, CPU).

    x (N,F) raw features; pct (N,F) population percentiles 0..100; adj: symmetric CSR adjacency
    whose data is a bitmask of the relations linking the pair; known (N,) training labels or -1; probs (N,) GNN scores;
    emb (N,H) unit-norm retrieval vectors; zfeat (N,F) centred percentiles for similarity.
    """

    x: np.ndarray
    pct: np.ndarray
    adj: sp.csr_matrix
    relations: list[str]
    known: np.ndarray
    probs: np.ndarray
    threshold: float
    emb: np.ndarray
    zfeat: np.ndarray
    feature_names: list[str] | None
    example_pool: np.ndarray  # indices of nodes with a known (training) label


@dataclass
class NodePrompt:
    node: int
    text: str
    tokens: int
    shown_neighbors: list[int] = field(default_factory=list)
    neighbor_labels: dict[int, int] = field(default_factory=dict)  # shown id -> training label or -1
    example_nodes: list[int] = field(default_factory=list)
    pruned: bool = False


def _unit(a: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(n > 0, n, 1.0)


def build_context(x: torch.Tensor, edge_index: torch.Tensor, known: torch.Tensor, probs: torch.Tensor,
                  *, threshold: float = 0.5, embeddings: torch.Tensor | None = None,
                  edge_type: torch.Tensor | None = None, relations: list[str] | None = None,
                  feature_names: list[str] | None = None) -> PromptContext:
    """Precompute percentiles, adjacency and retrieval vectors.

    ``known`` must come from :func:`train_label_view` (training labels only). Shapes: x (N,F),
    edge_index (2,E), known (N,), probs (N,), embeddings (N,H) or None, edge_type (E,) or None.
    """
    xn = x.detach().float().cpu().numpy()
    n, f = xn.shape
    xn = np.nan_to_num(xn, nan=0.0, posinf=0.0, neginf=0.0)
    pct = (rankdata(xn, method="average", axis=0) - 0.5) / n * 100.0 if n else np.zeros((0, f))
    ei = edge_index.detach().cpu().numpy()
    if edge_type is None:
        rel = np.zeros(ei.shape[1], dtype=np.int64)
        relations = list(relations or ["link"])[:1] or ["link"]
    else:
        rel = edge_type.detach().cpu().numpy().astype(np.int64)
        relations = list(relations or [f"r{i}" for i in range(int(rel.max(initial=0)) + 1)])
    src = np.concatenate([ei[0], ei[1]])
    dst = np.concatenate([ei[1], ei[0]])
    rr = np.concatenate([rel, rel])
    keep = src != dst
    src, dst, rr = src[keep], dst[keep], rr[keep]
    # One entry per (node, neighbour); data = bitmask of the relations linking them (bit r = relation r).
    bits = np.left_shift(np.int64(1), np.minimum(rr, 62))
    key = src.astype(np.int64) * n + dst
    order = np.argsort(key, kind="stable")
    key, bits = key[order], bits[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else np.zeros(0, dtype=np.int64)
    mask = np.bitwise_or.reduceat(bits, starts) if key.size else bits
    adj = sp.csr_matrix((mask, (key[starts] // n, key[starts] % n)), shape=(n, n))
    kn = known.detach().cpu().numpy().astype(np.int64)
    zfeat = _unit((pct - 50.0) / 50.0)
    emb = _unit(embeddings.detach().float().cpu().numpy()) if embeddings is not None else zfeat
    labelled = np.flatnonzero(kn >= 0)
    return PromptContext(x=xn, pct=pct, adj=adj, relations=relations, known=kn,
                         probs=probs.detach().float().cpu().numpy(), threshold=float(threshold), emb=emb,
                         zfeat=zfeat, feature_names=list(feature_names) if feature_names else None,
                         example_pool=labelled)


def _level(p: float) -> str:
    if p >= 95:
        return "very high"
    if p >= 80:
        return "high"
    if p <= 5:
        return "very low"
    if p <= 20:
        return "low"
    return "typical"


def _ord(p: float) -> str:
    """Percentile as an ordinal: 1st, 2nd, 3rd, 11th, 71st ..."""
    k = min(max(int(round(float(p))), 0), 100)
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _fname(ctx: PromptContext, j: int) -> str:
    if ctx.feature_names and j < len(ctx.feature_names):
        return str(ctx.feature_names[j])[:40]
    return f"f{j}"


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _lab(v: int) -> str:
    return {1: "fraud", 0: "normal"}.get(int(v), "unknown")


def _feature_lines(ctx: PromptContext, node: int, k: int) -> list[str]:
    dev = np.abs(ctx.pct[node] - 50.0)
    order = np.argsort(-dev, kind="stable")[:k]
    out = []
    for j in order:
        p = float(ctx.pct[node, j])
        val = f" = {_fmt(float(ctx.x[node, j]))}" if ctx.feature_names else ""
        out.append(f"- {_fname(ctx, j)}{val}: {_ord(p)} percentile ({_level(round(p))})")
    return out


def _short_features(ctx: PromptContext, node: int, k: int = 2) -> str:
    dev = np.abs(ctx.pct[node] - 50.0)
    order = np.argsort(-dev, kind="stable")[:k]
    return ", ".join(f"{_fname(ctx, j)} {_level(float(ctx.pct[node, j]))}" for j in order)


def neighbors(ctx: PromptContext, node: int) -> tuple[np.ndarray, np.ndarray]:
    """1-hop neighbour ids (sorted) and their relation bitmasks."""
    row = slice(ctx.adj.indptr[node], ctx.adj.indptr[node + 1])
    return ctx.adj.indices[row], ctx.adj.data[row].astype(np.int64)


def _rel_names(ctx: PromptContext, mask: int) -> str:
    return "+".join(r for i, r in enumerate(ctx.relations) if (int(mask) >> i) & 1) or "link"


def _two_hop(ctx: PromptContext, node: int, nb: np.ndarray, cap: int = 2000) -> np.ndarray:
    """2-hop ring (excluding the node and its 1-hop neighbours); neighbours beyond ``cap`` are sampled
    deterministically (the first ``cap`` by id) so very high-degree nodes stay cheap."""
    if nb.size == 0:
        return nb
    sub = ctx.adj[nb[:cap]]
    ring = np.unique(sub.indices)
    ring = ring[~np.isin(ring, nb)]
    return ring[ring != node]


def _retrieve(ctx: PromptContext, node: int, k: int) -> list[int]:
    """The ``k`` training nodes most similar to ``node``; if all share one class and k >= 2, the
    last slot goes to the most similar node of the other class (a contrasting example)."""
    pool = ctx.example_pool[ctx.example_pool != node]
    if k <= 0 or pool.size == 0:
        return []
    sims = ctx.emb[pool] @ ctx.emb[node]
    order = np.argsort(-sims, kind="stable")
    top = list(pool[order[:k]])
    labels = {int(ctx.known[i]) for i in top}
    if k >= 2 and len(labels) == 1:
        other = pool[order][ctx.known[pool[order]] != next(iter(labels))]
        if other.size:
            top[-1] = other[0]
    return [int(i) for i in top]


def _render(ctx: PromptContext, node: int, n_feat: int, n_nb: int, n_ex: int, diff: bool,
            hops: int, ring: np.ndarray, show_score: bool = True) -> tuple[str, list[int], dict[int, int], list[int]]:
    nb, rel = neighbors(ctx, node)
    pool = ctx.example_pool[ctx.example_pool != node]  # the target's own label never counts
    base = float((ctx.known[pool] == 1).mean()) if pool.size else float("nan")
    lines = [f"Target account n{node}"]
    if show_score:
        lines.append(f"GNN fraud score: {ctx.probs[node]:.3f} (alert threshold {ctx.threshold:.3f}; "
                     f"share of fraud among labelled training accounts: {base:.1%})")
    else:
        lines.append(f"Share of fraud among labelled training accounts: {base:.1%}")
    lines.append("Features (most unusual first, percentile among all accounts):")
    lines += _feature_lines(ctx, node, n_feat)
    lines.append("Neighbourhood:")
    per_rel = [int(((rel >> i) & 1).sum()) for i in range(len(ctx.relations))]
    rel_txt = ", ".join(f"{ctx.relations[i]}: {int(c)}" for i, c in enumerate(per_rel) if c)
    lines.append(f"- 1-hop: {nb.size} accounts" + (f" ({rel_txt})" if rel_txt else ""))
    kn1 = ctx.known[nb] if nb.size else np.zeros(0, int)
    lines.append(f"- known training labels among 1-hop: {int((kn1 == 1).sum())} fraud, "
                 f"{int((kn1 == 0).sum())} normal, {int((kn1 < 0).sum())} unknown")
    if hops >= 2:
        kn2 = ctx.known[ring] if ring.size else np.zeros(0, int)
        lines.append(f"- 2-hop: {ring.size} more accounts; known training labels: {int((kn2 == 1).sum())} "
                     f"fraud, {int((kn2 == 0).sum())} normal")
    shown: list[int] = []
    shown_labels: dict[int, int] = {}
    if nb.size:
        ps = ctx.probs[nb]
        lines.append(f"- neighbours' GNN score: mean {ps.mean():.3f}, max {ps.max():.3f}; "
                     f"{int((ps >= ctx.threshold).sum())} of {nb.size} above the alert threshold")
        if diff:
            med = np.median(ctx.pct[nb], axis=0)
            gap = ctx.pct[node] - med
            order = np.argsort(-np.abs(gap), kind="stable")[:3]
            txt = "; ".join(f"{_fname(ctx, j)} (target {_ord(ctx.pct[node, j])} vs neighbours' median "
                            f"{_ord(med[j])})" for j in order)
            lines.append(f"- target differs most from its neighbours on: {txt}")
        if n_nb > 0:
            sims = ctx.zfeat[nb] @ ctx.zfeat[node]
            order = np.argsort(-sims, kind="stable")
            n_sim = min((n_nb + 1) // 2, nb.size)
            most = list(order[:n_sim])
            least = [i for i in order[::-1] if i not in most][: min(n_nb // 2, max(nb.size - n_sim, 0))]
            for title, group in (("Most similar neighbours:", most), ("Most dissimilar neighbours:", least)):
                if not group:
                    continue
                lines.append(title)
                for i in group:
                    j = int(nb[i])
                    shown.append(j)
                    shown_labels[j] = int(ctx.known[j])
                    lines.append(f"- n{j} [{_rel_names(ctx, rel[i])}]: similarity {sims[i]:.2f}, GNN score "
                                 f"{ctx.probs[j]:.3f}, label {_lab(ctx.known[j])}")
    examples = _retrieve(ctx, node, n_ex)
    if examples:
        lines.append("Labelled training accounts similar to the target (examples):")
        for letter, e in zip("ABCDEFGH", examples):
            lines.append(f"- example {letter} ({_lab(ctx.known[e])}): GNN score {ctx.probs[e]:.3f}; "
                         f"{_short_features(ctx, e)}")
    return "\n".join(lines), shown, shown_labels, examples


def describe_compact(ctx: PromptContext, node: int, *, max_features: int = 4) -> NodePrompt:
    """A short description of ``node`` (about 50 tokens) for the supervisor's verdict calls: its most
    unusual features with population percentiles, its degree and its neighbours' *training* labels.
    No detector score (neither the target's nor the neighbours'): a verdict should be a second
    opinion, and prompt tokens dominate a small CPU model's time per call."""
    node = int(node)
    if not 0 <= node < ctx.x.shape[0]:
        raise IndexError(f"node {node} out of range 0..{ctx.x.shape[0] - 1}")
    dev = np.abs(ctx.pct[node] - 50.0)
    order = np.argsort(-dev, kind="stable")[: min(max_features, ctx.x.shape[1])]
    feats = "; ".join(f"{_fname(ctx, j)} {_ord(float(ctx.pct[node, j]))} pct" for j in order)
    nb, _ = neighbors(ctx, node)
    kn = ctx.known[nb] if nb.size else np.zeros(0, int)
    text = (f"Target account n{node}\nFeatures (percentile among all accounts): {feats}\n"
            f"Neighbours: {nb.size}; of them labelled fraud {int((kn == 1).sum())}, normal {int((kn == 0).sum())}")
    return NodePrompt(node, text, count_tokens(text))


def describe_node(ctx: PromptContext, node: int, *, token_budget: int = 600, max_features: int = 8,
                  max_neighbors: int = 6, max_examples: int = 3, hops: int = 2, show_score: bool = True) -> NodePrompt:
    """Describe ``node`` in at most ``token_budget`` approximate tokens (pruning as needed).

    ``show_score=False`` leaves out the target's own GNN score (the supervisor asks for a second
    opinion, and a verdict that repeats the score adds nothing)."""
    node = int(node)
    if not 0 <= node < ctx.x.shape[0]:
        raise IndexError(f"node {node} out of range 0..{ctx.x.shape[0] - 1}")
    n_feat, n_nb, n_ex, diff = min(max_features, ctx.x.shape[1]), max_neighbors, max_examples, True
    pruned = False
    ring = _two_hop(ctx, node, neighbors(ctx, node)[0]) if hops >= 2 else np.zeros(0, dtype=np.int64)
    while True:
        text, shown, labels, ex = _render(ctx, node, n_feat, n_nb, n_ex, diff, hops, ring, show_score)
        tokens = count_tokens(text)
        if tokens <= token_budget:
            return NodePrompt(node, text, tokens, shown, labels, ex, pruned)
        pruned = True
        # Pruning order: examples, then neighbours (the extremes survive longest), then features.
        if n_ex > 1:
            n_ex -= 1
        elif n_nb > 2:
            n_nb -= 1
        elif diff:
            diff = False
        elif n_feat > 3:
            n_feat -= 1
        elif n_ex > 0:
            n_ex = 0
        elif n_nb > 0:
            n_nb -= 1
        else:
            break
    # Still too long (absurd feature/relation names): cut at the budget.
    parts = _TOKEN.finditer(text)
    end = len(text)
    for i, m in enumerate(parts):
        if i == token_budget:
            end = m.start()
            break
    text = text[:end].rstrip()
    kept = [j for j in shown if f"n{j} " in text]
    return NodePrompt(node, text, count_tokens(text), kept, {j: labels[j] for j in kept},
                      [e for e in ex], True)
