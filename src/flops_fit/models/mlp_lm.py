"""A non-transformer language model, to show the model contract is generic.

Each position sees the embeddings of its last ``context`` tokens (causal, zero-padded on the
left), concatenated and passed through a two-layer MLP — Bengio et al. (2003) style. Its size
is one integer, ``hidden``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLPLM(nn.Module):
    """``forward(idx (B, T) int64) -> logits (B, T, vocab_size)``."""

    def __init__(
        self, hidden: int = 128, vocab_size: int = 256, embed_dim: int = 32, context: int = 8
    ) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden={hidden} must be positive")
        self.context = context
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.fc1 = nn.Linear(context * embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, vocab_size)

    def embedding_parameters(self) -> list[nn.Parameter]:
        return [self.embed.weight]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        e = self.embed(idx)  # (B, T, E)
        e = F.pad(e, (0, 0, self.context - 1, 0))  # (B, T + ctx - 1, E), causal left pad
        win = e.unfold(1, self.context, 1)  # (B, T, E, ctx): window ending at each position
        win = win.transpose(2, 3).reshape(B, T, -1)  # (B, T, ctx * E)
        h = F.gelu(self.fc1(win))
        h = F.gelu(self.fc2(h))
        return self.out(h)  # (B, T, vocab)
