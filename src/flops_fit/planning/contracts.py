"""Contracts for user input: the model class, the dataset and the loss function.

The same checks serve the command line, plan.json and the Python API.

Each check raises :class:`FlopsFitError` with one sentence naming the problem and the fix.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from flops_fit.errors import FlopsFitError
from flops_fit.planning.flops import count_params


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
    if len(candidates) < 2:
        raise FlopsFitError(
            f"The size range of {name} holds one value ({size_param}={candidates[0]}), so a "
            "sweep has no sizes to compare; give a range (size_min < size_max)."
        )
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


def validate_dataset(ds: Any) -> None:
    """Check the user-data contract: a Dataset or DataLoader of (input, target) pairs."""
    if hasattr(ds, "train_batch") and hasattr(ds, "val_batches"):  # a flops_fit DataSource
        return
    if not isinstance(ds, (Dataset, DataLoader)) and not (
        hasattr(ds, "__getitem__") and hasattr(ds, "__len__")
    ):
        raise FlopsFitError(
            f"dataset must be a torch Dataset or DataLoader yielding (input, target) pairs, "
            f"not {type(ds).__name__}."
        )
    base = ds.dataset if isinstance(ds, DataLoader) else ds
    iterable = isinstance(base, IterableDataset) or not hasattr(base, "__len__")
    try:
        if not iterable and len(base) == 0:
            raise FlopsFitError(f"The dataset {type(ds).__name__} is empty; give it samples.")
        if iterable:
            it = iter(ds)
            item = next(it, None)
            if item is None:
                raise FlopsFitError(f"The dataset {type(ds).__name__} yields nothing; give it "
                                    "samples.")
        else:
            item = base[0]
    except FlopsFitError:
        raise
    except Exception as exc:
        raise FlopsFitError(
            f"Reading the first sample of {type(ds).__name__} failed ({type(exc).__name__}: "
            f"{exc}); fix the dataset's __getitem__/__iter__."
        ) from exc
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise FlopsFitError(
            f"{type(ds).__name__} must yield (input, target) pairs, but its first item is a "
            f"{type(item).__name__}{f' of length {len(item)}' if hasattr(item, '__len__') else ''}."
        )


def validate_loss_fn(fn: Any, output: Any = None, target: Any = None) -> None:
    """Check that ``fn`` is callable and, given an example, returns a finite scalar tensor."""
    if not callable(fn):
        raise FlopsFitError(
            f"loss_fn must be a callable loss_fn(output, target), not {type(fn).__name__}."
        )
    if output is None:
        return
    try:
        loss = fn(output, target)
    except Exception as exc:
        raise FlopsFitError(
            f"loss_fn raised {type(exc).__name__}: {exc}; it must accept (model output, target)."
        ) from exc
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise FlopsFitError(
            f"loss_fn must return a scalar tensor, but it returned {shape}; reduce it, e.g. "
            "with .mean()."
        )
    if not loss.dtype.is_floating_point:
        raise FlopsFitError(f"loss_fn must return a floating-point scalar, not {loss.dtype}.")
