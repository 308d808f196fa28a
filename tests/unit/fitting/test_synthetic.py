"""Synthetic sweeps from known Chinchilla laws: designs, law draws, reproducibility, forecast."""

from __future__ import annotations

import math

import numpy as np

from flops_fit.fitting.synthetic import (
    DEFAULT_DESIGN,
    DENSE_DESIGN,
    draw_law,
    forecast_precision,
    law_from_optimum,
    random_sweep,
    simulate_sweep,
)


def test_designs_match_the_planner_convention():
    C = 1e12
    sizes = DEFAULT_DESIGN.sizes(C)
    assert sizes.size == 4
    assert math.isclose(sizes[-1] / sizes[0], 4.0)
    centre = math.sqrt(C / (6 * 100))
    assert math.isclose(math.exp(np.mean(np.log(sizes))), centre, rel_tol=1e-12)
    assert DEFAULT_DESIGN.budgets == (2.5e11, 5e11, 1e12, 2e12, 4e12)
    assert DEFAULT_DESIGN.target_budget == 4e13
    b = np.array(DENSE_DESIGN.budgets)
    assert b.size == 11 and np.allclose(b[1:] / b[:-1], math.sqrt(2))
    assert b[-1] / b[0] >= 32 - 1e-9 and DENSE_DESIGN.sizes_per_budget >= 5


def test_law_from_optimum_puts_the_optimum_where_asked():
    law = law_from_optimum(1.1, 0.3, 0.45, 1e12, 120.0, 0.8)
    assert math.isclose(law.d_opt(1e12) / law.n_opt(1e12), 120.0, rel_tol=1e-9)
    assert math.isclose(law.loss_opt(1e12) - law.E, 0.8, rel_tol=1e-9)
    # the closed-form optimum is the minimum along the IsoFLOP curve
    n = law.n_opt(1e12) * np.exp(np.linspace(-0.5, 0.5, 101))
    assert np.argmin(law.loss(n, 1e12 / (6 * n))) == 50
    assert math.isclose(law.a, 0.45 / 0.75)


def test_draws_are_in_range_and_reproducible():
    for seed in range(20):
        law = draw_law(seed)
        assert 0.6 <= law.E <= 2.0 and 0.25 <= law.alpha <= 0.6 and 0.25 <= law.beta <= 0.6
        tpp = law.d_opt(DEFAULT_DESIGN.middle_budget) / law.n_opt(DEFAULT_DESIGN.middle_budget)
        assert 30 * (1 - 1e-9) <= tpp <= 300 * (1 + 1e-9)
    s1, s2 = random_sweep(DEFAULT_DESIGN, 0.01, 7), random_sweep(DEFAULT_DESIGN, 0.01, 7)
    assert np.array_equal(s1.loss, s2.loss) and s1.law == s2.law
    assert not np.array_equal(s1.loss, random_sweep(DEFAULT_DESIGN, 0.01, 8).loss)


def test_noise_is_multiplicative_with_the_asked_sd():
    law = law_from_optimum(1.0, 0.4, 0.4, DENSE_DESIGN.middle_budget, 100.0, 1.0)
    sw = simulate_sweep(DENSE_DESIGN, law, 0.02, seed=3)
    clean = law.loss(sw.n, sw.d)
    assert np.allclose(sw.c, sw.budget) and np.allclose(6 * sw.n * sw.d, sw.c)
    assert 0.015 < np.std(np.log(sw.loss / clean)) < 0.025
    assert np.allclose(simulate_sweep(DENSE_DESIGN, law, 0.0, seed=3).loss, clean)


def test_forecast_precision_is_cheap_and_finite():
    law = law_from_optimum(1.0, 0.35, 0.4, DEFAULT_DESIGN.middle_budget, 100.0, 1.0)
    fc = forecast_precision(DEFAULT_DESIGN, 0.01, law, n_sims=3, n_bootstrap=30)
    assert fc.target_compute == 4e13 and fc.n_sims == 3
    assert 1.0 < fc.n_opt_width < math.inf and 0 < fc.loss_width < math.inf
