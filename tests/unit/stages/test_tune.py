"""flops-fit tune: the grid, the parabola and the rule on synthetic loss-vs-LR curves; tune ->
train with the tuned rule (tiny real runs); a user's model whose best LR is known by
construction; analyze flagging a mis-tuned LR; predictions in the user's terms."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import pytest
from rich.console import Console

from flops_fit.analysis.checks import mistuning_notes
from flops_fit.analysis.laws import Prediction
from flops_fit.analysis.realise import nearest_model, prediction_notes
from flops_fit.config import (
    BudgetsConfig,
    DatasetConfig,
    Settings,
    TrainConfig,
    TuneConfig,
)
from flops_fit.errors import FlopsFitError
from flops_fit.rundir.records import TuningRecord
from flops_fit.stages import pipeline as stages
from flops_fit.stages.tune import (
    TUNED_LABEL,
    Tuner,
    fit_rule,
    initial_offsets,
    next_offset,
    parabola_optimum,
)
from helpers.run import synthetic_records
from helpers.tune import SCALE, ScaledGPT


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def bowl(lr: float, best: float, floor: float = 2.0, curv: float = 0.05) -> float:
    """A synthetic loss-vs-LR curve: a parabola in log LR with its minimum at ``best``."""
    return floor + curv * math.log(lr / best) ** 2


# ------------------------------------------------------------------ numerics


def test_grid_is_centred_and_extends_past_the_edge_holding_the_best():
    assert initial_offsets(5) == [-2, -1, 0, 1, 2]
    ks = initial_offsets(5)
    assert next_offset(ks, [bowl(2.0 ** k, 1.0) for k in ks]) is None  # interior
    assert next_offset(ks, [bowl(2.0 ** k, 2.0 ** 4) for k in ks]) == 3  # best at the top
    assert next_offset(ks, [bowl(2.0 ** k, 2.0 ** -5) for k in ks]) == -3  # best at the bottom
    assert next_offset(ks, [None, None, None, None, None]) == -3  # all diverged: go smaller
    assert next_offset(ks, [3.0, 2.9, 2.8, None, None]) is None  # divergence above the best


def test_parabola_finds_the_vertex_between_grid_points():
    best = 0.0123
    lrs = [0.003 * 2 ** i for i in range(5)]
    lr, interior = parabola_optimum(lrs, [bowl(x, best) for x in lrs])
    assert interior and lr == pytest.approx(best, rel=1e-9)  # exact for a parabola
    lr, interior = parabola_optimum(lrs, [bowl(x, 1.0) for x in lrs])  # best beyond the grid
    assert not interior and lr == max(lrs)
    lr, interior = parabola_optimum(lrs, [3.0, 2.5, 2.4, None, None])
    assert interior and lr == pytest.approx(lrs[2])  # a diverged neighbour: the grid point


def test_rule_fit_recovers_a_power_law():
    ns = [6e3, 5e4, 1.5e5]
    lrs = [0.02 * (1e5 / n) ** 0.3 for n in ns]
    base, k = fit_rule(ns, lrs, 1e5, 0.2)
    assert base == pytest.approx(0.02) and k == pytest.approx(0.3)
    base, k = fit_rule([5e4], [0.01], 1e5, 0.2)  # one size: the exponent is kept
    assert k == 0.2 and base == pytest.approx(0.01 * (5e4 / 1e5) ** 0.2)


class SyntheticTuner(Tuner):
    """A Tuner whose runs are a synthetic loss curve (best LR = 2^4 x 1.3 x the rule's)."""

    def train_point(self, sizes, k, batch_size=None, batch_lr=None):
        self.trained.append(k)
        out = []
        for s in sizes:
            rule = self._rule_lr(s.num_params_non_embedding)
            lr = rule * 2.0 ** k
            self.spent += 1.0
            loss = bowl(lr, rule * 2 ** 4 * 1.3)
            if batch_size:  # the batch runs: best batch 2^0.3 x the configured one
                b_best = self.train.batch_size * 2 ** 0.3  # x1 equals the grid's own run
                lr, loss = batch_lr, (bowl(batch_lr, rule * 2 ** 4 * 1.3) + bowl(batch_size, b_best)
                                      - bowl(self.train.batch_size, b_best))
            out.append({"run_id": f"r{s.size_value}_{k}", "status": "completed", "lr": lr,
                        "steps": 100, "planned_flops": 1.0, "flops": 1.0, "final_loss": loss})
        return out


def _tiny_plan(tmp_path):
    s = tiny_settings(tmp_path)
    return stages.make_plan(s)


def test_search_extends_until_the_best_is_interior_and_stops_at_the_cap(tmp_path):
    plan = _tiny_plan(tmp_path)
    tuner = SyntheticTuner(tmp_path, plan, object, None, TrainConfig(), TuneConfig(sizes=2,
                           max_extensions=5, max_fraction=1e9), 5)
    tuner.trained = []
    record = tuner.run()
    # the first size extends three times; the second is centred on what the first learned
    # (its best LR 2^4.4 x the rule's: 4 grid steps up) and needs no extension
    assert tuner.trained == [-2, -1, 0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 6]
    assert all(t.interior for t in record.sizes)
    first = record.sizes[0]
    assert first.best_lr == pytest.approx(tuner._rule_lr(first.num_params_non_embedding)
                                          * 2 ** 4 * 1.3)
    capped = SyntheticTuner(tmp_path, plan, object, None, TrainConfig(),
                            TuneConfig(sizes=2, max_extensions=1, max_fraction=1e9), 5)
    capped.trained = []
    out = io.StringIO()
    capped.console = Console(file=out, width=300)
    record = capped.run()
    assert len(record.sizes[0].lrs) == 6 and not record.sizes[0].interior
    # the size left at the edge is named in one line (and in tuning.json), not dropped silently
    said = [line for line in out.getvalue().splitlines() if "left out of the rule fit" in line]
    assert len(said) == 1 and f"={record.sizes[0].size_value}:" in said[0]
    assert any("left out of the rule fit" in n for n in record.notes)
    # the next size is centred on the edge LR (a bound) and brackets the optimum
    assert capped.trained[6:] == [1, 2, 3, 4, 5] and record.sizes[1].interior


def test_at_the_smallest_budget_extensions_are_bounded_by_max_extensions_alone(tmp_path):
    """budgets=smoke: the grids alone at the smallest budget cost more than max_fraction (the
    tuning budget never goes lower), which used to refuse every extension and leave a model
    whose LR is far off the rule at an edge; there max_extensions alone bounds the search,
    with a note. A tune.budget the user set still stops at max_fraction."""
    plan = _tiny_plan(tmp_path)
    cfg = TuneConfig(sizes=2, max_extensions=5, max_fraction=1e-30)
    floored = SyntheticTuner(tmp_path, plan, object, None, TrainConfig(), cfg, 5)
    floored.trained = []
    record = floored.run()
    assert floored.floored and floored.trained == [-2, -1, 0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 6]
    assert all(t.interior for t in record.sizes)
    assert any("tune.max_extensions alone" in n for n in record.notes)
    budget = min(plan.compute_budgets)
    capped = SyntheticTuner(tmp_path, plan, object, None, TrainConfig(),
                            dataclasses.replace(cfg, budget=budget), 5)
    capped.trained = []
    record = capped.run()
    assert not capped.floored and not record.sizes[0].interior
    assert any("(tune.max_fraction)" in n for n in record.notes)

def test_batch_size_search_finds_the_best_batch_and_fits_it(tmp_path):
    tuner = SyntheticTuner(tmp_path, _tiny_plan(tmp_path), object, None, TrainConfig(),
                           TuneConfig(sizes=2, params=["lr", "batch_size"], max_fraction=1e9), 5)
    tuner.trained = []
    record = tuner.run()
    assert tuner.trained.count(0) == 1 + 2 * 2  # the x1 batch is the grid's own run
    for t in record.sizes:
        assert t.batch["batch_sizes"] == [8, 16, 32]
        assert t.batch["best_batch_size"] == pytest.approx(16 * 2 ** 0.3)
    assert record.batch["batch_exponent"] == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------ real tiny runs


def tiny_settings(run_dir, **train) -> Settings:
    """One budget, four sizes of 16-64 (tests/helpers/run.py's TINY, as Settings)."""
    return Settings(run_dir=run_dir, budgets=BudgetsConfig(values=[3e9], sizes_per_budget=4,
                                                          min_steps=40),
                    dataset=DatasetConfig(max_bytes=400_000),
                    train=TrainConfig(batch_size=8, seq_len=32, eval_tokens=2048,
                                      periodic_eval_tokens=512, log_every=50, device="cpu",
                                      threads=1, warmup_min_steps=10, **train),
                    tune=TuneConfig(sizes=2, max_extensions=4, max_fraction=1e9))


def test_tune_then_train_uses_the_tuned_rule_and_records_it(tmp_path):
    s = tiny_settings(tmp_path / "run")
    record = stages.tune_command(dataclasses.replace(s, train=dataclasses.replace(s.train)),
                                 quiet())
    data = json.loads((tmp_path / "run" / "tuning.json").read_text())
    assert set(data["rule"]) == {"lr_base", "lr_exponent", "lr_ref_params"}
    assert data["sizes"][0]["lrs"] and len(data["sizes"][0]["lrs"]) >= 5
    assert TuningRecord.from_dict(data).rule == record.rule
    n_tuning_runs = len(list((tmp_path / "run" / "tuning" / "runs").iterdir()))
    again = stages.tune_command(dataclasses.replace(s, train=dataclasses.replace(s.train)),
                                quiet())  # nothing is retrained
    assert again.rule == record.rule
    assert len(list((tmp_path / "run" / "tuning" / "runs").iterdir())) == n_tuning_runs
    recs = stages.train_command(s, quiet())
    r = record.rule
    for rec in recs:
        want = r["lr_base"] * (r["lr_ref_params"] / rec["num_params_non_embedding"]) \
            ** r["lr_exponent"]
        assert rec["lr"] == pytest.approx(want) and rec["lr_rule"] == TUNED_LABEL


def test_a_sweep_never_mixes_rules(tmp_path):
    s = tiny_settings(tmp_path / "run")
    s.budgets.values = [1.5e9]
    stages.train_command(dataclasses.replace(s, train=dataclasses.replace(s.train)), quiet())
    (tmp_path / "run" / "tuning.json").write_text(json.dumps(
        {"rule": {"lr_base": 0.02, "lr_exponent": 0.1, "lr_ref_params": 1e5}, "sizes": []}))
    with pytest.raises(FlopsFitError, match="never mixes LR rules"):
        stages.train_command(dataclasses.replace(s, train=dataclasses.replace(s.train)), quiet())
    (tmp_path / "run" / "tuning.json").write_text(json.dumps({"rule": {"lr_base": -1}}))
    with pytest.raises(FlopsFitError, match="not a usable tuning record"):
        stages.train_command(s, quiet())


def test_tune_recovers_the_lr_factor_of_a_users_model(tmp_path):
    """ScaledGPT's best LR is the GPT's / SCALE by construction; the tuner must find it (2x).

    A grid 4x apart (200- and 40-step runs are noisy at 2x): ~80 s for both models.
    Measured: factors 2.9 (width 16) and 5.0 (width 48) for SCALE=4.
    """
    tuned = []
    for name, cls in (("gpt", None), ("scaled", ScaledGPT)):
        s = tiny_settings(tmp_path / name, grad_clip=0.0)
        s.budgets.values = [6e9]
        s.tune.grid_factor, s.tune.max_fraction = 4.0, 1e9
        s.model_cls = cls
        tuned.append(stages.tune_command(s, quiet()))
    gpt, scaled = tuned
    for a, b in zip(gpt.sizes, scaled.sizes, strict=True):
        assert a.interior and b.interior
        assert SCALE / 2 <= a.best_lr / b.best_lr <= SCALE * 2, (a, b)


@pytest.mark.parametrize("k", [1 / 6, 4.0])
def test_tune_learns_as_it_goes_on_a_model_whose_best_lr_is_k_times_the_gpts(tmp_path, k):
    """ScaledGPT(scale=1/k) has its best LR at k x the GPT's. The smallest size is tuned first
    on a grid around the configured rule (extending if it must); every next size's grid is
    centred on what was learned, so it brackets the optimum around the shifted LR.
    Each run prints one line (size, LR, loss). ~15 s each on two cores.
    Measured (40-step runs, grid factor 2): k=1/6: 7, 5, 5 LRs per size (two extensions at the
    first size only); k=4: 5, 5, 5. Runs this short are noisy, so only the mechanism is
    asserted: the first size finds the shift and the next grid is centred on it."""
    s = tiny_settings(tmp_path, grad_clip=0.0)
    s.budgets.values = [6e9]
    s.tune.sizes = 3
    s.model.kwargs = {**s.model.kwargs, "scale": 1.0 / k}
    s.model._target_ = "helpers.tune.ScaledGPT"
    out = io.StringIO()
    record = stages.tune_command(s, Console(file=out, width=300))
    lines = out.getvalue().splitlines()
    runs = [line for line in lines if line.startswith("tune: width=") and "peak LR" in line]
    assert len(runs) == sum(len(t.lrs) for t in record.sizes)
    assert all("loss" in line or "diverged" in line for line in runs)
    sizes = record.sizes
    assert [t.num_params for t in sizes] == sorted(t.num_params for t in sizes)
    from flops_fit.training.schedule import lr_for_size

    def offset(lr: float, t) -> float:  # in grid steps (factor 2) from the configured rule
        return math.log2(lr / lr_for_size(t.num_params_non_embedding, s.train))

    first, second = sizes[0], sizes[1]
    # the smallest size finds the shift (k = 1/6: below the rule; k = 4: above it) ...
    assert offset(first.best_lr, first) <= -1.3 if k < 1 else offset(first.best_lr, first) >= 0.9
    # ... and the next size's grid (its LRs, sorted) holds the five grid steps centred on it,
    # not on the configured rule
    c = round(offset(first.best_lr, first))
    assert c != 0
    assert set(range(c - 2, c + 3)) <= {round(offset(x, second)) for x in second.lrs}
    assert all(t.interior for t in sizes), [(t.size_value, t.lrs) for t in sizes]


# ------------------------------------------------------------------ analyze and predict


def test_analyze_flags_a_size_out_of_line_and_divergence():
    recs = synthetic_records()
    assert mistuning_notes(recs) == []
    bumped = [dict(r) for r in recs]
    # the middle size of the first budget: 5% above the higher of its neighbours
    bumped[2]["final_loss"] = 1.05 * max(recs[1]["final_loss"], recs[3]["final_loss"])
    bumped[7]["status"] = "diverged"
    notes = mistuning_notes(bumped)
    assert any("above both neighbouring sizes" in n for n in notes)
    assert any("diverged" in n for n in notes)
    assert all("flops-fit tune" in n for n in notes)


def test_prediction_gives_the_nearest_buildable_model_and_warns(tmp_path):
    s = tiny_settings(tmp_path)
    stages.plan_stage(s, quiet())
    m = nearest_model(tmp_path, 1.5e6)  # GPT widths are multiples of 16
    assert m["size_param"] == "width" and m["size_value"] % 16 == 0
    assert m["kwargs"]["width"] == m["size_value"] and abs(math.log(m["num_params"] / 1.5e6)) < 0.2
    p = Prediction(target_compute=1e15, optimal_params=1e6, optimal_tokens=2.6e8,
                   expected_loss=1.0, tokens_per_param=260.0)
    notes = prediction_notes(p, [1e12, 4e12], unique_tokens=1.45e7)
    assert any("250x the sweep's largest" in n for n in notes)
    assert any("17.9 epochs" in n for n in notes)
    hundred = prediction_notes(dataclasses.replace(p, target_compute=4e14, optimal_tokens=1e6),
                               [1e12, 4e12], 1.45e7)  # the default prediction, at 100x, warns
    assert len(hundred) == 1 and "100x" in hundred[0] and "far beyond" in hundred[0]
    assert prediction_notes(dataclasses.replace(p, target_compute=1.6e13, optimal_tokens=1e6),
                            [1e12, 4e12], 1.45e7) == []  # 4x exactly, and 1e12 itself:
    assert prediction_notes(dataclasses.replace(p, target_compute=1e12 * (1 - 1e-12),
                                                optimal_tokens=1e6), [1e12, 4e12], None) == []


def test_api_find_optimal_tunes_first_only_when_asked_and_untuned(tmp_path, monkeypatch):
    """``find_optimal(..., tune=True)`` runs the tune stage before the sweep, once: a run
    directory with tuning.json is not tuned again (the stages themselves are tested above)."""
    from flops_fit import api
    from flops_fit.models.gpt import GPT

    calls: list[str] = []
    monkeypatch.setattr(stages, "tune_command", lambda s, c: calls.append(f"tune {s.tune.sizes}"))
    monkeypatch.setattr(api, "train_command", lambda s, c: calls.append("train"))
    monkeypatch.setattr(api, "analyze_command", lambda s, c: calls.append("analyze"))
    monkeypatch.setattr(api, "draw", lambda *a: calls.append("draw"))
    monkeypatch.setattr(api.Result, "load", staticmethod(lambda d: "result"))
    kw = dict(compute_budgets=[2e11], train=True, output_dir=tmp_path, console=quiet())
    assert api.find_optimal(GPT, "width", **kw) == "result"
    assert calls == ["train", "analyze", "draw"]
    calls.clear()
    api.find_optimal(GPT, "width", tune=True, tune_config=TuneConfig(sizes=4), **kw)
    assert calls == ["tune 4", "train", "analyze", "draw"]
    calls.clear()
    (tmp_path / "tuning.json").write_text(json.dumps(
        {"rule": {"lr_base": 0.02, "lr_exponent": 0.1, "lr_ref_params": 1e5}, "sizes": []}))
    api.find_optimal(GPT, "width", tune=True, **kw)
    assert calls == ["train", "analyze", "draw"]


def _previous_default() -> Settings:
    """The previous release's default sweep: 5 budgets 2.5e11..4e12 x2 apart, 4 sizes over
    span 4, cosine runs (19 runs)."""
    from flops_fit.config import BudgetsConfig, TrainConfig

    return Settings(budgets=BudgetsConfig(values=[2.5e11, 5e11, 1e12, 2e12, 4e12],
                                          sizes_per_budget=4, span=4.0),
                    train=TrainConfig(schedule="cosine"))


def test_sizes_tuned_on_much_shorter_runs_than_the_sweep_get_a_note():
    """The default plan's width 80 runs 757 and 1514 steps in the sweep but 200 in the smallest
    budget: tuning there is flagged; tuning at the middle budget (378 steps) is not."""
    from flops_fit.rundir.records import TunedSize
    from flops_fit.stages.tune import short_run_notes

    plan = stages.make_plan(_previous_default())
    def size(steps):
        return TunedSize(size_value=80, num_params=1, num_params_non_embedding=1, steps=steps,
                         lrs=[], losses=[], best_lr=0.01, interior=True, run_ids=[])
    (note,) = short_run_notes(plan, [size(200)])
    assert note.startswith("width=80 was tuned on 200-step runs") and "tune.budget" in note
    assert short_run_notes(plan, [size(378)]) == []


def test_the_default_tuning_budget_is_the_longest_the_allowance_pays_for():
    """tune.budget=null: the plan's middle budget, lowered until every size's worst-case search
    (grid_points + max_extensions runs) fits tune.max_fraction; never below the smallest."""
    from flops_fit.stages.tune import tuning_budget

    plan = stages.make_plan(_previous_default())  # 2.5e11 .. 4e12, 3.08e13 FLOPs in all
    budgets = sorted(plan.compute_budgets)
    sweep = sum(r.flops for r in plan.runs)
    cfg = TuneConfig()
    b = tuning_budget(plan, cfg)
    assert b == pytest.approx(cfg.max_fraction * sweep / (3 * (5 + 3)))
    assert budgets[0] < b < budgets[2]  # between the smallest and the middle budget
    assert 3 * 8 * b <= cfg.max_fraction * sweep * (1 + 1e-12)
    assert tuning_budget(plan, dataclasses.replace(cfg, max_fraction=5.0)) == budgets[2]
    assert tuning_budget(plan, dataclasses.replace(cfg, max_fraction=0.01)) == budgets[0]
    assert tuning_budget(plan, dataclasses.replace(cfg, budget=7e11)) == 7e11
