"""Sequential planning for real: rounds continue the shared trunks exactly, and a prior far
from the model's optimum is re-centred after the first round (train_command, real runs)."""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import asdict

import pytest
from rich.console import Console

from flops_fit.config import BudgetsConfig, DatasetConfig, EstimateConfig, Settings, TrainConfig
from flops_fit.data import build_data
from flops_fit.models.gpt import GPT
from flops_fit.planning.planner import SweepPlan, plan_sweep
from flops_fit.planning.plans import load_plan
from flops_fit.rundir import io as rundir
from flops_fit.stages.pipeline import train_command
from flops_fit.training.sweep import prune_trunks, train_stage

GPT_KW = {"vocab_size": 256, "seq_len": 32, "head_dim": 16, "width_per_layer": 32}
DATA = DatasetConfig(max_bytes=400_000)


def _quiet() -> Console:
    return Console(file=open(os.devnull, "w"), force_terminal=False)  # noqa: SIM115


def test_rounds_continue_each_trunk_from_its_kept_state_exactly(tmp_path):
    cfg = TrainConfig(batch_size=8, seq_len=32, eval_tokens=2048, periodic_eval_tokens=512,
                      log_every=5, device="cpu", threads=1, schedule="wsd", reuse=True,
                      warmup_min_steps=4)  # runs this short share trunks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_sweep(GPT, "width", dict(GPT_KW), [1e9, 2e9], sizes=[16, 32, 48],
                          sizes_per_budget=3, tokens_per_param=50, batch_size=8, seq_len=32,
                          min_steps=5)
    data = build_data(DATA, 32)
    first = {r.run_id for r in plan.runs if r.compute_budget == 1e9}
    second = {r.run_id for r in plan.runs} - first
    seq = tmp_path / "rounds"
    # round 1 on a plan of the first budget alone: the second budget's runs of these sizes
    # come later (as re-centring may add them), yet each trunk keeps its latest state
    alone = SweepPlan([r for r in plan.runs if r.run_id in first], plan.model, plan.settings)
    recs = train_stage(seq, alone, GPT, data, cfg, console=_quiet(), only=first)
    assert sorted(r["run_id"] for r in recs) == sorted(first)
    kept = sorted(p.name for p in (seq / "trunks").glob("*/branch-*.pt"))
    assert len(kept) == 3
    assert not any((seq / "runs" / i).exists() for i in second)
    out = Console(file=io.StringIO(), width=200)
    train_stage(seq, plan, GPT, data, cfg, console=out, only=second)
    log = out.file.getvalue()
    assert log.count("trunk steps") == 3 and "trunk steps 0-" not in log  # continued
    prune_trunks(seq, plan, cfg)
    assert not list((seq / "trunks").glob("*/*.pt"))

    together = tmp_path / "together"
    train_stage(together, plan, GPT, data, cfg, console=_quiet())
    a, b = rundir.load_run_results(seq), rundir.load_run_results(together)
    assert set(a) == set(b) == first | second
    for run_id in a:  # the same numbers as training the whole plan at once
        assert a[run_id]["final_loss"] == pytest.approx(b[run_id]["final_loss"], rel=1e-6)


def test_a_prior_far_off_is_recentred_after_the_first_round(tmp_path):
    budgets = BudgetsConfig(values=[2e10, 6e10], sizes_per_budget=3, span=4.0,
                            tokens_per_param=5.0, min_steps=10)  # the prior: models far too big
    s = Settings(run_dir=tmp_path, budgets=budgets, estimate=EstimateConfig(probe=False))
    s.train = TrainConfig(batch_size=8, seq_len=32, eval_tokens=2048, periodic_eval_tokens=512,
                          threads=1, workers=1, warmup_min_steps=4)
    out = Console(file=io.StringIO(), width=200)
    records = train_command(s, out)
    text = out.file.getvalue()
    assert "sequential: 2 budgets in 2 rounds" in text
    plan = load_plan(tmp_path)
    stored = json.loads((tmp_path / "plan.json").read_text())
    assert all(r["status"] == "completed" for r in records)
    assert len(records) == len(plan.runs)
    # the first budget's minimum lies below the prior's centre (inside, or at the small edge)
    assert "re-centring the sizes of 1 budget(s)" in text, text
    assert [e["budget"] for e in stored["recentred"]] == [6e10]
    assert plan.centre(6e10) < 0.7 * (6e10 / 30) ** 0.5
    assert not list((tmp_path / "trunks").glob("*/*.pt"))
    # a second train call reconciles the plan on disk with the fresh request: nothing to do
    again = Console(file=io.StringIO(), width=200)
    train_command(s, again)
    assert "Nothing to train" in again.file.getvalue()
    assert [asdict(r) for r in load_plan(tmp_path).runs] == [asdict(r) for r in plan.runs]
