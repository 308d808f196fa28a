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
