"""train.loggers: TensorBoard, MLflow and W&B (offline) with the real libraries, read back with
each library's own reader (W&B: its offline .wandb file, a LevelDB-style log of protobufs)."""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import pytest

from flops_fit.config import DatasetConfig, TrainConfig
from flops_fit.data import build_data
from flops_fit.errors import FlopsFitError
from flops_fit.models.gpt import GPT
from flops_fit.planning.planner import plan_sweep
from flops_fit.rundir.layout import TENSORBOARD_DIR, TRACKERS_FILE
from flops_fit.training.runner import TrainingRunner
from flops_fit.training.tracking import backend as trackers
from flops_fit.training.tracking import loggers
from helpers.run import TINY

GPT_KW = {"vocab_size": 256, "seq_len": 32, "head_dim": 16, "width_per_layer": 32}


def _have(name: str) -> bool:
    try:
        trackers.import_backend(name)
        return True
    except FlopsFitError:
        return False


def _tb_series(logdir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def _wandb_history(path: Path) -> list[dict]:
    """History rows of an offline .wandb file (W&B's LevelDB-style log: 7-byte file header,
    32 KiB blocks, 7-byte record headers: crc32, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2 as pb
    data = path.read_bytes()
    assert data[:3] == b":W&" or data[:3] == b"W&B" or len(data) > 7
    pos, block, rows, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):  # full or last: one record
            rec = pb.Record()
            rec.ParseFromString(buf)
            if rec.HasField("history"):
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                             for i in rec.history.item})
            buf = b""
    return rows


def test_unknown_and_missing_extra_are_one_sentence(monkeypatch):
    with pytest.raises(FlopsFitError, match="unknown"):
        loggers.check_loggers(["neptune"])
    monkeypatch.setitem(trackers.PACKAGES, "tensorboard", "no_such_package_flops_fit")
    with pytest.raises(FlopsFitError, match=r"pip install 'flops-fit\[tensorboard\]'"):
        loggers.check_loggers(["tensorboard"])
    with pytest.raises(FlopsFitError, match="train.loggers"):
        TrainConfig(loggers=["tensorbored"]).check()


@pytest.mark.skipif(not all(_have(n) for n in ("tensorboard", "mlflow", "wandb")),
                    reason="the tensorboard, mlflow and wandb extras are not all installed")
def test_train_analyze_visualize_log_to_all_three(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # our reader of the file store
    run_dir = tmp_path / "sweep"
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wb"), "WANDB_SILENT": "true"}
    (tmp_path / "wb").mkdir()
    # wsd with shared trunks: each run's logged curve must include its trunk's steps
    out = cli("train", f"run_dir={run_dir}", *TINY, "train.loggers=[tensorboard,mlflow,wandb]",
              "train.schedule=wsd", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "warning" not in out.stderr, out.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results and all(r["status"] == "completed" for r in results)

    # TensorBoard: every run's train-loss series, against the step and against FLOPs
    for r in results:
        metrics = [json.loads(x) for x in (run_dir / "runs" / r["run_id"] / "metrics.jsonl")
                   .read_text().splitlines()]
        want = [(m["step"], m["train_loss"]) for m in metrics if m.get("train_loss") is not None]
        got = _tb_series(run_dir / TENSORBOARD_DIR / r["run_id"], "train_loss")
        assert [s for s, _ in got] == [s for s, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
        by_flops = _tb_series(run_dir / TENSORBOARD_DIR / r["run_id"] / "vs_flops",
                              "vs_flops/train_loss")
        assert [s for s, _ in by_flops] == [int(m["flops"] // 1e6) for m in metrics
                                            if m.get("train_loss") is not None]

    # MLflow: one experiment for the run directory, one run per flops-fit run, with the spec
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    exp = client.get_experiment_by_name(loggers.sweep_name(run_dir))
    assert exp is not None
    for r in results:
        ml_id = json.loads((run_dir / "runs" / r["run_id"] / TRACKERS_FILE).read_text())["mlflow"]
        hist = client.get_metric_history(ml_id, "train_loss")
        assert len(hist) == len(_tb_series(run_dir / TENSORBOARD_DIR / r["run_id"],
                                           "train_loss"))
        run = client.get_run(ml_id)
        assert run.data.params["num_params"] == str(r["num_params"])
        assert run.info.experiment_id == exp.experiment_id

    # W&B offline: each run's history holds its train-loss series
    for r in results:
        wid = json.loads((run_dir / "runs" / r["run_id"] / TRACKERS_FILE).read_text())["wandb"]
        files = list((tmp_path / "wb").rglob(f"run-{wid}.wandb"))
        assert files, list((tmp_path / "wb").rglob("*.wandb"))
        rows = _wandb_history(files[0])
        losses = [row["train_loss"] for row in rows if "train_loss" in row]
        assert len(losses) == len(_tb_series(run_dir / TENSORBOARD_DIR / r["run_id"],
                                             "train_loss")) and losses

    # analyze + visualize: the laws, the Chinchilla table and the plots to the sweep entry
    out = cli("analyze", f"run_dir={run_dir}", env=env)
    assert out.returncode in (0, 3, 5), out.stdout + out.stderr
    if out.returncode == 0:
        assert cli("visualize", f"run_dir={run_dir}", env=env).returncode == 0
        ids = json.loads((run_dir / "analysis" / TRACKERS_FILE).read_text())
        assert set(ids) == {"tensorboard", "mlflow", "wandb"}
        arts = {a.path for a in client.list_artifacts(ids["mlflow"])}
        assert {"scaling_laws.json", "chinchilla_table.md", "plots"} <= arts
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(str(run_dir / TENSORBOARD_DIR / "sweep-fit"),
                               size_guidance={"images": 0})
        acc.Reload()
        assert acc.Tags()["images"] and any(t.startswith("laws/") for t in acc.Tags()["scalars"])


@pytest.mark.skipif(not _have("tensorboard") or not _have("mlflow"),
                    reason="the tensorboard and mlflow extras are needed")
def test_resume_continues_the_curve_and_a_broken_logger_never_fails_a_run(tmp_path, capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_sweep(GPT, "width", dict(GPT_KW), [1.5e9], sizes=[16, 32, 48],
                          sizes_per_budget=3,
                          tokens_per_param=50, batch_size=8, seq_len=32, min_steps=5)
    spec = plan.runs[1]
    cfg = TrainConfig(batch_size=8, seq_len=32, eval_tokens=2048, periodic_eval_tokens=512,
                      log_every=5, device="cpu", threads=1, checkpoint_every_s=0,
                      loggers=["tensorboard", "mlflow"])
    data = build_data(DatasetConfig(max_bytes=400_000), 32)

    class Stop(BaseException):
        pass

    def stop_at(step: int) -> None:
        if step == 12:
            raise Stop

    with pytest.raises(Stop):
        TrainingRunner(GPT, data, cfg, on_step=stop_at).run(spec, tmp_path)
    ids = json.loads((tmp_path / "runs" / spec.run_id / TRACKERS_FILE).read_text())
    rec = TrainingRunner(GPT, data, cfg).run(spec, tmp_path)
    assert rec["status"] == "completed" and rec["resumed"] == 1
    assert json.loads((tmp_path / "runs" / spec.run_id / TRACKERS_FILE).read_text()) == ids
    steps = [s for s, _ in _tb_series(tmp_path / TENSORBOARD_DIR / spec.run_id, "train_loss")]
    assert steps == sorted(set(steps)) and steps[-1] == spec.steps  # one curve, no repeats

    # a logger that cannot write (its folder is a file) is said once; the run completes
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / TENSORBOARD_DIR).write_text("not a folder")
    loggers._SAID.clear()
    rec = TrainingRunner(GPT, data, cfg).run(spec, broken)
    assert rec["status"] == "completed"
    err = capfd.readouterr().err
    assert err.count("tensorboard logger") == 1, err
