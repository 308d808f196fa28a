"""MLflow: one experiment per run directory (named by
:func:`flops_fit.training.tracking.loggers.sweep_name`),
one MLflow run per flops-fit run; the file store ``<run_dir>/mlruns`` unless
``MLFLOW_TRACKING_URI`` is set. Used through ``MlflowClient`` (no global active run)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from flops_fit.training.tracking.backend import Backend, law_scalars, table_markdown

MLRUNS_DIR = "mlruns"


class MLflowBackend(Backend):
    name = "mlflow"

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # the file store: offline, in the run directory (MLflow 3 asks to opt in)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (self.lay.root / MLRUNS_DIR).absolute().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(self.sweep)
        if exp is None:
            try:
                return self.client.create_experiment(self.sweep)
            except Exception:  # another shard created it first
                exp = self.client.get_experiment_by_name(self.sweep)
                if exp is None:
                    raise
        return exp.experiment_id

    def _run(self, prev_id: str | None, name: str, tags: dict[str, str]) -> tuple[str, bool]:
        exp_id = self._client()
        if prev_id:
            try:
                self.client.update_run(prev_id, status="RUNNING")
                return prev_id, True
            except Exception:
                pass  # gone (another store): a new run
        return self.client.create_run(exp_id, run_name=name, tags=tags).info.run_id, False

    def start_run(self, run_id: str, hparams: dict[str, Any], prev_id: str | None,
                  resume_step: int, resume_mflops: int) -> str:
        from mlflow.entities import Param

        self.run_id, resumed = self._run(prev_id, run_id, {"flops_fit.run_id": run_id})
        if not resumed:
            params = [Param(k, str(v)[:6000]) for k, v in hparams.items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[i:i + 100])
        return self.run_id

    def log(self, values: dict[str, float], step: int, mflops: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        metrics = [Metric(k, float(v), ts, step) for k, v in values.items()]
        metrics += [Metric(f"vs_flops/{k}", float(v), ts, mflops) for k, v in values.items()
                    if k != "flops"]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)

    def log_sweep(self, prev_id: str | None, laws: dict[str, Any] | None,
                  table: list[dict[str, Any]] | None, plots: list[Any]) -> str:
        from mlflow.entities import Metric

        run_id, _ = self._run(prev_id, "sweep-fit", {"flops_fit.entry": "sweep"})
        ts = int(time.time() * 1000)
        if laws is not None:
            self.client.log_dict(run_id, laws, "scaling_laws.json")
            metrics = [Metric(k.replace("/", "."), v, ts, 0) for k, v in law_scalars(laws).items()]
            for i in range(0, len(metrics), 500):
                self.client.log_batch(run_id, metrics=metrics[i:i + 500])
        if table:
            self.client.log_text(run_id, table_markdown(table), "chinchilla_table.md")
        for p in plots:
            self.client.log_artifact(run_id, str(Path(p)), "plots")
        self.client.set_terminated(run_id)
        return run_id
