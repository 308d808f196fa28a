"""The run directory's layout: every file name, written down once.

::

    plan.json                      SweepPlan (planner.py)
    results.json                   every run's record, rebuilt from runs/ (rundir.py)
    runs/<run_id>/result.json      one run's RunRecord (records.py), written once
    runs/<run_id>/metrics.jsonl    its training curve, one MetricsLine per line
    runs/<run_id>/checkpoint.pt    the latest checkpoint of an unfinished run
    analysis/scaling_laws.json     the fit (analysis.py)
    analysis/history.jsonl         one line per analysis
    analysis/validation.json       the validate stage's outcome
    validation/                    the validation runs: a run directory of their own
    tuning.json                    flops-fit tune's LR rule and loss-vs-LR tables (tune.py)
    tuning/                        the tuning runs: a run directory of their own
    plots/*.png|svg, report.html   the pictures

A run id names a folder, so it is checked against :data:`RUN_ID_PATTERN` before any path is
made from it: a plan.json from elsewhere can never make flops-fit write outside its run
directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flops_fit.errors import FlopsFitError

PLAN_FILE = "plan.json"
RESULTS_FILE = "results.json"
RUNS_DIR = "runs"
RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
ANALYSIS_DIR = "analysis"
LAWS_FILE = "scaling_laws.json"
HISTORY_FILE = "history.jsonl"
VALIDATION_FILE = "validation.json"
VALIDATION_DIR = "validation"
PLOTS_DIR = "plots"
REPORT_FILE = "report.html"
TUNING_FILE = "tuning.json"
TUNING_DIR = "tuning"

# letters, digits and . _ + - ; not starting with a dot (no "..", no hidden names, no slashes)
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")


def check_run_id(run_id: object) -> str:
    """``run_id`` if it is a safe folder name, else one sentence naming it."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise FlopsFitError(
            f"run_id {run_id!r} is not a safe name (letters, digits, '.', '_', '+', '-'; not "
            "starting with '.'); re-create the plan with `flops-fit plan overwrite=true`."
        )
    return run_id


@dataclass(frozen=True)
class Layout:
    """The paths of one run directory (``root``)."""

    root: Path

    @property
    def plan(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def results(self) -> Path:
        return self.root / RESULTS_FILE

    @property
    def runs(self) -> Path:
        return self.root / RUNS_DIR

    def run(self, run_id: str) -> Path:
        """``runs/<run_id>``, after checking that the id is a safe folder name."""
        return self.runs / check_run_id(run_id)

    def result(self, run_id: str) -> Path:
        return self.run(run_id) / RESULT_FILE

    def metrics(self, run_id: str) -> Path:
        return self.run(run_id) / METRICS_FILE

    def checkpoint(self, run_id: str) -> Path:
        return self.run(run_id) / CHECKPOINT_FILE

    @property
    def analysis_dir(self) -> Path:
        return self.root / ANALYSIS_DIR

    @property
    def laws(self) -> Path:
        return self.analysis_dir / LAWS_FILE

    @property
    def history(self) -> Path:
        return self.analysis_dir / HISTORY_FILE

    @property
    def validation(self) -> Path:
        return self.analysis_dir / VALIDATION_FILE

    @property
    def validation_dir(self) -> Path:
        return self.root / VALIDATION_DIR

    @property
    def plots(self) -> Path:
        return self.root / PLOTS_DIR

    @property
    def report(self) -> Path:
        return self.root / REPORT_FILE

    @property
    def tuning(self) -> Path:
        return self.root / TUNING_FILE

    @property
    def tuning_dir(self) -> Path:
        return self.root / TUNING_DIR


def layout(run_dir: str | Path) -> Layout:
    """The :class:`Layout` of ``run_dir``."""
    return Layout(Path(run_dir))
