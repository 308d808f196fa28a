"""Real (tiny) training sweeps: records, outcomes, user data, devices, the LR rules."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import TensorDataset

from flops_fit.config import DatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.errors import FlopsFitError
from flops_fit.models.gpt import GPT
from flops_fit.models.mlp_lm import MLPLM
from flops_fit.planning.planner import plan_sweep
from flops_fit.rundir import io as rundir
from flops_fit.rundir.records import RunRecord, read_metrics
from flops_fit.training.devices import ThreadTuner, resolve_device
from flops_fit.training.schedule import lr_at, lr_for_size, warmup_steps
from flops_fit.training.sweep import train_stage

GPT_KW = {"vocab_size": 256, "seq_len": 32, "head_dim": 16, "width_per_layer": 32}
DATA = DatasetConfig(max_bytes=400_000)
RECORD_FIELDS = {
    "run_id", "status", "compute_budget", "num_params", "num_params_non_embedding",
    "num_tokens", "flops", "flops_6nd", "final_loss", "size_param", "size_value", "steps",
    "lr", "wall_time_s", "tokens_per_s", "device", "dtype", "seed", "epochs", "error",
}


def tiny_cfg(**kw) -> TrainConfig:
    # one thread: bit-exact comparisons between runs, and immune to a busy machine
    base = dict(batch_size=8, seq_len=32, eval_tokens=2048, periodic_eval_tokens=512,
                log_every=5, device="cpu", threads=1)
    return TrainConfig(**{**base, **kw})


def tiny_plan(budgets=(1.5e9, 3e9), model=GPT, size_param="width", kwargs=None, sizes=None,
              **kw):
    with _quiet():
        return plan_sweep(model, size_param, dict(GPT_KW if kwargs is None else kwargs),
                          list(budgets), sizes=sizes or [16, 32, 48], sizes_per_budget=3,
                          tokens_per_param=50, batch_size=8, seq_len=32, min_steps=5, **kw)


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *a):
        self._w.__exit__(*a)


def quiet_console() -> Console:
    return Console(file=open("/dev/null", "w"), force_terminal=False)  # noqa: SIM115


# -- rules -------------------------------------------------------------------------------------


def test_lr_schedule_warmup_then_cosine_to_min():
    steps, peak = 100, 1e-3
    lrs = [lr_at(s, steps, peak, 0.05, 0.1) for s in range(steps)]
    assert lrs[0] < lrs[4] <= peak  # warm-up
    assert max(lrs) == pytest.approx(peak)
    assert lrs[-1] == pytest.approx(0.1 * peak)  # ends at min_lr_ratio at the run's last step
    after = lrs[lrs.index(max(lrs)):]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False))
    assert 0 < lr_at(0, 1, peak, 0.05, 0.1) <= peak  # a one-step run still trains


def test_warmup_floor_and_cap():
    assert warmup_steps(3000, 0.1, 100) == 300  # long runs: the fraction
    assert warmup_steps(400, 0.1, 100) == 100  # short runs: the floor
    assert warmup_steps(150, 0.1, 100) == 75  # very short: at most half the run
    peak = 1e-3
    lrs = [lr_at(s, 400, peak, 0.1, 0.1, 100) for s in range(400)]
    assert lrs.index(max(lrs)) == 100 and lrs[99] < peak
    assert lrs[-1] == pytest.approx(0.1 * peak)


def test_lr_rule_by_size():
    cfg = TrainConfig()
    small, big = lr_for_size(10_000, cfg), lr_for_size(1_000_000, cfg)
    assert big < small
    assert lr_for_size(int(cfg.lr_ref_params), cfg) == pytest.approx(cfg.lr_base)
    assert lr_for_size(10_000, TrainConfig(lr=0.01)) == 0.01


def test_thread_tuner_keeps_a_valid_choice():
    tuner = ThreadTuner(2, every_s=0.0, first_s=0.0, k=2)
    a = torch.randn(256, 256)
    for _ in range(20):
        tuner.before_step()
        assert torch.get_num_threads() in (1, 2)
        a @ a
        tuner.after_step()
    assert tuner.current in (1, 2) and torch.get_num_threads() == tuner.current


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(FlopsFitError, match="not a device"):
        resolve_device("tpu9")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(tmp_path):
    with pytest.raises(FlopsFitError, match="no usable CUDA") as exc:
        train_stage(tmp_path, tiny_plan(), GPT, build_data(DATA, 32), tiny_cfg(device="cuda"),
                    console=quiet_console())
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "runs").exists()  # nothing written


# -- a real sweep ------------------------------------------------------------------------------


def test_tiny_sweep_trains_every_run(tmp_path):
    plan = tiny_plan()
    data = build_data(DATA, 32)
    cfg = tiny_cfg(threads=0)  # the default: all cores, with the thread tuner
    recs = train_stage(tmp_path, plan, GPT, data, cfg, console=quiet_console())
    assert [r["run_id"] for r in recs] == [r.run_id for r in plan.runs]
    for r, spec in zip(recs, plan.runs, strict=True):
        assert RECORD_FIELDS <= set(r)
        assert r["status"] == "completed", r.get("error")
        assert math.isfinite(r["final_loss"]) and 0 < r["final_loss"] < 6
        assert r["num_tokens"] == spec.num_tokens and r["steps"] == spec.steps
        assert r["flops"] == pytest.approx(spec.flops_per_token * spec.num_tokens)
        assert r["device"] == "cpu" and r["dtype"] == "fp32"
        assert not (tmp_path / "runs" / r["run_id"] / "checkpoint.pt").exists()
        lines = [json.loads(x) for x in
                 (tmp_path / "runs" / r["run_id"] / "metrics.jsonl").read_text().splitlines()]
        assert lines[-1]["final"] and lines[-1]["val_loss"] == pytest.approx(r["final_loss"])
        train_lines = [x for x in lines if "train_loss" in x]
        assert train_lines[-1]["step"] == spec.steps
        assert {"step", "tokens", "flops", "train_loss", "lr"} <= set(train_lines[0])
        assert any("val_loss" in x for x in train_lines)
    for c in plan.compute_budgets:  # the loss differs across sizes
        losses = [r["final_loss"] for r in recs if r["compute_budget"] == c]
        assert len(set(round(x, 6) for x in losses)) == len(losses)
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted(r["run_id"] for r in results) == sorted(r.run_id for r in plan.runs)
    assert all(r["status"] == "completed" for r in results)

    # a second train after completion trains nothing, touches nothing and returns quickly
    stamps = {p: (p.read_bytes(), p.stat().st_mtime_ns)
              for p in (tmp_path / "runs").glob("*/result.json")}
    t0 = time.perf_counter()
    again = train_stage(tmp_path, plan, GPT, data, cfg, console=quiet_console())
    assert time.perf_counter() - t0 < 5
    assert [r["final_loss"] for r in again] == [r["final_loss"] for r in recs]
    assert stamps == {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in stamps}


def test_same_seed_same_result_and_sharding(tmp_path):
    plan = tiny_plan(budgets=(1.5e9,))
    data = build_data(DATA, 32)
    full = train_stage(tmp_path / "a", plan, GPT, data, tiny_cfg(), console=quiet_console())
    parts = []
    for shard in (0, 1):
        parts += train_stage(tmp_path / "b", plan, GPT, data,
                             tiny_cfg(shard=shard, num_shards=2), console=quiet_console())
    assert len(parts) == len(full)
    by_id = {r["run_id"]: r["final_loss"] for r in parts}
    assert all(by_id[r["run_id"]] == pytest.approx(r["final_loss"], abs=1e-6) for r in full)
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [r["status"] for r in results] == ["completed"] * len(plan.runs)


def test_mlp_model_trains(tmp_path):
    plan = tiny_plan(budgets=(5e8,), model=MLPLM, size_param="hidden",
                     kwargs={"vocab_size": 256, "embed_dim": 16, "context": 4},
                     sizes=[16, 32, 64, 128])
    recs = train_stage(tmp_path, plan, MLPLM, build_data(DATA, 32), tiny_cfg(),
                       console=quiet_console())
    assert all(r["status"] == "completed" and math.isfinite(r["final_loss"]) for r in recs)


# -- failures, divergence ----------------------------------------------------------------------


class Exploding(GPT):
    """A GPT whose width-32 variant raises in forward and whose width-48 variant goes NaN."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = 0

    def forward(self, idx):
        self.calls += 1
        if self.width == 32:
            raise RuntimeError("boom in forward")
        out = super().forward(idx)
        return out * float("nan") if self.width == 48 and self.calls > 7 else out


def test_failed_and_diverged_runs_are_recorded_and_the_sweep_goes_on(tmp_path):
    plan = tiny_plan(budgets=(1.5e9,))
    out = tmp_path / "log.txt"
    console = Console(file=out.open("w"), force_terminal=False, width=200)
    recs = train_stage(tmp_path, plan, Exploding, build_data(DATA, 32), tiny_cfg(),
                       console=console)
    by_size = {r["size_value"]: r for r in recs}
    assert by_size[16]["status"] == "completed"
    assert by_size[32]["status"] == "failed"
    assert "boom in forward" in by_size[32]["error"]
    assert by_size[48]["status"] == "diverged" and by_size[48]["final_loss"] is None
    assert "nan" in by_size[48]["error"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted(r["status"] for r in results) == ["completed", "diverged", "failed"]
    console.file.flush()
    log = out.read_text()
    assert "failed" in log and "boom in forward" in log and "\x1b[" not in log  # plain lines

    # a rerun retries the failed run only (a fixed model now trains), keeps the others
    recs2 = train_stage(tmp_path, plan, GPT, build_data(DATA, 32), tiny_cfg(),
                        console=quiet_console())
    by_size2 = {r["size_value"]: r for r in recs2}
    assert by_size2[32]["status"] == "completed"
    assert by_size2[48]["status"] == "diverged"
    assert by_size2[16]["final_loss"] == by_size[16]["final_loss"]


def test_diverge_factor(tmp_path):
    plan = tiny_plan(budgets=(1.5e9,))
    # an absurd learning rate without clipping blows the loss up past 1.2 x the initial loss
    recs = train_stage(tmp_path, plan, GPT, build_data(DATA, 32),
                       tiny_cfg(lr=3.0, grad_clip=0.0, diverge_factor=1.2),
                       console=quiet_console())
    assert {r["status"] for r in recs} == {"diverged"}
    assert all("exceeded" in r["error"] or "nan" in r["error"] for r in recs)


# -- user data and loss --------------------------------------------------------------------------


class Classifier(nn.Module):
    def __init__(self, hidden: int = 16, n_in: int = 8, n_out: int = 2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, n_out))

    def forward(self, x):
        return self.net(x)


def test_user_dataset_and_loss_fn(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 8, generator=g)
    ds = TensorDataset(x, (x[:, 0] * x[:, 1] > 0).long())
    plan = _user_plan(x)
    recs = train_stage(tmp_path, plan, Classifier, ds, tiny_cfg(), loss_fn=F.cross_entropy,
                       console=quiet_console())
    assert len(recs) == len(plan.runs)
    for r in recs:
        assert r["status"] == "completed", r.get("error")
        assert 0 < r["final_loss"] < math.log(2) + 0.05  # learned something (or at least chance)
        assert r["epochs"] == pytest.approx(r["num_tokens"] / 3800)


def test_non_scalar_loss_is_one_sentence(tmp_path):
    x = torch.randn(200, 8)
    ds = TensorDataset(x, (x[:, 0] > 0).long())
    with pytest.raises(FlopsFitError, match="scalar") as exc:
        train_stage(tmp_path, _user_plan(x), Classifier, ds, tiny_cfg(),
                    loss_fn=lambda o, t: F.cross_entropy(o, t, reduction="none"),
                    console=quiet_console())
    assert "\n" not in str(exc.value)


def test_dataset_smaller_than_one_batch(tmp_path):
    x = torch.randn(5, 8)
    ds = TensorDataset(x, (x[:, 0] > 0).long())
    with pytest.raises(FlopsFitError, match="fewer than one batch"):
        train_stage(tmp_path, _user_plan(x), Classifier, ds, tiny_cfg(),
                    loss_fn=F.cross_entropy, console=quiet_console())


def _user_plan(x):
    with _quiet():
        return plan_sweep(Classifier, "hidden", {}, [1e6], sizes=[4, 8, 16, 32, 64],
                          sizes_per_budget=3, tokens_per_param=20, batch_size=8,
                          example_input=x[:1], min_steps=5)


# -- CUDA (skipped without a GPU) ----------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_uses_bf16_autocast(tmp_path):
    plan = tiny_plan(budgets=(1.5e9,))
    recs = train_stage(tmp_path, plan, GPT, build_data(DATA, 32), tiny_cfg(device="auto"),
                       console=quiet_console())
    for r in recs:
        assert r["status"] == "completed", r.get("error")
        assert r["device"].startswith("cuda") and r["dtype"] == "bf16-autocast"
        assert math.isfinite(r["final_loss"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_compile(tmp_path):
    plan = tiny_plan(budgets=(1.5e9,))
    recs = train_stage(tmp_path, plan, GPT, build_data(DATA, 32),
                       tiny_cfg(device="cuda", compile=True), console=quiet_console())
    assert all(r["status"] == "completed" and r["compile"] for r in recs)


def test_rundir_results_rebuild_pending_and_corrupt(tmp_path):
    plan = tiny_plan(budgets=(1.5e9,))
    spec = plan.runs[0]
    rundir.write_run_result(tmp_path, {"run_id": spec.run_id, "status": "completed",
                                       "final_loss": 2.0})
    bad = tmp_path / "runs" / plan.runs[1].run_id / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"run_id": "half')
    with pytest.warns(UserWarning, match="unreadable"):
        out = rundir.rebuild_results(tmp_path, plan)
    assert [r["run_id"] for r in out] == [r.run_id for r in plan.runs]
    assert [r["status"] for r in out] == ["completed", "pending", "pending"]
    assert out[1]["num_params"] == plan.runs[1].num_params and out[1]["final_loss"] is None
    assert json.loads((tmp_path / "results.json").read_text()) == out


def test_result_json_is_a_run_record(tmp_path):
    """A trained run's result.json is a RunRecord whose to_dict() writes the file back exactly."""
    plan = tiny_plan(budgets=(1.5e9,))
    recs = train_stage(tmp_path, plan, GPT, build_data(DATA, 32), tiny_cfg(),
                       console=quiet_console())
    for rec in recs:
        rdir = tmp_path / "runs" / rec["run_id"]
        text = (rdir / "result.json").read_text()
        raw = json.loads(text)
        record = RunRecord.from_dict(raw)
        assert record.status == "completed" and not record.extra
        assert record.to_dict() == raw and list(record.to_dict()) == list(raw)  # key order too
        assert list(raw) == [k for k in RunRecord.__dataclass_fields__
                             if k not in ("extra", "_keys", "traceback")]
        rundir.atomic_write_json(tmp_path / "again.json", record.to_dict())
        assert (tmp_path / "again.json").read_text() == text
        lines = read_metrics(rdir / "metrics.jsonl")
        assert [ln.to_json() for ln in lines] == (rdir / "metrics.jsonl").read_text().splitlines()
    pending = json.loads((tmp_path / "results.json").read_text())
    assert [RunRecord.from_dict(r).to_dict() for r in pending] == pending
