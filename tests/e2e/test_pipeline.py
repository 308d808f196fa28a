"""One pipeline, one schema, one source of defaults (issue 11).

The command line and ``find_optimal`` build the same Settings and plan the same runs; the
composed default config equals the config dataclasses; ``reconcile_plan`` is the one rule for a
run directory whose plan differs from the request; a run directory written by v0.1.0 still
loads and resumes. (The import rules are tests/unit/test_architecture.py.)
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from rich.console import Console

import flops_fit
from conftest import FIXTURE_V0_1_0, run_cli
from flops_fit.cli import settings_from_cfg
from flops_fit.config import (
    BudgetsConfig,
    DatasetConfig,
    Settings,
    TrainConfig,
    dataset_class,
)
from flops_fit.errors import FlopsFitError
from flops_fit.models.gpt import GPT
from flops_fit.stages.pipeline import make_plan, plan_or_reconcile

SRC = Path(flops_fit.__file__).resolve().parent
FIXTURE = FIXTURE_V0_1_0
B = [1e12, 3e12]


def _compose(overrides=()):
    with initialize_config_module(config_module="flops_fit.conf", version_base="1.3"):
        return compose(config_name="plan", overrides=list(overrides))


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


# ------------------------------------------------------------------ one source of defaults


def test_composed_default_config_equals_the_dataclasses():
    s = settings_from_cfg(_compose())
    assert s == Settings()  # every group, analysis/predict/validate included


@pytest.mark.parametrize("group", ["model", "dataset", "budgets", "train", "analysis", "tune"])
def test_every_preset_spells_out_every_key(group):
    for preset in sorted((SRC / "conf" / group).glob("*.yaml")):
        cfg = _compose([f"{group}={preset.stem}"])  # keys only: ??? values may stay
        cls = dataset_class(cfg.dataset.name) if group == "dataset" else Settings.GROUPS[group]
        keys = {f.name for f in dataclasses.fields(cls)}
        assert set(cfg[group]) == keys, preset.name


def test_api_keyword_defaults_are_the_budgets_defaults():
    plan = flops_fit.find_optimal(GPT, "width")
    assert [r.run_id for r in plan.runs] == [r.run_id for r in make_plan(Settings()).runs]
    assert plan.compute_budgets == BudgetsConfig().values


def test_api_and_cli_plan_the_same_run_ids(tmp_path):
    plan = flops_fit.find_optimal(GPT, "width", compute_budgets=B, train=False)
    out = run_cli("plan", f"run_dir={tmp_path}", "budgets.values=[1e12,3e12]")
    assert out.returncode == 0, out.stderr
    cli_ids = [r["run_id"] for r in json.loads((tmp_path / "plan.json").read_text())["runs"]]
    assert [r.run_id for r in plan.runs] == cli_ids


# --------------------------------------------------------------------------- reconcile_plan


def _settings(run_dir: Path, **train) -> Settings:
    return Settings(run_dir=run_dir, budgets=BudgetsConfig(values=list(B), min_steps=10),
                    train=TrainConfig(**train))


def _fake_result(run_dir: Path) -> None:
    plan = json.loads((run_dir / "plan.json").read_text())
    rdir = run_dir / "runs" / plan["runs"][0]["run_id"]
    rdir.mkdir(parents=True)
    (rdir / "result.json").write_text("{}")


def test_other_budgets_without_results_replan(tmp_path):
    plan_or_reconcile(_settings(tmp_path), _quiet())
    s = _settings(tmp_path)
    s.budgets.values = [2e12, 6e12]
    plan = plan_or_reconcile(s, _quiet())
    on_disk = json.loads((tmp_path / "plan.json").read_text())
    assert on_disk["settings"]["compute_budgets"] == [2e12, 6e12] == plan.compute_budgets


@pytest.mark.parametrize("change,named", [
    ({"budgets": [2e12, 6e12]}, "compute_budgets"),
    ({"train": {"lr_base": 0.02}}, "train.lr_base"),
    ({"train": {"seed": 3}}, "train.seed"),
    ({"dataset": {"max_bytes": 1_000_000}}, "dataset.max_bytes"),
])
def test_other_experiment_with_results_is_refused_naming_it(tmp_path, change, named):
    plan_or_reconcile(_settings(tmp_path), _quiet())
    _fake_result(tmp_path)
    before = (tmp_path / "plan.json").read_bytes()
    s = _settings(tmp_path, **change.get("train", {}))
    if "budgets" in change:
        s.budgets.values = change["budgets"]
    if "dataset" in change:
        s.dataset = DatasetConfig(**change["dataset"])
    with pytest.raises(FlopsFitError, match=named) as err:
        plan_or_reconcile(s, _quiet())
    assert "overwrite=true" in str(err.value)
    assert (tmp_path / "plan.json").read_bytes() == before
    s.overwrite = True
    plan_or_reconcile(s, _quiet())
    assert (tmp_path / "plan.json").read_bytes() != before


def test_train_with_other_budgets_and_results_refuses_from_the_cli(tmp_path):
    assert run_cli("plan", f"run_dir={tmp_path}", "budgets=smoke").returncode == 0
    _fake_result(tmp_path)
    before = (tmp_path / "plan.json").read_bytes()
    out = run_cli("train", f"run_dir={tmp_path}", "budgets.values=[3e11,9e11]")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "different plan" in out.stderr and "compute_budgets" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert (tmp_path / "plan.json").read_bytes() == before


def test_imported_results_are_never_overwritten(tmp_path):
    records = [{"run_id": f"paper{i}", "status": "completed", "compute_budget": 1e18,
                "num_params": 1e6 * (i + 1), "num_tokens": 1e9, "flops": 1e18,
                "final_loss": 3.0} for i in range(3)]
    (tmp_path / "results.json").write_text(json.dumps(records))
    before = (tmp_path / "results.json").read_bytes()
    with pytest.raises(FlopsFitError, match="overwrite=true"):
        plan_or_reconcile(_settings(tmp_path), _quiet())
    assert (tmp_path / "results.json").read_bytes() == before
    s = _settings(tmp_path)
    s.overwrite = True
    plan_or_reconcile(s, _quiet())
    copies = list(tmp_path.glob("results.*.json"))
    assert len(copies) == 1 and copies[0].read_bytes() == before


# ------------------------------------------------------------------------- the v0.1.0 run dir


def test_a_run_directory_of_v0_1_0_loads_and_resumes(tmp_path):
    run_dir = tmp_path / "old"
    shutil.copytree(FIXTURE, run_dir)
    stored = json.loads((FIXTURE / "analysis" / "scaling_laws.json").read_text())
    result = flops_fit.Result.load(run_dir)
    assert result.analysis.parametric["E"] == stored["parametric"]["E"]
    assert len(result.runs) == 6
    out = run_cli("train", f"run_dir={run_dir}", "budgets=smoke")
    assert out.returncode == 0, out.stderr
    assert "Nothing to train" in out.stdout
    assert (run_dir / "plan.json").read_bytes() == (FIXTURE / "plan.json").read_bytes()
