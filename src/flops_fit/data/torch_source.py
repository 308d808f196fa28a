"""User torch data: any map-style or iterable ``Dataset``, or a ``DataLoader`` over one,
yielding ``(input, target)`` pairs (the API's ``dataset=`` and the CLI's ``dataset=custom``).

:class:`TorchDataSource` holds out a deterministic ``val_fraction`` of it for validation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

from flops_fit.config import CustomDatasetConfig
from flops_fit.config.reading import import_object
from flops_fit.data.source import Batch, DataSource
from flops_fit.errors import FlopsFitError
from flops_fit.planning.contracts import validate_dataset


def _split_samples(batch: Any) -> list[Any]:
    """Undo collation: a batch (tensors along dim 0, or tuples of them) into samples."""
    if isinstance(batch, torch.Tensor):
        return list(batch)
    if isinstance(batch, (tuple, list)):
        parts = [_split_samples(b) for b in batch]
        return [tuple(p[i] for p in parts) for i in range(len(parts[0]))]
    raise FlopsFitError(
        f"Cannot split a DataLoader batch of type {type(batch).__name__} into samples; yield "
        "tensors or (input, target) tuples of tensors."
    )


def _tokens_per_sample(sample: Any) -> int:
    """seq_len for an integer token sequence input, 1 otherwise (the planner's convention)."""
    x = sample[0]
    if isinstance(x, torch.Tensor) and x.dim() >= 1 and not x.dtype.is_floating_point \
            and not x.dtype == torch.bool:
        return int(x.shape[-1])
    return 1


class TorchDataSource(DataSource):
    """A user's Dataset or DataLoader, with a deterministic held-out validation share.

    Map-style datasets: a fixed permutation (seed ``split_seed``) puts ``val_fraction`` of the
    indices in validation; training draws the rest without replacement, epoch by epoch.
    Iterable datasets: every ``round(1/val_fraction)``-th sample of the stream is validation.
    A DataLoader contributes its dataset and ``collate_fn``; batches are re-formed at the
    plan's batch size.
    """

    def __init__(
        self, data: Dataset | DataLoader, val_fraction: float = 0.05, split_seed: int = 0
    ) -> None:
        validate_dataset(data)
        if not 0.0 < val_fraction < 1.0:
            raise FlopsFitError(f"val_fraction={val_fraction} must lie between 0 and 1.")
        self.name = type(data).__name__
        self.loader = data if isinstance(data, DataLoader) else None
        self.dataset = data.dataset if isinstance(data, DataLoader) else data
        self.collate: Callable[[list[Any]], Any] = (
            self.loader.collate_fn if self.loader is not None and self.loader.collate_fn
            else default_collate
        )
        self.iterable = isinstance(self.dataset, IterableDataset) or not hasattr(
            self.dataset, "__len__")
        self.val_every = max(2, round(1.0 / val_fraction))
        self.generator = torch.Generator().manual_seed(0)
        self.sized = True  # False for streams too long to count
        first = self._first_sample()
        self.tokens_per_sample = _tokens_per_sample(first)
        if self.iterable:
            self._stream: Iterator[Any] | None = None
            self._consumed = 0  # stream samples consumed by training (val ones included)
            self.epoch = 0
            n_all = self._count_stream()
            if n_all is None:  # a long or endless stream: sizes unknown, epochs not counted
                self.train_size = self.val_size = 0
                self.sized = False
            else:
                n_val = math.ceil(n_all / self.val_every)
                self.train_size = (n_all - n_val) * self.tokens_per_sample
                self.val_size = n_val * self.tokens_per_sample
        else:
            n = len(self.dataset)
            n_val = min(n - 1, max(1, round(val_fraction * n)))
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
            self.val_idx, self.train_idx = perm[:n_val].sort().values, perm[n_val:]
            self.train_size = len(self.train_idx) * self.tokens_per_sample
            self.val_size = n_val * self.tokens_per_sample
            self._epoch_state = self.generator.get_state()
            self._perm = self._new_perm()
            self._pos = 0
        if self.sized and (self.val_size == 0 or self.train_size == 0):
            raise FlopsFitError(
                f"The dataset {self.name} is too small to hold out validation samples; give it "
                "at least two samples (better: thousands)."
            )

    # -- sample access ------------------------------------------------------------------------

    def _raw_samples(self) -> Iterator[Any]:
        if self.loader is not None and self.iterable:
            for batch in self.loader:
                yield from _split_samples(batch)
        else:
            yield from iter(self.dataset)

    def _count_stream(self, cap: int = 100_000) -> int | None:
        n = 0
        for _ in self._raw_samples():
            n += 1
            if n > cap:
                return None
        return n

    def _first_sample(self) -> Any:
        if self.iterable:
            for s in self._raw_samples():
                return s
            raise FlopsFitError(f"The dataset {self.name} yields nothing; give it samples.")
        return self.dataset[0]

    def _val_samples(self, n: int) -> Iterator[Any]:
        if not self.iterable:
            for i in self.val_idx[:n].tolist():
                yield self.dataset[i]
            return
        k = 0
        for i, s in enumerate(self._raw_samples()):
            if k >= n:
                return
            if i % self.val_every == 0:
                k += 1
                yield s

    def _new_perm(self) -> torch.Tensor:
        return self.train_idx[torch.randperm(len(self.train_idx), generator=self.generator)]

    def _next_train_sample(self) -> Any:
        if not self.iterable:
            if self._pos >= len(self._perm):
                self._epoch_state = self.generator.get_state()
                self._perm, self._pos = self._new_perm(), 0
            i = int(self._perm[self._pos])
            self._pos += 1
            return self.dataset[i]
        while True:
            if self._stream is None:
                self._stream = self._raw_samples()
            try:
                s = next(self._stream)
            except StopIteration:
                self._stream, self._consumed = None, 0
                self.epoch += 1
                continue
            self._consumed += 1
            if (self._consumed - 1) % self.val_every != 0:
                return s

    # -- DataSource ---------------------------------------------------------------------------

    def check_batch(self, batch_size: int) -> None:
        if self.sized:
            super().check_batch(batch_size)

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))
        if self.iterable:
            self._stream, self._consumed, self.epoch = None, 0, 0
        else:
            self._epoch_state = self.generator.get_state()
            self._perm, self._pos = self._new_perm(), 0

    def train_batch(self, batch_size: int) -> Batch:
        if not self.iterable and hasattr(self.dataset, "__getitems__"):  # batched fetch
            if self._pos + batch_size <= len(self._perm):
                idx = self._perm[self._pos: self._pos + batch_size].tolist()
                self._pos += batch_size
                return self.collate(self.dataset.__getitems__(idx))
        return self.collate([self._next_train_sample() for _ in range(batch_size)])

    def val_batches(self, n_tokens: int, batch_size: int = 32) -> Iterator[Batch]:
        n = max(1, math.ceil(n_tokens / self.tokens_per_sample))
        chunk: list[Any] = []
        for s in self._val_samples(n):
            chunk.append(s)
            if len(chunk) == batch_size:
                yield self.collate(chunk)
                chunk = []
        if chunk:
            yield self.collate(chunk)

    def example_input(self) -> Any:
        """One training sample's input with a batch dimension of 1 (for FLOP counting)."""
        return self.collate([self._first_sample()])[0]

    def state_dict(self) -> dict[str, Any]:
        if self.iterable:
            return {"consumed": self._consumed, "epoch": self.epoch}
        return {"epoch_generator": self._epoch_state, "pos": self._pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.iterable:
            self._stream, self._consumed, self.epoch = self._raw_samples(), 0, state["epoch"]
            for _ in range(int(state["consumed"])):  # replay the stream up to where it was
                next(self._stream)
                self._consumed += 1
            return
        self.generator.set_state(state["epoch_generator"])
        self._epoch_state = self.generator.get_state()
        self._perm, self._pos = self._new_perm(), int(state["pos"])


def as_data_source(data: Any, val_fraction: float = 0.05) -> DataSource:
    """A DataSource as is; a torch Dataset or DataLoader wrapped in :class:`TorchDataSource`."""
    if isinstance(data, DataSource):
        return data
    return TorchDataSource(data, val_fraction=val_fraction)


# --------------------------------------------------------------------------------------------
# dataset=custom: the user's factory named by config
# --------------------------------------------------------------------------------------------

_CUSTOM_CACHE: dict[str, Any] = {}


def build_custom(cfg: CustomDatasetConfig) -> Any:
    """``cfg._target_(**cfg.kwargs)``: the user's Dataset or DataLoader, checked by the same
    contract as the API's ``dataset=`` (built once per process)."""
    key = json.dumps(cfg.identity(), sort_keys=True, default=str)
    if key not in _CUSTOM_CACHE:
        factory = import_object(cfg._target_, "dataset")
        if not callable(factory):
            raise FlopsFitError(f"dataset _target_ {cfg._target_!r} is not callable; name a "
                                "Dataset class or a function returning one.")
        try:
            data = factory(**cfg.kwargs)
        except FlopsFitError:
            raise
        except Exception as exc:
            raise FlopsFitError(
                f"dataset _target_ {cfg._target_}(**dataset.kwargs) raised "
                f"{type(exc).__name__}: {exc}; fix dataset.kwargs or the factory."
            ) from exc
        validate_dataset(data)
        _CUSTOM_CACHE[key] = data
    return _CUSTOM_CACHE[key]


def custom_loss(cfg: CustomDatasetConfig) -> Callable[[Any, Any], Any] | None:
    """The loss ``dataset.loss`` names (None: the trainer's cross-entropy)."""
    if cfg.loss == "cross_entropy":
        return None
    if cfg.loss == "mse":
        return F.mse_loss
    fn = import_object(cfg.loss, "loss")
    if not callable(fn):
        raise FlopsFitError(f"dataset.loss {cfg.loss!r} is not callable; name a function "
                            "loss_fn(output, target) returning a scalar.")
    return fn
