"""GPU throughput and MFU of flops-fit's trainer vs a bare training loop of the same model.

    python benchmarks/gpu_throughput.py            # CUDA: ~10M, 50M, 125M, 350M parameters
    python benchmarks/gpu_throughput.py --tiny     # CPU: tiny sizes, a test of the script

For the default GPT family (head_dim 16, one layer per 32 of width) at widths 304, 512, 704 and
960 (~10M, 50M, 130M, 330M parameters) it prints tokens/s and MFU of (a) a real
``TrainingRunner`` run (sampling, schedule, clipping, logging; evaluation excluded) and (b) a
bare loop (forward, loss, backward, clip, AdamW), each with bf16 autocast, eager and
``torch.compile``. MFU = measured training FLOPs per token (flops.py) x tokens/s / peak, the
peak from devices.GPU_PEAK_BF16 by device name, else a measured bf16 matmul. Targets: ours >=
0.95x bare at every size; >= 40% MFU at 125M on an H100/H200.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import replace

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from train_throughput import (  # benchmarks/ is on sys.path: the same spec and runner timing
    WARMUP,
    make_spec,
    ours,
)

from flops_fit.config import DatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.models.gpt import GPT
from flops_fit.planning.planner import RunSpec
from flops_fit.training.devices import known_peak
from flops_fit.training.schedule import make_optimizer


def matmul_peak(device: torch.device, n: int = 4096, seconds: float = 2.0) -> float:
    """bf16 (CUDA) or fp32 (CPU) FLOP/s of a large square matmul, best of repeats."""
    dt = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dt) for _ in range(2))
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare(spec: RunSpec, cfg: TrainConfig, device: torch.device, compile_: bool) -> float:
    """tokens/s of the textbook loop on ``device`` (bf16 autocast on CUDA)."""
    torch.manual_seed(0)
    model = GPT(**spec.model_kwargs).to(device)
    opt = make_optimizer(model, 1e-4, cfg, device)
    fwd = torch.compile(model) if compile_ else model
    x = torch.randint(0, 256, (spec.batch_size, spec.seq_len), device=device)
    y = torch.randint(0, 256, (spec.batch_size, spec.seq_len), device=device)
    amp = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = fwd(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(WARMUP):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(spec.steps):
        step()
    _sync(device)
    return spec.steps * spec.batch_size * spec.seq_len / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU, tiny sizes: test the script")
    ap.add_argument("--widths", type=int, nargs="*")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        widths, steps, bs, sl = args.widths or [32, 48], 5, 4, 32
    else:
        widths, steps, bs, sl = args.widths or [304, 512, 704, 960], args.steps, \
            args.batch_size, args.seq_len
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = known_peak(name) if device.type == "cuda" else None
    source = "table"
    if peak is None:
        peak, source = matmul_peak(device, 512 if args.tiny else 8192,
                                   0.3 if args.tiny else 2.0), "measured matmul"
    cfg = TrainConfig(batch_size=bs, seq_len=sl, device=str(device), threads=1 if args.tiny
                      else 0, eval_tokens=bs * sl, periodic_eval_tokens=bs * sl,
                      dtype="auto", checkpoint_every_s=1e9)
    data = build_data(DatasetConfig(max_bytes=400_000 if args.tiny else 20_000_000), sl)
    modes = [False] if args.no_compile or args.tiny else [False, True]
    table = Table(title=f"{name}: peak {peak / 1e12:.1f} TFLOP/s ({source}), batch {bs}x{sl}")
    for col in ("width", "params", "compile", "ours tok/s", "bare tok/s", "ours/bare",
                "ours MFU", "bare MFU"):
        table.add_column(col, justify="right")
    rows = []
    for w in widths:
        spec = make_spec(w, steps, cfg)
        for comp in modes:
            c = replace(cfg, compile=comp)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a, b = ours(spec, c, data), bare(spec, c, device, comp)
            fpt = spec.flops_per_token
            row = {"width": w, "params": spec.num_params, "compile": comp, "ours": a, "bare": b,
                   "ratio": a / b, "mfu_ours": a * fpt / peak, "mfu_bare": b * fpt / peak}
            rows.append(row)
            table.add_row(str(w), f"{spec.num_params / 1e6:.1f}M", str(comp), f"{a:,.0f}",
                          f"{b:,.0f}", f"{a / b:.2f}", f"{row['mfu_ours']:.1%}",
                          f"{row['mfu_bare']:.1%}")
    Console(width=140).print(table)
    print(json.dumps({"device": name, "peak": peak, "rows": rows}))


if __name__ == "__main__":
    main()
