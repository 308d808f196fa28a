"""Training data: the built-in offline byte corpus, a user's text files, and user torch data.

Every source implements :class:`DataSource`, which is all the trainer sees:

* ``seed(seed)`` — reset the sampling RNG at the start of a run;
* ``train_batch(batch_size) -> (input, target)`` — the next random training batch;
* ``val_batches(n_tokens, batch_size)`` — fixed held-out batches, the same for every run;
* ``state_dict()`` / ``load_state_dict()`` — the sampler's state, stored in checkpoints so a
  resumed run draws exactly the batches an uninterrupted one would.

Byte corpora (``dataset.name=stdlib`` or ``text_files``) are byte-level (vocabulary 256),
split into train and validation **by file** (crc32 of the file's relative path, so the split
is stable across machines and never overlaps), held as one uint8 tensor per split and sampled
as random contiguous windows: ``x = window[:-1]``, ``y = window[1:]``, both (B, seq_len).
Corpora are loaded once per process and cached.

User data (the seed's contract): any map-style or iterable torch ``Dataset``, or a
``DataLoader`` over one, yielding ``(input, target)`` pairs, plus a ``loss_fn(output, target)``
that returns a scalar. :class:`TorchDataSource` holds out a deterministic ``val_fraction`` of
it for validation.
"""

from __future__ import annotations

import fnmatch
import math
import os
import sysconfig
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

from flops_fit.config import DatasetConfig
from flops_fit.contracts import validate_dataset
from flops_fit.errors import FlopsFitError

Batch = tuple[Any, Any]

# folders below the stdlib root that are not the standard library itself
_STDLIB_SKIP = {"site-packages", "dist-packages", "__pycache__"}


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


# --------------------------------------------------------------------------------------------
# Byte corpora
# --------------------------------------------------------------------------------------------


def _is_val(rel: str, val_fraction: float) -> bool:
    """Stable split by file: crc32 of the relative path, as a fraction of 2**32."""
    return zlib.crc32(rel.encode("utf-8")) / 2**32 < val_fraction


def _list_files(root: Path, pattern: str, skip: set[str] = frozenset()) -> list[Path]:
    """Files under ``root`` matching ``pattern``, sorted by relative path, ``skip`` pruned."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        files.extend(Path(dirpath) / f for f in filenames if fnmatch.fnmatch(f, pattern))
    return sorted((p for p in files if p.is_file()),
                  key=lambda p: p.relative_to(root).as_posix())


def _read_split(
    root: Path, files: list[Path], max_bytes: int, val_fraction: float
) -> tuple[bytes, bytes, int]:
    """Read ``files`` in order until ``max_bytes``, splitting them into (train, val) by file."""
    train: list[bytes] = []
    val: list[bytes] = []
    total = used = 0
    for path in files:
        if total >= max_bytes:
            break
        try:
            raw = path.read_bytes()
        except OSError:
            continue  # unreadable file (permissions, vanished): skip it
        raw = raw[: max_bytes - total]
        if not raw:
            continue
        rel = path.relative_to(root).as_posix()
        (val if _is_val(rel, val_fraction) else train).append(raw)
        total += len(raw)
        used += 1
    if len(train) + len(val) >= 2 and (not train or not val):
        # too few files for the hash to give both splits: the last file is validation
        both = train + val
        train, val = both[:-1], both[-1:]
    return b"".join(train), b"".join(val), used


def _corpus_tensors(cfg: DatasetConfig) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Load (train, val) uint8 tensors for a byte-corpus config; cached per process."""
    key = (cfg.name, str(cfg.path), cfg.pattern, int(cfg.max_bytes), float(cfg.val_fraction))
    if key in _CORPUS_CACHE:
        return _CORPUS_CACHE[key]
    if not 0.0 < cfg.val_fraction < 1.0:
        raise FlopsFitError(
            f"dataset.val_fraction={cfg.val_fraction} must lie between 0 and 1, e.g. 0.05."
        )
    if cfg.max_bytes <= 0:
        raise FlopsFitError(f"dataset.max_bytes={cfg.max_bytes} must be positive, e.g. 16000000.")
    if cfg.vocab_size < 256:
        raise FlopsFitError(
            f"dataset.vocab_size={cfg.vocab_size} is too small for byte-level text; set it to 256."
        )
    if cfg.name == "stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
        files = _list_files(root, cfg.pattern or "*.py", _STDLIB_SKIP)
        where = f"the Python standard library at {root}"
    elif cfg.name == "text_files":
        if not cfg.path or str(cfg.path) == "???":
            raise FlopsFitError(
                "dataset=text_files needs a path; set dataset.path to a text file or a folder."
            )
        root = Path(str(cfg.path)).expanduser()
        if not root.exists():
            raise FlopsFitError(
                f"Dataset path {root} does not exist; set dataset.path to a text file or a "
                "folder of text files."
            )
        if root.is_file():
            files, root = [root], root.parent
        else:
            files = _list_files(root, cfg.pattern or "*")
            if not files:
                raise FlopsFitError(
                    f"No files matching {cfg.pattern!r} under {root}; put text files there or "
                    "change dataset.pattern."
                )
        where = str(cfg.path)
    else:
        raise FlopsFitError(
            f"Unknown dataset name {cfg.name!r}; use dataset=stdlib or dataset=text_files "
            "(or pass a torch Dataset from Python)."
        )
    train_b, val_b, used = _read_split(root, files, int(cfg.max_bytes), float(cfg.val_fraction))
    if used == 1:
        # a single file: its last val_fraction (by position) is the validation split
        whole = train_b + val_b
        cut = len(whole) - max(1, int(len(whole) * cfg.val_fraction))
        train_b, val_b = whole[:cut], whole[cut:]
    if not train_b and not val_b:
        raise FlopsFitError(
            f"The corpus from {where} is empty; point dataset.path at non-empty text files."
        )
    train = torch.frombuffer(bytearray(train_b), dtype=torch.uint8) if train_b else \
        torch.empty(0, dtype=torch.uint8)
    val = torch.frombuffer(bytearray(val_b), dtype=torch.uint8) if val_b else \
        torch.empty(0, dtype=torch.uint8)
    info = {"source": where, "files": used, "train_bytes": len(train), "val_bytes": len(val)}
    _CORPUS_CACHE[key] = (train, val, info)
    return train, val, info


_CORPUS_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor, dict[str, Any]]] = {}


class ByteCorpus(DataSource):
    """A byte-level corpus sampled as random contiguous windows of ``seq_len + 1`` bytes."""

    def __init__(
        self, train: torch.Tensor, val: torch.Tensor, seq_len: int, name: str = "bytes",
        info: dict[str, Any] | None = None,
    ) -> None:
        if seq_len < 1:
            raise FlopsFitError(f"seq_len={seq_len} must be at least 1.")
        self.train, self.val = train, val  # (n_train,), (n_val,) uint8
        self.seq_len = seq_len
        self.name = name
        self.info = dict(info or {})
        self.tokens_per_sample = seq_len
        self.train_size, self.val_size = len(train), len(val)
        self.generator = torch.Generator().manual_seed(0)
        self._offsets = torch.arange(seq_len + 1)  # (T+1,)
        if self.train_size < seq_len + 1 or self.val_size < seq_len + 1:
            raise FlopsFitError(
                f"The {name} corpus is too small ({self.train_size:,} training and "
                f"{self.val_size:,} validation bytes) for windows of seq_len={seq_len}; add text "
                "or lower train.seq_len."
            )

    def to(self, device: torch.device | str) -> ByteCorpus:
        device = torch.device(device)
        self.train, self.val = self.train.to(device), self.val.to(device)
        self._offsets = self._offsets.to(device)
        return self

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def _windows(self, data: torch.Tensor, starts: torch.Tensor) -> Batch:
        if data.device.type == "cpu":
            # numpy gather: single-threaded, so it never waits on busy OpenMP threads
            idx = starts.numpy()[:, None] + np.arange(self.seq_len + 1)  # (B, T+1)
            w = torch.from_numpy(data.numpy()[idx]).long()
        else:  # (B, T+1) gather on the GPU
            w = data[starts.to(data.device)[:, None] + self._offsets].long()
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()  # x, y: (B, T) token ids

    def train_batch(self, batch_size: int) -> Batch:
        # starts come from the CPU generator (seeded, resumable); the gather runs on data's device
        starts = torch.randint(0, self.train_size - self.seq_len, (batch_size,),
                               generator=self.generator)
        return self._windows(self.train, starts)

    def val_starts(self, n_tokens: int) -> torch.Tensor:
        """Fixed window starts, evenly spread over the validation split."""
        n = max(1, math.ceil(n_tokens / self.seq_len))
        last = self.val_size - self.seq_len - 1
        return torch.linspace(0, last, n).round().long()

    def val_batches(self, n_tokens: int, batch_size: int = 32) -> Iterator[Batch]:
        starts = self.val_starts(n_tokens)
        for i in range(0, len(starts), batch_size):
            yield self._windows(self.val, starts[i: i + batch_size])

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.info}


def build_data(cfg: DatasetConfig, seq_len: int, batch_size: int | None = None) -> ByteCorpus:
    """The byte corpus a dataset config names, cut into windows of ``seq_len`` tokens.

    Raises FlopsFitError for a missing path, an empty corpus, or (given ``batch_size``) a
    training split smaller than one batch.
    """
    train, val, info = _corpus_tensors(cfg)
    data = ByteCorpus(train, val, seq_len, name=cfg.name, info=info)
    if batch_size is not None:
        data.check_batch(batch_size)
    return data


# --------------------------------------------------------------------------------------------
# User torch data: Dataset / IterableDataset / DataLoader yielding (input, target)
# --------------------------------------------------------------------------------------------


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
