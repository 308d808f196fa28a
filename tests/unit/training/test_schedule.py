"""schedule.py: the LR rule, warm-up length, cosine decay and the optimizer's groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from flops_fit.config import TrainConfig
from flops_fit.training.schedule import Schedule, lr_at, lr_for_size, make_optimizer, warmup_steps


@pytest.mark.parametrize("steps", [1, 2, 5, 45, 150, 303, 400, 3000, 9000])
@pytest.mark.parametrize("fraction,floor", [(0.1, 100), (0.05, 0), (0.0, 0), (0.1, 0)])
def test_warmup_length(steps, fraction, floor):
    w = warmup_steps(steps, fraction, floor)
    assert 0 <= w <= max(0, steps - 1)  # never the whole run
    if fraction <= 0 and floor <= 0:
        assert w == 0
    elif steps > 1:
        assert w >= min(max(1, round(fraction * steps)), steps - 1)  # at least the fraction
        assert w >= min(floor, steps // 2)  # and the floor, capped at half the run


@pytest.mark.parametrize("steps,fraction,floor", [(100, 0.05, 0), (400, 0.1, 100),
                                                  (150, 0.1, 100), (3000, 0.1, 100), (3, 0.1, 0)])
def test_schedule_warms_up_then_decays_monotonically_to_min(steps, fraction, floor):
    cfg = TrainConfig(schedule="cosine", warmup_fraction=fraction, warmup_min_steps=floor,
                      min_lr_ratio=0.1)
    peak = 3e-3
    sched = Schedule.for_run(cfg, steps, peak)
    assert sched.warmup == warmup_steps(steps, fraction, floor)
    lrs = [sched.lr(s) for s in range(steps)]
    # the same numbers, bit for bit, as the function the trainer used before
    assert lrs == [lr_at(s, steps, peak, fraction, 0.1, floor) for s in range(steps)]
    w = sched.warmup
    warm, decay = lrs[:w], lrs[w:]
    assert all(0 < a < b for a, b in zip(warm, warm[1:], strict=False))  # linear warm-up
    assert all(x < peak for x in warm)
    assert decay[0] == pytest.approx(peak)  # the peak right after warm-up
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))  # monotone decay
    assert lrs[-1] == pytest.approx(0.1 * peak, rel=1e-12)  # min_lr_ratio x peak at the end


def test_schedule_describe_is_the_record_sentence():
    cfg = TrainConfig(schedule="cosine")
    assert Schedule.for_run(cfg, 1000, 1e-3).describe() == (
        "linear warm-up 0.1 (at least 100 steps, at most half), cosine to 0.1 x peak at the "
        "last step")


def test_lr_for_size_and_override():
    cfg = TrainConfig(schedule="cosine")
    assert lr_for_size(int(cfg.lr_ref_params), cfg) == pytest.approx(cfg.lr_base)
    assert lr_for_size(0, cfg) == lr_for_size(1, cfg)  # N is at least 1
    assert lr_for_size(123, TrainConfig(lr=0.02)) == 0.02


def test_optimizer_decays_matrices_only():
    model = nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4), nn.Linear(4, 4))
    opt = make_optimizer(model, 1e-3, TrainConfig(weight_decay=0.1, beta1=0.8, beta2=0.9),
                         torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and len(decay["params"]) == 2
    assert all(p.dim() < 2 for p in no_decay["params"]) and len(no_decay["params"]) == 3
    assert decay["betas"] == (0.8, 0.9) and decay["lr"] == 1e-3
