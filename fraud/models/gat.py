"""Graph attention (GAT, Velickovic et al. 2018) with edge weights and a root (skip) connection.

Attention logits get ``log w_ij`` added, so the attention is proportional to ``w_ij * exp(e_ij)``:
weight 0 removes the edge exactly. The root term keeps the node's own features (heterophily).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter, softmax

from fraud.models.detector import GraphModule
from fraud.models.graph_ops import GraphOps


class GATLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, heads: int = 4) -> None:
        super().__init__()
        self.heads, self.out_dim = heads, out_dim
        self.lin = nn.Linear(in_dim, heads * out_dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(heads, out_dim))
        self.att_dst = nn.Parameter(torch.empty(heads, out_dim))
        self.root = nn.Linear(in_dim, heads * out_dim)
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
        n = x.size(0)
        h = self.lin(x).view(n, self.heads, self.out_dim)
        src, dst = edge_index
        e = F.leaky_relu((h * self.att_src).sum(-1)[src] + (h * self.att_dst).sum(-1)[dst], 0.2)
        alpha = softmax(e + log_w[:, None], dst, num_nodes=n)  # (E', heads)
        out = scatter(h[src] * alpha[..., None], dst, 0, dim_size=n, reduce="sum")
        return out.reshape(n, -1) + self.root(x)


class GAT(GraphModule):
    """x (N,F) -> logits (N,); ``embed`` gives (N, (layers+1)*hidden)."""

    def __init__(self, in_dim: int, hidden: int = 64, layers: int = 2, heads: int = 4, dropout: float = 0.1,
                 num_relations: int = 1) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.convs = nn.ModuleList(GATLayer(hidden, hidden // heads, heads) for _ in range(layers))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear((layers + 1) * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def embed(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        ei, log_w = g.weighted_edges()
        h = torch.relu(self.inp(x))
        outs = [h]
        for conv in self.convs:
            h = self.drop(F.elu(conv(h, ei, log_w)))
            outs.append(h)
        return torch.cat(outs, 1)

    def forward(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        return self.head(self.embed(x, g)).squeeze(-1)
