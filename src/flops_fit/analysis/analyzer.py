"""The analyze stage: ``results.json`` -> ``analysis/scaling_laws.json`` -> ``ScalingAnalysis``.

:class:`ScalingLawAnalyzer` reads the run records, keeps the completed runs with a finite
positive loss (every other record is listed with the reason it was dropped), fits every
approach of :data:`~flops_fit.analysis.approaches.APPROACHES` (each into its typed section of
:mod:`flops_fit.analysis.sections`) and Approach 1 with bootstrap intervals, and writes the fit
with its provenance atomically. :class:`~flops_fit.analysis.scaling_analysis.ScalingAnalysis`
is what the file holds. :func:`run_analysis` is the stage as called by ``flops-fit analyze``:
it also prints the laws and the table (:mod:`flops_fit.analysis.text`) and appends a line to
``analysis/history.jsonl``.

Which approach predicts is ``AnalysisConfig.predict_with``; the default is ``"joint"``, the
joint IsoFLOP fit (calibrated on synthetic sweeps of known laws; the measurements are beside
the default in ``conf/analysis/default.yaml``). When it cannot predict, the next approach of
the registry that can stands in, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy

from flops_fit import fitting
from flops_fit.analysis import text as printing
from flops_fit.analysis.approach1 import approach1_section, off_centre_warnings
from flops_fit.analysis.approach2 import MIN_SIZES_PER_BUDGET
from flops_fit.analysis.approaches import APPROACHES, approach, choose_method
from flops_fit.analysis.checks import exponent_disagreement, mistuning_notes
from flops_fit.analysis.notes import build_notes
from flops_fit.analysis.scaling_analysis import DEFAULT_TABLE_BUDGETS, ScalingAnalysis
from flops_fit.analysis.sections import plain
from flops_fit.config import AnalysisConfig
from flops_fit.errors import FlopsFitError, NotEnoughDataError, UnusableFitError
from flops_fit.rundir.io import atomic_write_json, file_lock
from flops_fit.rundir.layout import (
    HISTORY_FILE,
    LAWS_FILE,
    PLAN_FILE,
    RESULTS_FILE,
)
from flops_fit.rundir.layout import layout as run_layout
from flops_fit.rundir.records import RECORD_LIMITS, REQUIRED_FIELDS

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

MIN_RUNS = 3
ANALYSIS_FILE = LAWS_FILE  # the old name of the file name



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
    if v > RECORD_LIMITS.get(key, math.inf):  # no fit or plot can hold it (numpy overflows)
        raise FlopsFitError(
            f"Completed {_record_name(rec, i)} in {path} has {key}={v!r}, above "
            f"{RECORD_LIMITS[key]:.0e}, beyond any training run; fix or remove that record."
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


# ------------------------------------------------------------------------------------------------
# the analyzer
# ------------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    try:
        ff = version("flops-fit")
    except PackageNotFoundError:  # not installed (running from a checkout)
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
    ``endpoint_schedules``: the ``train.schedule`` names under which Approach 1 takes run
    endpoints only (the stages pass the schedule registry's; :func:`approach1_section`).
    """

    def __init__(self, results_path: str | Path, output_dir: str | Path,
                 config: AnalysisConfig | None = None,
                 endpoint_schedules: Collection[str] = ()):
        self.results_path = Path(results_path)
        self.output_dir = Path(output_dir)
        self.config = config or AnalysisConfig()
        self.endpoint_schedules = frozenset(endpoint_schedules)
        approach(self.config.predict_with)  # an unknown name: one sentence, before any fit

    @property
    def output_path(self) -> Path:
        return self.output_dir / LAWS_FILE

    def analyze(self) -> ScalingAnalysis:
        """Fit, write ``scaling_laws.json`` atomically, append to ``history.jsonl``, return.

        Raises :class:`NotEnoughDataError` when fewer than three usable runs exist or nothing
        could be fitted, :class:`FlopsFitError` for bad input.
        """
        cfg = self.config
        records, sha = _read_results(self.results_path)
        runs = _select_runs(records, self.results_path, cfg)
        self.last_budgets = runs.budget.tolist()
        if runs.n.size < MIN_RUNS:
            raise NotEnoughDataError(
                f"Only {runs.n.size} usable completed run(s) in {self.results_path} "
                f"({_status_text(runs)}); at least {MIN_RUNS} are needed, so wait for more runs "
                "to finish or train more."
            )
        kappa = 6.0 if cfg.flops_convention == "6nd" else float(
            np.median(runs.c / (runs.n * runs.d)))
        sections = self._fit(runs, cfg, kappa)
        method, note = choose_method(cfg.predict_with, sections)
        if not method:
            raise NotEnoughDataError(
                f"The {runs.n.size} usable runs in {self.results_path} support no scaling law "
                "yet (" + "; ".join(APPROACHES[n].problem(sec) for n, sec in sections.items())
                + "); train more runs or widen the sweep."
            )
        warnings = [w for n, sec in sections.items() for w in APPROACHES[n].warnings(sec)]
        if note:
            warnings.append(note)
        else:  # an approach that could not predict, though nobody needed it to
            warnings += [f"{w[0].upper()}{w[1:]}." for n, sec in sections.items()
                         if n != method and sec.available
                         and (w := APPROACHES[n].problem(sec))]
        warnings += off_centre_warnings(runs)
        warnings += mistuning_notes(records, cfg.huber_delta)  # a bad LR shows
        warnings += exponent_disagreement(
            {n: sec.n_opt.exponent for n, sec in sections.items()
             if sec.available and sec.n_opt is not None}, method)
        a1 = approach1_section(runs, cfg, self.results_path.parent, records,
                               self.endpoint_schedules)
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
        analysis = ScalingAnalysis(method=method, sections=sections, approach1=a1,
                                   method_note=note, warnings=warnings, provenance=provenance,
                                   created_utc=now)
        table = cfg.table_budgets or _span_budgets(runs.budget)
        try:
            analysis.predictions = [analysis.predict_optimal_size(c) for c in table]
        except UnusableFitError as exc:  # the fit is written, with no impossible numbers
            analysis.predictions = []
            analysis.warnings.append(str(exc))
        analysis.notes = build_notes(analysis, self.results_path.parent, runs.budget.tolist(),
                                     cfg.params_convention)
        if cfg.holdout == "largest":
            analysis.holdout = self._holdout(runs, cfg, kappa)
        data = plain(analysis.to_dict())
        atomic_write_json(self.output_path, data)
        analysis = ScalingAnalysis.from_json(data)
        self._append_history(analysis, runs, sha)
        return analysis

    @staticmethod
    def _fit(runs: _Runs, cfg: AnalysisConfig, kappa: float) -> dict[str, Any]:
        """Every approach's section, by name (registry order)."""
        return {name: a.build(runs, cfg, kappa) for name, a in APPROACHES.items()}

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
        sections = self._fit(fit_runs, cfg, kappa)
        par = sections["parametric"]
        method, note = choose_method(cfg.predict_with, sections)
        if not method:
            out.update(available=False, message="Holdout skipped: the runs outside the largest "
                       "budget support no scaling law.")
            return out
        sub = ScalingAnalysis(method=method, sections=sections)
        c = out["compute"]
        predicted = {m: sub.predict_optimal_size(c, m) for m, sec in sections.items()
                     if sec.available}
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
            actual.update(optimal_params=plain(o.optimal_params),
                          optimal_loss=plain(o.optimal_loss), interior=o.interior,
                          source="IsoFLOP parabola of the held-out budget")
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
                   predicted=p.to_dict(),
                   predicted_by={m: q.to_dict() for m, q in predicted.items()}, actual=actual,
                   relative_error={"optimal_params": rel(p["optimal_params"], ref_n),
                                   "loss": rel(p["expected_loss"], ref_l)},
                   within_ci={"optimal_params": inside(p.get("optimal_params_ci"), ref_n),
                              "loss": inside(p.get("expected_loss_ci"), ref_l)},
                   fit_parametric={k: getattr(par, k) for k in (*fitting.PARAM_NAMES,
                                                                "degenerate")}
                   if par.available else None)
        if par.available:
            pl = fitting.parametric_loss(held_runs.n, held_runs.d, *par.params)
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
        p = analysis.parametric
        ok = bool(p.available)
        line = plain({
            "time": analysis.created_utc, "n_runs_used": int(runs.n.size),
            "method": analysis.method, "a": a, "b": b,
            "E": p.E if ok else None, "alpha": p.alpha if ok else None,
            "beta": p.beta if ok else None, "parametric_degenerate": p.degenerate if ok else None,
            "largest_budget": largest, "n_opt_at_largest_budget": n_at,
            "results_sha256": sha,
        })
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
                 console: Console, endpoint_schedules: Collection[str] = ()) -> ScalingAnalysis:
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
    if not (run_dir / RESULTS_FILE).exists() and (run_dir / PLAN_FILE).exists():
        raise NotEnoughDataError(  # a sweep that has started, before its first run ended
            f"No run of the sweep in {run_dir} has finished yet (no results.json); wait for "
            "runs to finish, or start them with `flops-fit train`."
        )
    lay = run_layout(run_dir)
    analyzer = ScalingLawAnalyzer(lay.results, lay.analysis_dir, config, endpoint_schedules)
    analysis = analyzer.analyze()
    budgets = (table_budgets if table_budgets is not None else config.table_budgets)
    if budgets is None:
        budgets = [p.target_compute for p in analysis.predictions] or None
    try:
        printing.print_analysis(console, analyzer.results_path, analyzer.output_path, analysis,
                                budgets)
    except UnusableFitError as exc:
        pending = sum(n for status, n in analysis.provenance.get("runs", {})
                      .get("status_counts", {}).items() if status == "pending")
        if pending:  # a sweep still running: cron waits for more runs, as with too few
            raise NotEnoughDataError(
                f"The fit of the finished runs is not usable yet ({pending} run(s) still "
                "pending); wait for more runs to finish and analyze again."
            ) from exc
        raise
    return analysis
