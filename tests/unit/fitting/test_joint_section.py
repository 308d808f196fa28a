"""The joint section's law intervals: N_opt's and D_opt's coefficients are built alike."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from flops_fit.analysis.joint import build
from flops_fit.config import AnalysisConfig
from flops_fit.fitting.synthetic import DEFAULT_DESIGN, law_from_optimum, simulate_sweep


def test_d_opt_coefficient_interval_is_g_interval_mapped():
    law = law_from_optimum(1.0, 0.35, 0.42, DEFAULT_DESIGN.middle_budget, 100.0, 1.0)
    sw = simulate_sweep(DEFAULT_DESIGN, law, 0.01, seed=3)
    runs = SimpleNamespace(budget=sw.budget, n=sw.n, d=sw.d, loss=sw.loss, c=sw.c)
    sec = build(runs, AnalysisConfig(bootstrap=60), kappa=0.0)
    assert sec.precise
    k = sec.flops_per_param_token
    g_lo, g_hi = sec.n_opt.coefficient_ci
    d_lo, d_hi = sec.d_opt.coefficient_ci
    assert d_lo == pytest.approx(1.0 / (k * g_hi)) and d_hi == pytest.approx(1.0 / (k * g_lo))
    assert d_lo < sec.d_opt.coefficient < d_hi
