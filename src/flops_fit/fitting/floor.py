"""The floor E chosen by forward validation (leave-future-out), for the joint fit and Approach 3.

A free floor E is poorly pinned by a 16-32x span of compute: E and the frontier's exponent trade
off, and the extrapolation follows whichever the noise favours. Instead, hold E fixed on a grid
in ``[0, min loss)`` and ask which E *forecasts* best: for every split "fit on the k smallest
budgets (k >= 3), score the runs of each larger budget", the forward error of a held-out budget
is the RMS of its runs' log-loss residuals. Averaged over all (split, held-out budget) pairs it
ranks the grid; the best E is chosen, and every E whose mean error exceeds the best by less than
one standard error of the paired difference (or by less than ``tolerance`` of the best error)
is "nearly as good". The intervals then mix over those: :func:`fit_joint_floor` and
:func:`fit_parametric_floor` bootstrap with E drawn from the admissible set (after Marin's fixed
floor and leave-future-out checks, and Open-Athena's validation of the floor).

Fixed-E fits are cheap (the joint fit's grid shrinks to ``(gamma, a)``; Approach 3's to
``(alpha, beta)`` with E known), so a 24-point grid over a few splits takes about a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from flops_fit.fitting.common import serial
from flops_fit.fitting.joint import (
    JointFit,
    JointProblem,
    bootstrap_joint,
    fit_joint,
    fit_problem,
    prepare_runs,
)
from flops_fit.fitting.parametric import (
    ParametricBootstrap,
    ParametricFit,
    bootstrap_parametric,
    fit_parametric,
)

#: at most this many admissible E values carry their own fit into a mixed bootstrap
MAX_MIXED_FLOORS = 6


@dataclass
class FloorChoice:
    """The floor E chosen by forward validation.

    ``grid`` ``(g,)`` E values tried (nats/token), ``forward_error`` ``(g,)`` their mean forward
    RMS log-loss error over ``n_units`` (split, held-out budget) pairs and ``forward_se`` the
    standard error of each one's paired difference to the best. ``admissible`` holds the
    nearly-as-good E values, ``E_range`` their span. ``free_E`` is the E of the same model
    fitted freely to all runs, ``free_forward_error`` its forward error (the free fit refitted
    per split), for comparison. ``message`` says why no choice was made (``available`` False).
    """

    E: float
    admissible: np.ndarray
    grid: np.ndarray
    forward_error: np.ndarray
    forward_se: np.ndarray
    free_E: float
    free_forward_error: float
    method: str
    n_splits: int
    n_units: int
    tolerance: float
    warnings: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def available(self) -> bool:
        return not self.message

    @property
    def E_range(self) -> tuple[float, float]:
        if self.admissible.size == 0:
            return (math.nan, math.nan)
        return float(self.admissible.min()), float(self.admissible.max())

    def table(self) -> list[tuple[float, float]]:
        """``[(E, forward error), ...]`` over the grid."""
        return [(float(e), float(f)) for e, f in zip(self.grid, self.forward_error, strict=True)]


# --------------------------------------------------------------------------------------------
# one model fitted on some budgets, scored on others
# --------------------------------------------------------------------------------------------


def _joint_forecast(n, c, loss, fit_mask, fix_E, warm):
    """Fit the joint model (E fixed or free) on ``fit_mask``; predicted loss of every run."""
    prob = JointProblem(n[fit_mask], c[fit_mask], loss[fit_mask], fix_E)
    best, _, _ = fit_problem(prob, loss[fit_mask], n_starts=2 if warm is not None else 4,
                            warm=warm)
    if best is None:
        return None, None
    E, A, g, kap, G, a = prob.natural(best.x)
    u = np.log(n) - math.log(G) - a * np.log(c)
    return E + A * c ** (-g) * (1.0 + kap * u * u), best.x


def _parametric_forecast(n, d, loss, fit_mask, fix_E, warm):
    kw = dict(alpha_grid=np.geomspace(0.05, 2.0, 14), beta_grid=np.geomspace(0.05, 2.0, 14),
              n_starts=3)
    try:
        f = fit_parametric(n[fit_mask], d[fit_mask], loss[fit_mask], fix_E=fix_E, **kw)
    except ValueError:
        return None, None
    return np.asarray(f.predict(n, d)), None


@serial
def choose_floor(
    budget: Sequence[float] | np.ndarray,
    n: Sequence[float] | np.ndarray,
    d: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    c: Sequence[float] | np.ndarray | None = None,
    *,
    method: str = "joint",
    n_grid: int = 24,
    min_fit_budgets: int = 3,
    tolerance: float = 0.02,
) -> FloorChoice:
    """Choose the floor E by leave-future-out validation.

    Parameters
    ----------
    budget, n, d, loss, c : (m,) as for :func:`flops_fit.fitting.joint.fit_joint`.
    method : ``"joint"`` (the joint IsoFLOP model) or ``"parametric"`` (Approach 3, Huber).
    n_grid : E values tried, evenly spaced over ``[0, min loss)`` (Approach 3 starts at
        ``1e-3 * min loss``: its fixed E must be positive).
    min_fit_budgets : the smallest number of budgets a split fits on.
    tolerance : E values whose mean forward error is within this fraction of the best are
        admissible even when the standard error is smaller.
    """
    if method not in ("joint", "parametric"):
        raise ValueError("method must be 'joint' or 'parametric'")
    budget, n, d, loss, c = prepare_runs(budget, n, d, loss, c)
    keys = np.unique(budget)
    lmin = float(loss.min())
    grid = lmin * np.arange(n_grid) / n_grid
    if method == "parametric":
        grid[0] = 1e-3 * lmin
    nan = math.nan
    if keys.size < min_fit_budgets + 1:
        msg = (f"Choosing the floor by forward validation needs at least {min_fit_budgets + 1} "
               f"budgets (fit on {min_fit_budgets}, score the next); there are {keys.size}.")
        return FloorChoice(nan, np.array([]), grid, np.full(n_grid, nan), np.full(n_grid, nan),
                           nan, nan, method, 0, 0, tolerance, [msg], msg)
    splits = list(range(min_fit_budgets, keys.size))
    units: list[tuple[int, np.ndarray]] = []  # (split index, held-out mask)
    for s, k in enumerate(splits):
        for key in keys[k:]:
            units.append((s, budget == key))
    err = np.full((n_grid + 1, len(units)), np.nan)  # last row: free E
    for s, k in enumerate(splits):
        fit_mask = np.isin(budget, keys[:k])
        warm = None
        for i, e in enumerate([*grid, None]):
            if method == "joint":
                pred, warm_new = _joint_forecast(n, c, loss, fit_mask, e, warm if e is not None
                                                 else None)
                warm = warm_new if e is not None else warm
            else:
                pred, _ = _parametric_forecast(n, d, loss, fit_mask, e, None)
            if pred is None:
                continue
            with np.errstate(all="ignore"):
                r = np.log(pred) - np.log(loss)
            for j, (s_j, mask) in enumerate(units):
                if s_j == s:
                    err[i, j] = math.sqrt(float(np.mean(r[mask] ** 2)))
    mean = np.nanmean(np.where(np.isfinite(err), err, np.nan), axis=1)
    grid_mean = mean[:n_grid]
    if not np.any(np.isfinite(grid_mean)):
        msg = "No fixed-floor fit succeeded on the forward splits, so no floor was chosen."
        return FloorChoice(nan, np.array([]), grid, grid_mean, np.full(n_grid, nan), nan, nan,
                           method, len(splits), len(units), tolerance, [msg], msg)
    best = int(np.nanargmin(grid_mean))
    diff = err[:n_grid] - err[best][None, :]
    with np.errstate(all="ignore"):
        se = np.nanstd(diff, axis=1, ddof=1) / math.sqrt(len(units)) if len(units) > 1 else \
            np.zeros(n_grid)
    se = np.where(np.isfinite(se), se, 0.0)
    excess = grid_mean - grid_mean[best]
    ok = np.isfinite(excess) & ((excess <= se) | (excess <= tolerance * grid_mean[best]))
    free = fit_joint(budget, n, d, loss, c) if method == "joint" else \
        fit_parametric(n, d, loss)
    choice = FloorChoice(float(grid[best]), grid[ok], grid, grid_mean, se, float(free.E),
                         float(mean[n_grid]), method, len(splits), len(units), tolerance)
    if len(splits) < 2:
        choice.warnings.append(
            f"The floor was validated on one split only ({keys.size} budgets), so its admissible "
            "range is rough.")
    if best == n_grid - 1:
        choice.warnings.append("The best floor is the highest tried, just under the lowest "
                               "observed loss: the runs may not constrain it.")
    return choice


def _spread(values: np.ndarray, best: float, k: int = MAX_MIXED_FLOORS) -> np.ndarray:
    """At most ``k`` of ``values``, evenly spread and always including ``best``."""
    values = np.sort(np.asarray(values, dtype=float))
    if values.size <= k:
        return values
    pick = values[np.round(np.linspace(0, values.size - 1, k)).astype(int)]
    if best not in pick:
        pick[np.argmin(np.abs(pick - best))] = best
    return np.unique(pick)


# --------------------------------------------------------------------------------------------
# fits with the validated floor, intervals mixed over the admissible floors
# --------------------------------------------------------------------------------------------


def fit_joint_floor(
    budget: Sequence[float] | np.ndarray,
    n: Sequence[float] | np.ndarray,
    d: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    c: Sequence[float] | np.ndarray | None = None,
    *,
    choice: FloorChoice | None = None,
    n_bootstrap: int = 200,
    ci: float = 0.95,
    seed: int | None = 0,
) -> JointFit:
    """The joint fit with E fixed at the forward-validated floor.

    Its bootstrap draws each resample's E from the admissible floors (at most
    :data:`MAX_MIXED_FLOORS` of them), so the intervals carry the floor's spread. Falls back to
    the free-E fit, with a warning, when no floor can be validated (fewer than 4 budgets).
    ``fit.floor`` holds the :class:`FloorChoice`.
    """
    if choice is None:
        choice = choose_floor(budget, n, d, loss, c, method="joint")
    if not choice.available:
        fit = fit_joint(budget, n, d, loss, c, n_bootstrap=n_bootstrap, ci=ci, seed=seed)
        fit.warnings.append(choice.message + " The floor E is fitted freely instead.")
        fit.floor = choice
        return fit
    fit = fit_joint(budget, n, d, loss, c, fix_E=choice.E)
    fit.floor = choice
    if n_bootstrap > 0 and fit.precise:
        others = [fit_joint(budget, n, d, loss, c, fix_E=float(e))
                  for e in _spread(choice.admissible, choice.E) if e != choice.E]
        fit.bootstrap = bootstrap_joint(fit, n_resamples=n_bootstrap, ci=ci, seed=seed,
                                        floor_fits=[f for f in others if f.available])
    return fit


def fit_parametric_floor(
    budget: Sequence[float] | np.ndarray,
    n: Sequence[float] | np.ndarray,
    d: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    *,
    choice: FloorChoice | None = None,
    n_bootstrap: int = 200,
    ci: float = 0.95,
    seed: int | None = 0,
    **fit_kwargs,
) -> tuple[ParametricFit, ParametricBootstrap | None, FloorChoice]:
    """Approach 3 with E fixed at the forward-validated floor, bootstrap mixed over floors.

    The resamples are split evenly over the admissible floors (at most
    :data:`MAX_MIXED_FLOORS`); each share is :func:`bootstrap_parametric` of the fit with that E
    held fixed, and the samples are pooled (``n_failed`` summed). Returns ``(fit at the chosen
    E, pooled bootstrap or None, choice)``; without a validated floor, the free-E fit.
    """
    budget, n, d, loss, _ = prepare_runs(budget, n, d, loss, None)
    if choice is None:
        choice = choose_floor(budget, n, d, loss, method="parametric")
    if not choice.available:
        fit = fit_parametric(n, d, loss, **fit_kwargs)
        boot = (bootstrap_parametric(fit, n, d, loss, n_resamples=n_bootstrap, ci=ci, seed=seed)
                if n_bootstrap > 0 else None)
        return fit, boot, choice
    fit = fit_parametric(n, d, loss, fix_E=choice.E, **fit_kwargs)
    if n_bootstrap <= 0:
        return fit, None, choice
    floors = _spread(choice.admissible, choice.E)
    shares = np.diff(np.round(np.linspace(0, n_bootstrap, floors.size + 1)).astype(int))
    parts, failed = [], 0
    for j, (e, share) in enumerate(zip(floors, shares, strict=True)):
        if share == 0:
            continue
        f_e = fit if e == choice.E else fit_parametric(n, d, loss, fix_E=float(e), **fit_kwargs)
        b = bootstrap_parametric(f_e, n, d, loss, n_resamples=int(share), ci=ci,
                                 seed=None if seed is None else seed + j)
        parts.append(b.samples)
        failed += b.n_failed
    boot = ParametricBootstrap(np.concatenate(parts), n_bootstrap, failed, ci)
    return fit, boot, choice
