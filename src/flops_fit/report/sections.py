"""The sections of ``report.html`` after the header: the prediction, the fitted laws, the
holdout, the validation, the runs and how it was all made.

Each function returns an HTML fragment ("" when there is nothing to show). The laws, holdout
and prediction sections read the typed
:class:`~flops_fit.analysis.scaling_analysis.ScalingAnalysis` (a plain ``scaling_laws.json``
object is read into one first); every approach of
:data:`~flops_fit.analysis.approaches.APPROACHES` is rendered from its section's fields, so a
new approach shows without an edit here. The validation is
:func:`~flops_fit.rundir.records.read_validation`'s record.
"""

from __future__ import annotations

import math
import platform
import sys
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from flops_fit.analysis.approaches import APPROACHES, Approach
from flops_fit.analysis.laws import Prediction
from flops_fit.analysis.scaling_analysis import ScalingAnalysis
from flops_fit.analysis.sections import (
    Approach1Section,
    Bootstrap,
    BudgetMinimum,
    PowerLawRecord,
    Section,
)
from flops_fit.errors import FlopsFitError
from flops_fit.report.html import esc, fmt, is_num, kv_table, sci, table
from flops_fit.rundir.layout import Layout
from flops_fit.rundir.records import read_validation

__all__ = ["prediction_section", "laws_section", "holdout_section", "validation_section",
           "runs_section", "provenance_section", "compute_line", "typed_analysis"]

#: the formula shown beside an approach's title (none for an approach not named here)
FORMULAS = {
    "parametric": "L(N, D) = E + A / N<sup>α</sup> + B / D<sup>β</sup> (loss in nats/token)",
    "isoflop": "power laws in C (FLOPs)",
}
#: how a power law of a section is named in its table (a law not named here: its field name)
LAW_LABELS = {"n_opt": "N_opt = k · C^a (parameters)", "d_opt": "D_opt = k · C^b (tokens)",
              "loss_opt": "L_opt = k · C^c (nats/token)"}
#: fields of a section that are neither parameters nor details
_NOT_DETAILS = {"available", "message", "degenerate", "degenerate_reasons", "warnings",
                "extra", "_keys"}


def typed_analysis(analysis: Any) -> ScalingAnalysis | None:
    """``analysis`` as a ScalingAnalysis: itself, or a ``scaling_laws.json`` object read into
    one (None when it is none or cannot be read)."""
    if isinstance(analysis, ScalingAnalysis):
        return analysis
    if isinstance(analysis, Mapping) and analysis:
        try:
            return ScalingAnalysis.from_json(dict(analysis))
        except FlopsFitError:
            return None
    return None


def _interval(ci: Any) -> tuple[float, float] | None:
    """A stored ``[lo, hi]`` with both ends finite, sorted; else None."""
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(
            is_num(x) and math.isfinite(x) for x in ci):
        return (min(ci), max(ci))
    return None


def _parameter_rows(sec: Section, pct: str) -> list[dict[str, Any]]:
    """One row per fitted number of ``sec`` that carries an interval or a standard error."""
    names = {f.name for f in fields(sec)}
    rows = []
    for f in fields(sec):
        value = getattr(sec, f.name)
        if f.name in _NOT_DETAILS or not is_num(value) or f.name.endswith(("_ci", "_se")):
            continue
        if f"{f.name}_ci" not in names and f"{f.name}_se" not in names:
            continue
        rows.append({"parameter": f.name, "value": value,
                     f"{pct} interval": _interval(getattr(sec, f"{f.name}_ci", None)),
                     "standard error": getattr(sec, f"{f.name}_se", None)})
    return rows


def _law_rows(sec: Section, pct: str) -> list[dict[str, Any]]:
    """One row per power law ``y = k C^x`` of ``sec``."""
    rows = []
    for f in fields(sec):
        law = getattr(sec, f.name)
        if not isinstance(law, PowerLawRecord):
            continue
        rows.append({"law": LAW_LABELS.get(f.name, f.name), "coefficient k": law.coefficient,
                     f"k {pct} interval": _interval(law.coefficient_ci),
                     "exponent": law.exponent,
                     f"exponent {pct} interval": _interval(law.exponent_ci)})
    return rows


def _details(sec: Section, shown: set[str]) -> dict[str, Any]:
    """The section's other plain values (settings and diagnostics of the fit)."""
    out = {}
    for f in fields(sec):
        value = getattr(sec, f.name)
        if f.name in _NOT_DETAILS or f.name in shown or f.name.endswith(("_ci", "_se")) \
                or isinstance(value, (Section, list, dict)) or value is None:
            continue
        out[f.name] = value
    out.update({k: v for k, v in sec.extra.items() if not isinstance(v, (dict, list))})
    return out


def _budgets_table(budgets: list[BudgetMinimum], pct: str) -> str:
    rows = [{
        "compute budget (FLOPs)": b.compute_budget, "runs": b.n_runs,
        "optimal N (parameters)": b.optimal_params,
        f"N {pct} interval": _interval(b.optimal_params_ci),
        "optimal D (tokens)": b.optimal_tokens, "loss at optimum": b.optimal_loss,
        "interior": b.interior, "note": b.note or "",
    } for b in budgets if isinstance(b, BudgetMinimum)]
    if not rows:
        return ""
    drop = [c for c in rows[0] if all(r.get(c) in (None, "") for r in rows)]
    return ("<h3>IsoFLOP minimum of each budget</h3>"
            + table(rows, [c for c in rows[0] if c not in drop]))


def approach_html(ap: Approach, sec: Section, default_level: float = 0.95) -> str:
    """One approach's fitted section: its parameters and power laws with their intervals,
    the bootstrap, a degenerate fit's reasons, its details and (IsoFLOP) its budgets."""
    formula = FORMULAS.get(ap.name)
    out = [f"<h3>{esc(ap.title)}" + (f": {formula}" if formula else "") + "</h3>"]
    level = getattr(sec, "ci_level", None)
    level = float(level) if is_num(level) else default_level
    pct = f"{level:.0%}"
    if getattr(sec, "degenerate", False):
        reasons = getattr(sec, "degenerate_reasons", None) or []
        out.append('<div class="bad"><b>Degenerate fit</b>: '
                   + esc("; ".join(str(r) for r in reasons) or "flagged by the analysis")
                   + ". Do not use its predictions without checking.</div>")
    params, laws = _parameter_rows(sec, pct), _law_rows(sec, pct)
    if params:
        out.append(table(params))
    if laws:
        out.append(table(laws))
    boot = getattr(sec, "bootstrap", None)
    if isinstance(boot, Bootstrap):
        out.append(f"<p>Intervals: {pct} bootstrap percentiles over "
                   f"{esc(fmt(boot.n_resamples))} resamples ({esc(boot.resampling or '')}).</p>")
    elif sec.available and (params or laws):
        out.append("<p><em>No bootstrap: the values have no intervals.</em></p>")
    if not sec.available:
        out.append(f'<div class="warn">{esc(sec.message or "not available")}</div>')
    elif not params and not laws:
        out.append(f'<div class="warn">{esc(sec.message or "no law was fitted")}</div>')
    details = _details(sec, {r["parameter"] for r in params})
    if details and sec.available:
        out.append("<details><summary>fit details</summary>" + kv_table(details)
                   + "</details>")
    budgets = getattr(sec, "budgets", None)
    if isinstance(budgets, list):
        out.append(_budgets_table(budgets, pct))
    return "".join(out)


def _approach1_html(a1: Approach1Section) -> str:
    if not a1.to_dict():
        return ""
    out = ["<h3>Approach 1: envelope of the training curves</h3>"]
    law = a1.n_opt
    if a1.available and isinstance(law, PowerLawRecord):
        out.append(table([{"law": LAW_LABELS["n_opt"], "coefficient k": law.coefficient,
                           "exponent": law.exponent,
                           "exponent 95% interval": _interval(law.exponent_ci),
                           "curves": a1.n_curves}]))
        if law.ci_note:
            out.append(f"<p>{esc(law.ci_note)}</p>")
        if a1.points:
            out.append(f"<p>Points used: {esc(a1.points)}</p>")
    else:
        out.append(f"<p><em>{esc(a1.message or 'not available')}</em></p>")
    return "".join(out)


def laws_section(analysis: ScalingAnalysis | Mapping[str, Any] | None) -> str:
    """The fitted laws: the method that predicts, each registry approach and Approach 1 (the
    warnings are the notes section's, report/notes.py)."""
    a = typed_analysis(analysis)
    out = ['<h2 id="laws">Fitted scaling laws</h2>']
    if a is None:
        return out[0] + "<p><em>No fitted scaling laws.</em></p>"
    if a.method:
        out.append(f"<p>Predictions use the <b>{esc(a.method)}</b> fit.</p>")
    if a.method_note:
        out.append(f'<div class="warn">{esc(a.method_note)}</div>')
    for name, ap in APPROACHES.items():
        out.append(approach_html(ap, a.sections[name], a.ci_level))
    out.append(_approach1_html(a.approach1))
    if a.warnings:
        out.append('<p>The analysis\'s warnings are listed under <a href="#notes">What the '
                   "analysis said</a>.</p>")
    return "".join(out)


def prediction_section(analysis: Any, data: Mapping[str, Any] | None, budget: float | None,
                       extra: dict[str, Any]) -> tuple[str, list[str]]:
    """The prediction at ``budget``: ``extra["prediction"]`` when given, else the analysis's
    own (``data`` is only read for an older file's ``prediction`` object)."""
    notes: list[str] = []
    pred: Any = extra.get("prediction")
    if pred is None and analysis is not None and budget:
        fn = getattr(analysis, "predict_optimal_size", None) or getattr(analysis, "predict",
                                                                        None)
        if callable(fn):
            try:
                pred = fn(budget)
            except Exception as exc:  # noqa: BLE001 - one section must not sink the page
                notes.append(f"prediction at C = {budget:.3g} failed: {exc}")
    if pred is None and isinstance(data, Mapping) and isinstance(data.get("prediction"),
                                                                 Mapping):
        pred = data["prediction"]
    if isinstance(pred, Mapping) and not isinstance(pred, Prediction):
        shown = dict(pred)
        pred = Prediction.from_dict({"target_compute": budget, **shown})
    elif isinstance(pred, Prediction):
        shown = dict(pred)
    else:
        return "", notes
    c = pred.target_compute
    out = [f'<h2 id="prediction">Prediction at C = {esc(sci(c))} FLOPs</h2><div class="kpi">']
    for key, label in (("optimal_params", "parameters N"), ("optimal_tokens", "tokens D"),
                       ("tokens_per_param", "tokens per parameter"),
                       ("expected_loss", "expected loss (nats/token)")):
        if key in shown:
            ci = getattr(pred, f"{key}_ci")
            sub = f"<span>95%: {esc(fmt(ci))}</span>" if ci is not None else ""
            out.append(f"<div><span>{esc(label)}</span><b>{esc(fmt(getattr(pred, key)))}</b>"
                       f"{sub}</div>")
    out.append("</div>")
    method = f" by the {pred.method} fit" if pred.method else ""
    if pred.degenerate or pred.warning:
        out.append(f'<div class="bad"><b>Unreliable prediction{esc(method)}</b>: '
                   f'{esc(pred.warning or "the fit is degenerate")}.</div>')
    elif method:
        out.append(f"<p>Predicted{esc(method)}; intervals are bootstrap percentiles.</p>")
    out.append("<details><summary>all fields of the prediction</summary>"
               + kv_table(shown) + "</details>")
    return "".join(out), notes


def runs_section(records: list[dict[str, Any]], lr_rule: str = "") -> str:
    """The runs table (each run's peak LR among its columns) after ``lr_rule``'s paragraph."""
    counts: dict[str, int] = {}
    for r in records:
        s = str(r.get("status", "?"))
        counts[s] = counts.get(s, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    preferred = ["run_id", "status", "compute_budget", "num_params", "num_params_non_embedding",
                 "num_tokens", "tokens_per_param", "flops", "flops_spent", "final_loss",
                 "lr", "size_param",
                 "size_value", "steps", "wall_time_s", "tokens_per_s", "device", "error"]
    present = [c for c in preferred if any(c in r for r in records)]
    rows = []
    for r in records:
        row = {c: r.get(c) for c in present}
        if "tokens_per_param" in present and row.get("tokens_per_param") is None:
            n, d = r.get("num_params"), r.get("num_tokens")
            if is_num(n) and is_num(d) and n:
                row["tokens_per_param"] = d / n
        rows.append(row)
    headers = {"compute_budget": "budget C (FLOPs)", "num_params": "N (parameters)",
               "num_params_non_embedding": "N non-emb.", "num_tokens": "D (tokens)",
               "tokens_per_param": "D/N", "flops": "C (FLOPs as a run)",
               "flops_spent": "FLOPs executed",
               "final_loss": "final loss (nats/token)", "lr": "peak LR",
               "wall_time_s": "wall time (s)",
               "tokens_per_s": "tokens/s"}
    return (f'<h2 id="runs">Runs</h2><p>{len(records)} runs: {esc(summary or "none")}.'
            f'{esc(compute_line(records))}</p>' + lr_rule + '<div class="small">'
            + table(rows, present, headers, status_col="status") + "</div>")


def compute_line(records: list[dict[str, Any]]) -> str:
    """`` Compute: ...``: what the sweep executed vs its runs trained separately (train.reuse
    shares each size's trunk), or "" when no record says (``flops_spent``, older sweeps)."""
    pairs = [(r.get("flops"), r.get("flops_spent")) for r in records]
    pairs = [(c, s) for c, s in pairs if is_num(c) and is_num(s)]
    if not pairs:
        return ""
    total, spent = sum(c for c, _ in pairs), sum(s for _, s in pairs)
    if not total:
        return ""
    saved = (f", {1 - spent / total:.0%} saved by sharing trunks (train.reuse)"
             if spent < total * 0.999 else "")
    return (f" Compute: {spent:.3g} FLOPs executed for {total:.3g} FLOPs of runs "
            f"({spent / total:.2f}x{saved}).")


def holdout_section(analysis: ScalingAnalysis | Mapping[str, Any] | None) -> str:
    """The analysis's holdout check (the largest budget predicted from the others)."""
    a = typed_analysis(analysis)
    h = a.holdout if a is not None else None
    if not isinstance(h, dict) or not h:
        return ""
    out = ['<h2 id="holdout">Holdout: the largest budget predicted from the others</h2>']
    if not h.get("available"):
        return out[0] + f'<p><em>{esc(h.get("message") or "skipped")}</em></p>'
    out.append(kv_table({k: v for k, v in h.items() if not isinstance(v, (dict, list))}))
    for key, value in h.items():  # predicted, actual, relative_error, within_ci
        if isinstance(value, dict):
            out.append(f"<h3>{esc(key.replace('_', ' '))}</h3>" + kv_table(value))
    return "".join(out)


def validation_section(run_dir: Path) -> str:
    """``analysis/validation.json`` (:func:`~flops_fit.rundir.records.read_validation`)."""
    path = Layout(run_dir).validation
    if not path.exists():
        return ""
    try:
        val = read_validation(path).to_dict()
    except FlopsFitError as exc:  # show the problem instead of failing
        return f'<h2 id="validation">Validation</h2><div class="bad">{esc(exc)}</div>'
    out = ['<h2 id="validation">Validation</h2>']
    flat = {k: v for k, v in val.items() if not isinstance(v, (dict, list))
            or (isinstance(v, list) and len(v) == 2 and all(is_num(x) for x in v))}
    out.append(kv_table(flat))
    for k, v in val.items():
        if k in flat or v in ([], {}):
            continue
        out.append(f"<h3>{esc(k.replace('_', ' '))}</h3>")
        if isinstance(v, list) and all(isinstance(x, dict) for x in v):
            out.append(table(v))
        elif isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()):
            out.append(table([{"method": m, **x} for m, x in v.items()]))
        elif isinstance(v, dict):
            out.append(kv_table(v))
        else:
            out.append(f"<pre>{esc(fmt(v))}</pre>")
    return "".join(out)


def provenance_section(data: dict[str, Any], run_dir: Path, extra: dict[str, Any],
                        now: str, timing: str = "") -> str:
    """How it was made: the fit's provenance, the settings, the Hydra configs, ``timing`` (the
    training time against the plan's estimate, report/notes.py) and the software."""
    out = ['<h2 id="provenance">How this was made</h2>']
    prov = data.get("provenance")
    if isinstance(prov, dict) and prov:
        out.append("<h3>The fit</h3>")
        top = {k: v for k, v in prov.items() if not isinstance(v, dict)}
        if data.get("created_utc"):
            top = {"created_utc": data["created_utc"], **top}
        out.append(kv_table(top))
        runs = prov.get("runs")
        if isinstance(runs, dict):
            out.append("<h3>Runs used and dropped</h3>")
            out.append(kv_table({k: v for k, v in runs.items()
                                  if k not in ("used", "dropped")}))
            dropped = runs.get("dropped")
            if isinstance(dropped, list) and dropped:
                rows = [d if isinstance(d, dict) else {"run_id": d} for d in dropped]
                out.append("<p>Dropped from the fit:</p>" + table(rows))
            used = runs.get("used")
            if isinstance(used, list) and used:
                out.append(f"<details><summary>{len(used)} runs used</summary><p>"
                           f"{esc(', '.join(str(u) for u in used))}</p></details>")
        for key, val in prov.items():
            if key != "runs" and isinstance(val, dict):
                label = key.replace("_", " ").capitalize()
                if key in ("settings", "library_versions"):
                    label += " of the fit"
                out.append(f"<h3>{esc(label)}</h3>" + kv_table(val))
    else:
        rest = {k: v for k, v in data.items()
                if k not in ("parametric", "isoflop", "warnings", "prediction", "predictions",
                             "approach1", "holdout")}
        if rest:
            out.append("<h3>The fit</h3>" + kv_table(rest))
    shown = {"prediction", "predict_budget", "title", "notes", "figures"}
    more = {k: v for k, v in extra.items() if k not in shown}
    if more:
        out.append("<h3>Settings</h3>" + kv_table(more))
    configs = hydra_configs(run_dir)
    if configs:
        out.append("<h3>Configuration (Hydra)</h3>")
        for name, text in configs:
            out.append(f"<details><summary>{esc(name)}</summary><pre>{esc(text)}</pre></details>")
    out.append(timing + "<h3>Software of this report</h3>" + kv_table(versions()))
    out.append(f"<p>Report written {esc(now)} from <code>{esc(run_dir)}</code> "
               f"by <code>{esc(Path(sys.argv[0]).name or 'python')}</code>.</p>")
    return "".join(out)


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("flops-fit", "numpy", "scipy", "pandas", "matplotlib", "torch", "hydra-core",
                "omegaconf"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def hydra_configs(run_dir: Path) -> list[tuple[str, str]]:
    out = []
    for p in sorted((run_dir / ".hydra").glob("*/config.yaml")):
        try:
            out.append((p.relative_to(run_dir).as_posix(), p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    for p in sorted((run_dir / ".hydra").glob("*/overrides.yaml")):
        try:
            out.append((p.relative_to(run_dir).as_posix(), p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return out
