"""Several local worker processes train one plan at once, on CPU (``train.workers``).

Why: the default GPT's small models use two cores badly. Width 16 trains at ~23 GFLOP/s on two
threads and nearly as fast on one (per-step overhead, not arithmetic, bounds it), so two
one-thread processes train two runs in about the time one two-thread process trains one
(measured numbers: ``docs/measurements.md``, "Workers").

How: each worker is a spawned process running :func:`~flops_fit.training.sweep.train_stage`
over the whole plan with ``cores // workers`` threads. The run and trunk locks the stage
already takes make the workers share out the work as they go: a worker skips a trunk (or run)
another holds and takes the next, so the load balances itself whatever each trunk's speed.
A worker that dies leaves its run to the next ``train`` (its checkpoint resumes); the others
finish theirs.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
from rich.console import Console
from rich.text import Text

from flops_fit.config import TrainConfig
from flops_fit.errors import FlopsFitError, Terminated
from flops_fit.rundir.io import load_run_results
from flops_fit.training.devices import cpu_cores, resolve_device
from flops_fit.training.interrupts import deferred, on_sigterm
from flops_fit.training.progress import stamp
from flops_fit.training.sweep import train_stage, unfinished
from flops_fit.training.trunks import flops_spent

MAX_AUTO_WORKERS = 2  # auto: at most this many (measured on 2 cores; more is not measured)
AUTO_MIN_FLOPS = 5e12  # auto: less work than this (~100 s on 2 cores; budgets=smoke is 2.1e12)
                       # trains in one process: a worker's start (~3 s: import torch, unpickle
                       # the data) would show, and small sweeps stay one process to debug


def resolve_workers(cfg: TrainConfig, device: torch.device, flops_left: float) -> int:
    """How many local worker processes train the plan: ``cfg.workers``, or (0) auto.

    Auto is one worker per core up to :data:`MAX_AUTO_WORKERS` on CPU, and 1 wherever else:
    on CUDA (one GPU per process; use a launcher for more), under SLURM or explicit shards (the
    cores are already shared out), with ``train.threads`` pinned (bit-exact reruns), with
    several devices per run, with ``train.force`` (workers would retrain each other's runs),
    or for less than :data:`AUTO_MIN_FLOPS` of training left.
    """
    if cfg.workers > 1 and cfg.force:
        raise FlopsFitError(f"train.force=true retrains in one process, not train.workers="
                            f"{cfg.workers}; set train.workers=1 (or drop train.force).")
    if cfg.workers > 0:
        return int(cfg.workers)
    if cfg.force or device.type != "cpu" or cfg.num_shards > 1 or cfg.threads > 0 \
            or cfg.devices_per_run > 1 or "SLURM_JOB_ID" in os.environ \
            or flops_left < AUTO_MIN_FLOPS:
        return 1
    return max(1, min(cpu_cores(), MAX_AUTO_WORKERS))


def worker_threads(cfg: TrainConfig, workers: int) -> int:
    """Threads per worker: ``cfg.threads`` if pinned, else the cores split between workers."""
    if cfg.threads > 0:
        return int(cfg.threads)
    return max(1, cpu_cores() // workers)


#: a worker's exit code after Ctrl-C / SIGTERM (its run checkpointed): the shell's 130 / 143
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


def _watch_parent(ppid: int) -> None:
    """Stop this worker like SIGTERM (checkpoint, then exit) once the launching process dies."""
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _worker(index: int, blob: bytes, ppid: int) -> None:
    # a session of its own: a terminal's Ctrl-C reaches the launching process alone, which
    # passes it on once (a second signal would stop a worker before it checkpoints)
    os.setsid()
    signal.signal(signal.SIGTERM, on_sigterm)  # SIGTERM stops like Ctrl-C (interrupts.py)
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    payload = torch.load(io.BytesIO(blob), weights_only=False)  # our own bytes, just written
    # plain lines, never two live progress bars fighting over one terminal
    console = Console(force_terminal=False, soft_wrap=True)
    try:
        train_stage(payload["run_dir"], payload["plan"], payload["model_cls"], payload["data"],
                    payload["cfg"], loss_fn=payload["loss_fn"], console=console,
                    lr_rule=payload["lr_rule"], label=f"worker {index + 1}: ",
                    only=payload["only"])
    except KeyboardInterrupt as exc:  # its run is checkpointed: say so by the exit code
        sys.stdout.flush()
        os._exit(EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED)


def _stop(procs: list[Any], wait_s: float = 60.0) -> None:
    """SIGTERM every live worker (each checkpoints its run and exits), then wait for them."""
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))


def train_in_workers(run_dir: Path, plan: Any, model_cls: type, data: Any, cfg: TrainConfig,
                     workers: int, loss_fn: Any = None, lr_rule: str | None = None,
                     only: Collection[str] | None = None) -> None:
    """Train ``plan``'s unfinished runs (of ``only``, if given) in ``workers`` spawned
    processes; returns when all end.

    Ctrl-C or SIGTERM here stops every worker at a step boundary with its run checkpointed,
    then raises as one process would (KeyboardInterrupt, or Terminated). Raises
    FlopsFitError when a worker ended abnormally (its runs resume at the next train).
    """
    cfg = replace(cfg, workers=1, threads=worker_threads(cfg, workers))
    payload = {"run_dir": str(run_dir), "plan": plan, "model_cls": model_cls,
               "data": data.to(torch.device("cpu")), "cfg": cfg, "loss_fn": loss_fn,
               "lr_rule": lr_rule, "only": None if only is None else sorted(only)}
    buf = io.BytesIO()  # plain bytes: torch's shared-memory tensor passing needs a big /dev/shm
    try:
        torch.save(payload, buf)
    except Exception as exc:  # a lambda loss_fn or a class defined in __main__
        raise FlopsFitError(
            f"train.workers={workers} needs the model, data and loss function to be picklable "
            f"({type(exc).__name__}: {exc}); set train.workers=1.") from None
    # Ctrl-C / SIGTERM are held while the workers start (a half-written start would leave a
    # worker unpickling a truncated payload), then passed on once at the next poll
    with deferred() as stop:
        ctx = mp.start_processes(_worker, args=(buf.getvalue(), os.getpid()), nprocs=workers,
                                 join=False, start_method="spawn")
        try:
            while not ctx.join(timeout=0.5):
                if stop.signum is not None:
                    _stop(ctx.processes)
                    stop.raise_now()
        except mp.ProcessExitedException as exc:
            _stop(ctx.processes)
            if stop.signum is not None or exc.exit_code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
                stop.signum = stop.signum or (signal.SIGTERM if exc.exit_code == EXIT_TERMINATED
                                              else signal.SIGINT)
                stop.raise_now()
            raise FlopsFitError(f"training worker {exc.error_index + 1} of {workers} died "
                                f"({exc}); train again to resume its run.") from None
        except mp.ProcessRaisedException as exc:
            _stop(ctx.processes)
            last = str(exc).strip().splitlines()[-1]
            raise FlopsFitError(f"a training worker failed: {last}") from None


def train_with_workers(run_dir: Path, plan: Any, model_cls: type, data: Any, cfg: TrainConfig,
                       loss_fn: Any = None, console: Console | None = None,
                       lr_rule: str | None = None, only: Collection[str] | None = None
                       ) -> list[dict[str, Any]]:
    """Train ``plan`` (its runs in ``only``, if given) here (one worker) or in
    :func:`resolve_workers` local processes; the records of the plan's runs that have one."""
    spent = flops_spent(plan, cfg)
    left = sum(spent[r.run_id]
               for r in unfinished(plan.runs, load_run_results(run_dir), only=only))
    workers = resolve_workers(cfg, resolve_device(cfg.device), left)
    if workers == 1:
        return train_stage(run_dir, plan, model_cls, data, cfg, loss_fn=loss_fn,
                           console=console, lr_rule=lr_rule, only=only)
    console = console or Console()
    console.print(Text(stamp(f"Training in {workers} worker processes of "
                             f"{worker_threads(cfg, workers)} thread(s) each (train.workers; "
                             "train.workers=1 for one process).")), highlight=False)
    t0 = time.perf_counter()
    train_in_workers(run_dir, plan, model_cls, data, cfg, workers, loss_fn, lr_rule, only)
    done = load_run_results(run_dir)
    console.print(Text(stamp(f"{workers} workers trained the plan in "
                             f"{time.perf_counter() - t0:.1f}s.")), highlight=False)
    return [done[r.run_id] for r in plan.runs if r.run_id in done]
