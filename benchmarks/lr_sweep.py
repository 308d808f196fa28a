"""Peak-LR sweep of the default GPT under train.schedule=cosine and wsd: calibrates the LR rule.

    python benchmarks/lr_sweep.py [--widths 16 64] [--budget 3e11] [--mults 0.25 0.5 1 2 4]

For each width (sizes of the default plan) every run spends the same ``--budget`` FLOPs on the
stdlib corpus; the peak LR is ``mult`` x the size rule of conf/train/default.yaml
(``schedule.lr_for_size``), for both schedules. It prints a table (size, N_non_embedding, steps,
schedule, LR, final loss) and, per size and schedule, the best multiplier: Hägele et al. found
the best constant LR of wsd about half the best cosine peak; this says whether that holds here.
Real training with train.threads=1 (20 runs, about 12 minutes on a busy 2-core machine); the
numbers of the last run are in conf/train/default.yaml.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flops_fit.config import DatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.models.gpt import GPT
from flops_fit.planning.flops import count_model
from flops_fit.planning.planner import RunSpec
from flops_fit.training.runner import TrainingRunner
from flops_fit.training.schedule import lr_for_size

GPT_KW = {"vocab_size": 256, "seq_len": 128, "head_dim": 16, "width_per_layer": 32,
          "min_layers": 2}  # the default model's kwargs (conf/model/gpt.yaml)


def make_spec(width: int, budget: float, cfg: TrainConfig) -> RunSpec:
    """The run of ``width`` spending ``budget`` FLOPs in whole steps (as the planner makes it)."""
    kw = {**GPT_KW, "width": width}
    c = count_model(GPT, kw)
    tokens_per_step = cfg.batch_size * cfg.seq_len
    steps = round(budget / c.flops_per_token / tokens_per_step)
    d = steps * tokens_per_step
    return RunSpec(f"lr_w{width}", budget, "width", width, c.num_params,
                   c.num_params_non_embedding, c.flops_per_token, d, steps, cfg.batch_size,
                   cfg.seq_len, c.flops_per_token * d, 6.0 * c.num_params * d,
                   d / c.num_params, kw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--budget", type=float, default=3e11)
    ap.add_argument("--mults", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0, 4.0])
    ap.add_argument("--schedules", nargs="+", default=["cosine", "wsd"])
    ap.add_argument("--eval-tokens", type=int, default=65536)
    args = ap.parse_args()

    base = TrainConfig(threads=1, device="cpu", eval_tokens=args.eval_tokens, eval_every=10**6,
                       checkpoint_every_s=1e9)
    data = build_data(DatasetConfig(), base.seq_len, base.batch_size)
    table = Table(title=f"Peak-LR sweep, {args.budget:.2g} FLOPs per run (stdlib corpus, 1 thread)")
    for col in ("width", "N_ne", "steps", "schedule", "mult", "LR", "final loss", "s"):
        table.add_column(col, justify="right")
    best: dict[tuple[int, str], tuple[float, float, float]] = {}
    t_all = time.perf_counter()
    for width in args.widths:
        spec = make_spec(width, args.budget, base)
        rule = lr_for_size(spec.num_params_non_embedding, base)
        for schedule in args.schedules:
            for mult in args.mults:
                cfg = replace(base, schedule=schedule, lr=rule * mult)
                with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t = time.perf_counter()
                    rec = TrainingRunner(GPT, data, cfg).run(spec, Path(tmp))
                    dt = time.perf_counter() - t
                loss = rec["final_loss"] if rec["status"] == "completed" else float("nan")
                table.add_row(str(width), f"{spec.num_params_non_embedding:,}", str(spec.steps),
                              schedule, f"{mult:g}", f"{rule * mult:.3g}", f"{loss:.4f}",
                              f"{dt:.0f}")
                key = (width, schedule)
                if loss == loss and (key not in best or loss < best[key][2]):
                    best[key] = (mult, rule * mult, loss)
                print(f"w{width} {schedule} x{mult:g} lr={rule * mult:.3g} loss={loss:.4f} "
                      f"({dt:.0f}s)", flush=True)
    console = Console()
    console.print(table)
    summary = Table(title="Best peak LR per size (x the cosine rule of conf/train/default.yaml)")
    for col in ("width", "schedule", "best mult", "best LR", "loss"):
        summary.add_column(col, justify="right")
    for (width, schedule), (mult, lr, loss) in sorted(best.items()):
        summary.add_row(str(width), schedule, f"{mult:g}", f"{lr:.3g}", f"{loss:.4f}")
    console.print(summary)
    console.print(f"total {time.perf_counter() - t_all:.0f}s")


if __name__ == "__main__":
    main()
