"""Shared numerics of the fits: BLAS threads, percentile intervals, log-log power laws."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
#: bounds of the exponents alpha and beta (a fit that ends on one is degenerate)
EXPONENT_BOUNDS = (0.01, 3.0)
#: the E, A- and B-terms may fall this many e-folds below the lowest loss before they hit a bound
LOG_TERM_SPAN = 20.0


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


def serial(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with serial_blas():
            return func(*args, **kwargs)

    return wrapper


def as_positive_array(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
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


def nanstd(samples: np.ndarray, axis: int = 0) -> np.ndarray:
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
    x = as_positive_array(x, "x")
    y = as_positive_array(y, "y")
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
