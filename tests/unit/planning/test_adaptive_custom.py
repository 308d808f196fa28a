"""``budgets.adaptive`` with ``model=custom`` and no size range (the planner's default grid)."""

from __future__ import annotations

import io
import math
from dataclasses import asdict

from rich.console import Console

from flops_fit.config import BudgetsConfig, EstimateConfig, ModelConfig, Settings
from flops_fit.planning.adaptive import extend_plan
from flops_fit.rundir.io import load_run_results, write_run_result
from flops_fit.stages.pipeline import plan_stage

#: model=custom: the GPT named by path, with no size keys (candidate_sizes() is None)
CUSTOM = ModelConfig(_target_="flops_fit.models.gpt.GPT", size_param="width", size_min=None,
                     size_max=None, size_step=None,
                     kwargs={"vocab_size": 256, "seq_len": 64, "head_dim": 16})


def _settings(tmp_path) -> Settings:
    s = Settings(run_dir=tmp_path, model=CUSTOM,
                 budgets=BudgetsConfig(values=[2e11, 6e11], sizes_per_budget=3,
                                       tokens_per_param=100.0, min_steps=10, adaptive=True),
                 estimate=EstimateConfig(probe=False))
    s.train.seq_len = 64
    return s


def _finish(run_dir, plan) -> None:
    """A completed result per run whose loss falls with N: every minimum at the largest size."""
    for r in plan.runs:
        if not (run_dir / "runs" / r.run_id / "result.json").exists():
            write_run_result(run_dir, {**asdict(r), "status": "completed",
                                       "final_loss": 5.0 - 0.1 * math.log(r.num_params)})


def test_custom_model_without_size_range_extends_on_the_default_grid(tmp_path):
    s = _settings(tmp_path)
    assert s.candidate_sizes() is None
    plan = plan_stage(s, Console(file=io.StringIO()))
    _finish(tmp_path, plan)
    ext = extend_plan(plan, load_run_results(tmp_path), plan.model_cls(), None, max_added=2,
                      min_steps=10)
    assert ext.added, ext.notes  # it used to be TypeError: 'NoneType' object is not iterable
    for a in ext.added:
        same = [r for r in plan.runs if r.compute_budget == a.compute_budget]
        assert a.size_value > max(r.size_value for r in same)
        assert a.size_value % 16 == 0  # widths the GPT rejects (not multiples of head_dim) skip
    # the same through the stage: `flops-fit plan ... model=custom budgets.adaptive=true
    # extend=true`
    s.extend = True
    out = Console(file=io.StringIO(), width=200)
    extended = plan_stage(s, out)
    assert sum(r.added for r in extended.runs) == len(ext.added)
    assert "adaptive: added" in out.file.getvalue()
