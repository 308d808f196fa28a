"""The run directory: atomic JSON writes, checked JSON reads, locks, and the results.json rebuild.

The files and their names are listed in :mod:`flops_fit.rundir.layout`; the run records are
:class:`~flops_fit.rundir.records.RunRecord`. ``results.json`` holds every planned run's record,
rebuilt
from ``runs/*/result.json`` under a lock; a run's checkpoint is deleted when the run completes.

Every file that another process may read is written to a temporary file in the same folder,
flushed, fsynced and renamed over the target, so a reader sees the old or the new file, never half.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch
from filelock import FileLock

from flops_fit.errors import EnvironmentFailure, FlopsFitError
from flops_fit.rundir.layout import (
    PLAN_FILE,
    RESULT_FILE,
    RESULTS_FILE,
    RUNS_DIR,
    Layout,
    refuse_link,
)
from flops_fit.rundir.records import RunRecord

LOCK_TIMEOUT_S = 600.0
_UMASK = os.umask(0)
os.umask(_UMASK)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """Replace non-finite floats by None so the file stays strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _clean(obj.tolist())
    return obj


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Yield a temp file beside ``path``; when the block ends, fsync it and rename it over
    ``path`` (a reader sees the old or the new file, never half); on any error remove it.

    ``mode`` is ``"w"`` (UTF-8 text) or ``"wb"``. OSErrors propagate unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; a failed write is one FlopsFitError sentence."""
    path = Path(path)
    try:
        with atomic_file(path) as fh:
            fh.write(text)
    except OSError as exc:
        raise EnvironmentFailure(
            f"Cannot write {path}: {exc.strerror or exc}; free disk space or choose another "
            "run_dir."
        ) from exc


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (NaN/inf become null), atomically."""
    text = json.dumps(_clean(obj), indent=2, default=_json_default, allow_nan=False)
    atomic_write_text(path, text + "\n")


def read_json(path: str | Path, what: str = "file") -> Any:
    """Read a JSON file, turning a missing or corrupt file into one clear FlopsFitError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FlopsFitError(f"No {what} at {path}; run the stage that writes it first.") from exc
    except OSError as exc:
        raise EnvironmentFailure(f"Cannot read {what} {path}: {exc.strerror or exc}.") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FlopsFitError(
            f"{what.capitalize()} {path} is not valid JSON (line {exc.lineno}: {exc.msg}); "
            "delete or restore it and run the stage that writes it again."
        ) from exc


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """``results.json``: a list of run records (JSON objects); anything else (an object, a
    bare number among the records) is one FlopsFitError naming the file and the entry."""
    path = Path(path)
    records = read_json(path, "results")
    if not isinstance(records, list):
        raise FlopsFitError(
            f"{path} is not a list of run records (found a JSON {type(records).__name__}); "
            "rebuild it with `flops-fit train` or restore it."
        )
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise FlopsFitError(f"Entry #{i} of {path} is {rec!r}, not a run record (a JSON "
                                "object); fix or remove it.")
    return records


def remove_stale_temp_files(folder: str | Path, name: str = "*") -> int:
    """Delete the ``.<name>.*.tmp`` files that killed writes left in ``folder``; return how many.

    Only call it while holding the lock that guards those writes, so no live writer owns one.
    """
    removed = 0
    for tmp in Path(folder).glob(f".{name}.*.tmp"):
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def file_lock(path: str | Path, timeout: float = LOCK_TIMEOUT_S) -> FileLock:
    """A cross-process lock on ``path`` (a ``.lock`` file beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_link(Path(str(path) + ".lock"))  # opening it would truncate the link's target
    return FileLock(str(path) + ".lock", timeout=timeout)


# --------------------------------------------------------------------------------------------
# Run records, results.json rebuild and checkpoints (train stage)
# --------------------------------------------------------------------------------------------

# results.json's key order for a planned run without a record (RunRecord.planned's fields:
# those copied from its RunSpec, then status and final_loss). RunRecord.to_dict writes schema
# order, so a pending entry is put back in this order and the file stays as it was.
_PENDING_ORDER = (
    "run_id", "compute_budget", "size_param", "size_value", "num_params",
    "num_params_non_embedding", "flops_per_token", "num_tokens", "steps", "batch_size",
    "seq_len", "flops", "flops_6nd", "tokens_per_param", "status", "final_loss",
)


def run_path(run_dir: str | Path, run_id: str) -> Path:
    """``run_dir/runs/<run_id>``: where one run keeps its result, curve and checkpoint.

    The id is checked to be a safe folder name first (:func:`flops_fit.rundir.layout.check_run_id`).
    """
    return Layout(Path(run_dir)).run(run_id)


def write_run_result(run_dir: str | Path, record: RunRecord | dict[str, Any]) -> Path:
    """Write one run's record to ``runs/<run_id>/result.json`` atomically; returns the path."""
    data = record.to_dict() if isinstance(record, RunRecord) else record
    path = run_path(run_dir, data["run_id"]) / RESULT_FILE
    atomic_write_json(path, data)
    return path


def read_run_result(run_dir: str | Path, run_id: str) -> dict[str, Any] | None:
    """One run's record, or None when it has none yet (or a corrupt one, with a warning)."""
    path = run_path(run_dir, run_id) / RESULT_FILE
    if not path.exists():
        return None
    return _read_record(path)


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.warn(f"Skipping unreadable run record {path} ({exc}); that run will be "
                      "trained again.", stacklevel=3)
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("run_id"), str):
        warnings.warn(f"Skipping run record {path}: it has no run_id.", stacklevel=3)
        return None
    return rec


def load_run_results(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """All per-run records under ``run_dir/runs``, by run_id; corrupt files are skipped."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(run_dir) / RUNS_DIR).glob(f"*/{RESULT_FILE}")):
        rec = _read_record(path)
        if rec is not None:
            out[rec["run_id"]] = rec
    return out


def _plan_runs(run_dir: Path, plan: Any) -> list[dict[str, Any]] | None:
    """The planned runs as dicts: from ``plan`` (a SweepPlan or its dict) or plan.json."""
    if plan is None:
        if not (run_dir / PLAN_FILE).exists():
            return None
        plan = read_json(run_dir / PLAN_FILE, "plan")
    if hasattr(plan, "to_dict"):
        plan = plan.to_dict()
    runs = plan.get("runs") if isinstance(plan, dict) else None
    if not isinstance(runs, list):
        raise FlopsFitError(
            f"The plan in {run_dir} has no list of runs; re-create it with `flops-fit plan`."
        )
    return runs


def rebuild_results(run_dir: str | Path, plan: Any = None) -> list[dict[str, Any]]:
    """Rebuild ``run_dir/results.json`` from ``runs/*/result.json``, under a lock, atomically.

    One record per planned run, in plan order; planned runs without a record appear with
    status ``pending`` and their planned fields. Without a plan (none given, no plan.json)
    every run record is listed, sorted by run_id. Returns the list written.
    """
    run_dir = Path(run_dir)
    target = run_dir / RESULTS_FILE
    with file_lock(target):
        remove_stale_temp_files(run_dir, target.name)  # from a rebuild killed before its rename
        records = load_run_results(run_dir)
        planned = _plan_runs(run_dir, plan)
        if planned is None:
            out = [_as_read(records[k]) for k in sorted(records)]
        else:
            out = []
            for spec in planned:
                rec = records.get(spec["run_id"])
                differs = _differs_from_plan(rec, spec) if rec is not None else ""
                if differs:  # the fit never uses a record its plan does not describe
                    warnings.warn(f"Run {spec['run_id']}'s result.json has {differs}; it is "
                                  "left out of results.json (train again with train.force=true "
                                  "to redo it).", stacklevel=2)
                    rec = None
                if rec is None:
                    pending = RunRecord.planned(spec).to_dict()
                    out.append({k: pending[k] for k in _PENDING_ORDER})
                else:
                    out.append(_as_read(rec))
        atomic_write_json(target, out)
    return out


#: the fields of a run's record that must equal its plan's (the run it claims to be)
_PLANNED_FIELDS = ("compute_budget", "size_value", "num_params", "steps", "batch_size")


def _differs_from_plan(rec: dict[str, Any], spec: dict[str, Any]) -> str:
    """``"key=value, but the plan has other"`` for the first of :data:`_PLANNED_FIELDS` where a
    finished record disagrees with its planned run (empty when none does)."""
    if rec.get("status") not in ("completed", "diverged"):
        return ""
    for key in _PLANNED_FIELDS:
        if key in rec and key in spec and rec[key] is not None and rec[key] != spec[key]:
            return f"{key}={rec[key]!r}, but its plan has {spec[key]!r}"
    return ""


def _as_read(raw: dict[str, Any]) -> dict[str, Any]:
    """A run's record through :class:`RunRecord`, its keys in the order the file had them."""
    data = RunRecord.from_dict(raw).to_dict()  # the keys read, in schema order, extras last
    return {k: data[k] for k in raw}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, rename: never half-written."""
    try:
        with atomic_file(path, "wb") as fh:
            torch.save(state, fh)
    except OSError as exc:
        raise EnvironmentFailure(
            f"Cannot write {path}: {exc.strerror or exc}; free disk space or choose another "
            "run_dir."
        ) from exc


def load_checkpoint(path: str | Path, fallback: str = "it is not resumed from"
                    ) -> dict[str, Any] | None:
    """A checkpoint saved by :func:`save_checkpoint`, or None if missing or corrupt (warned in
    one line that ends with ``fallback``: where the caller goes on instead)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated / corrupt file: start the run afresh
        # torch's own message runs to a dozen lines (weights_only advice): its first line only
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        warnings.warn(f"Ignoring unreadable checkpoint {path} ({type(exc).__name__}: {first}); "
                      f"{fallback}.", stacklevel=2)
        return None
    if not isinstance(state, dict):
        warnings.warn(f"Ignoring checkpoint {path} (not a checkpoint); {fallback}.",
                      stacklevel=2)
        return None
    return state


def copy_metrics_prefix(src: Path, dst: Path, step: int) -> None:
    """Write ``dst`` as the lines of metrics file ``src`` up to ``step`` (atomically): a branched
    run's curve starts as its trunk's (train.reuse)."""
    lines = src.read_text(encoding="utf-8").splitlines() if src.exists() else []
    keep = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) > step:
                break
        except json.JSONDecodeError:
            break  # a half-written last line from a killed process
        keep.append(line + "\n")
    atomic_write_text(dst, "".join(keep))
