"""The byte corpora, the user-data wrapper and the contract checks (no training here)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from flops_fit.config import DatasetConfig
from flops_fit.data import ByteCorpus, TorchDataSource, build_data
from flops_fit.data import corpus as data_mod
from flops_fit.errors import FlopsFitError
from flops_fit.planning.contracts import validate_dataset, validate_loss_fn

SMALL = DatasetConfig(max_bytes=400_000)


def _folder(tmp_path, n_files=40, size=3000):
    """A folder of text files, each made of one repeated marker line unique to the file."""
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    for i in range(n_files):
        sub = root / "sub" if i % 2 else root
        line = f"<file {i:03d}> the quick brown fox\n"
        (sub / f"f{i:03d}.txt").write_text(line * (size // len(line) + 1))
    (root / "ignored.bin").write_bytes(b"\x00" * 5000)  # does not match the pattern
    return root


def test_stdlib_corpus_loads_split_and_caches():
    d = build_data(SMALL, seq_len=64)
    assert isinstance(d, ByteCorpus)
    assert d.train.dtype == torch.uint8 and d.val.dtype == torch.uint8
    assert d.train_size > 0 and d.val_size > 0
    assert d.train_size + d.val_size <= SMALL.max_bytes
    d2 = build_data(SMALL, seq_len=64)
    assert d2.train is d.train  # cached per process
    data_mod._CORPUS_CACHE.clear()
    d3 = build_data(SMALL, seq_len=64)
    assert torch.equal(d3.train, d.train) and torch.equal(d3.val, d.val)  # deterministic


def test_split_is_by_file_and_never_overlaps(tmp_path):
    root = _folder(tmp_path)
    cfg = DatasetConfig(name="text_files", path=str(root), pattern="*.txt", val_fraction=0.2)
    d = build_data(cfg, seq_len=16)
    train, val = bytes(d.train.tolist()).decode(), bytes(d.val.tolist()).decode()
    tr = {m for m in range(40) if f"<file {m:03d}>" in train}
    va = {m for m in range(40) if f"<file {m:03d}>" in val}
    assert tr and va and not tr & va and tr | va == set(range(40))
    assert "\x00" not in train + val  # only files matching the pattern


def test_single_file_is_split_by_position(tmp_path):
    f = tmp_path / "one.txt"
    text = bytes(range(32, 127)) * 40  # printable ASCII: text (binary files are refused)
    f.write_bytes(text)
    d = build_data(DatasetConfig(name="text_files", path=str(f), val_fraction=0.1), seq_len=32)
    assert d.val_size == int(len(text) * 0.1)
    assert d.train_size + d.val_size == len(text)
    assert bytes(d.val.tolist()) == text[-d.val_size:]


def test_windows_are_shifted_and_sampling_is_seeded():
    d = build_data(SMALL, seq_len=64)
    d.seed(1)
    x1, y1 = d.train_batch(8)
    assert x1.shape == (8, 64) and y1.shape == (8, 64) and x1.dtype == torch.long
    assert torch.equal(x1[:, 1:], y1[:, :-1])
    state = d.state_dict()
    x2, _ = d.train_batch(8)
    d.seed(1)
    assert torch.equal(d.train_batch(8)[0], x1)
    d.load_state_dict(state)
    assert torch.equal(d.train_batch(8)[0], x2)  # resumable
    d.seed(2)
    assert not torch.equal(d.train_batch(8)[0], x1)


def test_val_batches_are_fixed():
    d = build_data(SMALL, seq_len=64)
    a = [x for x, _ in d.val_batches(1000, batch_size=4)]
    d.seed(5)
    d.train_batch(3)
    b = [x for x, _ in d.val_batches(1000, batch_size=4)]
    assert sum(len(x) for x in a) == 16  # ceil(1000 / 64) windows
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


@pytest.mark.parametrize(
    "cfg, match",
    [
        (DatasetConfig(name="text_files", path="/nonexistent/corpus"), "does not exist"),
        (DatasetConfig(name="text_files", path=None), "needs a path"),
        (DatasetConfig(name="wikipedia"), "Unknown dataset name"),
        (DatasetConfig(val_fraction=1.5), "val_fraction"),
    ],
)
def test_bad_dataset_configs(cfg, match):
    with pytest.raises(FlopsFitError, match=match):
        build_data(cfg, seq_len=32)


def test_empty_folder_and_empty_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FlopsFitError, match="No files matching"):
        build_data(DatasetConfig(name="text_files", path=str(empty)), seq_len=32)
    (empty / "a.txt").write_text("")
    (empty / "b.txt").write_text("")
    with pytest.raises(FlopsFitError, match="is empty"):
        build_data(DatasetConfig(name="text_files", path=str(empty), pattern="*.txt"), 32)


def test_corpus_smaller_than_one_batch(tmp_path):
    root = _folder(tmp_path, n_files=6, size=400)
    cfg = DatasetConfig(name="text_files", path=str(root), pattern="*.txt", val_fraction=0.3)
    with pytest.raises(FlopsFitError, match="fewer than one batch") as exc:
        build_data(cfg, seq_len=64, batch_size=64)
    assert "\n" not in str(exc.value)
    with pytest.raises(FlopsFitError, match="too small"):
        build_data(cfg, seq_len=4096)


# -- user data ---------------------------------------------------------------------------------


def _pairs(n=200):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long())


def test_torch_dataset_split_is_disjoint_and_resumable():
    ds = _pairs()
    src = TorchDataSource(ds, val_fraction=0.1)
    assert src.tokens_per_sample == 1 and src.val_size == 20 and src.train_size == 180
    assert not set(src.val_idx.tolist()) & set(src.train_idx.tolist())
    src.seed(3)
    xb, yb = src.train_batch(16)
    assert xb.shape == (16, 8) and yb.shape == (16,)
    seen = set()
    for _ in range(12):  # more than one epoch: only training samples, ever
        x, _ = src.train_batch(16)
        for row in x:
            seen.add(int(torch.nonzero((ds.tensors[0] == row).all(1))[0]))
    assert not seen & set(src.val_idx.tolist())
    state = src.state_dict()
    nxt = src.train_batch(16)[0]
    src.seed(0)
    src.load_state_dict(state)
    assert torch.equal(src.train_batch(16)[0], nxt)
    vals = list(src.val_batches(20, batch_size=8))
    assert [len(v[0]) for v in vals] == [8, 8, 4]


def test_dataloader_and_token_sequences():
    tokens = torch.randint(0, 256, (64, 17))
    ds = TensorDataset(tokens[:, :-1], tokens[:, 1:])
    src = TorchDataSource(DataLoader(ds, batch_size=5), val_fraction=0.25)
    assert src.tokens_per_sample == 16
    x, y = src.train_batch(4)  # re-batched at the requested size
    assert x.shape == (4, 16) and y.shape == (4, 16)
    assert src.example_input().shape == (1, 16)


class _Stream(IterableDataset):
    def __iter__(self):
        for i in range(50):
            yield torch.tensor([float(i)]), torch.tensor(i % 2)


def test_iterable_dataset_holds_out_every_kth_sample():
    src = TorchDataSource(_Stream(), val_fraction=0.2)
    val = torch.cat([x for x, _ in src.val_batches(100, batch_size=4)]).flatten().tolist()
    assert val == [float(i) for i in range(0, 50, 5)]
    src.seed(0)
    train = torch.cat([src.train_batch(10)[0] for _ in range(8)]).flatten().tolist()
    assert not set(train) & set(val)
    src.seed(0)
    src.train_batch(7)
    state = src.state_dict()
    nxt = src.train_batch(5)[0]
    src.load_state_dict(state)
    assert torch.equal(src.train_batch(5)[0], nxt)


def test_contract_checks():
    with pytest.raises(FlopsFitError, match="torch Dataset or DataLoader"):
        validate_dataset(42)
    with pytest.raises(FlopsFitError, match="is empty"):
        validate_dataset(TensorDataset(torch.zeros(0, 3)))
    with pytest.raises(FlopsFitError, match=r"\(input, target\) pairs"):
        validate_dataset(TensorDataset(torch.zeros(4, 3)))
    with pytest.raises(FlopsFitError, match="too small"):
        TorchDataSource(TensorDataset(torch.zeros(1, 3), torch.zeros(1)))
    with pytest.raises(FlopsFitError, match="fewer than one batch"):
        TorchDataSource(_pairs(20)).check_batch(64)
    out, tgt = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(FlopsFitError, match="scalar") as exc:
        validate_loss_fn(lambda o, t: (o - t) ** 2, out, tgt)
    assert "\n" not in str(exc.value)
    with pytest.raises(FlopsFitError, match="callable"):
        validate_loss_fn("mse", out, tgt)
    validate_loss_fn(lambda o, t: ((o - t) ** 2).mean(), out, tgt)
