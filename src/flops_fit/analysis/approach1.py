"""Approach 1 (the envelope) and the IsoFLOP centring check, from the analyzer's runs.

``runs`` is the analyzer's table of usable runs (arrays ``budget``, ``n``, ``d``, ``c``,
``loss`` of shape ``(runs,)`` and their ``run_ids``).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from flops_fit import fitting
from flops_fit.analysis.sections import Approach1Section, law_record, plain
from flops_fit.config import AnalysisConfig
from flops_fit.rundir.layout import METRICS_FILE
from flops_fit.rundir.layout import layout as run_layout
from flops_fit.rundir.records import read_metrics, record_schedule


def _read_curve(path: Path, n: float, use_6nd: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """``(flops, train_loss)`` of one metrics.jsonl (lines with a training loss), or None."""
    rows = [line for line in read_metrics(path) if line.train_loss is not None]
    if len(rows) < 2:
        return None
    f = [6.0 * n * line.tokens if use_6nd else line.flops for line in rows]
    return np.array(f, dtype=float), np.array([line.train_loss for line in rows], dtype=float)


#: what the envelope uses under each schedule (printed and kept in the Approach1 section)
ENDPOINTS_NOTE = ("cooldown endpoints only (one point per run: its final loss at its own C); "
                  "points in the middle of a wsd run sit on an unfinished schedule")
CURVES_NOTE = ("every logged point of the training curves (train loss); under cosine a point "
               "in the middle of a run sits on a schedule tuned for the whole run (its LR not "
               "yet decayed), so it lies above what a run of that length reaches and the "
               "envelope may be biased towards the sizes whose runs end there")


def approach1_section(runs: Any, cfg: AnalysisConfig, run_dir: Path | None,
                      records: Any = None,
                      endpoint_schedules: Collection[str] = ()) -> Approach1Section:
    """Approach 1 of the analyzer's usable runs (``runs``: run_ids, budget, n, c, d, loss).

    When every run's record names a schedule of ``endpoint_schedules`` (those whose kind says
    so: wsd; flops_fit.training.schedule.endpoint_schedules) the envelope of the cooldown
    endpoints with an interval from resampling runs; otherwise the envelope of the training
    curves, saying which points it used and why that may be biased.
    """
    if not cfg.approach1:
        return Approach1Section.from_dict(
            {"available": False, "message": "Approach 1 is off (analysis.approach1=false)."})
    by_id = {str(r.get("run_id")): r for r in records or [] if isinstance(r, dict)}
    schedules = {record_schedule(by_id.get(rid, {})) for rid in runs.run_ids}
    if runs.run_ids and schedules <= set(endpoint_schedules):
        return _approach1_endpoints(runs, cfg)
    curves = []
    if run_dir is not None:
        for rid, n in zip(runs.run_ids, runs.n, strict=True):
            if not rid or "/" in rid or "\\" in rid or rid in (".", ".."):
                continue
            path = run_layout(run_dir).runs / rid / METRICS_FILE
            if path.is_file():
                got = _read_curve(path, float(n), cfg.flops_convention == "6nd")
                if got is not None:
                    curves.append((float(n), got[0], got[1]))
    if not curves:
        return Approach1Section.from_dict(
            {"available": False, "n_curves": 0,
             "message": "Approach 1 is skipped: no training curves (runs/*/metrics.jsonl)."})
    env = fitting.fit_envelope(curves)
    law = law_record(env.law, ci=cfg.ci)
    if law is not None:
        z = _normal_quantile(cfg.ci)
        se = law["exponent_se"]
        if se is not None:
            law["exponent_ci"] = [law["exponent"] - z * se, law["exponent"] + z * se]
            law["ci_note"] = "OLS interval over envelope points; optimistic (points correlate)"
    return Approach1Section.from_dict(plain(
        {"available": law is not None, "message": env.message, "n_opt": law,
         "n_curves": env.n_curves, "n_levels": int(env.levels.size),
         "loss_field": "train_loss", "points": CURVES_NOTE}))


def _approach1_endpoints(runs: Any, cfg: AnalysisConfig) -> Approach1Section:
    """Approach 1 under wsd: each budget's best cooldown endpoint; interval over runs."""
    env, interval = fitting.fit_endpoint_envelope(
        runs.budget, runs.c, runs.n, runs.loss, n_resamples=cfg.bootstrap, ci=cfg.ci,
        seed=cfg.seed)
    law = law_record(env.law, ci=cfg.ci)
    if law is not None:
        law["exponent_ci"] = list(interval) if interval else None
        law["ci_note"] = (f"bootstrap over runs ({cfg.bootstrap} resamples of the "
                          f"{runs.n.size} runs)" if interval else
                          "no interval: too few resamples kept two winning sizes")
    return Approach1Section.from_dict(plain(
        {"available": law is not None, "message": env.message, "n_opt": law,
         "n_curves": env.n_curves, "n_levels": int(env.levels.size),
         "loss_field": "final_loss", "points": ENDPOINTS_NOTE}))


def off_centre_warnings(runs: Any, low: float = 0.25, high: float = 0.75) -> list[str]:
    """A sentence per budget whose interior minimum lies outside the middle of its sizes.

    The position is the minimum's place in the budget's log N range (0: smallest, 1: largest);
    outside [``low``, ``high``] the parabola of Approach 2 is biased even on noise-free data
    (Open-Athena's scaling-law-analysis), so the sizes should be re-centred.
    """
    optima, _ = fitting.isoflop_optima(runs.budget, runs.n, runs.d, runs.loss, runs.c)
    out = []
    for o in optima:
        lo, hi = o.log_n_range
        if not o.interior or hi <= lo:
            continue
        pos = (math.log(o.optimal_params) - lo) / (hi - lo)
        if pos < low or pos > high:
            out.append(
                f"Budget {o.compute_budget:.3g}: its sizes are off-centre around its minimum "
                f"(N_opt={o.optimal_params:.3g} lies at {pos:.0%} of its log-N range), so its "
                "IsoFLOP parabola is biased; re-centre the sizes (budgets.tokens_per_param or "
                "budgets.adaptive=true) or add sizes on the far side.")
    return out


def _normal_quantile(ci: float) -> float:
    from scipy.stats import norm  # scipy.stats is slow to import; only Approach 1 needs it

    return float(norm.ppf(0.5 + ci / 2))
