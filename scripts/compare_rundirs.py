"""Compare two run directories field by field, ignoring what differs between identical runs.

    python scripts/compare_rundirs.py BEFORE AFTER [--allow-added schedule] [--ignore KEY ...]

Compares ``plan.json``, ``results.json``, ``analysis/scaling_laws.json`` and every run's
``runs/<run_id>/result.json`` and ``metrics.jsonl``. Keys that change from one run to the next
(times, dates, host, thread counts, the results file's hash) are ignored at any depth, and the
run directory's own path is replaced by ``<run_dir>`` in every string. Prints one line per
differing key (``file: path: before != after``) and exits 1 if there is any, else prints
``identical`` and exits 0. ``--allow-added KEY`` accepts a key that only AFTER's records have
(a new field).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: keys that differ between two runs of the same code and settings
IGNORED = {
    "finished_at", "wall_time_s", "train_time_s", "tokens_per_s", "host", "threads",
    "thread_switches", "time_s", "created_utc", "created_at", "date", "time", "timestamp",
    "results_sha256",
}
FILES = ("plan.json", "results.json", "analysis/scaling_laws.json")
MISSING = object()


def _load(path: Path) -> Any:
    if not path.exists():
        return MISSING
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()
                and _parses(line)]
    return json.loads(path.read_text())


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _norm(value: Any, run_dir: Path) -> Any:
    if isinstance(value, str):
        return value.replace(str(run_dir.resolve()), "<run_dir>").replace(str(run_dir),
                                                                          "<run_dir>")
    return value


def diff(a: Any, b: Any, where: str, dirs: tuple[Path, Path], ignored: set[str],
         added: set[str]) -> list[str]:
    """Every differing key path under ``where`` (``a`` before, ``b`` after)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            if key in ignored:
                continue
            path = f"{where}.{key}"
            if key not in b:
                out.append(f"{path}: only in before")
            elif key not in a:
                if key not in added:
                    out.append(f"{path}: only in after ({b[key]!r})")
            else:
                out += diff(a[key], b[key], path, dirs, ignored, added)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)} items"]
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += diff(x, y, f"{where}[{i}]", dirs, ignored, added)
        return out
    x, y = _norm(a, dirs[0]), _norm(b, dirs[1])
    if x != y or type(x) is not type(y):
        return [f"{where}: {x!r} != {y!r}"]
    return []


def compare(before: Path, after: Path, ignored: set[str], added: set[str]) -> list[str]:
    """The differing keys of the two run directories."""
    names = list(FILES)
    for d in (before, after):
        for p in sorted((d / "runs").glob("*/result.json")) + sorted(
                (d / "runs").glob("*/metrics.jsonl")):
            rel = str(p.relative_to(d))
            if rel not in names:
                names.append(rel)
    out = []
    for name in names:
        a, b = _load(before / name), _load(after / name)
        if a is MISSING or b is MISSING:
            if a is not b:
                out.append(f"{name}: only in {'after' if a is MISSING else 'before'}")
            continue
        out += diff(a, b, name, (before, after), ignored, added)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--ignore", action="append", default=[], metavar="KEY",
                        help="another key to ignore at any depth")
    parser.add_argument("--allow-added", action="append", default=[], metavar="KEY",
                        help="a key that only AFTER may have (a new field)")
    args = parser.parse_args(argv)
    for d in (args.before, args.after):
        if not d.is_dir():
            parser.error(f"{d} is not a folder")
    found = compare(args.before, args.after, IGNORED | set(args.ignore), set(args.allow_added))
    for line in found:
        print(line)
    print(f"{len(found)} differing key(s)" if found else "identical")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
