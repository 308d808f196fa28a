"""Training data. Every source implements :class:`DataSource`, which is all the trainer sees:

* ``seed(seed)`` — reset the sampling RNG at the start of a run;
* ``train_batch(batch_size) -> (input, target)`` — the next random training batch;
* ``val_batches(n_tokens, batch_size)`` — fixed held-out batches, the same for every run;
* ``state_dict()`` / ``load_state_dict()`` — the sampler's state, stored in checkpoints so a
  resumed run draws exactly the batches an uninterrupted one would.

The options of ``conf/dataset/``: one config class each (``DATASET_CLASSES`` in
:mod:`flops_fit.config.datasets`) and one builder each (:data:`SOURCES`, by the same name). A
new kind is its config dataclass, its data module, one line in each registry (and its YAML):

========== ======================================= ==========================================
option     what                                    module
========== ======================================= ==========================================
stdlib     the Python stdlib's .py files (bytes)   :mod:`.corpus` (:class:`ByteCorpus`)
text_files a user's text files (bytes)             :mod:`.corpus`
  + bpe    ``dataset.tokenizer=bpe``: a BPE trained :mod:`.bpe` (cached in ``run_dir/data/``)
           on the training split
tokens     nanoGPT train.bin / val.bin, memmapped  :mod:`.tokens` (:class:`TokenCorpus`)
hf         a Hugging Face dataset, tokenized once  :mod:`.hf` (extra ``[hf]``)
custom     ``_target_(**kwargs)``: a torch Dataset :mod:`.torch_source` (:class:`TorchDataSource`)
========== ======================================= ==========================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flops_fit.config import (
    CustomDatasetConfig,
    DatasetConfig,
    TokensDatasetConfig,
)
from flops_fit.data.bpe import bpe_corpus
from flops_fit.data.corpus import ByteCorpus, binary_reason, byte_corpus, corpus_tensors
from flops_fit.data.hf import hf_corpus
from flops_fit.data.source import Batch, DataSource
from flops_fit.data.tokens import TokenCorpus, token_corpus
from flops_fit.data.torch_source import (
    TorchDataSource,
    as_data_source,
    build_custom,
    custom_loss,
)
from flops_fit.errors import FlopsFitError

__all__ = ["Batch", "ByteCorpus", "DataSource", "SOURCES", "TokenCorpus", "TorchDataSource",
           "as_data_source", "binary_reason", "build_custom", "build_data", "corpus_tensors",
           "custom_loss"]

#: a builder: (dataset config, seq_len, cache folder or None) -> its DataSource
SourceBuilder = Callable[[Any, int, Path | None], DataSource]


def _text(cfg: DatasetConfig, seq_len: int, cache: Path | None) -> DataSource:
    """stdlib / text_files: bytes, or a BPE trained on the training split (tokenizer=bpe)."""
    return bpe_corpus(cfg, seq_len, cache) if cfg.tokenizer == "bpe" else byte_corpus(cfg, seq_len)


def _tokens(cfg: TokensDatasetConfig, seq_len: int, cache: Path | None) -> DataSource:
    return token_corpus(cfg.path, cfg.dtype, cfg.vocab_size, seq_len)


def _custom(cfg: CustomDatasetConfig, seq_len: int, cache: Path | None) -> DataSource:
    return TorchDataSource(build_custom(cfg), val_fraction=cfg.val_fraction)


#: ``dataset.name`` -> the builder of its source (the config classes: DATASET_CLASSES)
SOURCES: dict[str, SourceBuilder] = {
    "stdlib": _text,
    "text_files": _text,
    "tokens": _tokens,
    "hf": hf_corpus,
    "custom": _custom,
}


def build_data(cfg: Any, seq_len: int, batch_size: int | None = None,
               cache_dir: str | Path | None = None) -> DataSource:
    """The data source a dataset config names, cut into windows of ``seq_len`` tokens.

    ``cache_dir`` is the run directory, where tokenized text is cached (``tokenizer=bpe``,
    ``dataset=hf``). Raises FlopsFitError for a missing path, a binary file given as text, an
    empty corpus, or (given ``batch_size``) a training split smaller than one batch.
    """
    cache = Path(cache_dir) if cache_dir is not None else None
    name = getattr(cfg, "name", None)
    builder = SOURCES.get(name) if isinstance(name, str) else None
    if builder is None:
        *first, last = SOURCES
        raise FlopsFitError(f"Unknown dataset name {name!r}; use dataset={', '.join(first)} "
                            f"or {last}.")
    data = builder(cfg, seq_len, cache)
    if batch_size is not None:
        data.check_batch(batch_size)
    return data
