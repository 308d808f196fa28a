"""Planning the validation runs: the size nearest N_opt(C) and one on each side."""

import math

import pytest

from flops_fit.models import GPT
from flops_fit.planner import plan_sweep
from flops_fit.validate import plan_validation

SIZES = list(range(16, 1025, 16))


@pytest.fixture(scope="module")
def plan():
    return plan_sweep(GPT, "width", {"vocab_size": 256}, [1e12, 3e12], sizes=SIZES,
                      tokens_per_param=100)


@pytest.mark.parametrize("n_opt", [3e5, 1e6, 4e6])
def test_predicted_size_is_nearest_in_log_n(plan, n_opt):
    v = plan_validation(plan, GPT, SIZES, {"optimal_params": n_opt}, 1.2e13, neighbours=True)
    centre = next(r for r in v.runs if r.size_value == v.settings["predicted_size"])
    others = [r for r in v.runs if r is not centre]
    assert len(others) == 2
    assert min(r.num_params for r in others) < centre.num_params < max(
        r.num_params for r in others)
    err = abs(math.log(centre.num_params / n_opt))
    # no other size of the grid is closer in log N
    from flops_fit.flops import count_params
    best = min(abs(math.log(count_params(GPT, {"vocab_size": 256, "seq_len": 128,
                                                "width": s})[0] / n_opt)) for s in SIZES)
    assert err == pytest.approx(best)
    for r in v.runs:
        assert r.compute_budget == 1.2e13 and abs(r.flops - 1.2e13) / 1.2e13 < 0.05
        assert r.batch_size == plan.runs[0].batch_size and r.seq_len == plan.runs[0].seq_len


def test_without_neighbours_one_run(plan):
    v = plan_validation(plan, GPT, SIZES, {"optimal_params": 1e6}, 1.2e13, neighbours=False)
    assert len(v.runs) == 1
