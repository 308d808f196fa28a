"""Two GPTs of your own, as people write them (nanoGPT-style), each sized by one integer.

* ``DepthGPT``: the size is the number of layers, ``n_layer``; the width is fixed. Consecutive
  sizes differ by a whole layer, so at small budgets the smallest model (one layer) may
  already be larger than the compute-optimal one: flops-fit then says to raise the budgets
  (lowering size_min cannot help).
* ``HeadsGPT``: the size is the width, ``n_embd``, split into a fixed number of heads; only
  multiples of ``n_head`` build (the constructor asserts it, as nanoGPT does). A size range
  with other values is checked before the sweep: those sizes are named in one line and left
  out.

flops-fit builds each as ``Model(**model.kwargs, seq_len=..., vocab_size=..., <size>=s)``
(``seq_len`` and the dataset's ``vocab_size`` are passed when the constructor names them and
the kwargs leave them out), feeds it (B, T) token ids and expects (B, T, vocab_size) logits
back.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        assert n_embd % n_head == 0, f"n_embd={n_embd} is not a multiple of n_head={n_head}"
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(),
                                 nn.Linear(4 * n_embd, n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, seq_len: int, n_layer: int, n_embd: int, n_head: int):
        super().__init__()
        self.seq_len = seq_len
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(seq_len, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.wte.weight  # tied, as in GPT-2

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))  # (B, T, vocab_size)


class DepthGPT(GPT):
    """Sized by depth: ``n_layer`` layers of a fixed width."""

    def __init__(self, vocab_size: int, seq_len: int, n_layer: int, n_embd: int = 16,
                 n_head: int = 2):
        super().__init__(vocab_size, seq_len, n_layer, n_embd, n_head)


class HeadsGPT(GPT):
    """Sized by width: ``n_embd`` split into ``n_head`` heads, ``n_layer`` layers."""

    def __init__(self, vocab_size: int, seq_len: int, n_embd: int, n_head: int = 4,
                 n_layer: int = 2):
        super().__init__(vocab_size, seq_len, n_layer, n_embd, n_head)
