"""Training a shared trunk (``train.reuse=true``): :class:`TrunkRunner`.

A trunk is the common start of a size's wsd runs: warm-up, then the constant peak LR
(:mod:`flops_fit.training.trunks`). It trains as its longest run, under the trunk's id, so it has
that
run's seed, init, data order and LR, and stops at a branch point before any cooldown; its
state there (``trunks/<trunk_id>/branch-<step>.pt``) is where each run's cooldown starts
(``TrainingRunner.run(spec, run_dir, start=(trunk_id, branch checkpoint))``).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flops_fit.errors import FlopsFitError
from flops_fit.planning.planner import RunSpec
from flops_fit.rundir import io as rundir
from flops_fit.rundir.layout import CHECKPOINT_FILE, METRICS_FILE, TRUNK_CHECKPOINT_FILE
from flops_fit.training.runner import TrainingRunner, open_metrics
from flops_fit.training.schedule import Schedule, lr_for_size


class TrunkRunner(TrainingRunner):
    """A :class:`~flops_fit.training.runner.TrainingRunner` that also trains trunks."""

    def has_checkpoint(self, spec: RunSpec, run_dir: str | Path) -> bool:
        """Whether ``spec`` has a checkpoint of its own this runner would resume."""
        ckpt = rundir.load_checkpoint(rundir.run_path(Path(run_dir), spec.run_id)
                                      / CHECKPOINT_FILE)
        return ckpt is not None and ckpt.get("fingerprint") == self._fingerprint(spec)

    def train_trunk(self, trunk_id: str, spec: RunSpec, tdir: Path, start: Path | None,
                    end: int, out: Path) -> None:
        """Train the trunk of ``spec`` (its longest run) from checkpoint ``start`` (None: step 0)
        to step ``end`` (before ``spec``'s cooldown) and save its state to ``out``.

        The trunk checkpoints to ``tdir/trunk.pt`` every ``checkpoint_every_s`` and on Ctrl-C;
        its curve goes to ``tdir/metrics.jsonl``. Raises like a run (diverged, failed).
        """
        schedule = Schedule.for_run(self.cfg, spec.steps,
                                    lr_for_size(spec.num_params_non_embedding, self.cfg))
        if end > schedule.branch:
            raise ValueError(f"a trunk never enters a cooldown ({end} > {schedule.branch})")
        self._t_wall = time.perf_counter()
        state: dict[str, Any] = {"step": 0, "train_time_s": 0.0, "initial_loss": None,
                                 "last_loss": None, "resumed": 0, "prior_wall_s": 0.0}
        model, fwd, opt = self._build(spec, schedule)
        fingerprint = self.trunk_fingerprint(trunk_id, spec)
        if start is not None:
            ckpt = rundir.load_checkpoint(start)
            if ckpt is None or ckpt.get("fingerprint") != fingerprint:
                raise FlopsFitError(f"The trunk checkpoint {start} is unreadable; delete it.")
            self._restore(ckpt, model, opt, state)
        metrics = open_metrics(tdir / METRICS_FILE, state["step"])
        trunk_spec = RunSpec(**{**asdict(spec), "run_id": trunk_id})  # named after the trunk
        self._loop(trunk_spec, model, fwd, opt, schedule, spec.num_tokens / spec.steps, state,
                   metrics, tdir / TRUNK_CHECKPOINT_FILE, end=end, fingerprint=fingerprint)
        self._save(out, trunk_spec, model, opt, state, time.perf_counter(), fingerprint)
