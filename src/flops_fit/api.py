"""``find_optimal()``: the whole job from one Python call.

validate the model (and dataset, loss) → plan → train → analyze → visualize → ``Result``
(or the ``SweepPlan`` alone with ``train=False``). Everything is written below ``output_dir``,
so a later ``Result.load(output_dir)`` — or the command line — picks it up, and a second call
resumes instead of retraining.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn
from rich.console import Console

from flops_fit.config import BudgetsConfig, DatasetConfig, TrainConfig
from flops_fit.errors import FlopsFitError
from flops_fit.planner import SweepPlan, plan_sweep
from flops_fit.result import Result
from flops_fit.validation import validate_model_contract


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
    sizes_per_budget: int = 5,
    span: float = 4.0,
    tokens_per_param: float = 20.0,
    min_steps: int = 200,
    train_config: TrainConfig | None = None,
    analysis_config: Any = None,
    predict_budget: float | None = None,
    console: Console | None = None,
) -> SweepPlan | Result:
    """Plan (and with ``train=True`` run and fit) an IsoFLOP sweep of ``model_cls``.

    Args:
        model_cls: an ``nn.Module`` class; ``model_cls(**model_kwargs, **{model_size_param: s})``
            builds the model of size ``s`` (an integer).
        model_size_param: the constructor argument that sets the size.
        dataset: a torch ``Dataset`` or ``DataLoader`` of ``(input, target)`` pairs; None means
            the built-in byte-level corpus (then the model maps (B, T) bytes to (B, T, 256)).
        loss_fn: ``loss_fn(output, target) -> scalar tensor``; None means token cross-entropy.
        compute_budgets: training FLOPs per budget (default: the default CPU sweep's).
        train: False returns the :class:`SweepPlan` only; True trains, fits and draws.
        output_dir: the run directory (plan.json, runs/, results.json, analysis/, plots/).
        sizes: candidate size values (default: 1..64, then ~4% steps up to 65536).
        min_steps: sizes whose run would train fewer optimizer steps are not planned.
        train_config: batch size, schedule, device, ... (:class:`flops_fit.config.TrainConfig`).
        analysis_config: :class:`flops_fit.analyzer.AnalysisConfig`.

    Returns:
        A :class:`SweepPlan` (``train=False``) or a :class:`Result` (``train=True``).
    """
    from flops_fit.data import as_data_source, build_data, validate_loss_fn

    console = console or Console(highlight=False)
    model_kwargs = dict(model_kwargs or {})
    tc = train_config or TrainConfig()
    budgets = list(compute_budgets) if compute_budgets is not None else BudgetsConfig().values
    validate_model_contract(model_cls, model_size_param, model_kwargs, sizes=list(sizes or [])
                            or None)

    example = None
    seq_len = tc.seq_len
    source = None
    if dataset is not None:
        source = as_data_source(dataset)
        example = source.example_input()
        is_tokens = example.dim() > 1 and not example.dtype.is_floating_point
        seq_len = int(example.shape[1]) if is_tokens else 1
    if loss_fn is not None:
        validate_loss_fn(loss_fn)

    plan = plan_sweep(
        model_cls, model_size_param, model_kwargs, budgets, sizes=list(sizes) if sizes else None,
        sizes_per_budget=sizes_per_budget, span=span, tokens_per_param=tokens_per_param,
        batch_size=tc.batch_size, seq_len=seq_len, min_steps=min_steps, example_input=example,
    )
    if not train:
        return plan

    from flops_fit.analyzer import AnalysisConfig, ScalingLawAnalyzer
    from flops_fit.rundir import atomic_write_json
    from flops_fit.stages import PLAN_FILE, check_run_dir, draw, load_plan
    from flops_fit.trainer import train_stage

    run_dir = check_run_dir(Path(output_dir))
    if (run_dir / PLAN_FILE).exists():
        old = load_plan(run_dir)
        if [r.run_id for r in old.runs] != [r.run_id for r in plan.runs] and any(
            (run_dir / "runs").glob("*/result.json")
        ):
            raise FlopsFitError(
                f"{run_dir} holds results of a different plan; pass another output_dir."
            )
    atomic_write_json(run_dir / PLAN_FILE, plan.to_dict())
    tc.seq_len = seq_len
    data = source if source is not None else build_data(DatasetConfig(), seq_len, tc.batch_size)
    train_stage(run_dir, plan, model_cls, data, tc, loss_fn=loss_fn, console=console)

    config = analysis_config or AnalysisConfig()
    ScalingLawAnalyzer(run_dir / "results.json", run_dir / "analysis", config).analyze()
    draw(run_dir, predict_budget or max(budgets) * 100)  # plots/ and report.html
    return Result.load(run_dir)
