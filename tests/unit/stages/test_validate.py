"""Planning the validation runs: the size nearest N_opt(C) and one on each side."""

import math

import pytest

from flops_fit.models import GPT
from flops_fit.planning.planner import plan_sweep
from flops_fit.stages.validate import plan_validation

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
    from flops_fit.planning.flops import count_params
    best = min(abs(math.log(count_params(GPT, {"vocab_size": 256, "seq_len": 128,
                                                "width": s})[0] / n_opt)) for s in SIZES)
    assert err == pytest.approx(best)
    for r in v.runs:
        assert r.compute_budget == 1.2e13 and abs(r.flops - 1.2e13) / 1.2e13 < 0.05
        assert r.batch_size == plan.runs[0].batch_size and r.seq_len == plan.runs[0].seq_len


def test_without_neighbours_one_run(plan):
    v = plan_validation(plan, GPT, SIZES, {"optimal_params": 1e6}, 1.2e13, neighbours=False)
    assert len(v.runs) == 1


def test_seeds_train_the_predicted_optimum_again_each_with_its_own_seed(plan):
    """validate.seeds=3: the centre size three times (own run ids, seeds and wsd trunks), the
    neighbours once; plan.json keeps the repeats, and a plan without any has no such key."""
    from dataclasses import replace

    from flops_fit.config import TrainConfig
    from flops_fit.planning.planner import SweepPlan
    from flops_fit.training.trunks import seed_key, trunk_id

    one = plan_validation(plan, GPT, SIZES, {"optimal_params": 1e6}, 1.2e13, neighbours=True)
    v = plan_validation(plan, GPT, SIZES, {"optimal_params": 1e6}, 1.2e13, neighbours=True,
                        seeds=3)
    centre = [r for r in v.runs if r.size_value == v.settings["predicted_size"]]
    assert len(v.runs) == 5 and sorted(r.repeat for r in centre) == [0, 1, 2]
    assert {r.run_id for r in one.runs} <= {r.run_id for r in v.runs}  # seed 1 is the old run
    assert len({r.run_id for r in v.runs}) == 5
    cosine, wsd = TrainConfig(), replace(TrainConfig(), schedule="wsd")
    target = v.model["_target_"]
    assert len({seed_key(target, r, cosine) for r in centre}) == 3
    assert len({seed_key(target, r, wsd) for r in centre}) == 3
    assert len({trunk_id(target, r, wsd) for r in centre}) == 3
    again = SweepPlan.from_dict(v.to_dict())
    assert [r.repeat for r in again.runs] == [r.repeat for r in v.runs]
    assert all("repeat" not in r for r in one.to_dict()["runs"])


def test_outcome_averages_the_seeds_and_compares_sizes_like_for_like(plan, tmp_path):
    """The achieved loss is the mean over the predicted optimum's seeds; best-of-three compares
    every size over the seeds they all have (here the first), not a mean against one run."""
    import json

    from flops_fit.analysis.analyzer import AnalysisConfig, ScalingLawAnalyzer
    from flops_fit.stages.validate import outcome
    from helpers.run import synthetic_records

    records = synthetic_records()
    (tmp_path / "results.json").write_text(json.dumps(records))
    analysis = ScalingLawAnalyzer(tmp_path / "results.json", tmp_path / "analysis",
                                  AnalysisConfig(bootstrap=0)).analyze()
    v = plan_validation(plan, GPT, SIZES, {"optimal_params": 1e6}, 1.2e13, seeds=2)
    centre = v.settings["predicted_size"]

    def run(losses):
        it = iter(losses)
        recs = [{"run_id": r.run_id, "status": "completed",
                 "final_loss": next(it)} for r in v.runs]
        return outcome(analysis, records, v, recs, 1.2e13)

    order = [(r.size_value == centre, r.repeat) for r in v.runs]
    # runs in plan order: below, centre seed 1, centre seed 2, above
    assert order == [(False, 0), (True, 0), (True, 1), (False, 0)]
    o = run([1.32, 1.30, 1.34, 1.33])
    assert o.achieved_losses == [1.30, 1.34] and o.achieved_loss == pytest.approx(1.32)
    assert o.predicted_optimum_was_best and o.best_loss == pytest.approx(1.30)
    o = run([1.31, 1.33, 1.29, 1.35])  # its mean (1.31) ties, its first seed loses
    assert o.achieved_loss == pytest.approx(1.31) and not o.predicted_optimum_was_best
    one = plan_validation(plan, GPT, SIZES, {"optimal_params": 1e6}, 1.2e13, seeds=1)
    single = outcome(analysis, records, one,
                     [{"run_id": r.run_id, "status": "completed", "final_loss": 1.3}
                      for r in one.runs], 1.2e13)
    lo, hi = o.prediction_interval
    assert hi - lo < single.prediction_interval[1] - single.prediction_interval[0]
    assert o.residual_sigma_log == single.residual_sigma_log


def test_validation_json_has_one_writer_and_one_reader(plan, tmp_path):
    """validate writes validation.json as ValidationOutcome.to_dict (its keys, in order);
    read_validation gives the same record back, and a malformed file is one FlopsFitError
    sentence naming the file and the field."""
    import json

    from flops_fit.analysis.analyzer import AnalysisConfig, ScalingLawAnalyzer
    from flops_fit.errors import FlopsFitError
    from flops_fit.rundir.io import atomic_write_json
    from flops_fit.rundir.records import read_validation
    from flops_fit.stages.validate import describe, outcome
    from helpers.run import synthetic_records

    records = synthetic_records()
    (tmp_path / "results.json").write_text(json.dumps(records))
    analysis = ScalingLawAnalyzer(tmp_path / "results.json", tmp_path / "analysis",
                                  AnalysisConfig(bootstrap=20)).analyze()
    v = plan_validation(plan, GPT, SIZES, {"optimal_params": 1e6}, 1.2e13)
    got = outcome(analysis, records, v, [{"run_id": r.run_id, "status": "completed",
                                          "final_loss": 1.3 + 0.01 * i}
                                         for i, r in enumerate(v.runs)], 1.2e13)
    path = tmp_path / "analysis" / "validation.json"
    atomic_write_json(path, got.to_dict())  # as validate_stage writes it
    stored = json.loads(path.read_text())
    assert list(stored)[:6] == ["compute_budget", "largest_sweep_budget", "method",
                                "predicted_params", "predicted_tokens", "predicted_loss"]
    assert {"prediction_interval", "within_interval", "runs", "other_methods"} <= set(stored)
    back = read_validation(path)
    assert back.to_dict() == stored
    assert describe(back.to_dict()) == describe(stored)
    for field, value in (("compute_budget", "big"), ("achieved_loss", "x"),
                         ("prediction_interval", [1.0]), ("runs", {"a": 1}),
                         ("within_interval", "yes")):
        path.write_text(json.dumps({**stored, field: value}))
        with pytest.raises(FlopsFitError, match=f"{path}.*{field}") as err:
            read_validation(path)
        assert str(err.value).count(". ") == 0 and str(err.value).endswith(".")
    path.write_text("[1, 2]")
    with pytest.raises(FlopsFitError, match="not a JSON object"):
        read_validation(path)
