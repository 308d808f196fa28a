"""Approach 2: one parabola in log N per compute budget, power laws through the minima.

Its section of ``scaling_laws.json`` is ``isoflop`` (:class:`~.sections.IsoflopSection`);
its laws are evaluated by :func:`~.laws.isoflop_curve`. :func:`build` fits it, :func:`problem`
says why it cannot predict, :func:`describe` gives its lines of ``describe()``.
"""

from __future__ import annotations

import math
from typing import Any

from flops_fit import fitting
from flops_fit.analysis.sections import IsoflopSection, interval_text, law_record, plain
from flops_fit.config import AnalysisConfig

#: budgets with fewer distinct sizes have no parabola
MIN_SIZES_PER_BUDGET = 3
#: power laws through fewer interior minima get no interval (no residual degrees of freedom)
MIN_LAW_POINTS = 3


def build(runs: Any, cfg: AnalysisConfig, kappa: float) -> IsoflopSection:
    """Approach 2 of ``runs`` (``budget, n, d, c, loss``: arrays of shape ``(R,)``) with its
    bootstrap. ``kappa`` is not used: the minima are read off each budget's own runs."""
    budget, n, d, c, loss = runs.budget, runs.n, runs.d, runs.c, runs.loss
    fit = fitting.fit_isoflop(budget, n, d, loss, c, min_sizes=MIN_SIZES_PER_BUDGET,
                              n_bootstrap=cfg.bootstrap, ci=cfg.ci, seed=cfg.seed)
    boot = fit.bootstrap
    budgets = []
    for j, o in enumerate(fit.budgets):
        b: dict[str, Any] = {
            "compute_budget": o.compute_budget, "compute": o.compute, "n_runs": o.n_runs,
            "n_sizes": o.n_sizes, "params_range": [math.exp(v) for v in o.log_n_range],
            "optimal_params": o.optimal_params, "optimal_tokens": o.optimal_tokens,
            "optimal_loss": o.optimal_loss, "interior": o.interior,
            "used": o.interior and fit.available, "note": o.note,
            "optimal_params_ci": None, "optimal_tokens_ci": None, "optimal_loss_ci": None,
        }
        if boot is not None and o.interior:
            for key, arr in (("optimal_params", boot.budget_params),
                             ("optimal_tokens", boot.budget_tokens),
                             ("optimal_loss", boot.budget_loss)):
                b[f"{key}_ci"] = fitting.percentile_interval(arr[:, j], cfg.ci)
        budgets.append(b)
    s = boot.samples if boot is not None else None
    warnings = list(fit.warnings)
    n_used = sum(1 for b in budgets if b["used"])
    if fit.available and n_used < MIN_LAW_POINTS:
        # a line through two minima has no residual degrees of freedom: its bootstrap only
        # re-draws those two points, so an interval from it would claim what the data cannot
        s = boot = None
        warnings.append(
            f"Approach 2's power laws run through only {n_used} interior budgets, which leaves "
            "no residual degrees of freedom, so they carry no interval; add budgets or widen "
            "the sizes so that at least three budgets have their minimum inside.")

    def law(fitted: fitting.PowerLaw | None, j: int) -> dict[str, Any] | None:
        return law_record(fitted, s[:, j] if s is not None else None,
                          s[:, j + 1] if s is not None else None, cfg.ci)

    return IsoflopSection.from_dict(plain({
        "available": fit.available,
        "message": fit.message,
        "warnings": warnings,
        "n_opt": law(fit.n_opt, 0),
        "d_opt": law(fit.d_opt, 2),
        "loss_opt": law(fit.loss_opt, 4),
        "budgets": budgets,
        "skipped_budgets": fit.skipped_budgets,
        "min_sizes_per_budget": MIN_SIZES_PER_BUDGET,
        "ci_level": cfg.ci,
        "bootstrap": None if boot is None else {
            "n_resamples": boot.n_resamples, "n_failed": boot.n_failed, "seed": cfg.seed,
            "resampling": "runs with replacement within each budget",
            "columns": list(boot.COLUMNS), "samples": boot.samples,
        },
    }))


def problem(sec: IsoflopSection) -> str:
    """Why Approach 2 cannot predict, as a clause ("" when it can)."""
    if sec.available:
        return ""
    return "Approach 2 has no power law (" + (sec.message or "no interior budget") + ")"


def warnings(sec: IsoflopSection) -> list[str]:
    """The sentences Approach 2 always reports (skipped and excluded budgets)."""
    return list(sec.warnings or [])


def describe(sec: IsoflopSection, pct: str) -> list[str]:
    """Approach 2's lines of ``describe()``."""
    if not sec.available:
        return [f"Approach 2 (IsoFLOP): {sec.message}"]
    budgets = sec.budgets or []
    ni = sum(1 for b in budgets if b.used)
    lines = [f"Approach 2 (IsoFLOP parabolas; {ni} of {len(budgets)} budgets interior):"]
    for law, label in ((sec.n_opt, "N_opt"), (sec.d_opt, "D_opt"), (sec.loss_opt, "L_opt")):
        if law:
            lines.append(f"  {label} = {law.coefficient:.4g} * C^{law.exponent:.3f}"
                         f"{interval_text(law.exponent_ci, '.3f')}")
    return lines
