"""The one interface the trainer sees: :class:`DataSource` (see the package docstring)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from flops_fit.errors import FlopsFitError

Batch = tuple[Any, Any]


class DataSource:
    """Where a run's batches come from (see the module docstring)."""

    name: str = "data"
    tokens_per_sample: int = 1  # seq_len for token sequences, 1 for anything else
    train_size: int = 0  # tokens in the training split (samples x tokens_per_sample)
    val_size: int = 0  # tokens in the validation split

    def seed(self, seed: int) -> None:
        raise NotImplementedError

    def train_batch(self, batch_size: int) -> Batch:
        raise NotImplementedError

    def val_batches(self, n_tokens: int, batch_size: int = 32) -> Iterator[Batch]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def to(self, device: torch.device | str) -> DataSource:
        """Hint where batches will be used (a source may keep its data there). Returns self."""
        return self

    def check_batch(self, batch_size: int) -> None:
        """Raise FlopsFitError when the training split cannot fill one batch."""
        need = batch_size * self.tokens_per_sample
        if self.train_size < need:
            raise FlopsFitError(
                f"The {self.name} training data holds {self.train_size:,} tokens, fewer than "
                f"one batch of {need:,} (train.batch_size={batch_size}); use more data or a "
                "smaller train.batch_size."
            )

    def describe(self) -> dict[str, Any]:
        """A few facts for run records and logs."""
        return {"name": self.name, "train_tokens": self.train_size,
                "val_tokens": self.val_size, "tokens_per_sample": self.tokens_per_sample}
