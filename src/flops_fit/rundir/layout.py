"""The run directory's layout: every file name, written down once.

::

    plan.json                      SweepPlan (planning/planner.py)
    probe.json                     the plan's measured throughput per size (estimate.py)
    results.json                   every run's record, rebuilt from runs/ (rundir/io.py)
    runs/<run_id>/result.json      one run's RunRecord (records.py), written once
    runs/<run_id>/metrics.jsonl    its training curve, one MetricsLine per line
    runs/<run_id>/checkpoint.pt    the latest checkpoint of an unfinished run
    trunks/<trunk_id>/             train.reuse: a shared trunk's branch-<step>.pt checkpoints,
                                   trunk.pt (its latest) and metrics.jsonl (trunks.py, sweep.py)
    analysis/scaling_laws.json     the fit (analysis/scaling_analysis.py)
    analysis/history.jsonl         one line per analysis
    analysis/validation.json       the validate stage's outcome
    validation/                    the validation runs: a run directory of their own
    tuning.json                    flops-fit tune's LR rule and loss-vs-LR tables (stages/tune.py)
    tuning/                        the tuning runs: a run directory of their own
    answer.yaml                    find-optimal's answer as a launchable run (records.py),
                                   trained alone by `flops-fit train answer=...`
    plots/*.png|svg, report.html   the pictures
    tensorboard/, mlruns/, wandb/  train.loggers (training/tracking/loggers.py); ids in
    runs/<id>/trackers.json
    data/<key>/                    tokenized data cache (dataset.tokenizer=bpe, dataset=hf):
        tokenizer.json             the trained BPE (Hugging Face tokenizers format)
        train.bin, val.bin         token ids, memory-mapped like dataset=tokens
        meta.json                  written last: the cache is complete (dtype, counts)

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
PROBE_FILE = "probe.json"
RESULTS_FILE = "results.json"
RUNS_DIR = "runs"
RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
TRUNKS_DIR = "trunks"
TRUNK_CHECKPOINT_FILE = "trunk.pt"
ANALYSIS_DIR = "analysis"
LAWS_FILE = "scaling_laws.json"
HISTORY_FILE = "history.jsonl"
VALIDATION_FILE = "validation.json"
VALIDATION_DIR = "validation"
PLOTS_DIR = "plots"
REPORT_FILE = "report.html"
TENSORBOARD_DIR = "tensorboard"  # <run_dir>/tensorboard/<run_id>: event files (tracking/loggers.py)
TRACKERS_FILE = "trackers.json"  # runs/<run_id>/ and analysis/: the loggers' entry ids
DATA_DIR = "data"
TOKENIZER_FILE = "tokenizer.json"
TRAIN_TOKENS_FILE = "train.bin"  # also the names dataset=tokens reads
VAL_TOKENS_FILE = "val.bin"
DATA_META_FILE = "meta.json"
TUNING_FILE = "tuning.json"
ANSWER_FILE = "answer.yaml"
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


#: the folders of a run directory that flops-fit writes into (each checked not to be a link)
_WRITTEN_DIRS = (RUNS_DIR, TRUNKS_DIR, ANALYSIS_DIR, PLOTS_DIR, VALIDATION_DIR, TUNING_DIR,
                 DATA_DIR, TENSORBOARD_DIR)


def refuse_link(path: Path) -> Path:
    """``path``, unless it is a symbolic link: then one sentence (nothing is written through a
    link, which could point anywhere)."""
    if path.is_symlink():
        raise FlopsFitError(
            f"{path} is a symbolic link; flops-fit never writes through a link inside a run "
            "directory, so replace it with a real folder or file (link the whole run_dir "
            "instead)."
        )
    return path


def check_no_links(run_dir: Path, depth: int = 0) -> None:
    """One sentence when a folder or file flops-fit writes in ``run_dir`` is a symbolic link:
    its folders, each run's and trunk's folder and files, the lock files; the nested run
    directories of ``validate`` and ``tune`` too. ``run_dir`` itself may be a link."""
    if not run_dir.is_dir():
        return
    for p in run_dir.glob("*.lock"):
        refuse_link(p)
    for name in _WRITTEN_DIRS:
        folder = refuse_link(run_dir / name)
        if name in (RUNS_DIR, TRUNKS_DIR) and folder.is_dir():
            for sub in folder.iterdir():
                refuse_link(sub)
                if sub.is_dir():
                    for f in sub.iterdir():
                        refuse_link(f)
        if name in (VALIDATION_DIR, TUNING_DIR) and depth < 2:
            check_no_links(folder, depth + 1)
    for name in ("plots", "analysis"):
        folder = run_dir / name
        if folder.is_dir():
            for f in folder.iterdir():
                refuse_link(f)


_BRANCH = re.compile(r"branch-(\d{1,12})\.pt")


def _path(*parts: str) -> property:
    """A property: ``root / parts...``."""
    return property(lambda self: self.root.joinpath(*parts))


@dataclass(frozen=True)
class Layout:
    """The paths of one run directory (``root``)."""

    root: Path

    plan = _path(PLAN_FILE)
    probe = _path(PROBE_FILE)
    results = _path(RESULTS_FILE)
    runs = _path(RUNS_DIR)
    trunks = _path(TRUNKS_DIR)
    analysis_dir = _path(ANALYSIS_DIR)
    laws = _path(ANALYSIS_DIR, LAWS_FILE)
    history = _path(ANALYSIS_DIR, HISTORY_FILE)
    validation = _path(ANALYSIS_DIR, VALIDATION_FILE)
    validation_dir = _path(VALIDATION_DIR)
    plots = _path(PLOTS_DIR)
    report = _path(REPORT_FILE)

    def run(self, run_id: str) -> Path:
        """``runs/<run_id>``, after checking that the id is a safe folder name and that
        neither ``runs`` nor the run's folder is a symbolic link."""
        refuse_link(self.runs)
        return refuse_link(self.runs / check_run_id(run_id))

    def result(self, run_id: str) -> Path:
        return self.run(run_id) / RESULT_FILE

    def metrics(self, run_id: str) -> Path:
        return self.run(run_id) / METRICS_FILE

    def checkpoint(self, run_id: str) -> Path:
        return self.run(run_id) / CHECKPOINT_FILE

    def trunk(self, trunk_id: str) -> Path:
        """``trunks/<trunk_id>``, after checking that the id is a safe folder name (and no
        symbolic link)."""
        refuse_link(self.root / TRUNKS_DIR)
        return refuse_link(self.root / TRUNKS_DIR / check_run_id(trunk_id))

    def branch_checkpoint(self, trunk_id: str, step: int) -> Path:
        """The trunk's state after ``step`` steps: where its runs' cooldowns start."""
        return self.trunk(trunk_id) / f"branch-{int(step):08d}.pt"

    def branch_checkpoints(self, trunk_id: str) -> dict[int, Path]:
        """The trunk's branch checkpoints on disk, by step; files whose names are not
        ``branch-<step>.pt`` are no checkpoints (the folder is untrusted)."""
        found = (p for p in self.trunk(trunk_id).glob("branch-*.pt") if p.is_file())
        return {int(m[1]): p for p in found if (m := _BRANCH.fullmatch(p.name))}

    def data_cache(self, key: str) -> Path:
        """``data/<key>``: one tokenized dataset (key: a hash of its settings)."""
        return self.root / DATA_DIR / check_run_id(key)

    @property
    def tuning(self) -> Path:
        return self.root / TUNING_FILE

    @property
    def answer(self) -> Path:
        return self.root / ANSWER_FILE

    @property
    def tuning_dir(self) -> Path:
        return self.root / TUNING_DIR


def layout(run_dir: str | Path) -> Layout:
    """The :class:`Layout` of ``run_dir``."""
    return Layout(Path(run_dir))
