"""A user's model whose best learning rate is the default GPT's divided by a known factor.

``ScaledGPT`` stores every weight as theta = w / SCALE and uses w = SCALE * theta in the
forward pass: at initialisation it is the default GPT (same function, same parameter count).
AdamW's update of theta is invariant to the scale of its gradient (up to eps), so a step of
``lr`` on theta moves w by ``SCALE * lr``: the run at peak LR ``lr`` is the GPT's run at
``SCALE * lr``. The best LR is the GPT's / SCALE, exactly, when gradient clipping is off (a
clip rescales gradients by a factor that varies from step to step, which AdamW does not undo)
and weight decay is 0 (it acts on theta, not w).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.func import functional_call

from flops_fit.models.gpt import GPT

SCALE = 4.0


class ScaledGPT(nn.Module):
    """The default GPT with weights stored divided by ``scale`` (best LR / scale): at
    ``scale=1/k`` its best LR is ``k`` times the GPT's (``model.kwargs.scale``)."""

    def __init__(self, width: int = 64, scale: float = SCALE, **kwargs) -> None:
        super().__init__()
        self.inner = GPT(width=width, **kwargs)
        self.seq_len = self.inner.seq_len
        self.scale = float(scale)
        with torch.no_grad():
            for p in self.inner.parameters():
                p.div_(self.scale)

    def embedding_parameters(self) -> list[nn.Parameter]:
        return self.inner.embedding_parameters()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        weights = {n: p * self.scale for n, p in self.inner.named_parameters()}
        return functional_call(self.inner, weights, (idx,))
