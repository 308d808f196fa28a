"""What a sweep will cost before it runs: its FLOPs (as separate runs and with trunk reuse) and
an estimated wall time from a measured throughput probe.

The probe (:func:`probe_size`) trains the real model of one planned size on the real device
with the real data and optimizer: :data:`WARMUP_STEPS` untimed steps, then
:data:`PROBE_REPEATS` short probes of ``estimate.probe_steps`` timed optimizer steps and a
held-out evaluation of a few batches each, at each thread count the trainer may use
(:func:`probe_threads`); the fastest is kept, so a burst of load from elsewhere does not price
the sweep.
Its seconds per step and per evaluated token are cached in ``run_dir/probe.json`` keyed by
everything they depend on (model class and kwargs, batch shape, device, dtype, threads, torch
version), with the host, the time and the machine's load (``os.getloadavg``) when it was taken.
A cached probe is measured again (:func:`stale_reason`) when it is older than
:data:`STALE_AFTER_S`, from another host, torch or thread count, or was taken under a load
more than :data:`LOAD_SLACK` above the present one. ``estimate.probe=false`` skips it (no time
is printed). After training, :func:`record_actual` appends the estimate of the runs trained and
the seconds they took to ``probe.json``'s ``timings``.

A run's estimate is ``steps * step_s`` plus its evaluations (the final ``train.eval_tokens``
and about ten periodic ones, as the trainer does them) times the evaluated-token cost.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from rich.console import Console
from rich.markup import escape

from flops_fit.config import EstimateConfig, TrainConfig
from flops_fit.data import DataSource
from flops_fit.errors import FlopsFitError
from flops_fit.planning.planner import RunSpec, SweepPlan
from flops_fit.rundir.io import atomic_write_json, file_lock, load_run_results, read_json
from flops_fit.rundir.layout import Layout
from flops_fit.training.devices import (
    ESTIMATE_GPU,
    ESTIMATE_MFU,
    cpu_cores,
    cpu_threads,
    gpu_hours,
    resolve_device,
)
from flops_fit.training.runner import TrainingRunner, first_output, to_device
from flops_fit.training.schedule import reuses_trunks, trunk_config
from flops_fit.training.sweep import unfinished
from flops_fit.training.trunks import flops_spent, group_trunks, sweep_cost
from flops_fit.training.workers import resolve_workers, worker_threads

#: short probes per size; the fastest is kept (a probe slowed by a burst of load is not)
PROBE_REPEATS = 3
#: untimed steps before the probes, at each thread count: a fresh model's first steps are slow
#: (with one warm-up step, 3-step probes of width 16 read 1.5x the 20-step time)
WARMUP_STEPS = 3
#: a cached probe older than this (seconds) is measured again
STALE_AFTER_S = 6 * 3600.0
#: a cached probe taken under a 1-minute load average this much above the present one is
#: measured again
LOAD_SLACK = 0.5
#: how many estimate-vs-actual records ``probe.json`` keeps
KEEP_TIMINGS = 20
TIMINGS = "timings"  # probe.json's key of those records (every other key is a probe)
#: seconds a worker process takes to start (import torch, unpickle the data): measured ~3 s
WORKER_START_S = 3.0


@dataclass
class Probe:
    """One size's measured throughput on one device."""

    step_s: float  # seconds per optimizer step (forward, backward, clip, AdamW)
    eval_token_s: float  # seconds per held-out token evaluated
    steps_timed: int
    load: float | None = None  # the machine's 1-minute load average when it was taken


@dataclass(frozen=True)
class Machine:
    """What a probe's speed depends on beyond its cache key, at one moment."""

    host: str
    torch: str
    threads: int
    load: float | None  # 1-minute load average (None where the OS has none)
    time: float  # seconds since the epoch


def machine_now() -> Machine:
    """This machine now: host, torch, threads, 1-minute load average and the time."""
    try:
        load: float | None = float(os.getloadavg()[0])
    except (OSError, AttributeError):  # no load average on this OS
        load = None
    return Machine(platform.node(), torch.__version__, torch.get_num_threads(), load,
                   time.time())


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def stale_reason(entry: Any, now: Machine) -> str:
    """Why a cached probe of ``probe.json`` must be measured again ('' when it may be used)."""
    if not isinstance(entry, dict) or not all(
            _num(entry.get(k)) and entry[k] >= 0 for k in ("step_s", "eval_token_s")):
        return "it is not a probe"
    if not _num(entry.get("time")) or "load" not in entry:
        return "it records no time or load"
    age = now.time - float(entry["time"])
    if age > STALE_AFTER_S or age < -60:
        return f"it is {age / 3600:.1f} h old"
    for key, value in (("host", now.host), ("torch", now.torch), ("threads", now.threads)):
        if entry.get(key) != value:
            return f"it was taken with {key} {entry.get(key)!r}, not {value!r}"
    load = entry.get("load")
    if _num(load) and now.load is not None and load - now.load > LOAD_SLACK:
        return f"it was taken under load {load:.2f}, above the present {now.load:.2f}"
    return ""


def probe_threads(cfg: TrainConfig, device: torch.device, workers: int = 1) -> tuple[int, ...]:
    """The thread counts a run of this sweep trains at, as the trainer picks them: each of
    ``workers`` processes' share of the cores, and on CPU with ``train.threads=0`` in one
    process also one thread (its ThreadTuner keeps whichever is faster: under load, OpenMP
    threads that wait on each other make a step 10-40x slower)."""
    if device.type != "cpu" and cfg.threads == 0:
        return (torch.get_num_threads(),)
    most = worker_threads(cfg, workers) if workers > 1 else cpu_threads(cfg)
    tuned = device.type == "cpu" and cfg.threads == 0 and workers == 1 and most > 1
    return (most, 1) if tuned else (most,)


def plan_workers(plan: SweepPlan, cfg: TrainConfig, device: torch.device) -> int:
    """The local worker processes that will train ``plan`` (``train.workers``, as the train
    stage resolves it for the whole plan)."""
    try:
        return resolve_workers(cfg, device, float(sum(flops_spent(plan, cfg).values())))
    except FlopsFitError:  # train.force with workers: refused by train, in one sentence
        return 1


def contention(load: float | None, threads: int, workers: int) -> float:
    """How much slower each of ``workers`` processes of ``threads`` threads runs than one
    probe of ``threads`` did alone, on this machine's cores under the others' ``load``."""
    if workers <= 1 or load is None:
        return 1.0
    cores = cpu_cores()
    return max(1.0, (load + workers * threads) / cores) / max(1.0, (load + threads) / cores)


def probe_key(plan: SweepPlan, spec: RunSpec, cfg: TrainConfig, device: torch.device,
              workers: int = 1) -> str:
    """The cache key of a size's probe: what its throughput depends on."""
    what = {"model": plan.model.get("_target_"), "kwargs": spec.model_kwargs,
            "batch_size": spec.batch_size, "seq_len": spec.seq_len, "device": str(device),
            "dtype": cfg.dtype, "threads": list(probe_threads(cfg, device, workers)),
            "compile": cfg.compile, "torch": torch.__version__}
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def probe_size(runner: TrainingRunner, spec: RunSpec, steps: int,
               repeats: int = PROBE_REPEATS, threads: tuple[int, ...] = ()) -> Probe:
    """Time ``spec``: one warm-up step, then ``repeats`` probes of ``steps`` optimizer steps
    and one evaluation each at each of ``threads`` (none: as set); the fastest probe's median
    step and the fastest evaluation are kept."""
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

    before = torch.get_num_threads()
    for n in threads or (before,):  # warm-up: allocation, kernel selection, thread pools
        torch.set_num_threads(n)
        for _ in range(WARMUP_STEPS):
            step()
    sync()
    eval_tokens = 2 * spec.batch_size * spec.seq_len
    step_s, eval_s = math.inf, math.inf
    for i in range(max(1, repeats) * max(1, len(threads))):
        if threads:  # interleaved, so that a burst of load hits every thread count
            torch.set_num_threads(threads[i % len(threads)])
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t)
        step_s = min(step_s, statistics.median(times))
        t = time.perf_counter()
        runner.evaluate(model, eval_tokens)
        sync()
        eval_s = min(eval_s, time.perf_counter() - t)
    torch.set_num_threads(before)
    return Probe(step_s, eval_s / eval_tokens, steps * max(1, repeats))


def probe_plan(run_dir: str | Path, plan: SweepPlan, model_cls: type[nn.Module], data: DataSource,
               cfg: TrainConfig, est: EstimateConfig, console: Console | None = None,
               now: Machine | None = None) -> dict[str, Probe]:
    """Each planned size's :class:`Probe`, by probe key; measured unless a cached one may be
    used (:func:`stale_reason`, against ``now``: this machine at this moment by default)."""
    runner = TrainingRunner(model_cls, data, cfg)
    path = Layout(Path(run_dir)).probe
    now = now or machine_now()
    with file_lock(path):
        cached = _read_cache(path)
        out: dict[str, Probe] = {}
        sizes: dict[str, RunSpec] = {}
        workers = plan_workers(plan, cfg, runner.device)
        threads = probe_threads(cfg, runner.device, workers)
        for r in plan.runs:
            sizes.setdefault(probe_key(plan, r, cfg, runner.device, workers), r)
        fresh, stale = 0, []
        for key, spec in sizes.items():
            got = cached.get(key)
            why = stale_reason(got, now)
            if not why:
                out[key] = Probe(float(got["step_s"]), float(got["eval_token_s"]),
                                 int(got.get("steps_timed") or 0),
                                 float(got["load"]) if _num(got.get("load")) else None)
                continue
            if got is not None:
                stale.append(why)
            out[key] = probe_size(runner, spec, est.probe_steps, threads=threads)
            out[key].load = now.load
            cached[key] = {"step_s": out[key].step_s, "eval_token_s": out[key].eval_token_s,
                           "steps_timed": out[key].steps_timed, "repeats": PROBE_REPEATS,
                           "size": f"{spec.size_param}={spec.size_value}",
                           "device": str(runner.device), "host": now.host, "torch": now.torch,
                           "threads": now.threads, "load": now.load, "time": now.time}
            fresh += 1
        if fresh:
            atomic_write_json(path, cached)
    if console is not None:
        load = f", load {now.load:.2f}" if now.load is not None else ""
        again = (f"; {len(stale)} cached probe(s) measured again: {stale[0]}" if stale else "")
        at = " or ".join(str(t) for t in threads)
        console.print(f"Probed {fresh} of {len(sizes)} sizes on {runner.device} (best of "
                      f"{PROBE_REPEATS} probes at {at} thread(s){load}; "
                      f"{len(sizes) - fresh} cached in "
                      f"{escape(str(path))}){escape(again)}.", highlight=False)
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
                     device: torch.device, reuse: bool = False,
                     run_ids: Collection[str] | None = None, workers: int = 1) -> float:
    """Estimated wall time of the whole sweep (or of its runs ``run_ids``): each run's steps
    (with ``reuse``, only its share of the shared trunks, as ``flops_spent`` counts it) at its
    size's probed step time, plus its evaluation. ``workers`` processes take the trunks
    (longest first) or runs (in plan order), each the next when it is free, slowed by
    :func:`contention`."""
    tcfg = trunk_config(cfg)
    spent = flops_spent(plan, tcfg) if reuse else {}
    unit = {r.run_id: t.trunk_id for t in group_trunks(plan, tcfg) for r in t.runs} \
        if reuse else {}
    jobs: dict[str, float] = {}
    loads = []
    for r in plan.runs:
        if run_ids is not None and r.run_id not in run_ids:
            continue
        p = probes[probe_key(plan, r, cfg, device, workers)]
        share = spent.get(r.run_id, r.flops) / r.flops if r.flops > 0 else 1.0
        job = unit.get(r.run_id, r.run_id)
        jobs[job] = jobs.get(job, 0.0) + r.steps * share * p.step_s \
            + eval_tokens_of(r, cfg) * p.eval_token_s
        if p.load is not None:
            loads.append(p.load)
    if workers <= 1:
        return sum(jobs.values())
    free = [WORKER_START_S] * workers
    # trunks go longest first (sweep.train_stage), separate runs in plan order
    for secs in sorted(jobs.values(), reverse=True) if reuse else jobs.values():
        free[free.index(min(free))] += secs
    threads = probe_threads(cfg, device, workers)[0]
    return max(free) * contention(max(loads) if loads else None, threads, workers)


def _read_cache(path: Path) -> dict[str, Any]:
    """``probe.json`` as an object; empty when missing, corrupt or not an object (untrusted:
    its probes are then measured again)."""
    try:
        data = read_json(path, "probe") if path.is_file() else {}
    except FlopsFitError:
        return {}
    return data if isinstance(data, dict) else {}


def cached_probes(run_dir: str | Path, plan: SweepPlan, cfg: TrainConfig, device: torch.device
                  ) -> dict[str, Probe] | None:
    """``probe.json``'s probes of every size of ``plan`` as ``plan`` priced them, without
    measuring (None when a size has none: the plan was not probed)."""
    cached = _read_cache(Layout(Path(run_dir)).probe)
    out: dict[str, Probe] = {}
    workers = plan_workers(plan, cfg, device)
    for r in plan.runs:
        key = probe_key(plan, r, cfg, device, workers)
        got = cached.get(key)
        if not isinstance(got, dict) or not all(_num(got.get(k)) and got[k] >= 0
                                                for k in ("step_s", "eval_token_s")):
            return None
        out[key] = Probe(float(got["step_s"]), float(got["eval_token_s"]), 0,
                         float(got["load"]) if _num(got.get("load")) else None)
    return out


def record_actual(run_dir: str | Path, plan: SweepPlan, cfg: TrainConfig, device: torch.device,
                  run_ids: Collection[str], actual_s: float, now: Machine | None = None
                  ) -> dict[str, Any] | None:
    """After a train call: the estimate of the runs it trained (``probe.json``'s probes, as
    ``plan`` priced them) beside the seconds they took, appended to ``probe.json``'s
    ``timings`` (the last :data:`KEEP_TIMINGS`) and returned; None when nothing was trained
    or ``plan`` never probed these sizes."""
    ids = {r.run_id for r in plan.runs} & set(run_ids)
    if not ids or not (_num(actual_s) and actual_s >= 0):
        return None
    path = Layout(Path(run_dir)).probe
    now = now or machine_now()
    with file_lock(path):
        probes = cached_probes(run_dir, plan, cfg, device)
        if probes is None:
            return None
        reuse = reuses_trunks(cfg)
        workers = plan_workers(plan, cfg, device)
        est = estimate_seconds(plan, probes, cfg, device, reuse=reuse, run_ids=ids,
                               workers=workers)
        loads = [p.load for p in probes.values() if p.load is not None]
        entry = {"finished_at": datetime.fromtimestamp(now.time, timezone.utc).isoformat(
                     timespec="seconds"),
                 "runs": len(ids), "reuse": reuse, "workers": workers,
                 "estimate_s": round(est, 3),
                 "actual_s": round(float(actual_s), 3),
                 "ratio": round(actual_s / est, 4) if est > 0 else None,
                 "probe_load": max(loads) if loads else None, "load": now.load,
                 "host": now.host, "device": str(device)}
        cached = _read_cache(path)
        past = cached.get(TIMINGS)
        past = [t for t in past if isinstance(t, dict)] if isinstance(past, list) else []
        cached[TIMINGS] = (past + [entry])[-KEEP_TIMINGS:]
        atomic_write_json(path, cached)
    return entry


def train_timed(run_dir: Path, plan: SweepPlan, cfg: TrainConfig,
                train: Callable[[], list[dict[str, Any]]], console: Console,
                only: Collection[str] | None = None) -> list[dict[str, Any]]:
    """``train()`` (the train stage on ``plan``, or on its runs in ``only``), timed: the
    estimate of the runs it trained beside the seconds they took is recorded
    (:func:`record_actual`) and printed."""
    todo = [r.run_id for r in unfinished(plan.runs, load_run_results(run_dir), cfg.force, only)]
    t0 = time.perf_counter()
    records = train()
    if todo:
        entry = record_actual(run_dir, plan, cfg, resolve_device(cfg.device), todo,
                              time.perf_counter() - t0)
        if entry is not None:
            console.print(escape(timing_line(entry)), highlight=False)
    return records


def last_timing(run_dir: str | Path) -> dict[str, Any] | None:
    """The latest estimate-vs-actual record of ``probe.json`` (None when there is none or it
    is malformed: the file is untrusted)."""
    past = _read_cache(Layout(Path(run_dir)).probe).get(TIMINGS)
    last = past[-1] if isinstance(past, list) and past else None
    if not isinstance(last, dict) or not all(_num(last.get(k)) and last[k] >= 0
                                             for k in ("estimate_s", "actual_s", "runs")):
        return None
    return last


def timing_line(entry: dict[str, Any]) -> str:
    """One sentence of an estimate-vs-actual record."""
    est, act = float(entry["estimate_s"]), float(entry["actual_s"])
    ratio = f" ({act / est:.2f}x the estimate)" if est > 0 else ""
    return (f"Training {int(entry['runs'])} run(s) took {duration(act)}; the plan's probe "
            f"estimated {duration(est)}{ratio}.")


def duration(seconds: float) -> str:
    """Seconds as ``42 s``, ``5.2 min`` or ``1.3 h``."""
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
    workers = plan_workers(plan, cfg, device)
    sep_s = estimate_seconds(plan, probes, cfg, device, workers=workers)
    reuse_s = estimate_seconds(plan, probes, cfg, device, reuse=True, workers=workers)
    loads = [p.load for p in probes.values() if p.load is not None]
    how = f"{workers} worker processes, " if workers > 1 else ""
    how += f"probed under load {max(loads):.2f}" if loads else "measured throughput probe"
    lines.append(f"Estimated time on {device}: {duration(sep_s)} as separate runs, "
                 f"{duration(reuse_s)} with reuse (training and evaluation; {how})")
    return lines
