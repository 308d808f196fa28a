"""End to end, as a user runs it: find-optimal on the smoke sweep, then reuse of its directory."""

import json
import subprocess
import sys

import pytest

from conftest import run_cli


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    out = run_cli("find-optimal", f"run_dir={run_dir}", "budgets=smoke", cwd="/")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return run_dir, out


def test_find_optimal_leaves_every_file(smoke):
    run_dir, out = smoke
    plan = json.loads((run_dir / "plan.json").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    assert sorted(r["run_id"] for r in results) == sorted(r["run_id"] for r in plan["runs"])
    assert all(r["status"] == "completed" for r in results)
    laws = json.loads((run_dir / "analysis" / "scaling_laws.json").read_text())
    assert {"E", "A", "B", "alpha", "beta"} <= set(laws["parametric"])
    assert {"n_opt", "d_opt", "budgets"} <= set(laws["isoflop"])
    assert len(list((run_dir / "plots").glob("*.png"))) >= 4
    assert len(list((run_dir / "plots").glob("*.svg"))) >= 4
    html = (run_dir / "report.html").read_text()
    assert "<img" in html and "http://" not in html
    assert (run_dir / ".hydra" / "find-optimal" / "config.yaml").exists()
    assert "Compute-optimal at C=" in out.stdout


def test_training_was_real(smoke):
    run_dir, _ = smoke
    results = json.loads((run_dir / "results.json").read_text())
    by_budget: dict[float, list[float]] = {}
    for r in results:
        assert r["final_loss"] < 5.0 and r["flops"] > 0 and r["num_tokens"] > 0
        by_budget.setdefault(r["compute_budget"], []).append(r["final_loss"])
        curve = (run_dir / "runs" / r["run_id"] / "metrics.jsonl").read_text().splitlines()
        assert len(curve) >= 3
    for losses in by_budget.values():
        assert len(set(losses)) == len(losses)  # the sizes really differ
    budgets = sorted(by_budget)
    assert min(by_budget[budgets[-1]]) < min(by_budget[budgets[0]])


def test_another_process_loads_the_result(smoke):
    run_dir, _ = smoke
    code = (f"import flops_fit, json; r = flops_fit.Result.load({str(run_dir)!r}); "
            "p = r.predict(1e15); print(json.dumps({k: p[k] for k in ('optimal_params', "
            "'optimal_tokens', 'expected_loss', 'tokens_per_param')})); "
            "print(r.chinchilla_table()); print(r)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    p = json.loads(out.stdout.splitlines()[0])
    assert p["optimal_params"] > 0 and p["optimal_tokens"] > 0 and p["expected_loss"] > 0
    assert "| " in out.stdout


def test_second_run_trains_nothing(smoke):
    run_dir, _ = smoke
    before = {p: p.read_bytes() for p in (run_dir / "runs").glob("*/result.json")}
    out = run_cli("find-optimal", f"run_dir={run_dir}", "budgets=smoke")
    assert out.returncode == 0, out.stderr
    assert "Nothing to train" in out.stdout
    assert {p: p.read_bytes() for p in (run_dir / "runs").glob("*/result.json")} == before


def test_visualize_alone_redraws_from_files(smoke):
    run_dir, _ = smoke
    for p in (run_dir / "plots").glob("*"):
        p.unlink()
    (run_dir / "report.html").unlink()
    out = run_cli("visualize", f"run_dir={run_dir}", cwd="/tmp")
    assert out.returncode == 0, out.stderr
    assert len(list((run_dir / "plots").glob("*.png"))) >= 4
    assert (run_dir / "report.html").exists()


def test_validate_end_to_end(smoke):
    run_dir, _ = smoke
    plan = json.loads((run_dir / "plan.json").read_text())
    largest = max(r["compute_budget"] for r in plan["runs"])
    budget = 1.5 * largest  # beyond the sweep; one run (neighbours: test_validate.py)
    out = run_cli("validate", f"run_dir={run_dir}", f"validate.budget={budget}",
                  "validate.neighbours=false")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    v = json.loads((run_dir / "analysis" / "validation.json").read_text())
    assert v["compute_budget"] == budget
    assert v["achieved_loss"] > 0 and v["predicted_loss"] > 0
    assert v["relative_error"] == pytest.approx(
        (v["achieved_loss"] - v["predicted_loss"]) / v["achieved_loss"])
    assert len(v["runs"]) == 1 and v["runs"][0]["predicted_optimum"]
    assert v["best_loss"] == v["achieved_loss"]
    for method, o in v["other_methods"].items():  # the other approach, scored the same way
        assert method != v["method"]
        assert o["relative_error_vs_best"] == pytest.approx(
            (v["best_loss"] - o["predicted_loss"]) / v["best_loss"])
    assert all(r["status"] == "completed" for r in v["runs"])
    assert "predicted loss" in out.stdout
    code = f"import flops_fit; print(flops_fit.Result.load({str(run_dir)!r}))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "validation at C=" in shown.stdout
    assert run_cli("visualize", f"run_dir={run_dir}").returncode == 0
    assert "validation" in (run_dir / "report.html").read_text().lower()
    again = run_cli("validate", f"run_dir={run_dir}", f"validate.budget={budget}",
                    "validate.neighbours=false")
    assert again.returncode == 0 and "Nothing to train" in again.stdout


def test_validate_seeds_compare_the_mean_of_the_predicted_optimums_runs(smoke):
    """validate.seeds=2 adds a second run of the predicted optimum (its own seed); the first
    is not trained again, and the achieved loss is the mean of the two."""
    run_dir, _ = smoke
    plan = json.loads((run_dir / "plan.json").read_text())
    budget = 1.5 * max(r["compute_budget"] for r in plan["runs"])
    one = run_cli("validate", f"run_dir={run_dir}", f"validate.budget={budget}",
                  "validate.neighbours=false")
    assert one.returncode == 0, one.stderr[-2000:]
    first = json.loads((run_dir / "analysis" / "validation.json").read_text())
    out = run_cli("validate", f"run_dir={run_dir}", f"validate.budget={budget}",
                  "validate.neighbours=false", "validate.seeds=2")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Training 1 of 2 runs" in out.stdout and "plan changed" not in out.stdout
    v = json.loads((run_dir / "analysis" / "validation.json").read_text())
    assert [r["repeat"] for r in v["runs"]] == [0, 1]
    assert v["runs"][0]["final_loss"] == first["achieved_loss"]
    losses = v["achieved_losses"]
    assert len(losses) == 2 and losses[0] != losses[1]
    assert v["achieved_loss"] == pytest.approx(sum(losses) / 2)
    assert v["best_loss"] == v["achieved_loss"]
    assert v["residual_sigma_log"] == first["residual_sigma_log"]
    width = v["prediction_interval"][1] - v["prediction_interval"][0]
    assert width <= first["prediction_interval"][1] - first["prediction_interval"][0]
    assert "mean of 2 seeds" in out.stdout and "(seed 2)" in out.stdout


def test_validate_trains_with_the_sweeps_loss(smoke, monkeypatch):
    """A sweep trained with a custom loss is validated with it (not with cross-entropy)."""
    from rich.console import Console

    from flops_fit.config import TrainConfig
    from flops_fit.models.gpt import GPT
    from flops_fit.stages import validate

    run_dir, _ = smoke
    seen = {}

    class Stop(Exception):
        pass

    def fake_train_stage(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    def my_loss(output, target):
        raise AssertionError("not called: train_stage is replaced")

    monkeypatch.setattr(validate, "train_stage", fake_train_stage)
    with pytest.raises(Stop):
        validate.validate_stage(run_dir, GPT, None, None,
                                TrainConfig(), 1e13, False, Console(file=None, quiet=True),
                                loss_fn=my_loss)
    assert seen["loss_fn"] is my_loss


def test_answer_yaml_is_a_launchable_run(smoke):
    """find-optimal writes answer.yaml: the nearest buildable model at the predicted budget
    (100x the largest), its steps at the sweep's batch shape, the rule's peak LR, the schedule,
    the prediction with its intervals; Result.predict gives the same run as p["run"]."""
    import math

    import flops_fit
    from flops_fit.rundir.records import read_answer

    run_dir, out = smoke
    answer = read_answer(run_dir / "answer.yaml")
    run = answer["run"]
    assert answer["budget"] == run["budget"] == 6e13  # 100x the smoke sweep's 6e11
    assert run["num_tokens"] == run["steps"] * run["batch_size"] * run["seq_len"]
    assert (run["batch_size"], run["seq_len"], run["schedule"]) == (16, 128, "wsd")
    assert abs(run["flops"] / run["budget"] - 1) < 0.01
    # the hand rule in force (no tuning.json): lr_base * (lr_ref_params / N_non_emb)^lr_exponent
    assert math.isclose(run["lr"], 9e-3 * (1e5 / run["num_params_non_embedding"]) ** 0.2)
    assert answer["model"]["kwargs"]["width"] == run["size_value"]
    pred = answer["prediction"]
    assert pred["optimal_params_ci"][0] <= pred["optimal_params"] <= pred["optimal_params_ci"][1]
    p = flops_fit.Result.load(run_dir).predict(6e13)
    assert p["run"] == run and p["model"]["size_value"] == run["size_value"]
    assert flops_fit.Result.load(run_dir).predict(1e15)["run"] is None  # another budget
    assert "answer.yaml; train it with" in " ".join(out.stdout.split())  # wrapped at any path


def test_training_the_answer_trains_exactly_that_run(smoke, tmp_path):
    run_dir, _ = smoke
    # a small answer (the smallest budget), so that training it takes seconds
    out = run_cli("find-optimal", f"run_dir={run_dir}", "budgets=smoke", "predict.budget=2e11")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    from flops_fit.rundir.records import read_answer

    run = read_answer(run_dir / "answer.yaml")["run"]
    new = tmp_path / "answer_run"
    out = run_cli("train", f"run_dir={new}", f"answer={run_dir / 'answer.yaml'}", cwd="/")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    plan = json.loads((new / "plan.json").read_text())
    (rec,) = json.loads((new / "results.json").read_text())
    assert len(plan["runs"]) == 1 and rec["status"] == "completed"
    assert (rec["steps"], rec["num_params"], rec["size_value"]) == \
        (run["steps"], run["num_params"], run["size_value"])
    assert abs(rec["lr"] - run["lr"]) < 1e-12 * run["lr"]
    # answer= is for train (and plan), not for a sweep
    out = run_cli("find-optimal", f"run_dir={tmp_path / 'x'}", f"answer={run_dir / 'answer.yaml'}")
    assert out.returncode == 2 and "answer= names one run" in out.stdout + out.stderr
