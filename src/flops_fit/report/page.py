"""``report.html``: one self-contained page per run directory.

The page embeds the plots as base64 PNG (no network, no external CSS or JavaScript) and shows
the fitted laws with their intervals, the Chinchilla table, the prediction, the runs with their
statuses, the validation (when ``analysis/validation.json`` exists) and how it was all made
(analysis provenance, the Hydra configs, library versions, time). All text is escaped.

The HTML building blocks are in :mod:`flops_fit.report.html`, the sections in
:mod:`flops_fit.report.sections`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flops_fit import plots
from flops_fit.analysis.scaling_analysis import ScalingAnalysis
from flops_fit.report.html import esc, fmt, is_num, markdown_table
from flops_fit.report.notes import lr_rule_html, notes_section, timing_html
from flops_fit.report.sections import (
    holdout_section,
    laws_section,
    prediction_section,
    provenance_section,
    runs_section,
    validation_section,
)
from flops_fit.rundir.io import atomic_write_text, read_json
from flops_fit.rundir.layout import REPORT_FILE, Layout

__all__ = ["write_report", "REPORT_FILE", "fmt"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1180px;padding:1.2em 1.6em 3em;color:#1d2327;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;
border-bottom:2px solid #e3e6e8;padding-bottom:.2em}h3{font-size:1.05em;margin-top:1.2em}
.sub{color:#5f6b73;margin-top:0}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #d5dadd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f2f4f5}td.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}tr:nth-child(even) td{background:#fafbfb}
.status-completed{color:#17803d;font-weight:600}.status-failed,.status-diverged{color:#c0262d;
font-weight:600}.status-pending,.status-running{color:#9a6700;font-weight:600}
.warn{background:#fff6e0;border-left:4px solid #e0a400;padding:.5em .8em;margin:.6em 0}
.bad{background:#fdecec;border-left:4px solid #c0262d;padding:.5em .8em;margin:.6em 0}
.kpi{display:flex;flex-wrap:wrap;gap:.8em;margin:.8em 0}.kpi div{background:#f2f6fa;
border-radius:6px;padding:.5em .9em;min-width:10em}.kpi b{display:block;font-size:1.25em}
.kpi span{color:#5f6b73;font-size:.85em}figure{margin:1.2em 0}figure img{max-width:100%;
height:auto;border:1px solid #e3e6e8}figcaption{color:#5f6b73;font-size:.9em;margin-top:.3em}
pre{background:#f6f8f9;padding:.7em;overflow-x:auto;font-size:.85em}
details{margin:.4em 0}summary{cursor:pointer;font-weight:600}
ul.notes li{margin:.25em 0}li.warn-item b{color:#9a6700}li.note-item b{color:#5f6b73}
nav a{margin-right:1em}.scroll{overflow-x:auto}.small table{font-size:.8em}
"""



# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def _analysis_parts(analysis: Any, run_dir: Path) -> tuple[Any, dict[str, Any], list[str]]:
    """``(ScalingAnalysis or None, its JSON dict, notes)`` of a ScalingAnalysis, its dict or
    the path of ``scaling_laws.json`` (None: the run directory's, if there is one)."""
    notes: list[str] = []
    if analysis is None:
        path = Layout(run_dir).laws
        analysis = path if path.exists() else None
    if isinstance(analysis, ScalingAnalysis) or callable(getattr(analysis, "to_dict", None)):
        return analysis, analysis.to_dict(), notes
    data: dict[str, Any] = {}
    if isinstance(analysis, (str, Path)):
        loaded = read_json(analysis, "scaling-law analysis")
        data = loaded if isinstance(loaded, dict) else {}
    elif isinstance(analysis, Mapping):
        data = dict(analysis)
    obj = None
    if data:
        try:
            obj = ScalingAnalysis.from_json(data)
        except Exception as exc:  # noqa: BLE001 - an older or partial file
            notes.append(f"the analysis could not be loaded as a ScalingAnalysis ({exc}); "
                         "the table and prediction are left out")
    return obj, data, notes


def _results_list(results: Any, run_dir: Path) -> list[dict[str, Any]]:
    if results is None:
        path = Layout(run_dir).results
        if not path.exists():
            return []
        results = path
    if isinstance(results, (str, Path)):
        results = read_json(results, "results")
    if hasattr(results, "to_dict") and hasattr(results, "columns"):  # a DataFrame
        results = results.to_dict(orient="records")
    if isinstance(results, list):
        return [r for r in results if isinstance(r, dict)]
    return []


def _png_of(fig: Any, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _images(items: Iterable[Any] | None) -> list[tuple[str, str, str]]:
    """``(name, mime, base64)`` per plot; paths prefer a PNG beside a given SVG."""
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for it in items or []:
        if isinstance(it, (str, Path)):
            p = Path(it)
            name = p.stem
            if name in seen:
                continue
            png = p.with_suffix(".png")
            if png.is_file():
                p = png
            if not p.is_file():
                continue
            mime = "image/svg+xml" if p.suffix.lower() == ".svg" else "image/png"
            data = p.read_bytes()
        elif hasattr(it, "savefig"):
            name = (it.get_label() if hasattr(it, "get_label") else "") or f"figure_{len(out)}"
            if name in seen:
                continue
            mime, data = "image/png", _png_of(it)
        else:
            continue
        seen.add(name)
        out.append((name, mime, base64.b64encode(data).decode("ascii")))
    return out


# --------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------


def write_report(run_dir: str | Path, figures_or_plot_paths: Iterable[Any] | None,
                 analysis: Any, results: Any, extra: dict[str, Any] | None = None) -> Path:
    """Write ``run_dir/report.html`` atomically and return its path.

    Parameters
    ----------
    run_dir : the run directory (the page goes there).
    figures_or_plot_paths : matplotlib Figures (named by ``get_label()``) or paths of saved
        plots (a PNG is preferred over an SVG of the same name); embedded as base64.
    analysis : a ``ScalingAnalysis``, its JSON dict, or the path of ``scaling_laws.json``
        (None: read ``run_dir/analysis/scaling_laws.json`` if present).
    results : the run records (a list of dicts, a DataFrame or the path of ``results.json``;
        None: read ``run_dir/results.json``).
    extra : optional ``predict_budget`` (FLOPs), ``prediction`` (a dict to show instead of
        computing one), ``title``, ``notes`` (list of sentences); other keys are listed as
        settings.
    """
    run_dir = Path(run_dir)
    extra = dict(extra or {})
    now = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    obj, data, notes = _analysis_parts(analysis, run_dir)
    records = _results_list(results, run_dir)
    notes = [str(n) for n in extra.get("notes") or []] + notes
    budget = extra.get("predict_budget") or data.get("predict_budget")
    if not budget:
        budgets = [float(r["compute_budget"]) for r in records
                   if is_num(r.get("compute_budget")) and r["compute_budget"] > 0]
        budget = 100.0 * max(budgets) if budgets else None
    title = str(extra.get("title") or f"flops-fit report: {run_dir.name}")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="sub">{esc(run_dir)} · {esc(now)}</p>',
        '<nav><a href="#prediction">prediction</a><a href="#notes">notes</a>'
        '<a href="#laws">laws</a>'
        '<a href="#table">table</a><a href="#plots">plots</a><a href="#runs">runs</a>'
        '<a href="#provenance">provenance</a></nav>',
    ]
    pred_html, pred_notes = prediction_section(obj, data, budget, extra)
    notes += pred_notes
    parts.append(pred_html)
    parts.append(notes_section(obj))
    parts.append(laws_section(data))
    if obj is not None and callable(getattr(obj, "chinchilla_table", None)):
        parts.append('<h2 id="table">Chinchilla table: the compute-optimal allocation</h2>')
        budgets_t = [p.get("target_compute") for p in data.get("predictions") or []
                     if isinstance(p, dict) and is_num(p.get("target_compute"))]
        try:
            table = obj.chinchilla_table(budgets_t or None)
        except Exception as exc:  # noqa: BLE001 - show why instead of failing
            parts.append(f'<div class="warn">The table could not be made: {esc(exc)}</div>')
        else:
            if hasattr(table, "to_html"):
                parts.append(table.to_html(escape=True, index=False, border=0))
            else:
                parts.append(markdown_table(str(table)))
    images = _images(figures_or_plot_paths)
    parts.append('<h2 id="plots">Plots</h2>')
    if not images:
        parts.append("<p><em>No plots.</em></p>")
    for name, mime, b64 in images:
        cap = plots.caption(name)  # the FIGURES registry's caption
        parts.append(f'<figure id="plot-{esc(name)}"><img alt="{esc(name)}" '
                     f'src="data:{mime};base64,{b64}"><figcaption><b>{esc(name)}</b>: '
                     f"{esc(cap)}</figcaption></figure>")
    parts.append(holdout_section(data))
    parts.append(validation_section(run_dir))
    parts.append(runs_section(records, lr_rule_html(run_dir, records)))
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes)
                     + "</ul>")
    parts.append(provenance_section(data, run_dir, extra, now, timing_html(run_dir)))
    parts.append("</body></html>")
    path = Layout(run_dir).report
    atomic_write_text(path, "\n".join(p for p in parts if p) + "\n")
    return path
