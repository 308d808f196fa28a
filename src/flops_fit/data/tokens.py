"""Token ids on disk (``dataset=tokens``, and the cache of ``tokenizer=bpe`` / ``dataset=hf``).

nanoGPT's format: ``train.bin`` and ``val.bin`` hold token ids back to back (``uint16`` or
``uint32``, native byte order, what ``np.ndarray.tofile`` writes). They are opened with
``np.memmap``, never read whole: a batch reads only its windows' pages, so a multi-GB file
trains with flat memory. Windows are drawn exactly as :class:`ByteCorpus` draws them (same
generator, same starts) and the held-out windows are the same evenly spread fixed starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from flops_fit.data.corpus import ByteCorpus
from flops_fit.data.source import Batch
from flops_fit.errors import FlopsFitError
from flops_fit.rundir.layout import TRAIN_TOKENS_FILE, VAL_TOKENS_FILE

#: ids checked against the vocabulary when the files are opened (the head of each file;
#: every batch is checked as it is drawn)
_HEAD_CHECK = 1 << 20


class TokenCorpus(ByteCorpus):
    """Token ids in two 1-D arrays (``np.memmap``), sampled as windows of ``seq_len + 1``."""

    def __init__(self, train: np.ndarray, val: np.ndarray, seq_len: int, vocab_size: int,
                 name: str = "tokens", info: dict[str, Any] | None = None) -> None:
        super().__init__(train, val, seq_len, name=name, info=info)  # (n_train,), (n_val,)
        self.vocab_size = int(vocab_size)

    def to(self, device: torch.device | str) -> TokenCorpus:
        return self  # the ids stay on disk; the trainer moves each batch

    def _windows(self, data: np.ndarray, starts: torch.Tensor) -> Batch:
        idx = starts.numpy()[:, None] + np.arange(self.seq_len + 1)  # (B, T+1)
        w = torch.from_numpy(data[idx].astype(np.int64))  # reads only these pages
        top = int(w.max())
        if top >= self.vocab_size:
            raise FlopsFitError(
                f"The {self.name} data holds token id {top}, not below dataset.vocab_size="
                f"{self.vocab_size}; set dataset.vocab_size to the tokenizer's vocabulary size "
                "(or check dataset.dtype)."
            )
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()  # x, y: (B, T) token ids


def open_split(path: Path, dtype: str) -> np.ndarray:
    """``path`` as a read-only memmap of ``dtype`` ids; one sentence when it cannot be."""
    if not path.is_file():
        raise FlopsFitError(
            f"{path} does not exist; dataset=tokens reads {TRAIN_TOKENS_FILE} and "
            f"{VAL_TOKENS_FILE} from dataset.path (numpy's tofile of the token ids)."
        )
    size, item = path.stat().st_size, np.dtype(dtype).itemsize
    if size == 0 or size % item:
        raise FlopsFitError(
            f"{path} holds {size:,} bytes, not a whole number of {dtype} ids; check "
            "dataset.dtype (uint16 or uint32) and that the file was written completely."
        )
    return np.memmap(path, dtype=np.dtype(dtype), mode="r")


def token_corpus(folder: str | Path, dtype: str, vocab_size: int, seq_len: int,
                 name: str = "tokens", info: dict[str, Any] | None = None) -> TokenCorpus:
    """The :class:`TokenCorpus` of ``folder/train.bin`` and ``folder/val.bin``."""
    root = Path(str(folder)).expanduser()
    if not root.is_dir():
        raise FlopsFitError(
            f"dataset.path {root} is not a folder; point it at the folder holding "
            f"{TRAIN_TOKENS_FILE} and {VAL_TOKENS_FILE}."
        )
    train = open_split(root / TRAIN_TOKENS_FILE, dtype)
    val = open_split(root / VAL_TOKENS_FILE, dtype)
    for split, ids in (("train", train), ("val", val)):
        top = int(ids[:_HEAD_CHECK].max())
        if top >= vocab_size:
            raise FlopsFitError(
                f"{root / (split + '.bin')} holds token id {top}, not below dataset.vocab_size="
                f"{vocab_size}; set dataset.vocab_size to the tokenizer's vocabulary size (or "
                f"check dataset.dtype={dtype})."
            )
    facts = {"source": str(root), "dtype": dtype, "vocab_size": int(vocab_size),
             "train_tokens": len(train), "val_tokens": len(val), **(info or {})}
    return TokenCorpus(train, val, seq_len, vocab_size, name=name, info=facts)
