"""Cron: ``flops-fit analyze run_dir=/abs/path`` from ``$HOME``, no terminal, cron's environment.

Plain log lines (no colour codes, no progress bars), exit 0 when it fitted, exit 3 while there
is not enough data yet, and one line of key numbers in ``analysis/history.jsonl`` per fit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers.run import stress, synthetic_records, write_results

FLOPS_FIT = Path(sys.executable).parent / "flops-fit"  # the installed command, as in a crontab


def cron_analyze(run_dir: Path, home: Path) -> subprocess.CompletedProcess:
    """What a crontab line ``flops-fit analyze run_dir=/abs/path`` runs: cwd $HOME, no tty."""
    return subprocess.run([str(FLOPS_FIT), "analyze", f"run_dir={run_dir}"], cwd=home,
                          env=stress.cron_env(home), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def _plain(out: subprocess.CompletedProcess) -> str:
    text = out.stdout + out.stderr
    assert "\x1b[" not in text, "ANSI escape codes in a cron log"
    assert "\r" not in text, "a progress bar in a cron log"
    assert "Traceback" not in text
    return text


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "analysis" / "history.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_cron_analyze_while_runs_finish(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    run_dir = tmp_path / "sweeps" / "first"  # absolute, elsewhere than $HOME
    run_dir.mkdir(parents=True)
    (run_dir / "plan.json").write_text(json.dumps({"runs": []}))

    # the sweep has started, no run has finished: not enough data yet
    out = cron_analyze(run_dir, home)
    text = _plain(out)
    assert out.returncode == 3, text
    assert "has finished yet" in text

    # two of fifteen runs finished: still not enough
    write_results(run_dir, synthetic_records(completed=2))
    out = cron_analyze(run_dir, home)
    text = _plain(out)
    assert out.returncode == 3, text
    assert "Only 2 usable completed run(s)" in text and "at least 3" in text
    assert _history(run_dir) == []
    assert not (run_dir / "analysis" / "scaling_laws.json").exists()

    # ten, then all fifteen: each call fits and appends its key numbers
    for n_done, n_lines in ((10, 1), (15, 2)):
        write_results(run_dir, synthetic_records(completed=n_done))
        out = cron_analyze(run_dir, home)
        text = _plain(out)
        assert out.returncode == 0, text
        assert f"Runs: {n_done} used of 15 records" in text
        assert f"Wrote {run_dir / 'analysis' / 'scaling_laws.json'}" in text
        history = _history(run_dir)
        assert len(history) == n_lines
        assert history[-1]["n_runs_used"] == n_done
        for key in ("time", "method", "a", "b", "E", "alpha", "beta", "n_opt_at_largest_budget",
                    "results_sha256"):
            assert key in history[-1]
    assert history[0]["results_sha256"] != history[1]["results_sha256"]
    assert not list(home.iterdir())  # nothing written into $HOME


def test_cron_on_a_missing_run_dir_is_one_sentence(tmp_path):
    """A mistyped path (no plan, no results): exit 2, distinct from 3, in one line."""
    home = tmp_path / "home"
    home.mkdir()
    out = cron_analyze(tmp_path / "no-such-sweep", home)
    text = _plain(out)
    assert out.returncode == 2, text
    assert "No results file" in text
