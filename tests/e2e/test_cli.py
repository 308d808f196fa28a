"""The command line as users meet it: dispatcher, plan, and bad input (one sentence, exit != 0)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_cli


def test_help_lists_every_command():
    out = run_cli("--help")
    assert out.returncode == 0
    for cmd in ("plan", "train", "analyze", "visualize", "find-optimal"):
        assert f"\n  {cmd}" in out.stdout


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "flops-fit")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "find-optimal" in out.stdout


def test_unknown_command():
    out = run_cli("fit-everything")
    assert out.returncode != 0
    assert "unknown command 'fit-everything'" in out.stderr
    assert "Traceback" not in out.stderr


def test_stage_help_is_hydras():
    out = run_cli("plan", "--help")
    assert out.returncode == 0
    assert "model: custom, gpt, mlp" in out.stdout  # Hydra lists the options sorted


def test_cfg_job_prints_the_config():
    out = run_cli("plan", "--cfg", "job", "budgets=smoke")
    assert out.returncode == 0 and "size_param: width" in out.stdout


def test_plan_from_root_writes_plan_and_hydra_record(tmp_path):
    run_dir = tmp_path / "p"
    out = run_cli("plan", f"run_dir={run_dir}", "budgets=smoke", cwd="/")
    assert out.returncode == 0, out.stderr
    plan = json.loads((run_dir / "plan.json").read_text())
    assert len(plan["runs"]) >= 3
    for r in plan["runs"]:
        for key in ("run_id", "compute_budget", "num_params", "num_tokens", "flops", "steps",
                    "size_value"):
            assert key in r
    assert (run_dir / ".hydra" / "plan" / "config.yaml").exists()
    assert "IsoFLOP sweep" in out.stdout


def test_relative_run_dir_is_relative_to_cwd(tmp_path):
    out = run_cli("plan", "run_dir=rel/dir", "budgets=smoke", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "rel" / "dir" / "plan.json").exists()


def test_plan_two_budgets_five_sizes_within_5_percent(tmp_path):
    out = run_cli("plan", f"run_dir={tmp_path}", "budgets.values=[1e12,1e13]",
                  "budgets.sizes_per_budget=5")
    assert out.returncode == 0, out.stderr
    runs = json.loads((tmp_path / "plan.json").read_text())["runs"]
    for c in (1e12, 1e13):
        mine = [r for r in runs if r["compute_budget"] == c]
        assert len({r["size_value"] for r in mine}) >= 5
        assert all(abs(r["flops"] - c) / c < 0.05 for r in mine)


def test_replan_with_results_and_other_config_refuses(tmp_path):
    assert run_cli("plan", f"run_dir={tmp_path}", "budgets=smoke").returncode == 0
    before = (tmp_path / "plan.json").read_text()
    fake = tmp_path / "runs" / "x"
    fake.mkdir(parents=True)
    (fake / "result.json").write_text("{}")
    same = run_cli("plan", f"run_dir={tmp_path}", "budgets=smoke")
    assert same.returncode == 0, same.stderr
    other = run_cli("plan", f"run_dir={tmp_path}", "budgets=smoke", "train.batch_size=8")
    assert other.returncode == 2
    assert "different plan" in other.stderr and "batch_size" in other.stderr
    assert (tmp_path / "plan.json").read_text() == before
    forced = run_cli("plan", f"run_dir={tmp_path}", "budgets=smoke", "train.batch_size=8",
                     "overwrite=true")
    assert forced.returncode == 0


BAD = [
    (["model=nosuch"], "Could not find 'model/nosuch'"),
    (["model._target_=nosuch.Model"], "Cannot import model _target_"),
    (["model._target_=flops_fit.models.gpt.Nope"], "has no 'Nope'"),
    (["model.size_param=depth"], "no constructor argument 'depth'"),
    (["budgets.values=[0]"], "finite positive"),
    (["budgets.values=[-1e12]"], "finite positive"),
    (["budgets.values=[nan]"], "finite positive"),
    (["budgets.values=[lots]"], "not a number"),
    (["trian.lr=1"], "Could not override 'trian.lr'"),
    (["train.lr_bse=1"], "train has no key 'lr_bse'; did you mean 'lr_base'?"),
    (["dataset=text_files"], "dataset.path has no value; set it on the command line"),
]


@pytest.mark.parametrize("overrides,message", BAD)
def test_bad_input_is_one_clear_message(overrides, message, tmp_path):
    out = run_cli("plan", f"run_dir={tmp_path}", *overrides)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert "Traceback" not in out.stderr + out.stdout


def test_run_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("keep me")
    out = run_cli("plan", f"run_dir={f}")
    assert out.returncode == 2 and "is a file" in out.stderr
    assert "Traceback" not in out.stderr
    assert f.read_text() == "keep me"


def test_corrupt_plan_is_reported(tmp_path):
    (tmp_path / "plan.json").write_text('{"runs": [')
    out = run_cli("train", f"run_dir={tmp_path}")
    assert out.returncode == 2
    assert "not valid JSON" in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "plan.json").read_text() == '{"runs": ['


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    cmd = [line for line in ci.splitlines() if line.startswith("TEST_COMMAND=")][0]
    assert cmd.split("=", 1)[1].strip("'\"") in readme
