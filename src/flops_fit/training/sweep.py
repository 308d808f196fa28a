"""The train stage: every planned run of this shard, one after another, into the run directory.

* **Shards.** Run ``i`` of the plan belongs to shard ``i % train.num_shards``; shards on one
  machine or many share the run directory.
* **Locks.** A run is trained under ``runs/<run_id>/.train.lock``; a run whose lock another
  process holds is skipped (that process is training it).
* **Done runs.** Completed and diverged runs are skipped unless ``train.force``; failed runs
  are retried. ``results.json`` is rebuilt after every run (:func:`rundir.rebuild_results`).
* **Reuse** (``train.schedule=wsd train.reuse=true``). The plan's runs form trunks
  (:mod:`flops_fit.training.trunks`); shards split the trunks, balanced by compute. One process
  trains a
  trunk under ``trunks/<trunk_id>/.train.lock``: up to each branch point (checkpointed as
  ``branch-<step>.pt``), then that run's cooldown from there. Killed anywhere, a restart resumes
  the run's own checkpoint, or the trunk from its latest checkpoint; a finished run is never
  trained again.

One run is :class:`~flops_fit.training.runner.TrainingRunner`'s job.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from filelock import FileLock, Timeout
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from flops_fit.config import TrainConfig
from flops_fit.data import DataSource, as_data_source
from flops_fit.errors import TrainingFailedError
from flops_fit.planning.planner import RunSpec, SweepPlan
from flops_fit.rundir import io as rundir
from flops_fit.rundir.layout import CHECKPOINT_FILE, TRUNK_CHECKPOINT_FILE, Layout, refuse_link
from flops_fit.rundir.records import FINAL_STATUSES
from flops_fit.training.ddp_spawn import spawn_train
from flops_fit.training.devices import resolve_device
from flops_fit.training.progress import Reporter, stamp
from flops_fit.training.runner import LossFn, TrainingRunner, check_loss_fn
from flops_fit.training.schedule import check_schedule_name, reuses_trunks
from flops_fit.training.tracking.loggers import check_loggers
from flops_fit.training.trunk_runner import TrunkRunner
from flops_fit.training.trunks import Trunk, flops_spent, group_trunks, shard_trunks

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
    lr_rule: str | None = None,
    label: str = "",
    only: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Train this shard's runs of ``plan`` that are not done; return this shard's records.

    ``lr_rule`` names the rule that set the runs' peak LR (recorded in each run's record);
    ``label`` starts every progress line (``worker 2: `` when workers share the plan);
    ``only`` (run ids) trains those runs alone (a round of sequential planning), while the
    trunks are the whole plan's, so a trunk keeps its latest state for its later runs.

    Runs ``i`` with ``i % cfg.num_shards == cfg.shard`` are this shard's, in plan order (under
    ``reuse``: the runs of this shard's trunks, :func:`~flops_fit.training.trunks.shard_trunks`).
    Completed and diverged runs are skipped unless ``cfg.force``; a run another process is
    training (its lock is held) is skipped. ``results.json`` is rebuilt after every run.
    """
    run_dir = Path(run_dir)
    cfg.check()
    check_schedule_name(cfg)
    resolve_device(cfg.device)  # fail early, before anything is written
    check_loggers(cfg.loggers)  # a missing extra: one sentence
    data = as_data_source(data)
    console = console or Console()
    reuse = reuses_trunks(cfg)
    my_trunks: list[Trunk] = []
    if reuse:
        my_trunks = shard_trunks(group_trunks(plan, cfg), cfg.num_shards)[cfg.shard]
        # longest first (steps: per-step overhead rules small models' time), so that workers
        # sharing the plan take the long trunks early and end together
        my_trunks.sort(key=lambda t: -t.runs[-1].steps)
        in_trunks = {r.run_id for t in my_trunks for r in t.runs}
        mine = [r for r in plan.runs if r.run_id in in_trunks]  # plan order, as without reuse
    else:
        mine = [r for i, r in enumerate(plan.runs) if i % cfg.num_shards == cfg.shard]
    spent = flops_spent(plan, cfg)
    if mine:
        data.check_batch(max(r.batch_size for r in mine))
    existing = rundir.load_run_results(run_dir)
    todo = unfinished(mine, existing, cfg.force)
    for run_id in {r.run_id for r in mine} - {r.run_id for r in todo}:
        # a kill between a run's record and its cleanup leaves the checkpoint of a finished run
        (rundir.run_path(run_dir, run_id) / CHECKPOINT_FILE).unlink(missing_ok=True)
    if only is not None:
        mine = [r for r in mine if r.run_id in only]
        todo = [r for r in todo if r.run_id in only]
    keep = only is not None  # a round: later rounds may add longer runs of any size
    if not todo:
        for trunk in my_trunks:
            _prune(Layout(run_dir), trunk, run_dir, keep)
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

    if loss_fn is not None:
        check_loss_fn(loss_fn, model_cls, min(todo, key=lambda r: r.num_params), data)

    target = plan.model.get("_target_") if isinstance(plan.model, dict) else None
    reporter = Reporter(console, len(mine), len(mine) - len(todo),
                        sum(spent[r.run_id] for r in todo), label)
    runner = (TrunkRunner if reuse else TrainingRunner)(model_cls, data, cfg, loss_fn, reporter,
                                                         on_step, target)
    runner.spawn = spawn_train  # train.devices_per_run > 1: K workers per run
    runner.lr_rule = lr_rule
    if over:
        reporter.log(msg)
    reporter.log(f"Training {len(todo)} of {len(mine)} runs on {runner.device} "
                 f"({runner.dtype_label}, {torch.get_num_threads()} threads) into {run_dir}")
    t0 = time.perf_counter()
    try:
        todo_ids = {r.run_id for r in todo}
        for trunk in my_trunks:
            if todo_ids & {r.run_id for r in trunk.runs}:
                for rec in _train_trunk(runner, reporter, run_dir, trunk, cfg.force, spent,
                                        todo_ids, keep):
                    existing[rec["run_id"]] = rec
                    rundir.rebuild_results(run_dir, plan)
        for spec in [] if reuse else todo:
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
    console.print(Text(stamp(label + f"Train stage done in {time.perf_counter() - t0:.1f}s: "
                             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))),
                  highlight=False)
    sys.stdout.flush()
    return records


def check_failures(records: list[dict[str, Any]], console: Console) -> None:
    """A last line naming failed runs and why; :class:`TrainingFailedError` if all failed."""
    failed = [r for r in records if r.get("status") == "failed"]
    if not failed:
        return
    cause = str(failed[0].get("error") or "unknown cause")
    if len(failed) == len(records):
        raise TrainingFailedError(
            f"No run completed: all {len(records)} run(s) of this train call failed; the "
            f"first ({failed[0].get('run_id')}) failed with {cause}")
    console.print(f"{len(failed)} of {len(records)} runs failed (they are retried by the next "
                  f"train); the first ({escape(str(failed[0].get('run_id')))}) failed with "
                  f"{escape(cause)}", highlight=False, soft_wrap=True)


def unfinished(runs: list[RunSpec], records: dict[str, dict[str, Any]],
               force: bool = False, only: Collection[str] | None = None) -> list[RunSpec]:
    """The runs of ``runs`` a train call trains: those without a final record (``records``:
    run_id -> record), or all of them with ``force``; of ``only`` (run ids), if given."""
    return [r for r in runs if (only is None or r.run_id in only)
            and (force or records.get(r.run_id, {}).get("status") not in FINAL_STATUSES)]


def _train_locked(runner: TrainingRunner, reporter: Reporter, run_dir: Path, spec: RunSpec,
                  force: bool, start: tuple[str, Path] | None = None,
                  spent: float | None = None) -> dict[str, Any] | None:
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
            rec = runner.run(spec, run_dir, start, spent)
            if runner.device.type == "cuda":  # the run's model and optimizer are gone
                torch.cuda.empty_cache()
        reporter.end_run(rec)
        return rec
    finally:
        lock.release()


# --------------------------------------------------------------------------------------------
# Reuse: one trunk, its branch points and cooldowns
# --------------------------------------------------------------------------------------------


def _train_trunk(runner: TrunkRunner, reporter: Reporter, run_dir: Path, trunk: Trunk,
                 force: bool, spent: dict[str, float], todo: set[str], keep: bool = False
                 ) -> list[dict[str, Any]]:
    """Train ``trunk``'s runs in ``todo`` in branch order under the trunk's lock; their records
    (``keep``: the trunk keeps its latest state, :func:`_prune`).

    Each run resumes its own checkpoint if it has one; else the trunk is advanced to the run's
    branch point (from its latest checkpoint) and the run is its cooldown from there. A trunk
    that fails or diverges leaves the run to train standalone (the same run, from step 0), so
    the record says what happened.
    """
    lay = Layout(run_dir)
    tdir = lay.trunk(trunk.trunk_id)
    tdir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(tdir / TRAIN_LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        reporter.log(f"{trunk.trunk_id} is being trained by another process; skipped.")
        return []
    records = []
    try:
        rundir.remove_stale_temp_files(tdir)
        if force:  # retrain everything, the trunk included
            for p in tdir.glob("*.pt"):
                p.unlink()
        for spec, b in zip(trunk.runs, trunk.branches, strict=True):
            if spec.run_id not in todo:
                continue
            rec = rundir.read_run_result(run_dir, spec.run_id)
            if rec is not None and rec.get("status") in FINAL_STATUSES and not force:
                continue
            start = None
            if not runner.has_checkpoint(spec, run_dir):
                try:
                    _advance(runner, reporter, lay, trunk, b)
                    start = (trunk.trunk_id, lay.branch_checkpoint(trunk.trunk_id, b))
                except Exception as exc:  # the standalone run reproduces it, with a record
                    reporter.log(f"{trunk.trunk_id} stopped before step {b} ({exc}); "
                                 f"{spec.run_id} trains standalone.")
            rec = _train_locked(runner, reporter, run_dir, spec, force, start,
                                spent[spec.run_id])
            if rec is not None:
                records.append(rec)
            _prune(lay, trunk, run_dir, keep)
    finally:
        lock.release()
    return records


def _advance(runner: TrunkRunner, reporter: Reporter, lay: Layout, trunk: Trunk,
             b: int) -> None:
    """Make ``branch-<b>.pt``: the trunk's state after ``b`` steps, from its latest state."""
    tid, longest = trunk.trunk_id, trunk.runs[-1]
    out = lay.branch_checkpoint(tid, b)
    fingerprint = runner.trunk_fingerprint(tid, longest)
    if out.exists():
        ckpt = rundir.load_checkpoint(out)
        if ckpt is not None and ckpt.get("fingerprint") == fingerprint:
            return
        out.unlink(missing_ok=True)
    tdir = lay.trunk(tid)
    # (step, path) of usable trunk states at or before b
    starts = [(step, p) for step, p in lay.branch_checkpoints(tid).items() if step <= b]
    periodic = rundir.load_checkpoint(tdir / TRUNK_CHECKPOINT_FILE)
    if periodic is not None and periodic.get("fingerprint") == fingerprint \
            and periodic["state"]["step"] <= b:
        starts.append((periodic["state"]["step"], tdir / TRUNK_CHECKPOINT_FILE))
    step0, start = max(starts, key=lambda s: s[0]) if starts else (0, None)
    if step0 < b:
        reporter.log(f"{tid}: trunk steps {step0}-{b} at constant LR (branch point of "
                     f"{len([x for x in trunk.branches if x == b])} run(s))")
    runner.train_trunk(tid, longest, tdir, start, b, out)
    (tdir / TRUNK_CHECKPOINT_FILE).unlink(missing_ok=True)  # older than the branch just made


def prune_trunks(run_dir: str | Path, plan: SweepPlan, cfg: TrainConfig) -> None:
    """Delete the trunk checkpoints no unfinished run of ``plan`` needs, those of trunks
    the plan no longer has included (sequential planning re-centred their sizes away)."""
    run_dir = Path(run_dir)
    lay = Layout(run_dir)
    if not reuses_trunks(cfg) or not refuse_link(lay.trunks).is_dir():
        return
    trunks = {t.trunk_id: t for t in group_trunks(plan, cfg)}
    for tdir in lay.trunks.iterdir():
        if tdir.name in trunks:
            _prune(lay, trunks[tdir.name], run_dir)
        elif tdir.name.startswith("trunk-") and tdir.is_dir() and not tdir.is_symlink():
            for p in tdir.glob("*.pt"):
                p.unlink(missing_ok=True)


def _prune(lay: Layout, trunk: Trunk, run_dir: Path, keep_last: bool = False) -> None:
    """Delete the trunk checkpoints no unfinished run needs (all of them once every run is
    final; the trunk's metrics.jsonl stays). ``keep_last`` keeps the latest branch point too
    (sequential planning: a later round may add a longer run of this size)."""
    tdir = lay.trunk(trunk.trunk_id)
    if not tdir.exists():
        return
    needed = {b for spec, b in zip(trunk.runs, trunk.branches, strict=True)
              if (rundir.read_run_result(run_dir, spec.run_id) or {}).get("status")
              not in FINAL_STATUSES}
    branch_files = lay.branch_checkpoints(trunk.trunk_id)
    if keep_last and branch_files:
        needed.add(max(branch_files))
    if not needed:
        for p in tdir.glob("*.pt"):
            p.unlink(missing_ok=True)
        return
    first = min(needed)
    base = max((s for s in branch_files if s <= first), default=None)  # where advancing starts
    for step, p in branch_files.items():
        if step < first and step != base and step not in needed:
            p.unlink(missing_ok=True)
