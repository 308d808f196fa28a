"""Contracts for user input: the model class, the dataset and the loss function.

Each check raises :class:`FlopsFitError` with one sentence naming the problem and the fix.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch.nn as nn

from flops_fit.errors import FlopsFitError
from flops_fit.flops import count_params


def validate_model_contract(
    model_cls: Any,
    size_param: str,
    model_kwargs: dict[str, Any] | None = None,
    sizes: list[int] | None = None,
) -> None:
    """Check that ``model_cls`` is an nn.Module class taking ``size_param``, and N grows with it.

    ``sizes`` are candidate values of the size parameter; the check builds the model (on the
    meta device) at the two smallest and the largest valid ones.
    """
    model_kwargs = dict(model_kwargs or {})
    name = getattr(model_cls, "__name__", repr(model_cls))
    if not (inspect.isclass(model_cls) and issubclass(model_cls, nn.Module)):
        raise FlopsFitError(f"{name} is not a torch.nn.Module class; pass the class itself.")
    try:
        params = inspect.signature(model_cls.__init__).parameters
    except (TypeError, ValueError) as exc:
        raise FlopsFitError(f"Cannot read the constructor signature of {name}: {exc}.") from exc
    takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if size_param not in params and not takes_var_kw:
        options = [p for p in params if p not in ("self",)]
        raise FlopsFitError(
            f"{name} has no constructor argument {size_param!r}; set size_param to one of "
            f"{', '.join(options) or '(none)'}."
        )
    unknown = [k for k in model_kwargs if k not in params and k != size_param]
    if unknown and not takes_var_kw:
        raise FlopsFitError(
            f"{name} does not accept argument(s) {', '.join(unknown)}; remove them from "
            "model kwargs."
        )
    candidates = sorted(set(sizes or [1, 2, 4, 8, 16, 32, 64, 128]))
    counted: list[tuple[int, int]] = []
    errors: list[str] = []
    for s in candidates:
        try:
            n, _ = count_params(model_cls, {**model_kwargs, size_param: s})
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        counted.append((s, n))
        if len(counted) >= 2:
            break
    if not counted:
        raise FlopsFitError(
            f"{name} could not be built with {size_param} in {candidates[0]}..{candidates[-1]} "
            f"({errors[0] if errors else 'no sizes'}); check the model kwargs and size range."
        )
    for s in reversed(candidates):  # the largest buildable size
        try:
            counted.append((s, count_params(model_cls, {**model_kwargs, size_param: s})[0]))
            break
        except Exception:
            continue
    counted = sorted(set(counted))
    if len(counted) < 2 or counted[-1][1] <= counted[0][1]:
        raise FlopsFitError(
            f"The parameter count of {name} does not grow with {size_param} "
            f"({', '.join(f'{s}: {n:,}' for s, n in counted)}); choose the argument that sets "
            "the model's size."
        )
