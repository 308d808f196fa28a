"""A model of your own: an LSTM language model whose size is its hidden width.

flops-fit builds it as ``LSTMLM(vocab_size=..., hidden=h)`` for each size ``h`` it plans,
feeds it (B, T) token ids and expects (B, T, vocab_size) logits back.
"""

import torch
import torch.nn as nn


class LSTMLM(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, layers: int = 1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embed(idx))  # (B, T, hidden)
        return self.head(h)  # (B, T, vocab_size)
