"""Intervals never narrower than the data allow; the joint fit as an approach of the registry."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from flops_fit.analysis.analyzer import ScalingLawAnalyzer
from flops_fit.analysis.approaches import APPROACHES
from flops_fit.analysis.forecast import DEFAULT_NOISE, forecast, forecast_lines, measured_noise
from flops_fit.analysis.scaling_analysis import ScalingAnalysis
from flops_fit.config import AnalysisConfig
from flops_fit.fitting.synthetic import DEFAULT_DESIGN, law_from_optimum, simulate_sweep
from helpers.run import synthetic_records, write_results

#: an interval of zero width, as ``[x, x]`` in any text
ZERO_WIDTH = re.compile(r"\[([-+0-9.eKMBT]+), \1\]")


def _records(sweep) -> list[dict]:
    return [{"run_id": f"r{i}", "status": "completed", "compute_budget": float(b),
             "num_params": float(n), "num_tokens": float(d), "flops": float(c),
             "final_loss": float(loss)}
            for i, (b, n, d, c, loss) in enumerate(zip(sweep.budget, sweep.n, sweep.d, sweep.c,
                                                        sweep.loss, strict=True))]


def _analyze(tmp_path, records, **cfg) -> ScalingAnalysis:
    path = write_results(tmp_path / "run", records)
    return ScalingLawAnalyzer(path, tmp_path / "run" / "analysis",
                              AnalysisConfig(bootstrap=60, approach1=False, **cfg)).analyze()


def test_two_interior_budgets_give_no_interval_and_say_why(tmp_path):
    # two budgets only: every law is a line through two minima
    analysis = _analyze(tmp_path, synthetic_records(budgets=(1e17, 1e18)),
                        predict_with="isoflop")
    iso = analysis.isoflop
    assert iso.available and iso.n_opt.exponent_ci is None and iso.bootstrap is None
    assert any("no residual degrees of freedom" in w for w in analysis.warnings)
    joint = analysis.sections["joint"]
    assert joint.available and not joint.precise and joint.a_ci is None
    text = analysis.describe() + "\n" + analysis.chinchilla_table([1e18, 1e19, 1e20])
    assert not ZERO_WIDTH.search(text), text
    assert "NO INTERVALS" in text
    p = analysis.predict_optimal_size(1e19, "joint")
    assert p.optimal_params_ci is None and p.expected_loss_ci is None


def test_the_joint_fit_predicts_with_intervals_that_cover_a_known_law(tmp_path):
    law = law_from_optimum(1.0, 0.35, 0.45, 1e12, 100.0, 0.8)
    sweep = simulate_sweep(DEFAULT_DESIGN, law, 0.01, seed=3)
    analysis = _analyze(tmp_path, _records(sweep), predict_with="joint")
    assert analysis.method == "joint" and not analysis.method_note
    joint = analysis.sections["joint"]
    assert joint.precise and joint.bootstrap.n_failed <= 0.05 * joint.bootstrap.n_resamples
    c = 4e13
    p = analysis.predict_optimal_size(c)
    lo, hi = p.optimal_params_ci
    assert lo < p.optimal_params < hi and hi / lo > 1.05
    assert lo <= law.n_opt(c) <= hi
    llo, lhi = p.expected_loss_ci
    assert llo <= law.loss_opt(c) <= lhi
    # the file round-trips and the plots' evaluation is the same law
    again = ScalingAnalysis.from_json(tmp_path / "run" / "analysis" / "scaling_laws.json")
    q = again.predict_optimal_size(c)
    assert math.isclose(q.optimal_params, p.optimal_params, rel_tol=1e-12)
    curve = APPROACHES["joint"].curve(again.sections["joint"], np.array([c]))
    assert math.isclose(float(curve.n[0]), p.optimal_params, rel_tol=1e-12)
    assert "Joint IsoFLOP fit" in analysis.describe()


def test_an_older_file_without_the_joint_section_reads_it_as_unavailable(tmp_path):
    analysis = _analyze(tmp_path, synthetic_records(), predict_with="isoflop")
    data = analysis.to_dict()
    del data["joint"]
    old = ScalingAnalysis.from_json(data)
    assert not old.sections["joint"].available
    with pytest.raises(Exception, match="joint"):
        old.predict_optimal_size(1e20, "joint")


def test_the_plan_forecast_is_a_sentence_with_widths():
    budgets = [2.5e11] * 4 + [1e12] * 4 + [4e12] * 4
    params = [8e3, 1.4e4, 2.4e4, 4e4, 1.6e4, 2.8e4, 4.8e4, 8e4, 3.2e4, 5.6e4, 9.6e4, 1.6e5]
    f = forecast(budgets, params, 4e13, 0.01, 100.0)
    assert f.widths.n_sims > 0 and f.widths.n_opt_width > 1.0
    (line,) = forecast_lines(f)
    assert line.startswith("Precision forecast at C=4e+13") and "N_opt within" in line
    assert "1% run noise (estimate.noise)" in line


def test_the_forecast_takes_the_run_noise_measured_in_the_run_directory(tmp_path):
    """estimate.noise=null: the joint fit's residual sd where the run directory has one."""
    law = law_from_optimum(1.0, 0.35, 0.45, 1e12, 100.0, 0.8)
    sweep = simulate_sweep(DEFAULT_DESIGN, law, 0.02, seed=5)
    _analyze(tmp_path, _records(sweep), predict_with="joint")
    path = tmp_path / "run" / "analysis" / "scaling_laws.json"
    sigma = measured_noise(path)
    assert sigma is not None and 0.012 < sigma < 0.03  # 2% noise, measured
    assert measured_noise(tmp_path / "none.json") is None
    budgets, params = [2.5e11] * 3 + [1e12] * 3, [8e3, 1.4e4, 2.4e4, 1.6e4, 2.8e4, 4.8e4]
    f = forecast(budgets, params, 4e12, None, 100.0, path)
    assert f.noise == sigma and "measured" in f.noise_source
    assert forecast(budgets, params, 4e12, None, 100.0).noise == DEFAULT_NOISE
    assert forecast(budgets, params, 4e12, 0.003, 100.0, path).noise == 0.003


def test_disagreeing_exponents_are_one_warning_naming_each():
    from flops_fit.analysis.checks import exponent_disagreement

    assert exponent_disagreement({"joint": 0.53, "isoflop": 0.56}, "joint") == []
    (w,) = exponent_disagreement({"joint": 0.533, "isoflop": 0.577, "parametric": 0.422},
                                 "joint")
    assert "parametric 0.422" in w and "joint predicts" in w and "validate" in w
    assert exponent_disagreement({"isoflop": math.nan}, "joint") == []
