"""Training throughput of flops-fit's trainer vs a minimal hand-written PyTorch loop.

    python benchmarks/train_throughput.py [--widths 32 64 128] [--steps 30] [--explore]

For the default GPT at a few widths it prints tokens/s of a real ``TrainingRunner`` run
(data sampling, LR schedule, clipping, logging included; evaluation excluded) and of a minimal
loop with the same model, batch shape and optimizer, measured in the same process and
interleaved (best of ``--repeats``), plus the achieved FLOP/s (measured training FLOPs per
token × tokens/s) as a fraction of this machine's fp32 matmul peak (a large ``torch.mm``).
``--explore`` adds a table of knobs (optimizer kernels, batch shape, threads, torch.compile).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from flops_fit.config import DatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.models.gpt import GPT
from flops_fit.planning.flops import count_model
from flops_fit.planning.planner import RunSpec
from flops_fit.training.runner import TrainingRunner
from flops_fit.training.schedule import make_optimizer

GPT_KW = {"vocab_size": 256, "head_dim": 16, "width_per_layer": 32}


def matmul_peak(n: int = 2048, seconds: float = 2.0) -> float:
    """fp32 FLOP/s of a large square matmul on the CPU (best of repeated timings)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        torch.mm(a, b)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def make_spec(width: int, steps: int, cfg: TrainConfig) -> RunSpec:
    kw = {**GPT_KW, "seq_len": cfg.seq_len, "width": width}
    c = count_model(GPT, kw)
    d = steps * cfg.batch_size * cfg.seq_len
    return RunSpec(f"bench_w{width}", c.flops_per_token * d, "width", width, c.num_params,
                   c.num_params_non_embedding, c.flops_per_token, d, steps, cfg.batch_size,
                   cfg.seq_len, c.flops_per_token * d, 6.0 * c.num_params * d,
                   d / c.num_params, kw)


WARMUP = 10  # untimed steps, for both loops (first-step allocations)


def ours(spec: RunSpec, cfg: TrainConfig, data) -> float:
    """tokens/s of a real TrainingRunner run after its first WARMUP steps (from metrics.jsonl,
    whose time_s is the run's training time: evaluation excluded)."""
    spec = replace(spec, steps=spec.steps + WARMUP, num_tokens=spec.num_tokens
                   + WARMUP * spec.batch_size * spec.seq_len)
    with tempfile.TemporaryDirectory() as tmp:
        rec = TrainingRunner(GPT, data, replace(cfg, log_every=WARMUP)).run(spec, Path(tmp))
        assert rec["status"] == "completed", rec.get("error")
        lines = [json.loads(x) for x in
                 (Path(tmp) / "runs" / spec.run_id / "metrics.jsonl").read_text().splitlines()]
    t = {x["step"]: x["time_s"] for x in lines if "time_s" in x}
    timed = spec.steps - WARMUP
    return timed * spec.batch_size * spec.seq_len / (t[spec.steps] - t[WARMUP])


def minimal(spec: RunSpec, cfg: TrainConfig, compile_: bool = False, fused: bool = True) -> float:
    """tokens/s of the textbook loop: forward, cross entropy, backward, clip, AdamW step."""
    torch.manual_seed(0)
    model = GPT(**spec.model_kwargs)
    if fused:
        opt = make_optimizer(model, 1e-3, cfg, torch.device("cpu"))
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    fwd = torch.compile(model) if compile_ else model
    x = torch.randint(0, 256, (spec.batch_size, spec.seq_len))
    y = torch.randint(0, 256, (spec.batch_size, spec.seq_len))

    def step() -> None:
        logits = fwd(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(WARMUP):  # warm-up (and compilation)
        step()
    t = time.perf_counter()
    for _ in range(spec.steps):
        step()
    return spec.steps * spec.batch_size * spec.seq_len / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (best counts)")
    ap.add_argument("--explore", action="store_true", help="also time knobs (slower)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    console = Console(width=150)
    # a fixed thread count for both loops (train.threads=0 would add the thread tuner's probes)
    base = TrainConfig(device="cpu", eval_tokens=4096, periodic_eval_tokens=512, log_every=10,
                       threads=torch.get_num_threads())
    data = build_data(DatasetConfig(), base.seq_len)
    peak = matmul_peak()
    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul "
                  f"peak (2048x2048 mm): {peak / 1e9:.1f} GFLOP/s")

    t = Table(title=f"GPT training throughput (batch {base.batch_size} x seq {base.seq_len}, "
              f"fp32, AdamW fused, clip {base.grad_clip})")
    for col in ("width", "layers", "N", "FLOPs/token", "ours tok/s", "minimal tok/s", "ratio",
                "GFLOP/s", "of peak"):
        t.add_column(col, justify="right")
    for w in args.widths:
        # an effectively endless eval interval: the timed loop is training only
        cfg = replace(base, eval_every=10**9)
        spec = make_spec(w, args.steps, cfg)
        a = b = 0.0
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            a = max(a, ours(spec, cfg, data))
            b = max(b, minimal(spec, cfg))
        flops = a * spec.flops_per_token
        t.add_row(str(w), str(max(1, w // GPT_KW["width_per_layer"])),
                  f"{spec.num_params:,}", f"{spec.flops_per_token:,.0f}", f"{a:,.0f}",
                  f"{b:,.0f}", f"{a / b:.3f}", f"{flops / 1e9:.1f}", f"{flops / peak:.1%}")
    console.print(t)

    if args.explore:
        explore(console, base, peak, args)


def explore(console: Console, base: TrainConfig, peak: float, args) -> None:
    """Knobs, on the minimal loop: optimizer kernels, batch shape, threads, compile."""
    t = Table(title="Knobs (minimal loop, tokens/s; FLOP/s as fraction of peak)")
    for col in ("width", "variant", "tok/s", "of peak"):
        t.add_column(col, justify="right")
    n_threads = torch.get_num_threads()
    for w in args.widths:
        variants = [
            ("batch 32 x 128, fused AdamW", dict(), {}),
            ("batch 32 x 128, foreach AdamW", dict(), {"fused": False}),
            ("batch 16 x 128", dict(batch_size=16), {}),
            ("batch 64 x 128", dict(batch_size=64), {}),
            ("batch 64 x 64", dict(batch_size=64, seq_len=64), {}),
            ("1 thread", dict(threads=1), {}),
            ("foreach AdamW, no clipping", dict(grad_clip=0.0), {"fused": False}),
            ("torch.compile", dict(), {"compile_": True}),
        ]
        for name, over, kw in variants:
            cfg = replace(base, **over)
            torch.set_num_threads(cfg.threads)
            spec = make_spec(w, args.steps, cfg)
            try:
                tps = max(minimal(spec, cfg, **kw) for _ in range(2))
            except Exception as exc:  # e.g. no C++ compiler for inductor
                t.add_row(str(w), name, f"failed: {type(exc).__name__}", "")
                continue
            t.add_row(str(w), name, f"{tps:,.0f}", f"{tps * spec.flops_per_token / peak:.1%}")
        torch.set_num_threads(n_threads)
    console.print(t)


if __name__ == "__main__":
    main()
