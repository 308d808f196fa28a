"""Training data. Every source implements :class:`DataSource`, which is all the trainer sees:

* ``seed(seed)`` — reset the sampling RNG at the start of a run;
* ``train_batch(batch_size) -> (input, target)`` — the next random training batch;
* ``val_batches(n_tokens, batch_size)`` — fixed held-out batches, the same for every run;
* ``state_dict()`` / ``load_state_dict()`` — the sampler's state, stored in checkpoints so a
  resumed run draws exactly the batches an uninterrupted one would.

The options of ``conf/dataset/`` (one config class each, :data:`flops_fit.config.settings.DATASET_CLASSES`):

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

from pathlib import Path
from typing import Any

from flops_fit.config import (
    CustomDatasetConfig,
    DatasetConfig,
    HFDatasetConfig,
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

__all__ = ["Batch", "ByteCorpus", "DataSource", "TokenCorpus", "TorchDataSource",
           "as_data_source", "binary_reason", "build_custom", "build_data", "corpus_tensors",
           "custom_loss"]


def build_data(cfg: Any, seq_len: int, batch_size: int | None = None,
               cache_dir: str | Path | None = None) -> DataSource:
    """The data source a dataset config names, cut into windows of ``seq_len`` tokens.

    ``cache_dir`` is the run directory, where tokenized text is cached (``tokenizer=bpe``,
    ``dataset=hf``). Raises FlopsFitError for a missing path, a binary file given as text, an
    empty corpus, or (given ``batch_size``) a training split smaller than one batch.
    """
    cache = Path(cache_dir) if cache_dir is not None else None
    data: DataSource
    if isinstance(cfg, TokensDatasetConfig):
        data = token_corpus(cfg.path, cfg.dtype, cfg.vocab_size, seq_len)
    elif isinstance(cfg, HFDatasetConfig):
        data = hf_corpus(cfg, seq_len, cache)
    elif isinstance(cfg, CustomDatasetConfig):
        data = TorchDataSource(build_custom(cfg), val_fraction=cfg.val_fraction)
    elif isinstance(cfg, DatasetConfig) and cfg.tokenizer == "bpe":
        data = bpe_corpus(cfg, seq_len, cache)
    else:
        data = byte_corpus(cfg, seq_len)
    if batch_size is not None:
        data.check_batch(batch_size)
    return data
