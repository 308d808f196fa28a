"""Approach 3: the parametric law ``L(N, D) = E + A / N**alpha + B / D**beta``.

Its section of ``scaling_laws.json`` is ``parametric`` (:class:`~.sections.ParametricSection`);
its allocation is evaluated by :func:`~.laws.parametric_curve`. :func:`build` fits it,
:func:`problem` says why it cannot predict, :func:`describe` gives its lines of ``describe()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flops_fit import fitting
from flops_fit.analysis.sections import ParametricSection, interval_text, plain
from flops_fit.config import AnalysisConfig
from flops_fit.errors import FlopsFitError


def build(runs: Any, cfg: AnalysisConfig, kappa: float) -> ParametricSection:
    """Approach 3 of ``runs`` (``n, d, loss``: arrays of shape ``(R,)``) with its bootstrap.

    ``kappa``: FLOPs per parameter and token of the allocation ``C = kappa N D``.
    """
    n, d, loss = runs.n, runs.d, runs.loss
    n_free = 4 if cfg.fix_E is not None else 5
    if n.size < n_free:
        return ParametricSection.from_dict({"available": False, "message": (
            f"The parametric fit needs at least {n_free} runs and has {n.size}; it waits "
            "for more runs.")})
    if cfg.fix_E is not None and not cfg.fix_E < loss.min():
        raise FlopsFitError(
            f"analysis.fix_E={cfg.fix_E:g} is not below the lowest observed loss "
            f"{loss.min():.4g}; lower it or set it to null."
        )
    fit = fitting.fit_parametric(n, d, loss, loss_type=cfg.loss, huber_delta=cfg.huber_delta,
                                 fix_E=cfg.fix_E)
    sec: dict[str, Any] = {
        "available": True, "message": "",
        "E": fit.E, "A": fit.A, "B": fit.B, "alpha": fit.alpha, "beta": fit.beta,
        "a": fit.a, "b": fit.b, "G": fit.G,
        "form": "L(N, D) = E + A / N**alpha + B / D**beta",
        "loss": fit.loss, "huber_delta": cfg.huber_delta if fit.loss == "huber" else None,
        "objective": fit.objective, "n_points": fit.n_points,
        "fixed_E": cfg.fix_E, "min_observed_loss": fit.min_observed_loss,
        "converged": fit.converged, "n_starts": fit.n_starts,
        "degenerate": fit.degenerate, "degenerate_reasons": fit.degenerate_reasons,
        "flops_per_param_token": kappa, "ci_level": cfg.ci,
    }
    g = fit.G
    sec["n_opt"] = {"coefficient": g * kappa ** (-fit.a), "exponent": fit.a,
                    "coefficient_ci": None, "exponent_ci": None}
    sec["d_opt"] = {"coefficient": kappa ** (-fit.b) / g, "exponent": fit.b,
                    "coefficient_ci": None, "exponent_ci": None}
    for name in (*fitting.PARAM_NAMES, "a", "b"):
        sec[f"{name}_ci"] = None
        sec[f"{name}_se"] = None
    sec["bootstrap"] = None
    if cfg.bootstrap > 0:
        boot = fitting.bootstrap_parametric(fit, n, d, loss, n_resamples=cfg.bootstrap,
                                            ci=cfg.ci, seed=cfg.seed)
        for name in (*fitting.PARAM_NAMES, "a", "b"):
            if fit.fixed_E and name == "E":
                continue
            sec[f"{name}_ci"] = boot.interval(name)
            sec[f"{name}_se"] = boot.se(name)
        s = boot.samples
        with np.errstate(all="ignore"):
            gs = (s[:, 3] * s[:, 1] / (s[:, 4] * s[:, 2])) ** (1.0 / (s[:, 3] + s[:, 4]))
            a_s = s[:, 4] / (s[:, 3] + s[:, 4])
            b_s = 1.0 - a_s
            sec["n_opt"]["coefficient_ci"] = fitting.percentile_interval(
                gs * kappa ** (-a_s), cfg.ci)
            sec["d_opt"]["coefficient_ci"] = fitting.percentile_interval(
                kappa ** (-b_s) / gs, cfg.ci)
        sec["n_opt"]["exponent_ci"] = sec["a_ci"]
        sec["d_opt"]["exponent_ci"] = sec["b_ci"]
        sec["bootstrap"] = {
            "n_resamples": boot.n_resamples, "n_failed": boot.n_failed, "seed": cfg.seed,
            "resampling": "runs with replacement; each refit warm-started from the full fit",
            "columns": list(fitting.PARAM_NAMES), "samples": s,
        }
    return ParametricSection.from_dict(plain(sec))


def problem(sec: ParametricSection) -> str:
    """Why Approach 3 should not predict, as a clause ("" when it can)."""
    if sec.available and not sec.degenerate:
        return ""
    return f"the parametric fit {sec.problem()}"


def warnings(sec: ParametricSection) -> list[str]:
    """Approach 3 reports nothing of its own beyond :func:`problem`."""
    return []


def describe(sec: ParametricSection, pct: str) -> list[str]:
    """Approach 3's lines of ``describe()``."""
    p = sec
    if not p.available:
        return [f"Approach 3 (parametric): {p.message}"]
    how = f"{p.loss}" + (f" delta={p.huber_delta:g}" if p.huber_delta else "")
    n_boot = p.bootstrap.n_resamples if p.bootstrap is not None else 0
    iv = interval_text
    lines = [f"Approach 3 (parametric, L(N, D) = E + A/N^alpha + B/D^beta; {how}; "
             f"{p.n_points} runs; {n_boot} bootstrap resamples, {pct} intervals):"]
    fixed = " (fixed)" if p.fixed_E is not None else ""
    lines.append(f"  E = {p.E:.4g}{fixed}{iv(p.E_ci)}   A = {p.A:.4g}{iv(p.A_ci)}"
                 f"   B = {p.B:.4g}{iv(p.B_ci)}")
    lines.append(f"  alpha = {p.alpha:.4f}{iv(p.alpha_ci, '.4f')}   "
                 f"beta = {p.beta:.4f}{iv(p.beta_ci, '.4f')}")
    lines.append(f"  N_opt ~ C^{p.a:.3f}{iv(p.a_ci, '.3f')}   "
                 f"D_opt ~ C^{p.b:.3f}{iv(p.b_ci, '.3f')}")
    if p.degenerate:
        lines.append("  DEGENERATE: " + "; ".join(p.degenerate_reasons or []))
    return lines
