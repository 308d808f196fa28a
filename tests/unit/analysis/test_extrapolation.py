"""Extrapolation remarks graded by the target budget over the sweep's largest."""

from __future__ import annotations

import pytest

from flops_fit.analysis.laws import Prediction
from flops_fit.analysis.realise import describe, extrapolation, in_user_terms, prediction_notes

BUDGETS = [1e12, 4e12]


@pytest.mark.parametrize("ratio, level", [(1.0, "none"), (4.0, "none"), (4.5, "note"),
                                          (10.0, "note"), (29.0, "note"), (30.0, "warning"),
                                          (100.0, "warning"), (1000.0, "warning")])
def test_levels_by_ratio(ratio, level):
    far = extrapolation(ratio * 4e12, BUDGETS)
    assert far["level"] == level and far["ratio"] == pytest.approx(ratio)
    assert bool(far["text"]) == (level != "none")


def _p(c: float) -> Prediction:
    return Prediction(target_compute=c, optimal_params=1e6, optimal_tokens=1e7,
                      expected_loss=1.0, tokens_per_param=10.0)


def test_describe_says_note_or_warning(tmp_path):
    for c, shown in ((2e13, "note:"), (4e14, "warning:")):  # 5x and the default 100x
        q = in_user_terms(_p(c), tmp_path, BUDGETS)  # no plan.json: no model, notes alone
        (line,) = describe(q)
        assert line.strip().startswith(shown) and "the sweep's largest budget" in line
    assert describe(in_user_terms(_p(1.6e13), tmp_path, BUDGETS)) == []  # 4x: nothing
    assert prediction_notes(_p(4e14), BUDGETS, None)[0].startswith("C=4e+14 is 100x")
