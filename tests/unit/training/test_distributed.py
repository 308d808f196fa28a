"""train.devices_per_run: K=2 data-parallel runs on CPU with Gloo (spawned workers)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch.distributed as dist

from flops_fit.config import DatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.models.gpt import GPT
from flops_fit.planning.planner import plan_sweep
from flops_fit.rundir.layout import CHECKPOINT_FILE
from flops_fit.training.distributed import World
from flops_fit.training.sweep import train_stage
from helpers.run import TINY  # noqa: F401  (the tests' shared tiny settings live there)

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with Gloo is not available")

GPT_KW = {"vocab_size": 256, "seq_len": 32, "head_dim": 16, "width_per_layer": 32}


def _plan(steps_budget: float = 3.5e9):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_sweep(GPT, "width", dict(GPT_KW), [steps_budget], sizes=[16, 32, 48],
                          sizes_per_budget=3, tokens_per_param=50, batch_size=8, seq_len=32,
                          min_steps=5)
    return replace(plan, runs=[r for r in plan.runs if r.size_value == 32])  # one run


def _cfg(**kw) -> TrainConfig:
    base = dict(batch_size=8, seq_len=32, eval_tokens=2048, periodic_eval_tokens=512,
                log_every=1, device="cpu", threads=1, dtype="fp32", schedule="cosine")
    return TrainConfig(**{**base, **kw})


def _curve(run_dir: Path, run_id: str) -> list[float]:
    lines = (run_dir / "runs" / run_id / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["train_loss"] for x in lines if "train_loss" in json.loads(x)]


def test_world_slices_the_global_batch():
    import torch
    x = torch.arange(8).reshape(8, 1)
    parts = [World(r, 2).local((x, {"y": x})) for r in range(2)]
    assert torch.equal(torch.cat([p[0] for p in parts]), x)
    assert torch.equal(parts[1][1]["y"], x[4:])
    assert World().local(x) is x


def test_two_gloo_ranks_match_one_device(tmp_path):
    plan = _plan()
    spec = plan.runs[0]
    assert spec.steps >= 50
    data = build_data(DatasetConfig(max_bytes=400_000), 32)
    one = train_stage(tmp_path / "k1", plan, GPT, data, _cfg())
    two = train_stage(tmp_path / "k2", plan, GPT, data, _cfg(devices_per_run=2))
    assert one[0]["status"] == two[0]["status"] == "completed", two[0].get("error")
    a, b = _curve(tmp_path / "k1", spec.run_id), _curve(tmp_path / "k2", spec.run_id)
    assert len(a) == len(b) == spec.steps
    assert max(abs(x - y) for x, y in zip(a[:50], b[:50], strict=True)) <= 1e-4
    assert abs(one[0]["final_loss"] - two[0]["final_loss"]) <= 1e-3
    assert two[0]["num_tokens"] == one[0]["num_tokens"] and two[0]["flops"] == one[0]["flops"]


def test_kill_9_of_a_worker_leaves_a_resumable_run(tmp_path):
    plan = _plan(8e9)
    spec = plan.runs[0]
    data = build_data(DatasetConfig(max_bytes=400_000), 32)
    rdir = tmp_path / "runs" / spec.run_id
    me = os.getpid()

    def killer() -> None:  # kill -9 one worker once a checkpoint exists
        deadline = time.time() + 240
        while time.time() < deadline and not (rdir / CHECKPOINT_FILE).exists():
            time.sleep(0.2)
        time.sleep(0.5)
        kids = [int(p) for p in Path(f"/proc/{me}/task/{me}/children").read_text().split()]
        workers = [k for k in kids if "spawn" in Path(f"/proc/{k}/cmdline").read_text()]
        if workers:
            os.kill(workers[-1], signal.SIGKILL)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    cfg = _cfg(devices_per_run=2, checkpoint_every_s=0, log_every=5)
    first = train_stage(tmp_path, plan, GPT, data, cfg)
    t.join()
    assert first[0]["status"] == "failed" and "died" in first[0]["error"], first[0]
    assert (rdir / CHECKPOINT_FILE).exists()
    done = json.loads((rdir / "result.json").read_text())
    assert done["steps_done"] < spec.steps
    again = train_stage(tmp_path, plan, GPT, data, cfg)
    assert again[0]["status"] == "completed" and again[0]["resumed"] == 1, again[0]
    steps = [json.loads(x)["step"] for x in (rdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == spec.steps
