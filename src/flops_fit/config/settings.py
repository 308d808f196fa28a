"""The settings of every stage: one dataclass per config group, the schema of ``conf/``.

``conf/<group>/*.yaml`` hold full presets and ``tests/test_config.py`` checks that the composed
default config equals these dataclasses' defaults, so a default is changed here and in the
default YAML together, or a test fails. ``cli.py`` turns Hydra's DictConfig into a
:class:`Settings` with :func:`settings_from_mapping`; ``api.find_optimal`` builds the same
object from keyword arguments. Every value is checked (type, then range) before any stage
writes anything: :meth:`Settings.check`.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch.nn as nn

from flops_fit.config.datasets import AnyDatasetConfig, DatasetConfig, dataset_class
from flops_fit.config.reading import from_mapping, need
from flops_fit.config.stages import (
    AnalysisConfig,
    EstimateConfig,
    PredictConfig,
    TuneConfig,
    ValidateConfig,
)
from flops_fit.config.sweep import BudgetsConfig, ModelConfig, TrainConfig
from flops_fit.errors import FlopsFitError

# --------------------------------------------------------------------------------------------
# All of it
# --------------------------------------------------------------------------------------------


@dataclass
class Settings:
    """Everything a stage needs: one field per config group plus the top-level keys.

    ``model_cls``, ``data``, ``loss_fn`` and ``sizes`` are for Python callers
    (:func:`flops_fit.find_optimal`): objects given directly instead of named by config.
    """

    run_dir: Path = Path("outputs/default")
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: AnyDatasetConfig = field(default_factory=DatasetConfig)
    budgets: BudgetsConfig = field(default_factory=BudgetsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    overwrite: bool = False  # re-plan over existing results (a dated copy of results.json kept)
    extend: bool = False  # plan: add the adaptive sizes the finished runs call for (adaptive.py)
    answer: Path | None = None  # train/plan: exactly the run of find-optimal's answer.yaml
    model_cls: type[nn.Module] | None = None
    data: Any = None
    loss_fn: Any = None
    sizes: list[int] | None = None

    GROUPS: typing.ClassVar[dict[str, type]] = {
        "model": ModelConfig, "dataset": DatasetConfig, "budgets": BudgetsConfig,
        "train": TrainConfig, "analysis": AnalysisConfig, "predict": PredictConfig,
        "validate": ValidateConfig, "estimate": EstimateConfig, "tune": TuneConfig}

    def check(self) -> Settings:
        """Check every value of every group (before anything is written); returns self."""
        need(str(self.run_dir).strip() not in ("", "."),
              "run_dir is empty; give the folder of the sweep, e.g. run_dir=outputs/first.")
        for name in ("model", "dataset", "budgets", "train", "predict", "validate", "estimate",
                     "tune"):
            getattr(self, name).check()
        return self

    def resolved_model_cls(self) -> type[nn.Module]:
        """The model class: the one given from Python, else ``model._target_`` imported."""
        return self.model_cls if self.model_cls is not None else self.model.model_cls()

    def model_kwargs(self, model_cls: type[nn.Module]) -> dict[str, Any]:
        """``model.kwargs``, with ``vocab_size`` from the dataset where the model's constructor
        names it and the kwargs leave it out (a user's ``model=custom``: the GPT preset passes
        ``${dataset.vocab_size}`` itself)."""
        kwargs = dict(self.model.kwargs)
        vocab = getattr(self.dataset, "vocab_size", None)
        if "vocab_size" not in kwargs and isinstance(vocab, int) and vocab >= 1:
            try:
                takes = "vocab_size" in inspect.signature(model_cls.__init__).parameters
            except (TypeError, ValueError):  # no signature to read: leave the kwargs alone
                takes = False
            if takes:
                kwargs["vocab_size"] = vocab
        return kwargs

    def candidate_sizes(self) -> list[int] | None:
        """The size values the planner may choose (None: its default grid)."""
        return list(self.sizes) if self.sizes else self.model.sizes()


def settings_from_mapping(c: dict[str, Any]) -> Settings:
    """A plain mapping (the composed, resolved config) -> checked :class:`Settings`."""
    top = {"run_dir", "overwrite", "extend", "answer", *Settings.GROUPS}
    unknown = sorted(set(c) - top)
    if unknown:  # a misspelled key added with `+` would otherwise be ignored silently
        raise FlopsFitError(
            f"Unknown config key(s) {', '.join(unknown)}; check the spelling "
            "(`flops-fit <command> --cfg job` prints every key)."
        )
    unknown = sorted(f"{group}.{key}" for group in ("predict", "validate", "estimate")
                     if isinstance(c.get(group), dict)
                     for key in set(c[group]) - {f.name for f in fields(Settings.GROUPS[group])})
    if unknown:  # keys of conf/base.yaml itself, so named in full
        raise FlopsFitError(
            f"Unknown config key(s) {', '.join(unknown)}; check the spelling "
            "(`flops-fit <command> --cfg job` prints every key)."
        )
    run_dir = c.get("run_dir")
    need(isinstance(run_dir, str) and run_dir.strip() != "",
          "run_dir is empty; give the folder of the sweep, e.g. run_dir=outputs/first.")
    overwrite = c.get("overwrite", False)
    need(isinstance(overwrite, bool), f"overwrite={overwrite!r} is not true or false.")
    extend = c.get("extend", False)
    need(isinstance(extend, bool), f"extend={extend!r} is not true or false.")
    groups = {name: from_mapping(cls, c.get(name) or {}, name)
              for name, cls in Settings.GROUPS.items() if name != "dataset"}
    dataset = c.get("dataset") or {}
    cls = dataset_class(dataset.get("name", "stdlib")) if isinstance(dataset, dict) else \
        DatasetConfig
    groups["dataset"] = from_mapping(cls, dataset, "dataset")
    answer = c.get("answer")
    need(answer is None or (isinstance(answer, str) and answer.strip() != ""),
         f"answer={answer!r} is not the path of an answer.yaml (find-optimal writes one).")
    return Settings(run_dir=Path(run_dir), overwrite=overwrite, extend=extend,
                    answer=Path(answer) if answer else None, **groups).check()
