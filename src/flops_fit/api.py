"""``find_optimal()``: the whole job from one Python call.

It builds the same :class:`~flops_fit.config.settings.Settings` the command line builds (its keyword
defaults are the config dataclasses' defaults, so ``find_optimal(GPT, "width")`` plans the
sweep ``flops-fit plan`` plans) and calls the same stage functions: plan → train → analyze →
visualize → :class:`Result` (or the :class:`SweepPlan` alone with ``train=False``). Everything
is written below ``output_dir``, so a later ``Result.load(output_dir)`` — or the command line —
picks it up, and a second call resumes instead of retraining.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn
from rich.console import Console

from flops_fit.config import (
    AnalysisConfig,
    BudgetsConfig,
    ModelConfig,
    PredictConfig,
    Settings,
    TrainConfig,
    TuneConfig,
)
from flops_fit.config.reading import class_path
from flops_fit.planning.contracts import validate_loss_fn
from flops_fit.planning.planner import SweepPlan, default_size_grid
from flops_fit.result import Result
from flops_fit.stages.pipeline import (
    analyze_command,
    check_settings,
    draw,
    make_plan,
    train_command,
    tune_unless_tuned,
)

_B = BudgetsConfig


def _model_config(model_cls: type[nn.Module], size_param: str,
                  model_kwargs: dict[str, Any] | None) -> ModelConfig:
    """The default model's config when ``model_cls`` is it (unless kwargs are given)."""
    default = ModelConfig()
    if model_kwargs is None and (class_path(model_cls), size_param) == (default._target_,
                                                                        default.size_param):
        return default
    return ModelConfig(_target_=class_path(model_cls), size_param=size_param,
                       kwargs=dict(model_kwargs or {}))


def find_optimal(
    model_cls: type[nn.Module],
    model_size_param: str,
    model_kwargs: dict[str, Any] | None = None,
    dataset: Any = None,
    loss_fn: Callable[[Any, Any], Any] | None = None,
    compute_budgets: Sequence[float] | None = None,
    train: bool = False,
    output_dir: str | Path = "outputs/find_optimal",
    *,
    sizes: Sequence[int] | None = None,
    sizes_per_budget: int = _B.sizes_per_budget,
    span: float = _B.span,
    tokens_per_param: float = _B.tokens_per_param,
    min_steps: int = _B.min_steps,
    exponent: float | None = _B.exponent,
    train_config: TrainConfig | None = None,
    analysis_config: AnalysisConfig | None = None,
    predict_budget: float | None = None,
    overwrite: bool = False,
    tune: bool = False,
    tune_config: TuneConfig | None = None,
    console: Console | None = None,
) -> SweepPlan | Result:
    """Plan (and with ``train=True`` run and fit) an IsoFLOP sweep of ``model_cls``.

    Args:
        model_cls: an ``nn.Module`` class; ``model_cls(**model_kwargs, **{model_size_param: s})``
            builds the model of size ``s`` (an integer).
        model_size_param: the constructor argument that sets the size.
        model_kwargs: the other constructor arguments (None: the config's, for the default GPT).
        dataset: a torch ``Dataset`` or ``DataLoader`` of ``(input, target)`` pairs; None means
            the built-in byte-level corpus (then the model maps (B, T) bytes to (B, T, 256)).
        loss_fn: ``loss_fn(output, target) -> scalar tensor``; None means token cross-entropy.
        compute_budgets: training FLOPs per budget (default: the command line's, ``budgets=cpu``).
        train: False returns the :class:`SweepPlan` only; True trains, fits and draws.
        output_dir: the run directory (plan.json, runs/, results.json, analysis/, plots/).
        sizes: candidate size values (default: the config's range for the default GPT, else
            1..64, then ~4% steps up to 65536).
        sizes_per_budget, span, tokens_per_param, min_steps, exponent: as ``budgets.*``.
        train_config: batch size, schedule, device, ...
        (:class:`flops_fit.config.settings.TrainConfig`).
        analysis_config: :class:`flops_fit.config.settings.AnalysisConfig`.
        predict_budget: the budget the report predicts for (default: 100x the largest).
        overwrite: re-plan a run directory whose results come from another plan.
        tune: with ``train=True``, first find the peak LR per size (``flops-fit tune``; skipped
            when the run directory already has tuning.json); the sweep then trains with it.
        tune_config: how to tune (:class:`flops_fit.config.settings.TuneConfig`).

    Returns:
        A :class:`SweepPlan` (``train=False``) or a :class:`Result` (``train=True``).
    """
    console = console or Console(highlight=False)
    model = _model_config(model_cls, model_size_param, model_kwargs)
    default = ModelConfig()
    if sizes is None and (model._target_, model.size_param) != (default._target_,
                                                                 default.size_param):
        sizes = default_size_grid()
    budgets = BudgetsConfig(
        values=[float(c) for c in compute_budgets] if compute_budgets is not None
        else BudgetsConfig().values,
        sizes_per_budget=sizes_per_budget, span=span, tokens_per_param=tokens_per_param,
        exponent=exponent, min_steps=min_steps)
    s = Settings(
        run_dir=Path(output_dir), model=model, budgets=budgets,
        train=dataclasses.replace(train_config) if train_config else TrainConfig(),
        analysis=analysis_config or AnalysisConfig(), predict=PredictConfig(predict_budget),
        overwrite=overwrite, model_cls=model_cls, data=dataset, loss_fn=loss_fn,
        sizes=list(sizes) if sizes else None, tune=tune_config or TuneConfig(),
    )
    if loss_fn is not None:
        validate_loss_fn(loss_fn)
    check_settings(s)
    if not train:
        return make_plan(s)
    if tune:
        tune_unless_tuned(s, console)
    train_command(s, console)
    analyze_command(s, console)
    draw(s.run_dir, predict_budget)  # plots/ and report.html
    return Result.load(s.run_dir)
