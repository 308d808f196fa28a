"""Hardening, round three (issue 24): runaway counts, a tampered plan.json, checkpoint or
scaling_laws.json, symbolic links, overflowing records, messages, refusals that leave the run
directory byte-identical, and exit 6 for the machine's failures. Each numbered item of the
issue has a test here; most call ``cli.main`` in-process (the same path as the shell)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from test_hardening import _in_process, _planned

import flops_fit
from conftest import FIXTURE_V0_1_0, REPO
from flops_fit.config import DatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.errors import EnvironmentFailure, FlopsFitError
from flops_fit.models.gpt import GPT
from flops_fit.planning.planner import plan_sweep
from flops_fit.rundir import io as rundir
from flops_fit.training.runner import TrainingRunner
from helpers.run import TINY, assert_kept, one_sentence, synthetic_records, write_results


def _all_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, Hydra's ``.hydra`` record and lock files included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A planned and trained TINY sweep (copy it before changing it)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    out = _in_process("train", f"run_dir={run_dir}", *TINY)
    assert out.returncode == 0, out.stderr
    return run_dir


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------ 1. runaway counts: bounded

RUNAWAY = [
    ("validate", ["validate.seeds=1e9"], "validate.seeds=1000000000 is more than 100"),
    ("train", ["train.threads=100000"], "train.threads=100000 is more than 1024"),
    ("tune", ["tune.grid_points=1000000"], "tune.grid_points=1000000 is more than 50"),
    ("tune", ["tune.sizes=1000"], "tune.sizes=1000 is more than 20"),
    ("tune", ["tune.max_extensions=1000"], "tune.max_extensions=1000 is more than 20"),
    ("plan", ["budgets.sizes_per_budget=10000000"], "budgets.sizes_per_budget=10000000 is more"),
    ("train", ["budgets.max_added=1000"], "budgets.max_added=1000 is more than 20"),
    ("analyze", ["analysis.bootstrap=1e9"], "at most 100000 resamples"),
    ("plan", ["estimate.probe_steps=1e9"], "estimate.probe_steps=1000000000 is more than 1000"),
    ("train", ["train.batch_size=1e9"], "tokens per step, more than 134217728"),
    ("train", ["train.num_shards=1e9"], "train.num_shards=1000000000 is more than 100000"),
    ("train", ["train.batch_size=4096", "train.devices_per_run=4096"],
     "train.devices_per_run=4096 is more than 1024"),
    ("plan", ["model.size_min=1", "model.size_step=1", "model.size_max=1e12"],
     "holds 1000000000000 values, more than 100000"),
    ("plan", ["budgets.values=[" + ",".join(f"{1e9 + i}" for i in range(101)) + "]"],
     "budgets.values holds 101 budgets, more than 100"),
]


@pytest.mark.parametrize("command,overrides,message", RUNAWAY,
                         ids=[" ".join(c[1])[:40] for c in RUNAWAY])
def test_runaway_count_is_one_sentence_within_a_second(tmp_path, monkeypatch, command,
                                                        overrides, message):
    monkeypatch.chdir(tmp_path)
    t0 = time.monotonic()
    out = _in_process(command, f"run_dir={tmp_path / 'run'}", *overrides)
    one_sentence(out, message, code=2)
    assert time.monotonic() - t0 < 5  # ~0.5 s here; generous for a busy machine
    assert _all_files(tmp_path) == {}  # no .hydra record either
    assert not (tmp_path / "run").exists()


def test_sigterm_stops_analyze_within_seconds(tmp_path):
    """SIGTERM stops a stage other than train (a long bootstrap) in a few seconds, exit 143."""
    run_dir = tmp_path / "run"
    write_results(run_dir, synthetic_records())
    proc = subprocess.Popen([sys.executable, "-m", "flops_fit", "analyze", f"run_dir={run_dir}",
                             "analysis.bootstrap=100000"], cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (run_dir / ".hydra" / "analyze").exists():
        time.sleep(0.1)  # the record is written once the command is accepted
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 10, err
    assert proc.returncode == 143, out + err
    assert "Traceback" not in err


# ------------------------------------------------ 2. plan.json's per-run fields are checked

RUN_EDITS = [
    ("steps", lambda r: r.update(steps=r["steps"] + 7), "has steps="),
    ("size_value", lambda r: r.update(size_value=r["size_value"] + 16), "has size_value="),
    ("kwargs", lambda r: r["model_kwargs"].update(head_dim=8), "has model_kwargs head_dim=8"),
    ("num_params", lambda r: r.update(num_params=r["num_params"] * 2), "has num_params="),
    ("flops_per_token", lambda r: r.update(flops_per_token=r["flops_per_token"] * 2),
     "has flops_per_token="),
    ("num_tokens", lambda r: r.update(num_tokens=r["num_tokens"] + 1), "has num_tokens="),
]


@pytest.mark.parametrize("name,edit,message", RUN_EDITS, ids=[e[0] for e in RUN_EDITS])
def test_tampered_run_in_plan_json_is_one_sentence(tmp_path, name, edit, message):
    run_dir = _planned(tmp_path)
    plan = json.loads((run_dir / "plan.json").read_text())
    edit(plan["runs"][1])
    (run_dir / "plan.json").write_text(json.dumps(plan))
    before = _all_files(tmp_path)
    out = _in_process("train", f"run_dir={run_dir}", *TINY)
    line = one_sentence(out, message, "not what the planner builds", code=2)
    assert plan["runs"][1]["run_id"] in line
    assert _all_files(tmp_path) == before
    assert not (run_dir / "runs").exists()


def test_a_record_that_disagrees_with_its_plan_is_never_fitted(tmp_path, trained):
    run_dir = _copy(trained, tmp_path)
    path = next(iter(sorted((run_dir / "runs").glob("*/result.json"))))
    rec = json.loads(path.read_text())
    rec["num_params"] = rec["num_params"] * 10  # claims another model than the plan's run
    path.write_text(json.dumps(rec))
    with pytest.warns(UserWarning, match="left out of results.json"):
        out = rundir.rebuild_results(run_dir)
    entry = next(r for r in out if r["run_id"] == rec["run_id"])
    assert entry["status"] == "pending" and entry["num_params"] != rec["num_params"]


# ------------------------------------------------------- 3. symbolic links are refused


def _link(run_dir: Path, name: str, elsewhere: Path) -> Path:
    target = run_dir / name
    if target.exists():
        shutil.move(str(target), str(elsewhere))
    else:
        elsewhere.mkdir()
    target.symlink_to(elsewhere, target_is_directory=True)
    return target


@pytest.mark.parametrize("name", ["runs", "run", "trunks", "analysis", "plots"])
def test_symlinked_folder_is_refused(tmp_path, trained, name):
    run_dir = _copy(trained, tmp_path)
    for p in (run_dir / "runs").glob("*/result.json"):
        p.unlink()  # runs left to train: a write would go through the link
    elsewhere = tmp_path / "elsewhere"
    if name == "run":
        link = _link(run_dir, f"runs/{sorted(os.listdir(run_dir / 'runs'))[0]}", elsewhere)
    else:
        link = _link(run_dir, name, elsewhere)
    outside = _all_files(elsewhere)
    inside = _all_files(run_dir)
    out = _in_process("train", f"run_dir={run_dir}", *TINY)
    one_sentence(out, f"{link} is a symbolic link", "never writes through a link", code=2)
    assert _all_files(elsewhere) == outside
    assert _all_files(run_dir) == inside


def test_symlinked_lock_file_is_refused(tmp_path, trained):
    run_dir = _copy(trained, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (run_dir / "results.json.lock").unlink()
    (run_dir / "results.json.lock").symlink_to(victim)
    out = _in_process("train", f"run_dir={run_dir}", *TINY)
    one_sentence(out, "results.json.lock is a symbolic link", code=2)
    assert victim.read_text() == "keep"


# ------------------------------------------- 4 and 5. a tampered checkpoint is not trusted

GPT_KW = {"vocab_size": 256, "seq_len": 32, "head_dim": 16, "width_per_layer": 32}


class _Interrupt(BaseException):
    pass


def _stop_at(k: int):
    def hook(step: int) -> None:
        if step == k:
            raise _Interrupt

    return hook


def _tamper_bad_rng(ck):
    ck["torch_rng"] = torch.zeros(3, dtype=torch.uint8)


def _tamper_shape(ck):
    key = next(k for k, v in ck["model"].items() if v.dim() == 2)
    ck["model"][key] = torch.zeros(3, 3)


CHECKPOINT_EDITS = [
    ("step 1e9", lambda ck: ck["state"].update(step=10 ** 9), "its step 1000000000 is not"),
    ("step -5", lambda ck: ck["state"].update(step=-5), "its step -5 is not"),
    ("wrong shape", _tamper_shape, "it does not fit this run"),
    ("missing keys", lambda ck: ck["model"].popitem(), "it does not fit this run"),
    ("bad rng", _tamper_bad_rng, "it does not fit this run"),
    ("garbage file", None, "unreadable checkpoint"),
]


@pytest.mark.parametrize("name,edit,message", CHECKPOINT_EDITS,
                         ids=[e[0] for e in CHECKPOINT_EDITS])
def test_tampered_checkpoint_is_ignored_in_one_line_and_the_run_restarts(tmp_path, name, edit,
                                                                          message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = plan_sweep(GPT, "width", dict(GPT_KW), [1.5e9], sizes=[16, 32, 48],
                          sizes_per_budget=3, tokens_per_param=50, batch_size=8, seq_len=32,
                          min_steps=5).runs[0]
    data = build_data(DatasetConfig(max_bytes=400_000), 32)
    cfg = TrainConfig(batch_size=8, seq_len=32, eval_tokens=2048, periodic_eval_tokens=512,
                      log_every=5, device="cpu", threads=1, reuse=False, checkpoint_every_s=0.0)
    with pytest.raises(_Interrupt):
        TrainingRunner(GPT, data, cfg, on_step=_stop_at(spec.steps // 2)).run(spec, tmp_path)
    ckpt = tmp_path / "runs" / spec.run_id / "checkpoint.pt"
    if edit is None:
        ckpt.write_bytes(b"\x00garbage" * 100)
    else:
        state = torch.load(ckpt, weights_only=True)
        edit(state)
        rundir.save_checkpoint(ckpt, state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = TrainingRunner(GPT, data, cfg).run(spec, tmp_path)
    assert rec["status"] == "completed" and rec["resumed"] == 0, rec.get("error")
    said = [str(w.message) for w in caught if message in str(w.message)]
    assert len(said) == 1 and "\n" not in said[0], [str(w.message) for w in caught]
    assert "starts again from step 0" in said[0]


# --------------------------------------------- 6. a tampered scaling_laws.json or results.json


def _set(section: str, key: str, value):
    def edit(laws):
        laws[section][key] = value
        return laws
    return edit


def _top(key: str, value):
    def edit(laws):
        laws[key] = value if not callable(value) else value(laws)
        return laws
    return edit


LAW_EDITS = [
    ("E string", "analysis/scaling_laws.json", _set("parametric", "E", "x"),
     "parametric.E='x' is not a number"),
    ("A string", "analysis/scaling_laws.json", _set("parametric", "A", "abc"),
     "parametric.A='abc' is not a number"),
    ("coefficient string", "analysis/scaling_laws.json",
     lambda laws: (laws["parametric"]["n_opt"].update(coefficient="big"), laws)[1],
     "parametric.n_opt.coefficient='big' is not a number"),
    ("predictions 7", "analysis/scaling_laws.json",
     _top("predictions", lambda laws: [*(laws.get("predictions") or [{}])[:1], 7]),
     "predictions[1]=7 is not an object"),
    ("provenance zzz", "analysis/scaling_laws.json", _top("provenance", "zzz"),
     "provenance='zzz' is not an object"),
    ("results object", "results.json", lambda recs: {"runs": recs},
     "is not a list of run records"),
    ("results bare number", "results.json", lambda recs: [7, *recs],
     "Entry #0 of"),
]


@pytest.mark.parametrize("name,file,edit,message", LAW_EDITS, ids=[e[0] for e in LAW_EDITS])
def test_tampered_fit_or_results_is_one_sentence_naming_file_and_field(tmp_path, name, file,
                                                                       edit, message):
    run_dir = _copy(FIXTURE_V0_1_0, tmp_path)
    path = run_dir / file
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(FlopsFitError) as exc:
        flops_fit.Result.load(run_dir).predict(1e15)
    msg = str(exc.value)
    assert message in msg and str(path) in msg and "\n" not in msg, msg
    before = _all_files(run_dir)
    out = _in_process("visualize", f"run_dir={run_dir}")
    one_sentence(out, message, code=2)
    assert _all_files(run_dir) == before


# ------------------------------------------------------- 7 and 8. overflowing records


def _results_with(run_dir: Path, key: str, literal: str) -> str:
    recs = synthetic_records()
    recs[3][key] = "@@"
    write_results(run_dir, [])
    (run_dir / "results.json").write_text(json.dumps(recs, indent=2).replace('"@@"', literal))
    return recs[3]["run_id"]


@pytest.mark.parametrize("key,literal,message", [
    ("num_params", "1e400", "num_params=inf, which is not a positive number"),
    ("compute_budget", "1e308", "compute_budget=1e+308, above 1e+30"),
    ("flops", "1e308", "flops=1e+308, above 1e+30"),
])
def test_overflowing_record_names_the_run_and_field(tmp_path, key, literal, message):
    run_dir = tmp_path / "run"
    rid = _results_with(run_dir, key, literal)
    out = _in_process("analyze", f"run_dir={run_dir}", "analysis.bootstrap=0")
    one_sentence(out, rid, message, code=2)
    assert "overflow encountered" not in out.stderr and "Traceback" not in out.stderr


def test_visualize_leaves_out_an_overflowing_record(tmp_path):
    """A fit made before a record was tampered with: the plots leave the record out."""
    run_dir = tmp_path / "run"
    write_results(run_dir, synthetic_records())
    assert _in_process("analyze", f"run_dir={run_dir}", "analysis.bootstrap=0").returncode == 0
    recs = json.loads((run_dir / "results.json").read_text())
    recs[3]["flops"] = "@@"
    recs[4]["num_params"] = "@@@"
    (run_dir / "results.json").write_text(
        json.dumps(recs).replace('"@@@"', "1e400").replace('"@@"', "1e308"))
    out = _in_process("visualize", f"run_dir={run_dir}")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "overflow encountered" not in out.stderr
    assert (run_dir / "report.html").exists()


# ------------------------------------------- 9. user data whose targets do not fit the loss


def test_custom_dataset_with_uneven_lengths_fails_at_plan(tmp_path, monkeypatch):
    (tmp_path / "uneven.py").write_text(
        "import torch\n"
        "from torch.utils.data import Dataset\n\n\n"
        "class Uneven(Dataset):\n"
        "    def __init__(self):\n"
        "        self.t = torch.randint(0, 256, (256, 33), generator=torch.Generator()"
        ".manual_seed(0))\n\n"
        "    def __len__(self):\n"
        "        return len(self.t)\n\n"
        "    def __getitem__(self, i):\n"
        "        return self.t[i, :-1], self.t[i, 1:-1]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    run_dir = tmp_path / "run"
    out = _in_process("plan", f"run_dir={run_dir}", "dataset=custom",
                      "dataset._target_=uneven.Uneven", "budgets.values=[3e9]",
                      "budgets.min_steps=5", "train.batch_size=8", "train.seq_len=32",
                      "estimate.probe=false")
    one_sentence(out, "inputs have shape (32,) but its targets (31,)", code=2)
    assert not run_dir.exists()


# ------------------------------------------------------------------------ 10. messages

MESSAGES = [
    (["budgets.sizes=[1,2]"], "budgets has no key 'sizes'; did you mean 'sizes_per_budget'?"),
    (["train.lr_bas=1"], "train has no key 'lr_bas'; did you mean 'lr_base'?"),
    (["dataset.vocab=3"], "dataset has no key 'vocab'; did you mean 'vocab_size'?"),
    (["dataset=tokens", "dataset.path=/nonexistent"],
     "dataset.vocab_size has no value; set it on the command line"),
]


@pytest.mark.parametrize("overrides,message", MESSAGES, ids=[m[0][-1] for m in MESSAGES])
def test_message_names_the_key(tmp_path, monkeypatch, overrides, message):
    monkeypatch.chdir(tmp_path)
    out = _in_process("plan", f"run_dir={tmp_path / 'run'}", *overrides)
    one_sentence(out, message, code=2)
    assert _all_files(tmp_path) == {}


def test_unset_environment_variable_in_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    out = _in_process("plan", "run_dir=${oc.env:NOPE_NOT_SET}")
    one_sentence(out, "NOPE_NOT_SET", "is not set", code=2)
    assert _all_files(tmp_path) == {}


# ----------------------------------------------- 11. a refused command changes nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_device_refused_before_anything_is_written(tmp_path, trained):
    run_dir = _copy(trained, tmp_path)
    before = _all_files(run_dir)
    out = _in_process("train", f"run_dir={run_dir}", *TINY, "train.device=cuda:7")
    one_sentence(out, "train.device=cuda:7", code=2)
    assert _all_files(run_dir) == before  # no .hydra/train record, no lock, no plan change
    fresh = tmp_path / "fresh"
    out = _in_process("train", f"run_dir={fresh}", *TINY, "train.device=cuda:7")
    one_sentence(out, "train.device=cuda:7", code=2)
    assert not fresh.exists()


def test_refusal_restores_the_previous_record(tmp_path, trained):
    run_dir = _copy(trained, tmp_path)
    record = run_dir / ".hydra" / "train" / "overrides.yaml"
    old = record.read_bytes()
    out = _in_process("train", f"run_dir={run_dir}", *TINY, "train.batch_size=0")
    one_sentence(out, "train.batch_size=0", code=2)
    assert record.read_bytes() == old


# --------------------------------------------------- 12. exit 6: the machine, not the input


def test_disk_full_exits_6(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    write_results(run_dir, synthetic_records())

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(EnvironmentFailure) as exc:
        rundir.atomic_write_json(run_dir / "x.json", [1])
    assert exc.value.exit_code == 6 and isinstance(exc.value, FlopsFitError)
    before = _all_files(run_dir)
    out = _in_process("analyze", f"run_dir={run_dir}", "analysis.bootstrap=0")
    one_sentence(out, "No space left on device", code=6)
    assert_kept(before, run_dir)


def test_an_unwrapped_permission_error_exits_6(tmp_path, monkeypatch):
    """An OSError of the machine that no stage wrapped still ends in one sentence, exit 6."""
    from flops_fit.stages import pipeline

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "x"))

    monkeypatch.setattr(pipeline, "run_analysis", denied)
    run_dir = tmp_path / "run"
    write_results(run_dir, synthetic_records())
    out = _in_process("analyze", f"run_dir={run_dir}")
    one_sentence(out, "Permission denied", code=6)
