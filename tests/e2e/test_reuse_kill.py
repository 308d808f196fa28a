"""kill -9 a reused wsd sweep in its trunk, between a run and the next, and in a cooldown;
restart: no finished run trained again, nothing lost, the same losses as standalone runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from rich.console import Console

from conftest import REPO
from flops_fit.config import DatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.models.gpt import GPT
from flops_fit.planning.planner import SweepPlan, plan_sweep
from flops_fit.training.sweep import train_stage

SRC = REPO / "src"

# The child trains the sweep and, per argv[2], SIGKILLs itself: "step:K" at its K-th optimizer
# step (trunk and cooldown steps alike), "result:N" right after writing its N-th result.json,
# "none": runs to the end.
CHILD = textwrap.dedent("""
    import os, signal, sys, warnings
    from pathlib import Path
    warnings.simplefilter("ignore")
    from flops_fit.rundir import io as rundir
    from flops_fit.config import DatasetConfig, TrainConfig
    from flops_fit.data import build_data
    from flops_fit.models.gpt import GPT
    from flops_fit.planning.planner import SweepPlan, plan_sweep
    from flops_fit.training.sweep import train_stage
    kind, _, n = sys.argv[2].partition(":")
    count, written = [0], [0]
    def hook(step):
        count[0] += 1
        if kind == "step" and count[0] == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
    write = rundir.write_run_result
    def write_then_die(*a, **k):
        write(*a, **k)
        written[0] += 1
        if kind == "result" and written[0] == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
    rundir.write_run_result = write_then_die
    kw = {"vocab_size": 256, "seq_len": 32, "head_dim": 16, "width_per_layer": 32}
    plan = plan_sweep(GPT, "width", kw, [4e8, 8e8, 1.6e9], sizes=[16, 32, 48],
                      sizes_per_budget=3, tokens_per_param=50, batch_size=8, seq_len=32,
                      min_steps=5)
    plan = SweepPlan([r for r in plan.runs if r.size_value == 16], plan.model, plan.settings)
    cfg = TrainConfig(batch_size=8, seq_len=32, eval_tokens=2048, periodic_eval_tokens=512,
                      log_every=5, device="cpu", threads=1, schedule="wsd", reuse=True,
                      warmup_min_steps=5, checkpoint_every_s=0.0)
    train_stage(Path(sys.argv[1]), plan, GPT, build_data(DatasetConfig(max_bytes=400_000), 32),
                cfg, on_step=hook)
""")


def _plan() -> SweepPlan:
    """The width-16 runs of a three-budget plan: one trunk (the child plans the same)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_sweep(GPT, "width", {"vocab_size": 256, "seq_len": 32, "head_dim": 16,
                                         "width_per_layer": 32}, [4e8, 8e8, 1.6e9],
                          sizes=[16, 32, 48], sizes_per_budget=3, tokens_per_param=50,
                          batch_size=8, seq_len=32, min_steps=5)
    return SweepPlan([r for r in plan.runs if r.size_value == 16], plan.model, plan.settings)


def test_kill_dash_nine_in_trunk_between_and_in_cooldown_then_restart(tmp_path):
    plan = _plan()  # one trunk: 21, 42 and 85 steps, branch points 17, 34 and 68
    assert [r.steps for r in plan.runs] == [21, 42, 85]
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def child(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(run_dir), mode], env=env,
                              capture_output=True, text=True, timeout=300)

    def results() -> dict[Path, tuple[bytes, int]]:
        return {p: (p.read_bytes(), p.stat().st_mtime_ns)
                for p in run_dir.glob("runs/*/result.json")}

    # 1. in the trunk: step 10 of 17 before the first branch point
    out = child("step:10")
    assert out.returncode == -9, out.stderr
    assert not results() and list(run_dir.glob("trunks/*/trunk.pt"))
    # 2. between: right after the first run's result (its trunk went on from step 10)
    out = child("result:1")
    assert out.returncode == -9, out.stderr
    first = results()
    assert len(first) == 1 and list(run_dir.glob("trunks/*/branch-00000017.pt"))
    # 3. in a cooldown: trunk 17 -> 34 is 17 steps, then the second run's cooldown (34 -> 42)
    out = child("step:20")
    assert out.returncode == -9, out.stderr
    assert list(run_dir.glob("runs/*/checkpoint.pt")) and len(results()) == 1
    # 4. to the end
    out = child("none")
    assert out.returncode == 0, out.stderr
    assert {p: v for p, v in results().items() if p in first} == first  # not trained again
    recs = {r["run_id"]: r for r in json.loads((run_dir / "results.json").read_text())}
    assert len(recs) == 3 and all(r["status"] == "completed" for r in recs.values())
    assert not list(run_dir.glob("runs/*/checkpoint.pt"))
    assert not list(run_dir.glob("trunks/*/*.pt"))
    assert sum(r["resumed"] for r in recs.values()) >= 1  # the cooldown went on from its ckpt
    for rid in recs:
        lines = (run_dir / "runs" / rid / "metrics.jsonl").read_text().splitlines()
        steps = [json.loads(x)["step"] for x in lines if not json.loads(x).get("final")]
        assert steps == sorted(set(steps))  # no step logged twice

    # the same numbers as uninterrupted standalone wsd runs
    cfg = TrainConfig(batch_size=8, seq_len=32, eval_tokens=2048, periodic_eval_tokens=512,
                      log_every=5, device="cpu", threads=1, schedule="wsd", warmup_min_steps=5)
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    alone = train_stage(tmp_path / "alone", plan, GPT,
                        build_data(DatasetConfig(max_bytes=400_000), 32), cfg, console=quiet)
    for a in alone:
        assert abs(recs[a["run_id"]]["final_loss"] - a["final_loss"]) <= 1e-5
    spent = sum(r["flops_spent"] for r in recs.values())
    # one trunk to step 68 plus the three cooldowns (4, 8 and 17 steps) of 21 + 42 + 85 steps
    assert spent == pytest.approx(sum(r.flops for r in plan.runs) * (68 + 4 + 8 + 17) / 148)
