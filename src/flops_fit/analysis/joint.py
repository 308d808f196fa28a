"""The joint IsoFLOP fit as an approach: one model for every run of the sweep.

    L(N, C) = E + A C**-gamma (1 + kappa (ln N - ln N*(C))**2),   N*(C) = G C**a

Six parameters on all runs instead of three per budget (:mod:`flops_fit.fitting.joint`), a
floored loss frontier ``L*(C) = E + A C**-gamma``, and a parametric bootstrap that cannot fail
on 4-run budgets. Its section of ``scaling_laws.json`` is ``joint``
(:class:`~.sections.JointSection`); :func:`~.laws.joint_curve` evaluates it. The per-budget
parabolas (Approach 2) stay as the picture and the check of it.
"""

from __future__ import annotations

import math
from typing import Any

from flops_fit import fitting
from flops_fit.analysis.sections import (
    JointSection,
    interval_text,
    plain,
)
from flops_fit.config import AnalysisConfig

FORM = "L(N, C) = E + A * C**-gamma * (1 + kappa * (ln N - ln(G * C**a))**2)"


def _interval(boot: fitting.JointBootstrap | None, name: str, ok: bool) -> list | None:
    if boot is None or not ok:
        return None
    lo, hi = boot.interval(name)
    return plain([lo, hi]) if math.isfinite(lo) and math.isfinite(hi) else None


def build(runs: Any, cfg: AnalysisConfig, kappa: float) -> JointSection:
    """The joint fit of ``runs`` (``budget, n, d, c, loss``: arrays of shape ``(R,)``) with its
    bootstrap; E free, or fixed at ``analysis.fix_E``."""
    fit = fitting.fit_joint(runs.budget, runs.n, runs.d, runs.loss, runs.c, fix_E=cfg.fix_E,
                            n_bootstrap=cfg.bootstrap, ci=cfg.ci, seed=cfg.seed)
    if not fit.available:
        return JointSection.from_dict({"available": False, "message": fit.message,
                                       "warnings": list(fit.warnings)})
    boot = fit.bootstrap
    ok = bool(fit.precise and boot is not None and boot.usable)
    k = fit.flops_per_param_token
    a_ci, b_ci, g_ci = (_interval(boot, q, ok) for q in ("a", "b", "G"))
    # D*(C) = C**(1-a) / (k G): its coefficient's interval is G's (t/z-widened in log space),
    # mapped through the decreasing 1 / (k G), so the three laws' intervals are built alike
    d_coef_ci = None if g_ci is None else [1.0 / (k * g_ci[1]), 1.0 / (k * g_ci[0])]
    sec: dict[str, Any] = {
        "available": True, "message": "", "warnings": list(fit.warnings),
        "precise": bool(fit.precise), "reason": fit.reason, "form": FORM,
        "E": fit.E, "A": fit.A, "gamma": fit.gamma, "kappa": fit.kappa, "G": fit.G,
        "a": fit.a, "b": 1.0 - fit.a,
        "floor": "fixed (analysis.fix_E)" if cfg.fix_E is not None else "free",
        "floor_choice": None, "flops_per_param_token": k, "sigma": fit.sigma, "dof": fit.dof,
        "n_points": fit.n_points, "ci_level": cfg.ci,
        "n_opt": {"coefficient": fit.G, "exponent": fit.a,
                  "coefficient_ci": g_ci,
                  "exponent_ci": a_ci},
        "d_opt": {"coefficient": 1.0 / (k * fit.G), "exponent": 1.0 - fit.a,
                  "coefficient_ci": d_coef_ci, "exponent_ci": b_ci},
        "E_ci": None if cfg.fix_E is not None else _interval(boot, "E", ok),
        "gamma_ci": _interval(boot, "gamma", ok),
        "a_ci": a_ci, "b_ci": b_ci,
        "budgets": [{
            "compute_budget": b.compute_budget, "compute": b.compute, "n_runs": b.n_runs,
            "n_sizes": b.n_sizes, "params_range": [math.exp(v) for v in b.log_n_range],
            "optimal_params": b.optimal_params, "interior": b.interior,
        } for b in fit.budgets],
        "bootstrap": None if boot is None else {
            "n_resamples": boot.n_resamples, "n_failed": boot.n_failed, "seed": cfg.seed,
            "resampling": "parametric: fitted log loss + resampled residuals (inflated by "
                          "sqrt(m / dof)), each refit warm-started; percentiles widened by "
                          "t_dof / z and by the failed fraction",
            "columns": list(fitting.JOINT_PARAM_NAMES), "samples": boot.samples,
            "dof": boot.dof, "sigma": boot.sigma,
        },
    }
    return JointSection.from_dict(plain(sec))


def problem(sec: JointSection) -> str:
    """Why the joint fit cannot predict, as a clause ("" when it can)."""
    if not sec.available:
        return "the joint IsoFLOP fit is unavailable (" + str(sec.message).rstrip(".") + ")"
    if not sec.precise:
        why = str(sec.reason).rstrip(".")
        return "the joint IsoFLOP fit cannot pin its intervals (" + why[:1].lower() + why[1:] + ")"
    return ""


def warnings(sec: JointSection) -> list[str]:
    """The joint fit's own sentences (its failed refits, an imprecise fit)."""
    return list(sec.warnings or [])


def describe(sec: JointSection, pct: str) -> list[str]:
    """The joint fit's lines of ``describe()``."""
    if not sec.available:
        return [f"Joint IsoFLOP fit: {sec.message}"]
    boot = sec.bootstrap
    n_boot = boot.n_resamples if boot is not None else 0
    iv = interval_text
    interior = sum(1 for b in sec.budgets or [] if b.interior)
    lines = [f"Joint IsoFLOP fit (one model for all {sec.n_points} runs, E {sec.floor}; "
             f"{interior} of {len(sec.budgets or [])} budgets interior; {n_boot} parametric "
             f"bootstrap resamples, {pct} intervals):"]
    lines.append(f"  N_opt = {sec.G:.4g} * C^{sec.a:.3f}{iv(sec.a_ci, '.3f')}   "
                 f"D_opt ~ C^{sec.b:.3f}{iv(sec.b_ci, '.3f')}")
    # E is a loss (nats/token): 4 decimals, so a floor fitted at 0 reads 0.0000, not 5e-28
    lines.append(f"  L_opt = {sec.E:.4f}{iv(sec.E_ci, '.4f')} + {sec.A:.4g} * C^-{sec.gamma:.4f}"
                 f"{iv(sec.gamma_ci, '.4f')}   curvature kappa = {sec.kappa:.3g}; "
                 f"run scatter {100 * (sec.sigma or 0):.2f}% ({sec.dof} dof)")
    if not sec.precise:
        lines.append(f"  NO INTERVALS: {sec.reason}")
    return lines
