"""Faults: kill -9 at chosen and at random moments, a read-only run directory, a full disk.

Nothing may be lost or corrupt: every JSON file parses after every kill, a finished run's
``result.json`` never changes once written, and a restart always finishes the sweep with every
planned run exactly once.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from rich.console import Console

from flops_fit.analysis.analyzer import AnalysisConfig, run_analysis
from flops_fit.config import DatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.errors import FlopsFitError
from flops_fit.models.gpt import GPT
from flops_fit.planning.planner import plan_sweep
from flops_fit.rundir import io as rundir
from flops_fit.training.sweep import train_stage
from helpers.run import TESTS, assert_kept, snapshot, stress, synthetic_records, write_results

# separate runs (train.reuse=false): the moments below are counted in standalone runs' steps;
# trunks are killed at their own moments in test_reuse_kill.py
FAST_CKPT = [*stress.plan_overrides([3e9], 4, checkpoint_every_s=0.01), "train.reuse=false"]

#: (fault, what must hold afterwards); run one after another on one run directory.
FAULTS = [
    "step:30",          # run 1 (238 steps) dies inside step 30, checkpoints on disk
    "checkpoint:3",     # run 1 resumes; its 3rd checkpoint is cut in half
    "result:1",         # run 1 finishes; killed before its result.json is renamed into place
    "rebuild:1",        # run 1 finishes again; killed mid-rebuild of results.json, lock held
    "after-result:1",   # run 2 finishes; killed after its result.json, before the cleanup
    "step:20",          # run 3 (45 steps) dies inside step 20
]


def _faulty(fault: str, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, str(TESTS / "helpers" / "faults.py"), fault, "train", f"run_dir={run_dir}",
         *overrides], capture_output=True, text=True, timeout=300, env=env)


def test_kill_at_each_dangerous_moment_then_restart(tmp_path):
    """SIGKILL mid-step, mid-checkpoint, mid-result-write, mid-rebuild; then finish the sweep."""
    run_dir = tmp_path / "run"
    ledger = stress.Ledger()
    for fault in FAULTS:
        out = _faulty(fault, run_dir, *FAST_CKPT)
        assert out.returncode == -9, f"{fault} did not fire:\n{out.stdout}\n{out.stderr}"
        assert "FAULT: SIGKILL" in out.stderr
        ledger.check(run_dir)  # every JSON parses; finished records unchanged
        assert not ledger.corrupt and not ledger.changed and not ledger.duplicates, fault
    assert len(ledger.seen) == 2  # runs 1 and 2 were finished before the last kill
    assert stress.stale_temp_files(run_dir)  # killed writes left temp files behind ...

    out = _faulty("none", run_dir, *FAST_CKPT)
    assert out.returncode == 0, out.stderr
    summary = stress.final_check(run_dir, ledger)
    assert stress.nothing_lost(summary, None), json.dumps(summary, indent=1)
    assert summary["completed"] == summary["planned"] == 4
    assert summary["resumed_runs"] >= 2  # runs 1 and 3 went on from their checkpoints
    assert summary["temp_files_left"] == 0  # ... and the restart removed them
    assert "Traceback" not in out.stdout + out.stderr


def test_random_kills_then_restart(tmp_path):
    """Two shards, checkpointing every 10 ms, killed at random moments and restarted."""
    overrides = stress.plan_overrides([1e10], 4, checkpoint_every_s=0.01)  # 53-795 steps
    summary = stress.kill_experiment(tmp_path / "run", shards=2, kills=4, overrides=overrides,
                                     scratch=tmp_path, seed=1, delay_s=(0.05, 0.5),
                                     analyze=False, timeout=240)
    # 4 here; a much faster machine may finish its ~5 s of training after fewer
    assert summary["kills"] >= 2, summary
    assert stress.nothing_lost(summary, None), json.dumps(summary, indent=1)
    assert summary["completed"] == summary["planned"] == 4
    assert summary["temp_files_left"] == 0


# ------------------------------------------------------------------------------ read-only run dir


def _read_only_command(run_dir: Path, args: list[str]) -> list[str] | None:
    """A command that runs ``args`` with ``run_dir`` read-only, or None if that is impossible.

    Not root: ``chmod a-w`` is enough. Root ignores file modes, so the command runs in its own
    mount namespace where ``run_dir`` is a read-only bind mount (needs CAP_SYS_ADMIN).
    """
    if os.geteuid() != 0:
        for p in [run_dir, *run_dir.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        return args
    if not shutil.which("unshare"):
        return None
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, str(run_dir), "sh", "-c",
                            f"! touch {run_dir}/.probe 2>/dev/null"], capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", "-m", "sh", "-c", script, str(run_dir), *args]


@pytest.mark.parametrize("command", ["analyze", "train"])
def test_read_only_run_dir_is_one_sentence(tmp_path, command):
    run_dir = tmp_path / "run"
    write_results(run_dir, synthetic_records())
    (run_dir / "plan.json").write_text(json.dumps({"runs": []}))
    before = snapshot(run_dir)
    cmd = _read_only_command(run_dir, [sys.executable, "-m", "flops_fit", command,
                                       f"run_dir={run_dir}"])
    if cmd is None:
        pytest.skip("running as root without a usable `unshare -m` + read-only bind mount: "
                    "root ignores chmod, so a read-only run directory cannot be made here")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        for p in [run_dir, *run_dir.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    text = out.stdout + out.stderr
    assert out.returncode == 6, text  # EnvironmentFailure: the machine, not the input
    assert "Traceback" not in text
    assert "is not writable" in text and str(run_dir) in text
    assert_kept(before, run_dir)


# ------------------------------------------------------------------------------ full disk


@pytest.fixture
def full_disk(monkeypatch):
    """Every fsync fails with ENOSPC, as on a full disk (the data never reaches it)."""

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "No space left on device" in msg, msg
    return msg


def test_full_disk_atomic_write_keeps_the_old_file(tmp_path, full_disk):
    path = tmp_path / "results.json"
    path.write_text('["old"]\n')
    with pytest.raises(FlopsFitError) as exc:
        rundir.atomic_write_json(path, ["new"])
    assert "free disk space" in _one_line(exc)
    assert path.read_text() == '["old"]\n'
    assert os.listdir(tmp_path) == ["results.json"]  # no temp file left


def test_full_disk_analyze_is_one_sentence(tmp_path, full_disk, capsys):
    """``flops-fit analyze`` in-process: one line on stderr, exit 2, the old fit kept."""
    from flops_fit.cli import main

    run_dir = tmp_path / "run"
    write_results(run_dir, synthetic_records())
    (run_dir / "analysis").mkdir()
    (run_dir / "analysis" / "scaling_laws.json").write_text('{"old": true}\n')
    before = snapshot(run_dir)
    with pytest.raises(SystemExit) as exc:
        main(["analyze", f"run_dir={run_dir}", "analysis.bootstrap=5"])
    err = capsys.readouterr().err
    assert exc.value.code == 6, err  # EnvironmentFailure (disk full)
    lines = [line for line in err.splitlines() if line.startswith("flops-fit:")]
    assert len(lines) == 1 and "No space left on device" in lines[0], err
    assert "scaling_laws.json" in lines[0] and "Traceback" not in err
    assert_kept(before, run_dir)


def test_full_disk_analysis_and_rebuild_python(tmp_path, full_disk):
    run_dir = tmp_path / "run"
    results = write_results(run_dir, synthetic_records())
    old = results.read_bytes()
    with pytest.raises(FlopsFitError) as exc:
        run_analysis(run_dir, AnalysisConfig(bootstrap=5), None, Console(file=io.StringIO()))
    _one_line(exc)
    with pytest.raises(FlopsFitError) as exc:
        rundir.rebuild_results(run_dir)
    _one_line(exc)
    assert results.read_bytes() == old
    assert not list(run_dir.rglob(".*.tmp"))


def test_full_disk_while_training_is_one_sentence(tmp_path, full_disk):
    """A checkpoint or a run record that cannot be written ends the stage in one sentence."""
    kw = {"vocab_size": 256, "seq_len": 32, "head_dim": 16, "width_per_layer": 32}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_sweep(GPT, "width", kw, [1e9], sizes=[16, 32, 48], sizes_per_budget=3,
                          tokens_per_param=20, batch_size=8, seq_len=32, min_steps=5)
    cfg = TrainConfig(batch_size=8, seq_len=32, eval_tokens=1024, periodic_eval_tokens=256,
                      device="cpu", checkpoint_every_s=0.0, threads=1)
    data = build_data(DatasetConfig(max_bytes=200_000), 32, 8)
    with pytest.raises(FlopsFitError) as exc:
        train_stage(tmp_path, plan, GPT, data, cfg, console=Console(file=io.StringIO()))
    assert "result.json" in _one_line(exc)
    assert not list((tmp_path / "runs").glob("*/result.json"))
