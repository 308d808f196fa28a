"""Checks of a sweep's results and fits, for ``analyze`` to say: a mis-tuned learning rate,
and approaches that disagree on the exponent.

A bad LR for some sizes shows in the records before it shows in the fit:

* **divergence** -- runs whose loss blew up (status ``diverged``);
* **a bump** -- within one budget, a size whose loss is above *both* neighbours' (in N) by
  more than the noise: an IsoFLOP curve is U-shaped, so a local maximum is not the data's shape;
* **no progress with compute** -- a size whose loss at a larger budget is worse than at a
  smaller one by more than the noise (more tokens of the same model should never hurt).

``noise`` is in log loss (the analysis's ``huber_delta``, about the run-to-run noise). Each
finding is one sentence pointing to ``flops-fit tune``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

TUNE_HINT = "a mis-tuned learning rate explains this; run `flops-fit tune run_dir=...`"


def _loss(rec: dict[str, Any]) -> float | None:
    v = rec.get("final_loss")
    if rec.get("status") != "completed" or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) and v > 0 else None


def _name(rec: dict[str, Any]) -> str:
    if rec.get("size_param") and rec.get("size_value") is not None:
        return f"{rec['size_param']}={rec['size_value']}"
    return f"N={float(rec.get('num_params') or 0):.3g}"


def mistuning_notes(records: Any, noise: float = 1e-2) -> list[str]:
    """Sentences naming runs whose losses a bad LR explains (empty when none)."""
    if not isinstance(records, list):
        return []
    recs = [r for r in records if isinstance(r, dict)]
    notes = []
    diverged = [r for r in recs if r.get("status") == "diverged"]
    if diverged:
        r = diverged[0]
        notes.append(f"{len(diverged)} run(s) diverged (e.g. {_name(r)} at C="
                     f"{float(r.get('compute_budget') or 0):.3g}, peak LR "
                     f"{float(r.get('lr') or 0):.3g}); {TUNE_HINT}.")
    by_budget: dict[float, list[tuple[float, float, dict[str, Any]]]] = defaultdict(list)
    by_size: dict[Any, list[tuple[float, float, dict[str, Any]]]] = defaultdict(list)
    for r in recs:
        loss, c, n = _loss(r), r.get("compute_budget"), r.get("num_params")
        if loss is None or not isinstance(c, (int, float)) or not isinstance(n, (int, float)):
            continue
        by_budget[float(c)].append((float(n), math.log(loss), r))
        by_size[r.get("size_value", n)].append((float(c), math.log(loss), r))
    for c, rows in sorted(by_budget.items()):
        rows.sort(key=lambda t: t[0])
        for (_, a, _), (_, b, r), (_, d, _) in zip(rows, rows[1:], rows[2:], strict=False):
            if b - max(a, d) > noise:
                notes.append(f"At C={c:.3g} the loss of {_name(r)} ({math.exp(b):.4f}) is above "
                             f"both neighbouring sizes' by {b - max(a, d):.1%} (noise ~"
                             f"{noise:.0%}); {TUNE_HINT}.")
    for rows in by_size.values():
        rows.sort(key=lambda t: t[0])
        for (c0, a, _), (c1, b, r) in zip(rows, rows[1:], strict=False):
            if b - a > noise:
                notes.append(f"{_name(r)} ends at a higher loss with more compute "
                             f"({math.exp(a):.4f} at C={c0:.3g}, {math.exp(b):.4f} at "
                             f"C={c1:.3g}); {TUNE_HINT}.")
    return notes


#: approaches whose exponents a of N_opt ~ C^a differ by more than this are reported
A_AGREEMENT = 0.05


def exponent_disagreement(exponents: dict[str, float], method: str) -> list[str]:
    """One sentence when the approaches' exponents ``a`` (by name) differ by more than
    :data:`A_AGREEMENT` from the predicting ``method``'s; none otherwise."""
    a = {k: v for k, v in exponents.items() if v is not None and math.isfinite(v)}
    if method not in a:
        return []
    off = {k: v for k, v in a.items() if k != method and abs(v - a[method]) > A_AGREEMENT}
    if not off:
        return []
    listed = ", ".join(f"{k} {v:.3f}" for k, v in a.items())
    return [f"The approaches disagree on N_opt ~ C^a by more than {A_AGREEMENT} ({listed}; "
            f"{method} predicts). On synthetic sweeps of the default design no approach is "
            "biased by more than about 0.025 in a when the law has Chinchilla's form "
            "(docs/calibration.md), so a larger gap means the runs do not follow one "
            "approach's form: check the prediction with `flops-fit validate` before "
            "extrapolating far."]

