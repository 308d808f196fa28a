"""Data parallelism for one run (``train.devices_per_run: K``): the process group and the few
things a rank does differently (:class:`World`).

Every rank draws the *same* global batch from the same seeded sampler and keeps its own slice
(rank r of K: samples ``r*B/K .. (r+1)*B/K``); DDP averages the gradients, so a step is the
K=1 step on the whole batch (up to float summation order), the global batch, token count, data
order and FLOPs stay as planned, and checkpoints are the K=1 checkpoints (resumable with any K).
Only rank 0 writes files (metrics.jsonl, checkpoints, loggers); result.json is written by the
process that launched the workers, or by rank 0 under torchrun/srun.

Launching: on one machine :mod:`flops_fit.training.ddp_spawn` spawns K workers itself; under
``torchrun`` or SLURM's ``srun`` each process is one rank and :func:`current_world` reads the
launcher's RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT (or SLURM_PROCID /
SLURM_NTASKS / SLURM_LOCALID). NCCL on CUDA, Gloo on CPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

#: a collective that waits longer than this means a peer died (NCCL would otherwise hang)
TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class World:
    """This process's place in a run's process group (size 1: no group)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes the run's files."""
        return self.rank == 0

    def local(self, batch: Any) -> Any:
        """This rank's slice (dim 0) of a global batch: tensors, tuples, lists, dicts."""
        if self.size == 1:
            return batch
        if isinstance(batch, torch.Tensor):
            b = batch.shape[0] // self.size  # (B, ...) -> (B/K, ...)
            return batch[self.rank * b:(self.rank + 1) * b]
        if isinstance(batch, (tuple, list)):
            return type(batch)(self.local(x) for x in batch)
        if isinstance(batch, dict):
            return {k: self.local(v) for k, v in batch.items()}
        return batch

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model the training step calls: DDP over the group, or the model itself."""
        if self.size == 1:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return DDP(model, device_ids=ids)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over the ranks (the global batch's loss from the slices')."""
        if self.size == 1:
            return value
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.size

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if any rank's ``flag`` is (Ctrl-C/SIGTERM: all stop together)."""
        if self.size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def agree(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (decisions such as 'skip this run')."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def launcher_env() -> dict[str, int] | None:
    """rank/size/local_rank from torchrun's or srun's environment; None outside a launcher."""
    env = os.environ
    if int(env.get("WORLD_SIZE", "1")) > 1 and "RANK" in env:
        return {"rank": int(env["RANK"]), "size": int(env["WORLD_SIZE"]),
                "local_rank": int(env.get("LOCAL_RANK", "0"))}
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env and \
            env.get("FLOPS_FIT_SLURM_DDP", "1") == "1":
        return {"rank": int(env["SLURM_PROCID"]), "size": int(env["SLURM_NTASKS"]),
                "local_rank": int(env.get("SLURM_LOCALID", "0"))}
    return None


def _slurm_master() -> str:
    """The first host of the SLURM allocation (MASTER_ADDR under srun)."""
    nodes = os.environ.get("SLURM_JOB_NODELIST", "")
    if nodes and shutil.which("scontrol"):
        out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True,
                             text=True, check=False).stdout.split()
        if out:
            return out[0]
    return "127.0.0.1"


def init_group(rank: int, size: int, device: torch.device) -> None:
    """Join the process group (env:// rendezvous; MASTER_ADDR/PORT defaulted under SLURM)."""
    if dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", _slurm_master())
    os.environ.setdefault("MASTER_PORT", str(29500 + int(os.environ.get("SLURM_JOB_ID", "0"))
                                             % 1000))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank,
                            world_size=size, timeout=TIMEOUT)


def current_world(device: torch.device) -> World:
    """This process's :class:`World`: the launcher's (joined now), else a world of one."""
    if dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(),
                     int(os.environ.get("LOCAL_RANK", "0")))
    env = launcher_env()
    if env is None:
        return World()
    init_group(env["rank"], env["size"], device)
    return World(env["rank"], env["size"], env["local_rank"])


def launcher_device(requested: str) -> str | None:
    """Under torchrun/srun on CUDA: ``cuda:LOCAL_RANK`` (the launcher placed the ranks)."""
    env = launcher_env()
    if env is None or requested not in ("auto", "cuda") or not torch.cuda.is_available():
        return None
    return f"cuda:{env['local_rank'] % max(torch.cuda.device_count(), 1)}"
