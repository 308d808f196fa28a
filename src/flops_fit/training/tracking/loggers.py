"""Experiment trackers: TensorBoard, Weights & Biases and MLflow (``train.loggers``).

Each backend is an optional extra (``pip install 'flops-fit[tensorboard]'``, ``[wandb]``,
``[mlflow]``) imported lazily, only when named in ``train.loggers``.

* **Per run** (:class:`RunTracker`): every ``metrics.jsonl`` line (train loss, held-out loss,
  LR, tokens, FLOPs) is logged against the optimizer step and against FLOPs, and the run's spec
  as hyper-parameters.
* **Per sweep**: one TensorBoard logdir (``<run_dir>/tensorboard``), one MLflow experiment and
  one W&B group per run directory. After ``analyze``/``visualize`` the fitted laws, the
  Chinchilla table and the plots go to a sweep-level entry (:func:`log_sweep`).
* **Offline by default**: TensorBoard event files and MLflow's file store (``<run_dir>/mlruns``
  unless ``MLFLOW_TRACKING_URI`` is set) live in the run directory; W&B runs offline unless
  ``WANDB_MODE`` says otherwise (``wandb sync`` uploads later).
* **Never fatal**: a backend that fails (no network, a full disk) is reported once and
  dropped; the run goes on.
* **Resume**: each run's tracker ids are kept in ``runs/<run_id>/trackers.json``; a resumed
  run continues the same TensorBoard curve (events past the checkpoint are purged), MLflow run
  and W&B run.

FLOPs do not fit TensorBoard's or MLflow's integer step at real budgets (1e21 > 2**63), so the
FLOPs axis is in MFLOPs: ``vs_flops/<metric>`` at step ``flops // 1e6``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flops_fit.errors import FlopsFitError
from flops_fit.rundir import io as rundir
from flops_fit.rundir.layout import TRACKERS_FILE, Layout
from flops_fit.rundir.records import MetricsLine
from flops_fit.training.tracking.backend import PACKAGES, Backend, import_backend
from flops_fit.training.tracking.mlflow_backend import MLflowBackend
from flops_fit.training.tracking.tensorboard_backend import TensorBoardBackend
from flops_fit.training.tracking.wandb_backend import WandbBackend

#: train.loggers name -> its backend (one line per backend)
TRACKERS: dict[str, type[Backend]] = {
    "tensorboard": TensorBoardBackend, "wandb": WandbBackend, "mlflow": MLflowBackend,
}

__all__ = [ "RunTracker", "check_loggers", "log_sweep", "sweep_name"]

MFLOP = 1e6
BACKENDS = tuple(PACKAGES)  # the names train.loggers accepts


def check_loggers(names: Iterable[str]) -> None:
    """One sentence for an unknown logger name or a missing extra."""
    for name in names:
        if name not in BACKENDS:
            raise FlopsFitError(f"train.loggers: {name!r} is unknown; use any of "
                                f"{', '.join(BACKENDS)} (e.g. train.loggers=[tensorboard]).")
        import_backend(name)


def sweep_name(run_dir: Path) -> str:
    """A stable name for a run directory: its folder name and a hash of its absolute path."""
    path = str(Path(run_dir).resolve())
    return f"{Path(path).name}-{hashlib.sha1(path.encode()).hexdigest()[:6]}"


_SAID: set[str] = set()  # (logger, what) already reported by this process


def _say(msg: str, key: str | None = None) -> None:
    """A warning on stderr, once per ``key`` for this process."""
    if key is not None:
        if key in _SAID:
            return
        _SAID.add(key)
    print(f"flops-fit: warning: {msg}", file=sys.stderr, flush=True)


class RunTracker:
    """The loggers of one run; every call is safe (a failing backend is dropped, said once)."""

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends

    @classmethod
    def open(cls, names: list[str], run_dir: Path, spec: Any, hparams: dict[str, Any],
             resume_step: int, resume_flops: float) -> RunTracker:
        """Start (or, with ``resume_step`` > 0, continue) the run's entry in every backend."""
        if not names:
            return cls([])
        lay = Layout(Path(run_dir))
        ids_path = lay.run(spec.run_id) / TRACKERS_FILE
        ids = rundir.read_json(ids_path, "trackers") if ids_path.is_file() else {}
        if resume_step == 0:
            ids = {}  # a fresh start: new entries
        backends: list[Backend] = []
        for name in names:
            try:
                b = TRACKERS[name](lay, sweep_name(lay.root))
                ids[name] = b.start_run(spec.run_id, hparams, ids.get(name), resume_step,
                                        int(resume_flops // MFLOP))
                backends.append(b)
            except Exception as exc:  # never fatal
                _say(f"the {name} logger could not start ({type(exc).__name__}: {exc}); "
                     f"run {spec.run_id} goes on without it.", key=f"{name}:start")
        try:
            rundir.atomic_write_text(ids_path, json.dumps(ids, indent=2))
        except OSError as exc:
            _say(f"could not record the loggers' run ids ({exc}); a resume starts new entries.")
        return cls(backends)

    def _each(self, what: str, call: Any) -> None:
        for b in list(self.backends):
            try:
                call(b)
            except Exception as exc:  # said once, then the backend is dropped
                _say(f"the {b.name} logger failed to {what} ({type(exc).__name__}: {exc}); "
                     "the run goes on without it.", key=f"{b.name}:{what}")
                self.backends.remove(b)
                try:
                    b.close()
                except Exception:
                    pass

    def log(self, line: MetricsLine) -> None:
        """One metrics.jsonl line: against the step and against FLOPs (in MFLOPs)."""
        if not self.backends:
            return
        values = {k: v for k, v in (("train_loss", line.train_loss), ("val_loss", line.val_loss),
                                    ("lr", line.lr), ("tokens", float(line.tokens)),
                                    ("flops", float(line.flops))) if v is not None}
        if line.final:
            values = {"final_loss": line.val_loss} if line.val_loss is not None else {}
        self._each("log", lambda b: b.log(values, line.step, int(line.flops // MFLOP)))

    def close(self) -> None:
        self._each("close", lambda b: b.close())
        self.backends = []


def run_hparams(spec: Any, cfg: Any) -> dict[str, Any]:
    """The run's spec and train settings as flat hyper-parameters (scalars and strings)."""
    out: dict[str, Any] = {}
    d = asdict(spec) if hasattr(spec, "__dataclass_fields__") else dict(spec)
    for k, v in d.items():
        if k == "model_kwargs":
            out.update({f"model.{a}": b for a, b in v.items()})
        else:
            out[k] = v
    out.update({f"train.{k}": v for k, v in asdict(cfg).items() if k not in ("loggers",)})
    return {k: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v, default=str))
            for k, v in out.items() if v is not None}


def sweep_backends(run_dir: Path, names: list[str]) -> list[str]:
    """The loggers of a sweep: ``names``, else those its runs used (their trackers.json)."""
    if names:
        return list(names)
    found: set[str] = set()
    runs = Layout(Path(run_dir)).runs
    for p in runs.glob(f"*/{TRACKERS_FILE}") if runs.is_dir() else []:
        try:
            found.update(k for k in json.loads(p.read_text()) if k in BACKENDS)
        except (OSError, ValueError):
            continue
    return sorted(found)


def log_sweep(run_dir: Path, names: list[str], laws: dict[str, Any] | None = None,
              table: list[dict[str, Any]] | None = None,
              plots: list[Path] | None = None) -> None:
    """Log the fitted laws, the Chinchilla table and the plots to the sweep-level entry.

    Never fatal: a failing backend (or a missing extra) is one warning.
    """
    lay = Layout(Path(run_dir))
    names = sweep_backends(lay.root, names)
    if not names:
        return
    ids_path = lay.analysis_dir / TRACKERS_FILE
    try:
        ids = json.loads(ids_path.read_text()) if ids_path.is_file() else {}
    except (OSError, ValueError):
        ids = {}
    for name in names:
        try:
            b = TRACKERS[name](lay, sweep_name(lay.root))
            ids[name] = b.log_sweep(ids.get(name), laws, table, plots or [])
        except Exception as exc:
            _say(f"the {name} logger could not log the sweep's fit ({type(exc).__name__}: "
                 f"{exc}); the files in {lay.root} have it all.")
    try:
        ids_path.parent.mkdir(parents=True, exist_ok=True)
        rundir.atomic_write_text(ids_path, json.dumps(ids, indent=2))
    except OSError:
        pass


def log_fit(run_dir: str | Path, names: list[str], analysis: Any) -> None:
    """After ``analyze``: the fitted laws and the Chinchilla table to the sweep-level entry."""
    rows = []
    for p in getattr(analysis, "predictions", []) or []:
        try:
            rows.append({"compute": float(p["target_compute"]), "N": float(p["optimal_params"]),
                         "D": float(p["optimal_tokens"]), "D/N": float(p["tokens_per_param"]),
                         "loss": float(p["expected_loss"])})
        except (KeyError, TypeError, ValueError):
            continue
    log_sweep(Path(run_dir), names, laws=analysis.to_dict(), table=rows)


def log_plots(run_dir: str | Path, names: list[str]) -> None:
    """After ``visualize``: the plots (PNG) to the sweep-level entry."""
    plots = sorted(Layout(Path(run_dir)).plots.glob("*.png"))
    log_sweep(Path(run_dir), names, plots=plots)
