"""What every tracker backend is: :class:`Backend`, its optional library, and the sweep-level
scalars and table it logs. Each backend (one module each) imports its library lazily (an
optional extra), so flops-fit itself never needs them."""

from __future__ import annotations

import importlib
from typing import Any

from flops_fit.errors import FlopsFitError
from flops_fit.rundir.layout import Layout

#: logger name -> the package its extra installs
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def import_backend(name: str) -> Any:
    """The backend's library, or one sentence naming the extra that installs it."""
    try:
        return importlib.import_module(PACKAGES[name])
    except ImportError as exc:
        raise FlopsFitError(
            f"train.loggers names {name} but {PACKAGES[name]} is not installed; "
            f"pip install 'flops-fit[{name}]' (or drop it from train.loggers).") from exc


class Backend:
    """One tracker: a run's entry (start/log/close) and the sweep-level entry (log_sweep)."""

    name = ""

    def __init__(self, lay: Layout, sweep: str) -> None:
        import_backend(self.name)
        self.lay, self.sweep = lay, sweep

    def start_run(self, run_id: str, hparams: dict[str, Any], prev_id: str | None,
                  resume_step: int, resume_mflops: int) -> str:
        raise NotImplementedError

    def log(self, values: dict[str, float], step: int, mflops: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def log_sweep(self, prev_id: str | None, laws: dict[str, Any] | None,
                  table: list[dict[str, Any]] | None, plots: list[Any]) -> str:
        raise NotImplementedError


def law_scalars(laws: dict[str, Any] | None) -> dict[str, float]:
    """The fitted numbers of scaling_laws.json as flat ``key/sub`` scalars."""
    out: dict[str, float] = {}

    def walk(prefix: str, v: Any, depth: int) -> None:
        if isinstance(v, bool) or depth > 3:
            return
        if isinstance(v, (int, float)):
            out[prefix] = float(v)
        elif isinstance(v, dict):
            for k, w in v.items():
                walk(f"{prefix}/{k}" if prefix else str(k), w, depth + 1)

    walk("", laws or {}, 0)
    return out


def table_markdown(rows: list[dict[str, Any]] | None) -> str:
    """The Chinchilla table rows as a markdown table."""
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c])
                                       for c in cols) + " |")
    return "\n".join(lines)
