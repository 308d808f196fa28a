"""The dataset registries: one config class (DATASET_CLASSES) and one builder (SOURCES) per kind."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pytest
import torch

from flops_fit import data as data_pkg
from flops_fit.config import (
    DATASET_CLASSES,
    DatasetConfig,
    TokensDatasetConfig,
    settings_from_mapping,
)
from flops_fit.config import datasets as config_datasets
from flops_fit.data import SOURCES, ByteCorpus, TokenCorpus, build_data
from flops_fit.errors import FlopsFitError
from flops_fit.stages.pipeline import make_plan


def test_every_dataset_kind_has_a_config_class_and_a_builder():
    assert set(SOURCES) == set(DATASET_CLASSES)


def test_the_builder_is_chosen_by_the_datasets_name():
    assert isinstance(build_data(DatasetConfig(max_bytes=400_000), 32), ByteCorpus)
    with pytest.raises(FlopsFitError) as exc:
        build_data(DatasetConfig(name="nope"), 32)
    assert str(exc.value) == ("Unknown dataset name 'nope'; use dataset=stdlib, text_files, "
                              "tokens, hf or custom.")
    assert issubclass(TokenCorpus, ByteCorpus)  # tokens: its own builder (test_datasets.py)
    assert SOURCES["tokens"] is not SOURCES["stdlib"]
    assert TokensDatasetConfig().name == "tokens"


@dataclass
class ToyDatasetConfig:
    """A toy kind: a repeating byte ramp, ``period`` long."""

    name: str = "toy"
    period: int = 7
    vocab_size: int = 256

    def check(self) -> None:
        if self.period < 2:
            raise FlopsFitError("dataset.period must be at least 2.")

    def identity(self) -> dict:
        return asdict(self)


def _toy_source(cfg: ToyDatasetConfig, seq_len: int, cache) -> ByteCorpus:
    ramp = (torch.arange(20_000) % cfg.period).to(torch.uint8)
    return ByteCorpus(ramp[:18_000], ramp[18_000:], seq_len, name="toy")


def test_a_new_dataset_kind_is_a_config_class_and_a_builder_line(monkeypatch, tmp_path):
    # one line in each registry, nothing else: the YAML mapping reaches the toy source
    monkeypatch.setitem(config_datasets.DATASET_CLASSES, "toy", ToyDatasetConfig)
    monkeypatch.setitem(data_pkg.SOURCES, "toy", _toy_source)
    s = settings_from_mapping({"run_dir": str(tmp_path / "run"),
                               "dataset": {"name": "toy", "period": 5}})
    assert isinstance(s.dataset, ToyDatasetConfig) and s.dataset.period == 5
    source = build_data(s.dataset, 16, batch_size=4, cache_dir=tmp_path)
    x, y = source.train_batch(4)
    assert source.name == "toy" and x.shape == (4, 16)
    assert torch.equal((x.long() + 1) % 5, y.long())  # the ramp: each byte's successor
    plan = make_plan(s)  # the planner checks the data and records the kind's identity
    assert plan.settings["dataset"] == {"name": "toy", "period": 5, "vocab_size": 256}
