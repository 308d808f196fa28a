"""``ScalingAnalysis``: the fitted scaling laws of one run directory (``scaling_laws.json``).

It holds the typed sections of the three approaches (:mod:`flops_fit.analysis.sections`), names the one
that predicts, and answers :meth:`~ScalingAnalysis.predict_optimal_size` (a
:class:`~flops_fit.analysis.laws.Prediction`) and :meth:`~ScalingAnalysis.chinchilla_table`. It is
built by :class:`flops_fit.analysis.analyzer.ScalingLawAnalyzer` from the fits made here
(:func:`parametric_section`, :func:`isoflop_section`, :func:`choose_method`), or rebuilt from
the file with :meth:`ScalingAnalysis.from_json`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flops_fit import fitting
from flops_fit.analysis import laws
from flops_fit.analysis import text as printing
from flops_fit.analysis.laws import Prediction
from flops_fit.analysis.sections import (
    Approach1Section,
    IsoflopSection,
    ParametricSection,
    PowerLawRecord,
    plain,
)
from flops_fit.config import AnalysisConfig, checked_budgets
from flops_fit.errors import FlopsFitError, UnusableFitError
from flops_fit.rundir.io import read_json

__all__ = ["SCHEMA", "DEFAULT_TABLE_BUDGETS", "MIN_SIZES_PER_BUDGET", "ScalingAnalysis",
           "parametric_section", "isoflop_section", "law_record", "choose_method"]

SCHEMA = "flops-fit/scaling-laws/1"
#: the seed's nine budgets of ``chinchilla_table()``
DEFAULT_TABLE_BUDGETS = [float(c) for c in np.logspace(18, 22, 9)]
MIN_SIZES_PER_BUDGET = 3


# ------------------------------------------------------------------------------------------------
# fits -> sections
# ------------------------------------------------------------------------------------------------


def law_record(law: fitting.PowerLaw | None, log_k: np.ndarray | None = None,
               exps: np.ndarray | None = None, ci: float = 0.95) -> dict[str, Any] | None:
    """The JSON of a fitted power law (None when it has no finite exponent), plain values.

    ``log_k``/``exps``: bootstrap samples of its log coefficient and exponent, shape ``(S,)``.
    """
    if law is None or not math.isfinite(law.exponent):
        return None
    out: dict[str, Any] = {
        "coefficient": law.coefficient, "exponent": law.exponent,
        "coefficient_ci": None, "exponent_ci": None,
        "exponent_se": law.exponent_se, "log_coefficient_se": law.log_coefficient_se,
        "log_x_center": law.log_x_center, "n_points": law.n_points,
    }
    if log_k is not None and exps is not None and np.isfinite(exps).any():
        out["coefficient_ci"] = np.exp(fitting.percentile_interval(log_k, ci))
        out["exponent_ci"] = fitting.percentile_interval(exps, ci)
        out["exponent_bootstrap_se"] = np.nanstd(exps[np.isfinite(exps)], ddof=1) \
            if np.isfinite(exps).sum() > 1 else None
    return plain(out)


def isoflop_section(budget: np.ndarray, n: np.ndarray, d: np.ndarray, c: np.ndarray,
                    loss: np.ndarray, cfg: AnalysisConfig) -> IsoflopSection:
    """Approach 2 of the runs (arrays of shape ``(R,)``) with its bootstrap."""
    fit = fitting.fit_isoflop(budget, n, d, loss, c, min_sizes=MIN_SIZES_PER_BUDGET,
                              n_bootstrap=cfg.bootstrap, ci=cfg.ci, seed=cfg.seed)
    boot = fit.bootstrap
    budgets = []
    for j, o in enumerate(fit.budgets):
        b: dict[str, Any] = {
            "compute_budget": o.compute_budget, "compute": o.compute, "n_runs": o.n_runs,
            "n_sizes": o.n_sizes, "params_range": [math.exp(v) for v in o.log_n_range],
            "optimal_params": o.optimal_params, "optimal_tokens": o.optimal_tokens,
            "optimal_loss": o.optimal_loss, "interior": o.interior,
            "used": o.interior and fit.available, "note": o.note,
            "optimal_params_ci": None, "optimal_tokens_ci": None, "optimal_loss_ci": None,
        }
        if boot is not None and o.interior:
            for key, arr in (("optimal_params", boot.budget_params),
                             ("optimal_tokens", boot.budget_tokens),
                             ("optimal_loss", boot.budget_loss)):
                b[f"{key}_ci"] = fitting.percentile_interval(arr[:, j], cfg.ci)
        budgets.append(b)
    s = boot.samples if boot is not None else None

    def law(fitted: fitting.PowerLaw | None, j: int) -> dict[str, Any] | None:
        return law_record(fitted, s[:, j] if s is not None else None,
                          s[:, j + 1] if s is not None else None, cfg.ci)

    return IsoflopSection.from_dict(plain({
        "available": fit.available,
        "message": fit.message,
        "warnings": fit.warnings,
        "n_opt": law(fit.n_opt, 0),
        "d_opt": law(fit.d_opt, 2),
        "loss_opt": law(fit.loss_opt, 4),
        "budgets": budgets,
        "skipped_budgets": fit.skipped_budgets,
        "min_sizes_per_budget": MIN_SIZES_PER_BUDGET,
        "ci_level": cfg.ci,
        "bootstrap": None if boot is None else {
            "n_resamples": boot.n_resamples, "n_failed": boot.n_failed, "seed": cfg.seed,
            "resampling": "runs with replacement within each budget",
            "columns": list(boot.COLUMNS), "samples": boot.samples,
        },
    }))


def parametric_section(n: np.ndarray, d: np.ndarray, loss: np.ndarray, cfg: AnalysisConfig,
                       kappa: float) -> ParametricSection:
    """Approach 3 of the runs (arrays of shape ``(R,)``) with its bootstrap.

    ``kappa``: FLOPs per parameter and token of the allocation ``C = kappa N D``.
    """
    n_free = 4 if cfg.fix_E is not None else 5
    if n.size < n_free:
        return ParametricSection.from_dict({"available": False, "message": (
            f"The parametric fit needs at least {n_free} runs and has {n.size}; it waits "
            "for more runs.")})
    if cfg.fix_E is not None and not cfg.fix_E < loss.min():
        raise FlopsFitError(
            f"analysis.fix_E={cfg.fix_E:g} is not below the lowest observed loss "
            f"{loss.min():.4g}; lower it or set it to null."
        )
    fit = fitting.fit_parametric(n, d, loss, loss_type=cfg.loss, huber_delta=cfg.huber_delta,
                                 fix_E=cfg.fix_E)
    sec: dict[str, Any] = {
        "available": True, "message": "",
        "E": fit.E, "A": fit.A, "B": fit.B, "alpha": fit.alpha, "beta": fit.beta,
        "a": fit.a, "b": fit.b, "G": fit.G,
        "form": "L(N, D) = E + A / N**alpha + B / D**beta",
        "loss": fit.loss, "huber_delta": cfg.huber_delta if fit.loss == "huber" else None,
        "objective": fit.objective, "n_points": fit.n_points,
        "fixed_E": cfg.fix_E, "min_observed_loss": fit.min_observed_loss,
        "converged": fit.converged, "n_starts": fit.n_starts,
        "degenerate": fit.degenerate, "degenerate_reasons": fit.degenerate_reasons,
        "flops_per_param_token": kappa, "ci_level": cfg.ci,
    }
    g = fit.G
    sec["n_opt"] = {"coefficient": g * kappa ** (-fit.a), "exponent": fit.a,
                    "coefficient_ci": None, "exponent_ci": None}
    sec["d_opt"] = {"coefficient": kappa ** (-fit.b) / g, "exponent": fit.b,
                    "coefficient_ci": None, "exponent_ci": None}
    for name in (*fitting.PARAM_NAMES, "a", "b"):
        sec[f"{name}_ci"] = None
        sec[f"{name}_se"] = None
    sec["bootstrap"] = None
    if cfg.bootstrap > 0:
        boot = fitting.bootstrap_parametric(fit, n, d, loss, n_resamples=cfg.bootstrap,
                                            ci=cfg.ci, seed=cfg.seed)
        for name in (*fitting.PARAM_NAMES, "a", "b"):
            if fit.fixed_E and name == "E":
                continue
            sec[f"{name}_ci"] = boot.interval(name)
            sec[f"{name}_se"] = boot.se(name)
        s = boot.samples
        with np.errstate(all="ignore"):
            gs = (s[:, 3] * s[:, 1] / (s[:, 4] * s[:, 2])) ** (1.0 / (s[:, 3] + s[:, 4]))
            a_s = s[:, 4] / (s[:, 3] + s[:, 4])
            b_s = 1.0 - a_s
            sec["n_opt"]["coefficient_ci"] = fitting.percentile_interval(
                gs * kappa ** (-a_s), cfg.ci)
            sec["d_opt"]["coefficient_ci"] = fitting.percentile_interval(
                kappa ** (-b_s) / gs, cfg.ci)
        sec["n_opt"]["exponent_ci"] = sec["a_ci"]
        sec["d_opt"]["exponent_ci"] = sec["b_ci"]
        sec["bootstrap"] = {
            "n_resamples": boot.n_resamples, "n_failed": boot.n_failed, "seed": cfg.seed,
            "resampling": "runs with replacement; each refit warm-started from the full fit",
            "columns": list(fitting.PARAM_NAMES), "samples": s,
        }
    return ParametricSection.from_dict(plain(sec))


def choose_method(preferred: str, par: ParametricSection, iso: IsoflopSection
                  ) -> tuple[str, str]:
    """The method that predicts, and a sentence when it is not the preferred one (or unsafe)."""
    par_ok = bool(par.available) and not par.degenerate
    iso_ok = bool(iso.available)
    if preferred == "parametric":
        if par_ok:
            return "parametric", ""
        if iso_ok:
            return "isoflop", f"The parametric fit {par.problem()}, so the IsoFLOP power laws " \
                              "predict."
    else:
        if iso_ok:
            return "isoflop", ""
        if par_ok:
            return "parametric", ("Approach 2 has no power law (" + (iso.message or
                                  "no interior budget") + "), so the parametric fit predicts.")
    if par.available:
        return "parametric", (f"The parametric fit {par.problem()} and Approach 2 has no "
                              "power law; predictions use the degenerate fit, treat them as "
                              "unreliable.")
    return "", ""


# ------------------------------------------------------------------------------------------------
# the analysis object
# ------------------------------------------------------------------------------------------------


def _section(value: Any, cls: type) -> Any:
    return value if isinstance(value, cls) else cls.from_dict(value or {})


@dataclass
class ScalingAnalysis:
    """The fitted scaling laws of one run directory (what ``scaling_laws.json`` holds).

    ``parametric``, ``isoflop`` and ``approach1`` are the typed sections of the three
    approaches (plain JSON dicts given here are read into them); ``method`` names the one that
    predicts. Build it with :class:`~flops_fit.analysis.analyzer.ScalingLawAnalyzer` or
    :meth:`from_json`. ``holdout`` stays the plain JSON object of the holdout check.
    """

    method: str
    parametric: ParametricSection
    isoflop: IsoflopSection
    approach1: Approach1Section = field(default_factory=dict)  # type: ignore[assignment]
    method_note: str = ""
    holdout: dict[str, Any] | None = None
    predictions: list[Prediction] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    created_utc: str = ""

    def __post_init__(self) -> None:
        self.parametric = _section(self.parametric, ParametricSection)
        self.isoflop = _section(self.isoflop, IsoflopSection)
        self.approach1 = _section(self.approach1, Approach1Section)
        self.predictions = [p if isinstance(p, Prediction) else Prediction.from_dict(p)
                            for p in self.predictions]

    # -- (de)serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``scaling_laws.json``."""
        return {
            "schema": SCHEMA,
            "created_utc": self.created_utc,
            "method": self.method,
            "method_note": self.method_note,
            "parametric": self.parametric.to_dict(),
            "isoflop": self.isoflop.to_dict(),
            "approach1": self.approach1.to_dict(),
            "predictions": [p.to_dict() for p in self.predictions],
            "holdout": self.holdout,
            "warnings": self.warnings,
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, source: str | Path | dict[str, Any]) -> ScalingAnalysis:
        """Rebuild from ``scaling_laws.json`` (a path) or its parsed object."""
        where = "the analysis object"
        if isinstance(source, (str, Path)):
            where = str(source)
            source = read_json(source, "scaling-law analysis")
        if not isinstance(source, dict):
            raise FlopsFitError(
                f"{where} is not a scaling-law analysis (expected a JSON object); run "
                "`flops-fit analyze` again."
            )
        missing = [k for k in ("method", "parametric", "isoflop") if k not in source]
        if missing or not isinstance(source.get("parametric"), dict) \
                or not isinstance(source.get("isoflop"), dict):
            raise FlopsFitError(
                f"{where} is not a flops-fit scaling-law analysis (missing or malformed "
                f"{', '.join(missing) or 'parametric/isoflop'}); run `flops-fit analyze` again."
            )
        return cls(
            method=str(source["method"]),
            parametric=ParametricSection.from_dict(source["parametric"]),
            isoflop=IsoflopSection.from_dict(source["isoflop"]),
            approach1=Approach1Section.from_dict(source.get("approach1") or {}),
            method_note=str(source.get("method_note") or ""),
            holdout=source.get("holdout"),
            predictions=[Prediction.from_dict(p) for p in source.get("predictions") or []],
            warnings=list(source.get("warnings") or []),
            provenance=dict(source.get("provenance") or {}),
            created_utc=str(source.get("created_utc") or ""),
        )

    # -- convenience --------------------------------------------------------------------------

    @property
    def ci_level(self) -> float:
        return float(self.parametric.ci_level or self.isoflop.ci_level or 0.95)

    @property
    def compute_budgets(self) -> list[float]:
        """The planned budgets of the IsoFLOP groups (empty for ungrouped data)."""
        return [float(b.compute_budget) for b in self.isoflop.budgets or []]

    def exponents(self, method: str | None = None) -> tuple[float, float]:
        """``(a, b)`` of ``N_opt ~ C**a``, ``D_opt ~ C**b`` by ``method`` (default: its own)."""
        method = method or self.method
        sec = self.parametric if method == "parametric" else self.isoflop

        def exponent(law: PowerLawRecord | None) -> float:
            return math.nan if law is None or law.exponent is None else float(law.exponent)

        return exponent(sec.n_opt), exponent(sec.d_opt)

    # -- predictions --------------------------------------------------------------------------

    def predict_optimal_size(self, compute_budget: float, method: str | None = None
                             ) -> Prediction:
        """The compute-optimal allocation at ``compute_budget`` FLOPs.

        A :class:`~flops_fit.analysis.laws.Prediction` (also a mapping): ``target_compute``,
        ``optimal_params``, ``optimal_tokens``, ``expected_loss``, ``tokens_per_param`` and for
        each of these four a ``<key>_ci`` = ``[lo, hi]`` (bootstrap percentiles at
        ``ci_level``; None without a bootstrap), plus ``method``, ``degenerate`` and
        ``warning``. ``method`` overrides the analysis's own choice.
        """
        c = checked_budgets([compute_budget], "compute_budget")[0]
        method = method or self.method
        if method in ("parametric", "isoflop"):
            curve = laws.parametric_curve if method == "parametric" else laws.isoflop_curve
            section = self.parametric if method == "parametric" else self.isoflop
            return _plausible(curve(section, c, self.ci_level).prediction(), method)
        raise FlopsFitError(
            "No scaling law could be fitted, so there is nothing to predict with; train more "
            "runs and run `flops-fit analyze` again." if not method else
            f"Unknown prediction method {method!r}; use 'parametric' or 'isoflop'."
        )

    def chinchilla_table(self, compute_budgets: list[float] | None = None) -> str:
        """A markdown table of the compute-optimal N, D, D/N and loss with their intervals.

        ``compute_budgets`` default to the seed's nine, ``np.logspace(18, 22, 9)``.
        """
        budgets = (DEFAULT_TABLE_BUDGETS if compute_budgets is None
                   else checked_budgets(compute_budgets, "compute_budgets"))
        return printing.chinchilla_table([self.predict_optimal_size(c) for c in budgets],
                                         self.ci_level)

    def describe(self) -> str:
        """The fitted laws with their intervals, a few plain lines."""
        return printing.describe(self)


def _plausible(p: Prediction, method: str) -> Prediction:
    """``p``, unless it cannot be true (fewer than one parameter or token, a loss <= 0)."""
    n, d, loss = p["optimal_params"], p["optimal_tokens"], p["expected_loss"]
    if all(x is not None and math.isfinite(x) and x >= 1 for x in (n, d)) \
            and loss is not None and math.isfinite(loss) and loss > 0:
        return p
    raise UnusableFitError(
        f"No usable scaling law: the {method} fit predicts fewer than one parameter or token, "
        "or no positive loss, so it is not shown; likely causes are a learning rate far from "
        "right for these models (train.lr_base), diverged or too few runs, or budgets too "
        "close together; look at plots/training_curves.png and re-train."
    )
