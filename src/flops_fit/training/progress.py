"""Sweep and run progress: rich bars on a terminal, one-line records elsewhere (cron, SLURM logs).

Every line a log reader sees starts with a ``[YYYY-mm-dd HH:MM:SS]`` stamp (:func:`stamp`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from flops_fit.planning.planner import RunSpec


class Reporter:
    """Sweep and run progress. ``update`` is cheap; it is called at every log step."""

    def __init__(self, console: Console | None, total_runs: int, done_runs: int,
                 total_flops: float, label: str = "") -> None:
        self.console = console or Console()
        self.label = label  # starts every line: "worker 2: " when workers share a plan
        self.total_runs, self.done_runs = total_runs, done_runs
        self.live = self.console.is_terminal and not self.console.is_dumb_terminal
        self.progress: Progress | None = None
        self._next_pct = 0.0
        self._spec: RunSpec | None = None
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description:<12}"), BarColumn(), TaskProgressColumn(),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"), console=self.console, transient=False,
            )
            # the sweep bar advances in FLOPs, so its ETA weighs big runs properly
            self.sweep_task = self.progress.add_task(
                f"runs {done_runs}/{total_runs}", total=max(total_flops, 1.0),
                info=f"{total_flops:.2e} FLOPs to train")
            self.run_task = self.progress.add_task("run", total=1, info="", visible=False)
            self.progress.start()

    def log(self, msg: str) -> None:
        # plain text: run ids, paths and error messages may hold '[' (never rich markup)
        self.console.print(Text(stamp(self.label + msg)), highlight=False,
                           soft_wrap=not self.live)

    def start_run(self, spec: RunSpec, start_step: int, how: str = "resuming at step") -> None:
        self._spec = spec
        self._next_pct = 0.1 * (1 + int(10 * start_step / spec.steps))
        what = f"{spec.run_id} ({spec.size_param}={spec.size_value}, N={spec.num_params:,})"
        if self.progress is not None:
            self.progress.update(self.run_task, description=f"{spec.size_param}={spec.size_value}",
                                 total=spec.steps, completed=start_step, visible=True, info="")
            self.progress.reset(self.run_task, total=spec.steps, completed=start_step)
        resumed = f", {how} {start_step}" if start_step else ""
        self.log(f"run {self.done_runs + 1}/{self.total_runs} {what}: {spec.steps} steps, "
                 f"{spec.num_tokens:,} tokens, C={spec.compute_budget:.2e}{resumed}")

    def update(self, step: int, loss: float, tokens_per_s: float, flops_done: float,
               eta_s: float) -> None:
        spec = self._spec
        assert spec is not None
        if self.progress is not None:
            self.progress.update(self.run_task, completed=step,
                                 info=f"step {step}/{spec.steps}  loss {loss:.3f}  "
                                      f"{tokens_per_s:,.0f} tok/s")
            self.progress.advance(self.sweep_task, flops_done)
            return
        if step / spec.steps + 1e-9 >= self._next_pct and step < spec.steps:
            self._next_pct = 0.1 * (1 + int(10 * step / spec.steps))
            self.log(f"  {spec.run_id} step {step}/{spec.steps} ({100 * step / spec.steps:.0f}%) "
                     f"loss {loss:.4f} {tokens_per_s:,.0f} tok/s ETA {eta_s:.0f}s")

    def end_run(self, record: dict[str, Any]) -> None:
        self.done_runs += 1
        loss = record.get("final_loss")
        msg = (f"run {self.done_runs}/{self.total_runs} {record['run_id']} {record['status']}"
               + (f" final_loss {loss:.4f}" if isinstance(loss, float) else "")
               + f" in {record.get('wall_time_s', 0):.1f}s"
               + (f" ({record.get('tokens_per_s', 0):,.0f} tok/s)" if loss else "")
               + (f": {record['error']}" if record.get("error") else ""))
        self.log(msg)
        if self.progress is not None:
            self.progress.update(self.sweep_task, description=f"runs {self.done_runs}/"
                                 f"{self.total_runs}")
            self.progress.update(self.run_task, visible=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def stamp(msg: str) -> str:
    """``msg`` with the local time in front: ``[2026-01-31 12:00:00] msg``."""
    return f"[{datetime.now().strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
