"""What a sweep will cost before it runs: its FLOPs (as separate runs and with trunk reuse) and
an estimated wall time from a measured throughput probe.

The probe (:func:`probe_size`) trains the real model of one planned size on the real device
with the real data and optimizer: one untimed warm-up step, then ``estimate.probe_steps`` timed
optimizer steps, plus one timed held-out evaluation of a few batches. Its seconds per step and
per evaluated token are cached in ``run_dir/probe.json`` keyed by everything they depend on
(model class and kwargs, batch shape, device, dtype, threads, torch version), so a second
``flops-fit plan`` does not probe again. ``estimate.probe=false`` skips it (no time is printed).

A run's estimate is ``steps * step_s`` plus its evaluations (the final ``train.eval_tokens``
and about ten periodic ones, as the trainer does them) times the evaluated-token cost.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from rich.console import Console
from rich.markup import escape

from flops_fit.config import EstimateConfig, TrainConfig
from flops_fit.data import DataSource
from flops_fit.planning.planner import RunSpec, SweepPlan
from flops_fit.rundir.io import atomic_write_json, file_lock, read_json
from flops_fit.rundir.layout import Layout
from flops_fit.training.devices import ESTIMATE_GPU, ESTIMATE_MFU, gpu_hours
from flops_fit.training.runner import TrainingRunner, first_output, to_device
from flops_fit.training.schedule import reuses_trunks, trunk_config
from flops_fit.training.trunks import flops_spent, sweep_cost


@dataclass
class Probe:
    """One size's measured throughput on one device."""

    step_s: float  # seconds per optimizer step (forward, backward, clip, AdamW)
    eval_token_s: float  # seconds per held-out token evaluated
    steps_timed: int


def probe_key(plan: SweepPlan, spec: RunSpec, cfg: TrainConfig, device: torch.device) -> str:
    """The cache key of a size's probe: what its throughput depends on."""
    what = {"model": plan.model.get("_target_"), "kwargs": spec.model_kwargs,
            "batch_size": spec.batch_size, "seq_len": spec.seq_len, "device": str(device),
            "dtype": cfg.dtype, "threads": torch.get_num_threads(), "compile": cfg.compile,
            "torch": torch.__version__}
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def probe_size(runner: TrainingRunner, spec: RunSpec, steps: int) -> Probe:
    """Time ``steps`` optimizer steps (after one warm-up step) and one evaluation of ``spec``."""
    model: nn.Module = runner.model_cls(**spec.model_kwargs).to(runner.device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    runner.data.seed(0)

    def step() -> None:
        x, y = runner.data.train_batch(spec.batch_size)
        x, y = to_device(x, runner.device), to_device(y, runner.device)
        with runner.autocast():
            loss = runner.loss_fn(first_output(model(x)), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if runner.device.type == "cuda":
            torch.cuda.synchronize(runner.device)

    step()  # warm-up: allocation, kernel selection
    sync()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    eval_tokens = 2 * spec.batch_size * spec.seq_len
    t = time.perf_counter()
    runner.evaluate(model, eval_tokens)
    sync()
    eval_s = time.perf_counter() - t
    return Probe(statistics.median(times), eval_s / eval_tokens, steps)


def probe_plan(run_dir: Path, plan: SweepPlan, model_cls: type[nn.Module], data: DataSource,
               cfg: TrainConfig, est: EstimateConfig, console: Console | None = None
               ) -> dict[str, Probe]:
    """Each planned size's :class:`Probe`, by probe key; measured only when not cached."""
    runner = TrainingRunner(model_cls, data, cfg)
    path = Layout(run_dir).probe
    with file_lock(path):
        cached = read_json(path, "probe") if path.is_file() else {}
        cached = cached if isinstance(cached, dict) else {}
        out: dict[str, Probe] = {}
        sizes: dict[str, RunSpec] = {}
        for r in plan.runs:
            sizes.setdefault(probe_key(plan, r, cfg, runner.device), r)
        fresh = 0
        for key, spec in sizes.items():
            got = cached.get(key)
            if isinstance(got, dict) and all(isinstance(got.get(k), (int, float))
                                             for k in ("step_s", "eval_token_s")):
                out[key] = Probe(float(got["step_s"]), float(got["eval_token_s"]),
                                 int(got.get("steps_timed", 0)))
                continue
            out[key] = probe_size(runner, spec, est.probe_steps)
            cached[key] = {"step_s": out[key].step_s, "eval_token_s": out[key].eval_token_s,
                           "steps_timed": est.probe_steps,
                           "size": f"{spec.size_param}={spec.size_value}",
                           "device": str(runner.device), "torch": torch.__version__}
            fresh += 1
        if fresh:
            atomic_write_json(path, cached)
    if console is not None:
        console.print(f"Probed {fresh} of {len(sizes)} sizes on {runner.device} "
                      f"({len(sizes) - fresh} cached in {escape(str(path))}).", highlight=False)
    return out


def eval_tokens_of(spec: RunSpec, cfg: TrainConfig) -> int:
    """Held-out tokens the trainer evaluates for ``spec``: ~10 periodic points + the final."""
    tokens_per_step = spec.num_tokens / max(spec.steps, 1)
    periodic = min(cfg.eval_tokens, cfg.periodic_eval_tokens,
                   max(spec.num_tokens // 50, int(tokens_per_step)))
    every = cfg.eval_every if cfg.eval_every > 0 else max(1, spec.steps // 10)
    n_periodic = max(0, (spec.steps - 1) // every)
    return cfg.eval_tokens + n_periodic * periodic


def compute_figures(plan: SweepPlan, cfg: TrainConfig) -> tuple[float, float]:
    """(FLOPs as separate runs, FLOPs with trunk reuse: wsd, one trunk per size)."""
    separate, reused = sweep_cost(plan, cfg)
    return float(separate), float(reused)


def estimate_seconds(plan: SweepPlan, probes: dict[str, Probe], cfg: TrainConfig,
                     device: torch.device, reuse: bool = False) -> float:
    """Estimated wall time of the whole sweep: each run's steps (with ``reuse``, only its
    share of the shared trunks, as ``flops_spent`` counts it) at its size's probed step time,
    plus its evaluation."""
    spent = flops_spent(plan, trunk_config(cfg)) if reuse else {}
    train_s = eval_s = 0.0
    for r in plan.runs:
        p = probes[probe_key(plan, r, cfg, device)]
        share = spent.get(r.run_id, r.flops) / r.flops if r.flops > 0 else 1.0
        train_s += r.steps * share * p.step_s
        eval_s += eval_tokens_of(r, cfg) * p.eval_token_s
    return train_s + eval_s


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_lines(plan: SweepPlan, cfg: TrainConfig, probes: dict[str, Probe] | None,
                   device: torch.device | None) -> list[str]:
    """The plan's cost in plain sentences: compute both ways, and the time when probed."""
    separate, reused = compute_figures(plan, cfg)
    lines = [f"Compute as separate runs: {separate:.3g} FLOPs"]
    ratio = reused / separate if separate > 0 else 1.0
    shared = trunk_config(cfg).schedule
    needs = [k for k, off in ((f"train.schedule={shared}", cfg.schedule != shared),
                              ("train.reuse=true", not cfg.reuse),
                              ("train.devices_per_run=1", cfg.devices_per_run > 1)) if off]
    used = "this sweep's" if reuses_trunks(cfg) else "with " + " ".join(needs)
    lines.append(f"Compute with trunk reuse: {reused:.3g} FLOPs ({ratio:.2f}x; {used})")
    lines.append(f"On one {ESTIMATE_GPU} at {ESTIMATE_MFU:.0%} MFU (from FLOPs alone): about "
                 f"{gpu_hours(separate):.3g} h as separate runs, {gpu_hours(reused):.3g} h with "
                 f"reuse; {len(plan.runs)} runs, largest model "
                 f"{max(r.num_params for r in plan.runs) / 1e6:.3g}M parameters")
    if probes is None or device is None:
        lines.append("Estimated time: not probed (estimate.probe=false)")
        return lines
    sep_s = estimate_seconds(plan, probes, cfg, device)
    text = (f"Estimated time on {device}: {_duration(sep_s)} as separate runs, "
            f"{_duration(estimate_seconds(plan, probes, cfg, device, reuse=True))} with reuse")
    lines.append(text + " (training and evaluation; measured throughput probe)")
    return lines
