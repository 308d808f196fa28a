"""flops_fit.fitting: known laws recovered, the Chinchilla replication reproduced, edge cases."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest

from conftest import reference_csv
from flops_fit.fitting import (
    bootstrap_parametric,
    fit_envelope,
    fit_isoflop,
    fit_parametric,
    fit_power_law,
    optimal_allocation,
    parametric_loss,
    percentile_interval,
)

LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
LAW_A = LAW["beta"] / (LAW["alpha"] + LAW["beta"])
REPLICATION = {"E": 1.8172, "A": 477.84, "B": 2143.86, "alpha": 0.3473, "beta": 0.3672}
REPLICATION_LIK = {"E": 1.8169, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def load_reference():
    with open(reference_csv(), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    n = np.array([float(r["Model Size"]) for r in rows])
    c = np.array([float(r["Training FLOP"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    keep = np.argsort(loss)[:-5]
    return n[keep], c[keep] / (6 * n[keep]), loss[keep]


BUDGETS = tuple(np.logspace(17, 20, 6))


def sweep(law=LAW, budgets=BUDGETS, sizes=10, half_width=1.0, noise=0.0,
          seed=0, offset=0.0):
    """An IsoFLOP sweep of ``law``: (budget, N, D, loss) with sizes around the true optimum
    (shifted by ``offset`` decades)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt, _ = optimal_allocation(c, law["A"], law["B"], law["alpha"], law["beta"])
        n = n_opt * np.logspace(-half_width + offset, half_width + offset, sizes)
        d = c / (6 * n)
        loss = parametric_loss(n, d, *law.values()) * np.exp(noise * rng.standard_normal(sizes))
        rows += list(zip([c] * sizes, n, d, loss, strict=True))
    return tuple(np.array(col) for col in zip(*rows, strict=True))


# ------------------------------------------------------------------------------ power laws


def test_power_law_exact_and_standard_errors():
    x = np.logspace(17, 21, 7)
    law = fit_power_law(x, 3.0 * x**0.45)
    assert law.coefficient == pytest.approx(3.0, rel=1e-9)
    assert law.exponent == pytest.approx(0.45, abs=1e-12)
    assert law.exponent_se == pytest.approx(0.0, abs=1e-9)
    noisy = 3.0 * x**0.45 * np.exp(np.array([0.1, -0.1, 0.05, 0.0, -0.05, 0.1, -0.1]))
    assert fit_power_law(noisy * 0 + x, noisy).exponent_se > 0
    with pytest.raises(ValueError):
        fit_power_law([1e18, 1e18], [1.0, 2.0])


def test_percentile_interval_ignores_nan():
    s = np.array([np.nan, 1.0, 2.0, 3.0, 4.0, np.inf])
    lo, hi = percentile_interval(s, 0.5)
    assert 1.0 < lo < hi < 4.0
    assert np.all(np.isnan(percentile_interval(np.array([np.nan, np.nan]))))


# ------------------------------------------------------------------------------ Approach 3


def test_allocation_is_the_isoflop_minimum():
    c = 1e21
    n, d = optimal_allocation(c, LAW["A"], LAW["B"], LAW["alpha"], LAW["beta"])
    assert float(n * d) == pytest.approx(c / 6, rel=1e-10)
    best = parametric_loss(n, d, *LAW.values())
    for f in (0.9, 1.1):
        assert parametric_loss(n * f, d / f, *LAW.values()) > best
    # other FLOPs-per-token constants keep the same optimum shape
    n8, d8 = optimal_allocation(c, LAW["A"], LAW["B"], LAW["alpha"], LAW["beta"], 8.0)
    assert float(n8 * d8) == pytest.approx(c / 8, rel=1e-10)


@pytest.mark.parametrize("loss_type", ["huber", "lsq"])
def test_parametric_recovers_noise_free_law(loss_type):
    _, n, d, loss = sweep()
    fit = fit_parametric(n, d, loss, loss_type=loss_type)
    for k, v in LAW.items():
        assert getattr(fit, k) == pytest.approx(v, rel=2e-3), k
    assert fit.a == pytest.approx(LAW_A, abs=1e-4)
    assert not fit.degenerate, fit.degenerate_reasons
    assert fit.objective < 1e-9


def test_parametric_recovers_noisy_law_within_tolerance():
    _, n, d, loss = sweep(noise=0.01, seed=3, half_width=1.25)
    fit = fit_parametric(n, d, loss)
    assert fit.E == pytest.approx(LAW["E"], rel=0.05)
    assert fit.alpha == pytest.approx(LAW["alpha"], abs=0.03)
    assert fit.beta == pytest.approx(LAW["beta"], abs=0.03)
    true_n, _ = optimal_allocation(1e22, LAW["A"], LAW["B"], LAW["alpha"], LAW["beta"])
    assert float(fit.allocation(1e22)[0]) == pytest.approx(float(true_n), rel=0.25)
    assert not fit.degenerate


def test_fix_E_holds_E_and_recovers_the_rest():
    _, n, d, loss = sweep(noise=0.002, seed=1)
    fit = fit_parametric(n, d, loss, fix_E=LAW["E"])
    assert fit.fixed_E and fit.E == pytest.approx(LAW["E"], rel=1e-12)
    assert fit.alpha == pytest.approx(LAW["alpha"], abs=0.01)
    assert fit.beta == pytest.approx(LAW["beta"], abs=0.01)
    with pytest.raises(ValueError):
        fit_parametric(n, d, loss, fix_E=float(loss.min()) + 0.1)


def test_reference_fit_matches_the_replication():
    n, d, loss = load_reference()
    t0 = time.perf_counter()
    fit = fit_parametric(n, d, loss)
    elapsed = time.perf_counter() - t0
    for k in ("E", "alpha", "beta"):
        assert getattr(fit, k) == pytest.approx(REPLICATION[k], rel=0.01), k
    for k in ("A", "B"):
        v = getattr(fit, k)
        assert min(abs(v / REPLICATION[k] - 1), abs(v / REPLICATION_LIK[k] - 1)) <= 0.03, k
    assert fit.a == pytest.approx(0.513, abs=0.005)
    assert not fit.degenerate and fit.converged
    assert elapsed < 5.0


def test_reference_bootstrap_is_close_to_published_errors():
    n, d, loss = load_reference()
    fit = fit_parametric(n, d, loss)
    boot = bootstrap_parametric(fit, n, d, loss, n_resamples=120, seed=1)
    assert boot.samples.shape == (120, 5) and boot.n_failed == 0
    assert boot.se("alpha") == pytest.approx(0.0154, rel=0.35)
    assert boot.se("beta") == pytest.approx(0.0206, rel=0.35)
    lo, hi = boot.interval("a")
    assert lo < fit.a < hi
    ns, ds = boot.allocation(1e24)
    assert ns.shape == (120,) and np.all(ns * ds == pytest.approx(1e24 / 6, rel=1e-9))
    # same seed, same samples
    again = bootstrap_parametric(fit, n, d, loss, n_resamples=5, seed=1)
    assert np.array_equal(again.samples, boot.samples[:5])


def test_bootstrap_of_1000_resamples_is_fast():
    n, d, loss = load_reference()
    t0 = time.perf_counter()
    fit = fit_parametric(n, d, loss)
    bootstrap_parametric(fit, n, d, loss, n_resamples=1000)
    assert time.perf_counter() - t0 < 10.0


def test_degenerate_when_loss_ignores_size():
    rng = np.random.default_rng(0)
    _, n, d, _ = sweep()
    loss = 3.0 * np.exp(0.01 * rng.standard_normal(n.size))  # flat: no law at all
    fit = fit_parametric(n, d, loss)
    assert fit.degenerate
    text = " ".join(fit.degenerate_reasons)
    assert "lowest observed loss" in text or "bound" in text


def test_degenerate_when_there_is_no_loss_floor():
    law = {**LAW, "E": 0.0}
    _, n, d, loss = sweep(law=law)
    fit = fit_parametric(n, d, loss)
    assert fit.degenerate
    assert any("E fell" in r for r in fit.degenerate_reasons)


def test_parametric_rejects_bad_input():
    with pytest.raises(ValueError):
        fit_parametric([1e8, 2e8, 3e8, 4e8], [1e9] * 4, [3.0, 2.9, 2.8, 2.7])
    with pytest.raises(ValueError):
        fit_parametric([1e8] * 5, [1e9] * 5, [3.0, 2.9, -1.0, 2.7, 2.6])
    with pytest.raises(ValueError):
        fit_parametric([1e8] * 5, [1e9] * 5, [3.0] * 5, loss_type="l1")


# ------------------------------------------------------------------------------ Approach 2


def test_isoflop_recovers_noise_free_exponents():
    budget, n, d, loss = sweep(half_width=0.5)
    fit = fit_isoflop(budget, n, d, loss)
    assert fit.available and all(o.interior for o in fit.budgets)
    assert fit.n_opt.exponent == pytest.approx(LAW_A, abs=0.01)
    assert fit.d_opt.exponent == pytest.approx(1 - LAW_A, abs=0.01)
    assert fit.loss_opt.exponent < 0
    for o in fit.budgets:
        true_n, _ = optimal_allocation(o.compute_budget, LAW["A"], LAW["B"], LAW["alpha"],
                                       LAW["beta"])
        assert o.optimal_params == pytest.approx(float(true_n), rel=0.05)
        assert o.optimal_tokens * o.optimal_params == pytest.approx(o.compute / 6, rel=0.05)


def test_isoflop_flags_and_excludes_edge_minima():
    budget, n, d, loss = sweep(half_width=0.5)
    # the largest budget sees only models far below its optimum
    last = budget == budget.max()
    n = n.copy()
    n[last] = n[last] / 30
    d = np.where(last, budget / (6 * n), d)
    loss = np.where(last, parametric_loss(n, d, *LAW.values()), loss)
    fit = fit_isoflop(budget, n, d, loss)
    edge = [o for o in fit.budgets if not o.interior]
    assert [o.compute_budget for o in edge] == [budget.max()]
    assert "largest model" in edge[0].note
    assert any("widen the sweep" in w for w in fit.warnings)
    assert fit.n_opt.n_points == 5
    assert fit.n_opt.exponent == pytest.approx(LAW_A, abs=0.02)


def test_isoflop_every_optimum_on_the_edge():
    budget, n, d, loss = sweep(half_width=0.4, offset=1.0)
    fit = fit_isoflop(budget, n, d, loss)
    assert not fit.available
    assert all(not o.interior for o in fit.budgets)
    assert "widen" in fit.message
    assert any("smallest model" in o.note for o in fit.budgets)


def test_isoflop_skips_small_budgets_once():
    budget, n, d, loss = sweep(half_width=0.5)
    extra_b = np.array([3e20, 3e20, 1e21, 1e21])
    extra_n = np.array([1e9, 2e9, 1e9, 2e9])
    budget = np.concatenate([budget, extra_b])
    n = np.concatenate([n, extra_n])
    d = np.concatenate([d, extra_b / (6 * extra_n)])
    loss = np.concatenate([loss, parametric_loss(extra_n, extra_b / (6 * extra_n),
                                                 *LAW.values())])
    fit = fit_isoflop(budget, n, d, loss)
    assert fit.skipped_budgets == [3e20, 1e21]
    skipped = [w for w in fit.warnings if "fewer than 3" in w]
    assert len(skipped) == 1 and "2 budget(s)" in skipped[0]
    assert fit.available


def test_isoflop_without_budget_groups():
    n, d, loss = load_reference()
    fit = fit_isoflop(6 * n * d, n, d, loss)
    assert not fit.available and fit.budgets == []
    assert "no compute budgets to group" in fit.message


def test_isoflop_bootstrap_intervals():
    budget, n, d, loss = sweep(half_width=0.6, noise=0.005, seed=2)
    fit = fit_isoflop(budget, n, d, loss, n_bootstrap=60, seed=0)
    b = fit.bootstrap
    assert b.samples.shape == (60, 6) and b.budget_params.shape == (60, 6)
    lo, hi = b.interval("a")
    assert lo <= fit.n_opt.exponent <= hi
    assert b.se("a") > 0
    assert LAW_A == pytest.approx(fit.n_opt.exponent, abs=max(0.05, 3 * b.se("a")))


# ------------------------------------------------------------------------------ Approach 1


def test_envelope_of_training_curves():
    sizes = np.logspace(7, 10, 25)
    curves = []
    for n in sizes:
        flops = np.logspace(15, 21, 60)
        tokens = flops / (6 * n)
        curves.append((n, flops, parametric_loss(n, tokens, *LAW.values())))
    env = fit_envelope(curves)
    assert env.law is not None and env.n_curves == 25
    assert env.law.exponent == pytest.approx(LAW_A, abs=0.04)
    # one curve is not an envelope
    assert fit_envelope(curves[:1]).law is None
