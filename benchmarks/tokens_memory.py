"""Peak memory of dataset=tokens: a 2 GB train.bin against a 20 MB one.

The token files are memory-mapped, so a run reads only the pages its windows touch; the peak
resident memory (ru_maxrss) of a process that trains a few steps must not grow with the file.
Builds both files (sparse, with real token ids written in chunks through np.memmap at the
places the sampler reads: every window start is uniform over the file, so the ids are written
everywhere in 1 MiB stripes 64 MiB apart and the rest is zeros, which are valid ids), trains
each in a fresh subprocess and prints a table. Deletes the files afterwards.

    python benchmarks/tokens_memory.py [--big-gb 2] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys
from flops_fit.config import TokensDatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.models.gpt import GPT
from flops_fit.training.runner import default_loss_fn
import torch
torch.set_num_threads(1)
folder, steps = sys.argv[1], int(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
data = build_data(TokensDatasetConfig(path=folder, dtype="uint16", vocab_size=8192), 128, 16)
model = GPT(width=64, vocab_size=8192, seq_len=128)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
data.seed(0)
for _ in range(steps):
    x, y = data.train_batch(16)
    loss = default_loss_fn(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
val = sum(default_loss_fn(model(x), y).item() for x, y in data.val_batches(16384, 16))
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "before_kb": before, "train_tokens": data.train_size,
                  "loss": float(loss)}))
"""


def write_tokens(folder: Path, n_bytes: int, stripe: int = 1 << 20, gap: int = 64 << 20) -> None:
    """train.bin of ``n_bytes`` (sparse) with random ids in stripes; a 2 MB val.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = n_bytes // 2
    with open(folder / "train.bin", "wb") as fh:
        fh.truncate(n * 2)  # sparse: reads of untouched pages give zeros
    ids = np.memmap(folder / "train.bin", dtype=np.uint16, mode="r+")
    for start in range(0, n, gap // 2):  # real ids, written in chunks
        stop = min(n, start + stripe // 2)
        ids[start:stop] = rng.integers(0, 8192, stop - start, dtype=np.uint16)
    ids.flush()
    del ids
    rng.integers(0, 8192, 1 << 20, dtype=np.uint16).tofile(folder / "val.bin")


def measure(folder: Path, steps: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(steps)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big-gb", type=float, default=2.0)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ff-tokens-mem-"))
    try:
        big = int(args.big_gb * (1 << 30))
        sizes = {"small (20 MB)": 20 << 20, f"big ({args.big_gb:g} GB)": big}
        rows = []
        for label, n_bytes in sizes.items():
            folder = root / label.split()[0]
            write_tokens(folder, n_bytes)
            r = measure(folder, args.steps)
            rows.append((label, r))
            shutil.rmtree(folder)
        print(f"{'train.bin':<16} {'tokens':>14} {'peak RSS (MB)':>14}")
        for label, r in rows:
            print(f"{label:<16} {r['train_tokens']:>14,} {r['maxrss_kb'] / 1024:>14.1f}")
        diff = (rows[1][1]["maxrss_kb"] - rows[0][1]["maxrss_kb"]) / 1024
        print(f"peak RSS difference: {diff:+.1f} MB (target: at most ~100 MB)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
