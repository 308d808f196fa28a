"""Where a job trains: the GPU pool, the device of ``train.device``, and CPU threads.

**One GPU per job**: a lock-protected pool of devices shared by every process on the machine.

Jobs of a multirun (joblib, submitit_local) start together and differ in length, so
``job.num % n_gpus`` puts two jobs on one GPU while another idles, and ``submitit_local`` puts
every job on GPU 0. Instead each job claims the first free device: one ``filelock`` per device
in a machine-wide folder, held for the life of the job. The OS drops the lock when the process
dies (even by ``kill -9``), so a crashed job never leaks its GPU.

**CPU threads**: ``train.threads=0`` uses this process's cores, split between the shards of one
machine (:func:`cpu_threads`), and a :class:`ThreadTuner` that drops to one thread while other
processes make the OpenMP threads wait on each other (10-30x slower steps on a busy machine).
``train.threads=N`` pins N threads: bit-exact reruns.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from flops_fit.config import TrainConfig
from flops_fit.errors import FlopsFitError
from flops_fit.training.distributed import launcher_device

_HELD: list[FileLock] = []  # locks this process holds (released at exit)
# torch's default thread count (physical cores), read at import, before anyone changes it
_DEFAULT_THREADS = torch.get_num_threads()


def default_lock_dir() -> Path:
    return Path(os.environ.get("FLOPS_FIT_GPU_LOCK_DIR",
                               Path(tempfile.gettempdir()) / "flops-fit-gpu-locks"))


def claim_device(devices: list[int], lock_dir: str | Path | None = None,
                 wait_s: float = 0.0) -> int | None:
    """Claim the first free device index of ``devices``; None if all are taken.

    Tries each device without blocking; with ``wait_s`` > 0 keeps trying for that long.
    The claim lasts until :func:`release_devices` or the end of the process.
    """
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


def claimed_indices() -> list[int]:
    """The device indices this process holds (in claim order)."""
    return [int(Path(lock.lock_file).stem.removeprefix("device")) for lock in _HELD]


def release_devices() -> None:
    """Give back every device this process claimed."""
    while _HELD:
        _HELD.pop().release()


def pick_cuda_device(requested: str, lock_dir: str | Path | None = None, k: int = 1) -> str:
    """Resolve ``train.device`` for this job before CUDA work starts.

    ``auto``/``cuda`` on a machine with several GPUs claims a free one from the pool
    (``cuda:<i>``); an explicit ``cuda:N`` or ``cpu`` is kept as is. With ``k`` > 1 (a run on
    k devices) it claims k of them (``cuda:<first>``; the workers take
    :func:`claimed_indices`); under torchrun/srun each rank takes ``cuda:LOCAL_RANK``.
    """
    placed = launcher_device(requested)
    if placed is not None:
        return placed
    if requested not in ("auto", "cuda"):
        return requested
    if k > 1 and torch.cuda.is_available():
        return f"cuda:{claim_devices(k, lock_dir)[0]}"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count <= 1:
        return requested
    index = claim_device(list(range(count)), lock_dir, wait_s=3600.0)
    return f"cuda:{index}" if index is not None else requested


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda``/``cuda:N`` must exist."""
    name = str(name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FlopsFitError(
                f"train.device={name} was requested but this machine has no usable CUDA GPU; "
                "use train.device=auto or train.device=cpu."
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise FlopsFitError(
                f"train.device={name} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
        return dev
    if name == "cpu":
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise FlopsFitError(
            f"train.device={name!r} is not a device; use auto, cpu, cuda or cuda:N."
        ) from exc


def cpu_cores() -> int:
    """The logical cores this process may run on (its affinity; all of them off Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_threads(cfg: TrainConfig) -> int:
    """Threads for this process: ``cfg.threads``, or (0) this process's cores shared by shards.

    Several shards on one machine (joblib, submitit_local) would oversubscribe the cores, and
    oversubscribed OpenMP threads slow CPU training down by 10x or more; so unless SLURM gave
    this job its own allocation, ``threads=0`` splits the cores between ``num_shards``.
    """
    if cfg.threads > 0:
        return int(cfg.threads)
    cores = min(cpu_cores(), _DEFAULT_THREADS)  # torch's default: physical cores, not hyper-threads
    if cfg.num_shards > 1 and "SLURM_JOB_ID" not in os.environ:
        cores = max(1, cores // cfg.num_shards)
    return cores


class ThreadTuner:
    """``threads=0`` on CPU: now and then, time a few steps with one thread and with all, keep
    the faster.

    On a machine shared with other busy processes, OpenMP threads that wait for each other can
    make a step 10-30x slower; one thread then wins by far. When the machine is free again the
    next probe goes back to all threads. Probing costs a few steps every ``every_s`` seconds.
    The thread count changes float summation order (losses differ in the 6th digit), so set
    ``train.threads`` for bit-exact reruns.
    """

    def __init__(self, max_threads: int, every_s: float = 30.0, first_s: float = 1.0,
                 k: int = 3) -> None:
        self.max_threads = max_threads
        self.current = max_threads
        self.every_s, self.k = every_s, k
        self.next_probe = time.monotonic() + first_s
        self.queue: list[int] = []
        self.times: dict[int, list[float]] = {}
        self.switches = 0
        self._t = 0.0
        torch.set_num_threads(self.current)

    def before_step(self) -> None:
        if not self.queue and time.monotonic() >= self.next_probe:
            alt = 1 if self.current > 1 else self.max_threads
            self.queue = [alt, self.current] * self.k  # interleaved: load drift hits both
            self.times = {alt: [], self.current: []}
        if self.queue:
            torch.set_num_threads(self.queue[0])
        self._t = time.perf_counter()

    def after_step(self) -> None:
        if not self.queue:
            return
        self.times[self.queue.pop(0)].append(time.perf_counter() - self._t)
        if self.queue:
            return
        med = {n: sorted(t)[len(t) // 2] for n, t in self.times.items()}
        alt = next(n for n in med if n != self.current)
        if med[alt] < 0.85 * med[self.current]:  # clearly faster: switch
            self.current = alt
            self.switches += 1
        torch.set_num_threads(self.current)
        self.next_probe = time.monotonic() + self.every_s


# --------------------------------------------------------------------------------------------
# torch.compile: when it repays itself
# --------------------------------------------------------------------------------------------

#: ``train.compile=auto`` compiles CUDA runs of at least this many FLOPs. Not measured here (no
#: GPU in the session that wrote it): compiling a small GPT takes ~40-90 s on an H100 (nanoGPT
#: and torchtitan report about a minute) and speeds steps up 1.3-1.8x, so compile pays once a
#: run's eager time T satisfies T x (1 - 1/1.3) > ~90 s, i.e. T > ~6.5 min. At 40% MFU of an
#: H100's 989 TFLOP/s (bf16) that is ~1.5e17 FLOPs; on slower GPUs the same FLOPs take longer,
#: so the rule only errs towards eager. benchmarks/gpu_throughput.py measures both sides.
COMPILE_MIN_FLOPS = 1.5e17


def use_compile(setting: bool | str, device: torch.device, run_flops: float) -> bool:
    """``train.compile`` for one run: true/false as given; auto = CUDA and a long enough run."""
    if setting == "auto":
        return device.type == "cuda" and run_flops >= COMPILE_MIN_FLOPS
    return bool(setting)


#: dense bf16 tensor-core peak (FLOP/s) of known GPUs, by a substring of the device name
GPU_PEAK_BF16 = {
    "H200": 989e12, "H100 SXM": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12,
    "H100": 989e12, "GH200": 989e12, "B200": 2250e12, "A100": 312e12, "A10G": 70e12,
    "L40S": 362e12, "L40": 181e12, "L4": 121e12, "A6000": 155e12, "RTX 4090": 165e12,
    "RTX 3090": 71e12, "V100": 125e12, "T4": 65e12,
}
#: the GPU the plan's time estimate assumes, and the MFU it assumes
ESTIMATE_GPU, ESTIMATE_MFU = "H100", 0.40


def known_peak(device_name: str) -> float | None:
    """The bf16 peak of a GPU from :data:`GPU_PEAK_BF16` (longest matching name), or None."""
    hits = [k for k in GPU_PEAK_BF16 if k.lower() in device_name.lower()]
    return GPU_PEAK_BF16[max(hits, key=len)] if hits else None


def gpu_hours(flops: float, devices: int = 1, gpu: str = ESTIMATE_GPU,
              mfu: float = ESTIMATE_MFU) -> float:
    """Hours to train ``flops`` on ``devices`` GPUs of kind ``gpu`` at ``mfu`` (an estimate)."""
    peak = known_peak(gpu) or GPU_PEAK_BF16["H100"]
    return flops / (peak * mfu * max(devices, 1)) / 3600.0


def claim_devices(k: int, lock_dir: str | Path | None = None, wait_s: float = 3600.0
                  ) -> list[int]:
    """Claim ``k`` free GPUs of this machine from the pool (all or none; freed on exit/kill)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < k:
        raise FlopsFitError(f"train.devices_per_run={k} needs {k} CUDA devices but this "
                            f"machine shows {count}; lower train.devices_per_run.")
    deadline = time.monotonic() + wait_s
    while True:
        got: list[int] = []
        for _ in range(k):
            index = claim_device([i for i in range(count) if i not in got], lock_dir)
            if index is None:
                break
            got.append(index)
        if len(got) == k:
            return got
        release_devices()  # a partial claim would block other jobs: give back, wait, retry
        if time.monotonic() >= deadline:
            raise FlopsFitError(f"No {k} free GPUs within {wait_s:.0f}s; other jobs hold them.")
        time.sleep(1.0)
