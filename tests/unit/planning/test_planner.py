"""Planning: sizes around the optimum, snapped to real integers, C honoured, stable ids."""

import json
import math

import pytest
import torch.nn as nn

from flops_fit import FlopsFitError, SweepPlan, plan_sweep, validate_model_contract
from flops_fit.models import GPT

GPT_KW = {"vocab_size": 256, "seq_len": 128}
SIZES = list(range(16, 1025, 16))


def _plan(budgets, **kw):
    kw.setdefault("sizes", SIZES)
    return plan_sweep(GPT, "width", GPT_KW, budgets, **kw)


def test_at_least_five_distinct_sizes_per_budget_within_5_percent():
    plan = _plan([1e12, 1e13], sizes_per_budget=5)
    for c in (1e12, 1e13):
        runs = [r for r in plan.runs if r.compute_budget == c]
        assert len({r.size_value for r in runs}) >= 5
        for r in runs:
            assert abs(r.flops - c) / c < 0.05
            assert r.num_tokens == r.steps * r.batch_size * r.seq_len
            assert r.flops == pytest.approx(r.flops_per_token * r.num_tokens)


def test_sizes_bracket_the_prior_optimum():
    for c in (1e13, 1e14, 1e15):
        plan = _plan([c], sizes_per_budget=7, tokens_per_param=20)
        n_star = math.sqrt(c / (6 * 20))
        ns = [r.num_params for r in plan.runs]
        assert min(ns) < n_star < max(ns)


def test_more_compute_plans_bigger_models():
    plan = _plan([1e13, 1e15])
    mean = {c: sum(r.num_params for r in plan.runs if r.compute_budget == c) for c in (1e13, 1e15)}
    assert mean[1e15] > mean[1e13]


def test_run_ids_are_stable_and_unique():
    a, b = _plan([1e12, 3e12]), _plan([1e12, 3e12])
    assert [r.run_id for r in a.runs] == [r.run_id for r in b.runs]
    assert len({r.run_id for r in a.runs}) == len(a.runs)
    c = _plan([1e12, 3e12], batch_size=32)
    assert {r.run_id for r in c.runs}.isdisjoint({r.run_id for r in a.runs})


def test_plan_round_trips_through_json():
    plan = _plan([1e12])
    again = SweepPlan.from_json(plan.to_json())
    assert again.to_dict() == json.loads(plan.to_json())
    assert again.runs[0] == plan.runs[0]


def test_too_small_runs_are_dropped_with_a_warning():
    with pytest.warns(UserWarning, match="min_steps"):
        plan = _plan([2e10], min_steps=30, sizes_per_budget=5)
    assert all(r.steps >= 30 for r in plan.runs)


def test_short_sizes_are_replaced_not_just_dropped():
    kw = {"tokens_per_param": 100, "batch_size": 16}
    free = _plan([3.2e12], min_steps=1, **kw)  # its largest size trains only ~600 steps
    assert min(r.steps for r in free.runs) < 1000
    with pytest.warns(UserWarning, match="fewer than min_steps=1000"):
        plan = _plan([3.2e12], min_steps=1000, **kw)
    assert all(r.steps >= 1000 for r in plan.runs)
    assert len(plan.runs) == 5  # chosen again among the long-enough sizes, not just dropped
    assert {r.size_value for r in plan.runs} - {r.size_value for r in free.runs}


def test_budget_nothing_fits_is_one_error():
    with pytest.raises(FlopsFitError, match="No run could be planned"):
        _plan([1e6])


@pytest.mark.parametrize("bad", [0, -1e12, float("nan"), float("inf"), "abc"])
def test_bad_budgets(bad):
    with pytest.raises(FlopsFitError, match="finite positive"):
        _plan([bad])


def test_model_contract_errors():
    with pytest.raises(FlopsFitError, match="no constructor argument 'depth'"):
        validate_model_contract(GPT, "depth", GPT_KW)
    with pytest.raises(FlopsFitError, match="not a torch.nn.Module class"):
        validate_model_contract(dict, "width")

    class Fixed(nn.Module):
        def __init__(self, width: int = 4):
            super().__init__()
            self.lin = nn.Linear(8, 8)

    with pytest.raises(FlopsFitError, match="does not grow"):
        validate_model_contract(Fixed, "width", {}, sizes=[1, 2, 3])

    class Broken(nn.Module):
        def __init__(self, width: int = 4):
            super().__init__()
            raise RuntimeError("boom")

    with pytest.raises(FlopsFitError, match="could not be built"):
        validate_model_contract(Broken, "width", {}, sizes=[1, 2])
