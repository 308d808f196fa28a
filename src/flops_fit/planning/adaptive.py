"""Adaptive bracketing: add a size beyond a budget's edge minimum (``budgets.adaptive``).

A budget whose IsoFLOP minimum lies at its smallest or largest planned size says nothing about
where the optimum is (Approach 2 drops it). Once all of a budget's runs are final, its IsoFLOP
parabola (:func:`flops_fit.fitting.isoflop_optima`) is fitted; when the minimum is not interior,
the next size beyond that edge is added as a new run of the same budget:

* the new size lies one of the budget's own log-N steps (the median gap of its sizes) beyond
  the edge, the nearest candidate size strictly beyond it;
* a larger size must still train ``budgets.min_steps`` steps, and the size range must go on;
* at most ``budgets.max_added`` sizes per budget.

The added runs are appended to plan.json, marked ``added`` with ``added_reason``
(:func:`flops_fit.planning.plans.append_runs`); the plan stays the same experiment. ``train`` and
``find-optimal`` in one process repeat train -> extend until nothing is added; sharded training
extends at the start of the next ``train`` or with ``flops-fit plan extend=true``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from flops_fit import fitting
from flops_fit.planning.flops import count_params
from flops_fit.planning.planner import RunSpec, SweepPlan, default_size_grid, make_run
from flops_fit.rundir.records import FINAL_STATUSES


@dataclass
class Extension:
    """What one look at the results adds: the new runs and a sentence per budget looked at."""

    added: list[RunSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    waiting: int = 0  # budgets whose runs are not all final yet


def usable(rec: dict[str, Any] | None) -> bool:
    """Whether a run record has a loss to fit: completed, finite and positive."""
    loss = (rec or {}).get("final_loss")
    return (rec or {}).get("status") == "completed" and isinstance(loss, (int, float)) \
        and math.isfinite(loss) and loss > 0


def finished(plan: SweepPlan, records: dict[str, dict[str, Any]]) -> list[float]:
    """The budgets of ``plan`` whose runs all have a final record."""
    return [c for c in plan.compute_budgets
            if all((records.get(r.run_id) or {}).get("status") in FINAL_STATUSES
                   for r in plan.runs if r.compute_budget == c)]


def budget_optimum(runs: list[RunSpec], records: dict[str, dict[str, Any]]
                   ) -> tuple[Any, np.ndarray, np.ndarray] | None:
    """The IsoFLOP parabola of one budget's usable runs: ``(optimum, N, loss)``; None with
    fewer than 3 sizes."""
    done = [r for r in runs if usable(records.get(r.run_id))]
    if len({r.num_params for r in done}) < 3:
        return None
    n = np.array([r.num_params for r in done], dtype=float)
    d = np.array([r.num_tokens for r in done], dtype=float)
    c = np.array([r.flops for r in done], dtype=float)
    loss = np.array([records[r.run_id]["final_loss"] for r in done], dtype=float)
    (opt,), _ = fitting.isoflop_optima(np.full(n.size, done[0].compute_budget), n, d, loss, c)
    return opt, n, loss


def edge_side(runs: list[RunSpec], records: dict[str, dict[str, Any]]) -> str | None:
    """``"below"``/``"above"`` when these runs' (one budget's) minimum is at an edge, else None.

    Uses the IsoFLOP parabola and its ``interior`` flag; when the losses do not curve upwards,
    the side of the lowest loss, if it is an end size.
    """
    fit = budget_optimum(runs, records)
    return None if fit is None else fit_side(*fit)


def fit_side(opt: Any, n: np.ndarray, loss: np.ndarray) -> str | None:
    """:func:`edge_side` of a :func:`budget_optimum` already fitted."""
    if opt.interior:
        return None
    lo = opt.log_n_range[0]
    p = opt.optimal_params
    if not math.isnan(p):  # a vertex far outside may under/overflow to 0 or inf
        return "below" if p <= 0 or (math.isfinite(p) and math.log(p) <= lo) else "above"
    best = float(n[int(np.argmin(loss))])
    return "below" if best == n.min() else "above" if best == n.max() else None


def extend_plan(
    plan: SweepPlan, records: dict[str, dict[str, Any]], model_cls: type[nn.Module],
    sizes: list[int] | None, *, max_added: int, min_steps: int,
    example_input: torch.Tensor | None = None, budgets: list[float] | None = None,
) -> Extension:
    """The runs to add to ``plan`` given the run records (``run_id -> record``).

    ``sizes`` are the candidate values of the size parameter (the model's size range; None:
    the planner's :func:`~flops_fit.planning.planner.default_size_grid`, as for a
    ``model=custom`` without size keys). Budgets with a run that is not final yet are left for
    later (``waiting``); ``budgets`` limits the look to those budgets.
    """
    out = Extension()
    sizes = sorted(set(sizes or default_size_grid()))
    size_param = plan.model["size_param"]
    base = dict(plan.model.get("kwargs", {}))
    target = plan.model["_target_"]
    bs, seq = int(plan.settings.get("batch_size", 1)), int(plan.settings.get("seq_len", 1))
    if example_input is None:
        example_input = torch.zeros(1, seq, dtype=torch.long)
    is_tokens = example_input.dim() > 1 and not example_input.dtype.is_floating_point
    tokens_per_step = bs * (example_input.shape[1] if is_tokens else 1)
    context = {k: plan.settings[k] for k in ("dataset", "train") if k in plan.settings}
    n_of: dict[int, int | None] = {}

    def params(size: int) -> int | None:
        if size not in n_of:
            try:
                n_of[size] = count_params(model_cls, {**base, size_param: size})[0]
            except Exception:  # a size the model rejects is no candidate
                n_of[size] = None
        return n_of[size]

    done = set(finished(plan, records))
    for budget in plan.compute_budgets:
        if budgets is not None and budget not in budgets:
            continue
        runs = [r for r in plan.runs if r.compute_budget == budget]
        if budget not in done:
            out.waiting += 1
            continue
        side = edge_side(runs, records)
        if side is None:
            continue
        n_added = sum(r.added for r in runs)
        edge = min(runs, key=lambda r: r.num_params) if side == "below" \
            else max(runs, key=lambda r: r.num_params)
        where = "smallest" if side == "below" else "largest"
        head = f"Budget {budget:.3g}: the minimum lies at the {where} size ({size_param}=" \
               f"{edge.size_value})"
        if n_added >= max_added:
            out.notes.append(f"{head}; budgets.max_added={max_added} sizes already added, so "
                             "it stays at the edge.")
            continue
        log_n = np.log(sorted({r.num_params for r in runs}))
        gap = float(np.median(np.diff(log_n))) if log_n.size > 1 else math.log(2.0)
        goal = math.log(edge.num_params) + (-gap if side == "below" else gap)
        beyond = [s for s in sizes if (s < edge.size_value if side == "below"
                                       else s > edge.size_value)]
        if side == "below":
            beyond.reverse()
        # outward from the edge, stopping one step past the goal: N grows with the size, so
        # farther sizes are never nearer (and a depth-sized model's far end of the default
        # grid is never built)
        cands = []
        for s in beyond:
            n = params(s)
            if n is None or (n >= edge.num_params if side == "below"
                             else n <= edge.num_params):
                continue
            cands.append((s, n))
            if (math.log(n) < goal - gap) if side == "below" else (math.log(n) > goal + gap):
                break
        if not cands:
            out.notes.append(f"{head}; the size range ends there, so it stays at the edge.")
            continue
        size = min(cands, key=lambda sn: abs(math.log(sn[1]) - goal))[0]
        spec = make_run(model_cls, size_param, base, size, budget, target, bs, seq,
                        tokens_per_step, example_input, context)
        if spec.steps < min_steps:
            out.notes.append(f"{head}; the next larger size ({size_param}={size}) would train "
                             f"{spec.steps} steps, fewer than budgets.min_steps={min_steps}, so "
                             "it stays at the edge.")
            continue
        spec.added = True
        spec.added_reason = (f"minimum of budget {budget:.3g} at its {where} size "
                             f"({size_param}={edge.size_value}); added {size_param}={size} "
                             f"{side} it ({n_added + 1} of at most {max_added})")
        out.added.append(spec)
        out.notes.append(f"{head}; adding {size_param}={size} (N={spec.num_params:,}, "
                         f"{spec.steps} steps).")
    return out
