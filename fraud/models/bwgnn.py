"""BWGNN-style spectral detector (Tang et al., ICML 2022, "Rethinking GNNs for anomaly detection").

Beta-wavelet band-pass filters on the normalised Laplacian L = I - D^-1/2 W D^-1/2 (weighted, so edge
weights are honoured): filter i of order d is
``W_i(L) = (L/2)^i (I - L/2)^(d-i) / B(i+1, d+1-i)``, expanded as a polynomial in L. Node features go
through an MLP, every filter is applied, the results are concatenated and classified.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.polynomial import polynomial as P
from torch import nn

from fraud.models.detector import GraphModule
from fraud.models.graph_ops import GraphOps, spmm


def beta_wavelet_coefficients(order: int) -> list[list[float]]:
    """Polynomial coefficients (ascending powers of L) of the ``order + 1`` Beta-wavelet filters."""
    out = []
    for i in range(order + 1):
        beta = math.gamma(i + 1) * math.gamma(order + 1 - i) / math.gamma(order + 2)
        poly = P.polymul(P.polypow([0.0, 0.5], i), P.polypow([1.0, -0.5], order - i)) / beta
        out.append([float(c) for c in np.pad(poly, (0, order + 1 - len(poly)))])
    return out


class BWGNN(GraphModule):
    """x (N,F) -> logits (N,); ``embed`` gives (N, (order+1)*hidden)."""

    def __init__(self, in_dim: int, hidden: int = 64, order: int = 2, dropout: float = 0.0,
                 num_relations: int = 1) -> None:
        super().__init__()
        self.theta = beta_wavelet_coefficients(order)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear((order + 1) * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def embed(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        s = g.sym_adj()
        h = self.mlp(x)
        powers = [h]  # L^k h, L h = h - S h
        for _ in range(len(self.theta) - 1):
            powers.append(powers[-1] - spmm(s, powers[-1]))
        outs = [sum(c * p for c, p in zip(coef, powers)) for coef in self.theta]
        return self.drop(torch.cat(outs, 1))

    def forward(self, x: torch.Tensor, g: GraphOps) -> torch.Tensor:
        return self.head(self.embed(x, g)).squeeze(-1)
