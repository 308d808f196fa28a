"""One GPU per job: a lock-protected pool of devices shared by every process on the machine.

Jobs of a multirun (joblib, submitit_local) start together and differ in length, so
``job.num % n_gpus`` puts two jobs on one GPU while another idles, and ``submitit_local`` puts
every job on GPU 0. Instead each job claims the first free device: one ``filelock`` per device
in a machine-wide folder, held for the life of the job. The OS drops the lock when the process
dies (even by ``kill -9``), so a crashed job never leaks its GPU.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from filelock import FileLock, Timeout

_HELD: list[FileLock] = []  # locks this process holds (released at exit)


def default_lock_dir() -> Path:
    return Path(os.environ.get("FLOPS_FIT_GPU_LOCK_DIR",
                               Path(tempfile.gettempdir()) / "flops-fit-gpu-locks"))


def claim_device(devices: list[int], lock_dir: str | Path | None = None,
                 wait_s: float = 0.0) -> int | None:
    """Claim the first free device index of ``devices``; None if all are taken.

    Tries each device without blocking; with ``wait_s`` > 0 keeps trying for that long.
    The claim lasts until :func:`release_devices` or the end of the process.
    """
    import time

    lock_dir = Path(lock_dir or default_lock_dir())
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        for index in devices:
            lock = FileLock(str(lock_dir / f"device{index}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            _HELD.append(lock)
            return index
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


def release_devices() -> None:
    """Give back every device this process claimed."""
    while _HELD:
        _HELD.pop().release()


def pick_cuda_device(requested: str, lock_dir: str | Path | None = None) -> str:
    """Resolve ``train.device`` for this job before CUDA work starts.

    ``auto``/``cuda`` on a machine with several GPUs claims a free one from the pool
    (``cuda:<i>``); an explicit ``cuda:N`` or ``cpu`` is kept as is.
    """
    if requested not in ("auto", "cuda"):
        return requested
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count <= 1:
        return requested
    index = claim_device(list(range(count)), lock_dir, wait_s=3600.0)
    return f"cuda:{index}" if index is not None else requested
