"""A skewed IsoFLOP profile for the joint fit: a measured diagnostic, not the default form.

    L(N, C) = E + A * C**(-gamma) * (1 + kappa * u**2 * (1 + s * u)),   u = ln N - ln(G * C**a)

The joint fit's profile in ``ln N`` is a parabola; a Chinchilla law's is not: at fixed C its
reducible loss is ``(beta e**(-alpha u) + alpha e**(beta u)) / (alpha + beta)`` times the
frontier's, which is ``1 + (alpha beta / 2) u**2 (1 + s u) + O(u**4)`` with
``s = (beta - alpha) / 3``. ``s < 0``: the profile rises faster on the small-N side; ``s > 0``:
on the large-N side. ``u = 0`` stays the minimum (the curvature there is ``2 kappa > 0``), so
``N*(C) = G C**a`` keeps its meaning. :func:`fit_joint_skew` refits a :func:`~.joint.fit_joint`
result with the seventh parameter ``s`` (warm-started from it, analytic Jacobian) and says
whether the runs ask for it (F-test of the added term). What it changed on real and synthetic
sweeps is in docs/calibration.md ("An asymmetric profile"); it is not the default because it
cut the N_opt bias of strongly skewed synthetic laws without cutting the typical error, and made
the Chinchilla reference's held-out N_opt worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.optimize import least_squares

from flops_fit.fitting.common import serial
from flops_fit.fitting.joint import JointBootstrap, JointFit, JointProblem

#: bounds of the skew s (the sweeps' |u| stays under ~2, where 1 + s u stays positive)
SKEW_BOUNDS = (-1.0, 1.0)


class SkewProblem(JointProblem):
    """:class:`~.joint.JointProblem` with a seventh parameter, the skew ``s`` (last in theta)."""

    def __init__(self, n: np.ndarray, c: np.ndarray, y: np.ndarray, fixed_E: float | None):
        super().__init__(n, c, y, fixed_E)
        self.p += 1

    def model(self, theta: np.ndarray) -> np.ndarray:
        E, la, g, lk, gp, a, s = self.full(theta)
        u = self.x - gp - a * self.t
        return E + np.exp(la - g * self.t) * (1.0 + math.exp(lk) * u * u * (1.0 + s * u))

    def jac(self, theta: np.ndarray) -> np.ndarray:
        E, la, g, lk, gp, a, s = self.full(theta)
        u = self.x - gp - a * self.t
        f = np.exp(la - g * self.t)
        fk = f * math.exp(lk)
        R = f + fk * u * u * (1.0 + s * u)
        du = -fk * (2.0 * u + 3.0 * s * u * u)  # d/dg' of the reducible loss
        cols = [R, -self.t * R, fk * u * u * (1.0 + s * u), du, du * self.t, fk * u**3]
        if self.fixed_E is None:
            cols = [np.ones_like(R), *cols]
        return np.stack(cols, axis=1) / (E + R)[:, None]

    def bounds(self, y_min: float, y_max: float) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = super().bounds(y_min, y_max)
        return np.append(lo, SKEW_BOUNDS[0]), np.append(hi, SKEW_BOUNDS[1])


@dataclass
class SkewFit:
    """The joint fit refitted with a skewed profile (loss in nats/token, compute in FLOPs).

    ``skew_se``, ``a_se`` from the Jacobian; ``f_stat``, ``p_value``: F-test of the skew term
    against the symmetric fit of the same runs (a small ``p_value``: the runs ask for it).
    """

    E: float
    A: float
    gamma: float
    kappa: float
    skew: float
    G: float
    a: float
    skew_se: float
    a_se: float
    sigma: float
    dof: int
    sse: float
    sse_symmetric: float
    f_stat: float
    p_value: float
    flops_per_param_token: float = 6.0
    #: parametric bootstrap (:func:`bootstrap_joint_skew`); its samples are the six parameters
    #: of :data:`~.joint.JOINT_PARAM_NAMES` (the skew is not kept)
    bootstrap: JointBootstrap | None = None
    #: internal: (problem, theta, residuals) for the bootstrap
    state: tuple | None = field(default=None, repr=False)

    @property
    def vector(self) -> np.ndarray:
        """``(E, A, gamma, kappa, G, a)``."""
        return np.array([self.E, self.A, self.gamma, self.kappa, self.G, self.a])

    def interval(self, name: str, C: float | np.ndarray | None = None, ci: float | None = None):
        """Confidence interval of a quantity, as :meth:`~.joint.JointBootstrap.interval`."""
        if self.bootstrap is None:
            raise ValueError("no bootstrap: call bootstrap_joint_skew first")
        return self.bootstrap.interval(name, C, ci)

    def n_opt(self, C: float | np.ndarray) -> float | np.ndarray:
        """Compute-optimal parameters ``G C**a``."""
        return self.G * np.asarray(C, dtype=float) ** self.a

    def loss_opt(self, C: float | np.ndarray) -> float | np.ndarray:
        """Loss frontier ``E + A C**-gamma``."""
        return self.E + self.A * np.asarray(C, dtype=float) ** -self.gamma

    def predict(self, n: float | np.ndarray, c: float | np.ndarray) -> float | np.ndarray:
        """Loss of a run with N parameters and spent compute C."""
        u = np.log(n) - math.log(self.G) - self.a * np.log(c)
        f = 1.0 + self.kappa * u * u * (1.0 + self.skew * u)
        return self.E + self.A * np.asarray(c, dtype=float) ** -self.gamma * f


def fit_joint_skew(fit: JointFit, starts: tuple[float, ...] = (0.0, -0.2, 0.2)) -> SkewFit:
    """Refit the runs of ``fit`` (a :func:`~.joint.fit_joint` result) with the skew ``s``.

    Starts from the symmetric optimum with each ``s`` in ``starts``; keeps the best. Raises
    ValueError when ``fit`` has no fitted law or too few runs for seven parameters.
    """
    if fit.state is None or not fit.available:
        raise ValueError("fit_joint_skew needs an available joint fit")
    _, n, _, loss, c, sym, theta, r = fit.state
    prob = SkewProblem(n, c, loss, sym.fixed_E)
    dof = loss.size - prob.p
    if dof <= 0:
        raise ValueError(f"the skewed joint fit needs more than {prob.p} runs")
    lo, hi = prob.bounds(float(loss.min()), float(loss.max()))
    best = None
    for s in starts:
        x0 = np.clip(np.append(theta, s), lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
        res = least_squares(prob.resid, x0, jac=prob.jac, bounds=(lo, hi), method="trf",
                            xtol=1e-12, ftol=1e-12, gtol=1e-12, x_scale="jac")
        if np.all(np.isfinite(res.x)) and (best is None or res.cost < best.cost):
            best = res
    E, A, g, kap, G, a = prob.natural(best.x[:-1])
    sse, sse0 = float(best.fun @ best.fun), float(r @ r)
    J = np.asarray(best.jac, dtype=float)
    cov = sse / dof * np.linalg.pinv(J.T @ J)
    f_stat = max(sse0 - sse, 0.0) / (sse / dof) if sse > 0 else math.inf
    return SkewFit(float(E), float(A), float(g), float(kap), float(best.x[-1]), float(G),
                   float(a), math.sqrt(max(cov[-1, -1], 0.0)), math.sqrt(max(cov[-2, -2], 0.0)),
                   math.sqrt(sse / dof), dof, sse, sse0, f_stat,
                   float(stats.f.sf(f_stat, 1, dof)), fit.flops_per_param_token,
                   state=(prob, np.asarray(best.x, dtype=float), np.asarray(best.fun)))


@serial
def bootstrap_joint_skew(skew: SkewFit, *, n_resamples: int = 200, ci: float = 0.95,
                         seed: int | None = 0, max_nfev: int = 200) -> JointBootstrap:
    """Parametric bootstrap of a :func:`fit_joint_skew` result, as ``joint.bootstrap_joint``:
    fitted log loss plus resampled centred residuals inflated by ``sqrt(m / dof)``, each refit
    warm-started; failed refits are counted (NaN rows). Also sets ``skew.bootstrap``."""
    if skew.state is None:
        raise ValueError("bootstrap_joint_skew needs a fit_joint_skew result")
    prob, theta, r = skew.state
    rng = np.random.default_rng(seed)
    fitted, ly = np.log(prob.model(theta)), prob.ly
    rc = (r - r.mean()) * math.sqrt(r.size / skew.dof)
    samples, failed = np.full((n_resamples, 6), np.nan), 0
    try:
        for i in range(n_resamples):
            sim = np.exp(fitted + rc[rng.integers(0, r.size, r.size)])
            prob.ly = np.log(sim)
            lo, hi = prob.bounds(float(sim.min()), float(sim.max()))
            x0 = np.clip(theta, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
            try:
                res = least_squares(prob.resid, x0, jac=prob.jac, bounds=(lo, hi), method="trf",
                                    xtol=1e-10, ftol=1e-10, gtol=1e-10, x_scale="jac",
                                    max_nfev=max_nfev)
                ok = res.status > 0 and bool(np.all(np.isfinite(res.x)))
            except ValueError:
                ok = False
            if ok:
                samples[i] = prob.natural(res.x[:-1])
            failed += not ok
    finally:
        prob.ly = ly
    skew.bootstrap = JointBootstrap(samples, skew.vector, n_resamples, failed, ci, skew.dof,
                                    skew.sigma * math.sqrt(r.size / skew.dof),
                                    skew.flops_per_param_token)
    return skew.bootstrap
