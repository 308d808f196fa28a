"""Training every planned run: one run at a time, resumable, on CPU or GPU.

Rules for one run (the same for every run of a sweep, so runs differ only in size and data):

* **Steps.** Exactly the planned ``steps`` of ``batch_size`` samples (``num_tokens`` tokens).
* **Optimizer.** AdamW (β1, β2 from the config), weight decay (default 0) on 2-D weights only
  (matrices and embeddings; not norms or biases), gradient clipping at ``grad_clip``; fused on
  CUDA/CPU. Why 0: with a fixed 0.1 the decay's timescale 1/(lr·wd) is ~1000 steps while runs
  last 200-9000; it held the long runs of small models back (width 32, 6623 steps: 1.5994 vs
  1.5566 without) and the fitted floor E with them, so the law under-predicted progress at 4x.
* **Learning rate.** Peak ``lr_base * (lr_ref_params / N_non_embedding) ** lr_exponent``
  (:func:`lr_for_size`; ``train.lr`` overrides it), linear warm-up over ``warmup_fraction`` of
  the steps but at least ``warmup_min_steps`` (at most half the run), then cosine decay to
  ``min_lr_ratio`` × peak, reached at the run's own last step. The floor matters: with 30
  warm-up steps a 303-step run of the default GPT (width 80) ended at 2.32, 2.13 and 2.30 for
  three seeds; with 91 at 1.99, 1.99 and 1.98. Long runs (10% > the floor) are unaffected.
* **Seed.** ``torch.manual_seed(seed + crc32(run_id))`` before the model is built; the data
  sampler gets the same seed.
* **Precision.** ``dtype=auto``: bf16 autocast and TF32 matmuls on CUDA, fp32 on CPU.
* **Threads (CPU).** ``threads=0``: all cores (split between shards on one machine), and a
  :class:`ThreadTuner` that drops to one thread while other processes make the OpenMP threads
  wait on each other (10-30x slower steps on a busy machine). ``threads=N`` pins N, bit-exact.
* **final_loss.** Mean loss on ``eval_tokens`` held-out tokens, the same fixed windows for
  every run. ``metrics.jsonl`` logs the curve: step, tokens, flops, train_loss, lr, and about
  ten val_loss points (on ``periodic_eval_tokens``, cheaper than the final evaluation).
* **Outcomes.** NaN/inf loss, or a loss above ``diverge_factor`` × the first step's loss, ends
  the run as ``diverged``; an exception ends it as ``failed`` (with the message). Both are
  recorded and the sweep goes on.
* **Resume.** A run checkpoints (model, optimizer, step, data sampler and torch RNG) every
  ``checkpoint_every_s`` seconds to ``runs/<run_id>/checkpoint.pt``; a restarted sweep resumes
  from it and ends exactly where an uninterrupted run would. Completed and diverged runs are
  never trained again unless ``force``; failed runs are retried (the cause may be gone).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import traceback
import warnings
import zlib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from filelock import FileLock, Timeout
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from flops_fit import rundir
from flops_fit.config import TrainConfig
from flops_fit.data import ByteCorpus, DataSource, as_data_source, validate_loss_fn
from flops_fit.errors import FlopsFitError
from flops_fit.planner import RunSpec, SweepPlan

LossFn = Callable[[Any, Any], torch.Tensor]
FINAL_STATUSES = ("completed", "diverged")  # never retrained unless train.force
CHECKPOINT_FORMAT = 1

_DEFAULT_THREADS = torch.get_num_threads()

# TrainConfig fields that change a run's trajectory: a checkpoint made under other values
# is not resumed (the run starts again).
_TRAJECTORY_KEYS = ("lr", "lr_base", "lr_exponent", "lr_ref_params", "min_lr_ratio",
                    "warmup_fraction", "warmup_min_steps", "weight_decay", "beta1", "beta2",
                    "grad_clip", "seed", "dtype")


# --------------------------------------------------------------------------------------------
# Small rules
# --------------------------------------------------------------------------------------------


def default_loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy: logits (B, T, V), target (B, T) -> scalar (in fp32)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1))


def lr_for_size(num_params_non_embedding: int, cfg: TrainConfig) -> float:
    """Peak learning rate: ``cfg.lr`` if set, else the size rule (module docstring)."""
    if cfg.lr is not None:
        return float(cfg.lr)
    n = max(1, int(num_params_non_embedding))
    return cfg.lr_base * (cfg.lr_ref_params / n) ** cfg.lr_exponent


def warmup_steps(steps: int, warmup_fraction: float, warmup_min_steps: int = 0) -> int:
    """Warm-up length of a ``steps``-step run: the fraction, at least the floor, at most half."""
    if warmup_fraction <= 0 and warmup_min_steps <= 0:
        return 0
    warmup = max(1, round(warmup_fraction * steps), min(warmup_min_steps, steps // 2))
    return min(warmup, steps - 1)


def lr_at(step: int, steps: int, peak: float, warmup_fraction: float, min_ratio: float,
          warmup_min_steps: int = 0) -> float:
    """LR for 0-based ``step`` of ``steps``: linear warm-up, then cosine to ``min_ratio * peak``.

    Warm-up lasts :func:`warmup_steps` steps; the last step (``steps - 1``) gets exactly
    ``min_ratio * peak``.
    """
    warmup = warmup_steps(steps, warmup_fraction, warmup_min_steps)
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, steps - 1 - warmup)  # 0 -> 1
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def run_seed(seed: int, run_id: str) -> int:
    """A per-run seed that is stable across processes and machines."""
    return (int(seed) + zlib.crc32(run_id.encode("utf-8"))) % 2**63


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


def cpu_threads(cfg: TrainConfig) -> int:
    """Threads for this process: ``cfg.threads``, or (0) this process's cores shared by shards.

    Several shards on one machine (joblib, submitit_local) would oversubscribe the cores, and
    oversubscribed OpenMP threads slow CPU training down by 10x or more; so unless SLURM gave
    this job its own allocation, ``threads=0`` splits the cores between ``num_shards``.
    """
    if cfg.threads > 0:
        return int(cfg.threads)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    cores = min(cores, _DEFAULT_THREADS)  # torch's default: physical cores, not hyper-threads
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


def check_train_config(cfg: TrainConfig) -> None:
    """One sentence for each impossible setting."""
    if cfg.num_shards < 1 or not 0 <= cfg.shard < cfg.num_shards:
        raise FlopsFitError(
            f"train.shard={cfg.shard} must lie in 0..num_shards-1 (num_shards={cfg.num_shards})."
        )
    if cfg.dtype not in ("auto", "fp32", "bf16"):
        raise FlopsFitError(f"train.dtype={cfg.dtype!r} is unknown; use auto, fp32 or bf16.")
    if cfg.eval_tokens < 1:
        raise FlopsFitError(f"train.eval_tokens={cfg.eval_tokens} must be positive.")
    if cfg.lr is not None and not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise FlopsFitError(f"train.lr={cfg.lr} must be a positive number (or null for the rule).")
    if not 0 <= cfg.min_lr_ratio <= 1 or not 0 <= cfg.warmup_fraction < 1:
        raise FlopsFitError("train.min_lr_ratio must lie in [0, 1] and warmup_fraction in [0, 1).")
    if isinstance(cfg.warmup_min_steps, bool) or not isinstance(cfg.warmup_min_steps, int) \
            or cfg.warmup_min_steps < 0:
        raise FlopsFitError(f"train.warmup_min_steps={cfg.warmup_min_steps!r} is not valid; "
                            "use a whole number of steps >= 0.")


def _precision(device: torch.device, dtype: str) -> tuple[Any, str]:
    """(autocast context factory, label) for the configured dtype on this device."""
    if dtype == "bf16" or (dtype == "auto" and device.type == "cuda"):
        label = "bf16-autocast" + ("+tf32" if device.type == "cuda" and dtype == "auto" else "")
        return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)), label
    return nullcontext, "fp32"


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def _first(out: Any) -> Any:
    """Models may return (logits, ...) tuples; the loss sees the first element."""
    return out[0] if isinstance(out, (tuple, list)) else out


def make_optimizer(model: nn.Module, lr: float, cfg: TrainConfig,
                   device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D weights only; fused kernels where available."""
    params = [p for p in model.parameters() if p.requires_grad]  # tied weights appear once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type in ("cuda", "cpu") and all(p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None)


# --------------------------------------------------------------------------------------------
# Progress: rich bars on a terminal, one-line records elsewhere (cron, SLURM logs)
# --------------------------------------------------------------------------------------------


class Reporter:
    """Sweep and run progress. ``update`` is cheap; it is called at every log step."""

    def __init__(self, console: Console | None, total_runs: int, done_runs: int,
                 total_flops: float) -> None:
        self.console = console or Console()
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
        self.console.print(_stamp(msg), highlight=False, soft_wrap=not self.live)

    def start_run(self, spec: RunSpec, start_step: int) -> None:
        self._spec = spec
        self._next_pct = 0.1 * (1 + int(10 * start_step / spec.steps))
        what = f"{spec.run_id} ({spec.size_param}={spec.size_value}, N={spec.num_params:,})"
        if self.progress is not None:
            self.progress.update(self.run_task, description=f"{spec.size_param}={spec.size_value}",
                                 total=spec.steps, completed=start_step, visible=True, info="")
            self.progress.reset(self.run_task, total=spec.steps, completed=start_step)
        resumed = f", resuming at step {start_step}" if start_step else ""
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


def _stamp(msg: str) -> str:
    return f"[{datetime.now().strftime('%Y-%m-%d %H:%M:%S')}] {msg}"


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


class _Diverged(Exception):
    pass


class TrainingRunner:
    """Trains single runs of a plan (see the module docstring for the rules).

    ``on_step(step)`` is called after every optimizer step (steps done so far, after any
    checkpoint); tests use it to interrupt a run.
    """

    def __init__(
        self,
        model_cls: type[nn.Module],
        data: DataSource,
        cfg: TrainConfig,
        loss_fn: LossFn | None = None,
        reporter: Reporter | None = None,
        on_step: Callable[[int], None] | None = None,
        model_target: str | None = None,
    ) -> None:
        check_train_config(cfg)
        self.model_cls = model_cls
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.data = data.to(self.device)
        self.loss_fn = loss_fn or default_loss_fn
        self.reporter = reporter
        self.on_step = on_step
        self.model_target = model_target or f"{model_cls.__module__}.{model_cls.__qualname__}"
        self.autocast, self.dtype_label = _precision(self.device, cfg.dtype)
        if self.device.type == "cuda":  # TF32 matmuls for what autocast leaves in fp32
            torch.set_float32_matmul_precision("high" if cfg.dtype == "auto" else "highest")
        self.tuner: ThreadTuner | None = None
        if self.device.type == "cpu" or cfg.threads > 0:
            torch.set_num_threads(cpu_threads(cfg))
        if self.device.type == "cpu" and cfg.threads == 0 and cpu_threads(cfg) > 1:
            self.tuner = ThreadTuner(cpu_threads(cfg))

    # -- helpers --------------------------------------------------------------------------------

    def _fingerprint(self, spec: RunSpec) -> dict[str, Any]:
        c = asdict(self.cfg)
        return {"run_id": spec.run_id, "steps": spec.steps, "batch_size": spec.batch_size,
                **{k: c[k] for k in _TRAJECTORY_KEYS}}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, n_tokens: int) -> float:
        """Mean held-out loss over the first ``n_tokens`` tokens of the fixed val windows."""
        was_training = model.training
        model.eval()
        total, count = torch.zeros((), device=self.device, dtype=torch.float64), 0
        for x, y in self.data.val_batches(n_tokens, self.cfg.batch_size):
            x, y = _to(x, self.device), _to(y, self.device)
            with self.autocast():
                loss = self.loss_fn(_first(model(x)), y)
            n = len(y) if hasattr(y, "__len__") else 1
            total += loss.detach().double() * n
            count += n
        model.train(was_training)
        return float(total / max(count, 1))

    # -- the run --------------------------------------------------------------------------------

    def run(self, spec: RunSpec, run_dir: str | Path) -> dict[str, Any]:
        """Train ``spec`` (resuming from its checkpoint if any), write and return its record."""
        run_dir = Path(run_dir)
        rdir = rundir.run_path(run_dir, spec.run_id)
        rdir.mkdir(parents=True, exist_ok=True)
        t_wall = self._t_wall = time.perf_counter()
        switches0 = self.tuner.switches if self.tuner is not None else 0
        cfg = self.cfg
        seed = run_seed(cfg.seed, spec.run_id)
        tokens_per_step = spec.num_tokens / spec.steps
        state: dict[str, Any] = {"step": 0, "train_time_s": 0.0, "initial_loss": None,
                                 "last_loss": None, "resumed": 0, "prior_wall_s": 0.0}
        error: str | None = None
        tb: str | None = None
        status = "completed"
        final_loss: float | None = None
        try:
            if isinstance(self.data, ByteCorpus) and spec.seq_len != self.data.seq_len:
                raise FlopsFitError(
                    f"Run {spec.run_id} was planned for seq_len={spec.seq_len} but the data "
                    f"windows are {self.data.seq_len} long; re-plan or set train.seq_len."
                )
            torch.manual_seed(seed)
            self.data.seed(seed)
            model = self.model_cls(**spec.model_kwargs)  # built on CPU: same init everywhere
            model.to(self.device)
            model.train()
            peak_lr = lr_for_size(spec.num_params_non_embedding, cfg)
            opt = make_optimizer(model, peak_lr, cfg, self.device)
            fwd = torch.compile(model) if cfg.compile else model
            ckpt_path = rdir / rundir.CHECKPOINT_FILE
            ckpt = rundir.load_checkpoint(ckpt_path)
            if ckpt is not None and ckpt.get("fingerprint") == self._fingerprint(spec):
                model.load_state_dict(ckpt["model"])
                opt.load_state_dict(ckpt["optimizer"])
                self.data.load_state_dict(ckpt["data"])
                torch.set_rng_state(ckpt["torch_rng"])
                if self.device.type == "cuda" and ckpt.get("cuda_rng") is not None:
                    torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
                state.update(ckpt["state"])
                state["resumed"] += 1
            metrics = _open_metrics(rdir / rundir.METRICS_FILE, state["step"])
            final_loss = self._loop(spec, model, fwd, opt, peak_lr, tokens_per_step, state,
                                    metrics, ckpt_path)
        except _Diverged as exc:
            status, error = "diverged", str(exc)
        except Exception as exc:  # the sweep goes on; the record says why
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            tb = traceback.format_exc(limit=8)
        peak_lr = lr_for_size(spec.num_params_non_embedding, cfg)
        tokens = int(round(state["step"] * tokens_per_step))
        train_time = state["train_time_s"]
        record: dict[str, Any] = {
            "run_id": spec.run_id,
            "status": status,
            "compute_budget": spec.compute_budget,
            "num_params": spec.num_params,
            "num_params_non_embedding": spec.num_params_non_embedding,
            "num_tokens": tokens,
            "flops": spec.flops_per_token * tokens,
            "flops_6nd": 6.0 * spec.num_params * tokens,
            "final_loss": final_loss,
            "size_param": spec.size_param,
            "size_value": spec.size_value,
            "steps": spec.steps,
            "steps_done": state["step"],
            "batch_size": spec.batch_size,
            "seq_len": spec.seq_len,
            "tokens_per_param": tokens / spec.num_params,
            "flops_per_token": spec.flops_per_token,
            "planned_num_tokens": spec.num_tokens,
            "planned_flops": spec.flops,
            "epochs": tokens / self.data.train_size if self.data.train_size else None,
            "lr": peak_lr,
            "lr_schedule": f"linear warm-up {cfg.warmup_fraction:g} (at least "
                           f"{cfg.warmup_min_steps} steps, at most half), cosine to "
                           f"{cfg.min_lr_ratio:g} x peak at the last step",
            "warmup_steps": warmup_steps(spec.steps, cfg.warmup_fraction, cfg.warmup_min_steps),
            "weight_decay": cfg.weight_decay,
            "betas": [cfg.beta1, cfg.beta2],
            "grad_clip": cfg.grad_clip,
            "initial_loss": state["initial_loss"],
            "final_train_loss": state["last_loss"],
            "eval_tokens": cfg.eval_tokens,
            "wall_time_s": time.perf_counter() - t_wall + state["prior_wall_s"],
            "train_time_s": train_time,
            "tokens_per_s": tokens / train_time if train_time > 0 else None,
            "device": str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})"
                                          if self.device.type == "cuda" else ""),
            "dtype": self.dtype_label,
            "compile": bool(cfg.compile),
            "threads": torch.get_num_threads(),  # at the end of the run
            "thread_switches": self.tuner.switches - switches0 if self.tuner is not None else 0,
            "seed": seed,
            "resumed": state["resumed"],
            "model": self.model_target,
            "model_kwargs": spec.model_kwargs,
            "data": self.data.name,
            "torch": torch.__version__,
            "host": platform.node(),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "error": error,
        }
        if tb:
            record["traceback"] = tb
        rundir.write_run_result(run_dir, record)
        if status != "failed":  # a failed run keeps its checkpoint for the retry
            (rdir / rundir.CHECKPOINT_FILE).unlink(missing_ok=True)
        return record

    def _loop(self, spec: RunSpec, model: nn.Module, fwd: nn.Module,
              opt: torch.optim.Optimizer, peak_lr: float, tokens_per_step: float,
              state: dict[str, Any], metrics: Any, ckpt_path: Path) -> float:
        """The training loop from ``state['step']`` to ``spec.steps``; returns final_loss."""
        cfg, steps = self.cfg, spec.steps
        log_every = max(1, cfg.log_every)
        eval_every = cfg.eval_every if cfg.eval_every > 0 else max(1, steps // 10)
        # periodic val points: a cheap slice of the fixed val windows (final_loss uses all)
        periodic_tokens = min(cfg.eval_tokens, cfg.periodic_eval_tokens,
                              max(spec.num_tokens // 50, int(tokens_per_step)))
        params = [p for p in model.parameters() if p.requires_grad]
        loss_sum = torch.zeros((), device=self.device)
        n_sum = 0
        t_last_ckpt = time.monotonic()
        t0, step0 = time.perf_counter(), state["step"]
        t_seg = t0  # train time is counted without evaluation
        if self.reporter is not None:
            self.reporter.start_run(spec, state["step"])
        flops_reported = state["step"] * tokens_per_step * spec.flops_per_token
        try:
            for step in range(state["step"], steps):
                lr = lr_at(step, steps, peak_lr, cfg.warmup_fraction, cfg.min_lr_ratio,
                           cfg.warmup_min_steps)
                for g in opt.param_groups:
                    g["lr"] = lr
                if self.tuner is not None:
                    self.tuner.before_step()
                x, y = self.data.train_batch(spec.batch_size)
                x, y = _to(x, self.device), _to(y, self.device)
                with self.autocast():
                    loss = self.loss_fn(_first(fwd(x)), y)
                loss.backward()
                if cfg.grad_clip and cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if self.tuner is not None:
                    self.tuner.after_step()
                loss_sum += loss.detach().float()
                n_sum += 1
                done = step + 1
                state["step"] = done
                if state["initial_loss"] is None:  # the first step's loss, the divergence yardstick
                    state["initial_loss"] = float(loss.detach())
                    _check_loss(state["initial_loss"], None, cfg.diverge_factor, done)
                is_eval = done % eval_every == 0 and done < steps
                if done % log_every == 0 or is_eval or done == steps:
                    train_loss = float(loss_sum / n_sum)  # mean since the last log line
                    loss_sum.zero_()
                    n_sum = 0
                    state["last_loss"] = train_loss
                    _check_loss(train_loss, state["initial_loss"], cfg.diverge_factor, done)
                    now = time.perf_counter()
                    state["train_time_s"] += now - t_seg
                    line = {"step": done, "tokens": int(round(done * tokens_per_step)),
                            "flops": done * tokens_per_step * spec.flops_per_token,
                            "train_loss": train_loss, "lr": lr,
                            "time_s": round(state["train_time_s"], 3)}
                    if is_eval:
                        line["val_loss"] = self.evaluate(model, periodic_tokens)
                    metrics.write(json.dumps(line) + "\n")
                    metrics.flush()
                    if self.reporter is not None:
                        tps = (done - step0) * tokens_per_step / max(now - t0, 1e-9)
                        eta = (steps - done) * tokens_per_step / max(tps, 1e-9)
                        flops_now = done * tokens_per_step * spec.flops_per_token
                        self.reporter.update(done, train_loss, tps, flops_now - flops_reported,
                                             eta)
                        flops_reported = flops_now
                    t_seg = time.perf_counter()
                if done < steps and time.monotonic() - t_last_ckpt >= cfg.checkpoint_every_s:
                    self._save(ckpt_path, spec, model, opt, state, t_seg)
                    t_last_ckpt = time.monotonic()
                if self.on_step is not None:
                    self.on_step(done)
            state["train_time_s"] += time.perf_counter() - t_seg
            final = self.evaluate(model, self.cfg.eval_tokens)
            _check_loss(final, state["initial_loss"], cfg.diverge_factor, steps)
            metrics.write(json.dumps({"step": steps, "tokens": spec.num_tokens,
                                      "flops": spec.flops, "val_loss": final,
                                      "final": True}) + "\n")
            return final
        finally:
            metrics.close()

    def _save(self, path: Path, spec: RunSpec, model: nn.Module, opt: torch.optim.Optimizer,
              state: dict[str, Any], t_seg: float) -> None:
        st = dict(state)
        st["train_time_s"] = state["train_time_s"] + (time.perf_counter() - t_seg)
        st["prior_wall_s"] = state["prior_wall_s"] + (time.perf_counter() - self._t_wall)
        rundir.save_checkpoint(path, {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self._fingerprint(spec),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "data": self.data.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda"
            else None,
            "state": st,
        })


def _check_loss(loss: float, initial: float | None, factor: float, step: int) -> None:
    if not math.isfinite(loss):
        raise _Diverged(f"loss became {loss} at step {step}")
    if initial is not None and factor > 0 and loss > factor * initial:
        raise _Diverged(f"loss {loss:.4g} exceeded {factor:g} x the initial {initial:.4g} "
                        f"at step {step}")


def _check_loss_fn(loss_fn: LossFn, model_cls: type[nn.Module], spec: RunSpec,
                   data: DataSource) -> None:
    """Call ``loss_fn`` once on the smallest model's output for two val samples (on CPU)."""
    x, y = next(iter(data.val_batches(2 * data.tokens_per_sample, batch_size=2)))
    try:
        with torch.no_grad():
            out = _first(model_cls(**spec.model_kwargs)(_to(x, torch.device("cpu"))))
    except Exception:
        return  # a model that cannot run fails its runs one by one, with the message
    validate_loss_fn(loss_fn, out, y)


def _open_metrics(path: Path, step: int) -> Any:
    """The metrics file for appending: empty for a fresh run, cut back to ``step`` on resume."""
    if step == 0 or not path.exists():
        return path.open("w", encoding="utf-8")
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break  # a half-written last line from the killed process
        if rec.get("step", 0) > step or rec.get("final"):
            break
        keep.append(line + "\n")
    rundir.atomic_write_text(path, "".join(keep))
    return path.open("a", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


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
    check_train_config(cfg)
    resolve_device(cfg.device)  # fail early, before anything is written
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
        (rundir.run_path(run_dir, run_id) / rundir.CHECKPOINT_FILE).unlink(missing_ok=True)
    if not todo:
        rundir.rebuild_results(run_dir, plan)
        console.print(_stamp(f"Nothing to train: all {len(mine)} runs of this shard are done "
                             f"({run_dir})."), highlight=False)
        return [existing[r.run_id] for r in mine]

    over = [r for r in todo if data.train_size and r.num_tokens > data.train_size]
    if over:
        most = max(r.num_tokens / data.train_size for r in over)
        msg = (f"{len(over)} of {len(todo)} runs need more tokens than the training split holds "
               f"({data.train_size:,}); they repeat data (up to {most:.1f} epochs), and their "
               "records store `epochs`.")
        warnings.warn(msg, stacklevel=2)

    if loss_fn is not None:
        _check_loss_fn(loss_fn, model_cls, min(todo, key=lambda r: r.num_params), data)

    target = plan.model.get("_target_") if isinstance(plan.model, dict) else None
    reporter = Reporter(console, len(mine), len(mine) - len(todo),
                        sum(r.flops for r in todo))
    runner = TrainingRunner(model_cls, data, cfg, loss_fn, reporter, on_step, target)
    if over:
        reporter.log(msg)
    reporter.log(f"Training {len(todo)} of {len(mine)} runs on {runner.device} "
                 f"({runner.dtype_label}, {torch.get_num_threads()} threads) into {run_dir}")
    t0 = time.perf_counter()
    try:
        for spec in todo:
            lock = FileLock(str(rundir.run_path(run_dir, spec.run_id) / ".train.lock"),
                            timeout=0)
            try:
                lock.acquire()
            except Timeout:
                reporter.log(f"{spec.run_id} is being trained by another process; skipped.")
                continue
            try:  # we hold the run's lock: temp files in its folder are from a killed writer
                rundir.remove_stale_temp_files(rundir.run_path(run_dir, spec.run_id))
                rec = rundir.read_run_result(run_dir, spec.run_id)
                if rec is None or cfg.force or rec.get("status") not in FINAL_STATUSES:
                    rec = runner.run(spec, run_dir)
                    if runner.device.type == "cuda":  # the run's model and optimizer are gone
                        torch.cuda.empty_cache()
                existing[spec.run_id] = rec
                reporter.end_run(rec)
            finally:
                lock.release()
            rundir.rebuild_results(run_dir, plan)
    finally:
        reporter.close()
    records = [existing[r.run_id] for r in mine if r.run_id in existing]
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    console.print(_stamp(f"Train stage done in {time.perf_counter() - t0:.1f}s: "
                         + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))),
                  highlight=False)
    sys.stdout.flush()
    return records
