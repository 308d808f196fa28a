"""Parameter and FLOP counting for any ``nn.Module``, on the meta device (no memory, no weights).

* ``count_params`` — total N and non-embedding N (Kaplan's convention). Tied weights count once.
  Embedding parameters are those the model names in ``embedding_parameters()`` if it has that
  method, else the weights of its ``nn.Embedding`` modules.
* ``measure_flops_per_token`` — training FLOPs (forward + backward) per token, measured once per
  shape with ``torch.utils.flop_counter.FlopCounterMode`` on meta tensors. It counts matrix
  multiplies and attention (the dense T x T product, as Chinchilla does), not element-wise ops.
  6N is stored beside it, so a fit can use either convention.
* ``check_sizes`` — every candidate size built and counted before a sweep: the sizes that
  cannot be built (constructor or forward fails at that size), and a 6N fallback's cause.
"""

from __future__ import annotations

import functools
import json
import math
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


#: how :func:`count_model` marks a forward that failed on meta
_COUNTER_FAILED = "6N fallback: flop counter failed"


@dataclass
class SizeCheck:
    """Every candidate size built and counted on the meta device (:func:`check_sizes`)."""

    size_param: str
    valid: list[int]  # buildable sizes, ascending
    n_total: list[int]  # their N
    dropped: list[tuple[int, str]]  # (size, why it cannot be built)
    fallback: str = ""  # the 6N fallback's cause when no size's FLOPs could be measured
    multiple: int = 1  # every buildable size is a multiple of this (and no dropped one is)
    complete: bool = True  # every size was looked at (the walk did not stop at a cap)

    def dropped_reason(self) -> str:
        """Why sizes were dropped, with the fix when they share a divisor ('' if none)."""
        if not self.dropped:
            return ""
        size, why = self.dropped[0]
        fix = (f"every {self.size_param} that builds is a multiple of {self.multiple}, so give "
               f"a size range of multiples of {self.multiple} (model.size_min, size_max and "
               f"size_step={self.multiple})" if self.multiple > 1
               else "check the model kwargs and size range")
        return f"{self.size_param}={size}: {why}; {fix}"

    def lines(self) -> list[str]:
        """The console lines: one for the dropped sizes, one for a 6N fallback."""
        out = []
        if self.dropped:
            names = [str(s) for s, _ in self.dropped]
            shown = ", ".join(names[:8]) + (f", … {names[-1]}" if len(names) > 8 else "")
            last = max(self.valid + [s for s, _ in self.dropped])
            out.append(f"{len(self.dropped)} of the {len(self.dropped) + len(self.valid)} "
                       f"candidate sizes up to {self.size_param}={last} cannot be built and are "
                       f"not planned ({self.size_param}={shown}): {self.dropped_reason()}.")
        if self.fallback:
            out.append(f"FLOPs per token are 6N for every size, not measured: {self.fallback}; "
                       "budgets and the fit count 6·N·D.")
        return out


#: the FLOP check walks sizes up to this factor past the widest window any budget can choose
#: from (N* x span), so every size the planner may choose has been checked; each size counted
#: costs a forward on meta (`plan` of a 16-wide depth-sized model at budgets=smoke: 85 s at
#: 4.0, 34 s at 1.5, the same plan)
CHECK_SLACK = 1.5


def check_sizes(
    model_cls: type[nn.Module], size_param: str, model_kwargs: dict[str, Any], sizes: list[int],
    example_input: torch.Tensor | None, n_cap: float = math.inf, n_star: float = math.inf,
    span: float = 4.0, k: int = 3,
) -> SizeCheck:
    """Build each of ``sizes`` (ascending) on the meta device and count its training FLOPs with
    the flop counter.

    A size is dropped when its constructor raises, or when its forward fails on meta while
    other sizes' forwards run (e.g. ``n_embd`` not a multiple of a fixed head count: a shape
    error at that size only). When no size's forward runs on meta, every size is kept with 6N
    FLOPs per token and ``fallback`` says why.

    The walk stops at the first size past ``n_cap`` parameters (no budget trains it), or once
    it is past ``n_star`` (the largest budget's expected optimum) x ``span`` x
    :data:`CHECK_SLACK` with ``k`` good sizes at or above ``n_star``: the planner chooses each
    budget's sizes within its window or, when that holds fewer than ``k``, the ``k`` nearest,
    so it never chooses a size past those.
    """
    counted: list[tuple[int, int, str]] = []  # (size, N, flops_method)
    dropped: list[tuple[int, str]] = []
    complete = True
    for s in sizes:
        kwargs = {**model_kwargs, size_param: s}
        try:
            n, _ = count_params(model_cls, kwargs)
        except Exception as exc:
            dropped.append((s, f"its constructor raises {_exc_text(exc)}"))
            continue
        counted.append((s, n, count_model(model_cls, kwargs, example_input).flops_method))
        good = [c for c in counted if not c[2].startswith(_COUNTER_FAILED)] or counted
        if (n > n_cap and len(good) >= 2) or \
                (n > n_star * span * CHECK_SLACK and sum(c[1] >= n_star for c in good) >= k):
            complete = s == sizes[-1]
            break
    ran = [c for c in counted if not c[2].startswith(_COUNTER_FAILED)]
    if ran:  # the forward fails at some sizes only: those sizes are broken, not the counter
        for s, _, method in counted:
            if method.startswith(_COUNTER_FAILED):
                cause = method[len(_COUNTER_FAILED):].strip(" ()")
                dropped.append((s, f"its forward fails ({cause})"))
    keep = ran or counted
    fallback = keep[0][2][len("6N fallback: "):] \
        if keep and keep[0][2].startswith("6N fallback") else ""
    dropped.sort()
    valid = [s for s, _, _ in keep]
    multiple = math.gcd(*valid) if valid else 1
    if multiple > 1 and any(s % multiple == 0 for s, _ in dropped):
        multiple = 1
    return SizeCheck(size_param, valid, [n for _, n, _ in keep], dropped, fallback, multiple,
                     complete)


def smaller_buildable(
    model_cls: type[nn.Module], size_param: str, model_kwargs: dict[str, Any], smallest: int,
    example_input: torch.Tensor | None,
) -> tuple[int, int] | None:
    """The largest size below ``smallest`` that builds, counts on meta and has fewer
    parameters, with its N (None: ``smallest`` is the smallest buildable size). Tries the 64
    values just below it, then halvings down to 1."""
    n0 = None
    tries = set(range(max(1, smallest - 64), smallest))
    x = smallest
    while x > 1:
        x //= 2
        tries.add(max(1, x))
    for s in sorted(tries, reverse=True):
        kwargs = {**model_kwargs, size_param: s}
        try:
            n, _ = count_params(model_cls, kwargs)
            if n0 is None:
                n0 = count_params(model_cls, {**model_kwargs, size_param: smallest})[0]
        except Exception:
            continue
        if n < n0 and not count_model(model_cls, kwargs, example_input).flops_method \
                .startswith(_COUNTER_FAILED):
            return s, n
    return None


def _exc_text(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
