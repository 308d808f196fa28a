"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
CONF = REPO / "conf"
FIXTURES = TESTS / "fixtures"
FIXTURE_V0_1_0 = FIXTURES / "rundir_v0_1_0"


def run_cli(*args: str, cwd: str | Path | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m flops_fit`` as a user would, capturing output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "flops_fit", *args], cwd=cwd or REPO, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )


def reference_csv() -> Path:
    """tests/data copy first, then ../shared/reference, then $FLOPS_FIT_REFERENCE_CSV."""
    candidates = [TESTS / "data" / "chinchilla_epoch.csv",
                  REPO.parent / "shared" / "reference" / "chinchilla_epoch.csv"]
    if os.environ.get("FLOPS_FIT_REFERENCE_CSV"):
        candidates.append(Path(os.environ["FLOPS_FIT_REFERENCE_CSV"]))
    for p in candidates:
        if p.is_file():
            return p
    pytest.skip("chinchilla_epoch.csv not found")


@pytest.fixture
def cli():
    return run_cli
