"""How precise a sweep's answer will be, before it is trained: the precision forecast of ``plan``.

The plan's own runs (each budget's real parameter counts) are simulated under a prior law with
the run noise, fitted jointly with a parametric bootstrap (:mod:`flops_fit.fitting.synthetic`),
and the median 95% interval widths reported: N_opt (hi/lo), the loss (relative) and the
exponent a. The prior law is the run directory's current parametric fit when it has a usable
one; otherwise a stated default (:data:`PRIOR`), placed so that its optimum sits at the
planner's prior tokens per parameter at the middle budget. The run noise is
``estimate.noise`` when set, else the scatter the run directory's joint fit measured (its
residual sd of log loss, with at least :data:`MIN_NOISE_DOF` degrees of freedom), else
:data:`DEFAULT_NOISE`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from flops_fit.analysis.scaling_analysis import ScalingAnalysis
from flops_fit.errors import FlopsFitError
from flops_fit.fitting.synthetic import (
    ChinchillaLaw,
    PrecisionForecast,
    design_of_runs,
    forecast_precision,
    law_from_optimum,
)

#: the prior law's E, alpha, beta and reducible loss at the middle budget (nats/token): the
#: default GPT's own law, as Approach 3 fitted the default run (E 1.13, alpha 0.72, beta 0.53;
#: L* - E = 0.62 at 1e12). With it and 1% noise the forecast for the default plan on a fresh
#: run directory (N_opt 1.55x, loss 16.1%, a 0.074 at 4e14) was within 30% of what the default
#: run delivered (1.42x, 13.9%, 0.060); the previous prior (E 1, alpha 0.35, beta 0.45,
#: reducible 0.8) forecast 2.19x, 19.6% and 0.136. For a user's own model it is a guess: the
#: forecast of a run directory with a fit uses that fit and its measured scatter instead.
PRIOR = {"E": 1.13, "alpha": 0.72, "beta": 0.53, "reducible": 0.62}
#: simulated sweeps and bootstrap resamples per forecast (about 5 s on two CPU cores)
N_SIMS, N_BOOTSTRAP = 16, 80
#: run noise (sd of log loss) without a measurement: DEFAULT_NOISE_REASON says where it is from
DEFAULT_NOISE = 0.01
DEFAULT_NOISE_REASON = "the stated default"
#: a joint fit's residual sd counts as a measurement of the run noise from this many dof
MIN_NOISE_DOF = 10


@dataclass
class Forecast:
    """The forecast at ``target`` FLOPs, with where its prior law and noise came from."""

    target: float
    widths: PrecisionForecast
    prior: str
    noise: float
    noise_source: str = "estimate.noise"


def prior_law(analysis_path: Path | None, middle: float, tokens_per_param: float
              ) -> tuple[ChinchillaLaw, str]:
    """The run directory's usable parametric fit, else the default prior; and its name."""
    if analysis_path is not None and analysis_path.is_file():
        try:
            par = ScalingAnalysis.from_json(analysis_path).parametric
        except FlopsFitError:
            par = None
        if par is not None and par.available and not par.degenerate:
            E, A, B, alpha, beta = par.params
            if all(math.isfinite(v) and v > 0 for v in (A, B, alpha, beta)):
                return ChinchillaLaw(E, A, B, alpha, beta), "this run directory's parametric fit"
    law = law_from_optimum(PRIOR["E"], PRIOR["alpha"], PRIOR["beta"], middle,
                           tokens_per_param, PRIOR["reducible"])
    return law, (f"a default prior law (E {PRIOR['E']:g}, alpha {PRIOR['alpha']:g}, beta "
                 f"{PRIOR['beta']:g}, optimum at {tokens_per_param:g} tokens/param)")


def measured_noise(analysis_path: Path | None) -> float | None:
    """The run scatter (residual sd of log loss) of the run directory's joint fit, when it has
    one with at least :data:`MIN_NOISE_DOF` degrees of freedom."""
    if analysis_path is None or not analysis_path.is_file():
        return None
    try:
        joint = ScalingAnalysis.from_json(analysis_path).sections.get("joint")
    except FlopsFitError:
        return None
    sigma, dof = getattr(joint, "sigma", None), getattr(joint, "dof", None)
    if isinstance(sigma, float) and math.isfinite(sigma) and 0 < sigma < 0.5 \
            and isinstance(dof, int) and dof >= MIN_NOISE_DOF:
        return sigma
    return None


def forecast(budgets: list[float], params: list[float], target: float, noise: float | None,
             tokens_per_param: float, analysis_path: Path | None = None) -> Forecast:
    """Forecast the 95% interval widths at ``target`` of a plan whose run ``i`` has budget
    ``budgets[i]`` and ``params[i]`` parameters, under run noise ``noise`` (sd of log loss;
    None: measured in the run directory, else :data:`DEFAULT_NOISE`)."""
    design = design_of_runs(budgets, params)
    law, prior = prior_law(analysis_path, design.middle_budget, tokens_per_param)
    source = "estimate.noise"
    if noise is None:
        noise = measured_noise(analysis_path)
        source = "the scatter this run directory's joint fit measured"
        if noise is None:
            noise, source = DEFAULT_NOISE, DEFAULT_NOISE_REASON
    widths = forecast_precision(design, noise, law, target_compute=target, n_sims=N_SIMS,
                                n_bootstrap=N_BOOTSTRAP)
    return Forecast(target, widths, prior, noise, source)


def forecast_lines(f: Forecast) -> list[str]:
    """The forecast as ``plan`` prints it."""
    w = f.widths
    if w.n_imprecise * 2 > w.n_sims:
        return [f"Precision forecast: in {w.n_imprecise} of {w.n_sims} simulated sweeps the "
                "joint fit could not pin its intervals (too few budgets with the optimum "
                "inside their sizes); add budgets or sizes."]
    return [f"Precision forecast at C={f.target:.3g} (95%, simulated: {w.n_sims} sweeps of "
            f"this plan, {100 * f.noise:.2g}% run noise ({f.noise_source}), {f.prior}): "
            f"N_opt within "
            f"{w.n_opt_width:.2f}x (hi/lo), loss within {100 * w.loss_width:.1f}%, exponent a "
            f"within {w.a_width:.3f}."]
