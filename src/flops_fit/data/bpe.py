"""Subword tokens for the text datasets: a byte-level BPE (Hugging Face ``tokenizers``) trained
on the **training split only**, and the run directory's token cache both BPE text and
``dataset=hf`` go through.

A cache folder (``Layout.data_cache(key)``, key = a hash of the dataset's settings) holds
``tokenizer.json``, ``train.bin``/``val.bin`` (token ids, read like ``dataset=tokens``) and
``meta.json``, written last: a folder without it is incomplete and rebuilt. Building is done
under a lock, so the shards of a multirun tokenize once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from flops_fit.config import DatasetConfig
from flops_fit.data.corpus import corpus_tensors
from flops_fit.data.tokens import TokenCorpus, token_corpus
from flops_fit.errors import FlopsFitError
from flops_fit.rundir.io import atomic_file, atomic_write_json, file_lock, read_json
from flops_fit.rundir.layout import (
    DATA_META_FILE,
    TOKENIZER_FILE,
    TRAIN_TOKENS_FILE,
    VAL_TOKENS_FILE,
    Layout,
)

_CHUNK = 1 << 20  # texts handed to the tokenizer: ~1 MB, cut at line ends


def ids_dtype(vocab_size: int) -> str:
    """The narrowest id dtype for a vocabulary (nanoGPT's uint16 when it fits)."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def byte_texts(raw: bytes, chunk: int = _CHUNK) -> Iterator[str]:
    """``raw`` as UTF-8 text in ~``chunk``-byte pieces cut after a newline (bad bytes: U+FFFD)."""
    start = 0
    while start < len(raw):
        end = raw.find(b"\n", start + chunk)
        end = len(raw) if end < 0 else end + 1
        yield raw[start:end].decode("utf-8", errors="replace")
        start = end


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE of ``vocab_size`` tokens (the 256 bytes first), trained offline."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A ``tokenizer.json`` from disk; one sentence when it is missing or unreadable."""
    path = Path(str(path)).expanduser()
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a bad file
        raise FlopsFitError(
            f"Cannot load the tokenizer {path} ({exc}); give dataset.tokenizer as bytes, bpe, or "
            "the path of a Hugging Face tokenizer.json."
        ) from None


def write_ids(chunks: Iterable[np.ndarray | list[int]], out: Path, dtype: str) -> int:
    """Write id chunks back to back to ``out`` (atomically); the number of ids written."""
    n = 0
    with atomic_file(out, "wb") as fh:
        for ids in chunks:
            arr = np.asarray(ids, dtype=np.dtype(dtype))
            arr.tofile(fh)
            n += len(arr)
    return n


def encode(tok: Tokenizer, texts: Iterable[str], batch: int = 16) -> Iterator[list[int]]:
    """Token ids of each text, ``batch`` texts per (multi-threaded) encode_batch call."""
    buf: list[str] = []
    for text in texts:
        buf.append(text)
        if len(buf) == batch:
            yield from (e.ids for e in tok.encode_batch(buf))
            buf = []
    if buf:
        yield from (e.ids for e in tok.encode_batch(buf))


def cache_key(identity: dict[str, Any]) -> str:
    """The cache folder name of a dataset's settings."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return "tok-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def build_cache(folder: Path, make: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """``folder``'s meta.json, running ``make(folder)`` first unless the cache is complete.

    ``make`` writes tokenizer.json / train.bin / val.bin and returns facts for meta.json
    (which must include ``dtype``).
    """
    meta = folder / DATA_META_FILE
    with file_lock(folder.parent / ("." + folder.name)):  # data/.tok-<key>.lock
        if not meta.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(meta, make(folder))
    return read_json(meta, "token cache meta.json")


def need_cache_dir(cache_dir: Path | None, what: str) -> Path:
    """The run directory a tokenized dataset is cached in; one sentence without one."""
    if cache_dir is None:
        raise FlopsFitError(f"{what} is tokenized into the run directory; give one (run_dir=...).")
    return Path(cache_dir)


def bpe_corpus(cfg: DatasetConfig, seq_len: int, cache_dir: Path | None) -> TokenCorpus:
    """The text corpus of ``cfg`` as byte-level BPE tokens (trained on its training split)."""
    root = need_cache_dir(cache_dir, f"dataset.tokenizer=bpe ({cfg.name})")
    folder = Layout(root).data_cache(cache_key(cfg.identity()))
    dtype = ids_dtype(cfg.bpe_vocab_size)

    def make(out: Path) -> dict[str, Any]:
        train, val, info = corpus_tensors(cfg)
        train_b, val_b = train.numpy().tobytes(), val.numpy().tobytes()
        tok = train_bpe(byte_texts(train_b), cfg.bpe_vocab_size)  # the training split only
        tok.save(str(out / TOKENIZER_FILE))
        n_train = write_ids(encode(tok, byte_texts(train_b)), out / TRAIN_TOKENS_FILE, dtype)
        n_val = write_ids(encode(tok, byte_texts(val_b)), out / VAL_TOKENS_FILE, dtype)
        return {**info, "tokenizer": "bpe", "bpe_vocab_size": cfg.bpe_vocab_size,
                "tokenizer_vocab": tok.get_vocab_size(), "dtype": dtype,
                "train_tokens": n_train, "val_tokens": n_val,
                "tokens_per_byte": n_train / max(1, len(train_b))}

    meta = build_cache(folder, make)
    return token_corpus(folder, meta["dtype"], cfg.vocab_size, seq_len, name=cfg.name,
                        info={"tokens_per_byte": meta["tokens_per_byte"],
                              "cache": str(folder)})
