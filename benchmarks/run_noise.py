"""Seed-to-seed noise of a run's final loss under candidate training recipes, per FLOP spent.

    python benchmarks/run_noise.py [--seeds 5] [--widths 32 64] [--budgets 5e11 1e12] [--jobs 2]

Each point of an IsoFLOP sweep is one run, and its final loss scatters from seed to seed (data
order and initialisation): that scatter is the noise every fit must see through. For each
recipe (a set of ``train.*`` overrides on the default wsd recipe), width and budget, this trains
``--seeds`` runs that differ only in ``train.seed`` and prints the mean final loss, its sd
across seeds, and the FLOPs of one run (training plus the final evaluation's forward passes).
A recipe helps when it lowers the sd at no more cost; ``sd x sqrt(cost / default cost)``
compares recipes of different cost (averaging k runs divides the sd by sqrt(k)).

Runs train separately (no shared trunks), one thread each, ``--jobs`` at a time, on the
stdlib corpus. The numbers of the last run are in docs/measurements.md ("Run noise").
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from lr_sweep import make_spec
from rich.console import Console
from rich.table import Table

from flops_fit.config import DatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.models.gpt import GPT
from flops_fit.training.runner import TrainingRunner

#: name -> train.* overrides on the default recipe (conf/train/default.yaml)
RECIPES: dict[str, dict[str, object]] = {
    "default (wsd, 20% 1-sqrt cooldown to 0.1x)": {},
    "cooldown to 0": {"min_lr_ratio": 0.0},
    "cooldown 40% of steps": {"cooldown_fraction": 0.4},
    "eval tokens x4 (1M)": {"eval_tokens": 4 * 262_144},
}

_DATA = None


def _train(job: tuple[str, int, float, int]) -> tuple[str, int, float, int, float, float]:
    """One run: (recipe, width, budget, seed, final_loss, FLOPs incl. evaluation)."""
    global _DATA
    recipe, width, budget, seed = job
    base = TrainConfig(threads=1, device="cpu", checkpoint_every_s=1e9, seed=seed)
    cfg = replace(base, **RECIPES[recipe])
    if _DATA is None:
        _DATA = build_data(DatasetConfig(), base.seq_len, base.batch_size)
    spec = make_spec(width, budget, cfg)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = TrainingRunner(GPT, _DATA, cfg).run(spec, Path(tmp))
    loss = rec["final_loss"] if rec["status"] == "completed" else math.nan
    # periodic evaluations too: ~10 points of periodic_eval_tokens forward passes
    eval_tokens = cfg.eval_tokens + 10 * min(cfg.periodic_eval_tokens, spec.num_tokens // 50)
    flops = spec.flops + spec.flops_per_token / 3 * eval_tokens  # forward = 1/3 of a step
    return recipe, width, budget, seed, loss, flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--budgets", type=float, nargs="+", default=[5e11, 1e12])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    jobs = [(r, w, b, s) for r in args.recipes for w in args.widths for b in args.budgets
            for s in range(args.seeds)]
    t0 = time.perf_counter()
    out: dict[tuple[str, int, float], list[tuple[float, float]]] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for recipe, width, budget, seed, loss, flops in pool.map(_train, jobs):
            out.setdefault((recipe, width, budget), []).append((loss, flops))
            print(f"{recipe} w{width} C={budget:.2g} seed {seed}: {loss:.4f}", flush=True)
    table = Table(title=f"Final-loss noise across {args.seeds} seeds (stdlib corpus, 1 thread)")
    for col in ("recipe", "width", "budget", "mean loss", "sd", "sd %", "FLOPs/run",
                "sd x sqrt(cost/default)"):
        table.add_column(col, justify="right")
    default = args.recipes[0]
    for (recipe, width, budget), rows in out.items():
        losses = [x for x, _ in rows if x == x]
        cost = statistics.fmean(f for _, f in rows)
        ref = statistics.fmean(f for _, f in out[(default, width, budget)])
        mean = statistics.fmean(losses)
        sd = statistics.stdev(losses) if len(losses) > 1 else math.nan
        table.add_row(recipe, str(width), f"{budget:.2g}", f"{mean:.4f}", f"{sd:.4f}",
                      f"{100 * sd / mean:.2f}", f"{cost:.3g}", f"{sd * math.sqrt(cost / ref):.4f}")
    console = Console(width=160)
    console.print(table)
    console.print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
