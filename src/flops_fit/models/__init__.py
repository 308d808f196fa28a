"""Built-in models. Any ``nn.Module`` whose size is one integer constructor argument works too."""

from flops_fit.models.gpt import GPT
from flops_fit.models.mlp_lm import MLPLM

__all__ = ["GPT", "MLPLM"]
