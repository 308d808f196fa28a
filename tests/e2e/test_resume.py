"""Resume: checkpoints, interrupted runs ending where uninterrupted ones do, and kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch

from conftest import REPO
from flops_fit.config import DatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.models.gpt import GPT
from flops_fit.planning.planner import plan_sweep
from flops_fit.rundir import io as rundir
from flops_fit.training.runner import TrainingRunner
from flops_fit.training.sweep import train_stage

SRC = REPO / "src"
GPT_KW = {"vocab_size": 256, "seq_len": 32, "head_dim": 16, "width_per_layer": 32}
DATA = DatasetConfig(max_bytes=400_000)


def _cfg(**kw) -> TrainConfig:
    # one thread: bit-exact comparisons between runs, and immune to a busy machine
    # separate runs: a standalone run's own checkpoints (trunks: test_reuse_kill.py)
    base = dict(batch_size=8, seq_len=32, eval_tokens=2048, periodic_eval_tokens=512,
                log_every=5, device="cpu", threads=1, reuse=False)
    return TrainConfig(**{**base, **kw})


def _plan(budgets=(1.5e9,)):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plan_sweep(GPT, "width", dict(GPT_KW), list(budgets), sizes=[16, 32, 48],
                          sizes_per_budget=3, tokens_per_param=50, batch_size=8, seq_len=32,
                          min_steps=5)


class Interrupt(BaseException):
    """Stands in for a kill: not an Exception, so the run is not recorded as failed."""


def _interrupt_at(k: int, run: int = 0):
    """A hook interrupting the ``run``-th run (0-based) trained by this process at step k."""
    started = [-1]

    def hook(step: int) -> None:
        started[0] += step == 1
        if step == k and started[0] == run:
            raise Interrupt

    return hook


def test_checkpoint_roundtrip_and_corrupt_file(tmp_path):
    path = tmp_path / "ck.pt"
    rundir.save_checkpoint(path, {"step": 3, "w": torch.arange(4.0)})
    st = rundir.load_checkpoint(path)
    assert st["step"] == 3 and torch.equal(st["w"], torch.arange(4.0))
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind
    path.write_bytes(path.read_bytes()[:40])  # truncated, as after a crash
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        assert rundir.load_checkpoint(path) is None
    assert rundir.load_checkpoint(tmp_path / "missing.pt") is None


def test_resumed_run_equals_uninterrupted(tmp_path):
    spec = _plan().runs[1]  # width 32
    data = build_data(DATA, 32)
    ref = TrainingRunner(GPT, data, _cfg()).run(spec, tmp_path / "ref")
    assert ref["status"] == "completed" and ref["resumed"] == 0

    k = spec.steps // 2 + 3
    cfg = _cfg(checkpoint_every_s=0.0)  # checkpoint after every step
    with pytest.raises(Interrupt):
        TrainingRunner(GPT, data, cfg, on_step=_interrupt_at(k)).run(spec, tmp_path / "res")
    rdir = tmp_path / "res" / "runs" / spec.run_id
    ck = rundir.load_checkpoint(rdir / "checkpoint.pt")
    assert ck["state"]["step"] == k
    assert not (rdir / "result.json").exists()

    rec = TrainingRunner(GPT, data, cfg).run(spec, tmp_path / "res")
    assert rec["status"] == "completed" and rec["resumed"] == 1
    assert rec["final_loss"] == pytest.approx(ref["final_loss"], rel=1e-6, abs=1e-6)
    assert rec["final_train_loss"] == pytest.approx(ref["final_train_loss"], rel=1e-5)
    assert not (rdir / "checkpoint.pt").exists()  # deleted on completion
    lines = [json.loads(x) for x in (rdir / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines if not x.get("final")]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # no duplicated curve
    assert steps[-1] == spec.steps and lines[-1]["final"]

    # a checkpoint made under another learning-rate setting is not resumed
    with pytest.raises(Interrupt):
        TrainingRunner(GPT, data, cfg, on_step=_interrupt_at(k)).run(spec, tmp_path / "lr")
    rec2 = TrainingRunner(GPT, data, _cfg(checkpoint_every_s=0.0, lr=1e-3)).run(
        spec, tmp_path / "lr")
    assert rec2["resumed"] == 0 and rec2["status"] == "completed"


def test_interrupted_sweep_resumes_on_the_next_train(tmp_path):
    plan = _plan()
    data = build_data(DATA, 32)
    cfg = _cfg(checkpoint_every_s=0.02)  # several checkpoints per run, not one per step
    mid = plan.runs[1]
    with pytest.raises(Interrupt):
        train_stage(tmp_path, plan, GPT, data, cfg, on_step=_interrupt_at(mid.steps // 2, run=1),
                    console=_quiet())
    # run 0 completed; run 1 was interrupted (checkpoint on disk); run 2 never started
    before = json.loads((tmp_path / "results.json").read_text())
    assert [r["status"] for r in before] == ["completed", "pending", "pending"]
    first = (tmp_path / "runs" / plan.runs[0].run_id / "result.json").read_bytes()
    recs = train_stage(tmp_path, plan, GPT, data, cfg, console=_quiet())
    assert [r["status"] for r in recs] == ["completed"] * 3
    assert [r["resumed"] for r in recs] == [0, 1, 0]
    assert (tmp_path / "runs" / plan.runs[0].run_id / "result.json").read_bytes() == first


def _quiet():
    from rich.console import Console

    return Console(file=open(os.devnull, "w"), force_terminal=False)  # noqa: SIM115


CHILD = textwrap.dedent("""
    import sys, warnings
    from pathlib import Path
    warnings.simplefilter("ignore")
    from flops_fit.config import DatasetConfig, TrainConfig
    from flops_fit.data import build_data
    from flops_fit.models.gpt import GPT
    from flops_fit.planning.planner import plan_sweep
    from flops_fit.training.sweep import train_stage
    kw = {"vocab_size": 256, "seq_len": 64, "head_dim": 16, "width_per_layer": 32}
    plan = plan_sweep(GPT, "width", kw, [2e10], sizes=[16, 32, 48], sizes_per_budget=3,
                      tokens_per_param=50, batch_size=16, seq_len=64, min_steps=5)
    cfg = TrainConfig(batch_size=16, seq_len=64, eval_tokens=4096, device="cpu",
                      checkpoint_every_s=0.2, threads=1, reuse=False)
    train_stage(Path(sys.argv[1]), plan, GPT, build_data(DatasetConfig(max_bytes=400_000), 64),
                cfg)
""")


def test_kill_dash_nine_mid_sweep_then_restart(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, str(script), str(run_dir)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:  # wait until one run is complete and a later one has a checkpoint, then kill -9
        while time.monotonic() < deadline and proc.poll() is None:
            done = list(run_dir.glob("runs/*/result.json"))
            ckpts = list(run_dir.glob("runs/*/checkpoint.pt"))
            if done and ckpts:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"sweep ended before it could be killed: {proc.stderr.read()}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    stamps = {p: (p.read_bytes(), p.stat().st_mtime_ns)
              for p in run_dir.glob("runs/*/result.json")}
    assert stamps

    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert stamps == {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in stamps}  # untouched
    results = json.loads((run_dir / "results.json").read_text())
    ids = [r["run_id"] for r in results]
    assert len(ids) == len(set(ids)) == 3
    assert all(r["status"] == "completed" for r in results)
    assert sum(r["resumed"] for r in results) >= 1  # the killed run went on from its checkpoint
    assert not list(run_dir.glob("runs/*/checkpoint.pt"))

    t0 = time.monotonic()  # after completion: nothing to train, back within seconds
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "Nothing to train" in again.stdout
    assert time.monotonic() - t0 < 30
