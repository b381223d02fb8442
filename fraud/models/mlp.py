"""GADBench's MLP: the node's own features only; the graph is ignored (so ``edge_weight`` has nothing to
change). On graphs whose edges carry little signal (or camouflage) it is the baseline every GNN must beat.

Shapes: ``x`` (N,F) -> ``embed`` (N, hidden) -> ``head`` -> logits (N,).
"""

from __future__ import annotations

import torch
from torch import nn

from fraud.models.detector import GraphModule
from fraud.models.graph_ops import GraphOps

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "tanh": nn.Tanh}


class MLP(GraphModule):
    """``layers`` hidden blocks (Linear, activation, dropout) of width ``hidden``, then a linear head."""

    def __init__(self, in_dim: int, hidden: int = 64, layers: int = 2, dropout: float = 0.0,
                 activation: str = "relu", num_relations: int = 1) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        blocks: list[nn.Module] = []
        d = in_dim
        for _ in range(max(int(layers), 1)):
            blocks += [nn.Linear(d, hidden), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            d = hidden
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(hidden, 1)

    def embed(self, x: torch.Tensor, g: GraphOps | None = None) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor, g: GraphOps | None = None) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)
