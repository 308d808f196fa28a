"""Approach 3: L(N, D) = E + A / N**alpha + B / D**beta by variable projection, bootstrap."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from flops_fit.fitting.common import (
    EXPONENT_BOUNDS,
    LOG_TERM_SPAN,
    PARAM_NAMES,
    as_positive_array,
    nanstd,
    percentile_interval,
    serial,
)

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
    lo = math.log(loss.min()) - LOG_TERM_SPAN
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


@serial
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
    n = as_positive_array(n, "n")
    d = as_positive_array(d, "d")
    loss = as_positive_array(loss, "loss")
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
        return float(nanstd(self.column(name)))

    def allocation(self, C: float, flops_per_param_token: float = 6.0):
        """``(N_opt, D_opt)`` samples at compute C, shape ``(n_resamples,)`` each."""
        s = self.samples
        return optimal_allocation(C, s[:, 1], s[:, 2], s[:, 3], s[:, 4], flops_per_param_token)


@serial
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
    n = as_positive_array(n, "n")
    d = as_positive_array(d, "d")
    loss = as_positive_array(loss, "loss")
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
