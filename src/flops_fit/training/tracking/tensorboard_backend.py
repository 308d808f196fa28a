"""TensorBoard: event files under ``<run_dir>/tensorboard/<run_id>`` (``tensorboard --logdir
<run_dir>/tensorboard`` shows the sweep). The FLOPs axis is its own writer
(``<run_id>/vs_flops``, step = MFLOPs), so that a resume's purge of the step axis cannot touch
it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flops_fit.rundir.layout import TENSORBOARD_DIR
from flops_fit.training.tracking.backend import Backend, law_scalars, table_markdown

SWEEP_ENTRY = "sweep-fit"


class TensorBoardBackend(Backend):
    name = "tensorboard"

    def _writer(self, logdir: Path, purge_step: int | None) -> Any:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard extra
        return SummaryWriter(str(logdir), purge_step=purge_step, flush_secs=10)

    def start_run(self, run_id: str, hparams: dict[str, Any], prev_id: str | None,
                  resume_step: int, resume_mflops: int) -> str:
        from torch.utils.tensorboard.summary import hparams as hp_summary
        logdir = self.lay.root / TENSORBOARD_DIR / run_id
        resumed = resume_step > 0
        # purge_step: events a killed process logged past the checkpoint are dropped on read
        self.by_step = self._writer(logdir, resume_step if resumed else None)
        self.by_flops = self._writer(logdir / "vs_flops", resume_mflops if resumed else None)
        if not resumed:
            exp, ssi, sei = hp_summary(hparams, {"final_loss": float("nan")})
            for s in (exp, ssi, sei):
                self.by_step.file_writer.add_summary(s)
        return str(logdir.relative_to(self.lay.root))

    def log(self, values: dict[str, float], step: int, mflops: int) -> None:
        for k, v in values.items():
            self.by_step.add_scalar(k, v, step)
            if k not in ("flops",):
                self.by_flops.add_scalar(f"vs_flops/{k}", v, mflops)

    def close(self) -> None:
        for w in (self.by_step, self.by_flops):
            w.close()

    def log_sweep(self, prev_id: str | None, laws: dict[str, Any] | None,
                  table: list[dict[str, Any]] | None, plots: list[Any]) -> str:
        import matplotlib.image as mpimg

        logdir = self.lay.root / TENSORBOARD_DIR / SWEEP_ENTRY
        w = self._writer(logdir, None)
        try:
            if laws is not None:
                for k, v in law_scalars(laws).items():
                    w.add_scalar(f"laws/{k}", v, 0)
            if table:
                w.add_text("chinchilla_table", table_markdown(table), 0)
            for p in plots:
                if Path(p).suffix == ".png":
                    img = mpimg.imread(str(p))[..., :3]  # (H, W, 3) floats in [0, 1]
                    w.add_image(f"plots/{Path(p).stem}", img, 0, dataformats="HWC")
        finally:
            w.close()
        return str(logdir.relative_to(self.lay.root))
