"""Sequential planning: rounds, the optimum trend, re-centring the budgets not started, and the
plan.json it leaves (reconciled against a fresh request, started budgets kept)."""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict

import pytest
from rich.console import Console

from flops_fit.config import BudgetsConfig, EstimateConfig, Settings
from flops_fit.errors import FlopsFitError
from flops_fit.planning import sequential
from flops_fit.planning.planner import SweepPlan
from flops_fit.planning.plans import load_plan, recentre_runs, reconcile_plan
from flops_fit.rundir.io import write_run_result
from flops_fit.stages import rounds
from flops_fit.stages.pipeline import make_plan, plan_stage

BUDGETS = BudgetsConfig(values=[1e12, 2e12, 4e12, 8e12], sizes_per_budget=4, span=4.0,
                        tokens_per_param=100.0, min_steps=10)


def _settings(tmp_path, **budgets) -> Settings:
    s = Settings(run_dir=tmp_path, budgets=BudgetsConfig(**{**asdict(BUDGETS), **budgets}),
                 estimate=EstimateConfig(probe=False))
    s.train.threads = 1
    return s


def recentre_stage(s: Settings, plan: SweepPlan, out: Console, budgets: list[float]):
    return rounds.recentre_stage(s, plan, out, budgets, lambda centres: make_plan(s, centres))


def _console() -> Console:
    return Console(file=io.StringIO(), width=200)


def _law(factor: float):
    """A loss whose optimum is ``factor`` x the prior's N* (D/N = 100) at every budget."""
    def loss(r) -> float:
        n_star = factor * math.sqrt(r.compute_budget / 600.0)
        return 2.0 + 0.1 * math.log(r.num_params / n_star) ** 2 + 1.0 / r.compute_budget**0.05
    return loss


def _finish(run_dir, plan, loss, budgets) -> None:
    for r in plan.runs:
        if r.compute_budget in budgets:
            write_run_result(run_dir, {**asdict(r), "status": "completed",
                                       "final_loss": loss(r)})


def test_rounds_take_the_smallest_budget_alone_then_up_to_four_times():
    cpu = BudgetsConfig().checked_values()
    assert sequential.rounds(cpu) == [cpu[:1], cpu[1:5], cpu[5:]]
    assert sequential.rounds([1e12]) == [[1e12]]
    assert sequential.rounds([1e11, 1e13]) == [[1e11], [1e13]]  # a gap wider than 4x


def test_trend_has_the_level_of_one_budget_and_the_prior_slope():
    t = sequential.fit_trend({1e12: 5e4}, prior_exponent=0.5)
    assert t.n_star(1e12) == pytest.approx(5e4)
    assert t.n_star(4e12) == pytest.approx(1e5)
    # many budgets on a steeper line pull the slope towards the data, short of it
    pts = {c: 1e4 * (c / 1e11) ** 0.8 for c in (1e11, 1e12, 1e13, 1e14)}
    a = sequential.fit_trend(pts, 0.5).exponent
    assert 0.7 < a < 0.8


def test_a_right_prior_is_kept_and_a_wrong_one_recentred(tmp_path):
    s = _settings(tmp_path)
    said = _console()
    plan = plan_stage(s, said)  # `flops-fit plan` says how train will go
    assert "sequential: 4 budgets in 3 rounds (1e+12; 2e+12, 4e+12; 8e+12)" in said.file.getvalue()
    _finish(tmp_path, plan, _law(1.1), [1e12])
    out = _console()
    assert recentre_stage(s, plan, out, [2e12, 4e12, 8e12]) is plan  # within 1.41x: kept
    assert "kept as planned" in out.file.getvalue()

    other = tmp_path / "other"
    s = _settings(other)
    plan = plan_stage(s, _console())
    before = {c: [r.run_id for r in plan.runs if r.compute_budget == c]
              for c in plan.compute_budgets}
    _finish(other, plan, _law(0.4), [1e12])  # the optimum is 2.5x below the prior
    out = _console()
    plan = recentre_stage(s, plan, out, [2e12, 4e12, 8e12])
    text = out.file.getvalue()
    assert "re-centring the sizes of 3 budget(s)" in text and "prior was" in text
    stored = json.loads((other / "plan.json").read_text())
    assert [e["budget"] for e in stored["recentred"]] == [2e12, 4e12, 8e12]
    assert [r.run_id for r in plan.runs if r.compute_budget == 1e12] == before[1e12]
    for c in (2e12, 4e12, 8e12):
        sizes = [r.num_params for r in plan.runs if r.compute_budget == c]
        prior = [r.num_params for r in load_plan_runs(before, c, s)]
        assert math.exp(sum(map(math.log, sizes)) / 3) < math.exp(
            sum(map(math.log, prior)) / 3)  # smaller models than the prior planned
        centre = plan.centre(c)
        assert centre == pytest.approx(0.4 * math.sqrt(c / 600.0), rel=0.35)

    # the next train/plan call reconciles the re-centred plan with a fresh (prior) request
    again = reconcile_plan(other, make_plan(s), console=_console())
    assert [r.run_id for r in again.runs] == [r.run_id for r in plan.runs]
    # and a second look with the same results changes nothing (idempotent)
    out = _console()
    assert recentre_stage(s, load_plan(other), out, [2e12, 4e12, 8e12]).runs == again.runs
    assert "kept as planned" in out.file.getvalue()


def load_plan_runs(before: dict, budget: float, s: Settings):
    ids = set(before[budget])
    return [r for r in make_plan(s).runs if r.run_id in ids]


def test_an_edge_minimum_moves_the_centres_towards_it_never_away(tmp_path):
    s = _settings(tmp_path)
    plan = plan_stage(s, _console())
    before = {c: sequential.current_centre(plan, c) for c in plan.compute_budgets}
    # the larger the model, the lower the loss: the minimum lies beyond the largest size
    _finish(tmp_path, plan, lambda r: 5.0 - 0.1 * math.log(r.num_params), [1e12])
    out = _console()
    plan = recentre_stage(s, plan, out, [2e12, 4e12, 8e12])
    assert "edge sizes: the minimum lies beyond" in out.file.getvalue()
    for c in (2e12, 4e12, 8e12):
        assert sequential.current_centre(plan, c) >= before[c]


def test_a_started_budget_is_never_replaced(tmp_path):
    s = _settings(tmp_path)
    plan = plan_stage(s, _console())
    r = next(r for r in plan.runs if r.compute_budget == 2e12)
    (tmp_path / "runs" / r.run_id).mkdir(parents=True)  # a train call began this budget
    new = make_plan(s, centres={2e12: 1e3, 4e12: 1e3})
    after = recentre_runs(tmp_path, {c: [x for x in new.runs if x.compute_budget == c]
                                     for c in (2e12, 4e12)},
                          [{"budget": c, "n_star": 1e3, "basis": "test"} for c in (2e12, 4e12)])
    assert [x.run_id for x in after.runs if x.compute_budget == 2e12] == \
        [x.run_id for x in plan.runs if x.compute_budget == 2e12]
    assert [e["budget"] for e in after.recentred] == [4e12]
    assert [x.compute_budget for x in after.runs] == sorted(x.compute_budget for x in after.runs)


@pytest.mark.parametrize("bad", [{"recentred": 3}, {"recentred": [{"budget": -1, "n_star": 5}]},
                                 {"recentred": [{"budget": 1e12, "n_star": "x"}]}])
def test_a_malformed_recentred_list_is_one_sentence(tmp_path, bad):
    plan = plan_stage(_settings(tmp_path), _console())
    data = {**plan.to_dict(), **bad}
    with pytest.raises(FlopsFitError, match="does not have the expected shape"):
        SweepPlan.from_dict(data)


def test_the_recentring_is_one_note_of_the_analysis(tmp_path):
    from flops_fit.analysis.notes import plan_sentences

    s = _settings(tmp_path)
    plan = plan_stage(s, _console())
    _finish(tmp_path, plan, _law(0.4), [1e12])
    recentre_stage(s, plan, _console(), [2e12, 4e12, 8e12])
    (line,) = plan_sentences(tmp_path)[1]
    assert line.startswith("Sequential planning re-centred the sizes of budget(s) 2e+12, "
                           "4e+12, 8e+12 on the optimum trend N* = ")
    data = json.loads((tmp_path / "plan.json").read_text())
    data["recentred"][0]["basis"] = 7  # untrusted: a malformed entry is left out
    (tmp_path / "plan.json").write_text(json.dumps(data))
    assert "budget(s) 4e+12, 8e+12 on" in plan_sentences(tmp_path)[1][0]


def _tuning(plan: SweepPlan, factor: float, budget: float = 1e12):
    from flops_fit.rundir.records import TunedSize, TuningRecord

    law = _law(factor)
    sizes = []
    for r in [r for r in plan.runs if r.compute_budget == budget]:
        best = law(r)
        sizes.append(TunedSize(r.size_value, r.num_params, r.num_params_non_embedding, r.steps,
                               [1e-3, 2e-3, 4e-3], [best + 0.1, best, None], 2e-3, True))
    return TuningRecord({"lr_base": 0.01, "lr_exponent": 0.2, "lr_ref_params": 1e5}, sizes,
                        1e12, 1e13, budget, plan.model["size_param"], plan.model["_target_"])


def test_tunes_grids_seed_the_trend_before_the_first_round(tmp_path):
    s = _settings(tmp_path)
    plan = plan_stage(s, _console())
    seed = sequential.tuned_optimum(_tuning(plan, 0.4), plan)
    assert list(seed) == [1e12]
    assert seed[1e12] == pytest.approx(0.4 * math.sqrt(1e12 / 600.0), rel=0.35)
    other = _tuning(plan, 0.4)
    other.model = "mymodels.Other"  # another model's grids say nothing of this one
    assert sequential.tuned_optimum(other, plan) == {}
    out = _console()
    plan = rounds.recentre_stage(s, plan, out, plan.compute_budgets,
                                 lambda centres: make_plan(s, centres), seed)
    assert "re-centring the sizes of 4 budget(s)" in out.file.getvalue()  # none trained yet
    assert plan.centre(1e12) == pytest.approx(seed[1e12])


def test_shards_say_they_train_the_plan_as_planned(tmp_path):
    s = _settings(tmp_path)
    plan = plan_stage(s, _console())
    assert rounds.sequential(s, plan) and rounds.shards_note(s, plan) is None
    s.train.num_shards = 2
    assert not rounds.sequential(s, plan)
    assert "shards train the plan as planned" in rounds.shards_note(s, plan)
    s.budgets.sequential = False
    assert rounds.shards_note(s, plan) is None
