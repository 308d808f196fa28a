"""Predictions in the user's terms: the nearest model one can build, and when to distrust C.

A prediction's N is a real number; a user launches a config. :func:`nearest_model` finds the
value of the plan's size parameter whose model (``plan.json``'s class and kwargs, counted on the
meta device) has the parameter count nearest to N in log, over the size grid of the plan
(multiples of the planned sizes' common step). :func:`prediction_notes` says when the budget
lies outside the sweep, graded by how far (:func:`extrapolation`), or when D would repeat the
training data (with the epochs).
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import reduce
from pathlib import Path
from typing import Any

from flops_fit.analysis.laws import Prediction
from flops_fit.config.reading import import_model_class
from flops_fit.errors import FlopsFitError
from flops_fit.planning.flops import count_params
from flops_fit.rundir.io import read_json
from flops_fit.rundir.layout import Layout
from flops_fit.rundir.records import read_answer

#: a budget up to this multiple of the sweep's largest gets no remark; beyond it, a note
NOTE_MULTIPLE = 4.0
#: from this multiple on, a warning (the default prediction, at 100x, is one)
WARN_MULTIPLE = 30.0


def _plan_model(run_dir: Path) -> tuple[dict[str, Any], list[int]] | None:
    """(plan.model, planned size values) of ``run_dir``, or None without a readable plan."""
    path = Layout(run_dir).plan
    if not path.is_file():
        return None
    data = read_json(path, "plan")
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("_target_"), str) \
            or not isinstance(model.get("size_param"), str) \
            or not isinstance(model.get("kwargs", {}), dict):
        return None
    sizes = [r.get("size_value") for r in data.get("runs") or [] if isinstance(r, dict)]
    return model, [s for s in sizes if isinstance(s, int) and not isinstance(s, bool) and s > 0]


def nearest_model(run_dir: str | Path, n_target: float, params: str = "total"
                  ) -> dict[str, Any] | None:
    """The buildable model nearest (in log N) to ``n_target`` parameters, or None.

    ``{"size_param", "size_value", "num_params", "kwargs", "model"}``; ``params`` is the
    analysis's convention (``total`` or ``non_embedding``). The grid is the multiples of the
    planned sizes' greatest common divisor; N is assumed to grow with the size value.
    """
    found = _plan_model(Path(run_dir))
    if found is None or not (n_target > 0 and math.isfinite(n_target)):
        return None
    model, planned = found
    cls = import_model_class(model["_target_"])
    step = reduce(math.gcd, planned) if planned else 1
    base = {k: v for k, v in model.get("kwargs", {}).items() if k != model["size_param"]}

    def n_of(m: int) -> float | None:
        try:
            total, non_emb = count_params(cls, {**base, model["size_param"]: m * step})
        except Exception:  # the model rejects this size
            return None
        return float(total if params == "total" else non_emb)

    lo, hi = 1, 1
    while hi < 2 ** 20:  # bracket: the first multiple at or above the target
        n = n_of(hi)
        if n is None or n >= n_target:
            break
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        n = n_of(mid)
        if n is not None and n < n_target:
            lo = mid
        else:
            hi = mid
    candidates = [(m, n_of(m)) for m in {lo, hi}]
    candidates = [(m, n) for m, n in candidates if n]
    if not candidates:
        return None
    m, n = min(candidates, key=lambda t: abs(math.log(t[1] / n_target)))
    return {"model": model["_target_"], "size_param": model["size_param"],
            "size_value": m * step, "num_params": int(n),
            "kwargs": {**base, model["size_param"]: m * step}}


def train_tokens(run_dir: str | Path) -> float | None:
    """Unique tokens of the training split, from a run record's ``num_tokens / epochs``."""
    path = Layout(Path(run_dir)).results
    if not path.is_file():
        return None
    records = read_json(path, "results")
    for r in records if isinstance(records, list) else []:
        if isinstance(r, dict):
            d, e = r.get("num_tokens"), r.get("epochs")
            if isinstance(d, (int, float)) and isinstance(e, (int, float)) and d > 0 and e > 0:
                return float(d) / float(e)
    return None


def extrapolation(c: float, budgets: list[float]) -> dict[str, Any]:
    """How far ``c`` lies beyond the sweep's largest budget: ``{"ratio", "level", "text"}``.

    ``level`` is ``none`` up to :data:`NOTE_MULTIPLE` x, ``note`` beyond it and ``warning``
    from :data:`WARN_MULTIPLE` x on; ``text`` is the sentence ('' for none).
    """
    if not budgets or not (c > 0 and math.isfinite(c)):
        return {"ratio": None, "level": "none", "text": ""}
    top = max(budgets)
    ratio = c / top
    shown = f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}"
    if ratio >= WARN_MULTIPLE * (1 - 1e-9):
        return {"ratio": ratio, "level": "warning",
                "text": f"C={c:.3g} is {shown}x the sweep's largest budget ({top:.3g}); the law is "
                        f"extrapolated far beyond its runs (from {WARN_MULTIPLE:.0f}x on), so "
                        "check it with `flops-fit validate` or add larger budgets before relying "
                        "on it."}
    if ratio > NOTE_MULTIPLE * (1 + 1e-9):
        return {"ratio": ratio, "level": "note",
                "text": f"C={c:.3g} is {shown}x the sweep's largest budget ({top:.3g}); the law "
                        "is extrapolated beyond its runs."}
    return {"ratio": ratio, "level": "none", "text": ""}


def prediction_notes(p: Prediction, budgets: list[float], unique_tokens: float | None
                     ) -> list[str]:
    """Sentences for a budget beyond the sweep (:func:`extrapolation`: a note past
    :data:`NOTE_MULTIPLE` x, a warning from :data:`WARN_MULTIPLE` x), below it, and for D
    beyond the unique tokens."""
    notes = []
    c = p.target_compute
    far = extrapolation(c, budgets)
    if far["text"]:
        notes.append(far["text"])
    if budgets and c < min(budgets) * (1 - 1e-6):
        notes.append(f"C={c:.3g} is below the sweep's smallest budget ({min(budgets):.3g}); "
                     "runs that short were not part of the fit.")
    d = p.optimal_tokens
    if unique_tokens and d and d > unique_tokens:
        notes.append(f"D={d:.3g} tokens is {d / unique_tokens:.1f} epochs of the training "
                     f"split's {unique_tokens:.3g} unique tokens: the run would repeat data, "
                     "which the law (fitted on runs of fresh data) does not describe.")
    return notes


def in_user_terms(p: Prediction, run_dir: str | Path, budgets: list[float],
                  params: str = "total") -> Prediction:
    """``p`` with ``model`` (the nearest buildable model) and ``notes`` in its mapping."""
    try:  # a plan or results.json from elsewhere may name a class this Python cannot import
        model = nearest_model(run_dir, p.optimal_params, params) if p.optimal_params else None
        unique = train_tokens(run_dir)
    except FlopsFitError:
        model, unique = None, None
    notes = prediction_notes(p, budgets, unique)
    far = extrapolation(p.target_compute, budgets)
    return replace(p, extra={**p.extra, "model": model, "notes": notes, "extrapolation": far,
                             "run": answer_run(p, run_dir)})


def answer_run(p: Prediction, run_dir: str | Path) -> dict[str, Any] | None:
    """answer.yaml's launchable run (steps, batch shape, peak LR, schedule, ...) when the file
    answers this very prediction (its budget and N), else None."""
    path = Layout(Path(run_dir)).answer
    if not path.is_file():
        return None
    try:
        answer = read_answer(path)
    except FlopsFitError:
        return None
    said = (answer.get("prediction") or {}).get("optimal_params")
    same = math.isclose(float(answer["budget"]), p.target_compute, rel_tol=1e-9) and \
        isinstance(said, (int, float)) and p.optimal_params is not None and \
        math.isclose(float(said), p.optimal_params, rel_tol=1e-9)
    return dict(answer["run"]) if same else None


def note_level(p: Prediction, note: str) -> str:
    """``note`` or ``warning``: how a note of ``p["notes"]`` is shown (only the extrapolation
    note below :data:`WARN_MULTIPLE` x is a mere note)."""
    far = p.get("extrapolation") or {}
    return "note" if far.get("level") == "note" and far.get("text") == note else "warning"


def model_line(p: Prediction) -> str:
    """The one sentence naming ``p``'s nearest buildable model (``in_user_terms``' ``model``),
    as analyze, find-optimal, scaling_laws.json and report.html all say it; '' without one."""
    m = p.get("model")
    if not m:
        return ""
    return (f"C={p.target_compute:.3g}: nearest model {m['size_param']}={m['size_value']} "
            f"(N={m['num_params']:,})")


def describe(p: Prediction) -> list[str]:
    """The lines a user reads under a prediction: the model to launch (its line, then its
    class and kwargs), then the notes."""
    lines = []
    m = p.get("model")
    if m:
        kw = ", ".join(f"{k}={v}" for k, v in m["kwargs"].items())
        lines.append(f"  {model_line(p)}")
        lines.append(f"    model: {m['model']}({kw})")
    lines += [f"  {note_level(p, n)}: {n}" for n in p.get("notes") or []]
    return lines
