"""Every candidate size is built and counted before the sweep: unbuildable sizes are dropped in
one printed line, too few buildable sizes are refused, a 6N fallback is printed with its cause."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from flops_fit.config import BudgetsConfig, EstimateConfig, ModelConfig, Settings
from flops_fit.errors import FlopsFitError
from flops_fit.planning.flops import check_sizes
from flops_fit.stages.pipeline import plan_stage
from helpers.models import HeadsGPT, MetaShyGPT

SMOKE = dict(values=[2e11, 6e11], sizes_per_budget=3, tokens_per_param=100.0, min_steps=10)


def _settings(tmp_path, target: str, size_param: str, lo: int, hi: int, step: int,
              **kwargs) -> Settings:
    model = ModelConfig(_target_=target, size_param=size_param, size_min=lo, size_max=hi,
                        size_step=step, kwargs={"vocab_size": 256, "seq_len": 64, **kwargs})
    s = Settings(run_dir=tmp_path, model=model, budgets=BudgetsConfig(**SMOKE),
                 estimate=EstimateConfig(probe=False))
    s.train.seq_len = 64
    return s


def _plan(s: Settings) -> tuple[object, list[str]]:
    out = Console(file=io.StringIO(), width=300)
    plan = plan_stage(s, out)
    return plan, out.file.getvalue().splitlines()


def test_heads_constrained_width_model_drops_unbuildable_sizes_in_one_line(tmp_path):
    s = _settings(tmp_path, "helpers.models.HeadsGPT", "n_embd", 8, 128, 2, n_head=4)
    plan, lines = _plan(s)
    assert all(r.size_value % 4 == 0 for r in plan.runs)  # before: n_embd=30, 46 were planned
    said = [line for line in lines if "cannot be built" in line]
    assert len(said) == 1, lines
    assert "n_embd=10, 14, 18" in said[0] and "multiple of 4" in said[0]
    assert "its forward fails" in said[0] and "is invalid for input of size" in said[0]
    assert plan.settings["flops_method"].startswith("torch.utils.flop_counter")
    # `train` plans too (without showing the table): the same line is printed there
    s.extend = False
    out = Console(file=io.StringIO(), width=300)
    from flops_fit.stages.pipeline import plan_or_reconcile
    plan_or_reconcile(s, out)
    assert sum("cannot be built" in line for line in out.file.getvalue().splitlines()) == 1


def test_a_constructor_that_raises_is_named_with_its_error(tmp_path):
    check = check_sizes(HeadsGPT, "n_embd", {"n_layer": 2}, [-1, 8, 12, 16], None)
    assert check.valid == [8, 12, 16]
    assert check.dropped[0][0] == -1 and "constructor raises" in check.dropped[0][1]


def test_too_few_buildable_sizes_are_refused_in_one_sentence(tmp_path):
    s = _settings(tmp_path, "helpers.models.HeadsGPT", "n_embd", 8, 14, 2, n_head=4)
    with pytest.raises(FlopsFitError, match=r"Only 2 size\(s\).*n_embd=8, n_embd=12.*"
                                            r"multiple of 4") as exc:
        plan_stage(s, Console(file=io.StringIO()))
    assert exc.value.exit_code == 2 and "\n" not in str(exc.value)
    assert not (tmp_path / "plan.json").exists()


def test_a_6n_fallback_is_printed_with_its_cause(tmp_path):
    s = _settings(tmp_path, "helpers.models.MetaShyGPT", "width", 16, 128, 16)
    plan, lines = _plan(s)
    said = [line for line in lines if "6N" in line]
    assert len(said) == 1 and "this forward reads token values" in said[0], lines
    assert plan.runs and plan.settings["flops_method"].startswith("6N fallback")
    assert all(r.flops_per_token == 6.0 * r.num_params for r in plan.runs)
    assert check_sizes(MetaShyGPT, "width", {"vocab_size": 256, "seq_len": 64},
                       [16, 32], None).dropped == []
