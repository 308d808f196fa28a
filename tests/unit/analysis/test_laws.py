"""flops_fit.analysis.laws: the laws evaluated in one place, equal to v0.1.0's predictions."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from conftest import FIXTURE_V0_1_0
from flops_fit.analysis import laws
from flops_fit.analysis.analyzer import AnalysisConfig, ScalingLawAnalyzer
from flops_fit.analysis.scaling_analysis import ScalingAnalysis
from flops_fit.analysis.sections import IsoflopSection, ParametricSection
from flops_fit.errors import FlopsFitError

RUN_DIR = FIXTURE_V0_1_0
FIXTURE = RUN_DIR / "analysis" / "scaling_laws.json"

# computed with the v0.1.0 code (ScalingAnalysis.predict_optimal_size of analyzer.py @ fd247fa)
REFERENCE = {
    1e15: {"optimal_params": 1006781.1115931398, "optimal_tokens": 124696950.78363483,
           "expected_loss": 1.3195300265079786, "tokens_per_param": 123.85706222310151,
           "optimal_params_ci": [0.0009211430241953915, 19801470.78725365],
           "optimal_tokens_ci": [6340212.509636008, 1.3668819814145526e+17],
           "expected_loss_ci": [0.6198046778892183, 1.46023184134926],
           "tokens_per_param_ci": [0.3202040374830218, 1.4942469238134745e+20]},
    1e21: {"optimal_params": 985501503.183347, "optimal_tokens": 127389490849.78372,
           "expected_loss": 1.2135537890366355, "tokens_per_param": 129.26361901863444,
           "optimal_params_ci": [14.597887058168453, 2894233504515.211],
           "optimal_tokens_ci": [43380288.56295575, 8.603115774587667e+18],
           "expected_loss_ci": [0.07611093072381797, 1.4181345432856332],
           "tokens_per_param_ci": [1.4990883153547747e-05, 5.897857783238767e+17]},
}


def _close(a, b, rel=1e-12):
    if isinstance(a, list):
        return all(_close(x, y, rel) for x, y in zip(a, b, strict=True))
    return abs(a - b) <= rel * abs(b)


def test_parametric_curve_equals_v010_predictions():
    par = ParametricSection.from_dict(json.loads(FIXTURE.read_text())["parametric"])
    budgets = np.array(sorted(REFERENCE))
    curve = laws.evaluate(par, budgets, 0.95)
    assert curve.n.shape == (2,) and curve.n_band.shape == (2, 2)
    for i, c in enumerate(budgets):
        p = curve.prediction(i)
        for key, want in REFERENCE[c].items():
            assert _close(p[key], want), (c, key, p[key], want)
        assert p["method"] == "parametric" and p["degenerate"] is False and p["warning"] == ""
    # the scalar call gives the same numbers, and the stored predictions are reproduced
    data = json.loads(FIXTURE.read_text())
    for stored in data["predictions"]:
        p = laws.parametric_curve(par, stored["target_compute"], 0.95).prediction()
        for key in ("optimal_params", "optimal_tokens", "expected_loss", "tokens_per_param"):
            assert _close(p[key], stored[key])
        for key in ("optimal_params_ci", "expected_loss_ci"):
            assert _close(p[key], stored[key])


def test_prediction_is_a_mapping_with_the_old_keys():
    analysis = ScalingAnalysis.from_json(FIXTURE)
    p = analysis.predict_optimal_size(1e21)
    assert list(dict(p)) == list(laws.PREDICTION_KEYS)
    assert p["optimal_params"] == p.optimal_params and p.get("expected_loss_ci") == \
        p.expected_loss_ci
    assert "prediction_interval" not in p and p.prediction_interval is None
    assert p == dict(p)


def test_prediction_interval_is_apart_from_the_confidence_interval():
    analysis = ScalingAnalysis.from_json(FIXTURE)
    p = analysis.predict_optimal_size(1e21)
    q = p.with_scatter(0.05)
    lo, hi = p.expected_loss_ci
    assert q.expected_loss_ci == p.expected_loss_ci  # the CI is unchanged
    assert q.prediction_interval == [lo * math.exp(-1.96 * 0.05), hi * math.exp(1.96 * 0.05)]
    assert q.residual_sigma_log == 0.05 and dict(q) == dict(p)
    mean4 = p.with_scatter(0.05, runs=4)  # the mean of 4 runs scatters half as much
    assert mean4.prediction_interval == pytest.approx(
        [lo * math.exp(-1.96 * 0.025), hi * math.exp(1.96 * 0.025)])
    assert mean4.residual_sigma_log == 0.05
    no_ci = laws.Prediction(1e21, 1.0, 2.0, 3.0, 2.0)
    assert no_ci.with_scatter(0.0).prediction_interval == [3.0, 3.0]


def test_residual_sigma():
    par = ParametricSection.from_dict(json.loads(FIXTURE.read_text())["parametric"])
    n, d = np.array([1e4, 2e4, 4e4]), np.array([1e7, 1e7, 1e7])
    fit = np.array([par.E + par.A / x ** par.alpha + par.B / 1e7 ** par.beta for x in n])
    obs = fit * np.exp([0.01, -0.02, 0.01])
    assert laws.residual_sigma(par, n, d, obs) == pytest.approx(
        np.std([0.01, -0.02, 0.01], ddof=1), rel=1e-9)
    assert laws.residual_sigma(par, n[:2], d[:2], obs[:2]) == 0.0


def test_unavailable_sections_raise():
    iso = IsoflopSection.from_dict(json.loads(FIXTURE.read_text())["isoflop"])
    with pytest.raises(FlopsFitError, match="Approach 2 has no power law"):
        laws.evaluate(iso, 1e20)
    with pytest.raises(FlopsFitError, match="parametric fit is unavailable"):
        laws.evaluate(ParametricSection.from_dict({"available": False, "message": "x"}), 1e20)


def test_isoflop_curve_from_power_laws():
    iso = IsoflopSection.from_dict({
        "available": True, "message": "", "ci_level": 0.9,
        "n_opt": {"coefficient": 2.0, "exponent": 0.5},
        "d_opt": {"coefficient": 3.0, "exponent": 0.5},
        "loss_opt": {"coefficient": 10.0, "exponent": -0.1},
        "bootstrap": {"samples": [[math.log(2.0), 0.5, math.log(3.0), 0.5, 0.0, 0.0]] * 5}})
    curve = laws.isoflop_curve(iso, np.array([1e4, 1e6]))
    assert np.allclose(curve.n, [200.0, 2000.0]) and np.allclose(curve.d, [300.0, 3000.0])
    assert np.allclose(curve.n_band[:, 0], curve.n) and np.allclose(curve.loss_band, 1.0)
    assert curve.ci_level == 0.9 and curve.method == "isoflop"


def test_reanalysing_the_fixture_reproduces_its_fit(tmp_path):
    data = json.loads(FIXTURE.read_text())
    run_dir = tmp_path / "run"
    shutil.copytree(RUN_DIR, run_dir)
    settings = dict(data["provenance"]["settings"], bootstrap=0)  # point estimates only
    analysis = ScalingLawAnalyzer(run_dir / "results.json", run_dir / "analysis",
                                  AnalysisConfig(**settings)).analyze()
    old = data["parametric"]
    # 1e-6: L-BFGS-B stops on a tolerance, so another BLAS kernel (another CPU) moves the
    # optimum in the 8th digit (E 1.2102543982 vs 1.2102544097 on one machine)
    for key in ("E", "A", "B", "alpha", "beta", "a", "b"):
        assert _close(getattr(analysis.parametric, key), old[key], 1e-6), key
    assert _close(analysis.parametric.flops_per_param_token, old["flops_per_param_token"])
    for new, was in zip(analysis.isoflop.budgets, data["isoflop"]["budgets"], strict=True):
        assert _close(new.optimal_params, was["optimal_params"], 1e-9)
        assert new.interior == was["interior"]
    assert _close(analysis.approach1.n_opt.exponent, data["approach1"]["n_opt"]["exponent"],
                  1e-9)
    assert analysis.isoflop.available == data["isoflop"]["available"]
