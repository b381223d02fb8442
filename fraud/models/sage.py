"""GraphSAGE with a weighted-mean aggregator, separate self/neighbour weights and jumping knowledge.

Separate root and neighbour weights plus concatenating every layer's output ([h0, h1, h2]) keeps a node's
own signal apart from its neighbourhood's, which matters on heterophilous fraud graphs.
"""

from __future__ import annotations

import torch
from torch import nn

from fraud.models.graph_ops import GraphOps, spmm


class SAGE(nn.Module):
    """x (N,F) -> logits (N,); ``embed`` gives (N, (layers+1)*hidden)."""

    def __init__(self, in_dim: int, hidden: int = 64, layers: int = 2, dropout: float = 0.1,
                 num_relations: int = 1) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.self_lin = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.nb_lin = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(layers))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear((layers + 1) * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def embed(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        a = g.mean_adj()
        h = torch.relu(self.inp(x))
        outs = [h]
        for ls, ln in zip(self.self_lin, self.nb_lin):
            h = self.drop(torch.relu(ls(h) + ln(spmm(a, h))))
            outs.append(h)
        return torch.cat(outs, 1)

    def forward(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        return self.head(self.embed(x, g)).squeeze(-1)
