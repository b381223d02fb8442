"""Sequence feature extractor for MaskablePPO: token embeddings -> LSTM -> the state after the last token.

Observation (B, L) holds token ids + 1 (0 = padding after the sequence). A learned BOS token is
prepended so the empty sequence has a state too; the features are the LSTM output at the last real
token (position = number of tokens, counting BOS at 0). Padding sits after the sequence, so the LSTM
output there is never read and no packing is needed.

Defaults (CPU-sized version of AlphaGen's 2-layer, d=128 LSTM): ``d_model=64``, 2 layers, dropout 0.
"""

from __future__ import annotations

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class TokenLSTMExtractor(BaseFeaturesExtractor):
    def __init__(self, observation_space: spaces.Box, n_tokens: int, d_model: int = 64, n_layers: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__(observation_space, features_dim=d_model)
        self.bos = n_tokens + 1
        self.embed = nn.Embedding(n_tokens + 2, d_model, padding_idx=0)
        self.lstm = nn.LSTM(d_model, d_model, num_layers=n_layers, batch_first=True,
                            dropout=dropout if n_layers > 1 else 0.0)
        self.out = nn.LayerNorm(d_model)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        ids = obs.long()  # (B, L)
        b = ids.shape[0]
        ids = torch.cat([torch.full((b, 1), self.bos, dtype=torch.long, device=ids.device), ids], 1)
        length = (ids[:, 1:] > 0).sum(1)  # (B,)
        ids = ids[:, :int(length.max()) + 1]  # positions after the longest sequence are never read
        h, _ = self.lstm(self.embed(ids))  # (B, L+1, d)
        last = h[torch.arange(b, device=ids.device), length]  # (B, d)
        return self.out(last)
