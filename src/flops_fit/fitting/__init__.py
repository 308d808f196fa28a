"""The numerics of flops-fit: IsoFLOP minima, power laws, the parametric loss L(N, D), bootstrap.

Plain numpy arrays in, dataclasses out; numpy and scipy only. Units throughout:

* ``n``  -- parameters N (count, > 0), shape ``(n_runs,)``;
* ``d``  -- training tokens D (count, > 0), shape ``(n_runs,)``;
* ``c``  -- training compute C in FLOPs (> 0), shape ``(n_runs,)``;
* ``loss`` -- final held-out loss in nats per token (> 0), shape ``(n_runs,)``.

Three estimators of the compute-optimal allocation, after Hoffmann et al. (2022):

* **Approach 1** (:func:`fit_envelope`): the lower envelope of the training curves; per FLOP
  level the run with the lowest loss, then ``N_opt = k * C**a``.
* **Approach 2** (:func:`fit_isoflop`): per compute budget a parabola of loss in ``log N`` (and in
  ``log D``); its vertex is that budget's optimum. Vertices outside the sampled sizes are flagged
  and excluded. Then ``N_opt = k * C**a``, ``D_opt = k * C**b`` and the loss frontier
  ``L_opt = k * C**c`` in log-log space, with a bootstrap that resamples runs within budgets.
* **Approach 3** (:func:`fit_parametric`): ``L(N, D) = E + A / N**alpha + B / D**beta`` fitted in
  the log-sum-exp form with the Huber loss (``delta = 1e-3``) on log loss, summed over runs, or
  plain least squares on log loss. The optimiser is variable projection: for fixed
  ``(alpha, beta)`` the model is linear in ``(E, A, B)``, solved by nonnegative least squares on
  relative residuals over a grid of ``(alpha, beta)``; the best grid points then start an
  L-BFGS-B polish of all five parameters with analytic gradients on the exact objective.
  :func:`bootstrap_parametric` refits resamples warm-started from the full-data optimum.

The package depends on nothing else in flops_fit; its modules are ``common`` (shared
numerics), ``isoflop`` (Approach 2), ``parametric`` (Approach 3) and ``envelope``
(Approach 1), and:
``joint`` -- the joint IsoFLOP fit (one model for all runs) and its parametric bootstrap;
``floor`` -- the floor E chosen by leave-future-out validation, for the joint fit and Approach 3;
``asymmetry`` -- the joint fit refitted with a skewed profile (a diagnostic, not the default);
``synthetic`` -- sweeps from known Chinchilla laws (calibration, precision forecast).
"""

from __future__ import annotations

from flops_fit.fitting.asymmetry import SkewFit, bootstrap_joint_skew, fit_joint_skew
from flops_fit.fitting.common import (
    EXPONENT_BOUNDS,
    PARAM_NAMES,
    PowerLaw,
    fit_power_law,
    percentile_interval,
    serial_blas,
)
from flops_fit.fitting.envelope import EnvelopeFit, fit_endpoint_envelope, fit_envelope
from flops_fit.fitting.floor import (
    FloorChoice,
    choose_floor,
    fit_joint_floor,
    fit_parametric_floor,
)
from flops_fit.fitting.isoflop import (
    BudgetOptimum,
    IsoFlopBootstrap,
    IsoFlopFit,
    fit_isoflop,
    isoflop_optima,
)
from flops_fit.fitting.joint import (
    JOINT_PARAM_NAMES,
    JointBootstrap,
    JointBudget,
    JointFit,
    bootstrap_joint,
    fit_joint,
    joint_quantity,
)
from flops_fit.fitting.parametric import (
    ParametricBootstrap,
    ParametricFit,
    bootstrap_parametric,
    fit_parametric,
    optimal_allocation,
    parametric_loss,
)
from flops_fit.fitting.synthetic import (
    ChinchillaLaw,
    Design,
    PrecisionForecast,
    Sweep,
    forecast_precision,
    simulate_sweep,
)

__all__ = [
    "EXPONENT_BOUNDS",
    "PARAM_NAMES",
    "BudgetOptimum",
    "EnvelopeFit",
    "IsoFlopBootstrap",
    "IsoFlopFit",
    "ParametricBootstrap",
    "ParametricFit",
    "PowerLaw",
    "bootstrap_parametric",
    "fit_endpoint_envelope",
    "fit_envelope",
    "fit_isoflop",
    "fit_parametric",
    "fit_power_law",
    "isoflop_optima",
    "optimal_allocation",
    "parametric_loss",
    "percentile_interval",
    "serial_blas",
    "ChinchillaLaw",
    "Design",
    "FloorChoice",
    "JOINT_PARAM_NAMES",
    "JointBootstrap",
    "JointBudget",
    "JointFit",
    "PrecisionForecast",
    "SkewFit",
    "Sweep",
    "bootstrap_joint",
    "bootstrap_joint_skew",
    "choose_floor",
    "fit_joint",
    "joint_quantity",
    "fit_joint_floor",
    "fit_joint_skew",
    "fit_parametric_floor",
    "forecast_precision",
    "simulate_sweep",
]
