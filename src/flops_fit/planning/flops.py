"""Parameter and FLOP counting for any ``nn.Module``, on the meta device (no memory, no weights).

* ``count_params`` — total N and non-embedding N (Kaplan's convention). Tied weights count once.
  Embedding parameters are those the model names in ``embedding_parameters()`` if it has that
  method, else the weights of its ``nn.Embedding`` modules.
* ``measure_flops_per_token`` — training FLOPs (forward + backward) per token, measured once per
  shape with ``torch.utils.flop_counter.FlopCounterMode`` on meta tensors. It counts matrix
  multiplies and attention (the dense T x T product, as Chinchilla does), not element-wise ops.
  6N is stored beside it, so a fit can use either convention.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from flops_fit.errors import FlopsFitError


@dataclass(frozen=True)
class ModelCount:
    """Counts for one model shape. FLOPs are per token of training (forward + backward)."""

    num_params: int
    num_params_non_embedding: int
    flops_per_token: float  # measured by FlopCounterMode
    flops_per_token_6n: float  # 6 * num_params
    flops_method: str  # how flops_per_token was obtained

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_on_meta(model_cls: type[nn.Module], kwargs: dict[str, Any]) -> nn.Module:
    """Instantiate ``model_cls(**kwargs)`` on the meta device: shapes only, no memory."""
    with torch.device("meta"):
        return model_cls(**kwargs)


def _embedding_params(model: nn.Module) -> list[nn.Parameter]:
    if hasattr(model, "embedding_parameters"):
        return list(model.embedding_parameters())
    return [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]


def count_params_of(model: nn.Module) -> tuple[int, int]:
    """(total, non-embedding) parameter counts of a built model; shared tensors count once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() already de-duplicates tied weights
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    emb = sum(p.numel() for p in {id(p): p for p in _embedding_params(model)}.values())
    return total, total - emb


def _freeze(kwargs: dict[str, Any]) -> str:
    return json.dumps(kwargs, sort_keys=True, default=str)


@functools.lru_cache(maxsize=4096)
def _count_params_cached(model_cls: type[nn.Module], frozen: str) -> tuple[int, int]:
    return count_params_of(build_on_meta(model_cls, json.loads(frozen)))


def count_params(model_cls: type[nn.Module], kwargs: dict[str, Any]) -> tuple[int, int]:
    """(total N, non-embedding N) for ``model_cls(**kwargs)``, counted on the meta device."""
    return _count_params_cached(model_cls, _freeze(kwargs))


def default_example_input(model: nn.Module, kwargs: dict[str, Any]) -> torch.Tensor:
    """A (1, seq_len) int64 token tensor for language models that expose ``seq_len``."""
    seq_len = kwargs.get("seq_len", getattr(model, "seq_len", None))
    if seq_len is None:
        raise FlopsFitError(
            f"Cannot guess an input for {type(model).__name__}: give the model a seq_len "
            "argument or pass example_input (one sample, batch dimension included)."
        )
    return torch.zeros(1, int(seq_len), dtype=torch.long)


def _measure(model: nn.Module, example: torch.Tensor) -> float:
    """Total training FLOPs of one forward + backward on ``example`` (all tensors on meta)."""
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(example)
        out = out[0] if isinstance(out, (tuple, list)) else out
        out.float().sum().backward()
    return float(counter.get_total_flops())


@functools.lru_cache(maxsize=1024)
def _count_cached(
    model_cls: type[nn.Module], frozen: str, example_shape: tuple[int, ...] | None, dtype: str
) -> ModelCount:
    kwargs = json.loads(frozen)
    model = build_on_meta(model_cls, kwargs)
    total, non_emb = count_params_of(model)
    if example_shape is None:
        example = default_example_input(model, kwargs).to("meta")
    else:
        example = torch.zeros(example_shape, dtype=getattr(torch, dtype), device="meta")
    # tokens per batch: B * T for token inputs (B, T); B (one per sample) for anything else
    is_tokens = example.dim() > 1 and not example.dtype.is_floating_point
    tokens = example.shape[0] * (example.shape[1] if is_tokens else 1)
    try:
        flops = _measure(model, example) / tokens
        method = "torch.utils.flop_counter (meta device, forward+backward)"
    except Exception as exc:  # a model whose forward cannot run on meta: fall back, and say so
        flops = 6.0 * total
        method = f"6N fallback: flop counter failed ({type(exc).__name__}: {exc})"
    if not flops > 0:
        flops, method = 6.0 * total, "6N fallback: flop counter saw no matrix multiplies"
    return ModelCount(total, non_emb, flops, 6.0 * total, method)


def count_model(
    model_cls: type[nn.Module],
    kwargs: dict[str, Any],
    example_input: torch.Tensor | None = None,
) -> ModelCount:
    """Parameters and training FLOPs per token for ``model_cls(**kwargs)``.

    ``example_input`` is one batch of inputs: integer (B, T) token ids count B * T tokens,
    anything else counts one token per sample (B). Without it, language models with a
    ``seq_len`` get a (1, seq_len) token tensor.
    Cached per (class, kwargs, input shape): measured once per shape.
    """
    shape = None if example_input is None else tuple(example_input.shape)
    dtype = "long" if example_input is None else str(example_input.dtype).replace("torch.", "")
    return _count_cached(model_cls, _freeze(kwargs), shape, dtype)


def gpt_param_formula(
    width: int, vocab_size: int, seq_len: int, width_per_layer: int = 32, min_layers: int = 2
) -> tuple[int, int]:
    """Hand formula for the default GPT's (total, non-embedding) parameter counts.

    Per layer: qkv 3d^2 + proj d^2 + mlp 8d^2 + two LayerNorm weights 2d. Plus final LayerNorm
    d, token embedding V*d (tied with the head), positions T*d.
    """
    layers = max(min_layers, width // width_per_layer)
    non_emb = layers * (12 * width * width + 2 * width) + width
    return non_emb + vocab_size * width + seq_len * width, non_emb


def gpt_flops_formula(
    width: int, vocab_size: int, seq_len: int, width_per_layer: int = 32, min_layers: int = 2
) -> float:
    """Hand formula for the default GPT's training FLOPs per token (matmuls + attention).

    6 * (matmul weights: non-embedding minus norms, plus the tied head V*d) + 12 * L * T * d
    for the attention scores and the weighted sum (dense T x T, forward 4LTd, x3 for training).
    """
    layers = max(min_layers, width // width_per_layer)
    matmul_params = layers * 12 * width * width + vocab_size * width
    return 6.0 * matmul_params + 12.0 * layers * seq_len * width
