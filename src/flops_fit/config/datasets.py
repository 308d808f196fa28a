"""The ``dataset`` config group: one dataclass per option of ``conf/dataset/`` (re-exported by
:mod:`flops_fit.config.settings`, which picks the class by ``dataset.name``: :func:`dataset_class`).

Each class has ``check()`` (one sentence per impossible value) and ``identity()`` (what
plan.json records, and what joins every run id's hash: every setting that changes the data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from flops_fit.config.reading import need

#: text tokenizers of the text datasets (stdlib, text_files, hf): raw bytes or a byte-level BPE
TEXT_TOKENIZERS = ("bytes", "bpe")
#: token id dtypes of dataset=tokens files (nanoGPT's convention)
TOKEN_DTYPES = ("uint16", "uint32")


def _check_text_vocab(tokenizer: str, vocab_size: int, bpe_vocab_size: int,
                      custom_ok: bool = False) -> None:
    """One sentence when the model's vocabulary cannot hold the tokenizer's ids."""
    if tokenizer == "bytes":
        need(vocab_size >= 256, f"dataset.vocab_size={vocab_size} is too small for byte-level "
             "text; set it to 256 (or dataset.tokenizer=bpe).")
    elif tokenizer == "bpe":
        need(bpe_vocab_size >= 260, f"dataset.bpe_vocab_size={bpe_vocab_size} must be at least "
             "260 (the 256 bytes plus merges), e.g. 4096.")
        need(vocab_size >= bpe_vocab_size, f"dataset.vocab_size={vocab_size} is smaller than "
             f"dataset.bpe_vocab_size={bpe_vocab_size}; leave vocab_size unset (it follows "
             "bpe_vocab_size) or raise it.")
    else:
        need(custom_ok, f"dataset.tokenizer={tokenizer!r} is unknown; use bytes or bpe.")
        need(vocab_size >= 1, f"dataset.tokenizer={tokenizer} needs dataset.vocab_size, the "
             "tokenizer's vocabulary size (e.g. dataset.vocab_size=50304).")


@dataclass
class DatasetConfig:
    """``conf/dataset/{stdlib,text_files}.yaml``: the built-in stdlib corpus or a user's text.

    The other options have their own classes (:data:`DATASET_CLASSES`), chosen by ``name``.
    """

    name: str = "stdlib"
    path: str | None = None  # a text file or folder for name=text_files
    pattern: str = "*.py"  # which files of a folder to read
    max_bytes: int = 32_000_000  # cap on the corpus held in memory
    val_fraction: float = 0.05  # share of files held out for validation
    vocab_size: int = 256  # the model's vocabulary (256 for bytes, bpe_vocab_size for bpe)
    tokenizer: str = "bytes"  # bytes | bpe (a byte-level BPE trained on the training split)
    bpe_vocab_size: int = 4096

    def check(self) -> None:
        """One sentence for each impossible setting."""
        need(self.name in ("stdlib", "text_files"),
              f"dataset.name={self.name!r} is unknown; use {', '.join(DATASET_CLASSES)}.")
        need(self.name != "text_files" or bool(self.path),
              "dataset=text_files needs dataset.path=/your/text/folder.")
        need(self.max_bytes >= 1, f"dataset.max_bytes={self.max_bytes} must be at least 1.")
        need(0 < self.val_fraction < 1,
              f"dataset.val_fraction={self.val_fraction} must lie strictly between 0 and 1.")
        need(self.vocab_size >= 1, f"dataset.vocab_size={self.vocab_size} must be at least 1.")
        _check_text_vocab(self.tokenizer, self.vocab_size, self.bpe_vocab_size)

    def identity(self) -> dict[str, Any]:
        """What plan.json records of the data (``plan.settings["dataset"]``)."""
        out = asdict(self)
        if self.tokenizer == "bytes":  # as before the tokenizer existed: old plans still match
            del out["tokenizer"], out["bpe_vocab_size"]
        return out


@dataclass
class TokensDatasetConfig:
    """``conf/dataset/tokens.yaml``: nanoGPT-style token ids, ``path/train.bin`` and
    ``path/val.bin``, memory-mapped (never loaded whole)."""

    name: str = "tokens"
    path: str | None = None  # the folder holding train.bin and val.bin
    dtype: str = "uint16"  # uint16 | uint32: how the ids are stored
    vocab_size: int = 0  # the model's vocabulary: every id must be below it

    def check(self) -> None:
        """One sentence for each impossible setting."""
        need(bool(self.path), "dataset=tokens needs dataset.path=/your/folder holding train.bin "
              "and val.bin.")
        need(self.dtype in TOKEN_DTYPES,
              f"dataset.dtype={self.dtype!r} is unknown; use uint16 or uint32.")
        need(self.vocab_size >= 2, f"dataset.vocab_size={self.vocab_size} is not set; give the "
              "tokenizer's vocabulary size, e.g. dataset.vocab_size=50304.")

    def identity(self) -> dict[str, Any]:
        """What plan.json records of the data."""
        return asdict(self)


@dataclass
class HFDatasetConfig:
    """``conf/dataset/hf.yaml``: a Hugging Face dataset (``save_to_disk`` folder, or parquet /
    jsonl files), tokenized once into a memmap cache in the run directory (needs ``[hf]``)."""

    name: str = "hf"
    path: str | None = None  # a save_to_disk folder, a parquet/jsonl file, or a folder of them
    split: str = "train"  # which split of a DatasetDict
    column: str = "text"  # a text column, or a column of token id lists
    tokenizer: str = "bytes"  # bytes | bpe | /path/to/tokenizer.json (text columns)
    bpe_vocab_size: int = 4096
    vocab_size: int = 256  # follows the tokenizer (bytes, bpe); set it for ids or a json
    val_fraction: float = 0.05  # the last share of rows is held out
    max_rows: int | None = None  # read at most this many rows (null: all)

    def check(self) -> None:
        """One sentence for each impossible setting."""
        need(bool(self.path), "dataset=hf needs dataset.path=/your/dataset (a save_to_disk "
              "folder, or parquet/jsonl files).")
        need(bool(self.column), "dataset.column is empty; name the text or token-id column.")
        need(0 < self.val_fraction < 1,
              f"dataset.val_fraction={self.val_fraction} must lie strictly between 0 and 1.")
        need(self.max_rows is None or self.max_rows >= 2,
              f"dataset.max_rows={self.max_rows} must be at least 2 (or null).")
        _check_text_vocab(self.tokenizer, self.vocab_size, self.bpe_vocab_size, custom_ok=True)

    def identity(self) -> dict[str, Any]:
        """What plan.json records of the data."""
        return asdict(self)


#: the losses ``dataset=custom`` may name (anything else: a dotted path to a callable)
CUSTOM_LOSSES = ("cross_entropy", "mse")


@dataclass
class CustomDatasetConfig:
    """``conf/dataset/custom.yaml``: ``_target_(**kwargs)`` returns the user's torch Dataset or
    DataLoader of ``(input, target)`` pairs; ``loss`` says how outputs are scored."""

    name: str = "custom"
    _target_: str = ""  # pkg.module.Factory (a Dataset class or a function)
    kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "cross_entropy"  # cross_entropy | mse | pkg.module.loss_fn
    val_fraction: float = 0.05  # held-out share of the samples
    vocab_size: int = 256  # for models that take it (the GPT preset interpolates it)

    def check(self) -> None:
        """One sentence for each impossible setting."""
        need(bool(self._target_), "dataset=custom needs dataset._target_=pkg.module.Factory "
              "returning a torch Dataset or DataLoader of (input, target) pairs.")
        need(self.loss in CUSTOM_LOSSES or "." in self.loss,
              f"dataset.loss={self.loss!r} is unknown; use cross_entropy, mse or a dotted path "
              "to loss_fn(output, target).")
        need(0 < self.val_fraction < 1,
              f"dataset.val_fraction={self.val_fraction} must lie strictly between 0 and 1.")

    def identity(self) -> dict[str, Any]:
        """What plan.json records of the data: every setting that changes it."""
        return asdict(self)


#: ``dataset=<name>`` -> its config class
DATASET_CLASSES: dict[str, type] = {
    "stdlib": DatasetConfig, "text_files": DatasetConfig, "tokens": TokensDatasetConfig,
    "hf": HFDatasetConfig, "custom": CustomDatasetConfig}
AnyDatasetConfig = DatasetConfig | TokensDatasetConfig | HFDatasetConfig | CustomDatasetConfig


def dataset_class(name: Any) -> type:
    """The config class of ``dataset.name``; one sentence for an unknown one."""
    need(isinstance(name, str) and name in DATASET_CLASSES,
          f"dataset.name={name!r} is unknown; choose "
          f"dataset={' | dataset='.join(DATASET_CLASSES)}.")
    return DATASET_CLASSES[name]
