"""Training one planned run: resumable, on CPU or GPU (:class:`TrainingRunner`).

Rules for one run (the same for every run of a sweep, so runs differ only in size and data):

* **Steps.** Exactly the planned ``steps`` of ``batch_size`` samples (``num_tokens`` tokens).
* **Optimizer and learning rate.** AdamW, no weight decay by default; peak LR by model size,
  linear warm-up (with a floor), cosine decay to ``min_lr_ratio`` × peak at the run's own last
  step. The rules and the measurements behind them are in :mod:`flops_fit.training.schedule`.
* **Seed.** ``torch.manual_seed(seed + crc32(run_id))`` before the model is built; the data
  sampler gets the same seed. Under ``schedule=wsd`` the trunk id replaces the run id
  (:func:`flops_fit.training.trunks.seed_key`), so runs of one size share init and data order.
* **Reuse (wsd).** :class:`flops_fit.training.trunk_runner.TrunkRunner` trains a trunk (warm-up,
  constant LR) up to a branch point and checkpoints it; ``run(spec, start=branch checkpoint)``
  is that run's cooldown from there: the same numbers as the standalone run.
* **Precision.** ``dtype=auto``: bf16 autocast and TF32 matmuls on CUDA, fp32 on CPU.
* **Threads (CPU).** ``threads=0``: all cores (split between shards on one machine) and a
  :class:`~flops_fit.training.devices.ThreadTuner`; ``threads=N`` pins N, bit-exact
  (:mod:`flops_fit.training.devices`).
* **final_loss.** Mean loss on ``eval_tokens`` held-out tokens, the same fixed windows for
  every run. ``metrics.jsonl`` logs the curve: step, tokens, flops, train_loss, lr, and about
  ten val_loss points (on ``periodic_eval_tokens``, cheaper than the final evaluation).
* **Outcomes.** NaN/inf loss, or a loss above ``diverge_factor`` × the first step's loss, ends
  the run as ``diverged``; an exception ends it as ``failed`` (with the message). Both are
  recorded (``result.json``, a :class:`~flops_fit.rundir.records.RunRecord`) and the sweep goes on.
* **Resume.** A run checkpoints (model, optimizer, step, data sampler and torch RNG) every
  ``checkpoint_every_s`` seconds to ``runs/<run_id>/checkpoint.pt``; a restarted sweep resumes
  from it and ends exactly where an uninterrupted run would. Completed and diverged runs are
  never trained again unless ``force``; failed runs are retried (the cause may be gone).

The sweep over a plan's runs (shards, locks, results.json) is
:func:`flops_fit.training.sweep.train_stage`,
also importable from here.
"""

from __future__ import annotations

import io
import json
import math
import time
import traceback
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from flops_fit.config import TrainConfig
from flops_fit.data import ByteCorpus, DataSource
from flops_fit.errors import FlopsFitError
from flops_fit.planning.contracts import validate_loss_fn
from flops_fit.planning.planner import RunSpec
from flops_fit.rundir import io as rundir
from flops_fit.rundir.layout import CHECKPOINT_FILE, METRICS_FILE
from flops_fit.rundir.records import MetricsLine, read_metrics
from flops_fit.training import interrupts
from flops_fit.training.checkpoint import BadCheckpoint, checked_loop_state
from flops_fit.training.devices import ThreadTuner, cpu_threads, resolve_device, use_compile
from flops_fit.training.distributed import current_world
from flops_fit.training.progress import Reporter
from flops_fit.training.record import run_record, run_seed
from flops_fit.training.schedule import Schedule, lr_for_size, make_optimizer, trajectory_keys
from flops_fit.training.tracking.loggers import RunTracker, run_hparams
from flops_fit.training.trunks import seed_key

LossFn = Callable[[Any, Any], torch.Tensor]
CHECKPOINT_FORMAT = 1

# --------------------------------------------------------------------------------------------
# Small rules
# --------------------------------------------------------------------------------------------


def default_loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy: logits (B, T, V), target (B, T) -> scalar (in fp32)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1))


def _precision(device: torch.device, dtype: str) -> tuple[Any, str]:
    """(autocast context factory, label) for the configured dtype on this device."""
    if dtype == "bf16" or (dtype == "auto" and device.type == "cuda"):
        label = "bf16-autocast" + ("+tf32" if device.type == "cuda" and dtype == "auto" else "")
        return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)), label
    return nullcontext, "fp32"


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def first_output(out: Any) -> Any:
    """Models may return (logits, ...) tuples; the loss sees the first element."""
    return out[0] if isinstance(out, (tuple, list)) else out


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


class Diverged(Exception):
    pass


def _open_tracker(names: list[str], cfg: TrainConfig, rdir: Path, spec: RunSpec, step: int,
                  tokens_per_step: float, branched: bool) -> RunTracker:
    """The run's loggers ``names``, continued from ``step``; a fresh branch starts a new entry
    and replays its trunk's curve, which metrics.jsonl already holds, so a logger sees the
    whole run."""
    first = 0 if branched else step
    tracker = RunTracker.open(names, rdir.parent.parent, spec, run_hparams(spec, cfg), first,
                              first * tokens_per_step * spec.flops_per_token)
    if branched and tracker.backends:
        for line in read_metrics(rdir / METRICS_FILE):
            tracker.log(line)
    return tracker


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
        cfg.check()
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
        self.world = current_world(self.device)  # torchrun/srun ranks (distributed.py)
        self.spawn: Callable[..., float] | None = None  # K-device launcher (ddp_spawn.py)
        self.tracker = RunTracker([])  # no loggers until a run opens its own (trunks log none)
        self.lr_rule: str | None = None  # which rule set the peak LR (tuning.json or config)

    # -- helpers --------------------------------------------------------------------------------

    def _fingerprint(self, spec: RunSpec) -> dict[str, Any]:
        c = asdict(self.cfg)
        return {"run_id": spec.run_id, "steps": spec.steps, "batch_size": spec.batch_size,
                **{k: c[k] for k in trajectory_keys(self.cfg)}}

    def trunk_fingerprint(self, trunk_id: str, spec: RunSpec) -> dict[str, Any]:
        """What a trunk checkpoint must match: the trunk, its peak LR and the settings."""
        c = asdict(self.cfg)
        return {"trunk": trunk_id, "batch_size": spec.batch_size, "seq_len": spec.seq_len,
                "peak": lr_for_size(spec.num_params_non_embedding, self.cfg),
                **{k: c[k] for k in trajectory_keys(self.cfg)}}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, n_tokens: int) -> float:
        """Mean held-out loss over the first ``n_tokens`` tokens of the fixed val windows."""
        was_training = model.training
        model.eval()
        total, count = torch.zeros((), device=self.device, dtype=torch.float64), 0
        for x, y in self.data.val_batches(n_tokens, self.cfg.batch_size):
            x, y = to_device(x, self.device), to_device(y, self.device)
            with self.autocast():
                loss = self.loss_fn(first_output(model(x)), y)
            n = len(y) if hasattr(y, "__len__") else 1
            total += loss.detach().double() * n
            count += n
        model.train(was_training)
        return float(total / max(count, 1))

    # -- the run --------------------------------------------------------------------------------

    def run(self, spec: RunSpec, run_dir: str | Path, start: tuple[str, Path] | None = None,
            flops_spent: float | None = None) -> dict[str, Any]:
        """Train ``spec`` (resuming from its checkpoint if any), write and return its record.

        ``start=(trunk_id, branch checkpoint)``: a run without a checkpoint of its own starts
        there (its trunk's state at its branch point) instead of at step 0. ``flops_spent``: the
        FLOPs executed for this run (:func:`flops_fit.training.trunks.flops_spent`; default its
        own).
        """
        run_dir = Path(run_dir)
        rdir = rundir.run_path(run_dir, spec.run_id)
        rdir.mkdir(parents=True, exist_ok=True)
        self._t_wall = time.perf_counter()
        switches0 = self.tuner.switches if self.tuner is not None else 0
        tokens_per_step = spec.num_tokens / spec.steps
        schedule = Schedule.for_run(self.cfg, spec.steps,
                                    lr_for_size(spec.num_params_non_embedding, self.cfg))
        state: dict[str, Any] = {"step": 0, "train_time_s": 0.0, "initial_loss": None,
                                 "last_loss": None, "resumed": 0, "prior_wall_s": 0.0}
        status, error, tb, final_loss = "completed", None, None, None
        try:
            final_loss = self._train(spec, rdir, schedule, tokens_per_step, state, start)
        except Diverged as exc:
            status, error = "diverged", str(exc)
        except Exception as exc:  # the sweep goes on; the record says why
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            tb = traceback.format_exc(limit=8)
        record = run_record(self, spec, schedule, tokens_per_step, state, status, final_loss, error,
                              tb, switches0)
        record.flops_spent = (flops_spent if flops_spent is not None else record.flops) \
            if status == "completed" else record.flops
        if self.world.is_writer:
            rundir.write_run_result(run_dir, record)
        if status != "failed" and self.world.is_writer:  # failed: kept for the retry
            (rdir / CHECKPOINT_FILE).unlink(missing_ok=True)
        return record.to_dict()

    def _build(self, spec: RunSpec, schedule: Schedule
               ) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
        """Seed, then build ``spec``'s model (on CPU: same init everywhere) and optimizer."""
        if isinstance(self.data, ByteCorpus) and spec.seq_len != self.data.seq_len:
            raise FlopsFitError(
                f"Run {spec.run_id} was planned for seq_len={spec.seq_len} but the data "
                f"windows are {self.data.seq_len} long; re-plan or set train.seq_len."
            )
        seed = run_seed(self.cfg.seed, seed_key(self.model_target, spec, self.cfg))
        torch.manual_seed(seed)
        self.data.seed(seed)
        model = self.model_cls(**spec.model_kwargs)  # built on CPU: same init everywhere
        model.to(self.device)
        model.train()
        opt = make_optimizer(model, schedule.peak, self.cfg, self.device)
        fwd = self.world.wrap(model, self.device)  # DDP when K > 1
        fwd = torch.compile(fwd) if use_compile(self.cfg.compile, self.device, spec.flops) else fwd
        return model, fwd, opt

    def _restore(self, ckpt: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer,
                 state: dict[str, Any], max_step: int | None = None) -> None:
        """Model, optimizer, data sampler, RNG and loop state from a checkpoint.

        A checkpoint is untrusted data: a loop state out of range (its step outside
        ``[0, max_step]``) or parts that do not fit this model, optimizer, data or RNG raise
        :class:`BadCheckpoint` (model and optimizer may then be half-restored: rebuild them).
        """
        loop = checked_loop_state(ckpt.get("state"), max_step)
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            self.data.load_state_dict(ckpt["data"])
            torch.set_rng_state(ckpt["torch_rng"])
            if self.device.type == "cuda" and ckpt.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
        except Exception as exc:  # wrong shapes, missing keys, a bad RNG state, ...
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise BadCheckpoint(f"it does not fit this run: {type(exc).__name__}: {first}") \
                from None
        state.update(loop)

    def _train(self, spec: RunSpec, rdir: Path, schedule: Schedule, tokens_per_step: float,
               state: dict[str, Any], start: tuple[str, Path] | None = None) -> float:
        """Build the model and optimizer, resume from the checkpoint if any (else from the
        trunk's branch checkpoint ``start``), train; final_loss. With
        ``train.devices_per_run`` K > 1 on one machine, K spawned ranks train it instead."""
        if self.spawn is not None and self.world.size == 1 and self.cfg.devices_per_run > 1:
            return self.spawn(self, spec, rdir, schedule, tokens_per_step, state)
        model, fwd, opt = self._build(spec, schedule)
        ckpt_path = rdir / CHECKPOINT_FILE
        fresh = dict(state)
        where = (f"{spec.run_id} starts from its trunk's branch point" if start is not None
                 else f"{spec.run_id} starts again from step 0")
        ckpt = rundir.load_checkpoint(ckpt_path, fallback=where)
        branched = False  # a fresh cooldown from the trunk: its loggers get the trunk's curve
        resumed = False
        if ckpt is not None and ckpt.get("fingerprint") == self._fingerprint(spec):
            try:
                self._restore(ckpt, model, opt, state, spec.steps)
                state["resumed"] += 1
                resumed = True
            except BadCheckpoint as exc:  # never retried into the same failure
                warnings.warn(f"Ignoring checkpoint {ckpt_path} ({exc}); {where}.", stacklevel=2)
                ckpt_path.unlink(missing_ok=True)
                state.clear()
                state.update(fresh)
                model, fwd, opt = self._build(spec, schedule)
        if not resumed and start is not None:
            branched = True
            trunk_id, branch_path = start
            ckpt = rundir.load_checkpoint(branch_path, fallback=f"{spec.run_id} starts from "
                                          "step 0")
            if ckpt is None or ckpt.get("fingerprint") != self.trunk_fingerprint(trunk_id, spec):
                raise FlopsFitError(f"The branch checkpoint {branch_path} of {spec.run_id} is "
                                    "missing or from other settings; train again to rebuild it.")
            try:
                self._restore(ckpt, model, opt, state, spec.steps)
                state.update(resumed=0, prior_wall_s=0.0)  # the trunk's time is not the run's
            except BadCheckpoint as exc:
                warnings.warn(f"Ignoring branch checkpoint {branch_path} ({exc}); "
                              f"{spec.run_id} starts from step 0.", stacklevel=2)
                branch_path.unlink(missing_ok=True)
                state.clear()
                state.update(fresh)
                model, fwd, opt = self._build(spec, schedule)
                branched = False
        if branched:
            rundir.copy_metrics_prefix(branch_path.parent / METRICS_FILE, rdir / METRICS_FILE,
                                       state["step"])
        writer = self.world.is_writer
        metrics = open_metrics(rdir / METRICS_FILE, state["step"]) if writer else io.StringIO()
        self.tracker = _open_tracker(self.cfg.loggers if writer else [], self.cfg, rdir, spec,
                                     state["step"], tokens_per_step, branched)
        try:
            return self._loop(spec, model, fwd, opt, schedule, tokens_per_step, state, metrics,
                              ckpt_path)
        finally:
            self.tracker.close()

    def _loop(self, spec: RunSpec, model: nn.Module, fwd: nn.Module,
              opt: torch.optim.Optimizer, schedule: Schedule, tokens_per_step: float,
              state: dict[str, Any], metrics: IO[str], ckpt_path: Path, end: int | None = None,
              fingerprint: dict[str, Any] | None = None) -> float | None:
        """The training loop from ``state['step']`` to ``spec.steps``; returns final_loss.

        ``end``: stop after that step instead (a trunk segment: no final evaluation, None).
        """
        cfg, steps = self.cfg, spec.steps
        stop_at = steps if end is None else end
        reporter = self.reporter if end is None else None  # a trunk logs a few lines instead
        log_every = max(1, cfg.log_every)
        trunk_every = max(log_every, (stop_at - state["step"]) // 4 // log_every * log_every)
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
        if reporter is not None:
            reporter.start_run(spec, state["step"], "resuming at step" if state["resumed"]
                               else "its cooldown from the trunk's branch point at step")
        flops_reported = state["step"] * tokens_per_step * spec.flops_per_token
        try:
            with interrupts.deferred() as stop:
                for step in range(state["step"], stop_at):
                    lr = schedule.lr(step)
                    for g in opt.param_groups:
                        g["lr"] = lr
                    if self.tuner is not None:
                        self.tuner.before_step()
                    x, y = self.world.local(self.data.train_batch(spec.batch_size))  # K>1: a slice
                    x, y = to_device(x, self.device), to_device(y, self.device)
                    with self.autocast():
                        loss = self.loss_fn(first_output(fwd(x)), y)
                    loss.backward()
                    if cfg.grad_clip and cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    if self.tuner is not None:
                        self.tuner.after_step()
                    loss_sum += self.world.mean(loss.detach().float())  # the global batch's
                    n_sum += 1
                    done = step + 1
                    state["step"] = done
                    # the first step's loss: the divergence yardstick
                    if state["initial_loss"] is None:
                        state["initial_loss"] = float(loss_sum)  # this step's (n_sum == 1)
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
                        flops_now = done * tokens_per_step * spec.flops_per_token
                        line = MetricsLine(
                            step=done, tokens=int(round(done * tokens_per_step)), flops=flops_now,
                            train_loss=train_loss, lr=lr, time_s=round(state["train_time_s"], 3),
                            val_loss=self.evaluate(model, periodic_tokens) if is_eval else None)
                        metrics.write(line.to_json() + "\n")
                        metrics.flush()
                        self.tracker.log(line)
                        if reporter is not None:
                            tps = (done - step0) * tokens_per_step / max(now - t0, 1e-9)
                            eta = (steps - done) * tokens_per_step / max(tps, 1e-9)
                            reporter.update(done, train_loss, tps, flops_now - flops_reported,
                                            eta)
                            flops_reported = flops_now
                        elif self.reporter is not None and done % trunk_every == 0:
                            tps = (done - step0) * tokens_per_step / max(now - t0, 1e-9)
                            self.reporter.log(f"{spec.run_id} step {done}/{stop_at} loss "
                                              f"{train_loss:.4f} {tps:,.0f} tok/s")
                        t_seg = time.perf_counter()
                    if done < stop_at and \
                            time.monotonic() - t_last_ckpt >= cfg.checkpoint_every_s:
                        self._save(ckpt_path, spec, model, opt, state, t_seg, fingerprint)
                        t_last_ckpt = time.monotonic()
                    if self.on_step is not None:
                        self.on_step(done)
                    if self.world.any(stop.signum is not None, self.device):  # Ctrl-C/SIGTERM
                        if done < stop_at:
                            self._save(ckpt_path, spec, model, opt, state, t_seg, fingerprint)
                        stop.raise_now()
                state["train_time_s"] += time.perf_counter() - t_seg
                if end is not None:  # a trunk segment: its caller saves the branch checkpoint
                    return None
                final = self.evaluate(model, self.cfg.eval_tokens)
                _check_loss(final, state["initial_loss"], cfg.diverge_factor, steps)
                last = MetricsLine(step=steps, tokens=spec.num_tokens, flops=spec.flops,
                                   val_loss=final, final=True)
                metrics.write(last.to_json() + "\n")
                self.tracker.log(last)
                return final
        finally:
            metrics.close()

    def _save(self, path: Path, spec: RunSpec, model: nn.Module, opt: torch.optim.Optimizer,
              state: dict[str, Any], t_seg: float,
              fingerprint: dict[str, Any] | None = None) -> None:
        if not self.world.is_writer:  # rank 0 saves for every rank
            return
        st = dict(state)
        st["train_time_s"] = state["train_time_s"] + (time.perf_counter() - t_seg)
        st["prior_wall_s"] = state["prior_wall_s"] + (time.perf_counter() - self._t_wall)
        rundir.save_checkpoint(path, {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": fingerprint or self._fingerprint(spec),
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
        raise Diverged(f"loss became {loss} at step {step}")
    if initial is not None and factor > 0 and loss > factor * initial:
        raise Diverged(f"loss {loss:.4g} exceeded {factor:g} x the initial {initial:.4g} "
                        f"at step {step}")


def check_loss_fn(loss_fn: LossFn, model_cls: type[nn.Module], spec: RunSpec,
                   data: DataSource) -> None:
    """Call ``loss_fn`` once on ``spec``'s model output for two val samples (on CPU).

    A loss that cannot work (wrong shape, not a scalar) is one sentence before any run starts;
    the sweep passes its smallest run.
    """
    x, y = next(iter(data.val_batches(2 * data.tokens_per_sample, batch_size=2)))
    try:
        with torch.no_grad():
            out = first_output(model_cls(**spec.model_kwargs)(to_device(x, torch.device("cpu"))))
    except Exception:
        return  # a model that cannot run fails its runs one by one, with the message
    validate_loss_fn(loss_fn, out, y)


def open_metrics(path: Path, step: int) -> IO[str]:
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
