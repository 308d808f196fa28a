"""The train stage: every planned run of this shard, one after another, into the run directory.

* **Shards.** Run ``i`` of the plan belongs to shard ``i % train.num_shards``; shards on one
  machine or many share the run directory.
* **Locks.** A run is trained under ``runs/<run_id>/.train.lock``; a run whose lock another
  process holds is skipped (that process is training it).
* **Done runs.** Completed and diverged runs are skipped unless ``train.force``; failed runs
  are retried. ``results.json`` is rebuilt after every run (:func:`rundir.rebuild_results`).

One run is :class:`~flops_fit.trainer.TrainingRunner`'s job.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from filelock import FileLock, Timeout
from rich.console import Console
from rich.text import Text

from flops_fit import rundir
from flops_fit.config import TrainConfig
from flops_fit.data import DataSource, as_data_source
from flops_fit.ddp_spawn import spawn_train
from flops_fit.devices import resolve_device
from flops_fit.layout import CHECKPOINT_FILE
from flops_fit.loggers import check_loggers
from flops_fit.planner import RunSpec, SweepPlan
from flops_fit.progress import Reporter, stamp
from flops_fit.records import FINAL_STATUSES
from flops_fit.trainer import LossFn, TrainingRunner, check_loss_fn

TRAIN_LOCK = ".train.lock"  # runs/<run_id>/.train.lock: held while a process trains the run


def train_stage(
    run_dir: str | Path,
    plan: SweepPlan,
    model_cls: type[nn.Module],
    data: DataSource | Any,
    cfg: TrainConfig,
    loss_fn: LossFn | None = None,
    console: Console | None = None,
    on_step: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Train this shard's runs of ``plan`` that are not done; return this shard's records.

    Runs ``i`` with ``i % cfg.num_shards == cfg.shard`` are this shard's, in plan order.
    Completed and diverged runs are skipped unless ``cfg.force``; a run another process is
    training (its lock is held) is skipped. ``results.json`` is rebuilt after every run.
    """
    run_dir = Path(run_dir)
    cfg.check()
    resolve_device(cfg.device)  # fail early, before anything is written
    check_loggers(cfg.loggers)  # a missing extra: one sentence
    data = as_data_source(data)
    console = console or Console()
    mine = [r for i, r in enumerate(plan.runs) if i % cfg.num_shards == cfg.shard]
    if mine:
        data.check_batch(max(r.batch_size for r in mine))
    existing = rundir.load_run_results(run_dir)
    todo = [r for r in mine if cfg.force or
            existing.get(r.run_id, {}).get("status") not in FINAL_STATUSES]
    for run_id in {r.run_id for r in mine} - {r.run_id for r in todo}:
        # a kill between a run's record and its cleanup leaves the checkpoint of a finished run
        (rundir.run_path(run_dir, run_id) / CHECKPOINT_FILE).unlink(missing_ok=True)
    if not todo:
        rundir.rebuild_results(run_dir, plan)
        console.print(Text(stamp(f"Nothing to train: all {len(mine)} runs of this shard are "
                                 f"done ({run_dir}).")), highlight=False)
        return [existing[r.run_id] for r in mine]

    over = [r for r in todo if data.train_size and r.num_tokens > data.train_size]
    if over:
        most = max(r.num_tokens / data.train_size for r in over)
        msg = (f"{len(over)} of {len(todo)} runs need more tokens than the training split holds "
               f"({data.train_size:,}); they repeat data (up to {most:.1f} epochs), and their "
               "records store `epochs`.")
        warnings.warn(msg, stacklevel=2)

    if loss_fn is not None:
        check_loss_fn(loss_fn, model_cls, min(todo, key=lambda r: r.num_params), data)

    target = plan.model.get("_target_") if isinstance(plan.model, dict) else None
    reporter = Reporter(console, len(mine), len(mine) - len(todo),
                        sum(r.flops for r in todo))
    runner = TrainingRunner(model_cls, data, cfg, loss_fn, reporter, on_step, target)
    runner.spawn = spawn_train  # train.devices_per_run > 1: K workers per run
    if over:
        reporter.log(msg)
    reporter.log(f"Training {len(todo)} of {len(mine)} runs on {runner.device} "
                 f"({runner.dtype_label}, {torch.get_num_threads()} threads) into {run_dir}")
    t0 = time.perf_counter()
    try:
        for spec in todo:
            rec = _train_locked(runner, reporter, run_dir, spec, cfg.force)
            if rec is None:  # another process is training it (and rebuilds results.json)
                continue
            existing[spec.run_id] = rec
            rundir.rebuild_results(run_dir, plan)
    finally:
        reporter.close()
    records = [existing[r.run_id] for r in mine if r.run_id in existing]
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    console.print(Text(stamp(f"Train stage done in {time.perf_counter() - t0:.1f}s: "
                             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))),
                  highlight=False)
    sys.stdout.flush()
    return records


def _train_locked(runner: TrainingRunner, reporter: Reporter, run_dir: Path, spec: RunSpec,
                  force: bool) -> dict[str, Any] | None:
    """Train ``spec`` under its lock; its record, or None when another process holds the lock.

    A run that finished while this shard waited for it (another process's record) is not
    trained again unless ``force``.
    """
    lock = FileLock(str(rundir.run_path(run_dir, spec.run_id) / TRAIN_LOCK), timeout=0)
    try:
        if runner.world.is_writer:  # under torchrun/srun rank 0 locks, the others follow it
            lock.acquire()
        held = runner.world.agree(True)
    except Timeout:
        held = runner.world.agree(False)
    if not held:
        reporter.log(f"{spec.run_id} is being trained by another process; skipped.")
        return None
    try:  # we hold the run's lock: temp files in its folder are from a killed writer
        rundir.remove_stale_temp_files(rundir.run_path(run_dir, spec.run_id))
        rec = rundir.read_run_result(run_dir, spec.run_id)
        if runner.world.agree(rec is None or force or rec.get("status") not in FINAL_STATUSES):
            rec = runner.run(spec, run_dir)
            if runner.device.type == "cuda":  # the run's model and optimizer are gone
                torch.cuda.empty_cache()
        reporter.end_run(rec)
        return rec
    finally:
        lock.release()
