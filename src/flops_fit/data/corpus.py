"""Byte corpora: the built-in stdlib corpus and a user's text files (``dataset=stdlib`` /
``text_files``), split into train and validation **by file** (crc32 of the file's relative
path, so the split is stable across machines and never overlaps), held as one uint8 tensor per
split and sampled as random contiguous windows: ``x = window[:-1]``, ``y = window[1:]``, both
(B, seq_len). Corpora are loaded once per process and cached.
"""

from __future__ import annotations

import fnmatch
import math
import os
import sysconfig
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flops_fit.config import DatasetConfig
from flops_fit.data.source import Batch, DataSource
from flops_fit.errors import FlopsFitError

# folders below the stdlib root that are not the standard library itself
_STDLIB_SKIP = {"site-packages", "dist-packages", "__pycache__"}


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


#: control bytes that text files hold (tab, newline, form feed, carriage return, escape, ...)
_TEXT_CONTROLS = frozenset(b"\t\n\x0b\x0c\r\x08\x1b")


def binary_reason(raw: bytes) -> str:
    """Why ``raw`` (a file's first bytes) is not text, or "" when it looks like text.

    Git's rule (a NUL byte means binary) plus: more than 10% control bytes. Token ids stored
    as uint16/uint32 are caught by the first, since most ids have a zero byte.
    """
    sample = raw[:65536]
    if b"\x00" in sample:
        return "it holds NUL bytes"
    controls = sum(1 for b in sample if b < 32 and b not in _TEXT_CONTROLS)
    if sample and controls > 0.1 * len(sample):
        return f"{controls / len(sample):.0%} of its first bytes are control characters"
    return ""


def _read_split(
    root: Path, files: list[Path], max_bytes: int, val_fraction: float,
    text_only: bool = False,
) -> tuple[bytes, bytes, int]:
    """Read ``files`` in order until ``max_bytes``, splitting them into (train, val) by file.

    ``text_only``: a file that does not look like text (:func:`binary_reason`) is refused.
    """
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
        why = binary_reason(raw) if text_only else ""
        if why:
            raise FlopsFitError(
                f"{path} does not look like text ({why}); dataset=text_files reads text, so "
                "for token ids use dataset=tokens dataset.path=<folder of train.bin/val.bin>, "
                "or narrow dataset.pattern to the text files."
            )
        rel = path.relative_to(root).as_posix()
        (val if _is_val(rel, val_fraction) else train).append(raw)
        total += len(raw)
        used += 1
    if len(train) + len(val) >= 2 and (not train or not val):
        # too few files for the hash to give both splits: the last file is validation
        both = train + val
        train, val = both[:-1], both[-1:]
    return b"".join(train), b"".join(val), used


def corpus_tensors(cfg: DatasetConfig) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
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
            f"Unknown dataset name {cfg.name!r}; use dataset=stdlib, text_files, tokens, hf "
            "or custom."
        )
    train_b, val_b, used = _read_split(root, files, int(cfg.max_bytes), float(cfg.val_fraction),
                                       text_only=cfg.name == "text_files")
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


def byte_corpus(cfg: DatasetConfig, seq_len: int) -> ByteCorpus:
    """The byte corpus a dataset config names, cut into windows of ``seq_len`` tokens.

    Raises FlopsFitError for a missing path, a binary file, or an empty corpus.
    """
    train, val, info = corpus_tensors(cfg)
    return ByteCorpus(train, val, seq_len, name=cfg.name, info=info)
