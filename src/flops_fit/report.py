"""``report.html``: one self-contained page per run directory.

The page embeds the plots as base64 PNG (no network, no external CSS or JavaScript) and shows
the fitted laws with their intervals, the Chinchilla table, the prediction, the runs with their
statuses, the validation (when ``analysis/validation.json`` exists) and how it was all made
(analysis provenance, the Hydra configs, library versions, time). All text is escaped.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import platform
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flops_fit.rundir import atomic_write_text, read_json

__all__ = ["write_report", "REPORT_FILE", "PLOT_CAPTIONS"]

REPORT_FILE = "report.html"
VALIDATION_FILE = Path("analysis") / "validation.json"

PLOT_CAPTIONS = {
    "isoflops": "IsoFLOP curves: final loss against model size for each compute budget, the "
                "parabola fitted in log N and its minimum with a 95% interval. A budget whose "
                "minimum is not inside the sampled sizes is marked and left out of the laws.",
    "scaling_laws": "Compute-optimal model size, data and loss against compute: the IsoFLOP "
                    "optima, the fitted power laws (Approach 2) with 95% bands, the parametric "
                    "fit (Approach 3), extended to the prediction budget.",
    "tokens_per_param": "Tokens per parameter of every run and of the compute-optimal "
                        "allocation, against compute; Chinchilla's 20 for reference.",
    "parametric": "Iso-loss contours of the fitted L(N, D), the compute-optimal frontier, "
                  "iso-FLOP lines (C = 6ND) and the runs.",
    "fit_quality": "Parametric fit quality: predicted against observed loss, and the relative "
                   "residuals by model size.",
    "training_curves": "Training curves: loss against training compute, coloured by model "
                       "size; dots are held-out evaluations.",
}

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
nav a{margin-right:1em}.scroll{overflow-x:auto}.small table{font-size:.8em}
"""


# --------------------------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------------------------


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def fmt(x: Any) -> str:
    """A value as short plain text: 4 significant digits, ``[lo, hi]`` for intervals."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        try:
            x = x.item()
        except (ValueError, AttributeError):
            pass
    if _is_num(x):
        v = float(x)
        if not math.isfinite(v):
            return "n/a"
        if isinstance(x, int) and abs(x) < 10**6:
            return str(x)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.4g}" if "e" in f"{v:.4g}" else f"{v:.3e}"
        return f"{v:.4g}"
    if isinstance(x, (list, tuple)):
        if len(x) == 2 and all(_is_num(v) for v in x):
            return f"[{fmt(x[0])}, {fmt(x[1])}]"
        if all(not isinstance(v, (dict, list, tuple)) for v in x):
            return ", ".join(fmt(v) for v in x)
    if isinstance(x, (dict, list, tuple)):
        return json.dumps(x, default=str, separators=(", ", ": "))[:2000]
    return str(x)


def _cell(x: Any) -> str:
    cls = ' class="num"' if _is_num(x) or (
        isinstance(x, (list, tuple)) and len(x) == 2 and all(_is_num(v) for v in x)) else ""
    return f"<td{cls}>{_e(fmt(x))}</td>"


def _table(rows: list[Mapping[str, Any]], columns: list[str] | None = None,
           headers: Mapping[str, str] | None = None, status_col: str | None = None) -> str:
    """An HTML table of dict rows (columns: the union of keys, in first-seen order)."""
    if not rows:
        return "<p><em>none</em></p>"
    if columns is None:
        columns = []
        for r in rows:
            for k in r:
                if k not in columns:
                    columns.append(k)
    headers = headers or {}
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f"<th>{_e(headers.get(c, c))}</th>" for c in columns]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>")
        for c in columns:
            v = r.get(c)
            if c == status_col and v is not None:
                s = str(v)
                cls = "status-" + "".join(ch for ch in s.lower() if ch.isalnum())
                out.append(f'<td class="{_e(cls)}">{_e(s)}</td>')
            else:
                out.append(_cell(v))
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _kv_table(d: Mapping[str, Any]) -> str:
    return _table([{"key": k, "value": v} for k, v in d.items()], ["key", "value"])


def _markdown_table(md: str) -> str:
    """A pipe-delimited markdown table as HTML (anything else as preformatted text)."""
    lines = [ln.strip() for ln in md.strip().splitlines() if ln.strip()]
    rows = [ln for ln in lines if ln.startswith("|")]
    if len(rows) < 2:
        return f"<pre>{_e(md)}</pre>"

    def cells(ln: str) -> list[str]:
        return [c.strip() for c in ln.strip().strip("|").split("|")]

    head = cells(rows[0])
    body = [cells(r) for r in rows[1:] if not set(r.replace("|", "").strip()) <= set("-: ")]
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f"<th>{_e(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for r in body:
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>")
    out.append("</tbody></table></div>")
    other = [ln for ln in lines if not ln.startswith("|")]
    if other:
        out.append("".join(f"<p>{_e(ln)}</p>" for ln in other))
    return "".join(out)


def _sci(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.3g}"


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def _analysis_parts(analysis: Any, run_dir: Path) -> tuple[Any, dict[str, Any], list[str]]:
    """``(object with chinchilla_table/predict_optimal_size or None, its dict, notes)``."""
    notes: list[str] = []
    obj = None
    data: dict[str, Any] = {}
    if analysis is None:
        path = run_dir / "analysis" / "scaling_laws.json"
        analysis = path if path.exists() else None
    if isinstance(analysis, (str, Path)):
        loaded = read_json(analysis, "scaling-law analysis")
        data = loaded if isinstance(loaded, dict) else {}
    elif isinstance(analysis, Mapping):
        data = dict(analysis)
    elif analysis is not None:
        obj = analysis
        for meth in ("to_dict", "to_json_dict", "as_dict"):
            fn = getattr(analysis, meth, None)
            if callable(fn):
                try:
                    got = fn()
                except Exception as exc:  # a report must not fail on one section
                    notes.append(f"analysis.{meth}() failed: {exc}")
                    continue
                if isinstance(got, str):
                    try:
                        got = json.loads(got)
                    except json.JSONDecodeError:
                        continue
                if isinstance(got, dict):
                    data = got
                    break
        if not data and dataclasses.is_dataclass(analysis):
            try:
                data = dataclasses.asdict(analysis)
            except Exception:  # noqa: BLE001 - best effort
                data = {}
        if not data:
            raw = getattr(analysis, "raw", None) or getattr(analysis, "data", None)
            if isinstance(raw, dict):
                data = raw
    if obj is None and data:
        try:
            from flops_fit.analyzer import ScalingAnalysis

            obj = ScalingAnalysis.from_json(data)
        except Exception as exc:  # noqa: BLE001 - no analyzer yet, or an older file
            notes.append(f"the analysis could not be loaded as a ScalingAnalysis ({exc}); "
                         "the table and prediction are left out")
    return obj, data, notes


def _results_list(results: Any, run_dir: Path) -> list[dict[str, Any]]:
    if results is None:
        path = run_dir / "results.json"
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


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("flops-fit", "numpy", "scipy", "pandas", "matplotlib", "torch", "hydra-core",
                "omegaconf"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def _configs(run_dir: Path) -> list[tuple[str, str]]:
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


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------


def _value_ci(d: Mapping[str, Any], name: str) -> tuple[Any, Any]:
    from flops_fit.plots.curves import interval
    from flops_fit.plots.curves import num as _num

    v = d.get(name)
    value = _num(v) if isinstance(v, dict) else v
    return value, interval(d, name)


def _laws_section(data: dict[str, Any]) -> str:
    out = ['<h2 id="laws">Fitted scaling laws</h2>']
    if data.get("method"):
        out.append(f"<p>Predictions use the <b>{_e(data['method'])}</b> fit.</p>")
    if data.get("method_note"):
        out.append(f'<div class="warn">{_e(data["method_note"])}</div>')
    par = data.get("parametric")
    if isinstance(par, dict):
        out.append("<h3>Approach 3: L(N, D) = E + A / N<sup>α</sup> + B / D<sup>β</sup> "
                   "(loss in nats/token)</h3>")
        if par.get("degenerate"):
            reasons = par.get("degenerate_reasons") or par.get("reasons") or []
            if isinstance(reasons, str):
                reasons = [reasons]
            out.append('<div class="bad"><b>Degenerate fit</b>: '
                       + _e("; ".join(str(r) for r in reasons) or "flagged by the analysis")
                       + ". Do not use its predictions without checking.</div>")
        rows = []
        for name in ("E", "A", "B", "alpha", "beta", "a", "b"):
            if name not in par:
                continue
            value, ci = _value_ci(par, name)
            se = par.get(f"{name}_se")
            if se is None and isinstance(par.get("se"), dict):
                se = par["se"].get(name)
            rows.append({"parameter": name, "value": value, "95% interval": ci,
                         "standard error": se})
        out.append(_table(rows))
        boot = par.get("bootstrap")
        if isinstance(boot, dict):
            level = par.get("ci_level") if _is_num(par.get("ci_level")) else 0.95
            out.append(f"<p>Intervals: {level:.0%} bootstrap "
                       f"percentiles over {_e(fmt(boot.get('n_resamples')))} resamples "
                       f"({_e(boot.get('resampling', ''))}).</p>")
        elif par.get("available", True):
            out.append("<p><em>No bootstrap: the values have no intervals.</em></p>")
        extra = {k: v for k, v in par.items() if k not in
                 ("E", "A", "B", "alpha", "beta", "a", "b", "ci", "se", "degenerate",
                  "degenerate_reasons", "intervals", "confidence_intervals", "bootstrap",
                  "n_opt", "d_opt", "available")
                 and not k.endswith(("_ci", "_se", "_interval")) and not isinstance(v, list)}
        if extra:
            out.append("<details><summary>fit details</summary>" + _kv_table(extra)
                       + "</details>")
    else:
        out.append("<p><em>No parametric fit in the analysis.</em></p>")
    if isinstance(par, dict) and par.get("available") is False:
        out.append(f'<div class="warn">{_e(par.get("message") or "not available")}</div>')
    iso = data.get("isoflop")
    if isinstance(iso, dict) and iso.get("available") is False and not iso.get("budgets"):
        out.append("<h3>Approach 2: IsoFLOP power laws</h3>"
                   f'<div class="warn">{_e(iso.get("message") or "not available")}</div>')
    elif isinstance(iso, dict) and iso:
        out.append("<h3>Approach 2: IsoFLOP power laws in C (FLOPs)</h3>")
        rows = []
        labels = {"n_opt": "N_opt = k · C^a (parameters)", "d_opt": "D_opt = k · C^b (tokens)",
                  "loss_opt": "L_opt = k · C^c (nats/token)"}
        for key, label in labels.items():
            law = iso.get(key)
            if not isinstance(law, dict):
                continue
            k, k_ci = _value_ci(law, "coefficient")
            a, a_ci = _value_ci(law, "exponent")
            rows.append({"law": label, "coefficient k": k, "k 95% interval": k_ci,
                         "exponent": a, "exponent 95% interval": a_ci})
        if rows:
            out.append(_table(rows))
        else:
            msg = iso.get("message") or "no power law was fitted"
            out.append(f'<div class="warn">{_e(msg)}</div>')
        budgets = [b for b in iso.get("budgets") or [] if isinstance(b, dict)]
        if budgets:
            out.append("<h3>IsoFLOP minimum of each budget</h3>")
            rows = []
            for b in budgets:
                rows.append({
                    "compute budget (FLOPs)": b.get("compute_budget"),
                    "runs": b.get("n_runs"),
                    "optimal N (parameters)": b.get("optimal_params"),
                    "N 95% interval": _value_ci(b, "optimal_params")[1],
                    "optimal D (tokens)": b.get("optimal_tokens"),
                    "loss at optimum": b.get("optimal_loss"),
                    "interior": b.get("interior"),
                    "note": b.get("note") or "",
                })
            drop = [c for c in rows[0] if all(r.get(c) in (None, "") for r in rows)]
            out.append(_table(rows, [c for c in rows[0] if c not in drop]))
    elif "isoflop" in data or data:
        out.append("<h3>Approach 2: IsoFLOP power laws</h3><p><em>Not available: the runs "
                   "do not form an IsoFLOP grid (e.g. imported data).</em></p>")
    a1 = data.get("approach1")
    if isinstance(a1, dict) and a1:
        out.append("<h3>Approach 1: envelope of the training curves</h3>")
        law = a1.get("n_opt")
        if a1.get("available") and isinstance(law, dict):
            k, k_ci = _value_ci(law, "coefficient")
            a, a_ci = _value_ci(law, "exponent")
            out.append(_table([{"law": "N_opt = k · C^a (parameters)", "coefficient k": k,
                                "exponent": a, "exponent 95% interval": a_ci,
                                "curves": a1.get("n_curves")}]))
            if law.get("ci_note"):
                out.append(f"<p>{_e(law['ci_note'])}</p>")
        else:
            out.append(f"<p><em>{_e(a1.get('message') or 'not available')}</em></p>")
    warns = [w for w in data.get("warnings") or [] if w != data.get("method_note")]
    if isinstance(warns, list) and warns:
        out.append("<h3>Warnings from the analysis</h3>")
        out += [f'<div class="warn">{_e(w)}</div>' for w in warns]
    return "".join(out)


def _prediction(obj: Any, data: dict[str, Any], budget: float | None,
                extra: dict[str, Any]) -> tuple[str, list[str]]:
    notes: list[str] = []
    pred = extra.get("prediction")
    if pred is None and obj is not None and budget:
        fn = getattr(obj, "predict_optimal_size", None) or getattr(obj, "predict", None)
        if callable(fn):
            try:
                pred = fn(budget)
            except Exception as exc:  # noqa: BLE001 - one section must not sink the page
                notes.append(f"prediction at C = {budget:.3g} failed: {exc}")
    if pred is None and isinstance(data.get("prediction"), dict):
        pred = data["prediction"]
    if not isinstance(pred, Mapping):
        return "", notes
    c = pred.get("target_compute", budget)
    out = [f'<h2 id="prediction">Prediction at C = {_e(_sci(c))} FLOPs</h2><div class="kpi">']
    for key, label in (("optimal_params", "parameters N"), ("optimal_tokens", "tokens D"),
                       ("tokens_per_param", "tokens per parameter"),
                       ("expected_loss", "expected loss (nats/token)")):
        if key in pred:
            v = pred[key]
            ci = None
            for ck in (f"{key}_ci", f"{key}_interval"):
                if ck in pred:
                    ci = pred[ck]
            sub = f"<span>95%: {_e(fmt(ci))}</span>" if ci is not None else ""
            out.append(f"<div><span>{_e(label)}</span><b>{_e(fmt(v))}</b>{sub}</div>")
    out.append("</div>")
    method = f" by the {pred['method']} fit" if pred.get("method") else ""
    if pred.get("degenerate") or pred.get("warning"):
        out.append(f'<div class="bad"><b>Unreliable prediction{_e(method)}</b>: '
                   f'{_e(pred.get("warning") or "the fit is degenerate")}.</div>')
    elif method:
        out.append(f"<p>Predicted{_e(method)}; intervals are bootstrap percentiles.</p>")
    out.append("<details><summary>all fields of the prediction</summary>"
               + _kv_table(dict(pred)) + "</details>")
    return "".join(out), notes


def _runs_section(records: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for r in records:
        s = str(r.get("status", "?"))
        counts[s] = counts.get(s, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    preferred = ["run_id", "status", "compute_budget", "num_params", "num_params_non_embedding",
                 "num_tokens", "tokens_per_param", "flops", "final_loss", "size_param",
                 "size_value", "steps", "wall_time_s", "tokens_per_s", "device", "error"]
    present = [c for c in preferred if any(c in r for r in records)]
    rows = []
    for r in records:
        row = {c: r.get(c) for c in present}
        if "tokens_per_param" in present and row.get("tokens_per_param") is None:
            n, d = r.get("num_params"), r.get("num_tokens")
            if _is_num(n) and _is_num(d) and n:
                row["tokens_per_param"] = d / n
        rows.append(row)
    headers = {"compute_budget": "budget C (FLOPs)", "num_params": "N (parameters)",
               "num_params_non_embedding": "N non-emb.", "num_tokens": "D (tokens)",
               "tokens_per_param": "D/N", "flops": "FLOPs spent",
               "final_loss": "final loss (nats/token)", "wall_time_s": "wall time (s)",
               "tokens_per_s": "tokens/s"}
    return (f'<h2 id="runs">Runs</h2><p>{len(records)} runs: {_e(summary or "none")}.</p>'
            + '<div class="small">' + _table(rows, present, headers, status_col="status")
            + "</div>")


def _holdout_section(data: dict[str, Any]) -> str:
    h = data.get("holdout")
    if not isinstance(h, dict) or not h:
        return ""
    out = ['<h2 id="holdout">Holdout: the largest budget predicted from the others</h2>']
    if not h.get("available"):
        return out[0] + f'<p><em>{_e(h.get("message") or "skipped")}</em></p>'
    flat = {k: v for k, v in h.items() if not isinstance(v, (dict, list))}
    out.append(_kv_table(flat))
    for key in ("predicted", "actual", "relative_error", "within_ci"):
        if isinstance(h.get(key), dict):
            out.append(f"<h3>{_e(key.replace('_', ' '))}</h3>" + _kv_table(h[key]))
    return "".join(out)


def _validation_section(run_dir: Path) -> str:
    path = run_dir / VALIDATION_FILE
    if not path.exists():
        return ""
    try:
        val = read_json(path, "validation")
    except Exception as exc:  # noqa: BLE001 - show the problem instead of failing
        return f'<h2 id="validation">Validation</h2><div class="bad">{_e(exc)}</div>'
    out = ['<h2 id="validation">Validation</h2>']
    if isinstance(val, dict):
        flat = {k: v for k, v in val.items() if not isinstance(v, (dict, list))
                or (isinstance(v, list) and len(v) == 2 and all(_is_num(x) for x in v))}
        out.append(_kv_table(flat))
        for k, v in val.items():
            if k in flat:
                continue
            out.append(f"<h3>{_e(k)}</h3>")
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                out.append(_table(v))
            elif isinstance(v, dict):
                out.append(_kv_table(v))
            else:
                out.append(f"<pre>{_e(fmt(v))}</pre>")
    elif isinstance(val, list) and all(isinstance(x, dict) for x in val):
        out.append(_table(val))
    else:
        out.append(f"<pre>{_e(json.dumps(val, indent=2, default=str))}</pre>")
    return "".join(out)


def _provenance_section(data: dict[str, Any], run_dir: Path, extra: dict[str, Any],
                        now: str) -> str:
    out = ['<h2 id="provenance">How this was made</h2>']
    prov = data.get("provenance")
    if isinstance(prov, dict) and prov:
        out.append("<h3>The fit</h3>")
        top = {k: v for k, v in prov.items() if not isinstance(v, dict)}
        if data.get("created_utc"):
            top = {"created_utc": data["created_utc"], **top}
        out.append(_kv_table(top))
        runs = prov.get("runs")
        if isinstance(runs, dict):
            out.append("<h3>Runs used and dropped</h3>")
            out.append(_kv_table({k: v for k, v in runs.items()
                                  if k not in ("used", "dropped")}))
            dropped = runs.get("dropped")
            if isinstance(dropped, list) and dropped:
                rows = [d if isinstance(d, dict) else {"run_id": d} for d in dropped]
                out.append("<p>Dropped from the fit:</p>" + _table(rows))
            used = runs.get("used")
            if isinstance(used, list) and used:
                out.append(f"<details><summary>{len(used)} runs used</summary><p>"
                           f"{_e(', '.join(str(u) for u in used))}</p></details>")
        for key, val in prov.items():
            if key != "runs" and isinstance(val, dict):
                label = key.replace("_", " ").capitalize()
                if key in ("settings", "library_versions"):
                    label += " of the fit"
                out.append(f"<h3>{_e(label)}</h3>" + _kv_table(val))
    else:
        rest = {k: v for k, v in data.items()
                if k not in ("parametric", "isoflop", "warnings", "prediction", "predictions",
                             "approach1", "holdout")}
        if rest:
            out.append("<h3>The fit</h3>" + _kv_table(rest))
    shown = {"prediction", "predict_budget", "title", "notes", "figures"}
    more = {k: v for k, v in extra.items() if k not in shown}
    if more:
        out.append("<h3>Settings</h3>" + _kv_table(more))
    configs = _configs(run_dir)
    if configs:
        out.append("<h3>Configuration (Hydra)</h3>")
        for name, text in configs:
            out.append(f"<details><summary>{_e(name)}</summary><pre>{_e(text)}</pre></details>")
    out.append("<h3>Software of this report</h3>" + _kv_table(_versions()))
    out.append(f"<p>Report written {_e(now)} from <code>{_e(run_dir)}</code> "
               f"by <code>{_e(Path(sys.argv[0]).name or 'python')}</code>.</p>")
    return "".join(out)


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
                   if _is_num(r.get("compute_budget")) and r["compute_budget"] > 0]
        budget = 100.0 * max(budgets) if budgets else None
    title = str(extra.get("title") or f"flops-fit report: {run_dir.name}")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(run_dir)} · {_e(now)}</p>',
        '<nav><a href="#prediction">prediction</a><a href="#laws">laws</a>'
        '<a href="#table">table</a><a href="#plots">plots</a><a href="#runs">runs</a>'
        '<a href="#provenance">provenance</a></nav>',
    ]
    pred_html, pred_notes = _prediction(obj, data, budget, extra)
    notes += pred_notes
    parts.append(pred_html)
    parts.append(_laws_section(data))
    if obj is not None and callable(getattr(obj, "chinchilla_table", None)):
        parts.append('<h2 id="table">Chinchilla table: the compute-optimal allocation</h2>')
        budgets_t = [p.get("target_compute") for p in data.get("predictions") or []
                     if isinstance(p, dict) and _is_num(p.get("target_compute"))]
        try:
            table = obj.chinchilla_table(budgets_t or None)
        except Exception as exc:  # noqa: BLE001 - show why instead of failing
            parts.append(f'<div class="warn">The table could not be made: {_e(exc)}</div>')
        else:
            if hasattr(table, "to_html"):
                parts.append(table.to_html(escape=True, index=False, border=0))
            else:
                parts.append(_markdown_table(str(table)))
    images = _images(figures_or_plot_paths)
    parts.append('<h2 id="plots">Plots</h2>')
    if not images:
        parts.append("<p><em>No plots.</em></p>")
    for name, mime, b64 in images:
        cap = PLOT_CAPTIONS.get(name, name.replace("_", " "))
        parts.append(f'<figure id="plot-{_e(name)}"><img alt="{_e(name)}" '
                     f'src="data:{mime};base64,{b64}"><figcaption><b>{_e(name)}</b>: '
                     f"{_e(cap)}</figcaption></figure>")
    parts.append(_holdout_section(data))
    parts.append(_validation_section(run_dir))
    parts.append(_runs_section(records))
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes)
                     + "</ul>")
    parts.append(_provenance_section(data, run_dir, extra, now))
    parts.append("</body></html>")
    path = run_dir / REPORT_FILE
    atomic_write_text(path, "\n".join(p for p in parts if p) + "\n")
    return path
