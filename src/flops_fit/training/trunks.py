"""Reusable wsd sweeps: runs of one size share a constant-LR trunk (``train.reuse=true``).

Under ``train.schedule=wsd`` a run is warm-up, constant peak LR, then a cooldown over its last
steps (:mod:`flops_fit.training.schedule`). Runs of a plan that differ only in length (same model
class
and kwargs, same batch shape; the train settings are the sweep's) are therefore the same run up
to their branch points (:func:`~flops_fit.training.schedule.branch_step`, where each one's cooldown
starts), provided their seed and data order come from what they share: under wsd the seed is
``run_seed(seed, trunk_id)`` (:func:`seed_key`), for standalone runs too.

So one **trunk** per size trains at constant LR, checkpoints at every branch point, and each run
is that checkpoint plus its own cooldown: the same numbers as the standalone wsd run.

Accounting (:func:`flops_spent`): each trunk segment between consecutive branch points is
charged to the first run that needs it, each cooldown to its run; a run that is not reused is
charged its own ``flops``. The sum over a sweep is what it cost (:func:`sweep_cost`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from flops_fit.config import TrainConfig
from flops_fit.planning.planner import RunSpec, SweepPlan
from flops_fit.training.schedule import branch_step, reuses_trunks, schedule_kind, trunk_config


@dataclass(frozen=True)
class Trunk:
    """The runs of one size that share a constant-LR trunk, shortest branch point first."""

    trunk_id: str
    runs: tuple[RunSpec, ...]  # sorted by (branch step, steps, run_id)
    branches: tuple[int, ...]  # each run's branch step, in the same order

    @property
    def tokens_per_step(self) -> float:
        r = self.runs[0]
        return r.num_tokens / r.steps

    @property
    def flops_per_step(self) -> float:
        return self.runs[0].flops_per_token * self.tokens_per_step

    @property
    def length(self) -> int:
        """The trunk's own steps: up to its last branch point."""
        return self.branches[-1]

    def spent(self) -> dict[str, float]:
        """run_id -> FLOPs executed for it (a segment is charged to the first run needing it)."""
        out: dict[str, float] = {}
        reached = 0
        for spec, b in zip(self.runs, self.branches, strict=True):
            segment = max(0, b - reached)
            reached = max(reached, b)
            out[spec.run_id] = self.flops_per_step * (segment + spec.steps - b)
        return out

    def cost(self) -> float:
        """FLOPs of the whole trunk and its cooldowns."""
        return sum(self.spent().values())


def trunk_id(target: str, spec: RunSpec, cfg: TrainConfig) -> str:
    """The id of the trunk ``spec`` belongs to: its model, kwargs and batch shape, hashed (and
    its warm-up, when the run is too short for ``warmup_min_steps``:
    :func:`~flops_fit.training.schedule.wsd_warmup`; and
    its ``repeat``, when it is a run again with another seed).

    Stable across processes; a safe folder name (``trunk-<12 hex>``).
    """
    what: dict[str, Any] = {"model": target, "kwargs": spec.model_kwargs,
                            "batch_size": spec.batch_size, "seq_len": spec.seq_len}
    warmup = schedule_kind(cfg.schedule).warmup(spec.steps, cfg)
    if warmup != cfg.warmup_min_steps:
        what["warmup"] = warmup
    if spec.repeat:  # a repeat of a run (validate.seeds) has its own trunk and seed
        what["repeat"] = spec.repeat
    key = json.dumps(what, sort_keys=True, default=str)
    return "trunk-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def plan_target(plan: SweepPlan) -> str:
    """The plan's model class path (the trunk key's first part)."""
    return str(plan.model.get("_target_", "")) if isinstance(plan.model, dict) else ""


def seed_key(plan_or_target: SweepPlan | str, spec: RunSpec, cfg: TrainConfig) -> str:
    """What a run's seed derives from: its trunk under a schedule whose runs share trunks (wsd;
    so reuse is exact), else its id."""
    if not schedule_kind(cfg.schedule).shares_trunks:
        return spec.run_id
    target = plan_or_target if isinstance(plan_or_target, str) else plan_target(plan_or_target)
    return trunk_id(target, spec, cfg)


def group_trunks(runs: list[RunSpec] | SweepPlan, cfg: TrainConfig,
                 target: str | None = None) -> list[Trunk]:
    """The trunks of ``runs`` (a plan or a list with ``target``), in order of first appearance.

    Branch points use ``cfg.cooldown_fraction``; every run is in exactly one trunk.
    """
    if isinstance(runs, SweepPlan):
        target, runs = plan_target(runs), runs.runs
    groups: dict[str, list[RunSpec]] = {}
    for spec in runs:
        groups.setdefault(trunk_id(target or "", spec, cfg), []).append(spec)
    out = []
    for tid, specs in groups.items():
        specs.sort(key=lambda r: (branch_step(r.steps, cfg), r.steps, r.run_id))
        out.append(Trunk(tid, tuple(specs), tuple(branch_step(r.steps, cfg) for r in specs)))
    return out


def flops_spent(plan: SweepPlan, cfg: TrainConfig) -> dict[str, float]:
    """run_id -> FLOPs executed for it under ``cfg``: shared trunks counted once when
    ``cfg.reuse`` (wsd), else every run's own planned ``flops``."""
    if not reuses_trunks(cfg):
        return {r.run_id: r.flops for r in plan.runs}
    out: dict[str, float] = {}
    for trunk in group_trunks(plan, cfg):
        out.update(trunk.spent())
    return out


def sweep_cost(plan: SweepPlan, train_cfg: TrainConfig) -> tuple[float, float]:
    """``(flops_as_separate_runs, flops_with_reuse)`` of ``plan``: planned training FLOPs.

    The first is the sum of every run's ``flops``; the second what ``train.schedule=wsd
    train.reuse=true`` executes with ``train_cfg``'s cooldown settings (each size's trunk once,
    plus one cooldown per run), whatever ``train_cfg.schedule`` and ``reuse`` say. Pure: reads
    nothing, trains nothing. On the default plan (budgets=cpu) the ratio is about 0.6.
    """
    separate = float(sum(r.flops for r in plan.runs))
    reuse_cfg = trunk_config(train_cfg)
    reused = float(sum(flops_spent(plan, reuse_cfg).values()))
    return separate, reused


def shard_trunks(trunks: list[Trunk], num_shards: int) -> list[list[Trunk]]:
    """Trunks split between ``num_shards`` shards, balanced by compute (largest first, each to
    the least loaded shard; ties to the lower shard). Deterministic: every shard computes the
    same split."""
    loads = [0.0] * num_shards
    shards: list[list[Trunk]] = [[] for _ in range(num_shards)]
    for t in sorted(trunks, key=lambda t: (-t.cost(), t.trunk_id)):
        i = min(range(num_shards), key=lambda k: (loads[k], k))
        shards[i].append(t)
        loads[i] += t.cost()
    return shards
