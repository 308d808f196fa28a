"""``dataset=hf``: a Hugging Face dataset (``save_to_disk`` folder, or parquet / jsonl files),
tokenized once into the run directory's token cache (:mod:`flops_fit.data.bpe`), then trained
on as ``dataset=tokens``.

The column is either token ids (lists of ints: written as they are) or text, tokenized as
bytes, by a BPE trained here on the training rows, or by a local ``tokenizer.json``. The last
``val_fraction`` of the rows is held out. Needs the ``[hf]`` extra (the ``datasets`` package).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from flops_fit.config import HFDatasetConfig
from flops_fit.data.bpe import (
    build_cache,
    cache_key,
    encode,
    ids_dtype,
    load_tokenizer,
    need_cache_dir,
    train_bpe,
    write_ids,
)
from flops_fit.data.tokens import TokenCorpus, token_corpus
from flops_fit.errors import FlopsFitError
from flops_fit.rundir.layout import TOKENIZER_FILE, TRAIN_TOKENS_FILE, VAL_TOKENS_FILE, Layout

_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}


def _datasets() -> Any:
    """The ``datasets`` module; imported here only, as it is an optional extra."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local files only: never the network
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        raise FlopsFitError(
            "dataset=hf needs the Hugging Face datasets package; install it with "
            "pip install 'flops-fit[hf]'."
        ) from None
    datasets.disable_progress_bars()  # flops-fit prints its own progress
    return datasets


def load_rows(cfg: HFDatasetConfig, cache: Path) -> Any:
    """The rows of ``cfg.path`` as a ``datasets.Dataset`` (one split)."""
    ds_mod = _datasets()
    path = Path(str(cfg.path)).expanduser()
    if not path.exists():
        raise FlopsFitError(f"dataset.path {path} does not exist; point it at a save_to_disk "
                            "folder or parquet/jsonl files.")
    if path.is_dir() and any((path / f).is_file() for f in
                             ("dataset_info.json", "dataset_dict.json", "state.json")):
        ds = ds_mod.load_from_disk(str(path))
        if isinstance(ds, ds_mod.DatasetDict):
            if cfg.split not in ds:
                raise FlopsFitError(f"{path} has no split {cfg.split!r}; set dataset.split to "
                                    f"one of {', '.join(ds)}.")
            ds = ds[cfg.split]
        return ds
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.suffix in _FORMATS and p.is_file())
    kinds = {_FORMATS.get(p.suffix) for p in files}
    if not files or None in kinds or len(kinds) != 1:
        raise FlopsFitError(
            f"{path} is not a save_to_disk folder and holds no parquet or jsonl files of one "
            "kind; give dataset.path a dataset saved with save_to_disk, or .parquet / .jsonl files."
        )
    return ds_mod.load_dataset(kinds.pop(), data_files=[str(p) for p in files], split="train",
                               cache_dir=str(cache / "hf"))


def _column(rows: Any, cfg: HFDatasetConfig) -> str:
    """``"text"`` or ``"ids"``: what the configured column holds."""
    if cfg.column not in rows.column_names:
        raise FlopsFitError(f"The dataset has no column {cfg.column!r}; set dataset.column to "
                            f"one of {', '.join(rows.column_names)}.")
    first = rows[0][cfg.column]
    if isinstance(first, str):
        return "text"
    if isinstance(first, (list, tuple)) and all(isinstance(v, int) for v in first[:64]):
        return "ids"
    raise FlopsFitError(f"Column {cfg.column!r} holds {type(first).__name__}, neither text nor "
                        "lists of token ids; choose another dataset.column.")


def _values(rows: Any, column: str, start: int, stop: int) -> Iterator[Any]:
    for i in range(start, stop, 1024):  # (rows batch) -> one column's values
        yield from rows[i:min(stop, i + 1024)][column]


def _texts(rows: Any, column: str, start: int, stop: int) -> Iterator[str]:
    for text in _values(rows, column, start, stop):
        yield text + "\n"  # documents end with a newline


def hf_corpus(cfg: HFDatasetConfig, seq_len: int, cache_dir: Path | None) -> TokenCorpus:
    """The tokens of ``cfg``'s dataset (tokenized once into the run directory's cache)."""
    root = need_cache_dir(cache_dir, "dataset=hf")
    folder = Layout(root).data_cache(cache_key(cfg.identity()))
    _datasets()  # the extra's one sentence before any work

    def make(out: Path) -> dict[str, Any]:
        rows = load_rows(cfg, out)
        n = min(len(rows), cfg.max_rows or len(rows))
        n_val = max(1, round(n * cfg.val_fraction))
        if n - n_val < 1:
            raise FlopsFitError(f"The dataset has {n} row(s), too few to hold out validation "
                                "rows; give it more rows.")
        kind = _column(rows, cfg)
        splits = {TRAIN_TOKENS_FILE: (0, n - n_val), VAL_TOKENS_FILE: (n - n_val, n)}
        if kind == "ids":
            dtype = ids_dtype(cfg.vocab_size)
            counts = {f: write_ids((np.asarray(v) for v in _values(rows, cfg.column, a, b)),
                                   out / f, dtype) for f, (a, b) in splits.items()}
        elif cfg.tokenizer == "bytes":
            dtype = "uint16"
            counts = {f: write_ids((np.frombuffer(t.encode("utf-8"), np.uint8)
                                    for t in _texts(rows, cfg.column, a, b)), out / f, dtype)
                      for f, (a, b) in splits.items()}
        else:
            if cfg.tokenizer == "bpe":  # trained on the training rows only
                tok = train_bpe(_texts(rows, cfg.column, 0, n - n_val), cfg.bpe_vocab_size)
            else:
                tok = load_tokenizer(cfg.tokenizer)
            if tok.get_vocab_size() > cfg.vocab_size:
                raise FlopsFitError(
                    f"The tokenizer has {tok.get_vocab_size()} tokens, more than dataset."
                    f"vocab_size={cfg.vocab_size}; set dataset.vocab_size="
                    f"{tok.get_vocab_size()}.")
            tok.save(str(out / TOKENIZER_FILE))
            dtype = ids_dtype(tok.get_vocab_size())
            counts = {f: write_ids(encode(tok, _texts(rows, cfg.column, a, b)), out / f, dtype)
                      for f, (a, b) in splits.items()}
        return {"source": str(cfg.path), "rows": n, "column": kind, "dtype": dtype,
                "train_tokens": counts[TRAIN_TOKENS_FILE], "val_tokens": counts[VAL_TOKENS_FILE]}

    meta = build_cache(folder, make)
    return token_corpus(folder, meta["dtype"], cfg.vocab_size, seq_len, name="hf",
                        info={"rows": meta["rows"], "cache": str(folder)})
