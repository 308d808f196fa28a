"""examples/own_models: a depth-sized GPT and a heads-constrained width GPT on word-level
tokens, planned as a user runs them (from a copy of the folder)."""

import json
import shutil
import subprocess
import sys

from conftest import REPO, run_cli


def _copy(tmp_path):
    folder = tmp_path / "own_models"
    shutil.copytree(REPO / "examples" / "own_models", folder)
    out = subprocess.run([sys.executable, "make_words.py"], cwd=folder, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (folder / "data" / "train.bin").stat().st_size > 100_000
    return folder


def test_examples_own_models_plan_at_smoke_scale(tmp_path):
    folder = _copy(tmp_path)
    # the heads-constrained width model, with a size step that also hits widths it cannot build
    out = run_cli("plan", "--config-dir", "conf", "model=heads_gpt", "dataset=words",
                  f"run_dir={tmp_path / 'heads'}", "budgets=smoke", "estimate.probe=false",
                  "model.size_step=2", cwd=folder)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    said = [line for line in out.stdout.splitlines() if "cannot be built" in line]
    assert len(said) == 1 and "multiple of 4" in said[0], out.stdout
    plan = json.loads((tmp_path / "heads" / "plan.json").read_text())
    assert len(plan["runs"]) == 6 and all(r["size_value"] % 4 == 0 for r in plan["runs"])
    assert plan["model"]["kwargs"]["vocab_size"] == 512  # word-level ids
    # the depth-sized model: every depth builds, its one-layer model below the expected optimum
    out = run_cli("plan", "--config-dir", "conf", "model=depth_gpt", "dataset=words",
                  f"run_dir={tmp_path / 'depth'}", "budgets=smoke", "estimate.probe=false",
                  cwd=folder)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "cannot be built" not in out.stdout and "6N" not in out.stdout
    plan = json.loads((tmp_path / "depth" / "plan.json").read_text())
    assert {r["size_param"] for r in plan["runs"]} == {"n_layer"}
    assert all(1 <= r["size_value"] <= 24 for r in plan["runs"])  # the preset's size range
    assert min(r["size_value"] for r in plan["runs"]) == 1
