"""A run's optimizer and learning-rate schedule: the same rules for every run of a sweep.

* **Peak LR.** ``lr_base * (lr_ref_params / N_non_embedding) ** lr_exponent``
  (:func:`lr_for_size`); ``train.lr`` overrides the rule.
* **Schedule.** ``train.schedule=cosine`` (default): linear warm-up over :func:`warmup_steps`
  steps, then cosine decay to ``min_lr_ratio`` × peak, reached at the run's own last step
  (:func:`lr_at`). ``train.schedule=wsd`` (warm-up, stable, decay; Hägele et al. 2024): linear
  warm-up over ``warmup_min_steps`` steps (the same for every length, so runs of one size share
  a trunk; :func:`wsd_warmup` shortens it only in a run too short to hold it), constant peak
  LR, then a cooldown over the last :func:`cooldown_steps` steps (``cooldown_shape`` 1-sqrt or
  linear) to ``min_lr_ratio`` × peak at the last step (:func:`wsd_lr_at`). :class:`Schedule`
  holds one run's schedule; the trainer asks it for ``lr(step)``.
* **Registry.** :data:`SCHEDULES` maps each ``train.schedule`` name to its
  :class:`ScheduleKind` (its LR, record sentence, trunk sharing, branch step, plan keys); the
  name check, trunks, plan identity, the cost estimate and Approach 1 ask it, never the name.
* **Optimizer.** AdamW (:func:`make_optimizer`), weight decay (default 0) on 2-D weights only.

Changing any of these changes every run's trajectory; the trainer's checkpoint fingerprint
lists the settings involved, so a checkpoint made under other values is not resumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn as nn

from flops_fit.config import TrainConfig
from flops_fit.errors import FlopsFitError


def lr_for_size(num_params_non_embedding: int, cfg: TrainConfig) -> float:
    """Peak learning rate: ``cfg.lr`` if set, else the size rule.

    The rule is ``lr_base * (lr_ref_params / N_non_embedding) ** lr_exponent``: smaller models
    take larger steps; ``N`` counts non-embedding parameters (at least 1).
    """
    if cfg.lr is not None:
        return float(cfg.lr)
    n = max(1, int(num_params_non_embedding))
    return cfg.lr_base * (cfg.lr_ref_params / n) ** cfg.lr_exponent


def warmup_steps(steps: int, warmup_fraction: float, warmup_min_steps: int = 0) -> int:
    """Warm-up length of a ``steps``-step run: the fraction, at least the floor, at most half.

    The floor (``warmup_min_steps``, itself capped at half the run) matters for short runs: with
    30 warm-up steps a 303-step run of the default GPT (width 80) ended at 2.32, 2.13 and 2.30
    for three seeds; with 91 at 1.99, 1.99 and 1.98. Long runs (10% > the floor) are unaffected.
    The warm-up never covers the whole run (at most ``steps - 1``).
    """
    if warmup_fraction <= 0 and warmup_min_steps <= 0:
        return 0
    warmup = max(1, round(warmup_fraction * steps), min(warmup_min_steps, steps // 2))
    return min(warmup, steps - 1)


def _cosine(step: int, steps: int, warmup: int, peak: float, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``peak`` to ``min_ratio * peak``."""
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    span = steps - 1 - warmup  # a run whose warm-up reaches its last step still ends at min
    progress = 1.0 if span <= 0 else min(1.0, (step - warmup) / span)  # 0 -> 1
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def lr_at(step: int, steps: int, peak: float, warmup_fraction: float, min_ratio: float,
          warmup_min_steps: int = 0) -> float:
    """LR for 0-based ``step`` of ``steps``: linear warm-up, then cosine to ``min_ratio * peak``.

    Warm-up lasts :func:`warmup_steps` steps; the last step (``steps - 1``) gets exactly
    ``min_ratio * peak``.
    """
    warmup = warmup_steps(steps, warmup_fraction, warmup_min_steps)
    return _cosine(step, steps, warmup, peak, min_ratio)


def cooldown_steps(steps: int, cooldown_fraction: float) -> int:
    """The cooldown length of a ``steps``-step wsd run: the fraction, at least one step."""
    return min(steps, max(1, round(cooldown_fraction * steps)))


def branch_step(steps: int, cfg: TrainConfig) -> int:
    """The step where a ``steps``-step run leaves what runs of its size share (a wsd run: the
    constant LR, where its cooldown starts; 0 under a schedule that shares nothing).

    Steps ``0 .. branch_step - 1`` of every wsd run of one size are the same (warm-up, then the
    peak LR): the trunk that :mod:`flops_fit.training.trunks` shares between runs of different
    length.
    """
    return schedule_kind(cfg.schedule).branch_step(steps, cfg)


def wsd_lr_at(step: int, steps: int, peak: float, warmup: int, cooldown: int, min_ratio: float,
              shape: str = "1-sqrt") -> float:
    """LR for 0-based ``step`` of a ``steps``-step wsd run.

    Linear warm-up over ``warmup`` steps, ``peak`` until the cooldown's ``cooldown`` last steps,
    which fall to ``min_ratio * peak`` at the last step: with ``p = (step - start + 1) /
    cooldown`` in (0, 1], the LR is ``min + (peak - min) * (1 - sqrt(p))`` (shape ``1-sqrt``,
    Hägele et al.'s best) or ``... * (1 - p)`` (``linear``).
    """
    start = steps - cooldown
    if step < min(warmup, start):
        return peak * (step + 1) / (warmup + 1)
    if step < start:
        return peak
    p = min(1.0, (step - start + 1) / max(1, cooldown))  # (0, 1]
    fall = 1.0 - (math.sqrt(p) if shape == "1-sqrt" else p)
    return peak * (min_ratio + (1.0 - min_ratio) * fall)


@dataclass(frozen=True)
class Schedule:
    """One run's learning-rate schedule: ``lr(step)`` for its 0-based steps.

    Built by :meth:`for_run` from the train settings, the run's length and its peak LR; the
    numbers come from its kind, ``SCHEDULES[kind]`` (the cosine of :func:`lr_at` or, under
    ``train.schedule=wsd``, :func:`wsd_lr_at`).
    """

    steps: int
    peak: float
    warmup: int
    min_ratio: float
    warmup_fraction: float  # kept for describe()
    warmup_min_steps: int
    kind: str  # a key of SCHEDULES (train.schedule)
    cooldown: int = 0  # the final decay's steps (the last ones), for kinds that have one
    shape: str = "1-sqrt"  # the cooldown's shape (train.cooldown_shape)
    branch: int = 0  # the first step not shared with longer runs of its size (0: none shared)

    @classmethod
    def for_run(cls, cfg: TrainConfig, steps: int, peak: float) -> Schedule:
        """The schedule of a ``steps``-step run with peak LR ``peak`` under ``cfg``."""
        kind = schedule_kind(cfg.schedule)
        return cls(steps=steps, peak=peak, warmup=kind.warmup(steps, cfg),
                   min_ratio=cfg.min_lr_ratio, warmup_fraction=cfg.warmup_fraction,
                   warmup_min_steps=cfg.warmup_min_steps, kind=cfg.schedule,
                   cooldown=kind.cooldown(steps, cfg), shape=cfg.cooldown_shape,
                   branch=kind.branch_step(steps, cfg))

    def lr(self, step: int) -> float:
        """The learning rate of 0-based ``step``."""
        return SCHEDULES[self.kind].lr(self, step)

    def describe(self) -> str:
        """The ``lr_schedule`` sentence of a run record."""
        return SCHEDULES[self.kind].describe(self)


class ScheduleKind:
    """One ``train.schedule``: each step's LR, its record sentence, and what runs may share.

    A new schedule is a subclass (here or in its own module) plus one line of
    :data:`SCHEDULES`; nothing else names it (conf/train/default.yaml's comment lists it).
    """

    #: the train settings it reads beyond ``TrainConfig.TRAJECTORY``: part of a plan's identity
    #: and a checkpoint's fingerprint (a new kind keeps at least ``schedule``)
    keys: tuple[str, ...] = ("schedule",)
    #: runs of one size that differ only in length may share a trunk (trunks.py): their steps
    #: before :meth:`branch_step` do not depend on the run's length
    shares_trunks: bool = False
    #: Approach 1 takes each run's endpoint only: a point in the middle of a run sits on an
    #: unfinished schedule (else the envelope of the training curves)
    endpoints_only: bool = False

    def warmup(self, steps: int, cfg: TrainConfig) -> int:
        """The warm-up of a ``steps``-step run (:func:`warmup_steps` unless overridden)."""
        return warmup_steps(steps, cfg.warmup_fraction, cfg.warmup_min_steps)

    def cooldown(self, steps: int, cfg: TrainConfig) -> int:
        """The steps of the final cooldown (0: none)."""
        return 0

    def branch_step(self, steps: int, cfg: TrainConfig) -> int:
        """The first step of a ``steps``-step run not shared with longer runs (0: none is)."""
        return 0

    def lr(self, s: Schedule, step: int) -> float:
        """The LR of 0-based ``step`` of ``s``."""
        raise NotImplementedError

    def describe(self, s: Schedule) -> str:
        """The ``lr_schedule`` sentence of a run record."""
        raise NotImplementedError


class CosineSchedule(ScheduleKind):
    """Linear warm-up, then cosine to ``min_lr_ratio`` x peak at the run's last step."""

    keys = ()  # left out of plans and fingerprints: cosine run ids stay those of earlier releases

    def lr(self, s: Schedule, step: int) -> float:
        return _cosine(step, s.steps, s.warmup, s.peak, s.min_ratio)

    def describe(self, s: Schedule) -> str:
        return (f"linear warm-up {s.warmup_fraction:g} (at least {s.warmup_min_steps} "
                f"steps, at most half), cosine to {s.min_ratio:g} x peak at the last step")


class WsdSchedule(ScheduleKind):
    """Warm-up (:func:`wsd_warmup`), constant peak, cooldown over the last steps."""

    keys = ("schedule", "cooldown_fraction", "cooldown_shape")
    shares_trunks = True
    endpoints_only = True

    def warmup(self, steps: int, cfg: TrainConfig) -> int:
        return wsd_warmup(steps, cfg)

    def cooldown(self, steps: int, cfg: TrainConfig) -> int:
        return cooldown_steps(steps, cfg.cooldown_fraction)

    def branch_step(self, steps: int, cfg: TrainConfig) -> int:
        return steps - self.cooldown(steps, cfg)

    def lr(self, s: Schedule, step: int) -> float:
        return wsd_lr_at(step, s.steps, s.peak, s.warmup, s.cooldown, s.min_ratio, s.shape)

    def describe(self, s: Schedule) -> str:
        return (f"linear warm-up {s.warmup} steps, constant peak, {s.shape} cooldown "
                f"over the last {s.cooldown} steps to {s.min_ratio:g} x peak")


#: ``train.schedule`` -> its kind: the one place a schedule is named
SCHEDULES: dict[str, ScheduleKind] = {
    "cosine": CosineSchedule(),
    "wsd": WsdSchedule(),
}


def schedule_kind(name: str) -> ScheduleKind:
    """The kind ``train.schedule`` names; one sentence (FlopsFitError) for an unknown one."""
    kind = SCHEDULES.get(name) if isinstance(name, str) else None
    if kind is None:
        names = list(SCHEDULES)
        choices = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise FlopsFitError(f"train.schedule={name!r} is unknown; use {choices}.")
    return kind


def check_schedule_name(cfg: TrainConfig) -> None:
    """Refuse an unknown ``train.schedule`` in one sentence (before anything is written)."""
    schedule_kind(cfg.schedule)


def trajectory_keys(cfg: TrainConfig) -> tuple[str, ...]:
    """The train settings that change a run under ``cfg``'s schedule: ``TRAJECTORY`` and the
    schedule's own keys."""
    return TrainConfig.TRAJECTORY + schedule_kind(cfg.schedule).keys


def trajectory(cfg: TrainConfig) -> dict[str, Any]:
    """The values of :func:`trajectory_keys` (plus the batch shape): a plan's ``train``."""
    return {"batch_size": cfg.batch_size, "seq_len": cfg.seq_len,
            **{k: getattr(cfg, k) for k in trajectory_keys(cfg)}}


def reuses_trunks(cfg: TrainConfig) -> bool:
    """Whether runs share trunks: ``reuse`` under a schedule that allows it, on one device per
    run. A cosine run shares no trunk with a longer one, and trunks train on one device for
    now, so ``reuse=true`` (the default) leaves those sweeps as separate runs: the default
    cosine sweep trains every run on its own, and ``train.schedule=wsd`` alone shares trunks."""
    return cfg.reuse and schedule_kind(cfg.schedule).shares_trunks and cfg.devices_per_run == 1


def trunk_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` as a sweep that shares trunks would run it: its own schedule if that shares
    trunks, else the first registered one that does; ``reuse=true``. Prices trunk reuse."""
    name = cfg.schedule if schedule_kind(cfg.schedule).shares_trunks else next(
        n for n, kind in SCHEDULES.items() if kind.shares_trunks)
    return replace(cfg, schedule=name, reuse=True)


def endpoint_schedules() -> frozenset[str]:
    """The schedules under which Approach 1 takes run endpoints only (for the analyzer)."""
    return frozenset(n for n, kind in SCHEDULES.items() if kind.endpoints_only)


def wsd_warmup(steps: int, cfg: TrainConfig) -> int:
    """The warm-up of a ``steps``-step wsd run: ``warmup_min_steps`` whatever the length (so
    runs of one size share a trunk), except in a run too short to hold it before its cooldown,
    which warms up over half of its pre-cooldown steps (such a run is its own trunk)."""
    before = steps - cooldown_steps(steps, cfg.cooldown_fraction)
    return cfg.warmup_min_steps if before >= cfg.warmup_min_steps else max(1, before // 2)


def make_optimizer(model: nn.Module, lr: float, cfg: TrainConfig,
                   device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D weights only; fused kernels where available.

    Decay applies to matrices and embeddings, never to norms or biases; betas are
    ``(cfg.beta1, cfg.beta2)``. Why ``weight_decay=0`` by default: with a fixed 0.1 the decay's
    timescale 1/(lr·wd) is ~1000 steps while runs last 200-9000; it held the long runs of small
    models back (width 32, 6623 steps: 1.5994 vs 1.5566 without) and the fitted floor E with
    them, so the law under-predicted progress at 4x. Tied weights appear once.
    """
    params = [p for p in model.parameters() if p.requires_grad]  # tied weights appear once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type in ("cuda", "cpu") and all(p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None)
