"""The fitted laws as the plots need them: :class:`Laws` over a typed
:class:`~flops_fit.analysis.scaling_analysis.ScalingAnalysis`.

Nothing here evaluates a law: every curve is the approach's own evaluation from the registry
(``APPROACHES[name].curve(section, grid)``, :mod:`flops_fit.analysis.laws`), with the
bootstrap's percentile bands (none without a bootstrap); the parametric loss surface and
allocation are :func:`~flops_fit.analysis.laws.parametric_surface` and
:func:`~flops_fit.analysis.laws.parametric_curve`. The IsoFLOP optima, Approach 1's envelope
law and the analysis's own prediction come from the same typed analysis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flops_fit.analysis import laws
from flops_fit.analysis.approaches import APPROACHES
from flops_fit.analysis.laws import LawCurve, Prediction
from flops_fit.analysis.scaling_analysis import ScalingAnalysis
from flops_fit.analysis.sections import ParametricSection, PowerLawRecord
from flops_fit.errors import FlopsFitError

__all__ = ["Laws", "ApproachCurve", "Optimum", "LAW_NAMES", "num", "interval"]

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


@dataclass(frozen=True)
class ApproachCurve:
    """One registry approach's :class:`~flops_fit.analysis.laws.LawCurve` on a grid of C."""

    name: str  #: its key in APPROACHES and in :data:`~flops_fit.plots.style.APPROACH_STYLES`
    title: str  #: the registry's title
    curve: LawCurve
    exponents: tuple[float, float, float]  #: of its N_opt, D_opt, L_opt power laws (NaN: none)

    def values(self, j: int) -> np.ndarray:
        """N_opt, D_opt or L_opt on the grid (``j`` = 0, 1, 2)."""
        return (self.curve.n, self.curve.d, self.curve.loss)[j]

    def band(self, j: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(lo, hi)`` of the bootstrap band of law ``j``; None without a bootstrap."""
        b = (self.curve.n_band, self.curve.d_band, self.curve.loss_band)[j]
        if b is None or np.isnan(b).all():
            return None
        return b[:, 0], b[:, 1]

    @property
    def has_bootstrap(self) -> bool:
        return self.curve.n_band is not None


def _exponent(law: Any) -> float:
    return num(law.exponent) if isinstance(law, PowerLawRecord) else math.nan


class Laws:
    """The laws of one analysis as curves over compute (``analysis`` None: no fit)."""

    def __init__(self, analysis: ScalingAnalysis | None = None):
        self.analysis = analysis
        prov = analysis.provenance if analysis is not None else {}
        conv = prov.get("conventions") if isinstance(prov, dict) else None
        self.conventions: dict[str, Any] = conv if isinstance(conv, dict) else {}

    @classmethod
    def read(cls, path: Path | None, notes: list[str]) -> Laws:
        """The laws of ``scaling_laws.json`` at ``path``; none (with a line in ``notes``) when
        the file is missing or is not a readable analysis."""
        if path is None:
            return cls()
        if not Path(path).exists():
            notes.append(f"no fit at {path}: only the data are drawn")
            return cls()
        try:
            return cls(ScalingAnalysis.from_json(path))
        except FlopsFitError as exc:
            notes.append(f"no usable fit at {path} ({exc}): only the data are drawn")
            return cls()

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
        par = self.analysis.parametric if self.analysis is not None else None
        for v in (par.flops_per_param_token if par is not None else None,
                  self.conventions.get("flops_per_param_token")):
            if num(v) > 0:
                return float(v)
        return 6.0

    @property
    def ci_level(self) -> float:
        return self.analysis.ci_level if self.analysis is not None else 0.95

    def dropped_ids(self) -> set[str]:
        """The run ids the fit dropped (``provenance.runs.dropped``).

        A duplicate run id is left out: its first record was used, so the id names a used run.
        """
        prov = self.analysis.provenance if self.analysis is not None else {}
        runs = prov.get("runs") if isinstance(prov, dict) else None
        dropped = runs.get("dropped") if isinstance(runs, dict) else None
        return {str(d["run_id"]) for d in dropped or []
                if isinstance(d, dict) and d.get("run_id")
                and not str(d.get("reason", "")).startswith("duplicate")}

    # ------------------------------------------------------------- the registry's approaches

    def curve(self, name: str, grid: np.ndarray) -> ApproachCurve | None:
        """Approach ``name``'s laws on ``grid`` (its registry evaluation), or None when the
        analysis has no such fit."""
        a = APPROACHES.get(name)
        sec = self.analysis.sections.get(name) if self.analysis is not None else None
        if a is None or sec is None or not sec.available:
            return None
        try:
            curve = a.curve(sec, np.asarray(grid, dtype=float), self.ci_level)
        except FlopsFitError:
            return None
        exps = tuple(_exponent(getattr(sec, law, None)) for law in LAW_NAMES)
        return ApproachCurve(name, a.title, curve, exps)  # type: ignore[arg-type]

    def curves(self, grid: np.ndarray) -> list[ApproachCurve]:
        """Every registry approach the analysis has a fit of, on ``grid``, registry order."""
        out = [self.curve(name, grid) for name in APPROACHES]
        return [c for c in out if c is not None]

    # ------------------------------------------------------------------------- Approach 3

    def parametric(self) -> ParametricSection | None:
        """Approach 3's section when it is available with five finite parameters (A, B and the
        exponents > 0), else None."""
        par = self.analysis.parametric if self.analysis is not None else None
        if par is None or not par.available:
            return None
        E, A, B, al, be = par.params
        if not all(math.isfinite(v) for v in (E, A, B, al, be)):
            return None
        if not (A > 0 and B > 0 and al > 0 and be > 0):
            return None
        return par

    def degenerate_note(self) -> str:
        par = self.analysis.parametric if self.analysis is not None else None
        if par is None or not par.degenerate:
            return ""
        text = "; ".join(str(r) for r in (par.degenerate_reasons or [])[:2])
        return "degenerate fit" + (f": {text}" if text else "")

    def loss_surface(self, n: np.ndarray, d: np.ndarray) -> np.ndarray:
        """The fitted L(N, D) at ``n``, ``d``
        (:func:`~flops_fit.analysis.laws.parametric_surface`)."""
        return laws.parametric_surface(self.parametric(), n, d)

    def allocation(self, c: np.ndarray):
        """Approach 3's ``(N_opt, D_opt, L_opt)`` at ``c``
        (:func:`~flops_fit.analysis.laws.parametric_curve`)."""
        curve = laws.parametric_curve(self.parametric(), np.asarray(c, dtype=float),
                                      self.ci_level)
        return curve.n, curve.d, curve.loss

    # ------------------------------------------------------------------------- Approach 2

    def optima(self) -> list[Optimum]:
        """The IsoFLOP optima of the analysis, by compute."""
        if self.analysis is None:
            return []
        out = []
        for b in self.analysis.isoflop.budgets or []:
            if not isinstance(b, Mapping):
                continue
            cb, c = num(b.compute_budget), num(b.compute)
            c = c if c > 0 else cb
            if not c > 0:
                continue
            out.append(Optimum(
                cb if cb > 0 else c, c, num(b.optimal_params), num(b.optimal_tokens),
                num(b.optimal_loss), bool(b.interior), interval(b, "optimal_params"),
                interval(b, "optimal_tokens"), interval(b, "optimal_loss")))
        return sorted(out, key=lambda o: o.c)

    # ------------------------------------------------------------------------- Approach 1

    def approach1_law(self) -> tuple[float, float] | None:
        """``(k, a)`` of Approach 1's N_opt = k C^a, or None."""
        a1 = self.analysis.approach1 if self.analysis is not None else None
        law = a1.n_opt if a1 is not None and a1.available else None
        if not isinstance(law, PowerLawRecord):
            return None
        k, e = num(law.coefficient), num(law.exponent)
        return (k, e) if k > 0 and math.isfinite(e) else None

    # ------------------------------------------------------------------------- prediction

    def prediction(self, compute_budget: float | None) -> Prediction | None:
        """The analysis's own prediction at ``compute_budget`` (its method); when it cannot
        predict, the first approach (its method first) whose law gives a value there; None
        without a fit."""
        if self.analysis is None or not compute_budget:
            return None
        try:
            return self.analysis.predict_optimal_size(compute_budget)
        except FlopsFitError:
            pass
        names = [self.analysis.method, *(n for n in APPROACHES if n != self.analysis.method)]
        for name in names:
            got = self.curve(name, np.array([float(compute_budget)]))
            if got is not None and np.isfinite(got.curve.n[0]):
                return got.curve.prediction()
        return None
