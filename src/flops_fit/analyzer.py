"""The analyze stage: ``results.json`` -> ``analysis/scaling_laws.json`` -> ``ScalingAnalysis``.

:class:`ScalingLawAnalyzer` reads the run records, keeps the completed runs with a finite
positive loss (every other record is listed with the reason it was dropped), fits Chinchilla's
Approaches 1-3 (:mod:`flops_fit.fitting`) with bootstrap intervals, and writes the fit with its
provenance atomically. :class:`ScalingAnalysis` is what the file holds; it can be rebuilt from
it (:meth:`ScalingAnalysis.from_json`) and answers :meth:`~ScalingAnalysis.predict_optimal_size`
and :meth:`~ScalingAnalysis.chinchilla_table`. :func:`run_analysis` is the stage as called by
``flops-fit analyze``: it also prints the laws and the table and appends a line to
``analysis/history.jsonl``.

Which fit predicts is ``AnalysisConfig.predict_with``; the default is ``"parametric"``
(Approach 3): it uses every completed run (also partial sweeps and runs not planned on an
IsoFLOP grid), predicts the loss as well as N and D, and extrapolates through a law with a loss
floor E. When that fit is degenerate (E not below the lowest observed loss, a parameter on its
bound, no convergence) the IsoFLOP power laws (Approach 2) predict instead, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flops_fit import fitting
from flops_fit.config import AnalysisConfig
from flops_fit.config import checked_budgets as _checked_budgets
from flops_fit.errors import FlopsFitError, NotEnoughDataError
from flops_fit.rundir import atomic_write_json, file_lock, read_json

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "AnalysisConfig",
    "ScalingAnalysis",
    "ScalingLawAnalyzer",
    "run_analysis",
    "DEFAULT_TABLE_BUDGETS",
    "REQUIRED_FIELDS",
]

SCHEMA = "flops-fit/scaling-laws/1"
#: the seed's nine budgets of ``chinchilla_table()``
DEFAULT_TABLE_BUDGETS = [float(c) for c in np.logspace(18, 22, 9)]
#: fields every completed run record must carry
REQUIRED_FIELDS = ("compute_budget", "num_params", "num_tokens", "flops", "final_loss")
MIN_RUNS = 3
MIN_SIZES_PER_BUDGET = 3
HISTORY_FILE = "history.jsonl"
ANALYSIS_FILE = "scaling_laws.json"


# ------------------------------------------------------------------------------------------------
# reading the runs
# ------------------------------------------------------------------------------------------------


@dataclass
class _Runs:
    """The usable runs as arrays (N and C under the chosen conventions), plus the bookkeeping."""

    run_ids: list[str]
    budget: np.ndarray
    n: np.ndarray
    d: np.ndarray
    c: np.ndarray
    loss: np.ndarray
    dropped: list[dict[str, str]] = field(default_factory=list)
    status_counts: dict[str, int] = field(default_factory=dict)
    n_records: int = 0

    def subset(self, mask: np.ndarray) -> _Runs:
        ids = [r for r, m in zip(self.run_ids, mask, strict=True) if m]
        return _Runs(ids, self.budget[mask], self.n[mask], self.d[mask], self.c[mask],
                     self.loss[mask], [], {}, int(mask.sum()))


def _record_name(rec: dict[str, Any], i: int) -> str:
    rid = rec.get("run_id")
    return f"run {rid!r}" if rid is not None else f"record #{i} (no run_id)"


def _positive(rec: dict[str, Any], key: str, i: int, path: Path) -> float:
    if key not in rec:
        raise FlopsFitError(
            f"Completed {_record_name(rec, i)} in {path} has no '{key}' field; every completed "
            f"record needs {', '.join(('run_id', 'status') + REQUIRED_FIELDS)}, so fix or "
            "remove that record."
        )
    v = rec[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    if not ok:
        raise FlopsFitError(
            f"Completed {_record_name(rec, i)} in {path} has {key}={v!r}, which is not a "
            "positive number; fix or remove that record."
        )
    return float(v)


def _select_runs(records: Any, path: Path, cfg: AnalysisConfig) -> _Runs:
    """Validate the records and keep the completed runs with a finite positive loss."""
    if not isinstance(records, list):
        raise FlopsFitError(
            f"{path} is not a list of run records (found a JSON {type(records).__name__}); "
            "rebuild it with `flops-fit train` or restore it."
        )
    n_key = "num_params" if cfg.params_convention == "total" else "num_params_non_embedding"
    rows: list[tuple[str, float, float, float, float, float]] = []
    dropped: list[dict[str, str]] = []
    counts: dict[str, int] = {}
    seen: set[str] = set()
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise FlopsFitError(
                f"Entry #{i} of {path} is a JSON {type(rec).__name__}, not a run record; "
                "fix or remove it."
            )
        if "status" not in rec:
            raise FlopsFitError(
                f"{_record_name(rec, i).capitalize()} in {path} has no 'status' field; give it "
                "one (completed, failed, diverged or pending)."
            )
        status = str(rec["status"])
        counts[status] = counts.get(status, 0) + 1
        rid = rec.get("run_id")
        if status != "completed":
            dropped.append({"run_id": str(rid), "reason": f"status {status}"})
            continue
        if rid is None:
            raise FlopsFitError(
                f"Completed record #{i} in {path} has no 'run_id' field; give every record a "
                "unique run_id."
            )
        rid = str(rid)
        budget = _positive(rec, "compute_budget", i, path)
        n_tot = _positive(rec, "num_params", i, path)
        d = _positive(rec, "num_tokens", i, path)
        flops = _positive(rec, "flops", i, path)
        n = n_tot if n_key == "num_params" else _positive(rec, n_key, i, path)
        if "final_loss" not in rec:
            _positive(rec, "final_loss", i, path)  # raises: missing field
        loss = rec["final_loss"]
        if loss is not None and (isinstance(loss, bool) or not isinstance(loss, (int, float))):
            raise FlopsFitError(
                f"Completed {_record_name(rec, i)} in {path} has final_loss={loss!r}, which is "
                "not a number; fix or remove that record."
            )
        if rid in seen:
            dropped.append({"run_id": rid, "reason": "duplicate run_id (first record kept)"})
            continue
        if loss is None or not math.isfinite(loss):
            dropped.append({"run_id": rid, "reason": f"final_loss is not finite ({loss})"})
            continue
        if loss <= 0:
            dropped.append({"run_id": rid, "reason": f"final_loss is not positive ({loss})"})
            continue
        seen.add(rid)
        c = flops if cfg.flops_convention == "flops" else 6.0 * n * d
        rows.append((rid, budget, n, d, c, float(loss)))
    arr = np.array([r[1:] for r in rows], dtype=float).reshape(-1, 5)
    return _Runs([r[0] for r in rows], arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4],
                 dropped, counts, len(records))


def _read_results(path: Path) -> tuple[Any, str]:
    """The parsed records and the sha256 of exactly the bytes parsed."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FlopsFitError(
            f"No results file at {path}; run `flops-fit train` first (or point run_dir at a "
            "folder with a results.json)."
        ) from None
    except IsADirectoryError:
        raise FlopsFitError(f"{path} is a folder, not a results file; remove it.") from None
    except OSError as exc:
        raise FlopsFitError(f"Cannot read results file {path}: {exc.strerror or exc}.") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno}: {exc.msg})" if isinstance(exc, json.JSONDecodeError) else ""
        raise FlopsFitError(
            f"Results file {path} is not valid JSON{where}; it may be half-written or corrupt, "
            "so rebuild it with `flops-fit train` (finished runs are kept) or restore it."
        ) from None
    return data, hashlib.sha256(raw).hexdigest()


def _read_curve(path: Path, n: float, use_6nd: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """``(flops, train_loss)`` of one metrics.jsonl, skipping unreadable (half-written) lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    f, lo = [], []
    for line in text.splitlines():
        try:
            row = json.loads(line)
            loss = float(row["train_loss"])
            x = 6.0 * n * float(row["tokens"]) if use_6nd else float(row["flops"])
        except (ValueError, KeyError, TypeError):
            continue
        f.append(x)
        lo.append(loss)
    return (np.array(f), np.array(lo)) if len(f) >= 2 else None


# ------------------------------------------------------------------------------------------------
# fitting -> JSON sections
# ------------------------------------------------------------------------------------------------


def _pair(x: tuple[float, float] | np.ndarray) -> list[float | None]:
    return [_f(x[0]), _f(x[1])]


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _law_dict(law: fitting.PowerLaw | None, log_k: np.ndarray | None = None,
              exps: np.ndarray | None = None, ci: float = 0.95) -> dict[str, Any] | None:
    if law is None or not math.isfinite(law.exponent):
        return None
    out: dict[str, Any] = {
        "coefficient": _f(law.coefficient), "exponent": _f(law.exponent),
        "coefficient_ci": None, "exponent_ci": None,
        "exponent_se": _f(law.exponent_se), "log_coefficient_se": _f(law.log_coefficient_se),
        "log_x_center": _f(law.log_x_center), "n_points": law.n_points,
    }
    if log_k is not None and exps is not None and np.isfinite(exps).any():
        out["coefficient_ci"] = _pair(np.exp(fitting.percentile_interval(log_k, ci)))
        out["exponent_ci"] = _pair(fitting.percentile_interval(exps, ci))
        out["exponent_bootstrap_se"] = _f(np.nanstd(exps[np.isfinite(exps)], ddof=1)) \
            if np.isfinite(exps).sum() > 1 else None
    return out


def _isoflop_section(runs: _Runs, cfg: AnalysisConfig) -> dict[str, Any]:
    fit = fitting.fit_isoflop(runs.budget, runs.n, runs.d, runs.loss, runs.c,
                              min_sizes=MIN_SIZES_PER_BUDGET, n_bootstrap=cfg.bootstrap,
                              ci=cfg.ci, seed=cfg.seed)
    boot = fit.bootstrap
    budgets = []
    for j, o in enumerate(fit.budgets):
        b: dict[str, Any] = {
            "compute_budget": o.compute_budget, "compute": o.compute, "n_runs": o.n_runs,
            "n_sizes": o.n_sizes, "params_range": [math.exp(v) for v in o.log_n_range],
            "optimal_params": _f(o.optimal_params), "optimal_tokens": _f(o.optimal_tokens),
            "optimal_loss": _f(o.optimal_loss), "interior": o.interior,
            "used": o.interior and fit.available, "note": o.note,
            "optimal_params_ci": None, "optimal_tokens_ci": None, "optimal_loss_ci": None,
        }
        if boot is not None and o.interior:
            for key, arr in (("optimal_params", boot.budget_params),
                             ("optimal_tokens", boot.budget_tokens),
                             ("optimal_loss", boot.budget_loss)):
                b[f"{key}_ci"] = _pair(fitting.percentile_interval(arr[:, j], cfg.ci))
        budgets.append(b)
    s = boot.samples if boot is not None else None
    return {
        "available": fit.available,
        "message": fit.message,
        "warnings": fit.warnings,
        "n_opt": _law_dict(fit.n_opt, s[:, 0] if s is not None else None,
                           s[:, 1] if s is not None else None, cfg.ci),
        "d_opt": _law_dict(fit.d_opt, s[:, 2] if s is not None else None,
                           s[:, 3] if s is not None else None, cfg.ci),
        "loss_opt": _law_dict(fit.loss_opt, s[:, 4] if s is not None else None,
                              s[:, 5] if s is not None else None, cfg.ci),
        "budgets": budgets,
        "skipped_budgets": fit.skipped_budgets,
        "min_sizes_per_budget": MIN_SIZES_PER_BUDGET,
        "ci_level": cfg.ci,
        "bootstrap": None if boot is None else {
            "n_resamples": boot.n_resamples, "n_failed": boot.n_failed, "seed": cfg.seed,
            "resampling": "runs with replacement within each budget",
            "columns": list(boot.COLUMNS), "samples": boot.samples,
        },
    }


def _parametric_section(runs: _Runs, cfg: AnalysisConfig, kappa: float) -> dict[str, Any]:
    n_free = 4 if cfg.fix_E is not None else 5
    if runs.n.size < n_free:
        return {"available": False, "message": (
            f"The parametric fit needs at least {n_free} runs and has {runs.n.size}; it waits "
            "for more runs.")}
    if cfg.fix_E is not None and not cfg.fix_E < runs.loss.min():
        raise FlopsFitError(
            f"analysis.fix_E={cfg.fix_E:g} is not below the lowest observed loss "
            f"{runs.loss.min():.4g}; lower it or set it to null."
        )
    fit = fitting.fit_parametric(runs.n, runs.d, runs.loss, loss_type=cfg.loss,
                                 huber_delta=cfg.huber_delta, fix_E=cfg.fix_E)
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
        boot = fitting.bootstrap_parametric(fit, runs.n, runs.d, runs.loss,
                                            n_resamples=cfg.bootstrap, ci=cfg.ci, seed=cfg.seed)
        for name in (*fitting.PARAM_NAMES, "a", "b"):
            if fit.fixed_E and name == "E":
                continue
            sec[f"{name}_ci"] = _pair(boot.interval(name))
            sec[f"{name}_se"] = _f(boot.se(name))
        s = boot.samples
        with np.errstate(all="ignore"):
            gs = (s[:, 3] * s[:, 1] / (s[:, 4] * s[:, 2])) ** (1.0 / (s[:, 3] + s[:, 4]))
            a_s = s[:, 4] / (s[:, 3] + s[:, 4])
            b_s = 1.0 - a_s
            sec["n_opt"]["coefficient_ci"] = _pair(fitting.percentile_interval(
                gs * kappa ** (-a_s), cfg.ci))
            sec["d_opt"]["coefficient_ci"] = _pair(fitting.percentile_interval(
                kappa ** (-b_s) / gs, cfg.ci))
        sec["n_opt"]["exponent_ci"] = sec["a_ci"]
        sec["d_opt"]["exponent_ci"] = sec["b_ci"]
        sec["bootstrap"] = {
            "n_resamples": boot.n_resamples, "n_failed": boot.n_failed, "seed": cfg.seed,
            "resampling": "runs with replacement; each refit warm-started from the full fit",
            "columns": list(fitting.PARAM_NAMES), "samples": s,
        }
    return sec


def _approach1_section(runs: _Runs, cfg: AnalysisConfig, run_dir: Path | None) -> dict[str, Any]:
    if not cfg.approach1:
        return {"available": False, "message": "Approach 1 is off (analysis.approach1=false)."}
    curves = []
    if run_dir is not None:
        for rid, n in zip(runs.run_ids, runs.n, strict=True):
            if not rid or "/" in rid or "\\" in rid or rid in (".", ".."):
                continue
            path = run_dir / "runs" / rid / "metrics.jsonl"
            if path.is_file():
                got = _read_curve(path, float(n), cfg.flops_convention == "6nd")
                if got is not None:
                    curves.append((float(n), got[0], got[1]))
    if not curves:
        return {"available": False, "n_curves": 0,
                "message": "Approach 1 is skipped: no training curves (runs/*/metrics.jsonl)."}
    env = fitting.fit_envelope(curves)
    law = _law_dict(env.law, ci=cfg.ci)
    if law is not None:
        z = _normal_quantile(cfg.ci)
        se = law["exponent_se"]
        if se is not None:
            law["exponent_ci"] = [law["exponent"] - z * se, law["exponent"] + z * se]
            law["ci_note"] = "OLS interval over envelope points; optimistic (points correlate)"
    return {"available": law is not None, "message": env.message, "n_opt": law,
            "n_curves": env.n_curves, "n_levels": int(env.levels.size),
            "loss_field": "train_loss"}


def _normal_quantile(ci: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + ci / 2))


def _choose_method(preferred: str, par: dict[str, Any], iso: dict[str, Any]) -> tuple[str, str]:
    """The method that predicts, and a sentence when it is not the preferred one (or unsafe)."""
    par_ok = bool(par.get("available")) and not par.get("degenerate")
    iso_ok = bool(iso.get("available"))
    if preferred == "parametric":
        if par_ok:
            return "parametric", ""
        if iso_ok:
            why = _par_problem(par)
            return "isoflop", f"The parametric fit {why}, so the IsoFLOP power laws predict."
    else:
        if iso_ok:
            return "isoflop", ""
        if par_ok:
            return "parametric", ("Approach 2 has no power law (" + (iso.get("message") or
                                  "no interior budget") + "), so the parametric fit predicts.")
    if par.get("available"):
        return "parametric", (f"The parametric fit {_par_problem(par)} and Approach 2 has no "
                              "power law; predictions use the degenerate fit, treat them as "
                              "unreliable.")
    return "", ""


def _par_problem(par: dict[str, Any]) -> str:
    if not par.get("available"):
        return "is unavailable (" + str(par.get("message", "")).rstrip(".") + ")"
    return "is degenerate (" + "; ".join(par.get("degenerate_reasons") or []) + ")"


# ------------------------------------------------------------------------------------------------
# the analysis object
# ------------------------------------------------------------------------------------------------


def _si(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            if abs(x) >= 1e15:
                return f"{x:.3g}"
            return f"{x / div:.3g}{suf}"
    return f"{x:.3g}"


def _samples(sec: dict[str, Any] | None) -> np.ndarray | None:
    boot = (sec or {}).get("bootstrap")
    raw = boot.get("samples") if isinstance(boot, dict) else None
    if raw is None or len(raw) == 0:
        return None
    try:
        arr = np.array([[np.nan if v is None else v for v in row] for row in raw], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.ndim == 2 and arr.shape[0] > 1 else None


def _plain(obj: Any) -> Any:
    """Plain JSON values: numpy to Python, non-finite floats to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _num(x: Any) -> float:
    try:
        return float(x) if x is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


@dataclass
class ScalingAnalysis:
    """The fitted scaling laws of one run directory (what ``scaling_laws.json`` holds).

    ``parametric``, ``isoflop`` and ``approach1`` are the JSON sections of the three approaches;
    ``method`` names the one that predicts. Build it with :class:`ScalingLawAnalyzer` or
    :meth:`from_json`.
    """

    method: str
    parametric: dict[str, Any]
    isoflop: dict[str, Any]
    approach1: dict[str, Any] = field(default_factory=dict)
    method_note: str = ""
    holdout: dict[str, Any] | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    created_utc: str = ""

    # -- (de)serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``scaling_laws.json``."""
        return {
            "schema": SCHEMA,
            "created_utc": self.created_utc,
            "method": self.method,
            "method_note": self.method_note,
            "parametric": self.parametric,
            "isoflop": self.isoflop,
            "approach1": self.approach1,
            "predictions": self.predictions,
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
            parametric=source["parametric"],
            isoflop=source["isoflop"],
            approach1=source.get("approach1") or {},
            method_note=str(source.get("method_note") or ""),
            holdout=source.get("holdout"),
            predictions=list(source.get("predictions") or []),
            warnings=list(source.get("warnings") or []),
            provenance=dict(source.get("provenance") or {}),
            created_utc=str(source.get("created_utc") or ""),
        )

    # -- convenience --------------------------------------------------------------------------

    @property
    def ci_level(self) -> float:
        return float(self.parametric.get("ci_level") or self.isoflop.get("ci_level") or 0.95)

    @property
    def compute_budgets(self) -> list[float]:
        """The planned budgets of the IsoFLOP groups (empty for ungrouped data)."""
        return [float(b["compute_budget"]) for b in self.isoflop.get("budgets") or []]

    def exponents(self, method: str | None = None) -> tuple[float, float]:
        """``(a, b)`` of ``N_opt ~ C**a``, ``D_opt ~ C**b`` by ``method`` (default: its own)."""
        method = method or self.method
        sec = self.parametric if method == "parametric" else self.isoflop
        return (_num((sec.get("n_opt") or {}).get("exponent")),
                _num((sec.get("d_opt") or {}).get("exponent")))

    # -- predictions --------------------------------------------------------------------------

    def predict_optimal_size(self, compute_budget: float, method: str | None = None
                             ) -> dict[str, Any]:
        """The compute-optimal allocation at ``compute_budget`` FLOPs.

        Returns ``target_compute``, ``optimal_params``, ``optimal_tokens``, ``expected_loss``,
        ``tokens_per_param`` and for each of these four a ``<key>_ci`` = ``[lo, hi]`` (bootstrap
        percentiles at ``ci_level``; None without a bootstrap), plus ``method``,
        ``degenerate`` and ``warning``. ``method`` overrides the analysis's own choice.
        """
        c = _checked_budgets([compute_budget], "compute_budget")[0]
        method = method or self.method
        with np.errstate(all="ignore"):  # extreme bootstrap samples may overflow: NaN/inf
            if method == "parametric":
                return self._predict_parametric(c)
            if method == "isoflop":
                return self._predict_isoflop(c)
        raise FlopsFitError(
            "No scaling law could be fitted, so there is nothing to predict with; train more "
            "runs and run `flops-fit analyze` again." if not method else
            f"Unknown prediction method {method!r}; use 'parametric' or 'isoflop'."
        )

    def _result(self, c: float, n: float, d: float, loss: float, ns, ds, ls, method: str,
                degenerate: bool, warning: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "target_compute": c, "optimal_params": _f(n), "optimal_tokens": _f(d),
            "expected_loss": _f(loss), "tokens_per_param": _f(d / n),
        }
        ci = self.ci_level
        for key, s in (("optimal_params", ns), ("optimal_tokens", ds), ("expected_loss", ls),
                       ("tokens_per_param", None if ns is None or ds is None else ds / ns)):
            out[f"{key}_ci"] = (_pair(fitting.percentile_interval(s, ci))
                                if s is not None and np.isfinite(s).sum() > 1 else None)
        out.update({"ci_level": ci, "method": method, "degenerate": degenerate,
                    "warning": warning})
        return out

    def _predict_parametric(self, c: float) -> dict[str, Any]:
        p = self.parametric
        if not p.get("available"):
            raise FlopsFitError(
                f"The parametric fit is unavailable ({p.get('message')}); predict with the "
                "isoflop method or train more runs."
            )
        kappa = _num(p.get("flops_per_param_token")) or 6.0
        E, A, B, al, be = (_num(p[k]) for k in fitting.PARAM_NAMES)
        n, d = fitting.optimal_allocation(c, A, B, al, be, kappa)
        loss = fitting.parametric_loss(n, d, E, A, B, al, be)
        s = _samples(p)
        ns = ds = ls = None
        if s is not None:
            ns, ds = fitting.optimal_allocation(c, s[:, 1], s[:, 2], s[:, 3], s[:, 4], kappa)
            ls = fitting.parametric_loss(ns, ds, s[:, 0], s[:, 1], s[:, 2], s[:, 3], s[:, 4])
        degenerate = bool(p.get("degenerate"))
        warning = ("the parametric fit is degenerate (" + "; ".join(
            p.get("degenerate_reasons") or []) + ")") if degenerate else ""
        return self._result(c, float(n), float(d), float(loss), ns, ds, ls, "parametric",
                            degenerate, warning)

    def _predict_isoflop(self, c: float) -> dict[str, Any]:
        iso = self.isoflop
        if not iso.get("available"):
            raise FlopsFitError(
                f"Approach 2 has no power law ({iso.get('message')}); predict with the "
                "parametric method or widen the sweep."
            )
        laws = [iso.get("n_opt") or {}, iso.get("d_opt") or {}, iso.get("loss_opt") or {}]
        vals = [_num(law.get("coefficient")) * c ** _num(law.get("exponent")) for law in laws]
        s = _samples(iso)
        ns = ds = ls = None
        if s is not None:
            lc = math.log(c)
            with np.errstate(all="ignore"):
                ns, ds, ls = (np.exp(s[:, 2 * j] + s[:, 2 * j + 1] * lc) for j in range(3))
        return self._result(c, vals[0], vals[1], vals[2], ns, ds, ls, "isoflop", False, "")

    def chinchilla_table(self, compute_budgets: list[float] | None = None) -> str:
        """A markdown table of the compute-optimal N, D, D/N and loss with their intervals.

        ``compute_budgets`` default to the seed's nine, ``np.logspace(18, 22, 9)``.
        """
        budgets = (DEFAULT_TABLE_BUDGETS if compute_budgets is None
                   else _checked_budgets(compute_budgets, "compute_budgets"))
        pct = f"{self.ci_level:.0%}"

        def cell(p: dict[str, Any], key: str, fmt) -> str:
            ci = p.get(f"{key}_ci")
            v = fmt(p.get(key))
            if ci and ci[0] is not None and ci[1] is not None:
                return f"{v} [{fmt(ci[0])}, {fmt(ci[1])}]"
            return v

        def loss_fmt(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.4f}"

        def ratio_fmt(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.3g}"

        lines = [
            f"| Compute (FLOPs) | Optimal N ({pct} CI) | Optimal D ({pct} CI) | D/N | "
            f"Expected loss ({pct} CI) |",
            "|---|---|---|---|---|",
        ]
        for c in budgets:
            p = self.predict_optimal_size(c)
            lines.append(
                f"| {c:.2e} | {cell(p, 'optimal_params', _si)} | "
                f"{cell(p, 'optimal_tokens', _si)} | {ratio_fmt(p['tokens_per_param'])} | "
                f"{cell(p, 'expected_loss', loss_fmt)} |"
            )
        return "\n".join(lines)

    def describe(self) -> str:
        """The fitted laws with their intervals, a few plain lines."""
        pct = f"{self.ci_level:.0%}"
        lines = []

        def iv(sec: dict[str, Any], key: str, fmt: str = ".4g") -> str:
            ci = sec.get(f"{key}_ci")
            if ci and ci[0] is not None and ci[1] is not None:
                return f" [{format(ci[0], fmt)}, {format(ci[1], fmt)}]"
            return ""

        p = self.parametric
        if p.get("available"):
            how = f"{p.get('loss')}" + (f" delta={p['huber_delta']:g}" if p.get("huber_delta")
                                         else "")
            boot = p.get("bootstrap") or {}
            lines.append(f"Approach 3 (parametric, L(N, D) = E + A/N^alpha + B/D^beta; {how}; "
                         f"{p.get('n_points')} runs; {boot.get('n_resamples', 0)} bootstrap "
                         f"resamples, {pct} intervals):")
            fixed = " (fixed)" if p.get("fixed_E") is not None else ""
            lines.append(f"  E = {p['E']:.4g}{fixed}{iv(p, 'E')}   A = {p['A']:.4g}{iv(p, 'A')}"
                         f"   B = {p['B']:.4g}{iv(p, 'B')}")
            lines.append(f"  alpha = {p['alpha']:.4f}{iv(p, 'alpha', '.4f')}   "
                         f"beta = {p['beta']:.4f}{iv(p, 'beta', '.4f')}")
            lines.append(f"  N_opt ~ C^{p['a']:.3f}{iv(p, 'a', '.3f')}   "
                         f"D_opt ~ C^{p['b']:.3f}{iv(p, 'b', '.3f')}")
            if p.get("degenerate"):
                lines.append("  DEGENERATE: " + "; ".join(p.get("degenerate_reasons") or []))
        else:
            lines.append(f"Approach 3 (parametric): {p.get('message')}")
        iso = self.isoflop
        if iso.get("available"):
            nb = len(iso.get("budgets") or [])
            ni = sum(1 for b in iso.get("budgets") or [] if b.get("used"))
            lines.append(f"Approach 2 (IsoFLOP parabolas; {ni} of {nb} budgets interior):")
            for name, label in (("n_opt", "N_opt"), ("d_opt", "D_opt"), ("loss_opt", "L_opt")):
                law = iso.get(name)
                if law:
                    lines.append(f"  {label} = {law['coefficient']:.4g} * C^{law['exponent']:.3f}"
                                 f"{iv(law, 'exponent', '.3f')}")
        else:
            lines.append(f"Approach 2 (IsoFLOP): {iso.get('message')}")
        a1 = self.approach1 or {}
        if a1.get("available"):
            law = a1["n_opt"]
            lines.append(f"Approach 1 (envelope of {a1.get('n_curves')} training curves): "
                         f"N_opt ~ C^{law['exponent']:.3f}{iv(law, 'exponent', '.3f')}")
        elif a1.get("message"):
            lines.append(a1["message"])
        lines.append(f"Predictions use: {self.method or 'nothing (no fit)'}")
        if self.method_note:
            lines.append(f"  note: {self.method_note}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# the analyzer
# ------------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    import scipy

    try:
        from importlib.metadata import version

        ff = version("flops-fit")
    except Exception:  # not installed (running from a checkout)
        ff = "unknown"
    return {"python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "flops_fit": ff}


def _span_budgets(budgets: np.ndarray) -> list[float]:
    """Log-spaced budgets from the smallest budget to 100x the largest, about two per decade."""
    lo, hi = math.log10(float(budgets.min())), math.log10(float(budgets.max())) + 2.0
    k = int(min(13, max(5, round(2 * (hi - lo)) + 1)))
    return [float(v) for v in np.logspace(lo, hi, k)]


class ScalingLawAnalyzer:
    """Fit the scaling laws of one ``results.json`` and write ``scaling_laws.json``.

    ``results_path`` is the run records file; ``output_dir`` the folder that receives
    ``scaling_laws.json`` and ``history.jsonl`` (normally ``run_dir/analysis``). Training
    curves are looked up under ``results_path.parent / "runs" / <run_id> / "metrics.jsonl"``.
    """

    def __init__(self, results_path: str | Path, output_dir: str | Path,
                 config: AnalysisConfig | None = None):
        self.results_path = Path(results_path)
        self.output_dir = Path(output_dir)
        self.config = config or AnalysisConfig()

    @property
    def output_path(self) -> Path:
        return self.output_dir / ANALYSIS_FILE

    def analyze(self) -> ScalingAnalysis:
        """Fit, write ``scaling_laws.json`` atomically, append to ``history.jsonl``, return.

        Raises :class:`NotEnoughDataError` when fewer than three usable runs exist or nothing
        could be fitted, :class:`FlopsFitError` for bad input.
        """
        cfg = self.config
        records, sha = _read_results(self.results_path)
        runs = _select_runs(records, self.results_path, cfg)
        if runs.n.size < MIN_RUNS:
            raise NotEnoughDataError(
                f"Only {runs.n.size} usable completed run(s) in {self.results_path} "
                f"({_status_text(runs)}); at least {MIN_RUNS} are needed, so wait for more runs "
                "to finish or train more."
            )
        kappa = 6.0 if cfg.flops_convention == "6nd" else float(
            np.median(runs.c / (runs.n * runs.d)))
        par, iso = self._fit(runs, cfg, kappa)
        method, note = _choose_method(cfg.predict_with, par, iso)
        if not method:
            raise NotEnoughDataError(
                f"The {runs.n.size} usable runs in {self.results_path} support no scaling law "
                f"yet ({iso.get('message') or 'no IsoFLOP law'}; {_par_problem(par)}); train "
                "more runs or widen the sweep."
            )
        warnings = list(iso.get("warnings") or [])
        if note:
            warnings.append(note)
        elif par.get("available") and par.get("degenerate"):
            warnings.append("The parametric fit is degenerate (" + "; ".join(
                par.get("degenerate_reasons") or []) + ").")
        a1 = _approach1_section(runs, cfg, self.results_path.parent)
        now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        n_key = "num_params" if cfg.params_convention == "total" else "num_params_non_embedding"
        provenance = {
            "results_path": str(self.results_path.absolute()),
            "results_sha256": sha,
            "runs": {
                "n_records": runs.n_records, "n_used": int(runs.n.size),
                "status_counts": runs.status_counts, "used": runs.run_ids,
                "dropped": runs.dropped,
            },
            "conventions": {
                "flops": cfg.flops_convention,
                "flops_field": "flops" if cfg.flops_convention == "flops" else "6 * N * num_tokens",
                "params": cfg.params_convention, "params_field": n_key,
                "tokens_field": "num_tokens",
                "flops_per_param_token": kappa,
                "note": ("C of a run is its measured FLOPs; the parametric allocation uses "
                         "N * D = C / flops_per_param_token (median of C / (N * D) over the runs)"
                         if cfg.flops_convention == "flops" else
                         "C of a run is 6 * N * D (N under the params convention)"),
            },
            "settings": asdict(cfg),
            "library_versions": _versions(),
            "host": platform.node(),
        }
        analysis = ScalingAnalysis(method=method, parametric=par, isoflop=iso, approach1=a1,
                                   method_note=note, warnings=warnings, provenance=provenance,
                                   created_utc=now)
        table = cfg.table_budgets or _span_budgets(runs.budget)
        analysis.predictions = [analysis.predict_optimal_size(c) for c in table]
        if cfg.holdout == "largest":
            analysis.holdout = self._holdout(runs, cfg, kappa)
        data = _plain(analysis.to_dict())
        atomic_write_json(self.output_path, data)
        analysis = ScalingAnalysis.from_json(data)
        self._append_history(analysis, runs, sha)
        return analysis

    @staticmethod
    def _fit(runs: _Runs, cfg: AnalysisConfig, kappa: float):
        return _parametric_section(runs, cfg, kappa), _isoflop_section(runs, cfg)

    def _holdout(self, runs: _Runs, cfg: AnalysisConfig, kappa: float) -> dict[str, Any]:
        """Refit without the largest budget; compare prediction and observation there."""
        largest = float(runs.budget.max())
        held = runs.budget == largest
        fit_runs = runs.subset(~held)
        held_runs = runs.subset(held)
        out: dict[str, Any] = {"compute_budget": largest,
                               "compute": float(np.exp(np.mean(np.log(held_runs.c)))),
                               "n_runs_held_out": int(held.sum()),
                               "n_runs_fit": int(fit_runs.n.size), "held_out": held_runs.run_ids}
        if fit_runs.n.size < MIN_RUNS:
            out.update(available=False, message=(
                f"Holdout skipped: only {fit_runs.n.size} runs outside the largest budget."))
            return out
        par, iso = self._fit(fit_runs, cfg, kappa)
        method, note = _choose_method(cfg.predict_with, par, iso)
        if not method:
            out.update(available=False, message="Holdout skipped: the runs outside the largest "
                       "budget support no scaling law.")
            return out
        sub = ScalingAnalysis(method=method, parametric=par, isoflop=iso)
        c = out["compute"]
        predicted = {m: sub.predict_optimal_size(c, m) for m, ok in (
            ("parametric", par.get("available")), ("isoflop", iso.get("available"))) if ok}
        opt, _ = fitting.isoflop_optima(held_runs.budget, held_runs.n, held_runs.d,
                                        held_runs.loss, held_runs.c,
                                        min_sizes=MIN_SIZES_PER_BUDGET)
        best = int(np.argmin(held_runs.loss))
        actual: dict[str, Any] = {
            "best_run_id": held_runs.run_ids[best], "best_run_params": float(held_runs.n[best]),
            "best_run_loss": float(held_runs.loss[best]),
            "optimal_params": None, "optimal_loss": None, "interior": None,
            "source": "best observed run (fewer than 3 sizes at this budget)",
        }
        if opt:
            o = opt[0]
            actual.update(optimal_params=_f(o.optimal_params), optimal_loss=_f(o.optimal_loss),
                          interior=o.interior, source="IsoFLOP parabola of the held-out budget")
        p = predicted[method]
        ref_n = actual["optimal_params"] if actual["interior"] else actual["best_run_params"]
        ref_l = actual["optimal_loss"] if actual["interior"] else actual["best_run_loss"]

        def rel(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else a / b - 1.0

        def inside(ci: list | None, v: float | None) -> bool | None:
            if not ci or v is None or ci[0] is None or ci[1] is None:
                return None
            return bool(ci[0] <= v <= ci[1])

        out.update(available=True, message="", method=method, method_note=note,
                   predicted=p, predicted_by=predicted, actual=actual,
                   relative_error={"optimal_params": rel(p["optimal_params"], ref_n),
                                   "loss": rel(p["expected_loss"], ref_l)},
                   within_ci={"optimal_params": inside(p.get("optimal_params_ci"), ref_n),
                              "loss": inside(p.get("expected_loss_ci"), ref_l)},
                   fit_parametric={k: par.get(k) for k in (*fitting.PARAM_NAMES, "degenerate")}
                   if par.get("available") else None)
        if par.get("available"):
            pl = fitting.parametric_loss(held_runs.n, held_runs.d,
                                         *(par[k] for k in fitting.PARAM_NAMES))
            out["parametric_run_loss_mean_abs_rel_error"] = float(
                np.mean(np.abs(pl / held_runs.loss - 1.0)))
        return out

    def _append_history(self, analysis: ScalingAnalysis, runs: _Runs, sha: str) -> None:
        largest = float(runs.budget.max())
        try:
            n_at = analysis.predict_optimal_size(largest)["optimal_params"]
        except FlopsFitError:
            n_at = None
        a, b = analysis.exponents()
        p = analysis.parametric if analysis.parametric.get("available") else {}
        line = {
            "time": analysis.created_utc, "n_runs_used": int(runs.n.size),
            "method": analysis.method, "a": _f(a), "b": _f(b),
            "E": _f(p.get("E")), "alpha": _f(p.get("alpha")), "beta": _f(p.get("beta")),
            "parametric_degenerate": p.get("degenerate"),
            "largest_budget": largest, "n_opt_at_largest_budget": _f(n_at),
            "results_sha256": sha,
        }
        path = self.output_dir / HISTORY_FILE
        text = json.dumps(line, allow_nan=False) + "\n"
        try:
            with file_lock(path), open(path, "a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise FlopsFitError(
                f"Cannot append to {path}: {exc.strerror or exc}; free disk space or make the "
                "run directory writable."
            ) from exc


def _status_text(runs: _Runs) -> str:
    counts = dict(runs.status_counts)
    parts = [f"{v} {k}" for k, v in sorted(counts.items())]
    bad = [d for d in runs.dropped if not d["reason"].startswith("status")]
    if bad:
        parts.append(f"{len(bad)} completed but dropped")
    return ", ".join(parts) if parts else "no records"


# ------------------------------------------------------------------------------------------------
# the stage
# ------------------------------------------------------------------------------------------------


def run_analysis(run_dir: Path, config: AnalysisConfig, table_budgets: list[float] | None,
                 console: Console) -> ScalingAnalysis:
    """``flops-fit analyze``: fit ``run_dir/results.json``, write and print the laws and table.

    ``table_budgets`` (else ``config.table_budgets``, else from the sweep's smallest budget to
    100x its largest) are the rows of the printed table. Raises :class:`NotEnoughDataError`
    when fewer than three completed runs with a finite loss exist (cron: exit status 3).
    """
    run_dir = Path(run_dir).expanduser().absolute()
    if not run_dir.is_dir():
        raise FlopsFitError(
            f"run_dir {run_dir} is not a folder; point run_dir at the run directory of a sweep."
        )
    if not (run_dir / "results.json").exists() and (run_dir / "plan.json").exists():
        raise NotEnoughDataError(  # a sweep that has started, before its first run ended
            f"No run of the sweep in {run_dir} has finished yet (no results.json); wait for "
            "runs to finish, or start them with `flops-fit train`."
        )
    out_dir = run_dir / "analysis"
    analyzer = ScalingLawAnalyzer(run_dir / "results.json", out_dir, config)
    analysis = analyzer.analyze()

    def say(text: str = "") -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    runs = analysis.provenance["runs"]
    counts = runs["status_counts"]
    other = [d for d in runs["dropped"] if not d["reason"].startswith("status")]
    say(f"Analysed {analyzer.results_path}")
    say(f"Runs: {runs['n_used']} used of {runs['n_records']} records ("
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + ")"
        + (f"; {len(other)} completed run(s) dropped: "
           + "; ".join(f"{d['run_id']}: {d['reason']}" for d in other[:5])
           + (" ..." if len(other) > 5 else "") if other else "") + ".")
    pending = sum(v for k, v in counts.items() if k not in ("completed", "failed", "diverged"))
    if pending:
        say(f"{pending} run(s) are not finished yet; this fit uses the completed ones only.")
    for w in analysis.warnings:
        if w not in (analysis.isoflop.get("message"), analysis.method_note):  # describe() says
            say(f"warning: {w}")
    say(analysis.describe())
    budgets = (table_budgets if table_budgets is not None else config.table_budgets)
    if budgets is None:
        budgets = [p["target_compute"] for p in analysis.predictions]
    say()
    say(analysis.chinchilla_table(budgets))
    h = analysis.holdout
    if h:
        say()
        if h.get("available"):
            p, act = h["predicted"], h["actual"]
            ref_n = act["optimal_params"] if act.get("interior") else act["best_run_params"]
            ref_l = act["optimal_loss"] if act.get("interior") else act["best_run_loss"]
            say(f"Holdout (largest budget {h['compute_budget']:.3g} refitted without its "
                f"{h['n_runs_held_out']} runs, {h['method']}): predicted N_opt "
                f"{_si(p['optimal_params'])} vs actual {_si(ref_n)}; predicted loss "
                f"{_fmt_loss(p['expected_loss'])} vs actual {_fmt_loss(ref_l)} "
                f"({act['source']}).")
        else:
            say(h.get("message", "Holdout skipped."))
    say(f"Wrote {analyzer.output_path}")
    return analysis


def _fmt_loss(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
