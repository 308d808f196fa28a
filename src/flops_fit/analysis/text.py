"""Text of the analysis: ``describe()``, the Chinchilla table, ``flops-fit analyze``'s output.

Formatting only: every number comes from a
:class:`~flops_fit.analysis.scaling_analysis.ScalingAnalysis` or its
:class:`~flops_fit.analysis.laws.Prediction` objects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flops_fit.analysis.approaches import APPROACHES
from flops_fit.analysis.notes import print_notes
from flops_fit.analysis.sections import interval_text

if TYPE_CHECKING:
    from rich.console import Console

    from flops_fit.analysis.scaling_analysis import ScalingAnalysis

__all__ = ["si", "fmt_loss", "chinchilla_table", "describe", "print_analysis"]


def si(x: float | None) -> str:
    """``12.3M``-style: three significant digits with a K/M/B/T suffix ("n/a" for None)."""
    if x is None or not math.isfinite(x):
        return "n/a"
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            if abs(x) >= 1e15:
                return f"{x:.3g}"
            return f"{x / div:.3g}{suf}"
    return f"{x:.3g}"


def fmt_loss(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def chinchilla_table(predictions: Sequence[Mapping[str, Any]], ci_level: float) -> str:
    """A markdown table of the predictions' N, D, D/N and loss with their intervals."""
    pct = f"{ci_level:.0%}"

    def cell(p: Mapping[str, Any], key: str, fmt: Callable[[Any], str]) -> str:
        ci = p.get(f"{key}_ci")
        v = fmt(p.get(key))
        if ci and ci[0] is not None and ci[1] is not None:
            return f"{v} [{fmt(ci[0])}, {fmt(ci[1])}]"
        return v

    lines = [
        f"| Compute (FLOPs) | Optimal N ({pct} CI) | Optimal D ({pct} CI) | D/N | "
        f"Expected loss ({pct} CI) |",
        "|---|---|---|---|---|",
    ]
    for p in predictions:
        lines.append(
            f"| {p['target_compute']:.2e} | {cell(p, 'optimal_params', si)} | "
            f"{cell(p, 'optimal_tokens', si)} | {_ratio(p['tokens_per_param'])} | "
            f"{cell(p, 'expected_loss', fmt_loss)} |"
        )
    return "\n".join(lines)


def describe(analysis: ScalingAnalysis) -> str:
    """The fitted laws with their intervals, a few plain lines."""
    pct = f"{analysis.ci_level:.0%}"
    lines = [line for name, sec in analysis.sections.items()
             for line in APPROACHES[name].describe(sec, pct)]
    a1 = analysis.approach1
    if a1.available:
        law = a1.n_opt
        lines.append(f"Approach 1 (envelope of {a1.n_curves} training curves): "
                     f"N_opt ~ C^{law.exponent:.3f}{interval_text(law.exponent_ci, '.3f')}")
        if a1.points:
            lines.append(f"  points used: {a1.points}")
    elif a1.message:
        lines.append(a1.message)
    lines.append(f"Predictions use: {analysis.method or 'nothing (no fit)'}")
    if analysis.method_note:
        lines.append(f"  note: {analysis.method_note}")
    return "\n".join(lines)


def print_analysis(console: Console, results_path: Path, output_path: Path,
                   analysis: ScalingAnalysis, budgets: list[float]) -> None:
    """``flops-fit analyze``'s output: runs used, the notes (``analysis.notes``, the list
    ``scaling_laws.json`` and ``report.html`` hold), the laws, the table, the holdout, then each
    predicted budget's nearest model and remarks."""

    def say(text: str = "") -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    runs = analysis.provenance["runs"]
    counts = runs["status_counts"]
    other = [d for d in runs["dropped"] if not d["reason"].startswith("status")]
    say(f"Analysed {results_path}")
    say(f"Runs: {runs['n_used']} used of {runs['n_records']} records ("
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + ")"
        + (f"; {len(other)} completed run(s) dropped: "
           + "; ".join(f"{d['run_id']}: {d['reason']}" for d in other[:5])
           + (" ..." if len(other) > 5 else "") if other else "") + ".")
    per_budget = ("model", "prediction")
    print_notes(console, [n for n in analysis.notes if n.topic not in per_budget],
                skip=(analysis.isoflop.message, analysis.method_note))  # describe() says them
    say(describe(analysis))
    say()
    say(analysis.chinchilla_table(budgets))
    h = analysis.holdout
    if h:
        say()
        if h.get("available"):
            p, act = h["predicted"], h["actual"]
            ref_n = act["optimal_params"] if act.get("interior") else act["best_run_params"]
            ref_l = act["optimal_loss"] if act.get("interior") else act["best_run_loss"]
            say(f"Holdout (largest budget {h['compute_budget']:.3g} refitted without its "
                f"{h['n_runs_held_out']} runs, {h['method']}): predicted N_opt "
                f"{si(p['optimal_params'])} vs actual {si(ref_n)}; predicted loss "
                f"{fmt_loss(p['expected_loss'])} vs actual {fmt_loss(ref_l)} "
                f"({act['source']}).")
        else:
            say(h.get("message", "Holdout skipped."))
    say(f"Wrote {output_path}")
    print_notes(console, [n for n in analysis.notes if n.topic in per_budget])
