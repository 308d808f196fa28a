"""End to end: every warning and note find-optimal prints is in scaling_laws.json's notes, and
report.html shows that same list, with each run's peak LR and the LR rule used."""

from __future__ import annotations

import html
import json
import re

from conftest import run_cli
from flops_fit.report.html import fmt
from helpers.run import stress

#: three budgets x three sizes of a tiny real sweep (seconds of training), fitted without a
#: bootstrap: a fit with plenty to say (too few interior budgets, far extrapolation, ...)
OVERRIDES = [*stress.plan_overrides([3e9, 6e9, 1.2e10], 3), "analysis.bootstrap=0"]

SAID = re.compile(r"^\s*(?:warning|note): (.+)$")
MODEL = re.compile(r"^\s*(C=\S+: nearest model .+)$")
ITEM = re.compile(r'<li class="(?:warn|note)-item"[^>]*><b>(warning|note):</b> (.*?)</li>')


def test_console_json_and_report_hold_one_list(tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli("find-optimal", f"run_dir={run_dir}", *OVERRIDES, cwd=tmp_path,
                  env={"COLUMNS": "10000"})  # one line per sentence
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    console = []
    for line in out.stdout.splitlines():
        m = SAID.match(line) or MODEL.match(line)
        if m:
            console.append(m.group(1).strip())
    laws = json.loads((run_dir / "analysis" / "scaling_laws.json").read_text())
    stored = [n["text"] for n in laws["notes"]]
    assert console and any(n["level"] == "warning" for n in laws["notes"])
    assert set(console) <= set(stored), set(console) - set(stored)
    said_elsewhere = {laws["method_note"], laws["isoflop"].get("message")}  # describe() says
    assert set(stored) - set(console) <= said_elsewhere, set(stored) - set(console)
    page = (run_dir / "report.html").read_text()
    rendered = [(level, html.unescape(text)) for level, text in ITEM.findall(page)]
    assert rendered == [(n["level"], n["text"]) for n in laws["notes"]]
    assert "peak LR" in page and "config (train.lr_base, lr_exponent, lr_ref_params)" in page
    runs = json.loads((run_dir / "results.json").read_text())
    assert all(f">{fmt(r['lr'])}<" in page for r in runs)  # each run's peak LR, in its table
