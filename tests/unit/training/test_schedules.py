"""The schedule registry (SCHEDULES): every schedule decision asks it; a new schedule is one
class and one registry line."""

from __future__ import annotations

import json
import warnings

import pytest
from rich.console import Console

from conftest import FIXTURE_V0_1_0
from flops_fit.config import DatasetConfig, Settings, TrainConfig
from flops_fit.data import build_data
from flops_fit.errors import FlopsFitError
from flops_fit.models.gpt import GPT
from flops_fit.planning.planner import plan_sweep
from flops_fit.rundir.records import RunRecord, read_metrics, record_schedule
from flops_fit.stages.pipeline import check_settings, plan_or_reconcile
from flops_fit.training.estimate import estimate_lines
from flops_fit.training.schedule import (
    SCHEDULES,
    Schedule,
    ScheduleKind,
    check_schedule_name,
    endpoint_schedules,
    reuses_trunks,
    trajectory,
    trunk_config,
)
from flops_fit.training.sweep import train_stage

GPT_KW = {"vocab_size": 256, "seq_len": 32, "head_dim": 16, "width_per_layer": 32}


def _quiet() -> Console:
    return Console(file=open("/dev/null", "w"), force_terminal=False)  # noqa: SIM115


def test_the_registry_holds_each_schedules_properties():
    assert list(SCHEDULES) == ["cosine", "wsd"]
    assert [k.shares_trunks for k in SCHEDULES.values()] == [False, True]
    assert endpoint_schedules() == {"wsd"}
    # trunk reuse is priced under the first schedule that shares trunks, whatever cfg says
    assert trunk_config(TrainConfig()).schedule == "wsd" and trunk_config(TrainConfig()).reuse
    assert trunk_config(TrainConfig(schedule="wsd", cooldown_fraction=0.3)).cooldown_fraction \
        == 0.3


def test_an_unknown_schedule_is_one_sentence_before_anything_is_written(tmp_path):
    s = Settings(run_dir=tmp_path / "run", train=TrainConfig(schedule="step"))
    s.check()  # the config layer holds no schedule names
    for call in (lambda: check_settings(s), lambda: plan_or_reconcile(s, _quiet())):
        with pytest.raises(FlopsFitError) as exc:
            call()
        assert str(exc.value) == "train.schedule='step' is unknown; use cosine or wsd."
        assert exc.value.exit_code == 2
    assert not (tmp_path / "run").exists()


def test_records_name_their_schedule_and_old_ones_are_read_once(tmp_path):
    old = json.loads((FIXTURE_V0_1_0 / "results.json").read_text())
    completed = [r for r in old if r.get("lr_schedule")]
    assert completed and all("schedule" not in r for r in old)
    for raw in completed:
        rec = RunRecord.from_dict(raw)
        assert rec.schedule == "cosine"  # derived from its lr_schedule sentence
        assert rec.to_dict() == raw  # and not written back: old files stay byte for byte
    wsd_sentence = ("linear warm-up 100 steps, constant peak, 1-sqrt cooldown over the last 50 "
                    "steps to 0.1 x peak")
    assert record_schedule({"lr_schedule": wsd_sentence}) == "wsd"
    assert record_schedule({"schedule": "constant", "lr_schedule": wsd_sentence}) == "constant"
    assert record_schedule({"run_id": "pending"}) is None
    assert RunRecord.from_dict({"run_id": "x", "schedule": None}).to_dict()["schedule"] is None


class ConstantSchedule(ScheduleKind):
    """A toy schedule: linear warm-up, then the peak LR to the last step."""

    def lr(self, s: Schedule, step: int) -> float:
        return s.peak * (step + 1) / (s.warmup + 1) if step < s.warmup else s.peak

    def describe(self, s: Schedule) -> str:
        return f"linear warm-up {s.warmup} steps, then the constant peak"


def test_a_new_schedule_is_one_class_and_one_registry_line(monkeypatch, tmp_path):
    monkeypatch.setitem(SCHEDULES, "constant", ConstantSchedule())
    cfg = TrainConfig(schedule="constant", batch_size=8, seq_len=32, eval_tokens=2048,
                      periodic_eval_tokens=512, log_every=5, device="cpu", threads=1,
                      warmup_min_steps=3)
    check_schedule_name(cfg)
    check_settings(Settings(run_dir=tmp_path / "run", train=cfg))
    sched = Schedule.for_run(cfg, 40, 1e-3)
    assert sched.kind == "constant" and sched.warmup == 4 and sched.branch == 0
    assert [sched.lr(s) for s in range(4, 40)] == [1e-3] * 36
    assert trajectory(cfg)["schedule"] == "constant"  # its plans are not cosine's
    assert not reuses_trunks(cfg) and "constant" not in endpoint_schedules()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_sweep(GPT, "width", dict(GPT_KW), [1.5e9], sizes=[16, 32, 48],
                          sizes_per_budget=3, tokens_per_param=50, batch_size=8, seq_len=32,
                          min_steps=5)
    assert any("train.schedule=wsd" in line for line in estimate_lines(plan, cfg, None, None))
    # the trainer: every record names it and its sentence, every step after warm-up the peak
    recs = train_stage(tmp_path, plan, GPT, build_data(DatasetConfig(max_bytes=400_000), 32),
                       cfg, console=_quiet())
    for rec in recs:
        assert rec["status"] == "completed", rec.get("error")
        assert rec["schedule"] == "constant"
        assert rec["lr_schedule"] == f"linear warm-up {rec['warmup_steps']} steps, then the " \
                                     "constant peak"
        lines = read_metrics(tmp_path / "runs" / rec["run_id"] / "metrics.jsonl")
        late = [m.lr for m in lines if m.lr is not None and m.step > rec["warmup_steps"] + 1]
        assert late and all(lr == pytest.approx(rec["lr"]) for lr in late)
