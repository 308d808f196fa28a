"""train.workers: several local processes share one plan through the run and trunk locks."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import replace

import pytest
import torch
from rich.console import Console

from flops_fit.config import DatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.errors import FlopsFitError
from flops_fit.models.gpt import GPT
from flops_fit.planning.planner import plan_sweep
from flops_fit.rundir.io import load_run_results
from flops_fit.training import workers as W
from flops_fit.training.trunks import group_trunks

GPT_KW = dict(vocab_size=256, seq_len=32, head_dim=16, width_per_layer=32, min_layers=2)
CPU = torch.device("cpu")


def _cfg(**kw) -> TrainConfig:
    base = dict(batch_size=8, seq_len=32, eval_tokens=2048, periodic_eval_tokens=512,
                log_every=5, device="cpu", schedule="wsd", warmup_min_steps=5, reuse=True)
    return TrainConfig(**{**base, **kw})


def _plan():
    """Three budgets x widths 16, 32 and 48: three trunks of three runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plan_sweep(GPT, "width", dict(GPT_KW), [4e8, 8e8, 1.6e9], sizes=[16, 32, 48],
                          sizes_per_budget=3, tokens_per_param=50, batch_size=8, seq_len=32,
                          min_steps=5)


def test_auto_uses_the_cores_on_cpu_only_for_enough_work(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    big = 10 * W.AUTO_MIN_FLOPS
    assert W.resolve_workers(_cfg(), CPU, big) == W.MAX_AUTO_WORKERS
    assert W.worker_threads(_cfg(), W.MAX_AUTO_WORKERS) == 4 // W.MAX_AUTO_WORKERS
    assert W.resolve_workers(_cfg(), CPU, W.AUTO_MIN_FLOPS / 2) == 1  # a small sweep
    assert W.resolve_workers(_cfg(threads=2), CPU, big) == 1  # pinned threads: bit-exact
    assert W.resolve_workers(_cfg(num_shards=2), CPU, big) == 1  # the shards share the cores
    assert W.resolve_workers(_cfg(), torch.device("cuda"), big) == 1
    assert W.resolve_workers(_cfg(force=True), CPU, big) == 1
    assert W.resolve_workers(_cfg(workers=3), CPU, 0.0) == 3  # asked for: as asked
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    assert W.resolve_workers(_cfg(), CPU, big) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID")
    assert W.resolve_workers(_cfg(), CPU, big) == 1  # one core


def test_force_with_workers_is_refused_in_one_sentence():
    with pytest.raises(FlopsFitError, match="train.workers=1"):
        W.resolve_workers(_cfg(workers=2, force=True), CPU, 1e15)
    with pytest.raises(FlopsFitError, match="train.workers"):
        _cfg(workers=-1).check()


def test_two_workers_train_every_run_once(tmp_path):
    """Two spawned workers share three trunks: every run completes, each by exactly one worker
    (one cooldown in its metrics), at one thread each; results.json lists all of them."""
    plan, data = _plan(), build_data(DatasetConfig(max_bytes=400_000), 32)
    cfg = _cfg(workers=2)
    quiet = Console(file=open(os.devnull, "w"), force_terminal=False)  # noqa: SIM115
    records = W.train_with_workers(tmp_path, plan, GPT, data, cfg, console=quiet)
    assert sorted(r["run_id"] for r in records) == sorted(r.run_id for r in plan.runs)
    assert {r["status"] for r in records} == {"completed"}
    assert {r["threads"] for r in records} == {1}
    assert len(load_run_results(tmp_path)) == len(plan.runs)
    for spec in plan.runs:  # trained once: one final line in its metrics
        lines = (tmp_path / "runs" / spec.run_id / "metrics.jsonl").read_text().splitlines()
        assert sum(bool(json.loads(x).get("final")) for x in lines) == 1, spec.run_id
    assert len(list((tmp_path / "trunks").iterdir())) == len(group_trunks(plan, cfg))
    again = W.train_with_workers(tmp_path, plan, GPT, data, replace(cfg, workers=0),
                                 console=quiet)  # nothing left: nothing retrained
    assert [r["finished_at"] for r in again] == [r["finished_at"] for r in records]
