"""The run directory is untrusted data; imported results are never lost; every bad input ends
in one sentence (issue 15). Each numbered case of the issue has a test here or in
tests/test_pipeline.py (7: other experiments; 2: imported results)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import flops_fit
from conftest import FIXTURE_V0_1_0, REPO, run_cli
from flops_fit.cli import main
from flops_fit.errors import FlopsFitError, UnusableFitError
from flops_fit.planning.plans import load_plan
from helpers.run import (
    TESTS,
    TINY,
    assert_kept,
    one_sentence,
    snapshot,
    synthetic_records,
    write_results,
)

FIXTURE = FIXTURE_V0_1_0


def _in_process(*args: str) -> SimpleNamespace:
    """``flops-fit ARGS`` called in this process (the same ``cli.main`` the command runs,
    without the 3-5 s of interpreter start-up); an uncaught exception fails the test."""
    out, err, argv = io.StringIO(), io.StringIO(), sys.argv[:]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def _planned(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    out = _in_process("plan", f"run_dir={run_dir}", *TINY)
    assert out.returncode == 0, out.stderr
    return run_dir


def _edit_plan(run_dir: Path, edit) -> None:
    plan = json.loads((run_dir / "plan.json").read_text())
    edit(plan)
    (run_dir / "plan.json").write_text(json.dumps(plan))


# ---------------------------------------------------------------- 1. plan.json runs nothing


def test_plan_json_cannot_run_a_command(tmp_path):
    run_dir = _planned(tmp_path)
    pwned = tmp_path / "pwned"

    def evil(plan):
        plan["model"]["_target_"] = "os.system"
        for r in plan["runs"]:
            r["model_kwargs"] = {"command": f"touch {pwned}"}
    _edit_plan(run_dir, evil)
    with pytest.raises(FlopsFitError, match="not a torch.nn.Module class"):
        load_plan(run_dir).model_cls()
    fake = run_dir / "runs" / json.loads((run_dir / "plan.json").read_text())["runs"][0]["run_id"]
    fake.mkdir(parents=True)
    (fake / "result.json").write_text("{}")  # a sweep with results: its plan is kept
    for command in ("train", "validate", "find-optimal"):
        out = run_cli(command, f"run_dir={run_dir}", *TINY)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "Traceback" not in out.stderr
        assert not pwned.exists()


# ---------------------------------------------------------------- 3. run ids stay inside


@pytest.mark.parametrize("bad_id", ["../../victim", "/tmp/flops_fit_victim", ".hidden", "a/b"])
def test_run_id_cannot_leave_the_run_directory(tmp_path, bad_id):
    run_dir = _planned(tmp_path)
    _edit_plan(run_dir, lambda p: p["runs"][0].update(run_id=bad_id))
    before = snapshot(tmp_path)
    out = _in_process("train", f"run_dir={run_dir}", *TINY)
    one_sentence(out, "not a safe folder name", code=2)
    assert_kept(before, tmp_path)
    assert not (tmp_path / "victim").exists() and not Path("/tmp/flops_fit_victim").exists()
    assert not (run_dir / "runs").exists()


# ---------------------------------------------------------------- 4. brackets print as given


def test_run_dir_with_brackets_works(tmp_path):
    run_dir = tmp_path / "q[/z]d"
    out = run_cli("plan", f"run_dir='{run_dir}'", *TINY)  # Hydra's quoting of '[' and ']'

    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert (run_dir / "plan.json").exists()
    assert "q[/z]d" in out.stdout.replace("\n", "")


def test_a_file_with_brackets_is_named_in_full(tmp_path):
    f = tmp_path / "file[red]"
    f.write_text("keep")
    out = run_cli("plan", f"run_dir={f}")
    one_sentence(out, "file[red] is a file", code=2)
    assert f.read_text() == "keep"


# ------------------------------------------- 5. every run failed: exit 4, the cause in full


def test_every_run_failing_exits_4_with_the_cause_in_full(tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli("train", f"run_dir={run_dir}", *TINY, "model._target_=helpers.models.BracketGPT",
                  env={"PYTHONPATH": str(TESTS)})
    line = one_sentence(out, "No run completed", code=4)
    assert "[red]shape[/red] [4, 8] unexpected pos [/z]" in line
    records = json.loads((run_dir / "results.json").read_text())
    assert records and all(r["status"] == "failed" for r in records)


# ---------------------------------------------------- 6 and 9: one sentence, nothing written

CATALOGUE = [
    ("budgets.values=1e12", "budgets.values=1000000000000.0 is not a list"),
    ("train.batch_size=0", "train.batch_size=0 must be a whole number of samples >= 1"),
    ("train.batch_size=-4", "train.batch_size=-4 must be a whole number of samples >= 1"),
    ("train.batch_size=x", "train.batch_size='x' is not a whole number"),
    ("train.seq_len=0", "train.seq_len=0 must be"),
    ("budgets.tokens_per_param=0", "budgets.tokens_per_param=0.0 must be a positive"),
    ("predict.budget=abc", "predict.budget='abc' is not a number"),
    ("predict.budget=-1", "predict.budget=-1.0 must be a positive"),
    ("validate.budget=0", "validate.budget=0.0 must be a positive"),
    ("validate.neighbours=maybe", "validate.neighbours='maybe' is not true or false"),
    ("budgets.values=[1e30]", "above 1e+27 FLOPs"),
    ("run_dir=", "run_dir is empty"),
    ("budgets.sizes_per_budget=2", "must be at least 3"),
    ("budgets.span=1", "budgets.span=1.0 must be greater than 1"),
    ("budgets.min_steps=0", "budgets.min_steps=0 must be at least 1"),
    ("budgets.exponent=-0.5", "budgets.exponent=-0.5 must be a positive"),
    ("train.beta2=1.5", "train.beta2=1.5 must lie in [0, 1)"),
    ("train.grad_clip=-1", "train.grad_clip=-1.0 must be a number >= 0"),
    ("train.log_every=0", "train.log_every=0 must be at least 1"),
    ("train.checkpoint_every_s=-1", "train.checkpoint_every_s=-1.0 must be a number of sec"),
    ("train.device=gpu", "train.device='gpu' is unknown"),
    ("train.threads=-1", "train.threads=-1 must be a whole number >= 0"),
    ("train.seed=-1", "train.seed=-1 must be a whole number >= 0"),
    ("train.lr_base=0", "train.lr_base=0.0 must be a positive"),
    ("train.eval_tokens=0", "train.eval_tokens=0 must be positive"),
    ("train.periodic_eval_tokens=0", "train.periodic_eval_tokens=0 must be positive"),
    ("train.warmup_fraction=1", "warmup_fraction in [0, 1)"),
    ("train.compile=maybe", "train.compile='maybe' is unknown; use auto, true or false"),
    ("train.lr_exponent=abc", "train.lr_exponent='abc' is not a number"),
    ("dataset.val_fraction=1.5", "dataset.val_fraction=1.5 must lie strictly between"),
    ("dataset.max_bytes=0", "dataset.max_bytes=0 must be at least 1"),
    ("dataset.vocab_size=0", "dataset.vocab_size=0 must be at least 1"),
    ("model.size_step=0", "model size range 16..1024 step 0 is empty"),
    ("model.size_max=16", "holds one value (width=16)"),
    ("analysis.bootstrap=-1", "analysis.bootstrap=-1 is not valid"),
    ("overwrite=maybe", "overwrite='maybe' is not true or false"),
]


@pytest.mark.parametrize("override,message", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue_one_sentence_exit_2_nothing_written(tmp_path, monkeypatch, override,
                                                       message):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    args = [override] if override.startswith("run_dir=") else [f"run_dir={run_dir}", override]
    one_sentence(_in_process("train", *args), message, code=2)
    assert snapshot(tmp_path) == {}  # nothing but Hydra's own .hydra record


def test_catalogue_from_a_real_process_too(tmp_path):
    """The same path as a user's shell (one case: the in-process calls above are that path)."""
    out = run_cli("train", f"run_dir={tmp_path / 'run'}", "train.batch_size=0", cwd=tmp_path)
    one_sentence(out, "train.batch_size=0 must be a whole number of samples >= 1", code=2)
    assert snapshot(tmp_path) == {}


PLAN_EDITS = [
    ("steps 0", lambda p: p["runs"][0].update(steps=0), "steps=0, out of range"),
    ("steps -5", lambda p: p["runs"][0].update(steps=-5), "steps=-5, out of range"),
    ("steps abc", lambda p: p["runs"][0].update(steps="abc"), "steps='abc', which is not"),
    ("no _target_", lambda p: p["model"].pop("_target_"), "no valid model"),
    ("batch x", lambda p: p["settings"].update(batch_size="x"), "settings.batch_size='x'"),
    ("format v9", lambda p: p.update(format="flops-fit plan v9"), "which this flops-fit does not"),
    ("duplicate", lambda p: p["runs"].append(dict(p["runs"][0])), "is listed twice"),
]


@pytest.mark.parametrize("name,edit,message", PLAN_EDITS, ids=[e[0] for e in PLAN_EDITS])
def test_bad_plan_json_is_one_sentence(tmp_path, name, edit, message):
    run_dir = _planned(tmp_path)
    _edit_plan(run_dir, edit)
    before = snapshot(run_dir)
    out = _in_process("train", f"run_dir={run_dir}", *TINY)
    one_sentence(out, message, code=2)
    assert_kept(before, run_dir)
    assert not (run_dir / "runs").exists()


def test_runs_that_is_a_file(tmp_path):
    run_dir = _planned(tmp_path)
    (run_dir / "runs").write_text("keep")
    out = run_cli("train", f"run_dir={run_dir}", *TINY)
    one_sentence(out, "is a file, but flops-fit keeps its runs in that folder", code=2)
    assert (run_dir / "runs").read_text() == "keep"


def test_precheck_creates_nothing_before_hydra_accepts(tmp_path):
    out = run_cli("plan", f"run_dir={tmp_path / 'new' / 'dir'}", "budgets=smok")
    assert out.returncode == 1
    assert not (tmp_path / "new").exists()


# -------------------------------------------------------------- 8. absurd answers, lists


def test_an_unusable_fit_prints_no_numbers(tmp_path):
    """A fit whose optimum has less than one parameter (as a 10x LR gave): no numbers, exit 5."""
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    laws = json.loads((run_dir / "analysis" / "scaling_laws.json").read_text())
    laws["parametric"]["A"] = 1e-60  # N_opt = G (C/6)^a with G = (alpha A / beta B)^(1/(a+b))
    laws["parametric"]["bootstrap"] = None
    (run_dir / "analysis" / "scaling_laws.json").write_text(json.dumps(laws))
    with pytest.raises(UnusableFitError, match="No usable scaling law"):
        flops_fit.Result.load(run_dir).predict(1e15)
    out = run_cli("visualize", f"run_dir={run_dir}")
    line = one_sentence(out, "No usable scaling law", "train.lr_base", code=5)
    assert not any(ch.isdigit() for ch in line.split("No usable", 1)[1].split("plots/")[0])


def test_predict_takes_a_list(tmp_path):
    run_dir = tmp_path / "run"
    write_results(run_dir, synthetic_records())
    assert run_cli("analyze", f"run_dir={run_dir}", "analysis.bootstrap=0").returncode == 0
    result = flops_fit.Result.load(run_dir)
    preds = result.predict([1e20, 1e21])
    assert [p["target_compute"] for p in preds] == [1e20, 1e21]
    assert preds[1]["optimal_params"] > preds[0]["optimal_params"]
    with pytest.raises(FlopsFitError, match="not a list of FLOP budgets"):
        result.predict(["many"])
    # one approach on request, in the user's terms too; the default is the analysis's own
    assert preds[0]["method"] == result.analysis.method == "joint"
    par = result.predict([1e20, 1e21], method="parametric")
    assert [p["method"] for p in par] == ["parametric", "parametric"]
    assert par[0]["optimal_params"] != preds[0]["optimal_params"] and "model" in par[0]
    with pytest.raises(FlopsFitError, match="predict_with=.magic. is not valid"):
        result.predict(1e20, method="magic")


# ---------------------------------------------------------------- visualize after a failed fit


def test_visualize_says_when_the_fit_is_older_than_the_results(tmp_path):
    run_dir = tmp_path / "run"
    recs = synthetic_records()
    write_results(run_dir, recs)
    assert run_cli("analyze", f"run_dir={run_dir}", "analysis.bootstrap=0").returncode == 0
    write_results(run_dir, recs[:-1])  # new results, not yet fitted
    (run_dir / "plots").mkdir(exist_ok=True)
    stale = run_dir / "plots" / ".isoflops.png.123.tmp"
    stale.write_text("left by a killed visualize")
    out = run_cli("visualize", f"run_dir={run_dir}")
    assert out.returncode == 0, out.stderr
    assert "fitted to an older results.json" in out.stderr
    assert not stale.exists()


# ---------------------------------------------------------------- SIGTERM


@pytest.mark.parametrize("extra, checkpoint", [
    ([], "runs/*/checkpoint.pt"),
    # train.workers=2: SIGTERM to the launching process alone is passed on once; each worker
    # checkpoints its run and exits
    (["train.workers=2"], "trunks/*/*.pt"),
], ids=["one-process", "two-workers"])
def test_sigterm_stops_like_ctrl_c_and_resumes(tmp_path, extra, checkpoint):
    """SIGTERM mid-sweep: exit 143 in one sentence, no traceback; the next train finishes
    every run."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "flops_fit", "train", f"run_dir={run_dir}",
                             *TINY, "train.checkpoint_every_s=0", *extra], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(run_dir.glob(checkpoint)):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, out + err
    assert "run the same command again to resume" in err and "Traceback" not in out + err
    again = run_cli("train", f"run_dir={run_dir}", *TINY, *extra)
    assert again.returncode == 0, again.stderr
    records = json.loads((run_dir / "results.json").read_text())
    assert len(records) == 4 and all(r["status"] == "completed" for r in records)
