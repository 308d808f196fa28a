"""The joint IsoFLOP fit: one model for every run of a sweep, with a parametric bootstrap.

    L(N, C) = E + A * C**(-gamma) * (1 + kappa * (ln N - ln N*(C))**2),   N*(C) = G * C**a

Six parameters for all runs at once (Approach 2 spends three on every 4-run budget), fitted by
least squares on log loss with each run's *spent* compute C. The frontier is
``L*(C) = E + A C**-gamma``; a constant relative curvature ``kappa`` is exact to second order for
a Chinchilla law with ``D ∝ C/N`` (``kappa = alpha beta / 2``, ``a = beta / (alpha + beta)``).
Tokens: ``D*(C) = C / (k N*(C))`` with ``k = median(c / (n d))``. Optimiser: for fixed
``(E, gamma, a)`` the model is linear (``L - E = C**-gamma (b0 + b1 v + b2 v**2)``,
``v = ln N - a ln C``), solved for a whole grid at once; the best points start a bounded
``least_squares`` polish with an analytic Jacobian. Intervals (:func:`bootstrap_joint`):
simulated ``log loss = fitted + resampled residuals`` (inflated by ``sqrt(m / (m - p))``),
refitted warm-started; failed refits are counted and widen the interval, and percentile
intervals are widened about the estimate by ``t_{dof} / z`` (sigma is estimated from few runs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.optimize import least_squares

from flops_fit.fitting.common import (
    PowerLaw,
    as_positive_array,
    percentile_interval,
    serial,
)

Array = Sequence[float] | np.ndarray
JOINT_PARAM_NAMES = ("E", "A", "gamma", "kappa", "G", "a")
#: quantities :meth:`JointBootstrap.interval` knows (``n_opt``, ``d_opt``, ``loss_opt`` need C)
JOINT_QUANTITIES = (*JOINT_PARAM_NAMES, "b", "n_opt", "d_opt", "loss_opt")
#: a bootstrap with more than this fraction of failed refits gives no intervals
MAX_FAILED_FRACTION = 0.05
#: fewer budgets with their fitted optimum inside the sampled sizes leave N_opt(C) unpinned
MIN_INTERIOR_BUDGETS = 3
#: bounds of (ln A', gamma, ln kappa, g', a) beyond the data-dependent ones of E and ln A'
_BOUNDS = ((1e-4, 3.0), (math.log(1e-5), math.log(1e3)), (-30.0, 30.0), (-1.0, 2.0))


class JointProblem:
    """Log-loss residuals of the joint model in centred coordinates ``x = ln N - x0``,
    ``t = ln C - t0``: ``theta = (E, lnA', gamma, ln kappa, g', a)`` (no E when fixed),
    ``A = exp(lnA' + gamma t0)``, ``ln N*(C) = x0 + g' + a (ln C - t0)``."""

    def __init__(self, n: np.ndarray, c: np.ndarray, y: np.ndarray, fixed_E: float | None):
        self.x0, self.t0 = float(np.mean(np.log(n))), float(np.mean(np.log(c)))
        self.x, self.t = np.log(n) - self.x0, np.log(c) - self.t0
        self.ly, self.fixed_E = np.log(y), fixed_E
        self.p = 5 if fixed_E is not None else 6

    def full(self, theta: np.ndarray) -> np.ndarray:
        return theta if self.fixed_E is None else np.concatenate([[self.fixed_E], theta])

    def model(self, theta: np.ndarray) -> np.ndarray:
        E, la, g, lk, gp, a = self.full(theta)
        u = self.x - gp - a * self.t
        return E + np.exp(la - g * self.t) * (1.0 + math.exp(lk) * u * u)

    def resid(self, theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            r = np.log(self.model(theta)) - self.ly
        return np.where(np.isfinite(r), r, 1e3)

    def jac(self, theta: np.ndarray) -> np.ndarray:
        E, la, g, lk, gp, a = self.full(theta)
        u = self.x - gp - a * self.t
        f = np.exp(la - g * self.t)
        fk = f * math.exp(lk)
        R = f + fk * u * u
        cols = [R, -self.t * R, fk * u * u, -2.0 * fk * u, -2.0 * fk * u * self.t]
        if self.fixed_E is None:
            cols = [np.ones_like(R), *cols]
        return np.stack(cols, axis=1) / (E + R)[:, None]

    def bounds(self, y_min: float, y_max: float) -> tuple[np.ndarray, np.ndarray]:
        lo = [math.log(y_min) - 25.0, *(b[0] for b in _BOUNDS)]
        hi = [math.log(y_max) + 10.0, *(b[1] for b in _BOUNDS)]
        if self.fixed_E is None:
            lo, hi = [0.0, *lo], [y_min * (1.0 - 1e-9), *hi]
        return np.array(lo), np.array(hi)

    def natural(self, theta: np.ndarray) -> np.ndarray:
        """``(E, A, gamma, kappa, G, a)`` of a centred vector."""
        E, la, g, lk, gp, a = self.full(theta)
        return np.array([E, math.exp(la + g * self.t0), g, math.exp(lk),
                         math.exp(self.x0 + gp - a * self.t0), a])


def grid_starts(prob: JointProblem, y: np.ndarray, E_values: np.ndarray, n_starts: int,
                gammas: np.ndarray, a_values: np.ndarray) -> list[np.ndarray]:
    """The ``n_starts`` best feasible points of a ``(E, gamma, a)`` grid (variable projection).

    For fixed ``(E, gamma, a)``, ``(L - E) / L = C**-gamma (b0 + b1 v + b2 v**2) / L`` is linear
    in ``b``: every grid point is solved at once by its 3x3 normal equations on relative
    residuals, then scored on the exact sum of squared log residuals.
    """
    w = 1.0 / y
    f = np.exp(-np.outer(gammas, prob.t))  # (ng, m)
    v = prob.x[None, :] - np.outer(a_values, prob.t)  # (na, m)
    basis = np.stack([np.ones_like(v), v, v * v], axis=-1)  # (na, m, 3)
    X = f[:, None, :, None] * basis[None] * w[None, None, :, None]  # (ng, na, m, 3)
    gram = np.einsum("gamj,gamk->gajk", X, X) + 1e-12 * np.eye(3)
    rhs = np.einsum("gamj,em->egaj", X, (y[None, :] - E_values[:, None]) * w)  # (ne, ng, na, 3)
    with np.errstate(all="ignore"):
        try:
            b0, b1, b2 = np.moveaxis(np.linalg.solve(gram[None], rhs[..., None])[..., 0], -1, 0)
        except np.linalg.LinAlgError:
            return []
        gp, A = -b1 / (2.0 * b2), b0 - b1 * b1 / (4.0 * b2)
        kap = b2 / A
        pred = E_values[:, None, None, None] + f[None, :, None, :] * (
            b0[..., None] + b1[..., None] * v[None, None] + b2[..., None] * (v * v)[None, None])
        sse = np.sum((np.log(pred) - prob.ly) ** 2, axis=-1)
    ok = (b2 > 0) & (A > 0) & np.isfinite(gp) & np.isfinite(kap) & np.isfinite(sse)
    sse = np.where(ok, sse, np.inf)
    starts = []
    for flat in np.argsort(sse, axis=None)[:n_starts]:
        i = np.unravel_index(flat, sse.shape)
        if not np.isfinite(sse[i]):
            break
        th = [math.log(A[i]), gammas[i[1]], math.log(kap[i]), gp[i], a_values[i[2]]]
        starts.append(np.array(th if prob.fixed_E is not None else [E_values[i[0]], *th]))
    return starts


def _polish(prob: JointProblem, theta0: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            max_nfev: int | None = None):
    x0 = np.clip(theta0, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
    return least_squares(prob.resid, x0, jac=prob.jac, bounds=(lo, hi), method="trf",
                         xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=max_nfev, x_scale="jac")


def fit_problem(prob: JointProblem, y: np.ndarray, n_starts: int,
                warm: np.ndarray | None = None, max_nfev: int | None = None):
    """``(best least_squares result or None, lower bounds, upper bounds)`` over grid starts
    (and ``warm``, if given) of the data ``y`` (loss, ``(m,)``)."""
    lo, hi = prob.bounds(float(y.min()), float(y.max()))
    E_values = (float(y.min()) * np.array([0.0, 0.2, 0.4, 0.55, 0.7, 0.8, 0.9, 0.96])
                if prob.fixed_E is None else np.array([prob.fixed_E]))
    starts = [] if warm is None else [warm]
    if n_starts > 0:
        starts += grid_starts(prob, y, E_values, n_starts, np.geomspace(0.01, 1.5, 14),
                              np.linspace(-0.1, 1.1, 25))
    best = None
    for th in starts:
        res = _polish(prob, th, lo, hi, max_nfev)
        if np.all(np.isfinite(res.x)) and (best is None or res.cost < best.cost):
            best = res
    return best, lo, hi


@dataclass
class JointBudget:
    """One budget: ``compute`` the geometric mean of its runs' spent C (FLOPs),
    ``optimal_params`` the fitted ``N*(compute)``, ``interior`` whether ``ln N*`` is strictly
    inside ``log_n_range``."""

    compute_budget: float
    compute: float
    n_runs: int
    n_sizes: int
    log_n_range: tuple[float, float]
    optimal_params: float
    interior: bool


def joint_quantity(params: np.ndarray, name: str, C, k: float) -> np.ndarray:
    """Quantity ``name`` of parameter rows ``(s, 6)``: ``(s,)``, or ``(s, len(C))`` for array C."""
    params = np.atleast_2d(params)
    if name in JOINT_PARAM_NAMES:
        return params[:, JOINT_PARAM_NAMES.index(name)]
    E, A, g, _, G, a = (params[:, j, None] for j in range(6))
    if name == "b":
        return 1.0 - a[:, 0]
    if name not in JOINT_QUANTITIES or C is None:
        raise ValueError(f"unknown quantity {name!r} or no compute C; known: {JOINT_QUANTITIES}")
    lc = np.log(np.asarray(C, dtype=float))
    with np.errstate(all="ignore"):
        log_n = np.log(G) + a * np.atleast_1d(lc)[None, :]
        out = {"n_opt": lambda: np.exp(log_n),
               "d_opt": lambda: np.exp(lc - math.log(k) - log_n),
               "loss_opt": lambda: E + A * np.exp(-g * lc)}[name]()
    return out[:, 0] if np.ndim(lc) == 0 else out


@dataclass
class JointBootstrap:
    """Parametric bootstrap of the joint fit: ``samples`` ``(n_resamples, 6)`` are
    ``(E, A, gamma, kappa, G, a)`` of each refit (NaN rows for the ``n_failed`` that did not
    converge), ``center`` the fit's; ``dof`` drives the Student-t widening, ``sigma`` (residual
    sd of log loss, inflated by ``sqrt(m / dof)``) the prediction intervals."""

    samples: np.ndarray
    center: np.ndarray
    n_resamples: int
    n_failed: int
    ci: float
    dof: int
    sigma: float
    flops_per_param_token: float
    floor_values: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def failed_fraction(self) -> float:
        return self.n_failed / max(self.n_resamples, 1)

    @property
    def usable(self) -> bool:
        """False when too many refits failed (over :data:`MAX_FAILED_FRACTION`)."""
        return self.n_resamples > 0 and self.failed_fraction <= MAX_FAILED_FRACTION

    def quantity(self, name: str, C: float | np.ndarray | None = None) -> np.ndarray:
        """Samples ``(n_resamples,)`` (or ``(n_resamples, len(C))``) of a parameter, ``a``, ``b``,
        or ``n_opt``/``d_opt``/``loss_opt`` at compute C (FLOPs)."""
        return joint_quantity(self.samples, name, C, self.flops_per_param_token)

    def interval(self, name: str, C: float | np.ndarray | None = None, ci: float | None = None):
        """Confidence interval ``(lo, hi)`` (where the law is); ``(2, len(C))`` for array C.

        Percentile interval of the refits at level ``ci + failed fraction`` (a failed refit could
        land anywhere), widened about the fit by ``t_{dof} / z``; positive quantities in log space.
        """
        est = joint_quantity(self.center, name, C, self.flops_per_param_token)[0]
        out = self._widen(self.quantity(name, C), est, ci, log=name not in ("a", "b", "E"))
        return (max(out[0], 0.0), out[1]) if name == "E" else out  # the floor E is >= 0

    def prediction_interval(self, C: float | np.ndarray, ci: float | None = None):
        """Where the loss of one run of the optimal size at C lands: the confidence interval's
        log half-widths and the run noise ``t_{dof} * sigma`` added in quadrature."""
        ci = self.ci if ci is None else ci
        lo, hi = np.asarray(self.interval("loss_opt", C, ci))
        est = joint_quantity(self.center, "loss_opt", C, self.flops_per_param_token)[0]
        noise = (stats.t.ppf(0.5 + ci / 2, self.dof) * self.sigma) ** 2
        lo = est * np.exp(-np.sqrt(np.log(est / lo) ** 2 + noise))
        hi = est * np.exp(np.sqrt(np.log(hi / est) ** 2 + noise))
        return (float(lo), float(hi)) if np.ndim(lo) == 0 else np.stack([lo, hi])

    def _widen(self, samp: np.ndarray, est, ci: float | None, log: bool):
        ci = self.ci if ci is None else ci
        if not self.usable:
            return (math.nan, math.nan) if np.ndim(est) == 0 else np.full((2, est.size), np.nan)
        with np.errstate(all="ignore"):
            s, e = (np.log(samp), np.log(est)) if log else (samp, np.asarray(est, dtype=float))
        lo, hi = percentile_interval(s, min(ci + self.failed_fraction, 0.999))
        fac = stats.t.ppf(0.5 + ci / 2, self.dof) / stats.norm.ppf(0.5 + ci / 2)
        lo, hi = e - np.maximum(e - lo, 0.0) * fac, e + np.maximum(hi - e, 0.0) * fac
        if log:
            lo, hi = np.exp(lo), np.exp(hi)
        return (float(lo), float(hi)) if np.ndim(lo) == 0 else np.stack([lo, hi])


@dataclass
class JointFit:
    """Result of the joint IsoFLOP fit (loss in nats/token, compute in FLOPs).

    ``L(N, C) = E + A C**-gamma (1 + kappa (ln N - ln(G C**a))**2)``; ``sigma`` is the residual
    sd of log loss, ``dof = n_points - n_params``; ``a_se``, ``log_G_se`` from the Jacobian.
    ``precise`` is False when the data cannot pin the intervals (fewer than three budgets with
    an interior optimum, no residual dof, a failed optimiser or bootstrap): ``reason`` says why
    in one sentence and every interval is NaN, never ``[x, x]``. ``message`` says why no law was
    fitted at all (``available`` False).
    """

    E: float
    A: float
    gamma: float
    kappa: float
    G: float
    a: float
    flops_per_param_token: float
    sigma: float
    dof: int
    n_points: int
    n_params: int
    budgets: list[JointBudget]
    fixed_E: bool = False
    converged: bool = True
    precise: bool = True
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    message: str = ""
    bootstrap: JointBootstrap | None = None
    a_se: float = math.nan
    log_G_se: float = math.nan
    #: the forward-validated floor behind a fixed E (a ``floor.FloorChoice``), if any
    floor: object | None = None
    #: internal: (budget, n, d, loss, c, problem, theta, residuals) for the bootstrap
    state: tuple | None = field(default=None, repr=False)

    @property
    def available(self) -> bool:
        return not self.message

    @property
    def vector(self) -> np.ndarray:
        """``(E, A, gamma, kappa, G, a)``."""
        return np.array([getattr(self, k) for k in JOINT_PARAM_NAMES], dtype=float)

    @property
    def n_budgets(self) -> int:
        return len(self.budgets)

    @property
    def n_interior(self) -> int:
        """Budgets whose fitted optimum lies inside their sampled ``ln N`` range."""
        return sum(b.interior for b in self.budgets)

    def n_opt(self, C: float | np.ndarray) -> float | np.ndarray:
        """Compute-optimal parameters ``N*(C) = G C**a``."""
        return joint_quantity(self.vector, "n_opt", C, self.flops_per_param_token)[0]

    def d_opt(self, C: float | np.ndarray) -> float | np.ndarray:
        """Compute-optimal tokens ``D*(C) = C / (k N*(C))``."""
        return joint_quantity(self.vector, "d_opt", C, self.flops_per_param_token)[0]

    def loss_opt(self, C: float | np.ndarray) -> float | np.ndarray:
        """Loss frontier ``L*(C) = E + A C**-gamma``."""
        return joint_quantity(self.vector, "loss_opt", C, self.flops_per_param_token)[0]

    def predict(self, n: float | np.ndarray, c: float | np.ndarray) -> float | np.ndarray:
        """Loss of a run with N parameters and spent compute C under the fitted model."""
        u = np.log(n) - math.log(self.G) - self.a * np.log(c)
        c = np.asarray(c, dtype=float)
        return self.E + self.A * c**-self.gamma * (1.0 + self.kappa * u * u)

    @property
    def n_opt_law(self) -> PowerLaw:
        """``N*(C) = G C**a`` as a :class:`PowerLaw`."""
        return PowerLaw(self.G, self.a, self.a_se, self.log_G_se, self.n_budgets)

    @property
    def d_opt_law(self) -> PowerLaw:
        """``D*(C) = C**(1-a) / (k G)`` as a :class:`PowerLaw`."""
        return PowerLaw(1.0 / (self.flops_per_param_token * self.G), 1.0 - self.a, self.a_se,
                        self.log_G_se, self.n_budgets)

    def interval(self, name: str, C: float | np.ndarray | None = None, ci: float | None = None):
        """Confidence interval ``(lo, hi)`` (:meth:`JointBootstrap.interval`); NaNs when not
        :attr:`precise`. Needs a bootstrap (``fit_joint(..., n_bootstrap=200)``)."""
        return self._ask("interval", C, name, C, ci)

    def prediction_interval(self, C: float | np.ndarray, ci: float | None = None):
        """Where one run of the optimal size at C lands (loss); NaNs when not :attr:`precise`."""
        return self._ask("prediction_interval", C, C, ci)

    def _ask(self, method: str, C, *args):
        if not self.precise:
            return (math.nan, math.nan) if C is None or np.ndim(C) == 0 else \
                np.full((2, np.size(C)), np.nan)
        if self.bootstrap is None:
            raise ValueError("this joint fit has no bootstrap: pass n_bootstrap > 0 to fit_joint")
        return getattr(self.bootstrap, method)(*args)


def prepare_runs(budget: Array, n: Array, d: Array, loss: Array,
                 c: Array | None) -> tuple[np.ndarray, ...]:
    """Validated ``(m,)`` float arrays ``(budget, n, d, loss, c)``; ``c`` defaults to ``6 n d``."""
    budget = np.asarray(budget, dtype=float).reshape(-1)
    n, d, loss = (as_positive_array(v, k) for v, k in ((n, "n"), (d, "d"), (loss, "loss")))
    c = 6.0 * n * d if c is None else as_positive_array(c, "c")
    if not (budget.shape == n.shape == d.shape == loss.shape == c.shape):
        raise ValueError("budget, n, d, loss and c must have the same shape")
    return budget, n, d, loss, c


def _budgets(budget: np.ndarray, n: np.ndarray, c: np.ndarray, G: float,
             a: float) -> list[JointBudget]:
    out = []
    for key in np.unique(budget):
        m = budget == key
        ln, cg = np.log(n[m]), float(np.exp(np.mean(np.log(c[m]))))
        nstar = G * cg**a
        inside = bool(np.isfinite(nstar) and ln.min() < math.log(nstar) < ln.max())
        out.append(JointBudget(float(key), cg, int(m.sum()), int(np.unique(n[m]).size),
                               (float(ln.min()), float(ln.max())), float(nstar), inside))
    return out


@serial
def fit_joint(
    budget: Array, n: Array, d: Array, loss: Array, c: Array | None = None, *,
    fix_E: float | None = None, n_starts: int = 4, n_bootstrap: int = 0, ci: float = 0.95,
    seed: int | None = 0,
) -> JointFit:
    """Fit the joint IsoFLOP model to all runs of a sweep.

    Parameters
    ----------
    budget : (m,) planned compute budget of each run (FLOPs); equal values form a budget.
    n, d, loss : (m,) parameters, tokens and final loss (nats/token) of each run.
    c : (m,) compute actually spent (FLOPs), used in the model; defaults to ``6 n d``.
    fix_E : hold the floor E at this value (0 <= fix_E < min loss) instead of fitting it.
    n_starts : grid points polished (more: slower, safer against local minima).
    n_bootstrap : resamples of :func:`bootstrap_joint` for the intervals (0: none); skipped
        when the fit is not ``precise`` (its intervals are NaN then anyway).
    """
    budget, n, d, loss, c = prepare_runs(budget, n, d, loss, c)
    m, p = n.size, (5 if fix_E is not None else 6)
    k = float(np.median(c / (n * d))) if m else 6.0
    if fix_E is not None and not (0.0 <= fix_E < loss.min()):
        raise ValueError("fix_E must be at least 0 and below the lowest observed loss")
    nan, n_keys, best = math.nan, np.unique(budget).size, None
    if m >= p and n_keys >= 2 and np.unique(n).size >= 3:
        prob = JointProblem(n, c, loss, fix_E)
        best, lo, hi = fit_problem(prob, loss, n_starts)
    if best is None:
        msg = (f"The joint IsoFLOP fit needs runs at two or more budgets, three or more sizes and "
               f"an upward-curving loss in log N, with at least {p} runs; it got {m} run(s) at "
               f"{n_keys} budget(s), so it is skipped.")
        return JointFit(nan, nan, nan, nan, nan, nan, k, nan, m - p, m, p,
                        _budgets(budget, n, c, nan, nan), precise=False, reason=msg,
                        warnings=[msg], message=msg)
    theta, dof = np.asarray(best.x, dtype=float), m - p
    E, A, g, kap, G, a = prob.natural(theta)
    r = prob.resid(theta)
    fit = JointFit(E, A, g, kap, G, a, k, math.sqrt(float(r @ r) / dof) if dof > 0 else nan,
                   dof, m, p, _budgets(budget, n, c, G, a), fixed_E=fix_E is not None,
                   converged=bool(best.status > 0), state=(budget, n, d, loss, c, prob, theta, r))
    if dof > 0:  # standard errors of a and ln G = x0 + g' - a t0 from sigma^2 (J'J)^-1
        J = np.asarray(best.jac, dtype=float)
        cov, t0 = fit.sigma**2 * np.linalg.pinv(J.T @ J)[-2:, -2:], prob.t0
        fit.a_se = math.sqrt(max(cov[1, 1], 0.0))
        fit.log_G_se = math.sqrt(max(cov[0, 0] + t0 * t0 * cov[1, 1] - 2 * t0 * cov[0, 1], 0.0))
    _judge(fit, theta, lo, hi)
    if n_bootstrap > 0 and fit.precise:
        fit.bootstrap = bootstrap_joint(fit, n_resamples=n_bootstrap, ci=ci, seed=seed)
    return fit


def _judge(fit: JointFit, theta: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Fill ``warnings``, ``precise`` and ``reason`` (sentences for the user)."""
    reasons = []
    if fit.n_interior < MIN_INTERIOR_BUDGETS:
        reasons.append(
            f"Only {fit.n_interior} of {fit.n_budgets} budget(s) have the joint fit's optimum "
            f"inside their sampled sizes; it needs {MIN_INTERIOR_BUDGETS} to pin N_opt(C), so its "
            "intervals are not given: add budgets or widen the sizes around the optimum.")
    if fit.dof <= 0:
        reasons.append(f"The joint fit has {fit.n_points} runs for {fit.n_params} parameters and "
                       "no residual degrees of freedom, so it cannot say how sure it is: add runs.")
    if not fit.converged:
        reasons.append("The joint fit's optimiser did not converge, so it gives no intervals.")
    names = ["E", "ln A", "gamma", "ln kappa", "ln G", "a"][fit.fixed_E:]
    for name, v, l_, h in zip(names, theta, lo, hi, strict=True):
        if name == "E" and v - l_ < 1e-6 * max(h, 1.0):
            fit.warnings.append("The joint fit's floor E fell to 0: the runs show no floor over "
                                "this span (the frontier is then a pure power law).")
        elif name == "E" and h - v < 1e-3 * h:
            reasons.append("The joint fit's floor E reached the lowest observed loss, which "
                           "leaves the frontier undetermined.")
        elif name != "E" and min(v - l_, h - v) < 1e-6 * (h - l_):
            reasons.append(f"The joint fit's {name} ended on its bound ({v:.3g}): degenerate.")
    if reasons:
        fit.precise, fit.reason = False, reasons[0]
        fit.warnings.extend(reasons)


@serial
def bootstrap_joint(
    fit: JointFit, *, n_resamples: int = 200, ci: float = 0.95, seed: int | None = 0,
    floor_fits: Sequence[JointFit] | None = None, max_nfev: int = 200,
) -> JointBootstrap:
    """Parametric bootstrap of a :func:`fit_joint` result (on the data it was fitted to).

    Each resample simulates ``log loss* = log fitted + resampled centred residuals * sqrt(m /
    dof)`` and refits warm-started from the fit (at most ``max_nfev`` evaluations); refits that
    do not converge count in ``n_failed`` and leave NaN rows. ``floor_fits``: fits of the same
    runs with other fixed floors judged nearly as good (see ``floor.fit_joint_floor``); each
    resample then simulates from and refits one of them (drawn evenly), so the interval carries
    the floor's spread. Over :data:`MAX_FAILED_FRACTION` failures: no intervals, and a warning.
    """
    if fit.state is None or not fit.available:
        raise ValueError("bootstrap_joint needs an available joint fit")
    rng = np.random.default_rng(seed)
    bases = [fit, *(f for f in floor_fits or () if f is not fit)]
    pick = rng.integers(0, len(bases), n_resamples) if len(bases) > 1 else \
        np.zeros(n_resamples, dtype=int)
    samples, failed, loss = np.full((n_resamples, 6), np.nan), 0, fit.state[3]
    for j, base in enumerate(bases):
        idx = np.flatnonzero(pick == j)
        if idx.size == 0 or base.state is None or base.dof <= 0:
            failed += idx.size
            continue
        prob, theta, r = base.state[5:]
        fitted = np.log(prob.model(theta))
        rc = (r - r.mean()) * math.sqrt(r.size / base.dof)
        for i in idx:
            sim = np.exp(fitted + rc[rng.integers(0, r.size, r.size)])
            prob.ly = np.log(sim)
            try:
                res = _polish(prob, theta, *prob.bounds(float(sim.min()), float(sim.max())),
                              max_nfev)
                ok = res.status > 0 and np.all(np.isfinite(res.x))
            except ValueError:
                ok = False
            samples[i] = prob.natural(res.x) if ok else np.nan
            failed += not ok
        prob.ly = np.log(loss)
    dof = max(fit.dof, 1)
    boot = JointBootstrap(samples, fit.vector, n_resamples, failed, ci, dof,
                          fit.sigma * math.sqrt(fit.n_points / dof), fit.flops_per_param_token,
                          np.array([b.E for b in bases]) if len(bases) > 1 else None)
    if n_resamples and failed:
        over = failed / n_resamples > MAX_FAILED_FRACTION
        msg = (f"{failed} of {n_resamples} bootstrap refits of the joint fit did not converge"
               + (f" (over {MAX_FAILED_FRACTION:.0%}), so it gives no intervals." if over else
                  "; its intervals are widened to cover them."))
        boot.warnings.append(msg)
        fit.warnings.append(msg)
        if over and fit.precise:
            fit.precise, fit.reason = False, msg
    return boot
