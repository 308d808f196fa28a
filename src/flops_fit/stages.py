"""The stages as plain Python: each takes a :class:`Settings` and a rich Console.

``cli.py`` builds the Settings from Hydra's config; ``api.find_optimal`` and the tests build
them directly. Each stage reads only the files of the run directory and its settings, so any
stage can be re-run alone, from any working directory, at any time.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from flops_fit.config import BudgetsConfig, DatasetConfig, ModelConfig, TrainConfig
from flops_fit.errors import FlopsFitError
from flops_fit.planner import SweepPlan, plan_sweep
from flops_fit.rundir import atomic_write_json, file_lock, read_json

PLAN_FILE = "plan.json"


@dataclass
class Settings:
    """Everything a stage needs: one field per config group plus the top-level keys."""

    run_dir: Path
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    budgets: BudgetsConfig = field(default_factory=BudgetsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    analysis: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    predict_budget: float | None = None
    validate: dict[str, Any] = field(default_factory=dict)


def check_run_dir(run_dir: Path) -> Path:
    """The run directory as an absolute path; one sentence if it cannot be one."""
    run_dir = Path(run_dir).expanduser().absolute()
    if run_dir.exists() and not run_dir.is_dir():
        raise FlopsFitError(f"run_dir {run_dir} is a file, not a folder; choose another run_dir.")
    try:  # creating it is harmless (Hydra would), and the only reliable test, root included
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as exc:
        raise FlopsFitError(
            f"run_dir {run_dir} is not writable ({exc.strerror or exc}); choose a folder you "
            "can write to."
        ) from exc
    return run_dir


def make_plan(s: Settings) -> SweepPlan:
    """Plan the sweep the settings describe (nothing is written)."""
    model_cls = s.model.model_cls()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = plan_sweep(
            model_cls, s.model.size_param, dict(s.model.kwargs), s.budgets.checked_values(),
            sizes=s.model.sizes(), sizes_per_budget=s.budgets.sizes_per_budget,
            span=s.budgets.span, tokens_per_param=s.budgets.tokens_per_param,
            exponent=s.budgets.exponent, batch_size=s.train.batch_size,
            seq_len=s.train.seq_len, min_steps=s.budgets.min_steps,
            model_target=s.model._target_,
        )
    del caught  # the notes are in plan.warnings
    plan.settings["dataset"] = asdict(s.dataset)
    return plan


def _has_results(run_dir: Path) -> bool:
    return any((run_dir / "runs").glob("*/result.json"))


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def load_plan(run_dir: Path) -> SweepPlan:
    """Read ``run_dir/plan.json``; one sentence when it is missing or corrupt."""
    data = read_json(Path(run_dir) / PLAN_FILE, "plan")
    if not isinstance(data, dict):
        raise FlopsFitError(
            f"{Path(run_dir) / PLAN_FILE} is not a plan (expected an object with 'runs'); "
            "re-create it with `flops-fit plan overwrite=true`."
        )
    return SweepPlan.from_dict(data)


def plan_stage(s: Settings, console: Console | None = None) -> SweepPlan:
    """Plan and write ``plan.json`` atomically; refuse to orphan existing results."""
    console = console or Console()
    run_dir = check_run_dir(s.run_dir)
    plan = make_plan(s)
    path = run_dir / PLAN_FILE
    if path.exists() and not s.overwrite:
        try:
            old = load_plan(run_dir)
        except FlopsFitError:
            old = None  # a corrupt plan with results would be caught below
        same = old is not None and [r.run_id for r in old.runs] == [r.run_id for r in plan.runs]
        if not same and _has_results(run_dir):
            diff = _differences(
                {"model": old.model, "settings": old.settings} if old else {},
                {"model": plan.model, "settings": plan.settings},
            )
            raise FlopsFitError(
                f"{path} already has results from a different plan "
                f"({'; '.join(diff[:4]) or 'plan.json unreadable'}); use another run_dir, or "
                "add overwrite=true to replace the plan (old results stay under runs/)."
            )
    atomic_write_json(path, plan.to_dict())
    for note in plan.warnings:
        console.print(f"[yellow]warning:[/] {note}")
    console.print(plan.table(show_ids=console.width >= 110))
    console.print(f"Wrote {path}")
    return plan


def plan_or_load(s: Settings, console: Console) -> SweepPlan:
    """The plan in the run directory, planning it first (same settings) if there is none."""
    run_dir = check_run_dir(s.run_dir)
    with file_lock(run_dir / PLAN_FILE):  # the shards of a multirun start (and plan) together
        if (run_dir / PLAN_FILE).exists():
            return load_plan(run_dir)
        return plan_stage(s, console)


def train_command(s: Settings, console: Console) -> list[dict[str, Any]]:
    """Train every run of ``plan.json`` that is not complete (planning first if needed)."""
    from flops_fit.config import import_object
    from flops_fit.data import build_data
    from flops_fit.devices import pick_cuda_device, release_devices
    from flops_fit.trainer import check_train_config, train_stage

    check_train_config(s.train)  # bad train settings: one sentence before anything is written
    plan = plan_or_load(s, console)
    train = s.train
    # the plan fixed the batch shape; a config that disagrees does not change planned runs
    train.batch_size = int(plan.settings.get("batch_size", train.batch_size))
    train.seq_len = int(plan.settings.get("seq_len", train.seq_len))
    model_cls = import_object(plan.model["_target_"], "model")
    data = build_data(s.dataset, train.seq_len, train.batch_size)
    train.device = pick_cuda_device(train.device)  # one free GPU per job, before CUDA starts
    try:
        return train_stage(check_run_dir(s.run_dir), plan, model_cls, data, train,
                           console=console)
    finally:
        release_devices()  # a reused launcher worker must not keep this job's GPU


def analyze_command(s: Settings, console: Console):
    """Fit the scaling laws to ``results.json``; print them with intervals and the table."""
    from flops_fit.analyzer import AnalysisConfig, run_analysis
    from flops_fit.config import from_mapping

    config = from_mapping(AnalysisConfig, dict(s.analysis), "analysis")
    return run_analysis(check_run_dir(s.run_dir), config, config.table_budgets, console)


def visualize_command(s: Settings, console: Console) -> list:
    """Redraw every plot and ``report.html`` from the run directory's files alone."""
    figures, report = draw(check_run_dir(s.run_dir), s.predict_budget)
    console.print(f"Wrote {len(figures)} plots to {report.parent / 'plots'} and {report}")
    return figures


def draw(run_dir: Path, predict_budget: float | None = None) -> tuple[list, Path]:
    """Plots (PNG + SVG under plots/) and report.html of a fitted run directory."""
    from flops_fit.report import write_report
    from flops_fit.result import RESULTS_FILE, Result

    result = Result.load(run_dir)
    budget = predict_budget or _default_predict(result)
    figures = result.plot(predict_budget=budget)
    records = read_json(Path(run_dir) / RESULTS_FILE, "results")
    report = write_report(run_dir, figures, result.analysis, records,
                          extra={"predict_budget": budget})
    return figures, report


def _default_predict(result) -> float | None:
    return max(result.compute_budgets) * 100 if result.compute_budgets else None


def find_optimal_command(s: Settings, console: Console):
    """plan -> train -> analyze -> visualize, each skipping work already done; print the answer."""
    from flops_fit.result import Result

    train_command(s, console)
    analyze_command(s, console)
    visualize_command(s, console)
    result = Result.load(s.run_dir)
    budget = s.predict_budget or _default_predict(result)
    if budget:
        p = result.predict(float(budget))
        console.print(_prediction_line(p))
    return result


def _prediction_line(p: dict[str, Any]) -> str:
    def ci(key: str, fmt: str) -> str:
        lo_hi = p.get(f"{key}_ci")
        return f" [{format(lo_hi[0], fmt)}, {format(lo_hi[1], fmt)}]" if lo_hi else ""

    return (f"Compute-optimal at C={p['target_compute']:.3g} FLOPs: "
            f"N={p['optimal_params']:.3g}{ci('optimal_params', '.3g')} parameters, "
            f"D={p['optimal_tokens']:.3g}{ci('optimal_tokens', '.3g')} tokens "
            f"({p['tokens_per_param']:.1f} tokens/param), "
            f"loss {p['expected_loss']:.4f}{ci('expected_loss', '.4f')} (95% intervals)")


def validate_command(s: Settings, console: Console) -> dict[str, Any]:
    """Train the predicted optimum of a larger held-out budget and compare with the fit."""
    from flops_fit.config import import_object
    from flops_fit.data import build_data
    from flops_fit.devices import pick_cuda_device, release_devices
    from flops_fit.planner import default_size_grid
    from flops_fit.trainer import check_train_config
    from flops_fit.validate import validate_stage

    check_train_config(s.train)  # before validation/plan.json is written
    run_dir = check_run_dir(s.run_dir)
    plan = load_plan(run_dir)
    model_cls = import_object(plan.model["_target_"], "model")
    sizes = s.model.sizes() if s.model._target_ == plan.model["_target_"] else \
        default_size_grid()
    train = s.train
    train.batch_size = int(plan.settings.get("batch_size", train.batch_size))
    train.seq_len = int(plan.settings.get("seq_len", train.seq_len))
    data = build_data(s.dataset, train.seq_len, train.batch_size)
    train.device = pick_cuda_device(train.device)
    try:
        return validate_stage(run_dir, model_cls, sizes, data, train,
                              s.validate.get("budget"), bool(s.validate.get("neighbours", True)),
                              console)
    finally:
        release_devices()
