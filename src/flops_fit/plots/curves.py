"""The fitted laws as the plots need them: :class:`Laws` over ``scaling_laws.json``.

N_opt(C), D_opt(C) and L_opt(C) of Approaches 1-3 on a grid of C, with their bootstrap bands,
the parametric loss surface and allocation, the IsoFLOP optima and the analysis's prediction.
Intervals have one shape: ``section[name + "_ci"] = [lo, hi]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

from flops_fit.analysis import laws
from flops_fit.analysis.scaling_analysis import ScalingAnalysis
from flops_fit.analysis.sections import Bootstrap, ParametricSection
from flops_fit.fitting import (
    fit_power_law,
    optimal_allocation,
    parametric_loss,
    percentile_interval,
)


@dataclass(frozen=True)
class Optimum:
    """One budget's IsoFLOP minimum (``c``: the x of the power laws)."""

    budget: float
    c: float
    n: float
    d: float
    loss: float
    interior: bool
    n_ci: tuple[float, float] | None
    d_ci: tuple[float, float] | None
    loss_ci: tuple[float, float] | None

    def value(self, j: int) -> float:
        """N, D or the loss (``j`` = 0, 1, 2)."""
        return (self.n, self.d, self.loss)[j]

    def ci(self, j: int) -> tuple[float, float] | None:
        return (self.n_ci, self.d_ci, self.loss_ci)[j]



#: the law names of the three panels (N_opt, D_opt, L_opt)
LAW_NAMES = ("n_opt", "d_opt", "loss_opt")


def num(x: Any) -> float:
    """``x`` as a float, NaN when it is not a finite number."""
    if isinstance(x, (bool, dict)):
        return math.nan
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def interval(obj: Any, name: str) -> tuple[float, float] | None:
    """The finite ``(lo, hi)`` of ``obj[name + "_ci"]`` (sorted), or None."""
    x = obj.get(f"{name}_ci") if isinstance(obj, Mapping) else None
    if isinstance(x, (list, tuple)) and len(x) == 2:
        lo, hi = num(x[0]), num(x[1])
        if math.isfinite(lo) and math.isfinite(hi):
            return (min(lo, hi), max(lo, hi))
    return None


def _section(analysis: dict[str, Any], name: str) -> dict[str, Any]:
    sec = analysis.get(name)
    return sec if isinstance(sec, dict) else {}


class Band:
    """A power law ``y = k C^a`` with a pointwise confidence band in log space."""

    def __init__(self, k: float, a: float, xc: float, se_center: float, a_half: float,
                 z: float):
        self.k, self.a, self.xc = k, a, xc
        self.se_center, self.a_half, self.z = se_center, a_half, z

    def __call__(self, c: np.ndarray) -> np.ndarray:
        return self.k * np.asarray(c, dtype=float) ** self.a

    def band(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(lo, hi)`` of the band at ``c``, or None when nothing is known about it."""
        lc = np.log(np.asarray(c, dtype=float))
        h_center = self.z * self.se_center if math.isfinite(self.se_center) else 0.0
        h_slope = self.a_half if math.isfinite(self.a_half) else 0.0
        if h_center == 0.0 and h_slope == 0.0:
            return None
        half = np.sqrt(h_center ** 2 + ((lc - self.xc) * h_slope) ** 2)
        y = self(c)
        return y * np.exp(-half), y * np.exp(half)


def _spread(pts: list[tuple[float, float]], k: float, a: float) -> tuple[float, float]:
    """``(se of the centre, t quantile)`` of points about ``k C^a`` (NaN, 1.96 if too few)."""
    m = len(pts)
    if m <= 2:
        return math.nan, 1.96
    lx = np.log([c for c, _ in pts])
    resid = np.log([y for _, y in pts]) - np.log(k * np.exp(lx) ** a)
    return math.sqrt(float(resid @ resid) / (m - 2) / m), float(stats.t.ppf(0.975, m - 2))


class Laws:
    """The laws of one analysis (an empty dict: no fit) as curves over compute."""

    def __init__(self, analysis: dict[str, Any]):
        self.analysis = analysis
        self.isoflop = _section(analysis, "isoflop")
        self.parametric_section = _section(analysis, "parametric")
        prov = analysis.get("provenance")
        conv = prov.get("conventions") if isinstance(prov, dict) else None
        self.conventions: dict[str, Any] = conv if isinstance(conv, dict) else {}

    # --------------------------------------------------------------------------- conventions

    @property
    def param_key(self) -> str:
        """The run-record field the fit used as N (total or non-embedding parameters)."""
        for key in ("params_field", "params"):
            val = self.conventions.get(key)
            if isinstance(val, str) and "non" in val and "embed" in val:
                return "num_params_non_embedding"
        return "num_params"

    @property
    def uses_6nd(self) -> bool:
        """True when the fit took C = 6ND instead of the measured FLOPs."""
        return str(self.conventions.get("flops", "")).lower() == "6nd"

    @property
    def kappa(self) -> float:
        """FLOPs per parameter per token of the parametric allocation (C = kappa N D)."""
        for src in (self.parametric_section, self.conventions):
            v = num(src.get("flops_per_param_token"))
            if v > 0:
                return v
        return 6.0

    @property
    def ci_level(self) -> float:
        for sec in (self.parametric_section, self.isoflop):
            v = num(sec.get("ci_level"))
            if 0 < v < 1:
                return v
        return 0.95

    def dropped_ids(self) -> set[str]:
        """The run ids the fit dropped (``provenance.runs.dropped``).

        A duplicate run id is left out: its first record was used, so the id names a used run.
        """
        prov = self.analysis.get("provenance")
        runs = prov.get("runs") if isinstance(prov, dict) else None
        dropped = runs.get("dropped") if isinstance(runs, dict) else None
        return {str(d["run_id"]) for d in dropped or []
                if isinstance(d, dict) and d.get("run_id")
                and not str(d.get("reason", "")).startswith("duplicate")}

    # ------------------------------------------------------------------------- Approach 3

    def parametric(self) -> dict[str, Any] | None:
        """``{E, A, B, alpha, beta, ...}`` when all five are finite (A, B, exponents > 0)."""
        par = self.parametric_section
        if not par or par.get("available") is False:
            return None
        vals = {k: num(par.get(k)) for k in ("E", "A", "B", "alpha", "beta")}
        if not all(math.isfinite(v) for v in vals.values()):
            return None
        if not (vals["A"] > 0 and vals["B"] > 0 and vals["alpha"] > 0 and vals["beta"] > 0):
            return None
        return {**par, **vals}

    def degenerate_note(self) -> str:
        par = self.parametric_section
        if not par.get("degenerate"):
            return ""
        reasons = par.get("degenerate_reasons") or []
        text = "; ".join(str(r) for r in reasons[:2])
        return "degenerate fit" + (f": {text}" if text else "")

    def loss_surface(self, n: np.ndarray, d: np.ndarray) -> np.ndarray:
        par = self.parametric()
        return parametric_loss(n, d, par["E"], par["A"], par["B"], par["alpha"], par["beta"])

    def allocation(self, c: np.ndarray):
        """Approach 3's ``(N_opt, D_opt, L_opt)`` at ``c``."""
        par = self.parametric()
        n, d = optimal_allocation(c, par["A"], par["B"], par["alpha"], par["beta"], self.kappa)
        return n, d, parametric_loss(n, d, par["E"], par["A"], par["B"], par["alpha"],
                                     par["beta"])

    def parametric_curves(self, grid: np.ndarray):
        """Approach 3's N_opt, D_opt and L_opt on ``grid``, each ``(y, band or None)``."""
        sec = ParametricSection.from_dict(self.parametric())
        sec.available = True  # parametric() checked the five parameters
        sec.flops_per_param_token = self.kappa
        sec.ci_level = self.ci_level
        curve = laws.parametric_curve(sec, grid)
        out = []
        for y, b in ((curve.n, curve.n_band), (curve.d, curve.d_band),
                     (curve.loss, curve.loss_band)):
            ok = b is not None and not np.isnan(b).all()
            out.append((y, (b[:, 0], b[:, 1]) if ok else None))
        return out

    def parametric_exponent(self, j: int) -> float:
        """``a``, ``b`` of N_opt, D_opt ~ C^x (NaN for the loss, ``j`` = 2)."""
        return (num(self.parametric_section.get("a")),
                num(self.parametric_section.get("b")), math.nan)[j]

    # ------------------------------------------------------------------------- Approach 2

    def optima(self) -> list[Optimum]:
        """The IsoFLOP optima of the analysis, by compute."""
        out = []
        for b in self.isoflop.get("budgets") or []:
            if not isinstance(b, dict):
                continue
            cb = num(b.get("compute_budget"))
            c = num(b.get("compute"))
            c = c if c > 0 else cb
            if not c > 0:
                continue
            out.append(Optimum(
                cb if cb > 0 else c, c, num(b.get("optimal_params")),
                num(b.get("optimal_tokens")), num(b.get("optimal_loss")),
                bool(b.get("interior")), interval(b, "optimal_params"),
                interval(b, "optimal_tokens"), interval(b, "optimal_loss")))
        return sorted(out, key=lambda o: o.c)

    @property
    def isoflop_available(self) -> bool:
        return bool(self.isoflop.get("available", True))

    def power_law(self, name: str, points: list[tuple[float, float]]) -> Band | None:
        """The power law ``isoflop[name]`` with a confidence band.

        The band combines the spread of the fitted points about the line (its centre) with the
        exponent's interval from the analysis (its slope); when the analysis carries OLS
        standard errors those are used instead.
        """
        law = self.isoflop.get(name)
        if not isinstance(law, dict):
            return None
        k, a = num(law.get("coefficient")), num(law.get("exponent"))
        if not (k > 0 and math.isfinite(a)):
            return None
        pts = [(c, y) for c, y in points if c > 0 and y > 0]
        xc = num(law.get("log_x_center"))
        if not math.isfinite(xc):
            xc = float(np.log([c for c, _ in pts]).mean()) if pts else math.nan
        se_center, z = _spread(pts, k, a)
        a_half = math.nan
        ci = interval(law, "exponent")
        if ci:
            a_half = (ci[1] - ci[0]) / 2
        else:
            se = num(law.get("exponent_se"))
            if math.isfinite(se):
                a_half = z * se
        if not math.isfinite(xc):
            return Band(k, a, 0.0, math.nan, math.nan, z)
        return Band(k, a, xc, se_center, a_half, z)

    def isoflop_curve(self, j: int, grid: np.ndarray, pts: list[tuple[float, float]]):
        """Approach 2's law ``j`` (0: N_opt, 1: D_opt, 2: L_opt) on ``grid``: (y, band, exp)."""
        name = LAW_NAMES[j]
        law = self.power_law(name, pts)
        if law is None and j == 2:
            law = _law_from_points(pts)  # not in the analysis: fit the points
        if law is None:
            return None
        s = self._samples("isoflop")
        band = None
        if s is not None and s.shape[1] >= 2 * j + 2 and self.isoflop.get(name):
            with np.errstate(all="ignore"):
                ys = np.exp(s[:, 2 * j, None] + s[:, 2 * j + 1, None] * np.log(grid)[None, :])
            band = self._percentiles(ys)
        if band is None:
            band = law.band(grid)
        return law(grid), band, law.a

    # ------------------------------------------------------------------------- Approach 1

    def approach1_law(self) -> tuple[float, float] | None:
        """``(k, a)`` of Approach 1's N_opt = k C^a, or None."""
        a1 = _section(self.analysis, "approach1")
        law = a1.get("n_opt") if a1.get("available") else None
        if not isinstance(law, dict):
            return None
        k, e = num(law.get("coefficient")), num(law.get("exponent"))
        return (k, e) if k > 0 and math.isfinite(e) else None

    # ------------------------------------------------------------------------- prediction

    def prediction(self, compute_budget: float | None) -> dict[str, Any] | None:
        """The analysis's own prediction at ``compute_budget`` (its method), or None."""
        if not self.analysis or not compute_budget:
            return None
        try:
            return ScalingAnalysis.from_json(self.analysis).predict_optimal_size(compute_budget)
        except Exception:  # noqa: BLE001 - an older file, or nothing to predict
            return None

    # ---------------------------------------------------------------------------- helpers

    def _samples(self, section: str) -> np.ndarray | None:
        """The bootstrap samples of ``section`` (rows: resamples), or None."""
        boot = _section(self.analysis, section).get("bootstrap")
        return Bootstrap.from_dict(boot).samples() if isinstance(boot, dict) else None

    def _percentiles(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Pointwise interval at :attr:`ci_level` of samples ``y`` (resamples x points)."""
        if y.shape[0] < 2 or not np.isfinite(y).any():
            return None
        lo, hi = percentile_interval(y, self.ci_level, axis=0)
        return lo, hi


def _law_from_points(pts: list[tuple[float, float]]) -> Band | None:
    if len(pts) < 2:
        return None
    try:
        pl = fit_power_law([p[0] for p in pts], [p[1] for p in pts])
    except ValueError:
        return None
    se_center, z = _spread(pts, pl.coefficient, pl.exponent) if pl.n_points > 2 \
        else (math.nan, 1.96)
    a_half = z * pl.exponent_se if pl.n_points > 2 else math.nan
    return Band(pl.coefficient, pl.exponent, pl.log_x_center, se_center, a_half, z)
