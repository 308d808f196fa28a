"""A run's ``result.json`` record (:class:`~flops_fit.rundir.records.RunRecord`), from its plan and
what its :class:`~flops_fit.training.runner.TrainingRunner` did."""

from __future__ import annotations

import platform
import time
import zlib
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import torch

from flops_fit.planning.planner import RunSpec
from flops_fit.rundir.records import RunRecord
from flops_fit.training.devices import use_compile
from flops_fit.training.schedule import Schedule
from flops_fit.training.trunks import seed_key

if TYPE_CHECKING:  # the runner calls this module, not the other way round
    from flops_fit.training.runner import TrainingRunner


def run_seed(seed: int, key: str) -> int:
    """A per-run seed that is stable across processes and machines."""
    return (int(seed) + zlib.crc32(key.encode("utf-8"))) % 2**63


def run_record(runner: TrainingRunner, spec: RunSpec, schedule: Schedule,
               tokens_per_step: float, state: dict[str, Any], status: str,
               final_loss: float | None, error: str | None, tb: str | None,
               switches0: int) -> RunRecord:
    """The run's ``result.json`` record, from its plan and what the run did."""
    cfg = runner.cfg
    tokens = int(round(state["step"] * tokens_per_step))
    train_time = state["train_time_s"]
    return RunRecord(
        run_id=spec.run_id,
        status=status,
        compute_budget=spec.compute_budget,
        num_params=spec.num_params,
        num_params_non_embedding=spec.num_params_non_embedding,
        num_tokens=tokens,
        flops=spec.flops_per_token * tokens,
        flops_6nd=6.0 * spec.num_params * tokens,
        final_loss=final_loss,
        size_param=spec.size_param,
        size_value=spec.size_value,
        steps=spec.steps,
        steps_done=state["step"],
        batch_size=spec.batch_size,
        seq_len=spec.seq_len,
        tokens_per_param=tokens / spec.num_params,
        flops_per_token=spec.flops_per_token,
        planned_num_tokens=spec.num_tokens,
        planned_flops=spec.flops,
        epochs=tokens / runner.data.train_size if runner.data.train_size else None,
        lr=schedule.peak,
        schedule=schedule.kind,
        lr_schedule=schedule.describe(),
        lr_rule=("train.lr" if cfg.lr is not None else runner.lr_rule),
        warmup_steps=schedule.warmup,
        weight_decay=cfg.weight_decay,
        betas=[cfg.beta1, cfg.beta2],
        grad_clip=cfg.grad_clip,
        initial_loss=state["initial_loss"],
        final_train_loss=state["last_loss"],
        eval_tokens=cfg.eval_tokens,
        wall_time_s=time.perf_counter() - runner._t_wall + state["prior_wall_s"],
        train_time_s=train_time,
        tokens_per_s=tokens / train_time if train_time > 0 else None,
        device=str(runner.device) + (f" ({torch.cuda.get_device_name(runner.device)})"
                                   if runner.device.type == "cuda" else ""),
        dtype=runner.dtype_label,
        compile=use_compile(cfg.compile, runner.device, spec.flops),
        threads=torch.get_num_threads(),  # at the end of the run
        thread_switches=runner.tuner.switches - switches0 if runner.tuner is not None else 0,
        seed=run_seed(cfg.seed, seed_key(runner.model_target, spec, cfg)),
        resumed=state["resumed"],
        model=runner.model_target,
        model_kwargs=spec.model_kwargs,
        data=runner.data.name,
        torch=torch.__version__,
        host=platform.node(),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        error=error,
        traceback=tb,  # written only when there is one
    )
