"""The run directory: atomic JSON writes, checked JSON reads, locks, and the results.json rebuild.

Layout (all relative to ``run_dir``)::

    plan.json                     SweepPlan
    runs/<run_id>/result.json     one run's record, written once, atomically
    runs/<run_id>/metrics.jsonl   its training curve
    runs/<run_id>/checkpoint.pt   periodic checkpoint (deleted when the run completes)
    results.json                  all run records, rebuilt from runs/*/result.json under a lock
    analysis/scaling_laws.json    the fit
    plots/, report.html           the pictures

Every file that another process may read is written to a temporary file in the same folder,
flushed, fsynced and renamed over the target, so a reader sees the old or the new file, never half.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock

from flops_fit.errors import FlopsFitError

LOCK_TIMEOUT_S = 600.0


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


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise FlopsFitError(
            f"Cannot write {path}: {exc.strerror or exc}; choose a writable run_dir."
        ) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise FlopsFitError(
            f"Cannot write {path}: {exc.strerror or exc}; free disk space or choose another run_dir."
        ) from exc
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
        raise FlopsFitError(f"Cannot read {what} {path}: {exc.strerror or exc}.") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FlopsFitError(
            f"{what.capitalize()} {path} is not valid JSON (line {exc.lineno}: {exc.msg}); "
            "delete or restore it and run the stage that writes it again."
        ) from exc


def file_lock(path: str | Path, timeout: float = LOCK_TIMEOUT_S) -> FileLock:
    """A cross-process lock on ``path`` (a ``.lock`` file beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=timeout)
