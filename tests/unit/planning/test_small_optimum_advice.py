"""An expected optimum below the smallest model: the advice fits what the size knob can do."""

from __future__ import annotations

import warnings

from flops_fit.models.gpt import GPT
from flops_fit.planning.flops import smaller_buildable
from flops_fit.planning.planner import plan_sweep
from helpers.models import HeadsGPT

KW = {"vocab_size": 256, "seq_len": 64, "head_dim": 16}


def _notes(model_cls, size_param, kwargs, sizes, budget: float = 1e9) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_sweep(model_cls, size_param, kwargs, [budget], sizes=sizes, sizes_per_budget=3,
                          tokens_per_param=100.0, batch_size=4, seq_len=64, min_steps=1)
    return [n for n in plan.warnings if "below the smallest" in n]


def test_smallest_buildable_size_already_says_raise_the_budgets():
    # the GPT builds no width below one head (head_dim=16): lowering size_min cannot help
    assert smaller_buildable(GPT, "width", KW, 16, None) is None
    (note,) = _notes(GPT, "width", KW, list(range(16, 257, 16)))
    assert "width=16 is already the smallest size" in note and "raise the budgets" in note
    assert "lower model.size_min" not in note
    # a heads-constrained width model at its smallest multiple of the head count
    (note,) = _notes(HeadsGPT, "n_embd", {"n_head": 4, "seq_len": 64},
                     list(range(4, 257, 4)), 1e8)
    assert "n_embd=4 is already the smallest size" in note


def test_a_smaller_buildable_size_says_lower_size_min():
    (note,) = _notes(GPT, "width", KW, list(range(48, 257, 16)))
    assert "lower model.size_min (width=32 builds" in note
