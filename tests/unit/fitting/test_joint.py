"""The joint IsoFLOP fit: recovery, intervals, and honesty when the data cannot pin them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flops_fit.fitting.joint import bootstrap_joint, fit_joint
from flops_fit.fitting.synthetic import (
    DEFAULT_DESIGN,
    Design,
    law_from_optimum,
    simulate_sweep,
)

LAW = law_from_optimum(1.0, 0.35, 0.42, DEFAULT_DESIGN.middle_budget, 100.0, 1.0)
C10 = DEFAULT_DESIGN.target_budget


def _fit(sw, **kw):
    return fit_joint(sw.budget, sw.n, sw.d, sw.loss, sw.c, **kw)


def test_recovers_a_known_law_at_low_noise():
    sw = simulate_sweep(DEFAULT_DESIGN, LAW, 0.001, seed=0)
    fit = _fit(sw)
    assert fit.available and fit.precise and fit.converged, fit.warnings
    s = LAW.alpha + LAW.beta
    assert abs(fit.a - LAW.a) < 0.03
    assert abs(fit.E - LAW.E) < 0.1
    assert abs(fit.gamma - LAW.alpha * LAW.beta / s) < 0.03
    assert abs(fit.kappa / (LAW.alpha * LAW.beta / 2) - 1) < 0.3
    assert abs(fit.n_opt(C10) / LAW.n_opt(C10) - 1) < 0.1
    assert abs(fit.loss_opt(C10) / LAW.loss_opt(C10) - 1) < 0.01
    assert abs(fit.d_opt(C10) / LAW.d_opt(C10) - 1) < 0.1
    assert fit.flops_per_param_token == pytest.approx(6.0)
    assert fit.n_interior == 5 and fit.dof == 20 - 6 and fit.sigma < 0.003
    law = fit.n_opt_law
    assert law.exponent == fit.a and law(C10) == pytest.approx(fit.n_opt(C10))
    assert fit.d_opt_law(C10) == pytest.approx(fit.d_opt(C10))
    assert 0 < law.exponent_se < 0.05
    assert np.allclose(fit.predict(sw.n, sw.c), sw.loss, rtol=0.01)


def test_intervals_cover_the_truth_on_fixed_seeds():
    hits = {"a": 0, "n_opt": 0, "d_opt": 0, "loss_opt": 0}
    truth = {"a": LAW.a, "n_opt": LAW.n_opt(C10), "d_opt": LAW.d_opt(C10),
             "loss_opt": LAW.loss_opt(C10)}
    for seed in range(10):
        fit = _fit(simulate_sweep(DEFAULT_DESIGN, LAW, 0.01, seed=seed), n_bootstrap=100)
        assert fit.precise and fit.bootstrap.n_failed <= 2, fit.warnings
        for name in hits:
            lo, hi = fit.interval(name, None if name == "a" else C10)
            hits[name] += lo < truth[name] < hi
    assert min(hits.values()) >= 8, hits  # nominal 95%: 8 of 10 or more


def test_prediction_band_is_wider_and_arrays_work():
    fit = _fit(simulate_sweep(DEFAULT_DESIGN, LAW, 0.01, seed=1), n_bootstrap=100)
    clo, chi = fit.interval("loss_opt", C10)
    plo, phi = fit.prediction_interval(C10)
    assert plo < clo and phi > chi  # one run scatters around the law
    band = fit.interval("n_opt", np.array([1e12, C10]))
    assert band.shape == (2, 2) and np.all(band[0] < band[1])


def _no_point_intervals(fit):
    assert not fit.precise and fit.reason and fit.reason in fit.warnings
    for name, C in (("a", None), ("n_opt", C10), ("loss_opt", C10)):
        lo, hi = fit.interval(name, C)
        assert not (math.isfinite(lo) and lo == hi)
        assert math.isnan(lo) and math.isnan(hi)


def test_two_budgets_give_no_interval():
    design = Design((1e12, 2e12), 4, 4.0, 100.0)
    sw = simulate_sweep(design, LAW, 0.01, seed=0)
    fit = _fit(sw, n_bootstrap=50)
    assert fit.available and fit.n_budgets == 2
    assert "at least" not in fit.message
    _no_point_intervals(fit)
    assert "budget" in fit.reason


def test_all_minima_at_the_edge_give_no_interval():
    design = Design(DEFAULT_DESIGN.budgets, 4, 2.0, 5.0)  # sizes far above the optimum
    sw = simulate_sweep(design, LAW, 0.005, seed=0)
    fit = _fit(sw, n_bootstrap=50)
    assert fit.n_interior < 3
    _no_point_intervals(fit)
    assert "inside their sampled sizes" in fit.reason


def test_no_degrees_of_freedom_gives_no_interval():
    design = Design((5e11, 1e12, 2e12), 2, 4.0, 100.0)  # 6 runs, 6 parameters
    sw = simulate_sweep(design, LAW, 0.01, seed=0)
    fit = _fit(sw, n_bootstrap=20)
    assert fit.dof == 0 and fit.bootstrap is None
    _no_point_intervals(fit)
    assert any("degrees of freedom" in w for w in fit.warnings)


def test_too_few_runs_is_a_sentence_not_a_crash():
    fit = fit_joint([1e12] * 3, [1e4, 2e4, 4e4], [1e6, 5e5, 2.5e5], [2.0, 1.9, 2.0])
    assert not fit.available and fit.message.endswith("skipped.") and not fit.precise


def test_failed_refits_are_counted_and_refuse_the_interval():
    sw = simulate_sweep(DEFAULT_DESIGN, LAW, 0.01, seed=2)
    fit = _fit(sw)
    assert fit.precise
    boot = bootstrap_joint(fit, n_resamples=20, max_nfev=1)  # no refit can converge
    assert boot.n_failed == 20 and not boot.usable
    assert np.all(np.isnan(boot.samples))
    fit.bootstrap = boot
    assert not fit.precise and "did not converge" in fit.reason
    assert all(math.isnan(v) for v in fit.interval("n_opt", C10))


def test_a_few_failures_widen_the_interval():
    sw = simulate_sweep(DEFAULT_DESIGN, LAW, 0.01, seed=1)
    fit = _fit(sw, n_bootstrap=100)
    boot = fit.bootstrap
    lo, hi = boot.interval("n_opt", C10)
    boot.samples[:3] = np.nan
    boot.n_failed = 3  # 3% failed: the percentile level rises to 98%
    wlo, whi = boot.interval("n_opt", C10)
    assert wlo <= lo and whi >= hi and (wlo < lo or whi > hi)


def test_fixed_floor_and_spent_compute():
    sw = simulate_sweep(DEFAULT_DESIGN, LAW, 0.003, seed=0)
    c = sw.c * np.exp(np.random.default_rng(0).uniform(-0.05, 0.05, sw.c.size))
    fit = fit_joint(sw.budget, sw.n, sw.d, sw.loss, c, fix_E=LAW.E)
    assert fit.fixed_E and fit.E == LAW.E and fit.n_params == 5
    assert abs(fit.a - LAW.a) < 0.05
    with pytest.raises(ValueError):
        fit_joint(sw.budget, sw.n, sw.d, sw.loss, fix_E=float(sw.loss.min()))
