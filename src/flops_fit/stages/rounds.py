"""Sequential planning's rounds (``budgets.sequential``, planning/sequential.py): a train call
trains the budgets round by round, smallest first, and re-centres the budgets not started on
the optimum trend the finished ones measured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape

from flops_fit.config import Settings
from flops_fit.planning.planner import SweepPlan
from flops_fit.planning.plans import check_run_dir, recentre_runs, started_budgets
from flops_fit.planning.sequential import propose, rounds, tuned_optimum
from flops_fit.rundir.io import load_run_results
from flops_fit.stages.tune import load_tuning
from flops_fit.training.sweep import prune_trunks


def shards_note(s: Settings, plan: SweepPlan) -> str | None:
    """What a sharded train call of a several-budget plan says instead of training in rounds."""
    if not (s.budgets.sequential and s.train.num_shards > 1 and len(plan.compute_budgets) > 1):
        return None
    return ("budgets.sequential: shards train the plan as planned (rounds need one train "
            "process); train a smaller budgets.values first to see where the optimum lies.")


def sequential(s: Settings, plan: SweepPlan) -> bool:
    """Whether this train call trains ``plan`` in rounds (``budgets.sequential``): one
    process (the shards of a multirun cannot wait for each other's rounds), more than one
    budget, and not ``train.force`` (which retrains the plan as it stands)."""
    return (s.budgets.sequential and s.train.num_shards == 1 and not s.train.force
            and len(plan.compute_budgets) > 1)


def rounds_line(plan: SweepPlan) -> str:
    """The rounds a train call takes, in one sentence."""
    groups = rounds(plan.compute_budgets)
    return (f"sequential: {len(plan.compute_budgets)} budgets in {len(groups)} rounds ("
            + "; ".join(", ".join(f"{c:.3g}" for c in g) for g in groups)
            + "); before each round after the first, the budgets not started are re-centred "
            "on the optima measured so far when these sizes are off (budgets.sequential).")


def train_in_rounds(s: Settings, plan: SweepPlan, console: Console,
                    train_plan: Callable[[SweepPlan, set[str]], Any],
                    extend: Callable[[SweepPlan, list[float]], SweepPlan],
                    replan: Callable[[dict[float, float]], SweepPlan]) -> SweepPlan:
    """Train ``plan``'s budgets round by round; the final plan.

    The first round is bracketed until its minimum is interior (``extend``: the adaptive
    sizes of those budgets), and before each later round the budgets not started are
    re-centred on the optimum trend measured so far (``replan``: the settings' plan with
    those centres); tune's grids, when tuning.json has them, seed the trend before the first.
    ``train_plan(plan, run_ids)`` trains a round.
    """
    run_dir = check_run_dir(s.run_dir)
    groups = rounds(plan.compute_budgets)
    console.print(rounds_line(plan), highlight=False)
    seed = tuned_optimum(load_tuning(run_dir), plan)
    for c, n in seed.items():
        console.print(f"sequential: tune's grids (tuning.json) put the optimum at {c:.3g} "
                      f"FLOPs near N = {n:,.0f}.", highlight=False)
    for i, group in enumerate(groups):
        if i or seed:
            plan = recentre_stage(s, plan, console, [c for c in plan.compute_budgets
                                                     if c >= group[0]], replan, seed)
        train_plan(plan, {r.run_id for r in plan.runs if r.compute_budget in group})
        while i == 0 or s.budgets.adaptive:  # the first round's minimum is bracketed
            before = len(plan.runs)
            plan = extend(plan, group)
            if len(plan.runs) == before:
                break
            train_plan(plan, {r.run_id for r in plan.runs if r.compute_budget in group})
    prune_trunks(run_dir, plan, s.train)  # the kept trunk states no run needs any more
    return plan


def recentre_stage(s: Settings, plan: SweepPlan, console: Console, budgets: list[float],
                   replan: Callable[[dict[float, float]], SweepPlan],
                   seed: dict[float, float] | None = None) -> SweepPlan:
    """Re-plan those of ``budgets`` not started yet around the optimum trend of the finished
    ones, when it has moved (``replan``: the settings' plan with given centres); the plan as
    it then stands."""
    run_dir = check_run_dir(s.run_dir)
    started = started_budgets(run_dir, plan)
    pending = [c for c in budgets if c not in started]
    move = propose(plan, load_run_results(run_dir), pending, s.budgets.span, seed)
    if move.line:
        console.print(f"sequential: {escape(move.line)}", highlight=False, soft_wrap=True)
    if not move.centres:
        return plan
    fresh = replan(move.centres)
    plan = recentre_runs(run_dir, {c: [r for r in fresh.runs if r.compute_budget == c]
                                   for c in move.centres}, move.entries)
    for c in sorted(move.centres):
        sizes = ", ".join(str(r.size_value) for r in plan.runs if r.compute_budget == c)
        console.print(f"sequential: budget {c:.3g}: {plan.model['size_param']} {sizes}",
                      highlight=False)
    return plan
