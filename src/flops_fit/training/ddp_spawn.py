"""One run on K devices of this machine: spawn K worker processes (torch.multiprocessing), one
rank each (:mod:`flops_fit.training.distributed` has the rules).

The launching process holds the run's lock and GPUs, waits, and writes ``result.json`` from
what rank 0 reports; rank 0 writes metrics.jsonl, checkpoints and the loggers. A worker that
dies (even by ``kill -9``) ends the run as ``failed`` with its checkpoint kept: the next train
resumes it. Workers end themselves if the launching process dies.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from flops_fit.planning.planner import RunSpec
from flops_fit.rundir import io as rundir
from flops_fit.rundir.layout import CHECKPOINT_FILE
from flops_fit.training import devices
from flops_fit.training.distributed import init_group
from flops_fit.training.runner import Diverged, TrainingRunner
from flops_fit.training.schedule import Schedule


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _watch_parent(ppid: int) -> None:
    """End this worker if the launching process is gone (its GPUs and lock are then free)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:
            os._exit(1)


def _worker(rank: int, k: int, port: int, ppid: int, blob: bytes, queue: Any) -> None:
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    payload = torch.load(io.BytesIO(blob), weights_only=False)  # our own bytes, just written
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(k), LOCAL_RANK=str(rank))
    cfg = payload["cfg"]
    gpus = payload["gpus"]
    if gpus:
        cfg = replace(cfg, device=f"cuda:{gpus[rank]}")
    init_group(rank, k, devices.resolve_device(cfg.device))
    state = payload["state"]
    try:
        runner = TrainingRunner(payload["model_cls"], payload["data"], cfg, payload["loss_fn"],
                                None, None, payload["model_target"])
        runner._t_wall = time.perf_counter()
        final = runner._train(payload["spec"], Path(payload["rdir"]), payload["schedule"],
                              payload["tokens_per_step"], state)
        out: tuple[Any, ...] = ("completed", final, None)
    except Diverged as exc:
        out = ("diverged", str(exc), None)
    except Exception as exc:
        out = ("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=8))
    if rank == 0:
        queue.put((*out, state))
    torch.distributed.destroy_process_group()


def spawn_train(runner: TrainingRunner, spec: RunSpec, rdir: Path, schedule: Schedule,
                tokens_per_step: float, state: dict[str, Any]) -> float:
    """Train ``spec`` on ``runner.cfg.devices_per_run`` spawned ranks; final_loss like ``_train``.

    ``state`` is updated from rank 0. Raises what rank 0 raised (diverged or failed), or a
    RuntimeError naming the worker that died.
    """
    k = runner.cfg.devices_per_run
    cuda = runner.device.type == "cuda"
    gpus = (devices.claimed_indices() or list(range(k)))[:k] if cuda else []
    payload = {"cfg": replace(runner.cfg, threads=max(1, runner.cfg.threads)),
               "gpus": gpus, "model_cls": runner.model_cls,
               "data": runner.data.to(torch.device("cpu")), "loss_fn": runner.loss_fn,
               "model_target": runner.model_target, "spec": spec, "rdir": str(rdir),
               "schedule": schedule, "tokens_per_step": tokens_per_step, "state": dict(state)}
    buf = io.BytesIO()  # plain bytes: torch's shared-memory tensor passing needs a big /dev/shm
    torch.save(payload, buf)
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    try:
        mp.start_processes(_worker, args=(k, _free_port(), os.getpid(), buf.getvalue(), queue),
                           nprocs=k, join=True, start_method="spawn")
    except mp.ProcessExitedException as exc:
        _resume_state(rdir, state)
        raise RuntimeError(f"worker rank {exc.error_index} of {k} died ({exc}); the run "
                           "resumes from its last checkpoint on the next train") from None
    except mp.ProcessRaisedException as exc:
        _resume_state(rdir, state)
        raise RuntimeError(f"a worker of {k} failed: {str(exc).strip().splitlines()[-1]}"
                           ) from None
    status, value, tb, st = queue.get()
    state.update(st)
    if status == "diverged":
        raise Diverged(value)
    if status == "failed":
        raise RuntimeError(f"rank 0 of {k}: {value}")
    return float(value)


def _resume_state(rdir: Path, state: dict[str, Any]) -> None:
    """After a dead worker: the state of the last checkpoint (what the retry resumes from)."""
    ckpt = rundir.load_checkpoint(rdir / CHECKPOINT_FILE)
    if ckpt is not None:
        state.update(ckpt["state"])
