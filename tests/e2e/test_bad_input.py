"""The bad-input catalogue: one clear sentence, a non-zero exit, no traceback, nothing lost.

Cases already in tests/test_cli.py (unknown model option, unknown or non-module ``_target_``
class, missing size parameter, budget 0 / negative / NaN / not a number, misspelled existing
key, missing dataset path, run_dir a file for ``plan``, corrupt plan.json for ``train``),
tests/test_analyzer.py (malformed results.json records, too few points in Python) and
tests/test_cron.py (too few points from the command line: exit 3) are not repeated here.
"""

from __future__ import annotations

import io
import json
import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import TensorDataset

import flops_fit
from conftest import run_cli
from flops_fit.config import TrainConfig
from flops_fit.errors import FlopsFitError
from flops_fit.models.gpt import GPT
from helpers.run import (
    TESTS,
    TINY,
    assert_kept,
    one_sentence,
    snapshot,
    synthetic_records,
    write_results,
)

# ------------------------------------------------------------------------------ config

HYDRA_ERRORS = [  # Hydra's own messages (several lines, exit 1, no traceback)
    (["nosuch=1"], "Could not override 'nosuch'"),  # unknown option
    (["budgets=smok"], "Could not find 'budgets/smok'"),  # unknown option of a group
]

OUR_ERRORS = [
    (["+overwrtie=true"], "Unknown config key(s) overwrtie"),  # misspelled key added with +
    (["+predict.budjet=1e18"], "Unknown config key(s) predict.budjet"),
    (["+train.lr_bse=1"], "Unknown key(s) lr_bse in the train config"),
    (["+model.kwargs.bogus=1"], "does not accept argument(s) bogus"),
    (["budgets.values=[]"], "budgets.values is empty"),
    (["budgets.values=[1e12,inf]"], "must be a finite positive number"),
    (["-m", "--cfg", "job"], "Only one of --run, --multirun, --cfg"),  # Hydra's flag check
]


@pytest.mark.parametrize("overrides,message", HYDRA_ERRORS)
def test_unknown_option_or_group(tmp_path, overrides, message):
    out = run_cli("plan", f"run_dir={tmp_path}", *overrides)
    text = out.stdout + out.stderr
    assert out.returncode == 1 and message in text and "Traceback" not in text, text
    assert not (tmp_path / "plan.json").exists()


@pytest.mark.parametrize("overrides,message", OUR_ERRORS)
def test_bad_key_or_budget_is_one_sentence(tmp_path, overrides, message):
    out = run_cli("plan", f"run_dir={tmp_path}", *overrides)
    one_sentence(out, message, code=2)
    assert not (tmp_path / "plan.json").exists()


@pytest.mark.parametrize("command", ["train", "find-optimal", "validate"])
@pytest.mark.parametrize("override,message", [
    ("train.warmup_min_steps=-1", "train.warmup_min_steps=-1 is not valid"),
    ("train.lr=-1", "must be a positive number"),
])
def test_bad_train_setting_before_anything_is_written(tmp_path, command, override, message):
    out = run_cli(command, f"run_dir={tmp_path}", "budgets=smoke", override)
    one_sentence(out, message, code=2)
    assert not (tmp_path / "plan.json").exists() and not (tmp_path / "validation").exists()


# ------------------------------------------------------------------------------ datasets


def test_empty_dataset_folder(tmp_path):
    data = tmp_path / "corpus"
    data.mkdir()
    (data / "notes.md").write_text("not matched by *.txt")
    out = run_cli("train", f"run_dir={tmp_path / 'run'}", *TINY, "dataset=text_files",
                  f"dataset.path={data}")
    one_sentence(out, "No files matching '*.txt'", str(data), code=2)
    assert not (tmp_path / "run" / "runs").exists()


def test_dataset_shorter_than_one_batch(tmp_path):
    data = tmp_path / "corpus"
    data.mkdir()
    (data / "a.txt").write_text("hello world\n" * 3)
    before = snapshot(data)
    out = run_cli("train", f"run_dir={tmp_path / 'run'}", *TINY, "dataset=text_files",
                  f"dataset.path={data}")
    one_sentence(out, "too small", code=2)
    assert not (tmp_path / "run" / "runs").exists()
    assert_kept(before, data)


# ------------------------------------------------------------------------------ corrupt files


def test_corrupt_results_json(tmp_path):
    run_dir = tmp_path / "run"
    write_results(run_dir, synthetic_records())
    text = (run_dir / "results.json").read_text()
    (run_dir / "results.json").write_text(text[: len(text) // 2])  # half-written
    (run_dir / "analysis").mkdir()
    (run_dir / "analysis" / "scaling_laws.json").write_text('{"earlier": "fit"}\n')
    before = snapshot(run_dir)
    out = run_cli("analyze", f"run_dir={run_dir}")
    one_sentence(out, "is not valid JSON", "results.json", code=2)
    assert_kept(before, run_dir)


def test_corrupt_scaling_laws_json(tmp_path):
    run_dir = tmp_path / "run"
    write_results(run_dir, synthetic_records())
    (run_dir / "analysis").mkdir()
    (run_dir / "analysis" / "scaling_laws.json").write_text('{"parametric": {"E": 1.8,')
    before = snapshot(run_dir)
    out = run_cli("visualize", f"run_dir={run_dir}")
    one_sentence(out, "scaling_laws.json is not valid JSON", code=2)
    assert_kept(before, run_dir)
    assert not (run_dir / "report.html").exists()


def test_plan_json_of_the_wrong_shape(tmp_path):
    (tmp_path / "plan.json").write_text('{"runs": 5}')
    before = snapshot(tmp_path)
    out = run_cli("train", f"run_dir={tmp_path}")
    one_sentence(out, "plan.json does not have the expected shape", code=2)
    assert_kept(before, tmp_path)


# ------------------------------------------------------------------------------ user code


def test_model_that_raises_in_forward_is_recorded_failed(tmp_path):
    """The width-32 run fails with its message; the sweep trains the other three."""
    run_dir = tmp_path / "run"
    model = ["model._target_=helpers.models.BrokenGPT"]
    out = run_cli("train", f"run_dir={run_dir}", *TINY, *model, env={"PYTHONPATH": str(TESTS)})
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Traceback" not in text
    assert "3 completed, 1 failed" in text
    records = {r["size_value"]: r for r in json.loads((run_dir / "results.json").read_text())}
    assert records[32]["status"] == "failed"
    assert "BrokenGPT refuses to run at width 32" in records[32]["error"]
    assert "refuses to run" in text  # the log line names the cause
    assert all(records[w]["status"] == "completed" for w in (16, 48, 64))

    # the same run directory where the model's module cannot be imported: one sentence
    before = snapshot(run_dir)
    out = run_cli("train", f"run_dir={run_dir}", *TINY, *model,
                  env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    one_sentence(out, "Cannot import model _target_ 'helpers.models.BrokenGPT'", code=2)
    assert_kept(before, run_dir)


def test_loss_fn_returning_a_non_scalar(tmp_path):
    """``find_optimal(..., loss_fn=..., train=True)``: one sentence before any run starts."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    before = snapshot(out_dir)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 256, (512, 33), generator=g)
    data = TensorDataset(tokens[:, :-1], tokens[:, 1:])

    def per_token_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                               reduction="none")

    kw = {"vocab_size": 256, "seq_len": 32, "head_dim": 16, "width_per_layer": 32}
    with warnings.catch_warnings(), pytest.raises(FlopsFitError) as exc:
        warnings.simplefilter("ignore")
        flops_fit.find_optimal(GPT, "width", kw, dataset=data, loss_fn=per_token_loss,
                               compute_budgets=[1e9], train=True, output_dir=out_dir,
                               sizes=[16, 32, 48], sizes_per_budget=3, min_steps=5,
                               train_config=TrainConfig(batch_size=8, seq_len=32, device="cpu"),
                               console=Console(file=io.StringIO()))
    msg = str(exc.value)
    assert "loss_fn must return a scalar tensor" in msg and "\n" not in msg
    assert not (out_dir / "runs").exists()
    assert_kept(before, out_dir)


# ------------------------------------------------------------------------------ run_dir a file


@pytest.mark.parametrize("args", [
    ["analyze"],
    ["train", "-m", "train.shard=0,1", "train.num_shards=2", "hydra/launcher=joblib"],
], ids=["analyze", "train-multirun"])
def test_run_dir_that_is_a_file(tmp_path, args):
    f = tmp_path / "results"
    f.write_text("keep me")
    out = run_cli(args[0], f"run_dir={f}", *args[1:])
    one_sentence(out, f"run_dir {f} is a file, not a folder", code=2)
    assert f.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["results"]
