"""The parts of ``report.html`` that say what the console said: the analysis's notes (the one
list of :mod:`flops_fit.analysis.notes`, read from ``scaling_laws.json``), the learning-rate
rule the runs were trained under (each run's ``lr_rule``, ``plan.json``'s train settings and
``tuning.json``), and the training time against the plan's estimate (``probe.json``).

Every file read here is untrusted: a value of the wrong type is left out, never a traceback.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from flops_fit.analysis.scaling_analysis import ScalingAnalysis
from flops_fit.errors import FlopsFitError
from flops_fit.report.html import esc
from flops_fit.rundir.io import read_json
from flops_fit.rundir.layout import Layout
from flops_fit.rundir.records import TuningRecord
from flops_fit.training.estimate import last_timing, timing_line

__all__ = ["notes_section", "lr_rule_html", "timing_html", "rule_text"]

#: the keys of an LR rule, as plan.json's train settings and tuning.json hold them
RULE_KEYS = ("lr_base", "lr_exponent", "lr_ref_params")


def notes_section(analysis: ScalingAnalysis | None) -> str:
    """Every warning and note analyze printed, in its order (``scaling_laws.json``'s
    ``notes``)."""
    if analysis is None or not analysis.notes:
        return ""
    items = []
    for n in analysis.notes:
        cls = "warn-item" if n.level == "warning" else "note-item"
        items.append(f'<li class="{cls}" data-level="{esc(n.level)}" data-topic='
                     f'"{esc(n.topic)}"><b>{esc(n.level)}:</b> {esc(n.text)}</li>')
    n_warn = sum(n.level == "warning" for n in analysis.notes)
    return (f'<h2 id="notes">What the analysis said</h2><p>{n_warn} warning(s) and '
            f"{len(analysis.notes) - n_warn} note(s), as <code>flops-fit analyze</code> "
            'printed them.</p><ul class="notes">' + "".join(items) + "</ul>")


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def rule_text(rule: Any) -> str:
    """``lr = base * (ref / N_non_emb)^exp`` of a rule mapping ('' when it is not one)."""
    if not isinstance(rule, dict) or not all(_num(rule.get(k)) for k in RULE_KEYS):
        return ""
    return (f"lr = {rule['lr_base']:.3g} · ({rule['lr_ref_params']:.3g} / N_non-emb)"
            f"^{rule['lr_exponent']:.3g}")


def _trained_rule(run_dir: Path) -> dict[str, Any]:
    """plan.json's train settings: the rule the runs were planned and trained under."""
    path = Layout(run_dir).plan
    try:
        data = read_json(path, "plan") if path.is_file() else {}
    except FlopsFitError:
        return {}
    settings = data.get("settings") if isinstance(data, dict) else None
    train = settings.get("train") if isinstance(settings, dict) else None
    return train if isinstance(train, dict) else {}


def _tuning(run_dir: Path) -> TuningRecord | None:
    path = Layout(run_dir).tuning
    if not path.is_file():
        return None
    try:
        return TuningRecord.from_dict(read_json(path, "tuning"), where=str(path))
    except FlopsFitError:
        return None


def lr_rule_html(run_dir: Path, records: list[dict[str, Any]]) -> str:
    """Which rule set the runs' peak LR (their ``lr_rule``, counted), the rule itself from
    plan.json (or the fixed ``train.lr``), and tuning.json's rule beside the config's."""
    labels: dict[str, int] = {}
    for r in records:
        if r.get("status") in ("completed", "diverged", "failed"):
            label = r.get("lr_rule")
            label = label if isinstance(label, str) and label else "not recorded"
            labels[label] = labels.get(label, 0) + 1
    train = _trained_rule(run_dir)
    tuning = _tuning(run_dir)
    if not labels and not train and tuning is None:
        return ""
    out = ['<h3 id="lr-rule">Learning rate</h3><p>']
    if labels:
        out.append("Peak LR set by " + "; ".join(f"<b>{esc(k)}</b> ({n} run(s))"
                                                 for k, n in labels.items()) + ". ")
    if _num(train.get("lr")):
        fixed = f"{train['lr']:.3g}"
        out.append(f"Every run used train.lr = {esc(fixed)}. ")
    elif rule_text(train):
        out.append(f"The runs' rule (plan.json): {esc(rule_text(train))}. ")
    if tuning is not None:
        out.append(f"tuning.json's tuned rule: {esc(rule_text(tuning.rule))}")
        hand = rule_text(tuning.config_rule)
        out.append(f"; the config's hand rule it replaced: {esc(hand)}. " if hand else ". ")
    out.append("The configuration below shows the config's own lr_base, not necessarily the "
               "rule in force; each run's peak LR is the runs table's <i>peak LR</i>.</p>")
    return "".join(out)


def timing_html(run_dir: Path) -> str:
    """The latest training time against the plan's estimate (probe.json), or ''."""
    last = last_timing(run_dir)
    if last is None:
        return ""
    load = last.get("probe_load")
    note = f" The probe was taken under load {load:.2f}." if _num(load) else ""
    return f"<h3>Training time</h3><p>{esc(timing_line(last))}{esc(note)}</p>"
