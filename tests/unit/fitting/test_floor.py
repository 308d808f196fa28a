"""The floor E chosen by leave-future-out validation, and fits that carry its spread."""

from __future__ import annotations

import math

import numpy as np

from flops_fit.fitting.floor import choose_floor, fit_joint_floor, fit_parametric_floor
from flops_fit.fitting.synthetic import (
    DEFAULT_DESIGN,
    DENSE_DESIGN,
    Design,
    law_from_optimum,
    simulate_sweep,
)

LONG = Design(tuple(1e11 * 2.0 ** i for i in range(9)), 5, 4.0, 100.0)  # 256x span


def test_picks_a_floor_near_the_truth_on_a_long_span():
    law = law_from_optimum(1.2, 0.35, 0.4, LONG.middle_budget, 100.0, 1.0)
    sw = simulate_sweep(LONG, law, 0.003, seed=0)
    ch = choose_floor(sw.budget, sw.n, sw.d, sw.loss, sw.c)
    assert ch.available and ch.method == "joint"
    step = ch.grid[1] - ch.grid[0]
    assert abs(ch.E - law.E) <= 2 * step, (ch.E, law.E)
    lo, hi = ch.E_range
    assert lo <= ch.E <= hi and lo - 2 * step <= law.E <= hi + 2 * step
    assert ch.n_splits == 9 - 3 and len(ch.table()) == ch.grid.size == 24
    assert np.nanargmin(ch.forward_error) == int(np.argmin(np.abs(ch.grid - ch.E)))
    assert math.isfinite(ch.free_E) and math.isfinite(ch.free_forward_error)
    assert np.all(ch.grid < sw.loss.min()) and ch.grid[0] == 0.0


def test_too_few_budgets_is_a_sentence():
    design = Design((1e12, 2e12, 4e12), 4, 4.0, 100.0)
    law = law_from_optimum(1.0, 0.35, 0.4, 2e12, 100.0, 1.0)
    sw = simulate_sweep(design, law, 0.01, seed=0)
    ch = choose_floor(sw.budget, sw.n, sw.d, sw.loss, sw.c)
    assert not ch.available and "at least 4 budgets" in ch.message
    fit = fit_joint_floor(sw.budget, sw.n, sw.d, sw.loss, sw.c, choice=ch, n_bootstrap=20)
    assert not fit.fixed_E and any("fitted freely" in w for w in fit.warnings)


def test_joint_fit_with_the_validated_floor_mixes_the_admissible_floors():
    law = law_from_optimum(1.0, 0.35, 0.4, DENSE_DESIGN.middle_budget, 100.0, 1.0)
    sw = simulate_sweep(DENSE_DESIGN, law, 0.01, seed=1)
    fit = fit_joint_floor(sw.budget, sw.n, sw.d, sw.loss, sw.c, n_bootstrap=60)
    ch = fit.floor
    assert fit.fixed_E and fit.E == ch.E and fit.precise
    boot = fit.bootstrap
    assert boot.n_resamples == 60 and boot.n_failed <= 3
    if ch.admissible.size > 1:
        assert boot.floor_values is not None and np.all(np.isin(boot.floor_values, ch.admissible))
        assert np.unique(boot.samples[:, 0][np.isfinite(boot.samples[:, 0])]).size > 1
    lo, hi = fit.interval("n_opt", DENSE_DESIGN.target_budget)
    assert lo < fit.n_opt(DENSE_DESIGN.target_budget) < hi


def test_parametric_floor():
    law = law_from_optimum(1.0, 0.35, 0.4, DEFAULT_DESIGN.middle_budget, 100.0, 1.0)
    sw = simulate_sweep(DEFAULT_DESIGN, law, 0.005, seed=0)
    fit, boot, ch = fit_parametric_floor(sw.budget, sw.n, sw.d, sw.loss, n_bootstrap=20)
    assert ch.method == "parametric" and ch.available and ch.grid[0] > 0
    assert fit.fixed_E and fit.E == ch.E and ch.n_splits == 2
    assert boot.samples.shape == (20, 5) and boot.n_resamples == 20
    assert set(np.unique(boot.samples[:, 0])) <= set(ch.admissible)
