"""Relation-aware GNN for multi-relation graphs (R-GCN style, Schlichtkrull et al. 2018).

Each relation r (e.g. Amazon's U-P-U, U-S-U, U-V-U) gets its own weighted-mean aggregator and weight
matrix; a learned softmax gate over relations (per layer) lets the model down-weight a relation that
fraudsters camouflage through (the CARE-GNN observation). With one relation it reduces to a SAGE layer.
"""

from __future__ import annotations

import torch
from torch import nn

from fraud.models.detector import GraphModule
from fraud.models.graph_ops import GraphOps, spmm


class RGNN(GraphModule):
    """x (N,F) -> logits (N,); ``embed`` gives (N, (layers+1)*hidden)."""

    def __init__(self, in_dim: int, hidden: int = 64, layers: int = 2, dropout: float = 0.1,
                 num_relations: int = 1) -> None:
        super().__init__()
        self.num_relations = max(num_relations, 1)
        self.inp = nn.Linear(in_dim, hidden)
        self.self_lin = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.rel_lin = nn.ModuleList(
            nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(self.num_relations))
            for _ in range(layers))
        self.gate = nn.Parameter(torch.zeros(layers, self.num_relations))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear((layers + 1) * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def embed(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        rels = [g.mean_adj(r if self.num_relations > 1 else None) for r in range(self.num_relations)]
        h = torch.relu(self.inp(x))
        outs = [h]
        for layer, (ls, lr) in enumerate(zip(self.self_lin, self.rel_lin)):
            gate = torch.softmax(self.gate[layer], 0) * self.num_relations
            msg = sum(gate[r] * lr[r](spmm(a, h)) for r, a in enumerate(rels))
            h = self.drop(torch.relu(ls(h) + msg))
            outs.append(h)
        return torch.cat(outs, 1)

    def forward(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        return self.head(self.embed(x, g)).squeeze(-1)
