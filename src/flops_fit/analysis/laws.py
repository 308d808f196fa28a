"""The fitted laws, evaluated: N_opt(C), D_opt(C), L(C) and their bootstrap bands, in one place.

Everything that turns a fitted section of ``scaling_laws.json`` into numbers at a compute
budget lives here: the predictions of
:class:`~flops_fit.analysis.scaling_analysis.ScalingAnalysis`, the curves, bands and loss
surface of the plots, the validation's prediction interval.

* :func:`evaluate` (or :func:`parametric_curve` / :func:`isoflop_curve`) takes a section and
  budgets ``C`` of shape ``(K,)`` (a scalar is ``K = 1``) and returns a :class:`LawCurve`:
  point values of shape ``(K,)`` and, when the section has a bootstrap, percentile bands of
  shape ``(K, 2)`` (``[:, 0]`` the lower, ``[:, 1]`` the upper end; a row is NaN where fewer
  than two bootstrap samples are finite).
* :meth:`LawCurve.prediction` is one budget of a curve as a :class:`Prediction`.
* :func:`residual_sigma` and :meth:`Prediction.with_scatter` widen the loss interval of a
  prediction by the scatter of the runs around the fit: a *prediction interval* for one new
  run, kept apart from the confidence interval of the expected loss.

Budgets are not checked here (callers check them with
:func:`flops_fit.config.settings.checked_budgets`); nothing here raises for extreme bootstrap
samples (overflow gives inf/NaN samples, which the percentile bands ignore).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from flops_fit import fitting
from flops_fit.analysis.sections import (
    DictView,
    IsoflopSection,
    JointSection,
    ParametricSection,
    PowerLawRecord,
    plain,
)
from flops_fit.errors import FlopsFitError

__all__ = [
    "PREDICTION_KEYS",
    "PREDICTION_Z",
    "LawCurve",
    "Prediction",
    "evaluate",
    "parametric_curve",
    "isoflop_curve",
    "joint_curve",
    "band",
    "parametric_surface",
    "residual_sigma",
]

#: the keys of a prediction's dict (``scaling_laws.json``'s ``predictions[i]``), in order
PREDICTION_KEYS = (
    "target_compute", "optimal_params", "optimal_tokens", "expected_loss", "tokens_per_param",
    "optimal_params_ci", "optimal_tokens_ci", "expected_loss_ci", "tokens_per_param_ci",
    "ci_level", "method", "degenerate", "warning",
)
#: the normal quantile of the validation's 95% prediction interval
PREDICTION_Z = 1.96


@dataclass(eq=False)
class Prediction(DictView):
    """The compute-optimal allocation at one budget, with its intervals.

    Modelled on statsmodels' ``PredictionResults``: ``*_ci`` are *confidence* intervals
    (bootstrap percentiles at ``ci_level``; None without a bootstrap) of the fitted values, and
    ``prediction_interval`` is the interval for the loss of one new run, the loss CI widened
    by the runs' scatter around the fit (None until :meth:`with_scatter` sets it).

    It is also a read-only mapping over :meth:`to_dict`, whose keys are exactly
    :data:`PREDICTION_KEYS` (``p["optimal_params"]``, ``p.get("expected_loss_ci")`` and
    ``dict(p)`` work as they did when a prediction was a dict).
    """

    target_compute: float
    optimal_params: float | None
    optimal_tokens: float | None
    expected_loss: float | None
    tokens_per_param: float | None
    optimal_params_ci: list | None = None
    optimal_tokens_ci: list | None = None
    expected_loss_ci: list | None = None
    tokens_per_param_ci: list | None = None
    ci_level: float = 0.95
    method: str = ""
    degenerate: bool = False
    warning: str = ""
    residual_sigma_log: float | None = None  # not part of the dict
    prediction_interval: list | None = None  # not part of the dict
    extra: dict[str, Any] = field(default_factory=dict)  # keys of a stored dict not named here

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (``PREDICTION_KEYS`` plus any ``extra``)."""
        out = {k: getattr(self, k) for k in PREDICTION_KEYS}
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        """From a stored prediction (``scaling_laws.json``'s ``predictions[i]``)."""
        known = {k: data[k] for k in PREDICTION_KEYS if k in data}
        extra = {k: v for k, v in data.items() if k not in PREDICTION_KEYS}
        known.setdefault("target_compute", math.nan)
        for k in ("optimal_params", "optimal_tokens", "expected_loss", "tokens_per_param"):
            known.setdefault(k, None)
        return cls(**known, extra=extra)

    def with_scatter(self, sigma_log: float, z: float = PREDICTION_Z,
                     runs: int = 1) -> Prediction:
        """This prediction with ``prediction_interval`` for the mean loss of ``runs`` new runs
        (one by default).

        The loss CI (or the point value, without one) widened by
        ``exp(-+z * sigma_log / sqrt(runs))``, ``sigma_log`` being the standard deviation of
        the runs' log-loss residuals (:func:`residual_sigma`, kept as ``residual_sigma_log``).
        """
        lo, hi = self.expected_loss_ci or (self.expected_loss,) * 2
        half = z * sigma_log / math.sqrt(runs)
        interval = [lo * math.exp(-half), hi * math.exp(half)]
        return replace(self, residual_sigma_log=sigma_log, prediction_interval=interval)


def band(samples: np.ndarray | None, ci: float) -> np.ndarray | None:
    """Percentile bands of bootstrap ``samples`` of shape ``(S, K)``: shape ``(K, 2)``.

    Equal-tailed at ``ci`` over the finite samples of each column; a row is NaN where fewer
    than two samples are finite. None when ``samples`` is None.
    """
    if samples is None:
        return None
    samples = np.asarray(samples, dtype=float)
    out = np.full((samples.shape[1], 2), np.nan)
    for j in range(samples.shape[1]):
        col = samples[:, j]
        if np.isfinite(col).sum() > 1:
            out[j] = fitting.percentile_interval(col, ci)
    return out


@dataclass
class LawCurve:
    """A law evaluated at budgets ``compute`` of shape ``(K,)``.

    ``n``, ``d``, ``loss``, ``tokens_per_param``: shape ``(K,)`` (NaN where undefined).
    ``*_band``: shape ``(K, 2)`` bootstrap percentile bands at ``ci_level``, or None without a
    bootstrap (rows of NaN where too few samples are finite).
    """

    compute: np.ndarray
    n: np.ndarray
    d: np.ndarray
    loss: np.ndarray
    tokens_per_param: np.ndarray
    n_band: np.ndarray | None
    d_band: np.ndarray | None
    loss_band: np.ndarray | None
    tokens_per_param_band: np.ndarray | None
    ci_level: float
    method: str
    degenerate: bool = False
    warning: str = ""

    def prediction(self, index: int = 0) -> Prediction:
        """Budget ``compute[index]`` as a :class:`Prediction`."""
        i = index

        def ci(b: np.ndarray | None) -> list | None:
            if b is None or np.isnan(b[i]).all():
                return None
            return plain(b[i])

        return Prediction(
            target_compute=float(self.compute[i]), optimal_params=plain(self.n[i]),
            optimal_tokens=plain(self.d[i]), expected_loss=plain(self.loss[i]),
            tokens_per_param=plain(self.tokens_per_param[i]),
            optimal_params_ci=ci(self.n_band), optimal_tokens_ci=ci(self.d_band),
            expected_loss_ci=ci(self.loss_band),
            tokens_per_param_ci=ci(self.tokens_per_param_band),
            ci_level=self.ci_level, method=self.method, degenerate=self.degenerate,
            warning=self.warning)


def _curve(c: np.ndarray, n, d, loss, ns, ds, ls, ci: float, method: str,
           degenerate: bool = False, warning: str = "") -> LawCurve:
    with np.errstate(all="ignore"):
        tpp = d / n
        tpp_s = None if ns is None or ds is None else ds / ns
    return LawCurve(c, n, d, loss, tpp, band(ns, ci), band(ds, ci), band(ls, ci),
                    band(tpp_s, ci), ci, method, degenerate, warning)


def _budgets(compute: float | np.ndarray) -> np.ndarray:
    return np.atleast_1d(np.asarray(compute, dtype=float))


def _start(sec: ParametricSection | IsoflopSection, compute: Any, ci: float | None,
           unavailable: str) -> tuple[np.ndarray, float]:
    """The budgets as an array and the interval level; ``unavailable`` if the fit is not."""
    if not sec.available:
        raise FlopsFitError(unavailable)
    return _budgets(compute), ci if ci is not None else float(sec.ci_level or 0.95)


def parametric_curve(sec: ParametricSection, compute: float | np.ndarray,
                     ci: float | None = None) -> LawCurve:
    """Approach 3's allocation at budgets ``compute`` (shape ``(K,)``, or a scalar).

    ``N_opt, D_opt`` maximise ``L(N, D)`` under ``C = k N D`` (``k`` the section's
    ``flops_per_param_token``); the loss is ``L(N_opt, D_opt)``. Bands from the bootstrap
    refits (``E, A, B, alpha, beta`` per row). ``ci`` defaults to the section's level.
    Raises :class:`FlopsFitError` when the fit is unavailable.
    """
    c, ci = _start(sec, compute, ci, f"The parametric fit is unavailable ({sec.message}); "
                   "predict with the isoflop method or train more runs.")
    kappa = sec.kappa
    E, A, B, al, be = sec.params
    s = sec.bootstrap.samples() if sec.bootstrap is not None else None
    ns = ds = ls = None
    with np.errstate(all="ignore"):  # extreme bootstrap samples may overflow: NaN/inf
        n, d = fitting.optimal_allocation(c, A, B, al, be, kappa)
        loss = fitting.parametric_loss(n, d, E, A, B, al, be)
        if s is not None:
            cs = c[None, :]
            ns, ds = fitting.optimal_allocation(cs, s[:, 1:2], s[:, 2:3], s[:, 3:4],
                                                s[:, 4:5], kappa)
            ls = fitting.parametric_loss(ns, ds, s[:, 0:1], s[:, 1:2], s[:, 2:3], s[:, 3:4],
                                         s[:, 4:5])
    degenerate = bool(sec.degenerate)
    warning = ("the parametric fit is degenerate (" + "; ".join(
        sec.degenerate_reasons or []) + ")") if degenerate else ""
    return _curve(c, n, d, loss, ns, ds, ls, ci, "parametric", degenerate, warning)


def _law_at(law: PowerLawRecord | None, c: np.ndarray) -> np.ndarray:
    if law is None:
        return np.full(c.shape, np.nan)
    with np.errstate(all="ignore"):
        return np.asarray(law.at(c), dtype=float)


def isoflop_curve(sec: IsoflopSection, compute: float | np.ndarray,
                  ci: float | None = None) -> LawCurve:
    """Approach 2's power laws at budgets ``compute`` (shape ``(K,)``, or a scalar).

    ``N_opt = k_n C**a``, ``D_opt = k_d C**b``, ``L_opt = k_l C**l``; bands from the bootstrap
    (``log k, exponent`` pairs per row). ``ci`` defaults to the section's level. Raises
    :class:`FlopsFitError` when Approach 2 has no power law.
    """
    c, ci = _start(sec, compute, ci, f"Approach 2 has no power law ({sec.message}); predict "
                   "with the parametric method or widen the sweep.")
    n, d, loss = (_law_at(law, c) for law in (sec.n_opt, sec.d_opt, sec.loss_opt))
    s = sec.bootstrap.samples() if sec.bootstrap is not None else None
    ns = ds = ls = None
    if s is not None:
        lc = np.log(c)[None, :]
        with np.errstate(all="ignore"):
            ns, ds, ls = (np.exp(s[:, 2 * j:2 * j + 1] + s[:, 2 * j + 1:2 * j + 2] * lc)
                          for j in range(3))
    return _curve(c, n, d, loss, ns, ds, ls, ci, "isoflop")


def joint_curve(sec: JointSection, compute: float | np.ndarray,
                ci: float | None = None) -> LawCurve:
    """The joint IsoFLOP fit at budgets ``compute`` (shape ``(K,)``, or a scalar).

    ``N_opt = G C**a``, ``D_opt = C / (k N_opt)``, ``L_opt = E + A C**-gamma``; bands from the
    stored parametric bootstrap through :class:`flops_fit.fitting.JointBootstrap` (percentiles
    widened by ``t_dof / z`` and by the failed fraction). No bands when the fit is not
    ``precise``. Raises :class:`FlopsFitError` when the fit is unavailable.
    """
    c, ci = _start(sec, compute, ci, f"The joint IsoFLOP fit is unavailable ({sec.message}); "
                   "predict with another approach or train more runs.")
    center = np.array([[math.nan if v is None else float(v) for v in
                        (sec.E, sec.A, sec.gamma, sec.kappa, sec.G, sec.a)]])
    k = sec.kappa_flops
    n, d, loss = (fitting.joint_quantity(center, q, c, k)[0]
                  for q in ("n_opt", "d_opt", "loss_opt"))
    boot = sec.bootstrap
    s = boot.samples() if boot is not None and sec.precise else None
    bands: list[np.ndarray | None] = [None, None, None, None]
    if s is not None:
        jb = fitting.JointBootstrap(
            samples=s, center=center[0], n_resamples=int(boot.n_resamples or len(s)),
            n_failed=int(boot.n_failed or 0), ci=ci, dof=int(boot.extra.get("dof") or 1),
            sigma=float(boot.extra.get("sigma") or 0.0), flops_per_param_token=k)
        if jb.usable:
            for j, q in enumerate(("n_opt", "d_opt", "loss_opt")):
                lo, hi = np.asarray(jb.interval(q, c, ci)).reshape(2, -1)
                bands[j] = np.stack([lo, hi], axis=1)
            with np.errstate(all="ignore"):
                tpp = jb.quantity("d_opt", c) / jb.quantity("n_opt", c)
            bands[3] = band(tpp, ci)
    with np.errstate(all="ignore"):
        tpp_c = d / n
    return LawCurve(c, n, d, loss, tpp_c, *bands, ci, "joint")


def evaluate(section: ParametricSection | IsoflopSection | JointSection,
             compute: float | np.ndarray,
             ci: float | None = None) -> LawCurve:
    """The section's law at budgets ``compute``: :func:`parametric_curve` or
    :func:`isoflop_curve` by the section's type."""
    if isinstance(section, ParametricSection):
        return parametric_curve(section, compute, ci)
    if isinstance(section, IsoflopSection):
        return isoflop_curve(section, compute, ci)
    if isinstance(section, JointSection):
        return joint_curve(section, compute, ci)
    raise TypeError(f"no law to evaluate in a {type(section).__name__}")


def parametric_surface(sec: ParametricSection, n: float | np.ndarray,
                       d: float | np.ndarray) -> np.ndarray:
    """Approach 3's fitted loss ``L(N, D) = E + A / N**alpha + B / D**beta`` at ``n``, ``d``
    (broadcast together; the loss surface of the plots, the fit at a run's N and D).

    Raises :class:`FlopsFitError` when the fit is unavailable.
    """
    if not sec.available:
        raise FlopsFitError(f"The parametric fit is unavailable ({sec.message}); there is no "
                            "L(N, D) to evaluate.")
    with np.errstate(all="ignore"):
        return np.asarray(fitting.parametric_loss(np.asarray(n, dtype=float),
                                                  np.asarray(d, dtype=float), *sec.params),
                          dtype=float)


def residual_sigma(sec: ParametricSection, n: np.ndarray, d: np.ndarray,
                   loss: np.ndarray) -> float:
    """Standard deviation (ddof=1) of ``log(loss / L(n, d))`` over runs, shapes ``(R,)``.

    0.0 when the parametric fit is unavailable or fewer than three runs are given.
    """
    if not sec.available or len(loss) < 3:
        return 0.0
    fit = parametric_surface(sec, n, d)
    return float(np.std(np.log(np.asarray(loss, dtype=float) / fit), ddof=1))
