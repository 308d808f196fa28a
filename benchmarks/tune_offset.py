"""Does `flops-fit tune` find a best LR far from the built-in rule? (issue 23, item 8.)

    python benchmarks/tune_offset.py [--ks 1 0.1667 4] [--out /tmp/tune_offset] [-- OVERRIDES]

``ScaledGPT`` (below) is the default GPT with every weight stored divided by ``scale`` and
multiplied back in the forward pass: at initialisation it is the same function with the same
parameter count, and since AdamW's step does not depend on the scale of the gradient (up to
eps), its run at peak LR ``lr`` is the GPT's run at ``scale * lr``. Its best LR is therefore
the GPT's / ``scale`` = ``k`` x the GPT's for ``scale = 1/k``, exactly when gradient clipping
is off and weight decay is 0 (the default). So a tuner that works must find, at every size,
``best LR(scaled) / best LR(GPT)`` close to ``k``.

For each ``k`` this runs the real CLI, ``flops-fit tune budgets=smoke train.grad_clip=0``
(``k = 1`` the plain GPT, the others ``model._target_=tune_offset.ScaledGPT
+model.kwargs.scale=1/k``, with this folder as the working directory, so the CLI imports the
model as a user's would), each into its own run directory (reruns resume; delete ``--out`` to
measure again), and prints per size: the GPT's best LR, the scaled model's, their ratio over
``k`` (done when within [0.5, 2]), whether the best is inside the grid, the extensions used
(LRs past the first ``tune.grid_points``) and each tune's wall time. Any further arguments
are passed to every tune call (e.g. ``budgets.values=[6e11]``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.func import functional_call

from flops_fit.models.gpt import GPT

HERE = Path(__file__).resolve().parent


class ScaledGPT(nn.Module):
    """The default GPT with weights stored divided by ``scale``: its best LR is the GPT's /
    ``scale`` (``k`` x the GPT's at ``scale = 1/k``; gradient clipping off, weight decay 0)."""

    def __init__(self, width: int = 64, scale: float = 1.0, **kwargs) -> None:
        super().__init__()
        self.inner = GPT(width=width, **kwargs)
        self.seq_len = self.inner.seq_len
        self.scale = float(scale)
        with torch.no_grad():
            for p in self.inner.parameters():
                p.div_(self.scale)

    def embedding_parameters(self) -> list[nn.Parameter]:
        return self.inner.embedding_parameters()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        weights = {n: p * self.scale for n, p in self.inner.named_parameters()}
        return functional_call(self.inner, weights, (idx,))


def tune(k: float, run_dir: Path, extra: list[str]) -> tuple[dict, float, int]:
    """Run `flops-fit tune` for offset ``k``; (tuning.json, wall seconds, exit code)."""
    cmd = ["flops-fit", "tune", f"run_dir={run_dir}", "budgets=smoke", "train.grad_clip=0"]
    if k != 1.0:
        cmd += ["model._target_=tune_offset.ScaledGPT", f"+model.kwargs.scale={1.0 / k:.10g}"]
    cmd += extra
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, cwd=HERE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - t0
    path = run_dir / "tuning.json"
    return (json.loads(path.read_text()) if rc == 0 and path.exists() else {}), wall, rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=float, nargs="+", default=[1.0, 1 / 6, 4.0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/tune_offset"))
    ap.add_argument("--grid-points", type=int, default=5)  # conf/tune/default.yaml's
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    ks = [1.0] + [k for k in args.ks if k != 1.0]
    out: dict[float, tuple[dict, float, int]] = {}
    for k in ks:
        out[k] = tune(k, args.out.resolve() / f"k{k:.4g}", extra)

    gpt = {s["size_value"]: s for s in out[1.0][0].get("sizes", [])}
    print("\n| k | size | GPT best LR | model best LR | ratio / k | inside grid (GPT, model) "
          "| LRs tried (ext.) | tune wall | tuning / sweep FLOPs |")
    print("|---|---|---|---|---|---|---|---|---|")
    ok = True
    for k in ks:
        rec, wall, rc = out[k]
        if rc != 0:
            print(f"| {k:.3g} | exit {rc} | | | | | | {wall:.0f} s | |")
            ok = False
            continue
        for s in rec["sizes"]:
            g = gpt.get(s["size_value"])
            ratio = s["best_lr"] / g["best_lr"] / k if g else float("nan")
            inside = (g["interior"] if g else False) and s["interior"]
            good = inside and 0.5 <= ratio <= 2.0
            ok &= good
            ext = len(s["lrs"]) - args.grid_points
            print(f"| {k:.3g} | {rec['size_param']}={s['size_value']} (N={s['num_params']:,}) "
                  f"| {g['best_lr'] if g else float('nan'):.3g} | {s['best_lr']:.3g} "
                  f"| {ratio:.2f} | {'yes' if g and g['interior'] else 'NO'}, "
                  f"{'yes' if s['interior'] else 'NO'} | {len(s['lrs'])} ({ext}) "
                  f"| {wall:.0f} s | {rec['flops'] / rec['sweep_flops']:.1%} |")
        for note in rec.get("notes", []):
            print(f"  k={k:.3g} note: {note}")
    print("\ndone-when (every size inside its grid, ratio/k in [0.5, 2]):",
          "MET" if ok else "NOT MET")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
