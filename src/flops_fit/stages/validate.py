"""Prove the prediction: train the predicted optimum of a larger, held-out budget and compare.

``validate_stage`` takes the fitted laws of a run directory, plans the compute-optimal run for
budget C (the size value nearest to N_opt(C) in log N) and, optionally, one size on each side
(about ``spread`` = 1.5x smaller and larger: near enough that a real optimum beats both, far
enough to be another size of the default GPT's grid), trains them like any run into
``run_dir/validation/`` (same resume and sharding rules), and writes
``analysis/validation.json``: predicted vs. achieved loss with the interval, whether the
predicted optimum was the best of the three, and the other approach's prediction beside it.
With ``validate.seeds`` = k > 1 the predicted optimum is trained k times, each run with its own
seed, and the achieved loss is their mean (one run 4x beyond the default sweep scatters by
about 1%, as much as the errors the check reports).

The interval is a *prediction* interval: the bootstrap interval of the predicted loss widened
by the scatter of the sweep's own runs around the fitted law (1.96 standard deviations of
log-loss residuals, divided by sqrt(k) for the mean of k runs), since new runs have that noise
too.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn
from rich.console import Console

from flops_fit.analysis.laws import parametric_surface, residual_sigma
from flops_fit.analysis.scaling_analysis import ScalingAnalysis
from flops_fit.config import ValidateConfig
from flops_fit.errors import FlopsFitError
from flops_fit.planning.flops import count_params
from flops_fit.planning.planner import SweepPlan, default_size_grid, make_run
from flops_fit.planning.plans import load_plan
from flops_fit.result import Result
from flops_fit.rundir.io import atomic_write_json, read_json
from flops_fit.rundir.layout import Layout
from flops_fit.rundir.records import ValidationOutcome
from flops_fit.training.sweep import train_stage


def _nearest(sizes: list[int], log_n: np.ndarray, target: float) -> int:
    return int(np.argmin(np.abs(log_n - math.log(target))))


def plan_validation(
    plan: SweepPlan, model_cls: type[nn.Module], sizes: list[int], prediction: Mapping[str, Any],
    budget: float, neighbours: bool = True, spread: float = 1.5, seeds: int = 1,
) -> SweepPlan:
    """The validation runs: the size nearest to N_opt(C) (``seeds`` times, each with its own
    seed), plus one each side if asked.

    They are planned with the sweep's batch shape and data/train context (from plan.json).
    """
    size_param, kwargs = plan.model["size_param"], dict(plan.model.get("kwargs", {}))
    valid, counts = [], []
    n_opt = float(prediction["optimal_params"])
    for s in sorted(sizes):
        try:
            counts.append(count_params(model_cls, {**kwargs, size_param: s})[0])
            valid.append(s)
        except Exception:
            continue
        if counts[-1] > 4 * spread * n_opt and len(valid) >= 2:
            break  # larger sizes are not chosen: never build them (a depth-sized model)
    log_n = np.log(np.asarray(counts, dtype=float))
    centre = _nearest(valid, log_n, n_opt)
    chosen = [centre]
    if neighbours:
        below = _nearest(valid, log_n, n_opt / spread)
        above = _nearest(valid, log_n, n_opt * spread)
        chosen += [i for i in (below if below < centre else centre - 1,
                               above if above > centre else centre + 1)
                   if 0 <= i < len(valid)]
    st = plan.settings
    batch_size, seq_len = int(st["batch_size"]), int(st["seq_len"])
    context = {k: st[k] for k in ("dataset", "train") if k in st} or None
    runs = [make_run(model_cls, size_param, kwargs, valid[i], budget, plan.model["_target_"],
                     batch_size, seq_len, batch_size * seq_len, context=context,
                     repeat=k)
            for i in sorted(set(chosen)) for k in range(seeds if i == centre else 1)]
    return SweepPlan(runs, plan.model, {**st, "compute_budgets": [budget],
                                        "purpose": "validation", "predicted_size":
                                        valid[centre]})


def _residual_sigma(analysis: ScalingAnalysis, records: list[dict[str, Any]]) -> float:
    """Std of log(observed / fitted) loss over the sweep's completed runs (parametric fit)."""
    done = [r for r in records if r.get("status") == "completed" and r.get("final_loss")]
    if not analysis.parametric.available or len(done) < 3:
        return 0.0
    n = np.array([float(r["num_params"]) for r in done])
    d = np.array([float(r["num_tokens"]) for r in done])
    obs = np.array([float(r["final_loss"]) for r in done])
    return residual_sigma(analysis.parametric, n, d, obs)


def outcome(analysis: ScalingAnalysis, records: list[dict[str, Any]], vplan: SweepPlan,
            vrecords: list[dict[str, Any]], budget: float) -> ValidationOutcome:
    """validation.json: predicted vs. achieved, the interval, and best-of-three.

    The achieved loss is the mean over the predicted optimum's seeds (``achieved_losses``),
    and the prediction interval is that of a mean of as many runs. Best-of-three compares the
    sizes like for like: each by its mean over the seeds every size has (the first seed,
    unless the neighbours were trained with more).
    """
    by_id = {r["run_id"]: r for r in vrecords}
    centre_size = vplan.settings.get("predicted_size")
    runs = []
    for spec in vplan.runs:
        r = by_id.get(spec.run_id, {})
        runs.append({"run_id": spec.run_id, "size_value": spec.size_value,
                     "num_params": spec.num_params, "num_tokens": spec.num_tokens,
                     "repeat": spec.repeat,
                     "status": r.get("status", "pending"), "final_loss": r.get("final_loss"),
                     "predicted_optimum": spec.size_value == centre_size})
    done = [r for r in runs if r["status"] == "completed" and r["final_loss"] is not None]
    losses: dict[int, list[float]] = {}
    for r in sorted(done, key=lambda r: r["repeat"]):
        losses.setdefault(r["size_value"], []).append(float(r["final_loss"]))
    common = min((len(v) for v in losses.values()), default=0)
    mean = {size: float(np.mean(v[:common])) for size, v in losses.items()}  # like for like
    achieved_losses = losses.get(centre_size, [])
    achieved = float(np.mean(achieved_losses)) if achieved_losses else None
    pred = analysis.predict_optimal_size(budget).with_scatter(
        _residual_sigma(analysis, records), runs=max(1, len(achieved_losses)))
    interval = pred.prediction_interval
    centre = next(r for r in runs if r["predicted_optimum"])
    p = analysis.parametric
    at_run = None
    if p.available:
        at_run = float(parametric_surface(p, centre["num_params"], centre["num_tokens"]))
    best_size = min(mean, key=mean.get) if mean else None
    best_loss = None if best_size is None else mean[best_size]
    rel = None if achieved is None else (achieved - pred.expected_loss) / achieved
    # the other approach's prediction at the same budget, scored against the best run tried
    others: dict[str, Any] = {}
    for method in analysis.sections:
        if method == pred.method:
            continue
        try:
            o = analysis.predict_optimal_size(budget, method=method)
        except FlopsFitError:
            continue
        others[method] = {
            "predicted_params": o.optimal_params, "predicted_loss": o.expected_loss,
            "predicted_loss_ci": o.expected_loss_ci,
            "relative_error_vs_best": None if best_loss is None
            else (best_loss - o.expected_loss) / best_loss}
    return ValidationOutcome(
        compute_budget=budget,
        largest_sweep_budget=max(float(r["compute_budget"]) for r in records),
        method=pred.method,
        predicted_params=pred.optimal_params,
        predicted_tokens=pred.optimal_tokens,
        predicted_loss=pred.expected_loss,
        predicted_loss_ci=pred.expected_loss_ci,
        prediction_interval=interval,
        residual_sigma_log=pred.residual_sigma_log,
        predicted_loss_at_run=at_run,
        achieved_loss=achieved,
        relative_error=rel,
        within_interval=None if achieved is None else interval[0] <= achieved <= interval[1],
        predicted_optimum_was_best=None if best_size is None or len(mean) < 2
        else best_size == centre_size,
        best_loss=best_loss,
        other_methods=others,
        runs=runs,
        achieved_losses=achieved_losses,
    )


def validate_stage(run_dir: Path, model_cls: type[nn.Module], sizes: list[int] | None,
                   data: Any, train_cfg: Any, budget: float | None, neighbours: bool,
                   console: Console, lr_rule: str | None = None,
                   loss_fn: Any = None, seeds: int = 1) -> dict[str, Any]:
    """Plan, train and compare (see the module docstring). Returns validation.json's content.

    ``loss_fn``: the sweep's loss (None: token cross-entropy), so the held-out runs are
    scored as the sweep's were.

    ``sizes``: the model's candidate sizes (None: :func:`default_size_grid`).
    """
    lay = Layout(Path(run_dir))
    result = Result.load(run_dir)
    plan = load_plan(run_dir)
    records = read_json(lay.results, "results")
    largest = max(plan.compute_budgets)
    cfg = ValidateConfig(budget, neighbours, seeds)
    cfg.check()
    budget = cfg.budget_for(largest)
    if budget <= largest:
        console.print(f"[yellow]warning:[/] validate.budget={budget:.3g} is not beyond the "
                      f"sweep's largest budget {largest:.3g}: this checks interpolation only.")
    pred = result.predict(budget)
    vplan = plan_validation(plan, model_cls, sizes or default_size_grid(), pred, budget,
                            neighbours, seeds=cfg.seeds)
    vdir = lay.validation_dir
    vdir.mkdir(parents=True, exist_ok=True)
    if Layout(vdir).plan.exists():
        old = load_plan(vdir)
        if {r.run_id for r in old.runs} - {r.run_id for r in vplan.runs}:
            console.print("[yellow]note:[/] the validation plan changed since the last one (a "
                          "new fit, validate.budget or fewer validate.seeds); finished runs are "
                          "kept under runs/.")
    atomic_write_json(Layout(vdir).plan, vplan.to_dict())
    console.print(f"Validating at C={budget:.3g} ({budget / largest:.3g}x the largest budget): "
                  f"predicted N_opt={pred['optimal_params']:.3g}, loss "
                  f"{pred['expected_loss']:.4f}; training {len(vplan.runs)} run(s).")
    train_stage(vdir, vplan, model_cls, data, train_cfg, loss_fn=loss_fn, console=console,
                lr_rule=lr_rule)
    vrecords = read_json(Layout(vdir).results, "validation results")
    out = outcome(result.analysis, records, vplan, vrecords, budget).to_dict()
    atomic_write_json(lay.validation, out)  # read back by rundir.records.read_validation
    console.print(describe(out), soft_wrap=True)
    return out


def describe(v: dict[str, Any]) -> str:
    """The validation outcome in a few lines."""
    lines = [f"Validation at C={v['compute_budget']:.3g} FLOPs "
             f"({v['compute_budget'] / v['largest_sweep_budget']:.3g}x the sweep's largest):"]
    trained = Counter(r["size_value"] for r in v["runs"])  # a size trained with several seeds
    for r in v["runs"]:
        mark = "  <- predicted optimum" if r["predicted_optimum"] else ""
        seed = f" (seed {r.get('repeat', 0) + 1})" if trained[r["size_value"]] > 1 else ""
        loss = "pending" if r["final_loss"] is None else f"{r['final_loss']:.4f}"
        lines.append(f"  size {r['size_value']:>5}  N={r['num_params']:>11,}  "
                     f"D={r['num_tokens']:>12,}  loss {loss}{seed}{mark}")
    lo, hi = v["prediction_interval"]
    if v["achieved_loss"] is not None:
        several = v.get("achieved_losses") or []
        what = (f"achieved {v['achieved_loss']:.4f} (mean of {len(several)} seeds, sd "
                f"{float(np.std(several, ddof=1)):.4f})" if len(several) > 1
                else f"achieved {v['achieved_loss']:.4f}")
        lines.append(
            f"  predicted loss {v['predicted_loss']:.4f} (95% prediction interval "
            f"[{lo:.4f}, {hi:.4f}]), {what}: relative error "
            f"{v['relative_error']:+.2%}, {'inside' if v['within_interval'] else 'OUTSIDE'} "
            "the interval")
    if v["predicted_optimum_was_best"] is not None:
        lines.append("  the predicted optimum was " + ("the best" if
                     v["predicted_optimum_was_best"] else "NOT the best") + " of the sizes tried")
    for method, o in (v.get("other_methods") or {}).items():
        if o.get("relative_error_vs_best") is not None:
            lines.append(f"  cross-check, {method}: N_opt {o['predicted_params']:.3g}, loss "
                         f"{o['predicted_loss']:.4f} ({o['relative_error_vs_best']:+.2%} from "
                         "the best run tried)")
    return "\n".join(lines)
