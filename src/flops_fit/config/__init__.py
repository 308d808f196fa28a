"""The settings of every stage: one dataclass per config group (the schema of ``conf/``).

:mod:`.sweep` holds what is trained (model, budgets, train), :mod:`.stages` the options of the
later stages (predict, validate, estimate, analysis, tune), :mod:`.datasets` one dataclass per
dataset kind, :mod:`.settings` the :class:`Settings` that holds them all, and :mod:`.reading`
the checked reading of a plain mapping into a dataclass.
"""

from flops_fit.config.datasets import (
    DATASET_CLASSES,
    AnyDatasetConfig,
    CustomDatasetConfig,
    DatasetConfig,
    HFDatasetConfig,
    TokensDatasetConfig,
    dataset_class,
)
from flops_fit.config.settings import Settings, settings_from_mapping
from flops_fit.config.stages import (
    PREDICT_MULTIPLE,
    VALIDATE_MULTIPLE,
    AnalysisConfig,
    EstimateConfig,
    PredictConfig,
    TuneConfig,
    ValidateConfig,
    checked_budgets,
    checked_number,
)
from flops_fit.config.sweep import MAX_BUDGET, MAX_STEPS, BudgetsConfig, ModelConfig, TrainConfig

__all__ = [
    "DATASET_CLASSES", "MAX_BUDGET", "MAX_STEPS", "PREDICT_MULTIPLE", "VALIDATE_MULTIPLE",
    "AnalysisConfig", "AnyDatasetConfig", "BudgetsConfig", "CustomDatasetConfig",
    "DatasetConfig", "EstimateConfig", "HFDatasetConfig", "ModelConfig", "PredictConfig",
    "Settings", "TokensDatasetConfig", "TrainConfig", "TuneConfig", "ValidateConfig",
    "checked_budgets", "checked_number", "dataset_class", "settings_from_mapping",
]
