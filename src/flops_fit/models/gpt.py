"""The default model: a small, readable GPT decoder whose size is one integer, ``width``.

Shape rule (one integer in, a whole architecture out):

* ``width`` (d_model) must be a multiple of ``head_dim``; heads = width // head_dim;
* layers = max(min_layers, width // width_per_layer)  — depth grows with width, so N grows
  ~ width^3 (N_non_embedding = 12 * layers * width^2 ≈ 12/width_per_layer * width^3).

Why at least two layers: a one-layer transformer cannot form induction heads (attention that
copies what followed an earlier occurrence of the current token), so one- and two-layer models
are different families with different scaling laws. With one-layer models in the sweep the
fit was made mostly on them and under-predicted what the (two-layer) optimum at 4x the budget
reached by 11% (`flops-fit validate`); every size now has two layers or more.

Why width and not depth: at CPU scale the compute-optimal models have 10^4-10^6 parameters.
With depth as the size (width = 64*depth) consecutive sizes differ 3-8x in N, too coarse to
put five sizes around an optimum; stepping the width by one head (16) gives 1.3-2x steps.

Weight tying: the output head shares the token embedding (as in GPT-2 / nanoGPT). At byte
level (vocab 256) this halves the embedding cost of the smallest models and trains as well.
Initialisation follows GPT-2: N(0, 0.02), residual projections scaled by 1/sqrt(2*layers).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape  # batch, time, width
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, C)
        # (B, T, C) -> (B, n_head, T, head_dim)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, n_head, T, head_dim)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 4 * width, bias=False)
        self.proj = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))  # (B, T, 4C) inside


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, n_head: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, bias=False)
        self.attn = CausalSelfAttention(width, n_head)
        self.ln_2 = nn.LayerNorm(width, bias=False)
        self.mlp = MLP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer. ``forward(idx (B, T) int64) -> logits (B, T, vocab_size)``."""

    def __init__(
        self,
        width: int = 64,
        vocab_size: int = 256,
        seq_len: int = 128,
        head_dim: int = 16,
        width_per_layer: int = 32,
        min_layers: int = 2,
    ) -> None:
        super().__init__()
        if width < head_dim or width % head_dim:
            raise ValueError(f"width={width} must be a positive multiple of head_dim={head_dim}")
        self.width = width
        self.seq_len = seq_len
        self.n_layer = max(min_layers, width // width_per_layer)
        n_head = width // head_dim
        self.wte = nn.Embedding(vocab_size, width)  # token embedding, tied with the head
        self.wpe = nn.Embedding(seq_len, width)  # learned positions
        self.blocks = nn.ModuleList(Block(width, n_head) for _ in range(self.n_layer))
        self.ln_f = nn.LayerNorm(width, bias=False)
        self.lm_head = nn.Linear(width, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # residual projections: GPT-2 scaled init
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def embedding_parameters(self) -> list[nn.Parameter]:
        """Parameters excluded from the non-embedding count (Kaplan's N)."""
        return [self.wte.weight, self.wpe.weight]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, vocab)
