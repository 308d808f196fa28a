"""The time estimate: best of a few probes at the trainer's threads, the cache re-probed when
stale or taken under more load than now (a fake clock and load), estimate against actual."""

from __future__ import annotations

import io
import json
import warnings

import pytest
import torch
from rich.console import Console

from flops_fit.config import EstimateConfig, TrainConfig
from flops_fit.models.gpt import GPT
from flops_fit.planning.planner import plan_sweep
from flops_fit.training import estimate
from flops_fit.training.estimate import (
    LOAD_SLACK,
    STALE_AFTER_S,
    Machine,
    Probe,
    estimate_seconds,
    last_timing,
    probe_key,
    probe_plan,
    probe_threads,
    record_actual,
    stale_reason,
    timing_line,
)

GPT_KW = {"vocab_size": 256, "seq_len": 32}
CPU = torch.device("cpu")
T0 = 1.9e9  # a fake "now", seconds since the epoch


def _cfg(**kw) -> TrainConfig:
    base = dict(batch_size=8, seq_len=32, eval_tokens=2048, periodic_eval_tokens=512,
                device="cpu", threads=1, schedule="cosine", reuse=False, workers=1)
    return TrainConfig(**{**base, **kw})


def _plan():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return plan_sweep(GPT, "width", dict(GPT_KW), [4e8, 8e8], sizes=[16, 32, 48],
                          sizes_per_budget=3, tokens_per_param=50, batch_size=8, seq_len=32,
                          min_steps=5)


def _machine(load: float | None = 1.0, t: float = T0, host: str = "box") -> Machine:
    return Machine(host, torch.__version__, torch.get_num_threads(), load, t)


def _entry(load: float | None = 1.0, t: float = T0, host: str = "box") -> dict:
    return {"step_s": 0.01, "eval_token_s": 1e-6, "host": host, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "load": load, "time": t}


def test_a_fresh_probe_is_used():
    assert stale_reason(_entry(), _machine(t=T0 + 60)) == ""


@pytest.mark.parametrize("entry, now, why", [
    (_entry(t=T0), _machine(t=T0 + STALE_AFTER_S + 1), "h old"),
    (_entry(host="other"), _machine(), "host"),
    (_entry(load=1.0 + LOAD_SLACK + 0.1), _machine(load=1.0), "under load"),
    ({"step_s": 0.01, "eval_token_s": 1e-6}, _machine(), "no time or load"),  # older cache
    ({"step_s": "fast", "eval_token_s": 1e-6}, _machine(), "not a probe"),  # untrusted file
])
def test_a_stale_probe_is_taken_again(entry, now, why):
    assert why in stale_reason(entry, now)


def test_a_probe_under_less_load_than_now_is_kept():
    """A probe taken on a quiet machine stays: load now is the trainer's concern, not its."""
    assert stale_reason(_entry(load=0.2), _machine(load=3.0)) == ""


class _Runner:
    """Stands in for TrainingRunner: probe_size is faked, only the device is read."""

    def __init__(self, *a, **k) -> None:
        self.device = CPU


def test_probe_plan_reprobes_by_clock_and_load(tmp_path, monkeypatch):
    calls = []

    def fake_probe(runner, spec, steps, repeats=3, threads=()):
        calls.append(spec.size_value)
        return Probe(0.01 * spec.size_value, 1e-6, steps * repeats)

    monkeypatch.setattr(estimate, "TrainingRunner", _Runner)
    monkeypatch.setattr(estimate, "probe_size", fake_probe)
    plan, cfg, est = _plan(), _cfg(), EstimateConfig()
    sizes = len({r.size_value for r in plan.runs})
    out = io.StringIO()
    probes = probe_plan(tmp_path, plan, GPT, None, cfg, est, Console(file=out), _machine(3.0))
    assert len(calls) == sizes and all(p.load == 3.0 for p in probes.values())
    cached = json.loads((tmp_path / "probe.json").read_text())
    assert all(v["load"] == 3.0 and v["time"] == T0 for v in cached.values())
    assert "load 3.00" in out.getvalue()
    probe_plan(tmp_path, plan, GPT, None, cfg, est, None, _machine(3.0, T0 + 3600))
    assert len(calls) == sizes  # an hour later, same load: cached
    probe_plan(tmp_path, plan, GPT, None, cfg, est, None, _machine(3.0 - 2 * LOAD_SLACK,
                                                                   T0 + 3600))
    assert len(calls) == 2 * sizes  # the cache was taken under more load than now
    out = io.StringIO()
    probe_plan(tmp_path, plan, GPT, None, cfg, est, Console(file=out),
               _machine(0.5, T0 + 3600 + STALE_AFTER_S + 1))
    assert len(calls) == 3 * sizes and "h old" in out.getvalue()


def test_probe_size_keeps_the_best_of_its_probes_at_each_thread_count(monkeypatch):
    """A burst of load slows one probe; the fastest is kept, at every thread count tried."""
    from flops_fit.config import DatasetConfig
    from flops_fit.data import build_data
    from flops_fit.training.runner import TrainingRunner

    cfg = _cfg()
    data = build_data(DatasetConfig(max_bytes=200_000), cfg.seq_len, cfg.batch_size)
    runner = TrainingRunner(GPT, data, cfg)
    spec = _plan().runs[0]
    ticks = iter([0.0, 5.0] + [i * 0.01 for i in range(10, 10_000)])  # the first step: 5 s
    monkeypatch.setattr(estimate.time, "perf_counter", lambda: next(ticks))
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n)))
    p = estimate.probe_size(runner, spec, steps=1, repeats=3, threads=(2, 1))
    assert p.step_s == pytest.approx(0.01) and p.steps_timed == 3
    assert seen[:2] == [2, 1]  # warm-up steps at each thread count
    assert seen[2:8] == [2, 1, 2, 1, 2, 1]  # interleaved probes, then the caller's count back
    assert seen[8:] == [torch.get_num_threads()]


def test_threads_follow_the_trainer():
    assert probe_threads(_cfg(threads=3), CPU) == (3,)
    if torch.get_num_threads() > 1:  # train.threads=0 in one process: the tuner tries one
        assert 1 in probe_threads(_cfg(threads=0), CPU)


def test_workers_share_the_work_in_plan_order():
    plan, cfg = _plan(), _cfg()
    probes = {probe_key(plan, r, cfg, CPU, w): Probe(1.0, 0.0, 3)  # 1 s a step
              for r in plan.runs for w in (1, 2)}
    one = estimate_seconds(plan, probes, cfg, CPU)
    two = estimate_seconds(plan, probes, cfg, CPU, workers=2)
    assert one == pytest.approx(sum(r.steps for r in plan.runs))
    assert one / 2 < two < one  # about half, plus a worker's start, never less than half
    assert two >= max(r.steps for r in plan.runs) + estimate.WORKER_START_S


def test_record_actual_beside_the_estimate(tmp_path):
    plan, cfg = _plan(), _cfg()
    assert record_actual(tmp_path, plan, cfg, CPU, [r.run_id for r in plan.runs], 9.0) is None
    probes = {probe_key(plan, r, cfg, CPU): {"step_s": 0.01, "eval_token_s": 0.0, "load": 1.5}
              for r in plan.runs}
    (tmp_path / "probe.json").write_text(json.dumps(probes))
    ids = [r.run_id for r in plan.runs[:2]]
    got = record_actual(tmp_path, plan, cfg, CPU, ids, 9.0, _machine())
    want = sum(r.steps * 0.01 for r in plan.runs[:2])
    assert got["estimate_s"] == pytest.approx(want, rel=1e-3) and got["actual_s"] == 9.0
    assert got["runs"] == 2 and got["probe_load"] == 1.5
    assert last_timing(tmp_path) == got
    assert "took 9 s" in timing_line(got) and f"{9.0 / want:.2f}x" in timing_line(got)
    (tmp_path / "probe.json").write_text('{"timings": [{"actual_s": "x"}]}')  # untrusted
    assert last_timing(tmp_path) is None
    (tmp_path / "probe.json").write_text("not json")
    assert last_timing(tmp_path) is None


def test_train_timed_records_the_runs_it_trained_beside_the_estimate(tmp_path):
    """The train command's wrapper: the runs without a final record are timed and recorded;
    a finished sweep trained again records nothing."""
    plan, cfg = _plan(), _cfg()
    probes = {probe_key(plan, r, cfg, CPU): {"step_s": 0.01, "eval_token_s": 0.0, "load": 1.0}
              for r in plan.runs}
    (tmp_path / "probe.json").write_text(json.dumps(probes))
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    assert estimate.train_timed(tmp_path, plan, cfg, lambda: [{"x": 1}], console) == [{"x": 1}]
    assert last_timing(tmp_path)["runs"] == len(plan.runs)
    assert "the plan's probe estimated" in out.getvalue()
    for r in plan.runs:  # every run done: the next train has nothing to time
        d = tmp_path / "runs" / r.run_id
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"run_id": r.run_id, "status": "completed"}))
    before = (tmp_path / "probe.json").read_text()
    estimate.train_timed(tmp_path, plan, cfg, lambda: [], console)
    assert (tmp_path / "probe.json").read_text() == before
