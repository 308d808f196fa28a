"""What ``analyze`` says beside the numbers, as one list: built once (:func:`build_notes`),
printed from it (:func:`print_notes`), stored in ``scaling_laws.json`` (``notes``) and rendered
in ``report.html`` from the file.

A :class:`Note` is one sentence with its level (``warning`` or ``note``) and, for the lines of
a predicted budget, that budget. The list holds, in this order: the plan's warnings
(unbuildable sizes, a 6N fallback, a prior off the model) and the budgets sequential planning
re-centred, runs not finished yet, the fit's
warnings (approaches that disagree, intervals refused, edge and off-centre minima, mis-tuning,
the approach that stood in), then per predicted budget the nearest buildable model and its
remarks (extrapolation, repeated data): the table's budgets and find-optimal's default one
(100x the largest; a ``predict.budget`` set apart from these is printed under its prediction
only).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from flops_fit.analysis.laws import Prediction
from flops_fit.analysis.realise import in_user_terms, model_line, note_level
from flops_fit.config import PredictConfig
from flops_fit.errors import FlopsFitError
from flops_fit.rundir.io import read_json
from flops_fit.rundir.layout import Layout

if TYPE_CHECKING:
    from rich.console import Console

    from flops_fit.analysis.scaling_analysis import ScalingAnalysis

__all__ = ["LEVELS", "Note", "build_notes", "plan_sentences", "print_notes", "read_notes"]

LEVELS = ("warning", "note")
#: topics of the notes: where each comes from
TOPICS = ("plan", "runs", "fit", "model", "prediction")
#: longest sentence kept from a run-directory file (plan.json is untrusted)
MAX_TEXT = 2000


@dataclass(frozen=True)
class Note:
    """One sentence the analysis says: ``level`` (warning or note), ``text``, ``topic`` (one of
    :data:`TOPICS`) and, for a predicted budget's lines, its ``budget`` in FLOPs."""

    level: str
    text: str
    topic: str = "fit"
    budget: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``scaling_laws.json``'s ``notes``."""
        return {"level": self.level, "topic": self.topic, "budget": self.budget,
                "text": self.text}

    @classmethod
    def from_dict(cls, data: Any) -> Note:
        """A note read from a file; ValueError (one phrase) when it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"{data!r} is not an object")
        level, text, topic = data.get("level"), data.get("text"), data.get("topic", "fit")
        budget = data.get("budget")
        if level not in LEVELS:
            raise ValueError(f"level {level!r} is not one of {', '.join(LEVELS)}")
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            raise ValueError("text is not a sentence")
        if topic not in TOPICS:
            raise ValueError(f"topic {topic!r} is not one of {', '.join(TOPICS)}")
        if budget is not None and not (isinstance(budget, (int, float))
                                       and not isinstance(budget, bool)
                                       and math.isfinite(budget) and budget > 0):
            raise ValueError(f"budget {budget!r} is not a positive number")
        return cls(level, text, topic, None if budget is None else float(budget))


def read_notes(raw: Any) -> list[Note]:
    """``scaling_laws.json``'s ``notes`` as Notes; ValueError naming the first bad entry."""
    if not isinstance(raw, list):
        raise ValueError(f"{raw!r} is not a list")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(Note.from_dict(item))
        except ValueError as exc:
            raise ValueError(f"[{i}]: {exc}") from None
    return out


def plan_sentences(run_dir: Path) -> tuple[list[str], list[str]]:
    """What ``plan.json`` says, read once: its warnings (sizes that cannot be built, a 6N
    fallback, ...) and one sentence per re-centring of sequential planning (its ``recentred``
    entries grouped by their basis). Well-formed strings only, none when the file is missing
    or unreadable (it is untrusted data)."""
    path = Layout(run_dir).plan
    try:
        data = read_json(path, "plan") if path.is_file() else {}
    except FlopsFitError:
        return [], []
    data = data if isinstance(data, dict) else {}
    found = data.get("warnings")
    warns = [w for w in found if isinstance(w, str) and 0 < len(w) <= MAX_TEXT] \
        if isinstance(found, list) else []
    found = data.get("recentred")
    groups: dict[str, list[float]] = {}
    for e in found if isinstance(found, list) else []:
        basis, budget = (e.get("basis"), e.get("budget")) if isinstance(e, dict) else (0, 0)
        if isinstance(basis, str) and 0 < len(basis) <= MAX_TEXT \
                and type(budget) in (int, float) and math.isfinite(budget) and budget > 0:
            groups.setdefault(basis, []).append(float(budget))
    moved = [f"Sequential planning re-centred the sizes of budget(s) "
             f"{', '.join(f'{c:.3g}' for c in sorted(cs))} on the {basis} (the prior "
             "budgets.tokens_per_param was off for this model)." for basis, cs in groups.items()]
    return warns, moved


def _pending(provenance: dict[str, Any]) -> int:
    counts = (provenance.get("runs") or {}).get("status_counts") or {}
    return sum(int(n) for k, n in counts.items()
               if k not in ("completed", "failed", "diverged") and isinstance(n, int))


def _predicted(analysis: ScalingAnalysis, swept: list[float]) -> list[Prediction]:
    """The table's predictions, and the default prediction budget's (``predict.budget``
    unset: find-optimal's answer) when the table lacks it and the fit can make it."""
    out = list(analysis.predictions)
    target = PredictConfig().budget_for(max(swept)) if swept else None
    if target and not any(math.isclose(p.target_compute, target, rel_tol=1e-9) for p in out):
        try:
            out.append(analysis.predict_optimal_size(target))
        except FlopsFitError:  # an unusable fit: its warning is among the fit's
            pass
    return out


def build_notes(analysis: ScalingAnalysis, run_dir: Path | None, swept: list[float],
                params: str = "total") -> list[Note]:
    """The one list: the plan's warnings, pending runs, the fit's warnings, then per predicted
    budget (:func:`_predicted`) the nearest buildable model (in ``run_dir``'s plan) and its
    remarks. ``swept`` are the sweep's budgets, ``params`` the parameter convention."""
    warns, moved = plan_sentences(run_dir) if run_dir else ([], [])
    notes = [Note("warning", w, "plan") for w in warns] + [Note("note", w, "plan") for w in moved]
    pending = _pending(analysis.provenance)
    if pending:
        notes.append(Note("note", f"{pending} run(s) are not finished yet; this fit uses the "
                                  "completed ones only.", "runs"))
    notes += [Note("warning", w, "fit") for w in dict.fromkeys(analysis.warnings)]
    for p in _predicted(analysis, swept):
        if not p.optimal_params:
            continue
        c = p.target_compute
        q = in_user_terms(p, run_dir, swept, params) if run_dir else p
        if model_line(q):
            notes.append(Note("note", model_line(q), "model", c))
        notes += [Note(note_level(q, n), n, "prediction", c) for n in q.get("notes") or []]
    return notes


def print_notes(console: Console, notes: Iterable[Note], skip: Iterable[str] = ()) -> None:
    """Print ``notes`` as ``warning: ...`` / ``note: ...`` lines; a predicted budget's model
    line unprefixed, its remarks indented under it. Texts in ``skip`` (said elsewhere, e.g. by
    ``describe()``) are left out."""
    skipped = set(skip)
    under: float | None = None  # the budget whose model line was printed last
    for n in notes:
        if n.text in skipped:
            continue
        if n.topic == "model":
            console.print(escape(n.text), highlight=False, soft_wrap=True)
            under = n.budget
            continue
        indent = "  " if n.topic == "prediction" and n.budget == under else ""
        label = "[yellow]warning:[/]" if n.level == "warning" else "note:"
        console.print(f"{indent}{label} {escape(n.text)}", highlight=False, soft_wrap=True)
