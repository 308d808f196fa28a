"""The groups that say what is trained: ``model``, ``budgets`` and ``train`` (one dataclass each).

Each field is one key of ``conf/<group>/default.yaml``; each ``check()`` turns an impossible
value into one sentence.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from flops_fit.config.reading import import_model_class, need
from flops_fit.errors import FlopsFitError

#: no single run may plan more optimizer steps than this (a mistyped budget, not a sweep)
MAX_STEPS = 1_000_000_000
#: budgets above this many FLOPs are refused (about 50x the largest published training run)
MAX_BUDGET = 1e27
#: upper bounds on the counts that allocate (a mistyped exponent, not a sweep): each value
#: beyond its bound is refused in one sentence before anything is written
MAX_BUDGETS = 100  # budgets.values
MAX_SIZES_PER_BUDGET = 100  # budgets.sizes_per_budget
MAX_ADDED = 20  # budgets.max_added
MAX_SIZE_VALUES = 100_000  # model.size_min..size_max step size_step
MAX_THREADS = 1024  # train.threads
MAX_BATCH_TOKENS = 2**27  # train.batch_size x train.seq_len (134M tokens per step)
MAX_SHARDS = 100_000  # train.num_shards
MAX_WORKERS = 256  # train.workers: local processes
MAX_DEVICES_PER_RUN = 1024  # train.devices_per_run


# --------------------------------------------------------------------------------------------
# The groups
# --------------------------------------------------------------------------------------------

_GPT_KWARGS = {"vocab_size": 256, "seq_len": 128, "head_dim": 16, "width_per_layer": 32,
               "min_layers": 2}


@dataclass
class ModelConfig:
    """``conf/model/*.yaml``: which class, which constructor argument is its size, and the rest.

    ``size_min``/``size_max``/``size_step`` bound the integer values the planner may choose.
    The defaults are ``conf/model/gpt.yaml``'s (its kwargs resolved).
    """

    _target_: str = "flops_fit.models.gpt.GPT"
    size_param: str = "width"
    size_min: int | None = 16  # null (model=custom): the default grid, bounded by the budgets
    size_max: int | None = 1024
    size_step: int | None = 16
    kwargs: dict[str, Any] = field(default_factory=lambda: dict(_GPT_KWARGS))

    def model_cls(self) -> type[nn.Module]:
        """The model class (checked to be an ``nn.Module`` subclass)."""
        return import_model_class(self._target_)

    def sizes(self) -> list[int] | None:
        """Candidate values of the size parameter (None: the planner's default grid)."""
        self.check()
        if self.size_min is None:
            return None
        return list(range(self.size_min, self.size_max + 1, self.size_step))

    def check(self) -> None:
        """One sentence for an impossible size range."""
        need(bool(self.size_param), "model.size_param is empty; name the constructor argument "
              "that sets the model's size, e.g. model.size_param=width.")
        unset = [k for k in ("size_min", "size_max", "size_step") if getattr(self, k) is None]
        if unset:
            need(len(unset) == 3, f"model.{unset[0]} is null but other size keys are set; set "
                  "all of size_min, size_max and size_step, or none (the default grid).")
            return
        if self.size_step < 1 or self.size_min < 1 or self.size_max < self.size_min:
            raise FlopsFitError(
                f"model size range {self.size_min}..{self.size_max} step {self.size_step} is "
                "empty; set size_min >= 1, size_max >= size_min and size_step >= 1."
            )
        count = (self.size_max - self.size_min) // self.size_step + 1
        need(count <= MAX_SIZE_VALUES, f"model size range {self.size_min}..{self.size_max} "
             f"step {self.size_step} holds {count} values, more than {MAX_SIZE_VALUES}; "
             "raise model.size_step or narrow the range.")

    def identity(self) -> dict[str, Any]:
        """What plan.json records of the model (``plan.model``)."""
        return {"_target_": self._target_, "size_param": self.size_param,
                "kwargs": dict(self.kwargs)}


@dataclass
class BudgetsConfig:
    """``conf/budgets/*.yaml``: the FLOP budgets and how widely each is bracketed.

    The defaults are ``conf/budgets/cpu.yaml``'s (the measured reasons are there).
    """

    values: list[float] = field(default_factory=lambda: [
        2.5e11, 3.54e11, 5.0e11, 7.07e11, 1.0e12, 1.41e12, 2.0e12, 2.83e12, 4.0e12])
    sizes_per_budget: int = 5
    span: float = 6.0  # sizes cover N_opt/span .. N_opt*span (log-spaced)
    tokens_per_param: float = 100.0  # prior for the centre of each budget's sizes
    exponent: float | None = None  # or: N_opt ∝ C^exponent, anchored at the first budget
    min_steps: int = 200  # sizes whose run would have fewer optimizer steps are not planned
    adaptive: bool = False  # add sizes beyond an edge minimum after the planned runs (adaptive.py)
    sequential: bool = True  # train in rounds, re-centring later budgets (sequential.py)
    max_added: int = 2  # at most this many added sizes per budget

    def checked_values(self) -> list[float]:
        """The budgets, sorted and de-duplicated; one sentence for a bad one."""
        out = []
        for v in self.values:
            try:
                if isinstance(v, bool):
                    raise TypeError
                c = float(v)
            except (TypeError, ValueError):
                raise FlopsFitError(
                    f"Budget {v!r} is not a number; give FLOPs like budgets.values=[1e12,3e12]."
                ) from None
            if not math.isfinite(c) or c <= 0:
                raise FlopsFitError(
                    f"Budget {v!r} must be a finite positive number of FLOPs, e.g. 1e12."
                )
            if c > MAX_BUDGET:
                raise FlopsFitError(
                    f"Budget {v!r} is above {MAX_BUDGET:.0e} FLOPs, beyond any training run; "
                    "check the exponent (budgets.values=[1e12,3e12] are FLOPs)."
                )
            out.append(c)
        if not out:
            raise FlopsFitError("budgets.values is empty; give at least one FLOP budget.")
        need(len(out) <= MAX_BUDGETS, f"budgets.values holds {len(out)} budgets, more than "
             f"{MAX_BUDGETS}; give fewer FLOP budgets.")
        return sorted(set(out))

    def check(self) -> None:
        """One sentence for each impossible setting."""
        self.checked_values()
        need(self.sizes_per_budget >= 3, f"budgets.sizes_per_budget={self.sizes_per_budget} "
              "must be at least 3 to fit a parabola per budget.")
        need(self.sizes_per_budget <= MAX_SIZES_PER_BUDGET,
             f"budgets.sizes_per_budget={self.sizes_per_budget} is more than "
             f"{MAX_SIZES_PER_BUDGET}; use at most {MAX_SIZES_PER_BUDGET} sizes per budget.")
        need(math.isfinite(self.span) and self.span > 1, f"budgets.span={self.span} must be "
              "greater than 1 (sizes cover N*/span .. N*·span).")
        need(math.isfinite(self.tokens_per_param) and self.tokens_per_param > 0,
              f"budgets.tokens_per_param={self.tokens_per_param} must be a positive number "
              "of tokens per parameter, e.g. 20.")
        need(self.exponent is None or (math.isfinite(self.exponent) and self.exponent > 0),
              f"budgets.exponent={self.exponent} must be a positive number (or null).")
        need(self.min_steps >= 1, f"budgets.min_steps={self.min_steps} must be at least 1.")
        need(self.max_added >= 0, f"budgets.max_added={self.max_added} must be a whole number "
              ">= 0 (sizes added per budget by budgets.adaptive=true).")
        need(self.max_added <= MAX_ADDED, f"budgets.max_added={self.max_added} is more than "
             f"{MAX_ADDED}; use at most {MAX_ADDED} added sizes per budget.")

    def identity(self) -> dict[str, Any]:
        """What a plan depends on (``plan.settings``'s budget keys)."""
        return {"compute_budgets": self.checked_values(),
                "sizes_per_budget": self.sizes_per_budget, "span": self.span,
                "tokens_per_param": self.tokens_per_param, "exponent": self.exponent,
                "min_steps": self.min_steps}


_DEVICE = re.compile(r"auto|cpu|cuda|cuda:\d+|mps")


@dataclass
class TrainConfig:
    """``conf/train/*.yaml``: how every run is trained (see schedule.py for the rules)."""

    batch_size: int = 16
    seq_len: int = 128
    lr: float | None = None  # None: the size rule in schedule.lr_for_size
    lr_base: float = 9e-3  # lr rule: lr_base * (N_ref / N_non_embedding) ** lr_exponent
    lr_exponent: float = 0.2
    lr_ref_params: float = 1e5
    min_lr_ratio: float = 0.1  # cosine ends at 10% of peak
    warmup_fraction: float = 0.1
    warmup_min_steps: int = 100  # warm-up floor (at most half the run): short runs stay stable
    weight_decay: float = 0.0  # see conf/train/default.yaml
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_tokens: int = 262_144  # held-out tokens for final_loss
    periodic_eval_tokens: int = 32_768  # held-out tokens per periodic val_loss point
    eval_every: int = 0  # steps between periodic val losses (0: ~10 per run)
    log_every: int = 10
    checkpoint_every_s: float = 120.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 autocast on CUDA) | fp32 | bf16
    compile: bool | str = "auto"  # auto: on for CUDA runs long enough to repay it (devices.py)
    threads: int = 0  # torch.set_num_threads; 0 = all cores (split between local shards)
    workers: int = 0  # local processes training the plan at once; 0 = auto (training/workers.py)
    seed: int = 0
    shard: int = 0
    num_shards: int = 1
    force: bool = False  # retrain completed runs
    diverge_factor: float = 3.0  # loss above factor * initial loss = diverged
    loggers: list[str] = field(default_factory=list)  # tensorboard | wandb | mlflow (loggers.py)
    devices_per_run: int = 1  # K > 1: each run data-parallel on K devices (distributed.py)
    schedule: str = "wsd"  # wsd | cosine (training/schedule.py's SCHEDULES)
    cooldown_fraction: float = 0.2  # wsd: the last 20% of a run's steps cool down
    cooldown_shape: str = "1-sqrt"  # wsd: 1-sqrt | linear, down to min_lr_ratio x peak
    reuse: bool = True  # under wsd, runs that differ only in length share a trunk (trunks.py)

    #: the fields that change every run's trajectory: part of a plan's identity, and a
    #: checkpoint made under other values is not resumed. Each schedule adds its own keys
    #: (``schedule``, ``cooldown_*``): flops_fit.training.schedule.trajectory_keys
    TRAJECTORY: typing.ClassVar[tuple[str, ...]] = (
        "lr", "lr_base", "lr_exponent", "lr_ref_params", "min_lr_ratio", "warmup_fraction",
        "warmup_min_steps", "weight_decay", "beta1", "beta2", "grad_clip", "seed", "dtype")

    def check(self) -> None:
        """One sentence for each impossible setting."""
        need(self.batch_size >= 1, f"train.batch_size={self.batch_size} must be a whole "
              "number of samples >= 1, e.g. train.batch_size=16.")
        need(self.seq_len >= 1, f"train.seq_len={self.seq_len} must be a whole number of "
              "tokens >= 1, e.g. train.seq_len=128.")
        need(self.batch_size * self.seq_len <= MAX_BATCH_TOKENS,
             f"train.batch_size={self.batch_size} x train.seq_len={self.seq_len} is "
             f"{self.batch_size * self.seq_len} tokens per step, more than {MAX_BATCH_TOKENS}; "
             "lower one of them.")
        need(0 <= self.workers <= MAX_WORKERS,
             f"train.workers={self.workers} must be a whole number from 0 (auto) to "
             f"{MAX_WORKERS}, e.g. train.workers=1 for one process.")
        need(self.num_shards <= MAX_SHARDS,
             f"train.num_shards={self.num_shards} is more than {MAX_SHARDS}; use fewer shards.")
        if self.num_shards < 1 or not 0 <= self.shard < self.num_shards:
            raise FlopsFitError(
                f"train.shard={self.shard} must lie in 0..num_shards-1 "
                f"(num_shards={self.num_shards})."
            )
        need(self.dtype in ("auto", "fp32", "bf16"),
              f"train.dtype={self.dtype!r} is unknown; use auto, fp32 or bf16.")
        need(bool(_DEVICE.fullmatch(self.device)),
              f"train.device={self.device!r} is unknown; use auto, cpu, cuda or cuda:N.")
        need(self.eval_tokens >= 1, f"train.eval_tokens={self.eval_tokens} must be positive.")
        need(self.periodic_eval_tokens >= 1,
              f"train.periodic_eval_tokens={self.periodic_eval_tokens} must be positive.")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise FlopsFitError(
                f"train.lr={self.lr} must be a positive number (or null for the rule).")
        need(math.isfinite(self.checkpoint_every_s) and self.checkpoint_every_s >= 0,
              f"train.checkpoint_every_s={self.checkpoint_every_s} must be a number of seconds "
              ">= 0 (0: after every step).")
        for key in ("lr_base", "lr_ref_params"):
            value = getattr(self, key)
            need(math.isfinite(value) and value > 0,
                  f"train.{key}={value} must be a positive number.")
        need(math.isfinite(self.lr_exponent),
              f"train.lr_exponent={self.lr_exponent} must be a finite number.")
        if not 0 <= self.min_lr_ratio <= 1 or not 0 <= self.warmup_fraction < 1:
            raise FlopsFitError(
                "train.min_lr_ratio must lie in [0, 1] and warmup_fraction in [0, 1).")
        need(self.warmup_min_steps >= 0, f"train.warmup_min_steps={self.warmup_min_steps!r} "
              "is not valid; use a whole number of steps >= 0.")
        for key in ("beta1", "beta2"):
            value = getattr(self, key)
            need(0 <= value < 1, f"train.{key}={value} must lie in [0, 1).")
        for key in ("weight_decay", "grad_clip", "diverge_factor"):
            value = getattr(self, key)
            need(math.isfinite(value) and value >= 0,
                  f"train.{key}={value} must be a number >= 0 (0 turns it off).")
        for key in ("eval_every", "threads", "seed"):
            value = getattr(self, key)
            need(value >= 0, f"train.{key}={value} must be a whole number >= 0.")
        need(self.threads <= MAX_THREADS, f"train.threads={self.threads} is more than "
             f"{MAX_THREADS}; use at most {MAX_THREADS} CPU threads (0: this machine's cores).")
        need(self.log_every >= 1, f"train.log_every={self.log_every} must be at least 1.")
        need(self.compile in (True, False, "auto"),
              f"train.compile={self.compile!r} is unknown; use auto, true or false.")
        for name in self.loggers:
            need(name in ("tensorboard", "wandb", "mlflow"), f"train.loggers: {name!r} is "
                  "unknown; use any of tensorboard, wandb, mlflow (e.g. [tensorboard]).")
        need(self.devices_per_run >= 1 and self.batch_size % self.devices_per_run == 0,
              f"train.devices_per_run={self.devices_per_run} must be >= 1 and divide "
              f"train.batch_size={self.batch_size} (each device takes an equal slice).")
        need(self.devices_per_run <= MAX_DEVICES_PER_RUN,
             f"train.devices_per_run={self.devices_per_run} is more than "
             f"{MAX_DEVICES_PER_RUN}; use fewer devices per run.")
        # train.schedule is checked against its registry by the stages, before anything is
        # written (flops_fit.training.schedule.check_schedule_name)
        need(self.cooldown_shape in ("1-sqrt", "linear"),
             f"train.cooldown_shape={self.cooldown_shape!r} is unknown; use 1-sqrt or linear.")
        need(0 < self.cooldown_fraction < 1, f"train.cooldown_fraction={self.cooldown_fraction} "
             "must lie in (0, 1), e.g. 0.2 (the last 20% of a run's steps).")
