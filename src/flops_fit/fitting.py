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
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

__all__ = [
    "BudgetOptimum",
    "EnvelopeFit",
    "IsoFlopBootstrap",
    "IsoFlopFit",
    "ParametricBootstrap",
    "ParametricFit",
    "PowerLaw",
    "bootstrap_parametric",
    "fit_envelope",
    "fit_isoflop",
    "fit_parametric",
    "fit_power_law",
    "isoflop_optima",
    "optimal_allocation",
    "parametric_loss",
    "percentile_interval",
    "serial_blas",
]

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
#: bounds of the exponents alpha and beta (a fit that ends on one is degenerate)
EXPONENT_BOUNDS = (0.01, 3.0)
#: the E, A- and B-terms may fall this many e-folds below the lowest loss before they hit a bound
_LOG_TERM_SPAN = 20.0


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

_BLAS_THREAD_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


@contextlib.contextmanager
def serial_blas():
    """Run the block with OpenBLAS on one thread (best effort, Linux; a no-op elsewhere).

    The fits make many tiny BLAS/LAPACK calls (inside L-BFGS-B); OpenBLAS's thread pool turns
    each into a wake-up of idle threads, which on a machine busy with training jobs makes a
    50 ms fit take seconds. Like ``threadpoolctl.threadpool_limits(1)``, without the dependency.
    """
    restore: list[tuple[object, int]] = []
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
                paths = {line.split()[-1] for line in fh
                         if "openblas" in line.lower() and ".so" in line}
            for path in sorted(p for p in paths if p.startswith("/")):
                lib = ctypes.CDLL(path)
                for get, set_ in _BLAS_THREAD_SYMBOLS:
                    if hasattr(lib, get) and hasattr(lib, set_):
                        n = int(getattr(lib, get)())
                        if n > 1:
                            getattr(lib, set_)(1)
                            restore.append((getattr(lib, set_), n))
                        break
        except Exception:  # never let the speed-up break a fit
            pass
    try:
        yield
    finally:
        for setter, n in restore:
            with contextlib.suppress(Exception):
                setter(n)  # type: ignore[operator]


def _serial(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with serial_blas():
            return func(*args, **kwargs)

    return wrapper


def _as_positive_array(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float).reshape(-1)
    if arr.size and not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"{name} must be finite and positive")
    return arr


def percentile_interval(samples: np.ndarray, ci: float = 0.95, axis: int = 0) -> np.ndarray:
    """Equal-tailed percentile interval of ``samples`` along ``axis``: ``[lo, hi]`` stacked first.

    Non-finite samples are ignored. Returns NaNs when nothing finite is left.
    """
    samples = np.asarray(samples, dtype=float)
    q = [50.0 * (1.0 - ci), 50.0 * (1.0 + ci)]
    masked = np.where(np.isfinite(samples), samples, np.nan)
    if np.all(np.isnan(masked)):
        shape = list(samples.shape)
        del shape[axis]
        return np.full([2, *shape], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices of a 2-D input
        return np.nanpercentile(masked, q, axis=axis)


def _nanstd(samples: np.ndarray, axis: int = 0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(np.where(np.isfinite(samples), samples, np.nan), axis=axis, ddof=1)


# --------------------------------------------------------------------------------------------
# power laws
# --------------------------------------------------------------------------------------------


@dataclass
class PowerLaw:
    """``y = coefficient * x**exponent``, fitted by least squares in log-log space.

    ``exponent_se`` and ``log_coefficient_se`` are the ordinary-least-squares standard errors
    (NaN with two points), ``log_x_center`` the mean of ``log x`` of the fitted points.
    """

    coefficient: float
    exponent: float
    exponent_se: float = math.nan
    log_coefficient_se: float = math.nan
    n_points: int = 0
    log_x_center: float = math.nan

    def __call__(self, x: float | np.ndarray) -> float | np.ndarray:
        return self.coefficient * np.asarray(x, dtype=float) ** self.exponent


def _loglog_lstsq(logx: np.ndarray, logy: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of ``logy = i + s * logx`` (needs two distinct x)."""
    xm = logx.mean()
    dx = logx - xm
    sxx = float(dx @ dx)
    slope = float(dx @ (logy - logy.mean())) / sxx
    return float(logy.mean() - slope * xm), slope


def fit_power_law(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> PowerLaw:
    """Fit ``y = k * x**a`` by least squares on ``log y`` against ``log x``.

    ``x`` and ``y`` are positive arrays of equal shape ``(m,)`` with at least two distinct ``x``.
    """
    x = _as_positive_array(x, "x")
    y = _as_positive_array(y, "y")
    if x.shape != y.shape:
        raise ValueError("x and y must have the same shape")
    lx, ly = np.log(x), np.log(y)
    if x.size < 2 or np.ptp(lx) == 0:
        raise ValueError("a power law needs at least two distinct x values")
    intercept, slope = _loglog_lstsq(lx, ly)
    m = x.size
    se_slope = se_int = math.nan
    if m > 2:
        resid = ly - (intercept + slope * lx)
        s2 = float(resid @ resid) / (m - 2)
        dx = lx - lx.mean()
        sxx = float(dx @ dx)
        se_slope = math.sqrt(s2 / sxx)
        se_int = math.sqrt(s2 * (1.0 / m + lx.mean() ** 2 / sxx))
    return PowerLaw(
        coefficient=math.exp(intercept),
        exponent=slope,
        exponent_se=se_slope,
        log_coefficient_se=se_int,
        n_points=m,
        log_x_center=float(lx.mean()),
    )


# --------------------------------------------------------------------------------------------
# Approach 2: IsoFLOP parabolas
# --------------------------------------------------------------------------------------------


@dataclass
class BudgetOptimum:
    """One compute budget's IsoFLOP minimum.

    ``compute_budget`` is the group key (the planned C), ``compute`` the geometric mean of the
    runs' C under the chosen FLOP convention (the x of the power laws). ``interior`` is True when
    the parabola opens upwards and its vertex lies strictly inside the sampled ``log N`` range
    ``log_n_range``; only interior optima enter the power laws.
    """

    compute_budget: float
    compute: float
    n_runs: int
    n_sizes: int
    log_n_range: tuple[float, float]
    optimal_params: float
    optimal_tokens: float
    optimal_loss: float
    curvature: float
    interior: bool
    note: str = ""


def _parabola_vertex(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None):
    """Least-squares parabola ``y = c0 + c1 u + c2 u**2`` with ``u = x - mean(x)``.

    Returns ``(vertex_x, vertex_y, c2)``; vertex is NaN when ``c2 <= 0``.
    """
    xm = float(np.mean(x))
    u = x - xm
    design = np.stack([np.ones_like(u), u, u * u], axis=1)
    if w is not None:
        sw = np.sqrt(w)
        coef = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)[0]
    else:
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
    c0, c1, c2 = (float(v) for v in coef)
    if not c2 > 0:
        return math.nan, math.nan, c2
    uv = -c1 / (2.0 * c2)
    return xm + uv, c0 + c1 * uv + c2 * uv * uv, c2


def _budget_optimum(
    key: float, n: np.ndarray, d: np.ndarray, loss: np.ndarray, c: np.ndarray,
    w: np.ndarray | None = None,
) -> BudgetOptimum:
    ln, ld = np.log(n), np.log(d)
    lo, hi = float(ln.min()), float(ln.max())
    xv, yv, curv = _parabola_vertex(ln, loss, w)
    xd, _, _ = _parabola_vertex(ld, loss, w)
    interior = bool(np.isfinite(xv) and lo < xv < hi)
    note = ""
    if not np.isfinite(xv):
        note = "the losses do not curve upwards in log N, so there is no minimum"
    elif xv <= lo:
        note = "the minimum lies at or below the smallest model"
    elif xv >= hi:
        note = "the minimum lies at or above the largest model"
    c_geo = float(np.exp(np.mean(np.log(c))))
    n_opt = float(np.exp(xv)) if np.isfinite(xv) else math.nan
    d_opt = float(np.exp(xd)) if np.isfinite(xd) else math.nan
    return BudgetOptimum(
        compute_budget=float(key),
        compute=c_geo,
        n_runs=int(n.size),
        n_sizes=int(np.unique(n).size),
        log_n_range=(lo, hi),
        optimal_params=n_opt,
        optimal_tokens=d_opt,
        optimal_loss=float(yv) if np.isfinite(yv) else math.nan,
        curvature=curv,
        interior=interior,
        note=note,
    )


def isoflop_optima(
    budget: np.ndarray, n: np.ndarray, d: np.ndarray, loss: np.ndarray, c: np.ndarray,
    *, min_sizes: int = 3,
) -> tuple[list[BudgetOptimum], list[float]]:
    """Per-budget IsoFLOP minima.

    Groups runs by equal ``budget`` (the planned C). Returns the optima of the budgets with at
    least ``min_sizes`` distinct N, sorted by budget, and the list of budgets skipped for having
    fewer sizes.
    """
    budget = np.asarray(budget, dtype=float)
    out: list[BudgetOptimum] = []
    skipped: list[float] = []
    for key in np.unique(budget):
        m = budget == key
        if np.unique(n[m]).size < min_sizes:
            skipped.append(float(key))
            continue
        out.append(_budget_optimum(float(key), n[m], d[m], loss[m], c[m]))
    return out, skipped


@dataclass
class IsoFlopBootstrap:
    """Bootstrap of Approach 2: ``samples[i] = (log k_N, a, log k_D, b, log k_L, c)`` per resample
    (NaN rows where fewer than two interior budgets survived)."""

    samples: np.ndarray
    n_resamples: int
    n_failed: int
    ci: float
    #: (n_resamples, n_budgets) interior optimum N / loss of each budget in each resample (NaN if
    #: that budget was not interior there), in the order of :attr:`IsoFlopFit.budgets`
    budget_params: np.ndarray | None = None
    budget_tokens: np.ndarray | None = None
    budget_loss: np.ndarray | None = None

    COLUMNS = ("log_k_n", "a", "log_k_d", "b", "log_k_loss", "c")

    def interval(self, column: str) -> tuple[float, float]:
        j = self.COLUMNS.index(column)
        lo, hi = percentile_interval(self.samples[:, j], self.ci)
        return float(lo), float(hi)

    def se(self, column: str) -> float:
        return float(_nanstd(self.samples[:, self.COLUMNS.index(column)]))


@dataclass
class IsoFlopFit:
    """Result of Approach 2.

    ``budgets`` holds every budget with enough sizes (interior or not); ``n_opt``, ``d_opt`` and
    ``loss_opt`` are the power laws in C fitted to the interior ones (None when fewer than two).
    ``warnings`` are sentences for the user; ``message`` says why no law was fitted, if none was.
    """

    budgets: list[BudgetOptimum]
    skipped_budgets: list[float]
    n_opt: PowerLaw | None
    d_opt: PowerLaw | None
    loss_opt: PowerLaw | None
    warnings: list[str] = field(default_factory=list)
    message: str = ""
    bootstrap: IsoFlopBootstrap | None = None

    @property
    def available(self) -> bool:
        return self.n_opt is not None


def _laws_from_optima(opt: list[BudgetOptimum]) -> tuple[PowerLaw, PowerLaw, PowerLaw] | None:
    use = [o for o in opt if o.interior and np.isfinite(o.optimal_tokens)]
    if len({o.compute for o in use}) < 2:
        return None
    c = np.array([o.compute for o in use])
    n_law = fit_power_law(c, np.array([o.optimal_params for o in use]))
    d_law = fit_power_law(c, np.array([o.optimal_tokens for o in use]))
    losses = np.array([o.optimal_loss for o in use])
    l_law = fit_power_law(c, losses) if np.all(losses > 0) else PowerLaw(math.nan, math.nan)
    return n_law, d_law, l_law


def _fmt_c(c: float) -> str:
    return f"{c:.3g}"


@_serial
def fit_isoflop(
    budget: Sequence[float] | np.ndarray,
    n: Sequence[float] | np.ndarray,
    d: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    c: Sequence[float] | np.ndarray | None = None,
    *,
    min_sizes: int = 3,
    n_bootstrap: int = 0,
    ci: float = 0.95,
    seed: int | None = 0,
) -> IsoFlopFit:
    """Chinchilla's Approach 2.

    Parameters
    ----------
    budget : (m,) planned compute budget of each run (FLOPs); runs with equal values form a group.
    n, d, loss : (m,) parameters, tokens and final loss of each run.
    c : (m,) compute actually spent (FLOPs); defaults to ``6 * n * d``.
    min_sizes : budgets with fewer distinct N are skipped (reported once in ``warnings``).
    n_bootstrap : resamples of runs within budgets for the intervals (0: none).
    """
    budget = np.asarray(budget, dtype=float).reshape(-1)
    n = _as_positive_array(n, "n")
    d = _as_positive_array(d, "d")
    loss = _as_positive_array(loss, "loss")
    c = 6.0 * n * d if c is None else _as_positive_array(c, "c")
    opt, skipped = isoflop_optima(budget, n, d, loss, c, min_sizes=min_sizes)
    notes: list[str] = []
    if not opt:
        msg = (
            f"Approach 2 has no compute budgets to group: no budget has runs of at least "
            f"{min_sizes} different sizes, so the IsoFLOP fit is skipped and the parametric fit "
            "carries on."
        )
        return IsoFlopFit([], skipped, None, None, None, [msg], msg)
    if skipped:
        notes.append(
            f"Approach 2 skips {len(skipped)} budget(s) with fewer than {min_sizes} model sizes "
            f"({', '.join(_fmt_c(s) for s in skipped[:6])}{', ...' if len(skipped) > 6 else ''})."
        )
    edge = [o for o in opt if not o.interior]
    if edge:
        notes.append(
            "Approach 2 excludes budget(s) "
            + ", ".join(f"{_fmt_c(o.compute_budget)} ({o.note})" for o in edge)
            + "; widen the sweep (more sizes on that side) so the minimum lies inside it."
        )
    laws = _laws_from_optima(opt)
    if laws is None:
        n_int = sum(o.interior for o in opt)
        msg = (
            f"Approach 2 found {n_int} budget(s) with an interior minimum but needs at least two "
            "to fit N_opt(C); add budgets or widen the sweep."
        )
        notes.append(msg)
        return IsoFlopFit(opt, skipped, None, None, None, notes, msg)
    fit = IsoFlopFit(opt, skipped, *laws, warnings=notes)
    if n_bootstrap > 0:
        fit.bootstrap = _bootstrap_isoflop(budget, n, d, loss, c, opt, n_bootstrap, ci, seed,
                                           min_sizes)
    return fit


def _bootstrap_isoflop(
    budget: np.ndarray, n: np.ndarray, d: np.ndarray, loss: np.ndarray, c: np.ndarray,
    opt: list[BudgetOptimum], n_resamples: int, ci: float, seed: int | None, min_sizes: int,
) -> IsoFlopBootstrap:
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(budget == o.compute_budget) for o in opt]
    samples = np.full((n_resamples, 6), np.nan)
    bparams = np.full((n_resamples, len(opt)), np.nan)
    btokens = np.full((n_resamples, len(opt)), np.nan)
    bloss = np.full((n_resamples, len(opt)), np.nan)
    failed = 0
    for i in range(n_resamples):
        res = []
        for j, (o, idx) in enumerate(zip(opt, groups, strict=True)):
            pick = idx[rng.integers(0, idx.size, idx.size)]
            if np.unique(n[pick]).size < min_sizes:
                continue
            r = _budget_optimum(o.compute_budget, n[pick], d[pick], loss[pick], c[pick])
            if r.interior:
                bparams[i, j], btokens[i, j] = r.optimal_params, r.optimal_tokens
                bloss[i, j] = r.optimal_loss
            res.append(r)
        laws = _laws_from_optima(res)
        if laws is None:
            failed += 1
            continue
        nl, dl, ll = laws
        samples[i] = (math.log(nl.coefficient), nl.exponent, math.log(dl.coefficient),
                      dl.exponent, math.log(ll.coefficient) if ll.coefficient > 0 else math.nan,
                      ll.exponent)
    return IsoFlopBootstrap(samples, n_resamples, failed, ci, bparams, btokens, bloss)


# --------------------------------------------------------------------------------------------
# Approach 3: parametric L(N, D)
# --------------------------------------------------------------------------------------------


def parametric_loss(
    n: float | np.ndarray, d: float | np.ndarray, E: float, A: float, B: float, alpha: float,
    beta: float,
) -> float | np.ndarray:
    """``L(N, D) = E + A / N**alpha + B / D**beta`` (broadcasts over arrays)."""
    n = np.asarray(n, dtype=float)
    d = np.asarray(d, dtype=float)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return E + A * n ** (-alpha) + B * d ** (-beta)


def optimal_allocation(
    C: float | np.ndarray, A: float | np.ndarray, B: float | np.ndarray,
    alpha: float | np.ndarray, beta: float | np.ndarray, flops_per_param_token: float = 6.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form compute-optimal ``(N_opt, D_opt)`` of L(N, D) under ``C = k * N * D``.

    With ``k = flops_per_param_token`` (6 for the 6ND convention),
    ``G = (alpha A / (beta B))**(1/(alpha+beta))``, ``N_opt = G (C/k)**(beta/(alpha+beta))`` and
    ``D_opt = (C/k)**(alpha/(alpha+beta)) / G``. All arguments broadcast.
    """
    C, A, B, alpha, beta = (np.asarray(v, dtype=float) for v in (C, A, B, alpha, beta))
    s = alpha + beta
    with np.errstate(all="ignore"):
        log_g = (np.log(alpha * A) - np.log(beta * B)) / s
        log_ck = np.log(C / flops_per_param_token)
        n_opt = np.exp(log_g + log_ck * beta / s)
        d_opt = np.exp(log_ck * alpha / s - log_g)
    return n_opt, d_opt


@dataclass
class ParametricFit:
    """Result of Approach 3: ``L(N, D) = E + A / N**alpha + B / D**beta`` (loss in nats/token).

    ``objective`` is the minimised sum (Huber or half squares of the log-loss residuals).
    ``degenerate`` is True when E is not below the lowest observed loss, a parameter ends on its
    bound, or the optimiser failed; ``degenerate_reasons`` says which, in sentences. Such a fit
    must not be used for predictions without saying so.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    loss: str
    huber_delta: float
    objective: float
    n_points: int
    min_observed_loss: float
    fixed_E: bool = False
    converged: bool = True
    n_starts: int = 0
    degenerate: bool = False
    degenerate_reasons: list[str] = field(default_factory=list)
    # internal: centred solution for warm starts (log E, log A', log B', alpha, beta) and centres
    theta: np.ndarray | None = field(default=None, repr=False)
    centers: tuple[float, float] = (0.0, 0.0)

    @property
    def a(self) -> float:
        """Exponent of N_opt in C: ``beta / (alpha + beta)``."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt in C: ``alpha / (alpha + beta)``."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    @property
    def params(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in PARAM_NAMES}

    def predict(self, n: float | np.ndarray, d: float | np.ndarray) -> float | np.ndarray:
        """Loss L(N, D) of the fitted law."""
        return parametric_loss(n, d, self.E, self.A, self.B, self.alpha, self.beta)

    def allocation(self, C: float | np.ndarray, flops_per_param_token: float = 6.0):
        """Compute-optimal ``(N_opt, D_opt)`` at compute ``C`` (see :func:`optimal_allocation`)."""
        return optimal_allocation(C, self.A, self.B, self.alpha, self.beta, flops_per_param_token)


class _Objective:
    """Huber (or least-squares) objective on log loss in centred log-sum-exp coordinates.

    ``theta = (e, a', b', alpha, beta)`` with ``E = exp(e)``, ``A = exp(a' + alpha * xc)``,
    ``B = exp(b' + beta * zc)`` where ``xc``, ``zc`` are the mean log N and log D, so ``a'`` and
    ``b'`` are the log sizes of the N- and D-terms at the typical run (well conditioned).
    """

    def __init__(self, x: np.ndarray, z: np.ndarray, y: np.ndarray, delta: float | None,
                 fixed_e: float | None = None):
        self.xc, self.zc = float(x.mean()), float(z.mean())
        self.x, self.z, self.y = x - self.xc, z - self.zc, y
        self.delta = delta
        self.fixed_e = fixed_e
        self.w: np.ndarray | None = None

    def full(self, theta: np.ndarray) -> np.ndarray:
        if self.fixed_e is None:
            return theta
        return np.concatenate([[self.fixed_e], theta])

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        e, a, b, al, be = self.full(theta)
        t2 = a - al * self.x
        t3 = b - be * self.z
        m = np.maximum(np.maximum(t2, t3), e)
        p1 = np.exp(e - m)
        p2 = np.exp(t2 - m)
        p3 = np.exp(t3 - m)
        s = p1 + p2 + p3
        r = m + np.log(s) - self.y
        delta = self.delta
        if delta is None:
            rho = 0.5 * r * r
            psi = r
        else:
            ar = np.abs(r)
            small = ar <= delta
            rho = np.where(small, 0.5 * r * r, delta * (ar - 0.5 * delta))
            psi = np.where(small, r, delta * np.sign(r))
        if self.w is not None:
            rho = rho * self.w
            psi = psi * self.w
        g = psi / s
        g1 = g @ p1
        g2p = g * p2
        g3p = g * p3
        grad = np.array([g1, g2p.sum(), g3p.sum(), -(g2p @ self.x), -(g3p @ self.z)])
        if self.fixed_e is not None:
            grad = grad[1:]
        return float(rho.sum()), grad

    def natural(self, theta: np.ndarray) -> tuple[float, float, float, float, float]:
        e, a, b, al, be = self.full(theta)
        return (math.exp(e), math.exp(a + al * self.xc), math.exp(b + be * self.zc), al, be)


def _grid_starts(
    loss: np.ndarray, obj: _Objective,
    alphas: np.ndarray, betas: np.ndarray, fix_E: float | None, n_starts: int,
) -> list[np.ndarray]:
    """Variable projection over the ``(alpha, beta)`` grid.

    For each pair, ``(E, A, B) >= 0`` minimise the squared relative residuals
    ``sum(((E + A N^-alpha + B D^-beta) - L) / L)**2`` (nonnegative least squares, solved exactly
    for all pairs at once by enumerating the active sets of the three coefficients). Each grid
    point is scored on the exact objective; the best local minima of the grid are returned as
    starts in the centred coordinates of ``obj``.
    """
    inv_l = 1.0 / loss
    xn = np.exp(-np.outer(alphas, obj.x)) * inv_l  # (na, m): N-term / L at unit A'
    zn = np.exp(-np.outer(betas, obj.z)) * inv_l  # (nb, m)
    na, nb = alphas.size, betas.size
    target = np.ones(loss.size) if fix_E is None else 1.0 - fix_E * inv_l
    # Gram matrix of the columns (1/L, N-term/L, D-term/L) for every grid pair, built from
    # O(na * nb * m) products without materialising an (na, nb, m, 3) array
    gram = np.empty((na, nb, 3, 3))
    gram[..., 0, 0] = inv_l @ inv_l
    gram[..., 0, 1] = gram[..., 1, 0] = (xn @ inv_l)[:, None]
    gram[..., 0, 2] = gram[..., 2, 0] = (zn @ inv_l)[None, :]
    gram[..., 1, 1] = np.einsum("am,am->a", xn, xn)[:, None]
    gram[..., 2, 2] = np.einsum("bm,bm->b", zn, zn)[None, :]
    gram[..., 1, 2] = gram[..., 2, 1] = xn @ zn.T
    rhs = np.empty((na, nb, 3))
    rhs[..., 0] = inv_l @ target
    rhs[..., 1] = (xn @ target)[:, None]
    rhs[..., 2] = (zn @ target)[None, :]
    if fix_E is not None:
        gram, rhs = gram[..., 1:, 1:], rhs[..., 1:]
    k = rhs.shape[-1]
    tt = float(target @ target)
    best_sse = np.full((na, nb), np.inf)
    best_coef = np.zeros((na, nb, k))
    for r in range(1, k + 1):
        for subset in itertools.combinations(range(k), r):
            sub = list(subset)
            g = gram[:, :, sub][:, :, :, sub]
            h = rhs[:, :, sub]
            scale = np.sqrt(np.einsum("abii->abi", g)) + 1e-300
            gs = g / scale[..., :, None] / scale[..., None, :]
            gs = gs + 1e-12 * np.eye(r)
            with np.errstate(all="ignore"):
                try:
                    sol = np.linalg.solve(gs, (h / scale)[..., None])[..., 0] / scale
                except np.linalg.LinAlgError:
                    continue
            feasible = np.all(sol >= 0, axis=-1) & np.all(np.isfinite(sol), axis=-1)
            sse = tt - 2 * np.einsum("abi,abi->ab", sol, h) + np.einsum(
                "abi,abij,abj->ab", sol, g, sol)
            better = feasible & (sse < best_sse)
            if np.any(better):
                best_sse = np.where(better, sse, best_sse)
                coef = np.zeros((na, nb, k))
                coef[:, :, sub] = sol
                best_coef = np.where(better[..., None], coef, best_coef)
    # coefficients -> centred log coordinates, floored so that no term starts exactly at zero
    floor = math.log(loss.min()) - 8.0
    with np.errstate(divide="ignore"):
        logc = np.maximum(np.log(np.maximum(best_coef, 0.0)), floor)
    al_grid, be_grid = np.meshgrid(alphas, betas, indexing="ij")
    if fix_E is None:
        thetas = np.stack([logc[..., 0], logc[..., 1], logc[..., 2], al_grid, be_grid], axis=-1)
    else:
        thetas = np.stack([logc[..., 0], logc[..., 1], al_grid, be_grid], axis=-1)
    # score each grid point on the exact objective
    flat = thetas.reshape(-1, thetas.shape[-1])
    scores = np.array([obj(t)[0] for t in flat]).reshape(na, nb)
    # local minima of the score on the grid (8-neighbourhood), best first
    padded = np.pad(scores, 1, constant_values=np.inf)
    is_min = np.ones_like(scores, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == 0 and dj == 0:
                continue
            nbr = padded[1 + di: 1 + di + na, 1 + dj: 1 + dj + nb]
            is_min &= scores <= nbr
    order = np.argsort(scores, axis=None)
    minima = [int(i) for i in order if is_min.flat[i]]
    chosen = minima[:n_starts]
    for i in order:  # top up with the best points overall
        if len(chosen) >= n_starts:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    return [flat[i].copy() for i in chosen]


def _bounds(loss: np.ndarray, fix_E: float | None) -> list[tuple[float, float]]:
    lo = math.log(loss.min()) - _LOG_TERM_SPAN
    hi = math.log(loss.max()) + math.log(10.0)
    b = [(lo, hi), (lo, hi), (lo, hi), EXPONENT_BOUNDS, EXPONENT_BOUNDS]
    return b[1:] if fix_E is not None else b


_LBFGS_OPTIONS = {"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-11, "maxcor": 20}


def _polish(obj: _Objective, theta0: np.ndarray, bounds, options=None):
    return minimize(obj, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                    options=options or _LBFGS_OPTIONS)


def _stationary(res, bounds, tol: float = 1e-6) -> bool:
    """True when L-BFGS-B succeeded or stopped in its line search at a stationary point.

    With tight tolerances L-BFGS-B often ends with ABNORMAL_TERMINATION_IN_LNSRCH once the
    objective cannot decrease in floating point; the projected gradient then tells.
    """
    if res.success:
        return True
    x, g = np.asarray(res.x), np.asarray(res.jac)
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    pg = np.where((x <= lo) & (g > 0) | (x >= hi) & (g < 0), 0.0, g)
    return bool(np.all(np.isfinite(pg)) and np.max(np.abs(pg)) <= tol)


@_serial
def fit_parametric(
    n: Sequence[float] | np.ndarray,
    d: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    *,
    loss_type: str = "huber",
    huber_delta: float = 1e-3,
    fix_E: float | None = None,
    alpha_grid: Sequence[float] | np.ndarray | None = None,
    beta_grid: Sequence[float] | np.ndarray | None = None,
    n_starts: int = 8,
) -> ParametricFit:
    """Chinchilla's Approach 3: fit ``L(N, D) = E + A / N**alpha + B / D**beta``.

    Parameters
    ----------
    n, d, loss : (m,) parameters, tokens and final loss of each run (m >= 5, or 4 with fix_E).
    loss_type : ``"huber"`` (Huber with ``huber_delta`` on log-loss residuals, summed) or
        ``"lsq"`` (half the sum of squared log-loss residuals).
    fix_E : hold the irreducible loss at this value instead of fitting it.
    alpha_grid, beta_grid : exponent grids for the variable-projection starts (default 30 points
        each, log-spaced over 0.05...2.5).
    n_starts : how many grid minima start an L-BFGS-B polish.
    """
    n = _as_positive_array(n, "n")
    d = _as_positive_array(d, "d")
    loss = _as_positive_array(loss, "loss")
    if not (n.shape == d.shape == loss.shape):
        raise ValueError("n, d and loss must have the same shape")
    if loss_type not in ("huber", "lsq"):
        raise ValueError("loss_type must be 'huber' or 'lsq'")
    n_free = 4 if fix_E is not None else 5
    if n.size < n_free:
        raise ValueError(f"the parametric fit needs at least {n_free} runs, got {n.size}")
    if fix_E is not None and not (0 < fix_E < loss.min()):
        raise ValueError("fix_E must be positive and below the lowest observed loss")
    delta = huber_delta if loss_type == "huber" else None
    fixed_e = math.log(fix_E) if fix_E is not None else None
    obj = _Objective(np.log(n), np.log(d), np.log(loss), delta, fixed_e)
    alphas = np.asarray(alpha_grid if alpha_grid is not None else np.geomspace(0.05, 2.5, 30))
    betas = np.asarray(beta_grid if beta_grid is not None else np.geomspace(0.05, 2.5, 30))
    starts = _grid_starts(loss, obj, alphas, betas, fix_E, n_starts)
    bounds = _bounds(loss, fix_E)
    best = None
    for t0 in starts:
        t0 = np.clip(t0, [b[0] for b in bounds], [b[1] for b in bounds])
        res = _polish(obj, t0, bounds)
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    theta = np.asarray(best.x, dtype=float)
    E, A, B, al, be = obj.natural(theta)
    fit = ParametricFit(
        E=E, A=A, B=B, alpha=al, beta=be, loss=loss_type,
        huber_delta=huber_delta if delta is not None else math.nan,
        objective=float(best.fun), n_points=int(n.size), min_observed_loss=float(loss.min()),
        fixed_E=fix_E is not None, converged=_stationary(best, bounds), n_starts=len(starts),
        theta=theta, centers=(obj.xc, obj.zc),
    )
    fit.degenerate_reasons = _degeneracy(fit, theta, bounds, n, d)
    fit.degenerate = bool(fit.degenerate_reasons)
    return fit


#: a term (E, or the N- or D-term at the typical run) below this fraction of the lowest loss has
#: vanished: the fit is degenerate even if the optimiser stopped short of the bound
_VANISHED = 1e-4


def _degeneracy(fit: ParametricFit, theta: np.ndarray, bounds, n: np.ndarray,
                d: np.ndarray) -> list[str]:
    reasons: list[str] = []
    if not fit.E < fit.min_observed_loss:
        reasons.append(
            f"the fitted irreducible loss E = {fit.E:.4g} is not below the lowest observed loss "
            f"{fit.min_observed_loss:.4g}"
        )
    vanished = {
        "log E": "E fell to about 0 (its lower bound): the data show no loss floor",
        "log A-term": "A fell to about 0 (its lower bound): the loss does not fall with N here",
        "log B-term": "B fell to about 0 (its lower bound): the loss does not fall with D here",
    }
    names = list(vanished) + ["alpha", "beta"]
    if fit.fixed_E:
        names = names[1:]
    floor = math.log(fit.min_observed_loss * _VANISHED)
    for name, v, (lo, hi) in zip(names, theta, bounds, strict=True):
        if name in vanished:
            if v < floor or v - lo < 1e-3:
                reasons.append(vanished[name])
            elif hi - v < 1e-3:
                reasons.append(f"{name} ended on its upper bound")
        elif v - lo < 1e-4 or hi - v < 1e-4:
            reasons.append(f"{name} = {v:.4g} ended on its bound {lo if v - lo < 1e-4 else hi:g}")
    if np.unique(n).size < 2 or np.unique(d).size < 2:
        reasons.append("all runs share one model size or one token count")
    if not fit.converged:
        reasons.append("the optimiser did not converge")
    return reasons


@dataclass
class ParametricBootstrap:
    """Bootstrap of Approach 3: ``samples[i] = (E, A, B, alpha, beta)`` of resample ``i``."""

    samples: np.ndarray
    n_resamples: int
    n_failed: int
    ci: float

    def column(self, name: str) -> np.ndarray:
        if name == "a":
            return self.samples[:, 4] / (self.samples[:, 3] + self.samples[:, 4])
        if name == "b":
            return self.samples[:, 3] / (self.samples[:, 3] + self.samples[:, 4])
        return self.samples[:, PARAM_NAMES.index(name)]

    def interval(self, name: str) -> tuple[float, float]:
        lo, hi = percentile_interval(self.column(name), self.ci)
        return float(lo), float(hi)

    def se(self, name: str) -> float:
        return float(_nanstd(self.column(name)))

    def allocation(self, C: float, flops_per_param_token: float = 6.0):
        """``(N_opt, D_opt)`` samples at compute C, shape ``(n_resamples,)`` each."""
        s = self.samples
        return optimal_allocation(C, s[:, 1], s[:, 2], s[:, 3], s[:, 4], flops_per_param_token)


@_serial
def bootstrap_parametric(
    fit: ParametricFit,
    n: Sequence[float] | np.ndarray,
    d: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 200,
    ci: float = 0.95,
    seed: int | None = 0,
) -> ParametricBootstrap:
    """Nonparametric bootstrap of :func:`fit_parametric` (runs resampled with replacement).

    Each resample is refitted by L-BFGS-B warm-started from the full-data optimum ``fit`` with
    the same loss and bounds; a resample is a vector of multiplicities, so nothing is copied.
    """
    n = _as_positive_array(n, "n")
    d = _as_positive_array(d, "d")
    loss = _as_positive_array(loss, "loss")
    delta = fit.huber_delta if fit.loss == "huber" else None
    fixed_e = math.log(fit.E) if fit.fixed_E else None
    obj = _Objective(np.log(n), np.log(d), np.log(loss), delta, fixed_e)
    if fit.theta is None or (obj.xc, obj.zc) != fit.centers:
        raise ValueError("bootstrap_parametric needs the fit of the same data")
    bounds = _bounds(loss, fixed_e and fit.E)
    rng = np.random.default_rng(seed)
    m = n.size
    samples = np.full((n_resamples, 5), np.nan)
    failed = 0
    opts = {"maxiter": 500, "ftol": 1e-13, "gtol": 1e-9, "maxcor": 20}
    for i in range(n_resamples):
        obj.w = np.bincount(rng.integers(0, m, m), minlength=m).astype(float)
        res = _polish(obj, fit.theta, bounds, opts)
        if not np.all(np.isfinite(res.x)):
            failed += 1
            continue
        samples[i] = obj.natural(res.x)
    return ParametricBootstrap(samples, n_resamples, failed, ci)


# --------------------------------------------------------------------------------------------
# Approach 1: lower envelope of training curves
# --------------------------------------------------------------------------------------------


@dataclass
class EnvelopeFit:
    """Result of Approach 1: ``N_opt = k * C**a`` from the lower envelope of training curves.

    ``levels`` are the FLOP levels used (shape ``(k,)``), ``winners`` the N of the run with the
    lowest loss at each; ``law`` is None (and ``message`` says why) when fewer than two distinct
    sizes ever win.
    """

    law: PowerLaw | None
    levels: np.ndarray
    winners: np.ndarray
    n_curves: int
    message: str = ""


def fit_envelope(
    curves: Sequence[tuple[float, np.ndarray, np.ndarray]], *, n_levels: int = 200,
    smooth: int = 5,
) -> EnvelopeFit:
    """Chinchilla's Approach 1.

    ``curves`` holds one ``(N, flops, loss)`` per run: its parameter count and its training
    curve (cumulative FLOPs and loss, arrays of equal length). Each curve is smoothed by a
    centred moving average of ``smooth`` points and interpolated in log FLOPs; at ``n_levels``
    log-spaced FLOP levels the run with the lowest loss among those whose curve covers the level
    (at least two) wins. ``N_opt = k * C**a`` is fitted to the winners.
    """
    prepared = []
    for nn, f, lo in curves:
        f = np.asarray(f, dtype=float)
        lo = np.asarray(lo, dtype=float)
        ok = np.isfinite(f) & np.isfinite(lo) & (f > 0) & (lo > 0)
        f, lo = f[ok], lo[ok]
        if f.size < 2:
            continue
        order = np.argsort(f)
        f, lo = f[order], lo[order]
        if smooth > 1 and lo.size >= smooth:
            kernel = np.ones(smooth) / smooth
            pad = smooth // 2
            lo = np.convolve(np.pad(lo, pad, mode="edge"), kernel, mode="valid")[: f.size]
        prepared.append((float(nn), np.log(f), lo))
    empty = EnvelopeFit(None, np.array([]), np.array([]), len(prepared))
    if len(prepared) < 2:
        empty.message = "Approach 1 needs training curves of at least two runs."
        return empty
    lo_f = min(p[1][0] for p in prepared)
    hi_f = max(p[1][-1] for p in prepared)
    grid = np.linspace(lo_f, hi_f, n_levels)
    levels, winners = [], []
    for g in grid:
        best_n, best_l, count = math.nan, math.inf, 0
        for nn, lf, lo in prepared:
            if lf[0] <= g <= lf[-1]:
                count += 1
                v = float(np.interp(g, lf, lo))
                if v < best_l:
                    best_l, best_n = v, nn
        if count >= 2:
            levels.append(math.exp(g))
            winners.append(best_n)
    levels_a, winners_a = np.array(levels), np.array(winners)
    if np.unique(winners_a).size < 2:
        return EnvelopeFit(None, levels_a, winners_a, len(prepared),
                           "Approach 1 found fewer than two model sizes on the loss envelope.")
    return EnvelopeFit(fit_power_law(levels_a, winners_a), levels_a, winners_a, len(prepared))
