"""GraphSAGE with a weighted-mean aggregator, separate self/neighbour weights and jumping knowledge.

Separate root and neighbour weights plus concatenating every layer's output ([h0, h1, h2]) keeps a node's
own signal apart from its neighbourhood's, which matters on heterophilous fraud graphs.
"""

from __future__ import annotations

import torch
from torch import nn

from fraud.models.detector import GraphModule
from fraud.models.graph_ops import GraphOps, spmm


class SAGE(GraphModule):
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
        return torch.cat(self._layers(x, g), 1)

    def _layers(self, x: torch.Tensor, g: GraphOps) -> list[torch.Tensor]:
        a = g.mean_adj()
        h = torch.relu(self.inp(x))
        outs = [h]
        for ls, ln in zip(self.self_lin, self.nb_lin):
            h = self.drop(torch.relu(ls(h) + ln(spmm(a, h))))
            outs.append(h)
        return outs

    def forward(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        if torch.is_grad_enabled() or self.training:
            return self.head(self.embed(x, g)).squeeze(-1)
        return self._infer(x, g)

    def _infer(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        """Eval forward without autograd, same maths as ``head(embed(x))`` in fewer memory passes: the
        head's first layer is applied block by block (no (N, (layers+1)*H) concatenation), products write
        into their outputs (``addmm``/``addmm_``), ReLUs run in place, one aggregation buffer is reused.
        Fresh 1M x 64 float tensors cost as much in page faults as the matmul itself."""
        a = g.mean_adj()
        hid = self.inp.out_features
        w0 = self.head[0].weight  # (H, (layers+1)*H)
        h = torch.addmm(self.inp.bias, x, self.inp.weight.t()).relu_()
        z = torch.addmm(self.head[0].bias, h, w0[:, :hid].t())
        agg = torch.empty_like(h)
        for i, (ls, ln) in enumerate(zip(self.self_lin, self.nb_lin)):
            a.matmul(h, out=agg)
            h = torch.addmm(ls.bias, h, ls.weight.t()).addmm_(agg, ln.weight.t()).relu_()
            z.addmm_(h, w0[:, (i + 1) * hid:(i + 2) * hid].t())
        del agg, h
        return torch.addmm(self.head[2].bias, z.relu_(), self.head[2].weight.t()).squeeze(-1)
