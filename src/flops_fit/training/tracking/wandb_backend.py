"""Weights & Biases: project ``$WANDB_PROJECT`` (default ``flops-fit``), one group per run
directory, one W&B run per flops-fit run. Offline unless ``WANDB_MODE`` says otherwise (``wandb
sync <dir>`` uploads later); files under ``$WANDB_DIR``, else the run directory. Every metric is
plotted against ``step`` and can be against ``flops`` (W&B's x-axis picker)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flops_fit.training.tracking.backend import Backend, law_scalars


class WandbBackend(Backend):
    name = "wandb"

    def _init(self, prev_id: str | None, name: str, job_type: str,
              config: dict[str, Any] | None) -> Any:
        import wandb

        return wandb.init(
            project=os.environ.get("WANDB_PROJECT", "flops-fit"), group=self.sweep, name=name,
            job_type=job_type, id=prev_id or secrets.token_hex(4), resume="allow",
            config=config, mode=os.environ.get("WANDB_MODE", "offline"),
            dir=os.environ.get("WANDB_DIR", str(self.lay.root)), reinit="create_new",
            settings=wandb.Settings(console="off", silent=True))

    def start_run(self, run_id: str, hparams: dict[str, Any], prev_id: str | None,
                  resume_step: int, resume_mflops: int) -> str:
        self.run = self._init(prev_id, run_id, "train", hparams)
        self.run.define_metric("step")
        self.run.define_metric("flops")
        for k in ("train_loss", "val_loss", "lr", "tokens", "final_loss"):
            self.run.define_metric(k, step_metric="step")
        return self.run.id

    def log(self, values: dict[str, float], step: int, mflops: int) -> None:
        self.run.log({"step": step, "flops": mflops * 1e6, **values})

    def close(self) -> None:
        self.run.finish()

    def log_sweep(self, prev_id: str | None, laws: dict[str, Any] | None,
                  table: list[dict[str, Any]] | None, plots: list[Any]) -> str:
        import wandb

        run = self._init(prev_id, "sweep-fit", "analysis", None)
        try:
            payload: dict[str, Any] = {f"laws/{k}": v for k, v in law_scalars(laws).items()}
            if table:
                cols = list(table[0])
                payload["chinchilla_table"] = wandb.Table(
                    columns=cols, data=[[r[c] for c in cols] for r in table])
            for p in plots:
                if Path(p).suffix == ".png":
                    payload[f"plots/{Path(p).stem}"] = wandb.Image(str(p))
            run.log(payload)
            if laws is not None:
                run.summary["scaling_laws"] = laws
        finally:
            run.finish()
        return run.id
