"""One list of what analyze says: printed, stored in scaling_laws.json, rendered in report.html;
the report's peak-LR column and the LR rule in force (tuned or hand)."""

from __future__ import annotations

import html
import io
import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

from flops_fit.analysis.analyzer import ScalingLawAnalyzer
from flops_fit.analysis.notes import Note, print_notes
from flops_fit.analysis.scaling_analysis import ScalingAnalysis
from flops_fit.config import AnalysisConfig
from flops_fit.errors import FlopsFitError
from flops_fit.report.page import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from helpers.run import synthetic_records, write_results  # noqa: E402


def _analysis(tmp_path: Path, records=None) -> ScalingAnalysis:
    write_results(tmp_path, records or synthetic_records())
    cfg = AnalysisConfig(bootstrap=0, predict_with="parametric")
    return ScalingLawAnalyzer(tmp_path / "results.json", tmp_path / "analysis", cfg).analyze()


def test_the_list_is_stored_and_read_back(tmp_path):
    recs = synthetic_records(completed=13)  # two pending: a note
    recs[0]["status"] = "diverged"  # a mis-tuning warning
    a = _analysis(tmp_path, recs)
    texts = [n.text for n in a.notes]
    assert any("not finished yet" in t for t in texts)
    assert all(w in texts for w in a.warnings)  # every warning of the fit is in the list
    assert any("diverged" in t for t in texts)
    far = [n for n in a.notes if n.topic == "prediction"]
    assert far and all(n.budget for n in far)  # the table's far budgets: extrapolation remarks
    data = json.loads((tmp_path / "analysis" / "scaling_laws.json").read_text())
    assert [n["text"] for n in data["notes"]] == texts
    assert ScalingAnalysis.from_json(data).notes == a.notes


def test_an_older_file_reads_its_warnings_as_notes_and_a_bad_list_is_one_sentence(tmp_path):
    _analysis(tmp_path)
    path = tmp_path / "analysis" / "scaling_laws.json"
    data = json.loads(path.read_text())
    data.pop("notes")
    data["warnings"] = ["an old warning"]
    assert ScalingAnalysis.from_json(data).notes == [Note("warning", "an old warning")]
    data["notes"] = [{"level": "shout", "text": "x"}]
    with pytest.raises(FlopsFitError, match=r"notes\[0\]: level 'shout'"):
        ScalingAnalysis.from_json(data)


def test_printed_as_listed():
    notes = [Note("warning", "the fit [bold]wobbles[/bold]"), Note("note", "n1", "runs"),
             Note("note", "C=1e+14: nearest model width=8 (N=1,000)", "model", 1e14),
             Note("warning", "C=1e+14 is far", "prediction", 1e14)]
    out = io.StringIO()
    print_notes(Console(file=out, width=40), notes)
    assert out.getvalue().splitlines() == [
        "warning: the fit [bold]wobbles[/bold]", "note: n1",
        "C=1e+14: nearest model width=8 (N=1,000)", "  warning: C=1e+14 is far"]


def test_report_renders_the_list_the_peak_lr_and_the_rule(tmp_path):
    recs = synthetic_records()
    for r in recs:
        r.update(lr=0.0274, lr_rule="tuned (tuning.json)")
    (tmp_path / "plan.json").write_text(json.dumps({"settings": {"train": {
        "lr": None, "lr_base": 0.0274, "lr_exponent": 0.217, "lr_ref_params": 1e5}},
        "warnings": ["6N fallback: flop counter failed <on purpose>", 7]}))
    a = _analysis(tmp_path, recs)
    assert a.notes[0] == Note("warning", "6N fallback: flop counter failed <on purpose>", "plan")
    page = write_report(tmp_path, [], a, None).read_text()
    text = html.unescape(page)
    for n in a.notes:
        assert n.text in text
    assert 'id="notes"' in page and "peak LR" in page and "0.0274" in text
    assert "tuned (tuning.json)</b> (15 run(s))" in page
    assert "lr = 0.0274 · (1e+05 / N_non-emb)^0.217" in text
    assert "<on purpose>" not in page  # escaped; plan.json is untrusted
