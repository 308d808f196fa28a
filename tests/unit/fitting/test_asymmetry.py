"""The skewed joint profile: it reads a Chinchilla law's asymmetry and leaves a parabola alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flops_fit.fitting.asymmetry import bootstrap_joint_skew, fit_joint_skew
from flops_fit.fitting.joint import fit_joint
from flops_fit.fitting.synthetic import DENSE_DESIGN, law_from_optimum, simulate_sweep

C10 = DENSE_DESIGN.target_budget


def _fit(sw):
    return fit_joint(sw.budget, sw.n, sw.d, sw.loss, sw.c)


def test_skew_of_a_chinchilla_law_and_its_optimum():
    law = law_from_optimum(1.0, 0.7, 0.3, DENSE_DESIGN.middle_budget, 100.0, 1.0)
    sw = simulate_sweep(DENSE_DESIGN, law, 0.001, seed=0)
    sym = _fit(sw)
    skew = fit_joint_skew(sym)
    # third order of the exact profile: s = (beta - alpha) / 3; higher orders shift it a little
    assert skew.skew == pytest.approx((law.beta - law.alpha) / 3, abs=0.05)
    assert skew.p_value < 1e-6 and skew.sse < skew.sse_symmetric and skew.dof == sym.dof - 1
    true_n = law.n_opt(C10)
    assert abs(skew.n_opt(C10) / true_n - 1) < abs(sym.n_opt(C10) / true_n - 1)
    assert abs(skew.a - law.a) < 0.02
    assert np.allclose(skew.predict(sw.n, sw.c), sw.loss, rtol=0.005)


def test_a_symmetric_profile_gets_no_skew():
    sym = fit_joint(*_sweep_of_joint_model())
    skew = fit_joint_skew(sym)
    assert abs(skew.skew) < 3 * skew.skew_se + 0.02
    assert skew.p_value > 0.01
    assert skew.n_opt(C10) == pytest.approx(sym.n_opt(C10), rel=0.1)


def _sweep_of_joint_model():
    """Runs of the dense design under the symmetric joint model itself, 0.5% noise."""
    rng = np.random.default_rng(1)
    budget = np.concatenate([np.full(6, C) for C in DENSE_DESIGN.budgets])
    n = np.concatenate([DENSE_DESIGN.sizes(C) for C in DENSE_DESIGN.budgets])
    u = np.log(n) - math.log(0.02) - 0.5 * np.log(budget)
    noise = np.exp(0.005 * rng.standard_normal(n.size))
    loss = (0.8 + 40.0 * budget**-0.12 * (1 + 0.08 * u * u)) * noise
    return budget, n, budget / (6 * n), loss, budget


def test_needs_an_available_fit():
    sym = fit_joint([1e12] * 3, [1e4, 2e4, 4e4], [1e6] * 3, [2.0, 1.9, 2.0])
    with pytest.raises(ValueError):
        fit_joint_skew(sym)


def test_skew_bootstrap_gives_intervals_around_the_fit():
    law = law_from_optimum(1.0, 0.6, 0.3, DENSE_DESIGN.middle_budget, 100.0, 1.0)
    skew = fit_joint_skew(_fit(simulate_sweep(DENSE_DESIGN, law, 0.01, seed=2)))
    with pytest.raises(ValueError):
        skew.interval("a")
    boot = bootstrap_joint_skew(skew, n_resamples=40, seed=0)
    assert boot is skew.bootstrap and boot.n_failed <= 2 and boot.dof == skew.dof
    lo, hi = skew.interval("n_opt", C10)
    assert lo < skew.n_opt(C10) < hi and hi / lo < 3
    lo, hi = skew.interval("a")
    assert lo < skew.a < hi
