"""benchmarks/gpu_throughput.py runs (tiny sizes on CPU) and prints its table and numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO


def test_gpu_benchmark_script_runs_tiny_on_cpu():
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_throughput.py"),
                          "--tiny"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["width"] for r in result["rows"]] == [32, 48]
    assert all(r["ours"] > 0 and r["bare"] > 0 and r["mfu_bare"] > 0 for r in result["rows"])
    assert "ours/bare" in out.stdout
