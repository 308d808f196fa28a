"""Models for the bad-input tests, importable as ``helpers.models.X`` with PYTHONPATH=tests."""

from __future__ import annotations

import torch

from flops_fit.models.gpt import GPT

BROKEN_WIDTH = 32


class BrokenGPT(GPT):
    """The default GPT, except that ``forward`` raises for width 32 on real tensors.

    Planning (parameter and FLOP counting on the meta device) works; training the width-32 run
    fails, so that run is recorded ``failed`` while the rest of the sweep goes on.
    """

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if self.width == BROKEN_WIDTH and idx.device.type != "meta":
            raise RuntimeError(f"BrokenGPT refuses to run at width {BROKEN_WIDTH}")
        return super().forward(idx)


class BracketGPT(GPT):
    """The default GPT whose ``forward`` always fails with a message full of square brackets."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.device.type != "meta":
            raise RuntimeError("[red]shape[/red] [4, 8] unexpected pos [/z]")
        return super().forward(idx)


class HeadsGPT(torch.nn.Module):
    """A width-sized GPT with a fixed number of heads, as users write them (nanoGPT-style).

    ``n_embd`` is the size; the attention splits it into ``n_head`` heads, so only multiples of
    ``n_head`` work. Nothing checks that in ``__init__``: an ``n_embd`` that is not a multiple
    builds, and its forward fails (a view to ``n_embd / n_head`` per head), on the meta device as
    on real tensors. Two layers at every size.
    """

    def __init__(self, n_embd: int, n_head: int = 4, n_layer: int = 2, vocab_size: int = 256,
                 seq_len: int = 128) -> None:
        super().__init__()
        nn = torch.nn
        self.n_embd, self.n_head, self.seq_len = n_embd, n_head, seq_len
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(seq_len, n_embd)
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "ln1": nn.LayerNorm(n_embd), "qkv": nn.Linear(n_embd, 3 * n_embd),
            "proj": nn.Linear(n_embd, n_embd), "ln2": nn.LayerNorm(n_embd),
            "fc": nn.Linear(n_embd, 4 * n_embd), "out": nn.Linear(4 * n_embd, n_embd)})
            for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        hd = self.n_embd // self.n_head
        for b in self.blocks:
            q, k, v = b["qkv"](b["ln1"](x)).split(self.n_embd, dim=2)
            q, k, v = (t.view(B, T, self.n_head, hd).transpose(1, 2) for t in (q, k, v))
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + b["proj"](y.transpose(1, 2).reshape(B, T, self.n_embd))
            x = x + b["out"](torch.nn.functional.gelu(b["fc"](b["ln2"](x))))
        return self.head(self.ln_f(x))


class MetaShyGPT(GPT):
    """The default GPT whose forward cannot run on the meta device (as a model that reads a
    tensor's values would): the flop counter fails at every size, so FLOPs fall back to 6N."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.device.type == "meta":
            raise RuntimeError("this forward reads token values")
        return super().forward(idx)
