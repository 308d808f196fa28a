"""Shared helpers of the multirun, fault, cron and bad-input tests."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"


def load_stress() -> ModuleType:
    """``scripts/stress.py`` as a module (the tests run bounded versions of its experiments)."""
    if "flops_fit_stress" in sys.modules:
        return sys.modules["flops_fit_stress"]
    spec = importlib.util.spec_from_file_location("flops_fit_stress",
                                                  REPO / "scripts" / "stress.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["flops_fit_stress"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


stress = load_stress()

#: One budget, four sizes (widths 16-64, 16-238 steps of 256 tokens): ~2 s of training.
TINY = stress.plan_overrides([3e9], 4)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), but Hydra's ``.hydra`` record of
    the latest command, which every command rewrites by design."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".hydra" not in p.relative_to(folder).parts}


def assert_kept(before: dict[str, bytes], folder: Path) -> None:
    """Every file of ``before`` is still there, byte for byte (new files are allowed)."""
    after = snapshot(folder)
    lost = [k for k in before if k not in after]
    changed = [k for k in before if k in after and after[k] != before[k]]
    assert not lost and not changed, f"lost {lost}, changed {changed}"


def one_sentence(out: Any, *needles: str, code: int | None = None) -> str:
    """Assert a CLI failure: non-zero exit, no traceback, one ``flops-fit:`` line with needles."""
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    if code is not None:
        assert out.returncode == code, text
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("flops-fit:")]
    assert len(lines) == 1, text
    for needle in needles:
        assert needle in lines[0], text
    return lines[0]


LAW = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}


def synthetic_records(budgets: tuple[float, ...] = (1e17, 1e18, 1e19), sizes: int = 5,
                      completed: int | None = None) -> list[dict[str, Any]]:
    """Run records of an IsoFLOP sweep of a Chinchilla-like law; the first ``completed`` are
    completed (default: all), the rest pending, as in a sweep that is still running."""
    recs = []
    for c in budgets:
        n_opt = 0.1 * math.sqrt(c / 6)
        for i in range(sizes):
            n = n_opt * 10 ** (-1.0 + 2.0 * i / (sizes - 1))
            d = c / (6 * n)
            wiggle = 1.0 + 0.003 * math.sin(7 * i + c % 7)
            loss = (LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]) * wiggle
            recs.append({"run_id": f"C{c:.0e}_n{i}", "status": "completed",
                         "compute_budget": c, "num_params": n, "num_tokens": d,
                         "flops": 6 * n * d, "final_loss": loss})
    if completed is not None:
        for r in recs[completed:]:
            r.update(status="pending", final_loss=None)
    return recs


def write_results(run_dir: Path, records: list[dict[str, Any]]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "results.json"
    path.write_text(json.dumps(records, indent=2))
    return path
