"""``flops-fit tune``: the peak learning rate per model size, found by training.

Porian et al. (2024) moved a fitted scaling exponent from 0.571 to 0.497 by tuning the LR (and
batch size, beta2) at each size by hand. This stage does the LR part for any model:

1. **Sizes.** ``tune.sizes`` sizes spanning the sweep's plan (smallest, middle, largest), each
   trained at its run length in one budget (:func:`tuning_budget`: ``tune.budget``, or the
   plan's middle budget lowered until the whole search fits ``max_fraction``), at least
   ``budgets.min_steps`` steps. Longer runs give a rule nearer the sweep's: the best LR falls as
   runs get longer.
2. **Grid, learning as it goes.** The sizes are tuned smallest first. Peak LRs ``grid_factor``
   apart, ``grid_points`` of them: the first size's centred on the configured rule's LR, each
   next size's on what the sizes tuned so far learned (their mean offset from the configured
   rule; the fitted rule, exponent included, from three sizes on), rounded to whole grid
   steps; so a model whose best LR is several times off the configured rule costs extensions
   at its first size only. While the best is at an edge the grid grows past that edge (at
   most ``max_extensions`` points per size, and never past ``max_fraction`` of the sweep's
   compute); a size left at an edge is named in one line and left out of the rule fit. Each
   run prints its size, LR and loss.
3. **Fits.** Per size, the optimum of a parabola in log LR through the best point and its two
   neighbours (:func:`parabola_optimum`); across sizes ``lr*(N) = c * N^-k`` by least squares in
   log-log (:func:`fit_rule`), N the non-embedding parameters, written as the train rule
   ``lr_base * (lr_ref_params / N) ** lr_exponent``.

The runs are real runs of the train stage (same schedule, data and settings) in ``tuning/``, so
tuning is resumable and no run is ever trained twice. Grid point ``k`` of a size is one train
call with ``lr_base`` multiplied by ``grid_factor ** k`` (``train.lr`` when it is fixed): the
grids of all sizes lie on one lattice of LRs.
The outcome is ``tuning.json`` (:class:`~flops_fit.rundir.records.TuningRecord`); train,
find-optimal and validate use its rule whenever it exists (``stages.use_tuned_rule``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn
from rich.console import Console
from rich.table import Table

from flops_fit.config import TrainConfig, TuneConfig
from flops_fit.planning.planner import RunSpec, SweepPlan, make_run
from flops_fit.rundir import io as rundir
from flops_fit.rundir.layout import Layout
from flops_fit.rundir.records import TunedSize, TuningRecord
from flops_fit.training.schedule import Schedule, lr_for_size, trajectory
from flops_fit.training.sweep import train_stage

#: what a run that diverged or failed counts as when looking for the best LR
WORST = math.inf
#: the next size's grid follows the fitted exponent once this many sizes are tuned (before:
#: their mean offset from the configured rule)
FIT_EXPONENT_FROM = 3

# --------------------------------------------------------------------------------------------
# the numerics (pure functions; tests drive them with synthetic loss-vs-LR curves)
# --------------------------------------------------------------------------------------------


def initial_offsets(points: int) -> list[int]:
    """Grid offsets ``k`` (LR = centre * factor**k) of the first grid, centred: 5 -> -2..2."""
    lo = -((points - 1) // 2)
    return list(range(lo, lo + points))


def next_offset(offsets: list[int], losses: list[float | None]) -> int | None:
    """The offset to train next: one past the edge where the best loss lies; None if interior.

    ``losses[i]`` belongs to ``offsets[i]``; None (diverged, failed) counts as the worst. A tie
    for the best is resolved towards the interior.
    """
    order = sorted(range(len(offsets)), key=lambda i: offsets[i])
    ks = [offsets[i] for i in order]
    ys = [WORST if losses[i] is None else losses[i] for i in order]
    best = min(ys)
    if not math.isfinite(best):  # every LR diverged: go smaller
        return ks[0] - 1
    first = ys.index(best)
    last = len(ys) - 1 - ys[::-1].index(best)
    if first == 0 and last == 0:
        return ks[0] - 1
    if first == len(ys) - 1:
        return ks[-1] + 1
    return None


def parabola_optimum(lrs: list[float], losses: list[float | None]) -> tuple[float, bool]:
    """(best LR, interior): the vertex of the parabola in log LR through the best point and its
    two neighbours, kept between those neighbours; the best grid LR when it lies at an edge
    (not interior) or when a neighbour diverged (interior: divergence bounds it)."""
    order = sorted(range(len(lrs)), key=lambda i: lrs[i])
    xs = [math.log(lrs[i]) for i in order]
    ys = [WORST if losses[i] is None else float(losses[i]) for i in order]
    i = int(np.argmin(ys))
    if not math.isfinite(ys[i]):
        raise ValueError("no LR of the grid trained to a finite loss")
    if i == 0 or i == len(xs) - 1:
        return math.exp(xs[i]), False
    if not (math.isfinite(ys[i - 1]) and math.isfinite(ys[i + 1])):  # bracketed by divergence
        return math.exp(xs[i]), True
    (x0, x1, x2), (y0, y1, y2) = xs[i - 1:i + 2], ys[i - 1:i + 2]
    # the vertex of the parabola through three points (Lagrange form)
    den = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / den
    if a <= 0:  # flat or concave: the best point itself
        return math.exp(x1), True
    return math.exp(min(max(-b / (2 * a), x0), x2)), True


def fit_rule(n_non_embedding: list[float], best_lrs: list[float], lr_ref_params: float,
             default_exponent: float) -> tuple[float, float]:
    """(lr_base, lr_exponent) of ``lr = lr_base * (lr_ref_params / N) ** lr_exponent``.

    Least squares of log lr* on log N (that is, ``lr* = c * N^-k``); with one distinct size
    only ``lr_base`` is fitted and the exponent stays ``default_exponent``.
    """
    x = np.log(np.asarray(n_non_embedding, dtype=float))
    y = np.log(np.asarray(best_lrs, dtype=float))
    if len(set(x.tolist())) < 2:
        k = float(default_exponent)
        log_c = float(np.mean(y + k * x))
    else:
        slope, log_c = np.polyfit(x, y, 1)
        k = -float(slope)
    return float(math.exp(log_c - k * math.log(lr_ref_params))), k


def spread(items: list[Any], k: int) -> list[Any]:
    """``k`` items spread evenly over the sorted list (its ends included)."""
    if len(items) <= k:
        return list(items)
    idx = sorted({round(i * (len(items) - 1) / (k - 1)) for i in range(k)})
    return [items[i] for i in idx]


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------


def tuning_sizes(plan: SweepPlan, k: int) -> list[RunSpec]:
    """One planned run per size of ``plan``, ``k`` sizes spread over them in N (ends kept)."""
    by_size: dict[int, RunSpec] = {}
    for r in sorted(plan.runs, key=lambda r: r.compute_budget):
        by_size.setdefault(r.size_value, r)
    return spread(sorted(by_size.values(), key=lambda r: r.num_params), k)


def tuning_budget(plan: SweepPlan, cfg: TuneConfig) -> float:
    """The budget whose run lengths the sizes are tuned at: ``cfg.budget`` when set.

    By default the plan's middle budget (lower median), lowered until the worst-case search,
    ``grid_points + max_extensions`` runs for each tuned size, costs at most ``max_fraction``
    of the sweep's compute; never below the smallest budget. On the default GPT the smallest
    budget's short runs gave a rule (exponent 0.53) whose width-64 run at 4x the sweep was 2.3%
    worse than the hand rule's; the middle budget's (0.31) was as good (see the README).
    """
    if cfg.budget:
        return float(cfg.budget)
    budgets = sorted(plan.compute_budgets)
    middle = budgets[(len(budgets) - 1) // 2]
    n_sizes = len(tuning_sizes(plan, cfg.sizes))
    runs = n_sizes * (cfg.grid_points + cfg.max_extensions)
    affordable = cfg.max_fraction * sum(r.flops for r in plan.runs) / runs
    return float(max(budgets[0], min(middle, affordable)))


def short_run_notes(plan: SweepPlan, tuned: list[TunedSize], factor: float = 3.0) -> list[str]:
    """A note for each size tuned on runs ``factor`` times shorter than its (lower) median
    sweep run: the best peak LR falls as runs get longer, so its tuned LR (and the rule's
    exponent) may be off for the sweep (on the default GPT, tuning at the smallest budget gave
    an exponent of 0.53, at the middle budget 0.31; see the README)."""
    notes = []
    for t in tuned:
        runs = [r for r in plan.runs if r.size_value == t.size_value]
        steps = sorted(r.steps for r in runs)
        median = steps[(len(steps) - 1) // 2] if steps else 0
        if t.steps > 0 and median >= factor * t.steps:
            notes.append(
                f"{runs[0].size_param}={t.size_value} was tuned on {t.steps}-step runs, its "
                f"sweep runs take {median} (median); the best LR falls as runs get longer, so "
                "a larger tune.budget (with a tune.max_fraction that allows it) gives a rule "
                "nearer the sweep's.")
    return notes


class Tuner:
    """Trains the tuning runs of one sweep into ``run_dir/tuning`` (see the module docstring)."""

    def __init__(self, run_dir: Path, plan: SweepPlan, model_cls: type[nn.Module], data: Any,
                 train: TrainConfig, cfg: TuneConfig, min_steps: int, loss_fn: Any = None,
                 console: Console | None = None) -> None:
        self.lay = Layout(run_dir)
        self.plan, self.model_cls, self.data = plan, model_cls, data
        self.train, self.cfg, self.min_steps = train, cfg, min_steps
        self.loss_fn, self.console = loss_fn, console or Console(highlight=False)
        self.budget = tuning_budget(plan, cfg)
        self.sweep_flops = float(sum(r.flops for r in plan.runs))
        self.spent = 0.0
        self.runs: dict[str, RunSpec] = {}  # every tuning run, for tuning/results.json
        self.notes: list[str] = []
        # tuning_budget never goes below the smallest budget: there the grids alone may cost
        # more than max_fraction (budgets=smoke: 125%), which would refuse every extension and
        # leave a model whose LR is far off the rule at an edge; max_extensions bounds it then
        worst = len(tuning_sizes(plan, cfg.sizes)) * (cfg.grid_points + cfg.max_extensions)
        self.floored = (not cfg.budget and self.budget <= min(plan.compute_budgets)
                        and worst * self.budget > cfg.max_fraction * self.sweep_flops)
        if self.floored:
            self.notes.append(
                f"tuned at the smallest budget ({self.budget:.3g} FLOPs), where the search (up "
                f"to {worst} runs) costs more than tune.max_fraction={cfg.max_fraction:g} of the "
                "sweep; extensions are bounded by tune.max_extensions alone.")

    # -- one grid point -----------------------------------------------------------------------

    def _cfg(self, k: int, batch_lr: float | None = None) -> TrainConfig:
        """Train settings of grid offset ``k`` (or a fixed LR for the batch-size runs)."""
        f = self.cfg.grid_factor ** k
        if batch_lr is not None:
            return replace(self.train, lr=batch_lr, force=False)
        if self.train.lr is not None:
            return replace(self.train, lr=self.train.lr * f, force=False)
        return replace(self.train, lr_base=self.train.lr_base * f, force=False)

    def _spec(self, size: RunSpec, cfg: TrainConfig, batch_size: int) -> RunSpec:
        """The tuning run of ``size`` under ``cfg``: the tuning budget, at least min_steps."""
        settings = self.plan.settings
        seq = int(settings.get("seq_len", size.seq_len))
        per_sample = size.num_tokens // max(1, size.steps * size.batch_size)
        tokens_per_step = batch_size * max(1, per_sample)
        budget = max(self.budget, self.min_steps * tokens_per_step * size.flops_per_token)
        context = {"dataset": settings.get("dataset"), "tune": True,
                   "train": {**trajectory(cfg), "batch_size": batch_size, "seq_len": seq}}
        kwargs = {k: v for k, v in size.model_kwargs.items() if k != size.size_param}
        return make_run(self.model_cls, size.size_param, kwargs, size.size_value, budget,
                        self.plan.model["_target_"], batch_size, seq, tokens_per_step,
                        None if per_sample > 1 else self._example(), context)

    def _example(self) -> Any:
        return self.data.example_input() if hasattr(self.data, "example_input") else None

    def train_point(self, sizes: list[RunSpec], k: int, batch_size: int | None = None,
                    batch_lr: float | None = None) -> list[dict[str, Any]]:
        """Train grid offset ``k`` of ``sizes`` (skipping done runs); their records."""
        cfg = self._cfg(k, batch_lr)
        batch = batch_size or cfg.batch_size
        specs = [self._spec(s, cfg, batch) for s in sizes]
        plan = SweepPlan(specs, self.plan.model, self.plan.settings)
        cfg.batch_size = batch
        records = train_stage(self.lay.tuning_dir, plan, self.model_cls, self.data, cfg,
                              loss_fn=self.loss_fn, console=self.console, lr_rule="tune grid")
        for spec in specs:
            self.runs[spec.run_id] = spec
        self.spent += sum(r.get("flops") or 0.0 for r in records)
        return records

    @staticmethod
    def _loss(rec: dict[str, Any]) -> float | None:
        loss = rec.get("final_loss") if rec.get("status") == "completed" else None
        return float(loss) if loss is not None and math.isfinite(loss) else None

    # -- the search ----------------------------------------------------------------------------

    def run(self) -> TuningRecord:
        """Tune every size, smallest first, each grid centred on the rule fitted so far; write
        and return ``tuning.json``'s record."""
        sizes = tuning_sizes(self.plan, self.cfg.sizes)
        tuned: list[TunedSize] = []
        for size in sizes:
            centre = self._centre(size, tuned)
            grid: dict[int, dict[str, Any]] = {}
            for k in initial_offsets(self.cfg.grid_points):
                grid[centre + k] = self._point(size, centre + k)
            for _ in range(self.cfg.max_extensions):
                ks = sorted(grid)
                k = next_offset(ks, [self._loss(grid[j]) for j in ks])
                if k is None:
                    break
                cost = grid[ks[0]].get("planned_flops") or 0.0
                if (not self.floored
                        and self.spent + cost > self.cfg.max_fraction * self.sweep_flops):
                    self.notes.append(f"{size.size_param}={size.size_value}: not extended past "
                                      f"LR x{self.cfg.grid_factor:g}^{k} (tune.max_fraction).")
                    break
                grid[k] = self._point(size, k)
            tuned.append(self._tuned(size, grid))
            self._say_size(size, tuned[-1])
        self.notes.extend(short_run_notes(self.plan, tuned))
        batch_rule = self._tune_batch(sizes, tuned) if "batch_size" in self.cfg.params else None
        return self._finish(tuned, batch_rule)

    def _rule_lr(self, n_non_embedding: int) -> float:
        """The configured rule's (or train.lr's) peak LR at this size: grid offset 0."""
        return lr_for_size(n_non_embedding, self.train)

    def _centre(self, size: RunSpec, tuned: list[TunedSize]) -> int:
        """The grid offset (a whole number of ``grid_factor`` steps from the configured rule)
        nearest the LR the sizes tuned so far predict for ``size``; the first size's is 0.

        With fewer than :data:`FIT_EXPONENT_FROM` sizes tuned (interior ones, else all), their
        mean offset from the configured rule (its exponent kept: two noisy sizes close in N
        give wild exponents); from then on the rule fitted to them, exponent included.
        """
        usable = [t for t in tuned if t.interior] or tuned
        if not usable:
            return 0
        n = max(1, size.num_params_non_embedding)
        if len(usable) < FIT_EXPONENT_FROM or self.train.lr is not None:
            ratio = math.exp(float(np.mean([
                math.log(t.best_lr / self._rule_lr(t.num_params_non_embedding))
                for t in usable])))
        else:
            base, k = fit_rule([t.num_params_non_embedding for t in usable],
                               [t.best_lr for t in usable], self.train.lr_ref_params,
                               self.train.lr_exponent)
            ratio = base * (self.train.lr_ref_params / n) ** k / self._rule_lr(n)
        return round(math.log(ratio) / math.log(self.cfg.grid_factor))

    def _point(self, size: RunSpec, k: int) -> dict[str, Any]:
        """Train grid offset ``k`` of ``size``; one progress line (size, LR, loss)."""
        rec = self.train_point([size], k)[0]
        loss = self._loss(rec)
        lr = rec.get("lr")
        self.console.print(f"tune: {size.size_param}={size.size_value} (N={size.num_params:,}) "
                           f"peak LR {f'{lr:.3g}' if isinstance(lr, float) else '?'}: "
                           + (f"loss {loss:.4f}" if loss is not None
                              else str(rec.get("status") or "failed")), highlight=False)
        return rec

    def _say_size(self, size: RunSpec, t: TunedSize) -> None:
        """One line per tuned size: its best LR against the configured rule; at a grid edge,
        that it stays out of the rule fit (a bound, named here and in tuning.json's notes)."""
        rule = self._rule_lr(size.num_params_non_embedding)
        head = (f"tune: {size.size_param}={size.size_value}: best LR {t.best_lr:.3g} "
                f"({t.best_lr / rule:.2g}x the configured rule's {rule:.3g})")
        if t.interior:
            self.console.print(head, highlight=False)
            return
        side = "largest" if t.best_lr >= max(t.lrs) else "smallest"
        bound = "at least" if side == "largest" else "at most"
        line = (f"{size.size_param}={size.size_value}: the best LR stayed at the {side} LR of "
                f"its grid ({t.best_lr:.3g}; its best is {bound} that), so it is left out of "
                "the rule fit; raise tune.max_extensions (or tune.max_fraction) to bracket it")
        self.notes.append(line + ".")
        self.console.print(f"{head}; [yellow]warning:[/] {line}.", highlight=False)

    def _tuned(self, size: RunSpec, grid: dict[int, dict[str, Any]]) -> TunedSize:
        ks = sorted(grid)
        recs = [grid[k] for k in ks]
        lrs = [float(r.get("lr") or 0.0) for r in recs]
        losses = [self._loss(r) for r in recs]
        try:
            best, interior = parabola_optimum(lrs, losses)
        except ValueError:
            best, interior = min(lrs), False
            self.notes.append(f"{size.size_param}={size.size_value}: no LR trained to a finite "
                              "loss; its best LR is the smallest tried.")
        first = recs[0]
        return TunedSize(size_value=size.size_value, num_params=size.num_params,
                         num_params_non_embedding=size.num_params_non_embedding,
                         steps=int(first.get("steps") or 0), lrs=lrs, losses=losses,
                         best_lr=best, interior=interior,
                         run_ids=[str(r.get("run_id")) for r in recs])

    def _tune_batch(self, sizes: list[RunSpec], tuned: list[TunedSize]) -> dict[str, Any]:
        """Batch x1/2 and x2 at each size's best grid LR; B*(N) = b * N^g in log-log."""
        base = self.train.batch_size
        batches = sorted({max(1, base // 2), base, base * 2})
        for size, t in zip(sizes, tuned, strict=True):
            ys = [WORST if v is None else v for v in t.losses]
            best = int(np.argmin(ys))
            lr = t.lrs[best]
            losses: list[float | None] = []
            for b in batches:  # the configured batch at this LR is the grid's own run
                rec = None if b == base else self.train_point([size], 0, b, batch_lr=lr)[0]
                losses.append(t.losses[best] if rec is None else self._loss(rec))
            best_b, interior = parabola_optimum([float(b) for b in batches], losses)
            t.batch = {"lr": lr, "batch_sizes": batches, "losses": losses,
                       "best_batch_size": best_b, "interior": interior}
        usable = [t for t in tuned if t.batch and math.isfinite(t.batch["best_batch_size"])]
        b_ref, g = fit_rule([t.num_params_non_embedding for t in usable],
                            [t.batch["best_batch_size"] for t in usable],
                            self.train.lr_ref_params, 0.0)
        return {"batch_ref": b_ref, "batch_exponent": -g, "ref_params": self.train.lr_ref_params,
                "note": "B*(N) = batch_ref * (N / ref_params) ** batch_exponent at the tuning "
                        "budget; not applied to train (one batch size per sweep)"}

    def _finish(self, tuned: list[TunedSize], batch_rule: dict[str, Any] | None
                ) -> TuningRecord:
        usable = [t for t in tuned if t.interior] or tuned  # each edge size has its note
        if not any(t.interior for t in tuned):
            self.notes.append("no size's best LR lies inside its grid, so the rule is fitted "
                              "to the edge LRs (bounds, not optima).")
        lr_base, k = fit_rule([t.num_params_non_embedding for t in usable],
                              [t.best_lr for t in usable], self.train.lr_ref_params,
                              self.train.lr_exponent)
        schedule = Schedule.for_run(self.train, max(1, tuned[0].steps), 1.0)
        record = TuningRecord(
            rule={"lr_base": lr_base, "lr_exponent": k,
                  "lr_ref_params": float(self.train.lr_ref_params)},
            sizes=tuned, flops=self.spent, sweep_flops=self.sweep_flops,
            budget=self.budget, size_param=str(self.plan.model.get("size_param")),
            model=str(self.plan.model.get("_target_")),
            config_rule={"lr_base": self.train.lr_base, "lr_exponent": self.train.lr_exponent,
                         "lr_ref_params": self.train.lr_ref_params},
            schedule=schedule.describe(), params=list(self.cfg.params), batch=batch_rule,
            notes=self.notes,
            created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        all_runs = SweepPlan(list(self.runs.values()), self.plan.model, self.plan.settings)
        rundir.rebuild_results(self.lay.tuning_dir, all_runs)
        rundir.atomic_write_json(self.lay.tuning, record.to_dict())
        return record


def run_tuning(run_dir: Path, plan: SweepPlan, model_cls: type[nn.Module], data: Any,
               train: TrainConfig, cfg: TuneConfig, min_steps: int, loss_fn: Any = None,
               console: Console | None = None) -> TuningRecord:
    """Tune the peak LR per size of ``plan``'s model; write ``tuning.json``; print the tables."""
    console = console or Console(highlight=False)
    record = Tuner(run_dir, plan, model_cls, data, train, cfg, min_steps, loss_fn,
                   console).run()
    print_tuning(console, record, Layout(run_dir).tuning)
    return record


# --------------------------------------------------------------------------------------------
# reading tuning.json, and the rule it gives
# --------------------------------------------------------------------------------------------

TUNED_LABEL = "tuned (tuning.json)"
CONFIG_LABEL = "config (train.lr_base, lr_exponent, lr_ref_params)"
FIXED_LABEL = "fixed (train.lr)"


def load_tuning(run_dir: str | Path) -> TuningRecord | None:
    """``run_dir/tuning.json`` as a checked record, or None when there is none."""
    path = Layout(Path(run_dir)).tuning
    if not path.exists():
        return None
    return TuningRecord.from_dict(rundir.read_json(path, "tuning"), where=str(path))


def apply_rule(record: TuningRecord | None, train: TrainConfig) -> str:
    """Set ``train``'s LR rule from ``record`` (unless ``train.lr`` fixes the LR); its label."""
    if train.lr is not None:
        return FIXED_LABEL
    if record is None:
        return CONFIG_LABEL
    train.lr_base = record.rule["lr_base"]
    train.lr_exponent = record.rule["lr_exponent"]
    train.lr_ref_params = record.rule["lr_ref_params"]
    return TUNED_LABEL


def print_tuning(console: Console, record: TuningRecord, path: Path) -> None:
    """Each size's loss-vs-LR table, the fitted rule and what tuning cost."""
    for t in record.sizes:
        console.print(f"{record.size_param}={t.size_value}: N={t.num_params:,} (non-embedding "
                      f"{t.num_params_non_embedding:,}), {t.steps} steps")
        table = Table()
        table.add_column("peak LR", justify="right")
        table.add_column("final loss", justify="right")
        ys = [WORST if v is None else v for v in t.losses]
        best = int(np.argmin(ys))
        for i, (lr, loss) in enumerate(zip(t.lrs, t.losses, strict=True)):
            mark = "  <- best" if i == best else ""
            table.add_row(f"{lr:.3g}", ("diverged" if loss is None else f"{loss:.4f}") + mark)
        console.print(table)
        how = "parabola in log LR" if t.interior else "at an edge of the grid"
        console.print(f"  best LR {t.best_lr:.3g} ({how})")
        if t.batch:
            pairs = ", ".join(f"{b}: {'diverged' if v is None else f'{v:.4f}'}"
                              for b, v in zip(t.batch["batch_sizes"], t.batch["losses"],
                                              strict=True))
            console.print(f"  batch size at LR {t.batch['lr']:.3g}: {pairs}; best "
                          f"{t.batch['best_batch_size']:.3g}")
    r, c = record.rule, record.config_rule
    console.print(f"Tuned rule: lr = {r['lr_base']:.3g} * ({r['lr_ref_params']:.3g} / N)^"
                  f"{r['lr_exponent']:.3f}   (config: {c.get('lr_base', 0):.3g}, "
                  f"^{c.get('lr_exponent', 0):.3f})")
    console.print(f"Tuning compute {record.flops:.3g} FLOPs = {record.fraction:.1%} of the "
                  f"sweep's {record.sweep_flops:.3g}; wrote {path}")
    if record.batch:
        console.print(f"Batch size: B*(N) = {record.batch['batch_ref']:.3g} * (N / "
                      f"{record.batch['ref_params']:.3g})^{record.batch['batch_exponent']:.3f} "
                      "(reported, not applied)")
    for note in record.notes:
        console.print(f"note: {note}")

