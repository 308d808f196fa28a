"""Config composition: every option of every group composes and maps onto the dataclasses."""


import pytest
from hydra import compose, initialize_config_module

from conftest import CONF
from flops_fit.cli import COMMANDS, settings_from_cfg
from flops_fit.errors import FlopsFitError

CONF = CONF
GROUPS = ["model", "dataset", "budgets", "train", "analysis"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


#: the keys an option leaves to the user (``???``)
REQUIRED = {
    ("model", "custom"): ["model._target_=flops_fit.models.mlp_lm.MLPLM",
                          "model.size_param=hidden", "+model.kwargs.vocab_size=256"],
    ("dataset", "tokens"): ["dataset.vocab_size=256"],
    ("dataset", "custom"): ["dataset._target_=mydata.Pairs"],
}


def _compose(command="plan", overrides=()):
    with initialize_config_module(config_module="flops_fit.conf", version_base="1.3"):
        return compose(config_name=command, overrides=list(overrides), return_hydra_config=False)


def test_every_group_has_options():
    for g in GROUPS:
        assert list((CONF / g).glob("*.yaml")), g


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_option_composes_into_settings(group, option, tmp_path):
    overrides = [f"{group}={option}", f"run_dir={tmp_path}",
                 *REQUIRED.get((group, option), ())]
    if group == "dataset" and option in ("text_files", "tokens", "hf"):
        overrides.append(f"dataset.path={tmp_path}")
    cfg = _compose("plan", overrides)
    s = settings_from_cfg(cfg)
    assert s.run_dir == tmp_path
    if group == "budgets":
        assert s.budgets.checked_values() == sorted(s.budgets.values)
    if group == "model":
        cls = s.model.model_cls()
        assert s.model.size_param in cls.__init__.__code__.co_varnames


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_a_primary_config(command):
    cfg = _compose(command, ["run_dir=/tmp/x"])
    assert cfg.model.size_param
    assert cfg.budgets.values


def test_interpolations_tie_groups_together():
    cfg = _compose("plan", ["train.seq_len=64", "run_dir=/tmp/x"])
    s = settings_from_cfg(cfg)
    assert s.model.kwargs["seq_len"] == 64
    assert s.model.kwargs["vocab_size"] == s.dataset.vocab_size


def test_missing_dataset_path_is_one_sentence():
    cfg = _compose("plan", ["dataset=text_files", "run_dir=/tmp/x"])
    with pytest.raises(FlopsFitError, match="dataset.path has no value"):
        settings_from_cfg(cfg)


def test_the_datasets_vocab_size_reaches_a_custom_model_that_names_it():
    """model=custom: vocab_size comes from the dataset where the constructor names it and the
    kwargs leave it out; a model without it, or kwargs that set it, are left alone."""
    import torch.nn as nn

    from flops_fit.config import ModelConfig, Settings, TokensDatasetConfig

    class WithVocab(nn.Module):
        def __init__(self, vocab_size: int, width: int = 8) -> None:
            super().__init__()

    class WithoutVocab(nn.Module):
        def __init__(self, width: int = 8) -> None:
            super().__init__()

    s = Settings(model=ModelConfig(_target_="x.Y", size_param="width", kwargs={}),
                 dataset=TokensDatasetConfig(path="data", vocab_size=2048))
    assert s.model_kwargs(WithVocab) == {"vocab_size": 2048}
    assert s.model_kwargs(WithoutVocab) == {}
    s.model.kwargs = {"vocab_size": 512}
    assert s.model_kwargs(WithVocab) == {"vocab_size": 512}
