"""Adaptive bracketing, the off-centre warning, Approach 1 under wsd and the plan's estimates."""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
from rich.console import Console

from flops_fit import fitting
from flops_fit.analysis.approach1 import ENDPOINTS_NOTE, approach1_section, off_centre_warnings
from flops_fit.config import AnalysisConfig, BudgetsConfig, EstimateConfig, Settings
from flops_fit.models.gpt import GPT
from flops_fit.planning.adaptive import extend_plan
from flops_fit.planning.plans import load_plan
from flops_fit.rundir.io import write_run_result
from flops_fit.stages.pipeline import plan_stage, train_command
from flops_fit.training import estimate

SMOKE = BudgetsConfig(values=[2e11, 6e11], sizes_per_budget=3, span=4.0, tokens_per_param=100.0,
                      min_steps=10)


def _settings(tmp_path, **budgets) -> Settings:
    s = Settings(run_dir=tmp_path, budgets=BudgetsConfig(**{**asdict(SMOKE), **budgets}),
                 estimate=EstimateConfig(probe=False))
    s.train.threads = 1
    return s


def _console() -> Console:
    return Console(file=io.StringIO(), width=200)


def _finish(run_dir, plan, loss_of) -> None:
    """Write a completed result.json for every run without one (loss from ``loss_of(spec)``)."""
    for r in plan.runs:
        if (run_dir / "runs" / r.run_id / "result.json").exists():
            continue
        write_run_result(run_dir, {**asdict(r), "status": "completed",
                                   "final_loss": loss_of(r)})


def _falling(r) -> float:  # the larger the model, the lower the loss: minimum at the top edge
    return 5.0 - 0.1 * math.log(r.num_params)


def test_edge_minimum_adds_the_next_size_marked_in_plan_json(tmp_path):
    s = _settings(tmp_path, max_added=1)
    plan = plan_stage(s, _console())
    _finish(tmp_path, plan, _falling)
    s.extend = True
    out = _console()
    plan = plan_stage(s, out)  # `flops-fit plan run_dir=X extend=true`
    added = [r for r in plan.runs if r.added]
    assert len(added) == 2  # one per budget
    on_disk = json.loads((tmp_path / "plan.json").read_text())["runs"]
    assert sum(r["added"] for r in on_disk) == 2
    for a in added:
        planned = [r for r in plan.planned_runs if r.compute_budget == a.compute_budget]
        assert a.size_value > max(r.size_value for r in planned)
        assert "largest size" in a.added_reason and a.steps >= s.budgets.min_steps
    assert "adaptive: added 2 run(s)" in out.file.getvalue()
    # the extended plan is still the same experiment: plan again keeps it
    s.extend = False
    assert [r.run_id for r in plan_stage(s, _console()).runs] == [r.run_id for r in plan.runs]
    # the minimum is still at the edge, but max_added=1 stops it
    _finish(tmp_path, plan, _falling)
    s.extend = True
    out = _console()
    assert len(plan_stage(s, out).runs) == len(plan.runs)
    assert "budgets.max_added=1" in out.file.getvalue()


def test_extension_stops_where_the_size_range_ends(tmp_path):
    s = _settings(tmp_path)
    plan = plan_stage(s, _console())
    records = {r.run_id: {"status": "completed", "final_loss": 5.0 + 0.1 * math.log(r.num_params)}
               for r in plan.runs}  # minimum at the smallest size, which is size_min
    ext = extend_plan(plan, records, GPT, s.candidate_sizes(), max_added=2, min_steps=10)
    assert not ext.added and all("size range ends" in n for n in ext.notes)
    waiting = extend_plan(plan, {}, GPT, s.candidate_sizes(), max_added=2, min_steps=10)
    assert not waiting.added and waiting.waiting == 2  # nothing final yet: wait


def test_interior_minimum_adds_nothing(tmp_path):
    s = _settings(tmp_path)
    plan = plan_stage(s, _console())
    ln = {b: np.mean([math.log(r.num_params) for r in plan.runs if r.compute_budget == b])
          for b in plan.compute_budgets}
    records = {r.run_id: {"status": "completed",
                          "final_loss": 2.0 + (math.log(r.num_params) - ln[r.compute_budget]) ** 2}
               for r in plan.runs}
    assert not extend_plan(plan, records, GPT, s.candidate_sizes(), max_added=2,
                           min_steps=10).added


def test_train_extends_and_trains_the_added_runs_in_one_process(tmp_path):
    s = _settings(tmp_path, values=[2e11], adaptive=True, max_added=1)
    s.train.eval_tokens = 4096
    s.train.periodic_eval_tokens = 2048
    plan = plan_stage(s, _console())
    # make the edge certain: the planned runs are "done" with a falling loss
    _finish(tmp_path, plan, _falling)
    records = train_command(s, _console())  # extends first (finished results), trains it
    plan = load_plan(tmp_path)
    added = [r for r in plan.runs if r.added]
    assert len(added) == 1
    done = {r["run_id"]: r for r in records}
    assert done[added[0].run_id]["status"] == "completed"


def _runs(budget, n, loss, ids=None):
    budget, n, loss = (np.asarray(v, dtype=float) for v in (budget, n, loss))
    d = 1e12 / n
    return SimpleNamespace(budget=budget, n=n, d=d, c=6 * n * d, loss=loss,
                           run_ids=ids or [f"r{i}" for i in range(n.size)])


def test_off_centre_budget_is_warned_about():
    n = np.exp(np.linspace(10, 12, 5))
    centred = _runs([1e12] * 5, n, 2 + (np.log(n) - 11.0) ** 2)
    assert off_centre_warnings(centred) == []
    skewed = _runs([1e12] * 5, n, 2 + (np.log(n) - 10.3) ** 2)  # minimum at 15% of the range
    (msg,) = off_centre_warnings(skewed)
    assert "off-centre" in msg and "15%" in msg


def test_approach1_under_wsd_uses_endpoints_and_resamples_runs():
    budgets = np.repeat([1e12, 4e12, 16e12], 4)
    n = np.tile([1e4, 3e4, 1e5, 3e5], 3)
    best = {1e12: 3e4, 4e12: 1e5, 16e12: 3e5}
    loss = np.array([2.0 + abs(math.log(x / best[b])) for b, x in zip(budgets, n, strict=True)])
    runs = _runs(budgets, n, loss)
    runs.c = budgets * (1 + 0.01 * np.arange(n.size) / n.size)
    records = [{"run_id": rid, "schedule": "wsd"} for rid in runs.run_ids[1:]]
    records.append({"run_id": "r0", "lr_schedule": "linear warm-up 100 steps, constant peak, "
                    "1-sqrt cooldown over the last 50 steps to 0.1 x peak"})  # no schedule key
    a1 = approach1_section(runs, AnalysisConfig(bootstrap=100), None, records, {"wsd"})
    assert a1.available and a1.loss_field == "final_loss" and a1.points == ENDPOINTS_NOTE
    assert a1.n_levels == 3  # one point per budget: the best endpoint
    assert abs(a1.n_opt.exponent - math.log(10) / math.log(16)) < 0.05
    assert "bootstrap over runs" in a1.n_opt.ci_note
    lo, hi = a1.n_opt.exponent_ci
    assert lo <= a1.n_opt.exponent <= hi
    # the same runs under cosine need their curves (none here): not the endpoints
    cosine = approach1_section(runs, AnalysisConfig(), None,
                               [{"run_id": r, "schedule": "cosine"} for r in runs.run_ids],
                               {"wsd"})
    assert not cosine.available and "no training curves" in cosine.message
    # which schedules take endpoints is the caller's (the registry's), never a name here
    assert not approach1_section(runs, AnalysisConfig(bootstrap=100), None, records).available


def test_endpoint_interval_is_none_without_enough_resamples():
    fit, interval = fitting.fit_endpoint_envelope([1, 1, 2, 2], [1, 1, 2, 2], [1, 2, 1, 2],
                                                  [1, 2, 2, 1], n_resamples=0)
    assert fit.law is not None and interval is None


def test_plan_prints_compute_and_time_and_caches_the_probe(tmp_path, monkeypatch):
    s = _settings(tmp_path, values=[2e11])
    s.estimate = EstimateConfig(probe=True, probe_steps=1)
    out = _console()
    plan_stage(s, out)
    text = out.file.getvalue()
    assert "Compute as separate runs: " in text and "Compute with trunk reuse" in text
    assert "Estimated time on cpu: " in text
    cache = json.loads((tmp_path / "probe.json").read_text())
    assert len(cache) == 3 and all(v["step_s"] > 0 for v in cache.values())

    def no_probe(*args, **kwargs):
        raise AssertionError("probed again")

    monkeypatch.setattr(estimate, "probe_size", no_probe)
    out = _console()
    plan_stage(s, out)
    assert "Probed 0 of 3 sizes" in out.file.getvalue()
    assert "Estimated time on cpu: " in out.file.getvalue()
