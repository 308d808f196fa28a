"""The fitting approaches that can predict: one registry, :data:`APPROACHES`.

An approach is a module with ``build(runs, cfg, kappa) -> section`` (fit the runs into its
typed section of ``scaling_laws.json``), ``problem(section) -> str`` (why it cannot predict,
"" when it can), ``warnings(section)`` and ``describe(section, pct)`` (its text), plus a
law evaluation in :mod:`flops_fit.analysis.laws` (the only place a law is evaluated). Adding
one is that module and one line below; ``analysis.predict_with`` then accepts its name, and
the analysis, the text, the report, the plots and ``validate`` pick it up from here.

The order of :data:`APPROACHES` is the order of the sections in ``scaling_laws.json`` and the
order in which approaches stand in when the chosen one cannot predict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flops_fit.analysis import approach2, approach3, joint, laws
from flops_fit.analysis.sections import IsoflopSection, JointSection, ParametricSection, Section
from flops_fit.errors import FlopsFitError


@dataclass(frozen=True)
class Approach:
    """One fitting approach: its names, its section type and the functions that use it."""

    name: str  #: key of its section in scaling_laws.json and value of analysis.predict_with
    title: str  #: how the text names it
    predicts: str  #: "..., so <predicts>." when it stands in for another
    section: type[Section]  #: its typed section
    build: Callable[[Any, Any, float], Any]  #: (runs, AnalysisConfig, kappa) -> section
    curve: Callable[..., laws.LawCurve]  #: (section, compute, ci) -> LawCurve
    problem: Callable[[Any], str]  #: why it cannot predict ("" when it can)
    warnings: Callable[[Any], list[str]]  #: sentences it always reports
    describe: Callable[[Any, str], list[str]]  #: its lines of describe()


APPROACHES: dict[str, Approach] = {a.name: a for a in (
    Approach("parametric", "Approach 3 (parametric)", "the parametric fit predicts",
             ParametricSection,
             approach3.build, laws.parametric_curve, approach3.problem, approach3.warnings,
             approach3.describe),
    Approach("isoflop", "Approach 2 (IsoFLOP parabolas)", "the IsoFLOP power laws predict",
             IsoflopSection, approach2.build, laws.isoflop_curve, approach2.problem,
             approach2.warnings, approach2.describe),
    Approach("joint", "Joint IsoFLOP fit", "the joint IsoFLOP fit predicts", JointSection,
             joint.build, laws.joint_curve, joint.problem, joint.warnings, joint.describe),
)}


def approach(name: str) -> Approach:
    """The approach called ``name``; one sentence naming the known ones otherwise."""
    try:
        return APPROACHES[name]
    except KeyError:
        raise FlopsFitError(
            f"analysis.predict_with={name!r} is not valid; use "
            + " or ".join(APPROACHES) + "."
        ) from None


def choose_method(preferred: str, sections: dict[str, Any]) -> tuple[str, str]:
    """The approach that predicts, and a sentence when it is not the preferred one (or unsafe).

    The preferred approach predicts when it can; otherwise the first of the others (registry
    order) that can. When none can, the first available one predicts, with a warning.
    """
    order = [preferred, *(n for n in APPROACHES if n != preferred)]
    problems = {n: APPROACHES[n].problem(sections[n]) for n in order}
    for name in order:
        if not problems[name]:
            if name == preferred:
                return name, ""
            why = problems[preferred]
            return name, f"{why[0].upper()}{why[1:]}, so {APPROACHES[name].predicts}."
    for name in order:
        if sections[name].available:
            said = " and ".join(problems[n] for n in order)
            return name, (f"{said[0].upper()}{said[1:]}; predictions use the degenerate fit, "
                          "treat them as unreliable.")
    return "", ""
