"""``ScalingAnalysis``: the fitted scaling laws of one run directory (``scaling_laws.json``).

It holds the typed section of every approach (:mod:`flops_fit.analysis.approaches`), names
the one that predicts, and answers :meth:`~ScalingAnalysis.predict_optimal_size` (a
:class:`~flops_fit.analysis.laws.Prediction`) and :meth:`~ScalingAnalysis.chinchilla_table`.
It is built by :class:`flops_fit.analysis.analyzer.ScalingLawAnalyzer`, or rebuilt from the
file with :meth:`ScalingAnalysis.from_json`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flops_fit.analysis import text as printing
from flops_fit.analysis.approaches import APPROACHES, approach
from flops_fit.analysis.laws import Prediction
from flops_fit.analysis.notes import Note, read_notes
from flops_fit.analysis.sections import (
    Approach1Section,
    IsoflopSection,
    ParametricSection,
    PowerLawRecord,
    SectionError,
)
from flops_fit.config import checked_budgets
from flops_fit.errors import FlopsFitError, UnusableFitError
from flops_fit.rundir.io import read_json

__all__ = ["SCHEMA", "DEFAULT_TABLE_BUDGETS", "ScalingAnalysis"]

SCHEMA = "flops-fit/scaling-laws/1"
#: the seed's nine budgets of ``chinchilla_table()``
DEFAULT_TABLE_BUDGETS = [float(c) for c in np.logspace(18, 22, 9)]


# ------------------------------------------------------------------------------------------------
# fits -> sections
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# the analysis object
# ------------------------------------------------------------------------------------------------


def _section(value: Any, cls: type) -> Any:
    return value if isinstance(value, cls) else cls.from_dict(value or {})


@dataclass
class ScalingAnalysis:
    """The fitted scaling laws of one run directory (what ``scaling_laws.json`` holds).

    ``sections`` maps each approach of :data:`~flops_fit.analysis.approaches.APPROACHES` to
    its typed section (plain JSON dicts given here are read into them; ``parametric`` and
    ``isoflop`` are also attributes); ``approach1`` is the envelope's section; ``method``
    names the approach that predicts. Build it with
    :class:`~flops_fit.analysis.analyzer.ScalingLawAnalyzer` or :meth:`from_json`.
    ``holdout`` stays the plain JSON object of the holdout check. ``notes`` is the one list of
    what analyze prints beside the numbers (:func:`~flops_fit.analysis.notes.build_notes`).
    """

    method: str
    sections: dict[str, Any]
    approach1: Approach1Section = field(default_factory=dict)  # type: ignore[assignment]
    method_note: str = ""
    holdout: dict[str, Any] | None = None
    predictions: list[Prediction] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    created_utc: str = ""
    #: everything analyze says beside the numbers, as printed (analysis/notes.py); an older
    #: file without them reads its ``warnings`` as the notes
    notes: list[Note] = field(default_factory=list)
    #: approaches (and ``notes``) an older file does not hold: read as unavailable (its
    #: warnings as the notes), not written back
    absent: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.sections = {name: _section(self.sections.get(name), a.section)
                         for name, a in APPROACHES.items()}
        self.approach1 = _section(self.approach1, Approach1Section)
        self.predictions = [p if isinstance(p, Prediction) else Prediction.from_dict(p)
                            for p in self.predictions]
        self.notes = [n if isinstance(n, Note) else Note.from_dict(n) for n in self.notes]

    @property
    def parametric(self) -> ParametricSection:
        """Approach 3's section."""
        return self.sections["parametric"]

    @property
    def isoflop(self) -> IsoflopSection:
        """Approach 2's section."""
        return self.sections["isoflop"]

    # -- (de)serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``scaling_laws.json``."""
        return {
            "schema": SCHEMA,
            "created_utc": self.created_utc,
            "method": self.method,
            "method_note": self.method_note,
            **{name: sec.to_dict() for name, sec in self.sections.items()
               if name not in self.absent},
            "approach1": self.approach1.to_dict(),
            "predictions": [p.to_dict() for p in self.predictions],
            "holdout": self.holdout,
            "warnings": self.warnings,
            **({} if "notes" in self.absent else {"notes": [n.to_dict() for n in self.notes]}),
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, source: str | Path | dict[str, Any]) -> ScalingAnalysis:
        """Rebuild from ``scaling_laws.json`` (a path) or its parsed object.

        ``parametric`` and ``isoflop`` must be there (the file's contract); an approach added
        later and missing from an older file reads as unavailable.
        """
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
        def bad(what: str) -> FlopsFitError:
            return FlopsFitError(f"{where} is not a usable scaling-law analysis ({what}); run "
                                 "`flops-fit analyze` again.")

        for key, kind, name in (("predictions", list, "a list"), ("warnings", list, "a list"),
                                ("provenance", dict, "an object"),
                                ("approach1", dict, "an object")):
            if source.get(key) is not None and not isinstance(source[key], kind):
                raise bad(f"{key}={source[key]!r} is not {name}")
        for i, p in enumerate(source.get("predictions") or []):
            if not isinstance(p, dict):
                raise bad(f"predictions[{i}]={p!r} is not an object")
        warnings = [str(w) for w in source.get("warnings") or []]
        try:
            notes = (read_notes(source["notes"]) if source.get("notes") is not None
                     else [Note("warning", w) for w in warnings if w])
        except ValueError as exc:
            raise bad(f"notes{exc}" if str(exc).startswith("[") else f"notes: {exc}") from None
        absent = tuple(n for n in APPROACHES if not isinstance(source.get(n), dict)) \
            + (("notes",) if source.get("notes") is None else ())
        sections = {name: _read_section(a.section, source[name] if name not in absent else {
            "available": False, "message": f"{name} is not in this file; run `flops-fit "
            "analyze` again to fit it"}, name, bad) for name, a in APPROACHES.items()}
        return cls(
            method=str(source["method"]),
            sections=sections,
            approach1=_read_section(Approach1Section, source.get("approach1"), "approach1",
                                    bad),
            method_note=str(source.get("method_note") or ""),
            holdout=source.get("holdout"),
            predictions=[Prediction.from_dict(p) for p in source.get("predictions") or []],
            warnings=warnings,
            provenance=dict(source.get("provenance") or {}),
            created_utc=str(source.get("created_utc") or ""),
            notes=notes,
            absent=absent,
        )

    # -- convenience --------------------------------------------------------------------------

    @property
    def ci_level(self) -> float:
        levels = [sec.ci_level for sec in self.sections.values() if sec.ci_level]
        return float(levels[0]) if levels else 0.95

    @property
    def compute_budgets(self) -> list[float]:
        """The planned budgets of the IsoFLOP groups (empty for ungrouped data)."""
        return [float(b.compute_budget) for b in self.isoflop.budgets or []]

    def exponents(self, method: str | None = None) -> tuple[float, float]:
        """``(a, b)`` of ``N_opt ~ C**a``, ``D_opt ~ C**b`` by ``method`` (default: its own)."""
        sec = self.sections[approach(method or self.method).name]

        def exponent(law: PowerLawRecord | None) -> float:
            return math.nan if law is None or law.exponent is None else float(law.exponent)

        return exponent(sec.n_opt), exponent(sec.d_opt)

    # -- predictions --------------------------------------------------------------------------

    def predict_optimal_size(self, compute_budget: float, method: str | None = None
                             ) -> Prediction:
        """The compute-optimal allocation at ``compute_budget`` FLOPs.

        A :class:`~flops_fit.analysis.laws.Prediction` (also a mapping): ``target_compute``,
        ``optimal_params``, ``optimal_tokens``, ``expected_loss``, ``tokens_per_param`` and for
        each of these four a ``<key>_ci`` = ``[lo, hi]`` (bootstrap percentiles at
        ``ci_level``; None without a bootstrap), plus ``method``, ``degenerate`` and
        ``warning``. ``method`` overrides the analysis's own choice.
        """
        c = checked_budgets([compute_budget], "compute_budget")[0]
        method = method or self.method
        if not method:
            raise FlopsFitError(
                "No scaling law could be fitted, so there is nothing to predict with; train "
                "more runs and run `flops-fit analyze` again.")
        a = approach(method)
        return _plausible(a.curve(self.sections[a.name], c, self.ci_level).prediction(), method)

    def chinchilla_table(self, compute_budgets: list[float] | None = None) -> str:
        """A markdown table of the compute-optimal N, D, D/N and loss with their intervals.

        ``compute_budgets`` default to the seed's nine, ``np.logspace(18, 22, 9)``.
        """
        budgets = (DEFAULT_TABLE_BUDGETS if compute_budgets is None
                   else checked_budgets(compute_budgets, "compute_budgets"))
        return printing.chinchilla_table([self.predict_optimal_size(c) for c in budgets],
                                         self.ci_level)

    def describe(self) -> str:
        """The fitted laws with their intervals, a few plain lines."""
        return printing.describe(self)


def _plausible(p: Prediction, method: str) -> Prediction:
    """``p``, unless it cannot be true (fewer than one parameter or token, a loss <= 0)."""
    n, d, loss = p["optimal_params"], p["optimal_tokens"], p["expected_loss"]
    if all(x is not None and math.isfinite(x) and x >= 1 for x in (n, d)) \
            and loss is not None and math.isfinite(loss) and loss > 0:
        return p
    raise UnusableFitError(
        f"No usable scaling law: the {method} fit predicts fewer than one parameter or token, "
        "or no positive loss, so it is not shown; likely causes are a learning rate far from "
        "right for these models (train.lr_base), diverged or too few runs, or budgets too "
        "close together; look at plots/training_curves.png and re-train."
    )


def _read_section(cls: type, raw: Any, name: str, bad: Any) -> Any:
    """``cls.from_dict(raw)``; a value of the wrong type is ``bad``'s one sentence."""
    try:
        return cls.from_dict(raw or {})
    except SectionError as exc:
        raise bad(f"{name}.{exc}") from None
