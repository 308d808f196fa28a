#!/usr/bin/env python
"""Stress and kill experiment on one run directory; prints a table of what happened.

Two experiments, each on a fresh run directory of a small real sweep (a byte-level GPT on CPU):

* **concurrency** -- ``--shards`` processes of ``python -m flops_fit train ... train.shard=i``
  start at once (they plan together) while a cron-style loop runs ``python -m flops_fit analyze``
  (cwd and ``HOME`` a scratch folder, no terminal, a minimal environment) until they end;
* **kill** -- the same shards, checkpointing every few milliseconds, are killed with SIGKILL at
  random moments (``--kills`` times, a random shard each time, at a random delay after it started
  training) and restarted at once, again with the analyze loop running; then they run to the end.

After every kill and at the end it checks: every ``*.json`` in the run directory parses; no
completed run's ``result.json`` changed by a byte once written (never retrained, never lost);
``results.json`` lists every planned run exactly once. At the end every run must be completed,
every ``*.jsonl`` line must parse, no checkpoint may be left, and every analyze call must have
exited 0 (fitted) or 3 (not enough data yet) without a traceback. Exit status 0 when nothing was
lost, doubled or corrupt, 1 otherwise.

    python scripts/stress.py       # 4 shards, 12 runs, 20 kills: 1-2.5 minutes on two CPU cores
    python scripts/stress.py --kills 40 --budgets 3e9,1e10,3e10,1e11 --seed 1   # ~2.5 minutes

The tests (tests/test_multirun.py, tests/test_faults.py) run a bounded version of the same
functions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINAL = ("completed", "diverged")
RUN_STARTED = re.compile(r"run \d+/\d+ \S+ \(.*\): \d+ steps")  # the trainer's log line
TMP_KINDS = {  # leftover temp file prefix -> where a kill landed
    ".checkpoint.pt.": "mid-checkpoint",
    ".result.json.": "mid-result-write",
    ".results.json.": "mid-rebuild",
    ".metrics.jsonl.": "mid-metrics-rewrite",
}


def plan_overrides(budgets: list[float], sizes: int, checkpoint_every_s: float = 120.0,
                   ) -> list[str]:
    """Hydra overrides of a small real sweep: tiny batches, one thread per process, CPU."""
    values = ",".join(f"{b:.6g}" for b in budgets)
    return [f"budgets.values=[{values}]", f"budgets.sizes_per_budget={sizes}",
            "budgets.min_steps=5", "train.batch_size=8", "train.seq_len=32",
            "train.eval_tokens=2048", "train.periodic_eval_tokens=512", "train.log_every=5",
            "dataset.max_bytes=400000", "train.device=cpu", "train.threads=1",
            f"train.checkpoint_every_s={checkpoint_every_s}"]


def cron_env(home: Path) -> dict[str, str]:
    """The environment cron gives a job: HOME, a short PATH, no TERM, nothing else."""
    path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    return {"HOME": str(home), "PATH": path, "SHELL": "/bin/sh",
            "LOGNAME": os.environ.get("LOGNAME", "user")}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "flops_fit", *args]


# ------------------------------------------------------------------------------------------------
# checks
# ------------------------------------------------------------------------------------------------


def temp_files(run_dir: Path) -> set[Path]:
    """``.<name>.*.tmp`` files of atomic writes: in flight, or left by a write killed midway."""
    return {p for p in run_dir.rglob(".*.tmp") if ".hydra" not in p.parts}


def stale_temp_files(run_dir: Path, settle_s: float = 0.15) -> set[Path]:
    """Temp files that outlive ``settle_s`` (a live write renames its own within milliseconds)."""
    first = temp_files(run_dir)
    time.sleep(settle_s)
    return first & temp_files(run_dir)


def bad_json(run_dir: Path, jsonl: bool = False) -> list[str]:
    """Every ``*.json`` (and with ``jsonl`` every ``*.jsonl`` line) that does not parse."""
    bad = []
    for p in sorted(run_dir.rglob("*.json")):
        if p.name.startswith("."):
            continue  # a temp file, never read by anyone
        try:
            json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            bad.append(f"{p.relative_to(run_dir)}: {exc}")
    if jsonl:
        for p in sorted(run_dir.rglob("*.jsonl")):
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines()):
                try:
                    json.loads(line)
                except json.JSONDecodeError as exc:
                    bad.append(f"{p.relative_to(run_dir)} line {i + 1}: {exc}")
    return bad


def finished_records(run_dir: Path) -> dict[str, bytes]:
    """run_id -> bytes of ``runs/<id>/result.json`` for runs that are completed or diverged."""
    out = {}
    for p in (run_dir / "runs").glob("*/result.json"):
        raw = p.read_bytes()
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError:
            continue  # reported by bad_json
        if rec.get("status") in FINAL:
            out[rec["run_id"]] = raw
    return out


@dataclass
class Ledger:
    """Finished records as first seen; any later change of their bytes is a loss."""

    seen: dict[str, bytes] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    corrupt: list[str] = field(default_factory=list)
    duplicates: int = 0

    def check(self, run_dir: Path) -> None:
        """Record corrupt JSON, doubled results.json entries and rewritten finished records."""
        self.corrupt += bad_json(run_dir)
        for rid, raw in finished_records(run_dir).items():
            if rid in self.seen and self.seen[rid] != raw:
                self.changed.add(rid)
            self.seen.setdefault(rid, raw)
        for rid in self.seen:
            if not (run_dir / "runs" / rid / "result.json").exists():
                self.changed.add(rid)  # a finished record vanished
        results = run_dir / "results.json"
        if results.exists():
            try:
                ids = [r["run_id"] for r in json.loads(results.read_text(encoding="utf-8"))]
            except (json.JSONDecodeError, TypeError, KeyError):
                return  # reported by bad_json
            self.duplicates = max(self.duplicates, len(ids) - len(set(ids)))


def final_check(run_dir: Path, ledger: Ledger) -> dict[str, Any]:
    """The end state: every planned run exactly once and completed, nothing lost or corrupt."""
    ledger.check(run_dir)
    plan_ids = [r["run_id"] for r in json.loads((run_dir / "plan.json").read_text())["runs"]]
    results = json.loads((run_dir / "results.json").read_text())
    ids = [r["run_id"] for r in results]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {
        "planned": len(plan_ids),
        "records": len(ids),
        "completed": statuses.get("completed", 0),
        "statuses": statuses,
        "missing": sorted(set(plan_ids) - set(ids)),
        "extra": sorted(set(ids) - set(plan_ids)),
        "duplicates": max(ledger.duplicates, len(ids) - len(set(ids))),
        "lost_or_rewritten": sorted(ledger.changed),
        "corrupt": ledger.corrupt + bad_json(run_dir, jsonl=True),
        "checkpoints_left": len(list(run_dir.glob("runs/*/checkpoint.pt"))),
        "temp_files_left": len(temp_files(run_dir)),
        "resumed_runs": sum(1 for r in results if r.get("resumed")),
    }


def nothing_lost(summary: dict[str, Any], analyze: AnalyzeLoop | None) -> bool:
    ok = (summary["records"] == summary["planned"] == summary["completed"]
          and not summary["missing"] and not summary["extra"] and not summary["duplicates"]
          and not summary["lost_or_rewritten"] and not summary["corrupt"]
          and not summary["checkpoints_left"])
    if analyze is not None:
        ok = ok and not analyze.bad
    return ok


# ------------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------------


class AnalyzeLoop(threading.Thread):
    """``python -m flops_fit analyze run_dir=ABS`` again and again, as cron would, until stopped."""

    def __init__(self, run_dir: Path, home: Path, extra: list[str] | None = None,
                 pause_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.cmd = cli("analyze", f"run_dir={run_dir}", *(extra or ["analysis.bootstrap=20"]))
        self.home, self.pause_s = home, pause_s
        self.stop = threading.Event()
        self.codes: dict[int, int] = {}
        self.bad: list[str] = []  # calls that crashed, printed a traceback or colour codes

    def run(self) -> None:
        while not self.stop.is_set():
            self.once()
            self.stop.wait(self.pause_s)

    def once(self) -> int:
        out = subprocess.run(self.cmd, cwd=self.home, env=cron_env(self.home),
                             capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)
        text = out.stdout + out.stderr
        self.codes[out.returncode] = self.codes.get(out.returncode, 0) + 1
        # 0 fitted, 3 not enough (usable) data yet, 5 the finished sweep's fit is unusable
        if out.returncode not in (0, 3, 5) or "Traceback" in text or "\x1b[" in text:
            self.bad.append(f"exit {out.returncode}: {text[-600:]}")
        return out.returncode

    def finish(self) -> None:
        self.stop.set()
        self.join()

    @property
    def calls(self) -> int:
        return sum(self.codes.values())


class Shards:
    """``n`` shard processes of ``flops-fit train`` on one run directory, logs under ``logs``."""

    def __init__(self, run_dir: Path, n: int, overrides: list[str], logs: Path) -> None:
        self.run_dir, self.n, self.overrides, self.logs = run_dir, n, overrides, logs
        logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[int, subprocess.Popen] = {}
        self.log_paths: dict[int, Path] = {}
        self.started = 0

    def start(self, i: int) -> None:
        self.started += 1
        log = self.logs / f"shard{i}.{self.started}.log"
        self.log_paths[i] = log
        with open(log, "w") as fh:
            self.procs[i] = subprocess.Popen(
                cli("train", f"run_dir={self.run_dir}", *self.overrides,
                    f"train.shard={i}", f"train.num_shards={self.n}"),
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def start_all(self) -> None:
        for i in range(self.n):
            self.start(i)

    def alive(self) -> list[int]:
        return [i for i, p in self.procs.items() if p.poll() is None]

    def training(self) -> list[int]:
        """Live shards whose current process is inside a run's training loop (its log says so)."""
        return [i for i in self.alive()
                if RUN_STARTED.search(self.log_paths[i].read_text(errors="replace"))]

    def wait(self, timeout: float) -> dict[int, int]:
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        return {i: p.returncode for i, p in self.procs.items()}

    def kill_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def _wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout:.0f}s")
        time.sleep(0.05)


def concurrency_experiment(run_dir: Path, shards: int, overrides: list[str], scratch: Path,
                           timeout: float = 600.0) -> dict[str, Any]:
    """``shards`` train processes at once plus the analyze loop; returns the summary."""
    t0 = time.monotonic()
    home = scratch / "home"
    home.mkdir(parents=True, exist_ok=True)
    procs = Shards(run_dir, shards, overrides, scratch / "logs")
    procs.start_all()
    loop = AnalyzeLoop(run_dir, home)
    ledger = Ledger()
    try:
        _wait_for(run_dir / "plan.json", timeout)
        loop.start()
        while procs.alive() and time.monotonic() - t0 < timeout:
            ledger.check(run_dir)
            time.sleep(0.2)
        codes = procs.wait(timeout=max(1.0, timeout - (time.monotonic() - t0)))
    finally:
        procs.kill_all()
        loop.finish()
    loop.once()  # the sweep is done: this one must fit
    summary = final_check(run_dir, ledger)
    summary.update(experiment="concurrency", processes=procs.started, kills=0,
                   shard_exit_codes=sorted(codes.values()), analyze_codes=dict(loop.codes),
                   analyze_calls=loop.calls, analyze_bad=loop.bad, kill_moments={},
                   restarts=0, wall_s=time.monotonic() - t0)
    summary["ok"] = nothing_lost(summary, loop) and set(codes.values()) == {0}
    return summary


def kill_experiment(run_dir: Path, shards: int, kills: int, overrides: list[str], scratch: Path,
                    seed: int = 0, delay_s: tuple[float, float] = (0.05, 1.5),
                    analyze: bool = True, timeout: float = 900.0) -> dict[str, Any]:
    """Kill a random training shard with SIGKILL ``kills`` times, restarting it at once."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    home = scratch / "home"
    home.mkdir(parents=True, exist_ok=True)
    procs = Shards(run_dir, shards, overrides, scratch / "logs")
    loop = AnalyzeLoop(run_dir, home) if analyze else None
    ledger = Ledger()
    moments: dict[str, int] = {}
    done_kills = restarts = 0
    known_stale: set[Path] = set()
    procs.start_all()
    try:
        _wait_for(run_dir / "plan.json", timeout)
        if loop is not None:
            loop.start()
        while done_kills < kills and procs.alive() and time.monotonic() - t0 < timeout:
            ready = procs.training()
            if not ready:
                time.sleep(0.05)
                continue
            victim = rng.choice(ready)
            time.sleep(rng.uniform(*delay_s))
            proc = procs.procs[victim]
            if proc.poll() is not None:
                continue  # it finished first
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            done_kills += 1
            now = stale_temp_files(run_dir)
            new, known_stale = now - known_stale, now
            kinds = {kind for p in new for pre, kind in TMP_KINDS.items()
                     if p.name.startswith(pre)} or {"mid-step (no write in flight)"}
            for kind in kinds:
                moments[kind] = moments.get(kind, 0) + 1
            ledger.check(run_dir)
            procs.start(victim)
            restarts += 1
        # then restart until done: a shard that did not end cleanly is started again
        for _ in range(5):
            codes = procs.wait(timeout=max(1.0, timeout - (time.monotonic() - t0)))
            again = [i for i, c in codes.items() if c != 0]
            if not again:
                break
            for i in again:
                procs.start(i)
                restarts += 1
    finally:
        procs.kill_all()
        if loop is not None:
            loop.finish()
    if loop is not None:
        loop.once()
    summary = final_check(run_dir, ledger)
    summary.update(experiment="kill -9", processes=procs.started, kills=done_kills,
                   shard_exit_codes=sorted(codes.values()),
                   analyze_codes=dict(loop.codes) if loop else {},
                   analyze_calls=loop.calls if loop else 0,
                   analyze_bad=loop.bad if loop else [], kill_moments=moments,
                   restarts=restarts, wall_s=time.monotonic() - t0)
    summary["ok"] = nothing_lost(summary, loop) and set(codes.values()) == {0}
    return summary


# ------------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of experiment summaries."""
    cols = [
        ("experiment", lambda s: s["experiment"]),
        ("train processes", lambda s: s["processes"]),
        ("kills", lambda s: s["kills"]),
        ("runs planned", lambda s: s["planned"]),
        ("completed", lambda s: s["completed"]),
        ("in results.json", lambda s: s["records"]),
        ("doubled", lambda s: s["duplicates"]),
        ("lost/rewritten", lambda s: len(s["lost_or_rewritten"]) + len(s["missing"])),
        ("corrupt files", lambda s: len(s["corrupt"])),
        ("resumed runs", lambda s: s["resumed_runs"]),
        ("analyze calls 0/3/other", lambda s: "{}/{}/{}".format(
            s["analyze_codes"].get(0, 0), s["analyze_codes"].get(3, 0),
            sum(v for k, v in s["analyze_codes"].items() if k not in (0, 3)))),
        ("wall s", lambda s: f"{s['wall_s']:.0f}"),
        ("nothing lost", lambda s: "yes" if s["ok"] else "NO"),
    ]
    cells = [[name for name, _ in cols]] + [[str(f(s)) for _, f in cols] for s in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    for s in rows:
        if s["kill_moments"]:
            where = ", ".join(f"{k} {v}" for k, v in sorted(s["kill_moments"].items()))
            lines.append(f"{s['experiment']}: kills landed {where}; {s['restarts']} restarts; "
                         f"{s['temp_files_left']} temp files of killed writes left on disk.")
        for b in s["analyze_bad"][:3] + s["corrupt"][:3]:
            lines.append(f"{s['experiment']}: problem: {b}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--budgets", default="3e9,1e10,3e10", help="comma-separated FLOP budgets")
    ap.add_argument("--sizes", type=int, default=4, help="sizes per budget")
    ap.add_argument("--checkpoint-every-s", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    budgets = [float(b) for b in args.budgets.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="flops-fit-stress-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}; {args.shards} shards, budgets {budgets}, {args.sizes} sizes "
          f"each, {args.kills} kills, seed {args.seed}", flush=True)
    rows = []
    try:
        rows.append(concurrency_experiment(work / "concurrency" / "run", args.shards,
                                           plan_overrides(budgets, args.sizes),
                                           work / "concurrency"))
        print(f"concurrency done in {rows[-1]['wall_s']:.0f}s", flush=True)
        rows.append(kill_experiment(work / "kill" / "run", args.shards, args.kills,
                                    plan_overrides(budgets, args.sizes,
                                                   args.checkpoint_every_s),
                                    work / "kill", seed=args.seed))
        print(f"kill done in {rows[-1]['wall_s']:.0f}s", flush=True)
    finally:
        if rows:
            print(table(rows))
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if rows and all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
