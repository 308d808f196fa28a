"""Counting: parameters on the meta device, FLOPs per token from the flop counter."""

import pytest
import torch
import torch.nn as nn

from flops_fit.models import GPT, MLPLM
from flops_fit.planning.flops import (
    count_model,
    count_params,
    gpt_flops_formula,
    gpt_param_formula,
)


@pytest.mark.parametrize("width", [16, 48, 64, 96, 128, 256, 512])
def test_gpt_param_counts_equal_hand_formula(width):
    total, non_emb = count_params(GPT, {"width": width, "vocab_size": 256, "seq_len": 128})
    assert (total, non_emb) == gpt_param_formula(width, 256, 128)


def test_meta_count_matches_a_real_model():
    real = GPT(width=64, vocab_size=256, seq_len=64)
    assert count_params(GPT, {"width": 64, "vocab_size": 256, "seq_len": 64})[0] == sum(
        p.numel() for p in real.parameters()
    )


def test_counting_allocates_no_weights():
    # a 1024-wide, 32-layer model is ~400M parameters: 1.6 GB if it were materialised
    total, _ = count_params(GPT, {"width": 1024, "vocab_size": 256, "seq_len": 128})
    assert total > 3e8


@pytest.mark.parametrize("width", [32, 64, 128, 256])
def test_measured_flops_equal_matmul_formula(width):
    c = count_model(GPT, {"width": width, "vocab_size": 256, "seq_len": 128})
    assert c.flops_per_token == pytest.approx(gpt_flops_formula(width, 256, 128), rel=1e-9)
    assert "flop_counter" in c.flops_method


@pytest.mark.parametrize("width", [128, 256, 512])
def test_measured_flops_agree_with_6n_plus_attention(width):
    kw = {"width": width, "vocab_size": 256, "seq_len": 128}
    c = count_model(GPT, kw)
    layers = max(2, width // 32)
    six_n_plus_attention = 6 * c.num_params + 12 * layers * 128 * width
    assert c.flops_per_token == pytest.approx(six_n_plus_attention, rel=0.03)
    assert c.flops_per_token_6n == 6 * c.num_params


def test_non_transformer_counts_with_example_input():
    c = count_model(MLPLM, {"hidden": 64}, torch.zeros(1, 32, dtype=torch.long))
    n_matmul = 8 * 32 * 64 + 64 * 64 + 64 * 256  # fc1, fc2, out (weights only)
    assert c.flops_per_token == pytest.approx(6 * n_matmul)
    assert c.num_params - c.num_params_non_embedding == 256 * 32


class Regressor(nn.Module):
    def __init__(self, hidden: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x)


def test_float_inputs_count_one_token_per_sample():
    c = count_model(Regressor, {"hidden": 16}, torch.zeros(4, 10))
    # 6 per weight, except the first layer: its input needs no gradient (2 + 2, not 2 + 4)
    assert c.flops_per_token == pytest.approx(6 * (10 * 16 + 16 * 1) - 2 * 10 * 16)
