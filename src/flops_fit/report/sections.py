"""The sections of ``report.html`` after the header: the prediction, the fitted laws, the
holdout, the validation, the runs and how it was all made.

Each function returns an HTML fragment ("" when there is nothing to show). Intervals have one
shape: ``section[name + "_ci"] = [lo, hi]``.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flops_fit.plots.curves import interval
from flops_fit.report.html import esc, fmt, is_num, kv_table, sci, table
from flops_fit.rundir.io import read_json
from flops_fit.rundir.layout import Layout

__all__ = ["prediction_section", "laws_section", "holdout_section", "validation_section",
           "runs_section", "provenance_section", "compute_line"]


def _value_ci(d: Mapping[str, Any], name: str) -> tuple[Any, Any]:
    """The value of ``d[name]`` and its interval ``d[name + "_ci"]``."""
    return d.get(name), interval(d, name)


def laws_section(data: dict[str, Any]) -> str:
    out = ['<h2 id="laws">Fitted scaling laws</h2>']
    if data.get("method"):
        out.append(f"<p>Predictions use the <b>{esc(data['method'])}</b> fit.</p>")
    if data.get("method_note"):
        out.append(f'<div class="warn">{esc(data["method_note"])}</div>')
    par = data.get("parametric")
    if isinstance(par, dict):
        out.append("<h3>Approach 3: L(N, D) = E + A / N<sup>α</sup> + B / D<sup>β</sup> "
                   "(loss in nats/token)</h3>")
        if par.get("degenerate"):
            reasons = par.get("degenerate_reasons") or []
            out.append('<div class="bad"><b>Degenerate fit</b>: '
                       + esc("; ".join(str(r) for r in reasons) or "flagged by the analysis")
                       + ". Do not use its predictions without checking.</div>")
        rows = []
        for name in ("E", "A", "B", "alpha", "beta", "a", "b"):
            if name not in par:
                continue
            value, ci = _value_ci(par, name)
            se = par.get(f"{name}_se")
            rows.append({"parameter": name, "value": value, "95% interval": ci,
                         "standard error": se})
        out.append(table(rows))
        boot = par.get("bootstrap")
        if isinstance(boot, dict):
            level = par.get("ci_level") if is_num(par.get("ci_level")) else 0.95
            out.append(f"<p>Intervals: {level:.0%} bootstrap "
                       f"percentiles over {esc(fmt(boot.get('n_resamples')))} resamples "
                       f"({esc(boot.get('resampling', ''))}).</p>")
        elif par.get("available", True):
            out.append("<p><em>No bootstrap: the values have no intervals.</em></p>")
        extra = {k: v for k, v in par.items() if k not in
                 ("E", "A", "B", "alpha", "beta", "a", "b", "degenerate", "degenerate_reasons",
                  "bootstrap", "n_opt", "d_opt", "available")
                 and not k.endswith(("_ci", "_se")) and not isinstance(v, list)}
        if extra:
            out.append("<details><summary>fit details</summary>" + kv_table(extra)
                       + "</details>")
    else:
        out.append("<p><em>No parametric fit in the analysis.</em></p>")
    if isinstance(par, dict) and par.get("available") is False:
        out.append(f'<div class="warn">{esc(par.get("message") or "not available")}</div>')
    iso = data.get("isoflop")
    if isinstance(iso, dict) and iso.get("available") is False and not iso.get("budgets"):
        out.append("<h3>Approach 2: IsoFLOP power laws</h3>"
                   f'<div class="warn">{esc(iso.get("message") or "not available")}</div>')
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
            out.append(table(rows))
        else:
            msg = iso.get("message") or "no power law was fitted"
            out.append(f'<div class="warn">{esc(msg)}</div>')
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
            out.append(table(rows, [c for c in rows[0] if c not in drop]))
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
            out.append(table([{"law": "N_opt = k · C^a (parameters)", "coefficient k": k,
                                "exponent": a, "exponent 95% interval": a_ci,
                                "curves": a1.get("n_curves")}]))
            if law.get("ci_note"):
                out.append(f"<p>{esc(law['ci_note'])}</p>")
            if a1.get("points"):
                out.append(f"<p>Points used: {esc(a1['points'])}</p>")
        else:
            out.append(f"<p><em>{esc(a1.get('message') or 'not available')}</em></p>")
    warns = [w for w in data.get("warnings") or [] if w != data.get("method_note")]
    if isinstance(warns, list) and warns:
        out.append("<h3>Warnings from the analysis</h3>")
        out += [f'<div class="warn">{esc(w)}</div>' for w in warns]
    return "".join(out)


def prediction_section(obj: Any, data: dict[str, Any], budget: float | None,
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
    out = [f'<h2 id="prediction">Prediction at C = {esc(sci(c))} FLOPs</h2><div class="kpi">']
    for key, label in (("optimal_params", "parameters N"), ("optimal_tokens", "tokens D"),
                       ("tokens_per_param", "tokens per parameter"),
                       ("expected_loss", "expected loss (nats/token)")):
        if key in pred:
            v = pred[key]
            ci = pred.get(f"{key}_ci")
            sub = f"<span>95%: {esc(fmt(ci))}</span>" if ci is not None else ""
            out.append(f"<div><span>{esc(label)}</span><b>{esc(fmt(v))}</b>{sub}</div>")
    out.append("</div>")
    method = f" by the {pred['method']} fit" if pred.get("method") else ""
    if pred.get("degenerate") or pred.get("warning"):
        out.append(f'<div class="bad"><b>Unreliable prediction{esc(method)}</b>: '
                   f'{esc(pred.get("warning") or "the fit is degenerate")}.</div>')
    elif method:
        out.append(f"<p>Predicted{esc(method)}; intervals are bootstrap percentiles.</p>")
    out.append("<details><summary>all fields of the prediction</summary>"
               + kv_table(dict(pred)) + "</details>")
    return "".join(out), notes


def runs_section(records: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for r in records:
        s = str(r.get("status", "?"))
        counts[s] = counts.get(s, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    preferred = ["run_id", "status", "compute_budget", "num_params", "num_params_non_embedding",
                 "num_tokens", "tokens_per_param", "flops", "flops_spent", "final_loss",
                 "size_param",
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
               "final_loss": "final loss (nats/token)", "wall_time_s": "wall time (s)",
               "tokens_per_s": "tokens/s"}
    return (f'<h2 id="runs">Runs</h2><p>{len(records)} runs: {esc(summary or "none")}.'
            f'{esc(compute_line(records))}</p>' + '<div class="small">'
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


def holdout_section(data: dict[str, Any]) -> str:
    h = data.get("holdout")
    if not isinstance(h, dict) or not h:
        return ""
    out = ['<h2 id="holdout">Holdout: the largest budget predicted from the others</h2>']
    if not h.get("available"):
        return out[0] + f'<p><em>{esc(h.get("message") or "skipped")}</em></p>'
    flat = {k: v for k, v in h.items() if not isinstance(v, (dict, list))}
    out.append(kv_table(flat))
    for key in ("predicted", "actual", "relative_error", "within_ci"):
        if isinstance(h.get(key), dict):
            out.append(f"<h3>{esc(key.replace('_', ' '))}</h3>" + kv_table(h[key]))
    return "".join(out)


def validation_section(run_dir: Path) -> str:
    path = Layout(run_dir).validation
    if not path.exists():
        return ""
    try:
        val = read_json(path, "validation")
    except Exception as exc:  # noqa: BLE001 - show the problem instead of failing
        return f'<h2 id="validation">Validation</h2><div class="bad">{esc(exc)}</div>'
    out = ['<h2 id="validation">Validation</h2>']
    if isinstance(val, dict):
        flat = {k: v for k, v in val.items() if not isinstance(v, (dict, list))
                or (isinstance(v, list) and len(v) == 2 and all(is_num(x) for x in v))}
        out.append(kv_table(flat))
        for k, v in val.items():
            if k in flat:
                continue
            out.append(f"<h3>{esc(k)}</h3>")
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                out.append(table(v))
            elif isinstance(v, dict):
                out.append(kv_table(v))
            else:
                out.append(f"<pre>{esc(fmt(v))}</pre>")
    elif isinstance(val, list) and all(isinstance(x, dict) for x in val):
        out.append(table(val))
    else:
        out.append(f"<pre>{esc(json.dumps(val, indent=2, default=str))}</pre>")
    return "".join(out)


def provenance_section(data: dict[str, Any], run_dir: Path, extra: dict[str, Any],
                        now: str) -> str:
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
    out.append("<h3>Software of this report</h3>" + kv_table(versions()))
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
