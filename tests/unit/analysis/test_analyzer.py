"""flops_fit.analysis.analyzer: scaling_laws.json, predictions, partial sweeps, imported runs, bad
input."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import fields
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from rich.console import Console

from conftest import CONF, reference_csv
from flops_fit.analysis.analyzer import (
    AnalysisConfig,
    ScalingAnalysis,
    ScalingLawAnalyzer,
    run_analysis,
)
from flops_fit.errors import FlopsFitError, NotEnoughDataError
from flops_fit.fitting import optimal_allocation, parametric_loss

LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
LAW_A = LAW["beta"] / (LAW["alpha"] + LAW["beta"])
FAST = {"bootstrap": 30}
CONF = CONF / "analysis" / "default.yaml"


def make_records(budgets=(1e17, 1e18, 1e19, 1e20), sizes=7, half_width=1.0, noise=0.005,
                 seed=0, law=LAW, flops_factor=1.1):
    """Completed run records of an IsoFLOP sweep of ``law``."""
    rng = np.random.default_rng(seed)
    recs = []
    for c in budgets:
        n_opt, _ = optimal_allocation(c, law["A"], law["B"], law["alpha"], law["beta"])
        for i, n in enumerate(n_opt * np.logspace(-half_width, half_width, sizes)):
            d = c / (6 * n)
            loss = float(parametric_loss(n, d, *law.values()) * math.exp(
                noise * rng.standard_normal()))
            recs.append({
                "run_id": f"c{c:.0e}-s{i}", "status": "completed", "compute_budget": c,
                "num_params": float(n), "num_params_non_embedding": float(0.8 * n),
                "num_tokens": float(d), "flops": float(flops_factor * 6 * n * d),
                "flops_6nd": float(6 * n * d), "final_loss": loss,
            })
    return recs


def write_run_dir(tmp_path: Path, records, text: str | None = None) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "results.json").write_text(text if text is not None else json.dumps(records))
    return run_dir


def analyze(run_dir: Path, **cfg) -> ScalingAnalysis:
    config = AnalysisConfig(**{**FAST, **cfg})
    return ScalingLawAnalyzer(run_dir / "results.json", run_dir / "analysis", config).analyze()


def console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, force_terminal=False, color_system=None), buf


# ------------------------------------------------------------------------------ the contract


def test_scaling_laws_json_carries_the_contract(tmp_path):
    run_dir = write_run_dir(tmp_path, make_records())
    analysis = analyze(run_dir)
    path = run_dir / "analysis" / "scaling_laws.json"
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    par = data["parametric"]
    for k in ("E", "A", "B", "alpha", "beta"):
        assert math.isfinite(par[k])
        lo, hi = par[f"{k}_ci"]
        assert lo <= par[k] <= hi and par[f"{k}_se"] > 0
    assert par["alpha"] == pytest.approx(LAW["alpha"], abs=0.05)
    iso = data["isoflop"]
    for law in ("n_opt", "d_opt"):
        assert set(iso[law]) >= {"coefficient", "exponent", "coefficient_ci", "exponent_ci"}
        lo, hi = iso[law]["exponent_ci"]
        assert lo <= iso[law]["exponent"] <= hi
    assert iso["n_opt"]["exponent"] == pytest.approx(LAW_A, abs=0.05)
    assert [b["compute_budget"] for b in iso["budgets"]] == [1e17, 1e18, 1e19, 1e20]
    assert all(b["interior"] and b["optimal_params_ci"] for b in iso["budgets"])
    prov = data["provenance"]
    assert prov["results_sha256"] == hashlib.sha256(
        (run_dir / "results.json").read_bytes()).hexdigest()
    assert prov["runs"]["n_used"] == 28 and len(prov["runs"]["used"]) == 28
    assert prov["conventions"]["flops"] == "flops" and prov["conventions"]["params"] == "total"
    assert prov["conventions"]["flops_per_param_token"] == pytest.approx(6.6)
    assert prov["settings"]["bootstrap"] == 30
    assert set(prov["library_versions"]) >= {"numpy", "scipy", "python"}
    assert datetime.fromisoformat(data["created_utc"]).tzinfo is not None
    assert data["method"] == analysis.method == AnalysisConfig().predict_with == "joint"
    assert data["joint"]["available"] and data["joint"]["precise"]


def test_from_json_round_trip(tmp_path):
    run_dir = write_run_dir(tmp_path, make_records())
    analysis = analyze(run_dir)
    path = run_dir / "analysis" / "scaling_laws.json"
    for source in (path, str(path), json.loads(path.read_text())):
        again = ScalingAnalysis.from_json(source)
        assert again.predict_optimal_size(1e21) == analysis.predict_optimal_size(1e21)
        assert again.chinchilla_table() == analysis.chinchilla_table()
    path.write_text('{"method": "parametric", "parametric": {')
    with pytest.raises(FlopsFitError, match="not valid JSON"):
        ScalingAnalysis.from_json(path)
    with pytest.raises(FlopsFitError, match="not a flops-fit"):
        ScalingAnalysis.from_json({"method": "parametric"})


def test_predict_optimal_size(tmp_path):
    run_dir = write_run_dir(tmp_path, make_records())
    analysis = analyze(run_dir, predict_with="parametric")
    p = analysis.predict_optimal_size(1e21)
    assert p["target_compute"] == 1e21 and p["method"] == "parametric"
    kappa = 6.6  # measured flops are 1.1 x 6ND here
    assert p["optimal_params"] * p["optimal_tokens"] == pytest.approx(1e21 / kappa, rel=1e-9)
    assert p["tokens_per_param"] == pytest.approx(p["optimal_tokens"] / p["optimal_params"])
    for key in ("optimal_params", "optimal_tokens", "expected_loss", "tokens_per_param"):
        lo, hi = p[f"{key}_ci"]
        assert lo < hi
    assert p["optimal_params_ci"][0] <= p["optimal_params"] <= p["optimal_params_ci"][1]
    true_n, _ = optimal_allocation(1e21 / kappa * 6, LAW["A"], LAW["B"], LAW["alpha"],
                                   LAW["beta"])
    assert p["optimal_params"] == pytest.approx(float(true_n), rel=0.2)
    iso = analysis.predict_optimal_size(1e21, method="isoflop")
    assert iso["method"] == "isoflop" and iso["optimal_params"] == pytest.approx(
        p["optimal_params"], rel=0.3)
    for bad in (0, -1e20, float("nan"), "lots"):
        with pytest.raises(FlopsFitError):
            analysis.predict_optimal_size(bad)


def test_chinchilla_table(tmp_path):
    analysis = analyze(write_run_dir(tmp_path, make_records()))
    lines = analysis.chinchilla_table().splitlines()
    assert lines[0].startswith("| Compute (FLOPs) | Optimal N")
    rows = lines[2:]
    assert len(rows) == 9
    assert rows[0].startswith("| 1.00e+18 |") and rows[-1].startswith("| 1.00e+22 |")
    assert len(analysis.chinchilla_table([1e20, 1e21]).splitlines()) == 4
    with pytest.raises(FlopsFitError):
        analysis.chinchilla_table([1e20, -5])


def test_the_joint_fit_predicts_by_default_and_others_when_asked(tmp_path):
    run_dir = write_run_dir(tmp_path, make_records())
    analysis = analyze(run_dir)
    assert analysis.method == "joint" and analysis.method_note == ""
    j = analysis.sections["joint"]
    assert analysis.predict_optimal_size(1e20)["optimal_params"] == pytest.approx(
        j.G * 1e20 ** j.a)
    iso = analyze(run_dir, predict_with="isoflop")
    p = iso.predict_optimal_size(1e20)
    assert p["method"] == "isoflop"
    assert p["optimal_params"] == pytest.approx(iso.isoflop.n_opt.coefficient
                                                * 1e20 ** iso.isoflop.n_opt.exponent)
    par = analyze(run_dir, predict_with="parametric")
    assert par.method == "parametric"
    assert par.predict_optimal_size(1e20)["method"] == "parametric"


def test_conventions_6nd_and_non_embedding(tmp_path):
    recs = make_records()
    run_dir = write_run_dir(tmp_path, recs)
    analysis = analyze(run_dir, flops_convention="6nd", params_convention="non_embedding")
    conv = analysis.provenance["conventions"]
    assert conv["flops_per_param_token"] == 6.0
    assert conv["params_field"] == "num_params_non_embedding"
    p = analysis.predict_optimal_size(1e21)
    assert p["optimal_params"] * p["optimal_tokens"] == pytest.approx(1e21 / 6, rel=1e-9)
    del recs[3]["num_params_non_embedding"]
    write_run_dir(tmp_path, recs)
    with pytest.raises(FlopsFitError, match=r"c1e\+17-s3.*num_params_non_embedding"):
        analyze(run_dir, params_convention="non_embedding")


def test_history_jsonl_appends_one_line_per_analysis(tmp_path):
    run_dir = write_run_dir(tmp_path, make_records())
    analyze(run_dir, predict_with="parametric")
    analyze(run_dir)
    lines = (run_dir / "analysis" / "history.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(x) for x in lines)
    for key in ("time", "n_runs_used", "a", "b", "E", "alpha", "beta",
                "n_opt_at_largest_budget"):
        assert key in first
    assert first["n_runs_used"] == 28 and first["largest_budget"] == 1e20
    assert first["method"] == "parametric" and second["method"] == "joint"
    assert first["a"] == pytest.approx(LAW_A, abs=0.05)
    assert first["n_opt_at_largest_budget"] > 0


def test_holdout_largest(tmp_path):
    run_dir = write_run_dir(tmp_path, make_records(budgets=(1e17, 1e18, 1e19, 1e20, 1e21)))
    analysis = analyze(run_dir, holdout="largest", predict_with="parametric")
    h = json.loads((run_dir / "analysis" / "scaling_laws.json").read_text())["holdout"]
    assert h == analysis.holdout
    assert h["available"] and h["compute_budget"] == 1e21
    assert h["n_runs_held_out"] == 7 and h["n_runs_fit"] == 28
    assert h["actual"]["interior"] and h["actual"]["optimal_params"] > 0
    assert set(h["predicted_by"]) == {"parametric", "isoflop", "joint"}
    assert h["method"] == "parametric"
    assert abs(h["relative_error"]["optimal_params"]) < 0.3
    assert abs(h["relative_error"]["loss"]) < 0.02
    # this law has a floor (E = 1.69) the losses approach: Approach 2's floor-free loss law
    # is optimistic 10x beyond the fitted budgets, as on the Chinchilla reference (README)
    iso_loss = h["predicted_by"]["isoflop"]["expected_loss"]
    assert -0.10 < iso_loss / h["actual"]["optimal_loss"] - 1 < -0.02
    assert h["parametric_run_loss_mean_abs_rel_error"] < 0.02
    out = analysis.describe()
    assert "Approach 3" in out and "Approach 2" in out


# ------------------------------------------------------------------------------ partial sweeps


def test_partial_sweep_uses_completed_runs_and_says_so(tmp_path):
    recs = make_records()
    recs += [
        {"run_id": "p1", "status": "pending"},
        {"run_id": "p2", "status": "running", "compute_budget": 1e20},
        {"run_id": "f1", "status": "failed", "compute_budget": 1e19, "error": "OOM"},
        {"run_id": "d1", "status": "diverged", "compute_budget": 1e19, "final_loss": None},
    ]
    run_dir = write_run_dir(tmp_path, recs)
    con, buf = console()
    analysis = run_analysis(run_dir, AnalysisConfig(**FAST), None, con)
    runs = analysis.provenance["runs"]
    assert runs["n_used"] == 28 and runs["n_records"] == 32
    assert runs["status_counts"] == {"completed": 28, "pending": 1, "running": 1, "failed": 1,
                                     "diverged": 1}
    reasons = {d["run_id"]: d["reason"] for d in runs["dropped"]}
    assert reasons == {"p1": "status pending", "p2": "status running", "f1": "status failed",
                       "d1": "status diverged"}
    text = buf.getvalue()
    assert "1 diverged" in text and "1 failed" in text and "1 pending" in text
    assert "2 run(s) are not finished yet" in text
    assert "| Compute (FLOPs) |" in text and "Wrote" in text
    assert "alpha =" in text and "N_opt" in text


def test_nan_and_negative_losses_are_dropped_with_reasons(tmp_path):
    recs = make_records()
    recs[0]["final_loss"] = None
    recs[1]["final_loss"] = -2.0
    text = json.dumps(recs).replace('"final_loss": ' + json.dumps(recs[2]["final_loss"]),
                                    '"final_loss": NaN', 1)
    run_dir = write_run_dir(tmp_path, recs, text)
    analysis = analyze(run_dir)
    reasons = {d["run_id"]: d["reason"] for d in analysis.provenance["runs"]["dropped"]}
    assert "not finite" in reasons[recs[0]["run_id"]]
    assert "not positive" in reasons[recs[1]["run_id"]]
    assert "not finite" in reasons[recs[2]["run_id"]]
    assert analysis.provenance["runs"]["n_used"] == 25


def test_all_losses_bad_is_not_enough_data(tmp_path):
    recs = make_records(budgets=(1e18,), sizes=4)
    for r in recs:
        r["final_loss"] = -1.0
    run_dir = write_run_dir(tmp_path, recs)
    with pytest.raises(NotEnoughDataError, match="Only 0 usable") as exc:
        analyze(run_dir)
    assert exc.value.exit_code == 3


@pytest.mark.parametrize("n_runs", [0, 2])
def test_fewer_than_three_runs(tmp_path, n_runs):
    recs = make_records(budgets=(1e18,), sizes=5)[:n_runs] + [{"run_id": "p", "status": "pending"}]
    run_dir = write_run_dir(tmp_path, recs)
    con, _ = console()
    with pytest.raises(NotEnoughDataError, match="at least 3") as exc:
        run_analysis(run_dir, AnalysisConfig(**FAST), None, con)
    assert "\n" not in str(exc.value) and "1 pending" in str(exc.value)
    assert not (run_dir / "analysis" / "scaling_laws.json").exists()


def test_few_runs_that_support_no_law(tmp_path):
    recs = make_records(budgets=(1e18,), sizes=4)
    run_dir = write_run_dir(tmp_path, recs)
    with pytest.raises(NotEnoughDataError, match="support no scaling law"):
        analyze(run_dir)


# ------------------------------------------------------------------------------ imported data


def test_imported_results_without_budget_groups(tmp_path):
    with open(reference_csv(), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    recs = []
    for i, r in enumerate(rows):
        n, c = float(r["Model Size"]), float(r["Training FLOP"])
        recs.append({"run_id": f"hoffmann-{i}", "status": "completed", "compute_budget": c,
                     "num_params": n, "num_tokens": c / (6 * n), "flops": c,
                     "final_loss": float(r["loss"])})
    recs = sorted(recs, key=lambda r: r["final_loss"])[:-5]
    run_dir = write_run_dir(tmp_path, recs)
    con, buf = console()
    # the replication's estimator (Huber delta=1e-3), to compare with its published numbers
    cfg = AnalysisConfig(bootstrap=20, approach1=False, huber_delta=1e-3)
    analysis = run_analysis(run_dir, cfg, None, con)
    assert not analysis.isoflop["available"]
    assert "no compute budgets to group" in analysis.isoflop["message"]
    assert "no compute budgets to group" in buf.getvalue()
    par = analysis.parametric
    assert par["E"] == pytest.approx(1.8172, rel=0.01)
    assert par["alpha"] == pytest.approx(0.3473, rel=0.01)
    assert par["beta"] == pytest.approx(0.3672, rel=0.01)
    assert analysis.method == "parametric"
    p = analysis.predict_optimal_size(5.88e23)
    assert p["tokens_per_param"] == pytest.approx(18, abs=2)


# ------------------------------------------------------------------------------ degenerate fits


def test_degenerate_parametric_fit_falls_back_to_isoflop(tmp_path):
    law = {**LAW, "E": 0.0}  # no loss floor: E runs to its bound
    run_dir = write_run_dir(tmp_path, make_records(law=law, noise=0.0, half_width=0.5))
    analysis = analyze(run_dir, predict_with="parametric")
    assert analysis.parametric["degenerate"]
    assert any("E fell" in r for r in analysis.parametric["degenerate_reasons"])
    assert analysis.method == "isoflop"
    assert "degenerate" in analysis.method_note
    assert any("degenerate" in w for w in analysis.warnings)
    assert analysis.predict_optimal_size(1e21)["method"] == "isoflop"


def test_every_optimum_on_the_edge(tmp_path):
    recs = []
    for c in (1e17, 1e18, 1e19):
        n_opt, _ = optimal_allocation(c, LAW["A"], LAW["B"], LAW["alpha"], LAW["beta"])
        for i, n in enumerate(n_opt * np.logspace(0.6, 1.4, 4)):  # all far above the optimum
            d = c / (6 * n)
            recs.append({"run_id": f"{c:.0e}-{i}", "status": "completed", "compute_budget": c,
                         "num_params": n, "num_tokens": d, "flops": 6 * n * d,
                         "final_loss": float(parametric_loss(n, d, *LAW.values()))})
    run_dir = write_run_dir(tmp_path, recs)
    analysis = analyze(run_dir)
    assert not analysis.isoflop["available"]
    assert all(not b["interior"] for b in analysis.isoflop["budgets"])
    assert any("widen the sweep" in w for w in analysis.warnings)
    assert analysis.method == "parametric"


# ------------------------------------------------------------------------------ Approach 1


def test_approach1_from_metrics_and_without(tmp_path):
    recs = make_records(sizes=7, half_width=1.0)
    run_dir = write_run_dir(tmp_path, recs)
    for r in recs:
        folder = run_dir / "runs" / r["run_id"]
        folder.mkdir(parents=True)
        n, d = r["num_params"], r["num_tokens"]
        lines = []
        for frac in np.linspace(0.02, 1.0, 40):
            tokens = frac * d
            lines.append(json.dumps({
                "step": int(frac * 1000), "tokens": tokens, "flops": 6 * n * tokens,
                "train_loss": float(parametric_loss(n, tokens, *LAW.values()))}))
        (folder / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 3, "tok')
    analysis = analyze(run_dir)
    a1 = analysis.approach1
    assert a1["available"] and a1["n_curves"] == 28
    assert a1["n_opt"]["exponent"] == pytest.approx(LAW_A, abs=0.1)
    # no curves: skipped with a sentence, the rest unaffected
    (tmp_path / "other").mkdir()
    analysis = analyze(write_run_dir(tmp_path / "other", recs))
    assert not analysis.approach1["available"] and "no training curves" in \
        analysis.approach1["message"]
    analysis = analyze(run_dir, approach1=False)
    assert not analysis.approach1["available"]


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("text,match", [
    ("[{\"run_id\": \"a\", \"status\": \"completed\", \"compute_", "not valid JSON"),
    ("", "not valid JSON"),
    ("\x00\x01garbage", "not valid JSON"),
    ('{"runs": []}', "not a list of run records"),
    ("[1, 2, 3]", "Entry #0"),
])
def test_corrupt_or_malformed_results(tmp_path, text, match):
    run_dir = write_run_dir(tmp_path, None, text)
    con, _ = console()
    with pytest.raises(FlopsFitError, match=match) as exc:
        run_analysis(run_dir, AnalysisConfig(**FAST), None, con)
    assert not isinstance(exc.value, NotEnoughDataError)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("field", ["num_params", "num_tokens", "flops", "compute_budget",
                                   "final_loss"])
def test_missing_contract_field_names_record_and_field(tmp_path, field):
    recs = make_records()
    del recs[5][field]
    run_dir = write_run_dir(tmp_path, recs)
    with pytest.raises(FlopsFitError, match=rf"c1e\+17-s5.*'{field}'"):
        analyze(run_dir)


@pytest.mark.parametrize("field,value", [("num_params", "big"), ("num_tokens", -5),
                                         ("flops", 0), ("final_loss", "low"),
                                         ("compute_budget", True)])
def test_bad_field_values(tmp_path, field, value):
    recs = make_records()
    recs[2][field] = value
    run_dir = write_run_dir(tmp_path, recs)
    with pytest.raises(FlopsFitError, match=rf"c1e\+17-s2.*{field}"):
        analyze(run_dir)


def test_records_without_status_or_run_id(tmp_path):
    recs = make_records()
    del recs[0]["status"]
    with pytest.raises(FlopsFitError, match="no 'status'"):
        analyze(write_run_dir(tmp_path, recs))
    recs = make_records()
    del recs[0]["run_id"]
    with pytest.raises(FlopsFitError, match="no 'run_id'"):
        analyze(write_run_dir(tmp_path, recs))


def test_duplicate_run_ids_are_dropped(tmp_path):
    recs = make_records()
    recs.append(dict(recs[0]))
    analysis = analyze(write_run_dir(tmp_path, recs))
    assert analysis.provenance["runs"]["n_used"] == 28
    assert any("duplicate" in d["reason"] for d in analysis.provenance["runs"]["dropped"])


def test_missing_results_and_bad_run_dir(tmp_path):
    con, _ = console()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FlopsFitError, match="No results file"):
        run_analysis(tmp_path / "empty", AnalysisConfig(), None, con)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FlopsFitError, match="not a folder"):
        run_analysis(tmp_path / "file", AnalysisConfig(), None, con)


def test_fix_E_above_lowest_loss_is_one_sentence(tmp_path):
    run_dir = write_run_dir(tmp_path, make_records())
    with pytest.raises(FlopsFitError, match="fix_E"):
        analyze(run_dir, fix_E=10.0)
    analysis = analyze(run_dir, fix_E=LAW["E"])
    assert analysis.parametric["E"] == LAW["E"] and analysis.parametric["fixed_E"] == LAW["E"]
    assert analysis.parametric["alpha"] == pytest.approx(LAW["alpha"], abs=0.05)


@pytest.mark.parametrize("kwargs", [
    {"predict_with": ""}, {"loss": "l1"}, {"huber_delta": -1}, {"huber_delta": "x"},
    {"bootstrap": -1}, {"bootstrap": 2.5}, {"ci": 1.5}, {"flops_convention": "kaplan"},
    {"params_convention": "all"}, {"holdout": "smallest"}, {"table_budgets": ["abc"]},
    {"table_budgets": [1e18, 0]}, {"fix_E": 0}, {"approach1": "yes"},
])
def test_config_validation(kwargs):
    with pytest.raises(FlopsFitError):
        AnalysisConfig(**kwargs)


def test_an_unknown_predictor_is_refused_before_any_fit(tmp_path):
    with pytest.raises(FlopsFitError, match="analysis.predict_with='magic' is not valid; use "
                       "parametric or isoflop"):
        ScalingLawAnalyzer(tmp_path / "results.json", tmp_path / "analysis",
                           AnalysisConfig(predict_with="magic"))
    assert not (tmp_path / "analysis").exists()


def test_yaml_mirrors_the_config():
    data = yaml.safe_load(CONF.read_text())
    assert set(data) == {f.name for f in fields(AnalysisConfig)}
    cfg = AnalysisConfig(**data)
    assert cfg == AnalysisConfig()
    assert AnalysisConfig(table_budgets=["1e18", 1e19]).table_budgets == [1e18, 1e19]


def test_table_budgets_default_span_the_sweep(tmp_path):
    run_dir = write_run_dir(tmp_path, make_records())
    con, buf = console()
    analysis = run_analysis(run_dir, AnalysisConfig(**FAST), None, con)
    budgets = [p["target_compute"] for p in analysis.predictions]
    assert budgets[0] == pytest.approx(1e17) and budgets[-1] == pytest.approx(1e22)
    assert "| 1.00e+22 |" in buf.getvalue()
    con, buf = console()
    run_analysis(run_dir, AnalysisConfig(**FAST), [3e21], con)
    assert "| 3.00e+21 |" in buf.getvalue() and "| 1.00e+22 |" not in buf.getvalue()
