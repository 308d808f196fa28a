"""The dataset options of the command line: tokens (memmap), text with a BPE, hf, custom; the
user-config example; the binary-text check; the planner's bound on a depth-sized model."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import flops_fit
from conftest import REPO, run_cli
from flops_fit.config import (
    CustomDatasetConfig,
    DatasetConfig,
    HFDatasetConfig,
    Settings,
    TokensDatasetConfig,
)
from flops_fit.data import ByteCorpus, TokenCorpus, build_data
from flops_fit.errors import FlopsFitError
from flops_fit.models.gpt import GPT
from flops_fit.rundir.layout import DATA_DIR, TOKENIZER_FILE
from flops_fit.stages.pipeline import make_plan
from helpers.run import one_sentence

EXAMPLE = REPO / "examples" / "own_config"
TEXT = b"".join((Path(json.__file__).parent / n).read_bytes()
                for n in ("encoder.py", "decoder.py", "scanner.py", "__init__.py"))


def _write_tokens(folder: Path, ids: np.ndarray, dtype: str = "uint16") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cut = int(len(ids) * 0.9)
    ids[:cut].astype(dtype).tofile(folder / "train.bin")
    ids[cut:].astype(dtype).tofile(folder / "val.bin")


# ------------------------------------------------------------------------------ dataset=tokens


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_tokens_are_memmapped_and_drawn_as_the_byte_corpus_draws(tmp_path, dtype):
    ids = np.frombuffer(TEXT, np.uint8)
    _write_tokens(tmp_path, ids, dtype)
    d = build_data(TokensDatasetConfig(path=str(tmp_path), dtype=dtype, vocab_size=256), 32, 8)
    assert isinstance(d, TokenCorpus) and isinstance(d.train, np.memmap)
    cut = int(len(ids) * 0.9)
    ref = ByteCorpus(torch.from_numpy(ids[:cut].copy()), torch.from_numpy(ids[cut:].copy()), 32)
    for src in (d, ref):
        src.seed(7)
    for _ in range(3):  # the same generator, the same windows
        (x, y), (rx, ry) = d.train_batch(8), ref.train_batch(8)
        assert x.dtype == torch.long and x.shape == (8, 32)
        assert torch.equal(x, rx) and torch.equal(y, ry) and torch.equal(x[:, 1:], y[:, :-1])
    val = [b for b in d.val_batches(1000, 4)]  # fixed held-out windows, from val.bin only
    again = [b for b in d.val_batches(1000, 4)]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(val, again, strict=True))
    assert all(torch.equal(a[0], b[0]) for a, b in
               zip(val, ref.val_batches(1000, 4), strict=True))
    state = d.state_dict()
    x1, _ = d.train_batch(4)
    d.load_state_dict(state)
    assert torch.equal(d.train_batch(4)[0], x1)  # resumable like the byte corpus


def test_tokens_refuse_bad_files_in_one_sentence(tmp_path):
    _write_tokens(tmp_path, np.arange(5000) % 1000)
    with pytest.raises(FlopsFitError, match="vocab_size=500"):
        build_data(TokensDatasetConfig(path=str(tmp_path), vocab_size=500), 16)
    with pytest.raises(FlopsFitError, match="not a folder"):
        build_data(TokensDatasetConfig(path=str(tmp_path / "nope"), vocab_size=1000), 16)
    (tmp_path / "val.bin").write_bytes(b"\x01\x02\x03")  # 3 bytes: not whole uint16 ids
    with pytest.raises(FlopsFitError, match="whole number of uint16"):
        build_data(TokensDatasetConfig(path=str(tmp_path), vocab_size=1000), 16)


def test_tokens_vocab_size_reaches_the_plan(tmp_path):
    _write_tokens(tmp_path, np.arange(20000) % 1000)
    s = Settings(run_dir=tmp_path / "run",
                 dataset=TokensDatasetConfig(path=str(tmp_path), vocab_size=1000))
    s.model.kwargs["vocab_size"] = 1000  # what ${dataset.vocab_size} gives on the CLI
    s.budgets.values, s.budgets.min_steps = [1e11], 5
    small = Settings(run_dir=tmp_path / "run2")
    small.budgets.values, small.budgets.min_steps = [1e11], 5
    plan, byte_plan = make_plan(s), make_plan(small)
    assert plan.settings["dataset"]["vocab_size"] == 1000
    by_size = {r.size_value: r.num_params for r in byte_plan.runs}
    for r in plan.runs:  # 744 more embedding rows per size (tied head)
        if r.size_value in by_size:
            assert r.num_params - by_size[r.size_value] == (1000 - 256) * r.size_value


def test_tokens_from_the_cli_train(tmp_path):
    _write_tokens(tmp_path / "d", np.frombuffer(TEXT, np.uint8))
    out = run_cli("train", f"run_dir={tmp_path / 'run'}", "dataset=tokens",
                  f"dataset.path={tmp_path / 'd'}", "dataset.vocab_size=256",
                  "budgets.values=[3e9]", "budgets.sizes_per_budget=3", "budgets.min_steps=5",
                  "train.batch_size=8", "train.seq_len=32", "train.eval_tokens=1024",
                  "train.periodic_eval_tokens=256", "train.device=cpu", "train.threads=1")
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    runs = results["runs"] if isinstance(results, dict) else results
    assert runs and all(r["status"] == "completed" for r in runs)


# ------------------------------------------------------------------------- tokenizer=bpe


def test_bpe_is_trained_on_the_training_split_and_cached(tmp_path):
    marker = "zqxjv_marker_word "  # only in the validation part (the file's tail)
    (tmp_path / "corpus.txt").write_bytes(TEXT + (marker * 60).encode())
    cfg = DatasetConfig(name="text_files", path=str(tmp_path / "corpus.txt"), pattern="*",
                        val_fraction=0.1, tokenizer="bpe", bpe_vocab_size=400, vocab_size=400)
    run = tmp_path / "run"
    d = build_data(cfg, 32, 8, cache_dir=run)
    assert isinstance(d, TokenCorpus)
    (folder,) = (run / DATA_DIR).glob("tok-*")
    tok_file = folder / TOKENIZER_FILE
    vocab = json.loads(tok_file.read_text())["model"]["vocab"]
    assert 256 < len(vocab) <= 400
    assert not any("zqx" in t for t in vocab)  # never saw the held-out text
    assert d.info["tokens_per_byte"] < 0.75  # merges make fewer tokens than bytes
    assert int(d.train.max()) < 400
    stamp = tok_file.stat().st_mtime_ns
    d2 = build_data(cfg, 32, 8, cache_dir=run)  # cached: not retrained
    assert tok_file.stat().st_mtime_ns == stamp and d2.train_size == d.train_size
    other = DatasetConfig(**{**cfg.__dict__, "bpe_vocab_size": 300, "vocab_size": 300})
    build_data(other, 32, 8, cache_dir=run)  # other settings: another cache folder
    assert len(list((run / DATA_DIR).glob("tok-*"))) == 2


def test_bpe_vocab_follows_bpe_vocab_size_on_the_cli():
    from hydra import compose, initialize_config_module

    from flops_fit.cli import settings_from_cfg
    with initialize_config_module(config_module="flops_fit.conf", version_base="1.3"):
        cfg = compose(config_name="plan", overrides=["dataset.tokenizer=bpe",
                                                     "dataset.bpe_vocab_size=1024"])
    s = settings_from_cfg(cfg)
    assert s.dataset.vocab_size == 1024 == s.model.kwargs["vocab_size"]
    assert s.dataset.identity()["tokenizer"] == "bpe"
    assert "tokenizer" not in DatasetConfig().identity()  # bytes plans keep their identity


# ----------------------------------------------------------------------------- dataset=hf


def test_hf_text_and_ids_are_tokenized_once_into_the_run_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    lines = TEXT.decode().splitlines()
    datasets.Dataset.from_dict({"text": lines}).save_to_disk(str(tmp_path / "saved"))
    cfg = HFDatasetConfig(path=str(tmp_path / "saved"), val_fraction=0.1)
    d = build_data(cfg, 32, 8, cache_dir=tmp_path / "run")
    n_val = round(len(lines) * 0.1)
    assert d.val_size == sum(len(t.encode()) + 1 for t in lines[-n_val:])  # bytes + "\n"
    x, y = d.train_batch(4)
    assert torch.equal(x[:, 1:], y[:, :-1]) and int(x.max()) < 256
    ids = [list(range(i % 7, i % 7 + 40)) for i in range(200)]
    datasets.Dataset.from_dict({"input_ids": ids}).to_parquet(str(tmp_path / "p.parquet"))
    cfg = HFDatasetConfig(path=str(tmp_path / "p.parquet"), column="input_ids",
                          tokenizer="ids", vocab_size=64, val_fraction=0.1)
    d = build_data(cfg, 16, 4, cache_dir=tmp_path / "run")
    assert d.train_size == 180 * 40 and d.val_size == 20 * 40
    assert np.array_equal(np.asarray(d.train[:40]), np.arange(40))


def test_hf_without_the_extra_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(FlopsFitError, match=r"flops-fit\[hf\]"):
        build_data(HFDatasetConfig(path=str(tmp_path)), 32, cache_dir=tmp_path)


# ------------------------------------------------------------------------- dataset=custom


def test_custom_dataset_identity_names_its_settings():
    a = CustomDatasetConfig(_target_="mydata.TokenWindows", kwargs={"seq_len": 32})
    b = CustomDatasetConfig(_target_="mydata.TokenWindows", kwargs={"seq_len": 64})
    assert a.identity() != b.identity()
    assert {"_target_", "kwargs", "loss", "val_fraction"} <= set(a.identity())


def test_custom_factory_that_is_not_a_dataset_is_one_sentence(tmp_path):
    (tmp_path / "notdata.py").write_text("def make():\n    return [1, 2, 3]\n")
    out = run_cli("plan", f"run_dir={tmp_path / 'run'}", "dataset=custom",
                  "dataset._target_=notdata.make", cwd=tmp_path)
    one_sentence(out, "(input, target)", code=2)
    assert not (tmp_path / "run" / "plan.json").exists()


# ------------------------------------------------------- the user-config example (examples/)


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("example")
    shutil.copytree(EXAMPLE, work, dirs_exist_ok=True, ignore=shutil.ignore_patterns("data"))
    out = run_cli_py(work, "make_data.py")
    assert out.returncode == 0, out.stderr
    return work


def run_cli_py(cwd: Path, script: str):
    import subprocess

    return subprocess.run([sys.executable, script], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


SMALL_RUN = ["budgets.values=[2e9]", "budgets.sizes_per_budget=3", "budgets.min_steps=5",
             "train.batch_size=8", "train.seq_len=32", "train.eval_tokens=1024",
             "train.periodic_eval_tokens=256", "train.device=cpu", "train.threads=1"]


def test_example_own_model_and_tokens_from_config_dir(example):
    out = run_cli("train", "--config-dir", "conf", "model=lstm", "dataset=mytokens",
                  f"run_dir={example / 'run'}", *SMALL_RUN, cwd=example)
    assert out.returncode == 0, out.stderr
    plan = json.loads((example / "run" / "plan.json").read_text())
    assert plan["model"]["_target_"] == "mymodels.LSTMLM"
    assert plan["settings"]["dataset"]["name"] == "tokens"
    assert len(list((example / "run" / "runs").glob("*/result.json"))) == 3


def test_example_custom_dataset_and_custom_model_from_the_cli(example):
    out = run_cli("train", "model=custom", "model._target_=mymodels.LSTMLM",
                  "model.size_param=hidden", "+model.kwargs.vocab_size=256",
                  "dataset=custom", "dataset._target_=mydata.TokenWindows",
                  "+dataset.kwargs.path=data/train.bin", "+dataset.kwargs.seq_len=32",
                  f"run_dir={example / 'run-custom'}", *SMALL_RUN, cwd=example)
    assert out.returncode == 0, out.stderr
    plan = json.loads((example / "run-custom" / "plan.json").read_text())
    assert plan["settings"]["dataset"]["kwargs"] == {"path": "data/train.bin", "seq_len": 32}
    assert max(r["size_value"] for r in plan["runs"]) < 1000  # default grid, bounded
    assert len(list((example / "run-custom" / "runs").glob("*/result.json"))) == 3


# ------------------------------------------------------------------- bad input, found early


def test_text_files_given_token_ids_is_one_sentence_at_plan_time(tmp_path):
    (np.arange(10000) % 5000).astype(np.uint16).tofile(tmp_path / "train.bin")
    out = run_cli("plan", f"run_dir={tmp_path / 'run'}", "dataset=text_files",
                  f"dataset.path={tmp_path / 'train.bin'}")
    one_sentence(out, "does not look like text", "dataset=tokens", code=2)
    assert not (tmp_path / "run" / "plan.json").exists()


class DeepGPT(GPT):
    """A GPT whose size is its depth (the default grid reaches 65,536 layers)."""

    def __init__(self, n_layer: int, width: int = 32, **kw) -> None:
        super().__init__(width=width, head_dim=16, width_per_layer=1 << 30, min_layers=n_layer,
                         **kw)


def test_depth_sized_model_plans_without_building_huge_models(monkeypatch):
    built: list[int] = []
    real = flops_fit.planning.flops.count_params

    def counting(cls, kwargs):
        built.append(kwargs["n_layer"])
        return real(cls, kwargs)

    monkeypatch.setattr(flops_fit.planning.flops, "count_params", counting)
    monkeypatch.setattr(flops_fit.planning.contracts, "count_params", counting)
    plan = flops_fit.find_optimal(DeepGPT, "n_layer", {"vocab_size": 256, "seq_len": 64},
                                  compute_budgets=[1e10, 3e10], min_steps=20)
    assert plan.runs and max(built) < 100  # 3e10 FLOPs train <0.5M params: ~40 layers
    assert max(r.size_value for r in plan.runs) <= max(built)
