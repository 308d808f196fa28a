"""train.schedule=wsd and train.reuse: schedule shapes, trunks, branch equivalence, accounting,
sharding by trunk (the kill -9 test is tests/test_reuse_kill.py)."""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import replace

import pytest
from rich.console import Console

from flops_fit.config import DatasetConfig, Settings, TrainConfig
from flops_fit.data import build_data
from flops_fit.errors import FlopsFitError
from flops_fit.models.gpt import GPT
from flops_fit.planning.planner import plan_sweep
from flops_fit.rundir.layout import Layout
from flops_fit.stages.pipeline import make_plan
from flops_fit.training.schedule import (
    Schedule,
    branch_step,
    check_schedule_name,
    lr_at,
    reuses_trunks,
    trajectory,
    wsd_lr_at,
    wsd_warmup,
)
from flops_fit.training.sweep import train_stage
from flops_fit.training.trunks import flops_spent, group_trunks, shard_trunks, sweep_cost

GPT_KW = {"vocab_size": 256, "seq_len": 32, "head_dim": 16, "width_per_layer": 32}
DATA = DatasetConfig(max_bytes=400_000)


def _cfg(**kw) -> TrainConfig:
    base = dict(batch_size=8, seq_len=32, eval_tokens=2048, periodic_eval_tokens=512,
                log_every=5, device="cpu", threads=1, schedule="wsd", warmup_min_steps=5,
                reuse=False)
    return TrainConfig(**{**base, **kw})


def _plan():
    """Three budgets x widths 16, 32 and 48: three trunks of three runs (21-85 steps for width
    16, 7-28 for width 32, fewer for 48)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plan_sweep(GPT, "width", dict(GPT_KW), [4e8, 8e8, 1.6e9], sizes=[16, 32, 48],
                          sizes_per_budget=3, tokens_per_param=50, batch_size=8, seq_len=32,
                          min_steps=5)


def _quiet() -> Console:
    return Console(file=open(os.devnull, "w"), force_terminal=False)  # noqa: SIM115


# -- schedule -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["1-sqrt", "linear"])
@pytest.mark.parametrize("steps", [150, 400, 1001])
def test_wsd_warms_up_holds_then_cools_down_to_min(shape, steps):
    cfg = TrainConfig(schedule="wsd", warmup_min_steps=20, cooldown_fraction=0.2,
                      cooldown_shape=shape, min_lr_ratio=0.1)
    peak = 3e-3
    s = Schedule.for_run(cfg, steps, peak)
    lrs = [s.lr(i) for i in range(steps)]
    assert s.warmup == 20  # the floor, whatever the length
    assert s.cooldown == round(0.2 * steps) and s.branch == branch_step(steps, cfg)
    warm, hold, cool = lrs[:20], lrs[20:s.branch], lrs[s.branch:]
    assert all(0 < a < b < peak for a, b in zip(warm, warm[1:], strict=False))
    assert hold and all(x == peak for x in hold)  # constant peak: shared by every length
    assert all(a > b for a, b in zip(cool, cool[1:], strict=False)) and cool[0] < peak
    assert lrs[-1] == pytest.approx(0.1 * peak, rel=1e-12)
    mid = cool[len(cool) // 2 - 1]  # p = 1/2
    frac = (mid / peak - 0.1) / 0.9
    assert frac == pytest.approx(1 - math.sqrt(0.5) if shape == "1-sqrt" else 0.5, abs=0.02)
    assert f"{shape} cooldown over the last {s.cooldown} steps" in s.describe()


def test_wsd_steps_before_the_branch_do_not_depend_on_length():
    cfg = TrainConfig(schedule="wsd", warmup_min_steps=100)
    a, b = Schedule.for_run(cfg, 300, 1e-2), Schedule.for_run(cfg, 3000, 1e-2)
    assert [a.lr(i) for i in range(a.branch)] == [b.lr(i) for i in range(a.branch)]
    assert wsd_lr_at(2999, 3000, 1e-2, 100, 600, 0.1) == pytest.approx(1e-3)


def test_a_run_too_short_for_the_warmup_warms_up_over_half_and_is_its_own_trunk():
    cfg = TrainConfig(schedule="wsd", warmup_min_steps=100)
    assert Schedule.for_run(cfg, 125, 1e-2).warmup == 100  # 100 + 25 fits
    short = Schedule.for_run(cfg, 120, 1e-2)  # 96 steps before its 24-step cooldown
    assert short.warmup == 48 and short.lr(47) < short.lr(48) == pytest.approx(1e-2)
    assert short.lr(119) == pytest.approx(1e-3)
    for steps in (1, 2, 3, 10):  # the shortest runs still end at min_lr_ratio x peak
        assert Schedule.for_run(cfg, steps, 1e-2).lr(steps - 1) == pytest.approx(1e-3)


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_cosine_run_whose_warmup_reaches_the_end_still_ends_at_min(steps):
    cfg = TrainConfig(warmup_fraction=0.5, warmup_min_steps=100, min_lr_ratio=0.1)
    s = Schedule.for_run(cfg, steps, 1e-2)
    assert s.lr(steps - 1) == pytest.approx(1e-3)
    assert lr_at(steps - 1, steps, 1e-2, 0.5, 0.1, 100) == pytest.approx(1e-3)


def test_wsd_settings_are_checked():
    for bad, needle in [({"cooldown_shape": "cos"}, "train.cooldown_shape"),
                        ({"cooldown_fraction": 0.0}, "train.cooldown_fraction")]:
        with pytest.raises(FlopsFitError, match=needle):
            TrainConfig(**bad).check()
    # the name is checked against the registry (the stages do it before anything is written)
    with pytest.raises(FlopsFitError, match=r"^train.schedule='step' is unknown; use cosine or "
                                            r"wsd\.$"):
        check_schedule_name(TrainConfig(schedule="step"))
    # reuse=true shares trunks only where runs can: wsd on one device per run
    assert reuses_trunks(TrainConfig(schedule="wsd", reuse=True))
    assert not reuses_trunks(TrainConfig(schedule="cosine", reuse=True))
    assert not reuses_trunks(TrainConfig(schedule="wsd", reuse=True, devices_per_run=2))
    assert not reuses_trunks(TrainConfig(schedule="wsd", reuse=False))
    # cosine plans keep their identity: the wsd keys only count under wsd
    assert "cooldown_fraction" not in trajectory(TrainConfig(schedule="cosine"))
    assert "schedule" not in trajectory(TrainConfig(schedule="cosine"))
    assert trajectory(TrainConfig(schedule="wsd"))["cooldown_shape"] == "1-sqrt"
    assert list(trajectory(TrainConfig(schedule="wsd")))[-3:] == [
        "schedule", "cooldown_fraction", "cooldown_shape"]


# -- trunks and accounting ------------------------------------------------------------------


def test_trunks_group_runs_that_differ_only_in_length():
    plan = _plan()
    cfg = _cfg(reuse=True)
    trunks = group_trunks(plan, cfg)
    assert len(trunks) == 3
    for t in trunks:
        assert len({json.dumps(r.model_kwargs, sort_keys=True) for r in t.runs}) == 1
        assert list(t.branches) == sorted(t.branches)
        assert len({r.compute_budget for r in t.runs}) == len(t.runs)  # one run per budget
    assert sorted(len(t.runs) for t in trunks) == [2, 3, 3]  # width 48 is too big at 4e8
    assert sorted(r.run_id for t in trunks for r in t.runs) == sorted(r.run_id for r in plan.runs)
    # flops_spent: the longest branch's trunk once, plus every cooldown
    spent = flops_spent(plan, cfg)
    for t in trunks:
        fps = t.flops_per_step
        cooldowns = sum(r.steps - b for r, b in zip(t.runs, t.branches, strict=True))
        want = fps * (t.branches[-1] + cooldowns)
        assert sum(spent[r.run_id] for r in t.runs) == pytest.approx(want)
        assert spent[t.runs[0].run_id] == pytest.approx(t.runs[0].flops)  # first: all of it
    assert flops_spent(plan, _cfg()) == {r.run_id: r.flops for r in plan.runs}  # no reuse


def test_sweep_cost_of_the_default_plan():
    plan = make_plan(Settings())
    separate, reused = sweep_cost(plan, TrainConfig())  # reuse priced whatever cfg says
    assert separate == pytest.approx(sum(r.flops for r in plan.runs))
    assert 0.4 < reused / separate <= 0.6  # 0.49 at the default's nine budgets sqrt(2) apart
    assert sweep_cost(plan, TrainConfig(cooldown_fraction=0.1))[1] < reused


def test_time_estimate_with_reuse_counts_each_runs_share():
    """With equal step times per size, the reuse estimate is the FLOPs ratio of the plan; the
    estimate names the figure this sweep will use."""
    import torch

    from flops_fit.training.estimate import Probe, estimate_lines, estimate_seconds, probe_key

    plan = _plan()
    cpu = torch.device("cpu")
    probes = {probe_key(plan, r, _cfg(), cpu): Probe(0.01, 0.0, 3) for r in plan.runs}
    alone = estimate_seconds(plan, probes, _cfg(), cpu)
    shared = estimate_seconds(plan, probes, _cfg(), cpu, reuse=True)
    assert alone == pytest.approx(sum(r.steps for r in plan.runs) * 0.01)
    separate, reused = sweep_cost(plan, _cfg())
    assert shared < alone
    # flops per step differ by size, so the time ratio is near, not at, the FLOPs ratio
    assert shared / alone == pytest.approx(reused / separate, rel=0.35)
    assert "this sweep's" in estimate_lines(plan, _cfg(reuse=True), probes, cpu)[1]
    assert estimate_lines(plan, _cfg(schedule="cosine", reuse=True), probes, cpu)[1].endswith(
        "; with train.schedule=wsd)")
    assert "train.schedule=wsd train.reuse=true)" in estimate_lines(
        plan, _cfg(schedule="cosine"), probes, cpu)[1]


def test_shards_split_by_trunk_balanced_by_compute():
    trunks = group_trunks(make_plan(Settings()), TrainConfig(schedule="wsd", reuse=True))
    for n in (2, 3):
        shards = shard_trunks(trunks, n)
        ids = [t.trunk_id for s in shards for t in s]
        assert sorted(ids) == sorted(t.trunk_id for t in trunks)  # each trunk exactly once
        loads = [sum(t.cost() for t in s) for s in shards]
        assert max(loads) - min(loads) <= max(t.cost() for t in trunks)  # LPT bound


def test_reused_runs_equal_standalone_wsd_runs(tmp_path):
    """The 1e-5 test: a reused run IS the standalone wsd run (CPU, one thread)."""
    plan, data = _plan(), build_data(DATA, 32)
    alone = {r["run_id"]: r for r in
             train_stage(tmp_path / "alone", plan, GPT, data, _cfg(), console=_quiet())}
    reused = train_stage(tmp_path / "reuse", plan, GPT, data, _cfg(reuse=True),
                         console=_quiet())
    assert len(reused) == len(plan.runs)
    for r in reused:
        a = alone[r["run_id"]]
        assert r["status"] == a["status"] == "completed"
        assert abs(r["final_loss"] - a["final_loss"]) <= 1e-5
        assert r["seed"] == a["seed"] and r["flops"] == a["flops"]
        assert a["flops_spent"] == a["flops"]
        # the curve: the trunk's lines up to the branch, then the run's cooldown, no repeats
        lines = [json.loads(x) for x in
                 (tmp_path / "reuse" / "runs" / r["run_id"] / "metrics.jsonl").read_text()
                 .splitlines()]
        steps = [x["step"] for x in lines if not x.get("final")]
        assert steps == sorted(set(steps)) and steps[-1] == r["steps"]
    results = json.loads((tmp_path / "reuse" / "results.json").read_text())
    assert all(r["flops_spent"] is not None for r in results)
    ratio = sum(r["flops_spent"] for r in results) / sum(r["flops"] for r in results)
    want = sum(flops_spent(plan, _cfg(reuse=True)).values()) / sum(r.flops for r in plan.runs)
    assert ratio == pytest.approx(want) and ratio < 0.75
    assert not list((tmp_path / "reuse").glob("trunks/*/*.pt"))  # cleaned up when done
    again = train_stage(tmp_path / "reuse", plan, GPT, data, _cfg(reuse=True), console=_quiet())
    assert [r["finished_at"] for r in again] == [r["finished_at"] for r in reused]


def test_reuse_shards_train_whole_trunks(tmp_path):
    plan, data = _plan(), build_data(DATA, 32)
    cfg = _cfg(reuse=True, num_shards=2)
    mine = [train_stage(tmp_path, plan, GPT, data, replace(cfg, shard=i), console=_quiet())
            for i in range(2)]
    ids = [{r["run_id"] for r in m} for m in mine]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == {r.run_id for r in plan.runs}
    for t in group_trunks(plan, cfg):
        assert {r.run_id for r in t.runs} <= ids[0] or {r.run_id for r in t.runs} <= ids[1]
    assert len(list((tmp_path / "trunks").iterdir())) == 3


def test_short_runs_train_on_their_own_trunks_and_equal_standalone(tmp_path):
    """warmup_min_steps=20: the 7-, 14- and 21-step runs cannot hold it, so each warms up over
    half its pre-cooldown steps on a trunk of its own; width 16's two longer runs share one."""
    cfg = _cfg(warmup_min_steps=20, reuse=True)
    plan = _plan()
    trunks = group_trunks(plan, cfg)
    long_enough = [r for r in plan.runs if wsd_warmup(r.steps, cfg) == 20]
    short = [r for r in plan.runs if wsd_warmup(r.steps, cfg) != 20]
    assert len(long_enough) >= 3 and short and any(len(t.runs) == 2 for t in trunks)
    assert len(trunks) == len({r.size_value for r in long_enough}) + len(short)
    data = build_data(DATA, 32)
    reused = train_stage(tmp_path / "reuse", plan, GPT, data, cfg, console=_quiet())
    alone = train_stage(tmp_path / "alone", plan, GPT, data, replace(cfg, reuse=False),
                        console=_quiet())
    by_id = {r["run_id"]: r["final_loss"] for r in alone}
    for r in reused:
        assert abs(r["final_loss"] - by_id[r["run_id"]]) < 1e-5, r["run_id"]


def test_report_states_the_compute_saving():
    from flops_fit.report.sections import compute_line, runs_section

    recs = [{"run_id": "a", "status": "completed", "flops": 4.0, "flops_spent": 4.0},
            {"run_id": "b", "status": "completed", "flops": 8.0, "flops_spent": 4.0}]
    assert compute_line(recs) == (" Compute: 8 FLOPs executed for 12 FLOPs of runs (0.67x, 33% "
                                  "saved by sharing trunks (train.reuse)).")
    assert "33% saved" in runs_section(recs)
    assert compute_line([{"run_id": "a", "flops": 4.0}]) == ""  # older records: no line


def test_branch_checkpoints_are_read_by_their_names_alone(tmp_path):
    lay = Layout(tmp_path)
    tdir = lay.trunk("trunk-0123456789ab")
    tdir.mkdir(parents=True)
    lay.branch_checkpoint("trunk-0123456789ab", 42).write_bytes(b"x")
    for stray in ("branch-x.pt", "branch-.pt", "branch-12.pt.tmp", "trunk.pt"):
        (tdir / stray).write_bytes(b"x")  # untrusted folder: not checkpoints, no traceback
    assert lay.branch_checkpoints("trunk-0123456789ab") == {
        42: lay.branch_checkpoint("trunk-0123456789ab", 42)}
