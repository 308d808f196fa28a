"""Plots (ScalingVisualizer) and report.html on synthetic run directories.

The runs follow a known Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta with 0.3% noise: an
IsoFLOP grid (5 budgets x 7 sizes, one diverged and one pending run, a few training curves)
and an "imported" set of runs at random (N, D) that is no grid. The real analyzer fits both.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from flops_fit.plots.visualizer import ScalingVisualizer
from flops_fit.report.page import write_report
from flops_fit.rundir.records import ValidationOutcome

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
BUDGETS = [1e17, 3e17, 1e18, 3e18, 1e19]
GRID_PLOTS = {"isoflops", "scaling_laws", "tokens_per_param", "parametric", "fit_quality",
              "training_curves"}
IMPORTED_PLOTS = {"scaling_laws", "tokens_per_param", "parametric", "fit_quality"}


def _law(n: float, d: float) -> float:
    return E + A / n**ALPHA + B / d**BETA


def _n_opt(c: float) -> float:
    g = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
    return g * (c / 6) ** (BETA / (ALPHA + BETA))


def _write_curve(run_dir: Path, rec: dict, rng: np.random.Generator) -> None:
    path = run_dir / "runs" / rec["run_id"] / "metrics.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    n, d, lines = rec["num_params"], rec["num_tokens"], []
    for step in range(1, 81):
        t = d * step / 80
        row = {"step": step, "tokens": t, "flops": 6 * n * t, "lr": 1e-3,
               "train_loss": _law(n, t) + 0.01 * rng.standard_normal()}
        if step % 20 == 0:
            row["val_loss"] = _law(n, t)
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n{\"step\": 81, \"tok")  # a half-written last line


def make_grid_run_dir(run_dir: Path, seed: int = 0) -> Path:
    """An IsoFLOP sweep: 5 budgets x 7 sizes around the known optimum, plus curves."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for c in BUDGETS:
        for i, f in enumerate(np.geomspace(1 / 5, 5, 7)):
            n = float(_n_opt(c) * f)
            d = c / (6 * n)
            records.append({
                "run_id": f"c{c:.0e}_s{i}", "status": "completed", "compute_budget": c,
                "num_params": int(n), "num_params_non_embedding": int(0.9 * n),
                "num_tokens": int(d), "flops": 6.1 * n * d, "flops_6nd": 6 * n * d,
                "final_loss": _law(n, d) * (1 + 0.003 * rng.standard_normal()),
                "size_param": "d_model", "size_value": 16 * (i + 1), "steps": 100,
                "wall_time_s": 1.5, "tokens_per_s": 1e5, "device": "cpu",
            })
    records[3].update(status="diverged", final_loss=None)
    records[10].update(status="failed", final_loss=None, error="CUDA <out of memory> & more")
    records.append({"run_id": "pending-1", "status": "pending", "compute_budget": 1e19,
                    "num_params": 10**8, "num_tokens": 10**10, "final_loss": None})
    (run_dir / "results.json").write_text(json.dumps(records, indent=1))
    for rec in records[7:14]:
        if rec["status"] == "completed":
            _write_curve(run_dir, rec, rng)
    return run_dir


def make_imported_run_dir(run_dir: Path, seed: int = 1) -> Path:
    """Runs at random (N, D), each its own budget: no IsoFLOP grid, no curves."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(40):
        n, d = 10 ** rng.uniform(7, 9.5), 10 ** rng.uniform(8.5, 11)
        records.append({"run_id": f"paper-{i}", "status": "completed",
                        "compute_budget": 6 * n * d, "num_params": n, "num_tokens": d,
                        "flops": 6 * n * d,
                        "final_loss": _law(n, d) * (1 + 0.005 * rng.standard_normal())})
    (run_dir / "results.json").write_text(json.dumps(records, indent=1))
    return run_dir


def analyze(run_dir: Path) -> Path:
    """Fit with the real analyzer; returns the path of scaling_laws.json."""
    from flops_fit.analysis import analyzer

    cfg = analyzer.AnalysisConfig(bootstrap=60)
    analyzer.ScalingLawAnalyzer(run_dir / "results.json", run_dir / "analysis", cfg).analyze()
    return run_dir / "analysis" / "scaling_laws.json"


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory) -> Path:
    run_dir = make_grid_run_dir(tmp_path_factory.mktemp("grid") / "run")
    analyze(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def imported_dir(tmp_path_factory) -> Path:
    run_dir = make_imported_run_dir(tmp_path_factory.mktemp("imported") / "run")
    analyze(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def grid_plots(grid_dir):
    vis = ScalingVisualizer(grid_dir / "results.json",
                            grid_dir / "analysis" / "scaling_laws.json", grid_dir / "plots")
    t0 = time.perf_counter()
    figures = vis.plot_all(save=True)
    return vis, figures, time.perf_counter() - t0


def _check_png(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.stat().st_size > 20_000, f"{path.name} is suspiciously small"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 400, img.shape
    rgb = img[..., :3]
    assert float(rgb.std()) > 0.05, f"{path.name} looks blank"
    # not one flat colour over most of the picture: many distinct colours
    assert len(np.unique((rgb[::4, ::4] * 255).astype(int).reshape(-1, 3), axis=0)) > 50


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------


def test_plot_all_writes_every_plot(grid_plots, grid_dir):
    vis, figures, seconds = grid_plots
    assert all(isinstance(f, Figure) for f in figures)
    names = {f.get_label() for f in figures}
    assert names == GRID_PLOTS, vis.notes
    plots = grid_dir / "plots"
    for name in names:
        _check_png(plots / f"{name}.png")
        svg = (plots / f"{name}.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    assert len(list(plots.glob("*.png"))) >= 4 and len(list(plots.glob("*.svg"))) >= 4
    assert not list(plots.glob(".*.tmp")), "temporary files left behind"
    assert sorted(vis.saved) == sorted(plots / f"{n}.{e}" for n in names for e in ("png", "svg"))
    assert seconds < 60


def test_plots_leave_no_pyplot_state(grid_plots):
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_axes_are_labelled_with_units(grid_plots):
    _, figures, _ = grid_plots
    units = ("parameters", "tokens", "FLOPs", "nats/token", "%")
    for fig in figures:
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>":
                continue
            for label in (ax.get_xlabel(), ax.get_ylabel()):
                assert label and any(u in label for u in units), (fig.get_label(), label)


def test_isoflops_marks_optima_and_skips_failed_runs(grid_plots):
    _, figures, _ = grid_plots
    fig = next(f for f in figures if f.get_label() == "isoflops")
    ax = fig.axes[0]
    assert "diverged" in ax.get_title() and "failed" in ax.get_title()
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert len(stars) == len(BUDGETS)


def test_scaling_laws_extend_to_the_prediction_budget(grid_dir):
    vis = ScalingVisualizer(grid_dir / "results.json", grid_dir / "analysis/scaling_laws.json",
                            grid_dir / "plots-pred", predict_budget=1e22)
    fig = vis.plot_scaling_laws()
    for ax in fig.axes[:3]:
        assert ax.get_xlim()[1] >= 1e22
    assert "10^{22}" in fig._suptitle.get_text()
    assert not (grid_dir / "plots-pred").exists()  # plot_* alone saves nothing


def test_imported_data_skip_what_needs_a_grid(imported_dir, tmp_path):
    vis = ScalingVisualizer(imported_dir / "results.json",
                            imported_dir / "analysis" / "scaling_laws.json", tmp_path / "plots")
    figures = vis.plot_all(save=True)
    names = {f.get_label() for f in figures}
    assert names == IMPORTED_PLOTS
    assert any(n.startswith("isoflops: skipped") for n in vis.notes)
    assert any(n.startswith("training_curves: skipped") for n in vis.notes)
    for name in names:
        _check_png(tmp_path / "plots" / f"{name}.png")


def test_without_a_fit_the_data_are_still_drawn(grid_dir, tmp_path):
    vis = ScalingVisualizer(grid_dir / "results.json", tmp_path / "missing.json",
                            tmp_path / "plots")
    names = {f.get_label() for f in vis.plot_all(save=False)}
    assert {"isoflops", "tokens_per_param", "training_curves"} <= names
    assert "parametric" not in names and any("no fit" in n for n in vis.notes)
    assert not (tmp_path / "plots").exists()


def test_degenerate_and_partial_analyses_do_not_raise(grid_dir, tmp_path):
    data = json.loads((grid_dir / "analysis" / "scaling_laws.json").read_text())
    data["parametric"].update(degenerate=True, bootstrap=None,
                              degenerate_reasons=["E fell to its lower bound"])
    data["isoflop"]["loss_opt"] = None
    data["isoflop"]["bootstrap"] = None
    for b in data["isoflop"]["budgets"]:
        b.pop("optimal_params_ci", None)
    data["isoflop"]["budgets"][0]["interior"] = False
    data.pop("provenance")
    path = tmp_path / "scaling_laws.json"
    path.write_text(json.dumps(data))
    vis = ScalingVisualizer(grid_dir / "results.json", path, tmp_path / "plots")
    figures = {f.get_label(): f for f in vis.plot_all(save=False)}
    assert set(figures) == GRID_PLOTS
    assert "degenerate" in figures["scaling_laws"]._suptitle.get_text()
    # without a bootstrap no band is drawn, and the legend says so
    labels = [t.get_text() for t in figures["scaling_laws"].axes[0].get_legend().get_texts()]
    assert any("Approach 2" in t and "no bootstrap: no band" in t for t in labels), labels
    assert not any("band, Approach 2" in t for t in labels), labels
    # an analysis with only what ScalingAnalysis.from_json requires
    minimal = {"method": "parametric",
               "parametric": {"available": True, **{k: data["parametric"][k]
                                                    for k in ("E", "A", "B", "alpha", "beta")}},
               "isoflop": {"available": True, "n_opt": {"coefficient": 0.6, "exponent": 0.45},
                           "d_opt": {"coefficient": 0.27, "exponent": 0.55}, "budgets": []}}
    path.write_text(json.dumps(minimal))
    vis = ScalingVisualizer(grid_dir / "results.json", path, tmp_path / "plots")
    assert {f.get_label() for f in vis.plot_all(save=False)} == GRID_PLOTS
    # one that is not an analysis: the data are drawn, with a note
    path.write_text(json.dumps({"parametric": {}}))
    vis = ScalingVisualizer(grid_dir / "results.json", path, tmp_path / "plots")
    names = {f.get_label() for f in vis.plot_all(save=False)}
    assert "parametric" not in names and "isoflops" in names
    assert any("no usable fit" in n for n in vis.notes), vis.notes


# --------------------------------------------------------------------------------------------
# report.html
# --------------------------------------------------------------------------------------------

_EXTERNAL = re.compile(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//|"""
                       r"""url\(\s*["']?\s*(?:https?:)?//|@import""", re.IGNORECASE)


@pytest.fixture(scope="module")
def report(grid_dir, grid_plots) -> Path:
    vis, figures, _ = grid_plots
    # validation.json as the validate stage writes it: a ValidationOutcome's to_dict
    (grid_dir / "analysis" / "validation.json").write_text(json.dumps(ValidationOutcome(
        compute_budget=1e20, largest_sweep_budget=1e19, method="isoflop",
        predicted_params=6.1e8, predicted_tokens=2.7e10, predicted_loss=2.61,
        predicted_loss_ci=[2.6, 2.62], prediction_interval=[2.58, 2.64],
        residual_sigma_log=0.004, predicted_loss_at_run=2.612, achieved_loss=2.63,
        relative_error=0.0077, within_interval=True, predicted_optimum_was_best=True,
        best_loss=2.63, runs=[{"run_id": "val-0", "size_value": 64, "num_params": 6e8,
                               "num_tokens": 2.7e10, "repeat": 0, "status": "completed",
                               "final_loss": 2.63, "predicted_optimum": True}],
        achieved_losses=[2.63]).to_dict()))
    hydra = grid_dir / ".hydra" / "analyze"
    hydra.mkdir(parents=True)
    (hydra / "config.yaml").write_text("run_dir: /x\nanalysis:\n  bootstrap: 60  # <b>\n")
    return write_report(grid_dir, figures, grid_dir / "analysis" / "scaling_laws.json",
                        grid_dir / "results.json",
                        {"predict_budget": 1e21, "notes": vis.notes + ["note with <tag>"]})


def test_report_is_self_contained(report, grid_plots):
    _, figures, _ = grid_plots
    text = report.read_text(encoding="utf-8")
    assert report.name == "report.html" and text.startswith("<!DOCTYPE html>")
    assert not _EXTERNAL.search(text)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower() and "<link" not in text.lower()
    imgs = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(imgs) == len(figures)
    assert not list(report.parent.glob(".report.html.*.tmp"))


def test_report_content(report):
    text = report.read_text(encoding="utf-8")
    for expected in ("Prediction at C = 1e+21 FLOPs", "Fitted scaling laws", "alpha",
                     "95% interval", "Chinchilla table", "IsoFLOP minimum of each budget",
                     "status-diverged", "status-failed", "status-pending", "Validation",
                     "relative_error", "val-0", ".hydra/analyze/config.yaml", "matplotlib",
                     "Report written"):
        assert expected in text, expected
    assert text.count("<table") >= 8
    # every run is in the run table
    for rec in json.loads((report.parent / "results.json").read_text()):
        assert f"<td>{rec['run_id']}</td>" in text
    # text is escaped
    assert "CUDA &lt;out of memory&gt; &amp; more" in text and "<out of memory>" not in text
    assert "note with &lt;tag&gt;" in text and "# &lt;b&gt;" in text


def test_report_from_saved_plot_paths(grid_dir, grid_plots, tmp_path):
    vis, _, _ = grid_plots
    run_dir = tmp_path / "copy"
    shutil.copytree(grid_dir, run_dir)
    paths = [run_dir / "plots" / p.name for p in vis.saved]  # PNG and SVG of each
    out = write_report(run_dir, paths, None, None)
    text = out.read_text(encoding="utf-8")
    assert len(re.findall(r'src="data:image/png;base64,', text)) == len(GRID_PLOTS)
    assert "Chinchilla table" in text and not _EXTERNAL.search(text)


def test_report_of_imported_data(imported_dir, tmp_path):
    vis = ScalingVisualizer(imported_dir / "results.json",
                            imported_dir / "analysis" / "scaling_laws.json", tmp_path / "p")
    figures = vis.plot_all(save=False)
    out = write_report(imported_dir, figures, imported_dir / "analysis" / "scaling_laws.json",
                       imported_dir / "results.json")
    text = out.read_text(encoding="utf-8")
    assert "Approach 2 has no compute budgets" in text
    assert len(re.findall(r"<img ", text)) == len(IMPORTED_PLOTS)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


_CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  var d = document.createElement('div');
  d.id = 'img-check';
  d.textContent = 'IMAGES=' + imgs.length + ' BROKEN=' + broken.length;
  document.body.appendChild(d);
});
</script>"""


@pytest.mark.skipif(_chromium() is None,
                    reason="no headless browser: install Debian's chromium "
                           "(apt-get install -y chromium) to render report.html")
def test_report_renders_in_chromium(report, tmp_path):
    page = tmp_path / "page.html"
    text = report.read_text(encoding="utf-8")
    page.write_text(text.replace("</body>", _CHECK_SCRIPT + "</body>"), encoding="utf-8")
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    found = re.search(r"IMAGES=(\d+) BROKEN=(\d+)", proc.stdout)
    assert found, f"chromium did not run the check (rc {proc.returncode}): {proc.stderr[-800:]}"
    n_images, broken = int(found.group(1)), int(found.group(2))
    assert n_images == text.count("<img ") and n_images >= 4
    assert broken == 0, f"{broken} of {n_images} images did not load"


def test_fmt_helpers():
    from flops_fit.plots.visualizer import fmt_sci, interval
    from flops_fit.report.page import fmt

    assert fmt(None) == "–" and fmt(True) == "yes" and fmt([1.0, 2.0]) == "[1, 2]"
    assert fmt(float("nan")) == "n/a" and fmt(123456789.0) == "1.235e+08"
    assert fmt_sci(3e12) == r"$3\times10^{12}$" and fmt_sci(1e21) == r"$10^{21}$"
    assert interval({"a_ci": [2, 1]}, "a") == (1.0, 2.0)
    assert interval({"a": {"value": 1, "ci": [0, None]}}, "a") is None


# --------------------------------------------------------------------------------------------
# the laws drawn are the registry's evaluations
# --------------------------------------------------------------------------------------------


def test_n_opt_curve_is_the_analysis_prediction(grid_dir):
    """The N_opt line of the predicting approach is ScalingAnalysis.predict_optimal_size's
    value at every C it is drawn at: the law is evaluated in one place."""
    from flops_fit.analysis.scaling_analysis import ScalingAnalysis
    from flops_fit.plots.style import approach_style

    path = grid_dir / "analysis" / "scaling_laws.json"
    analysis = ScalingAnalysis.from_json(path)
    vis = ScalingVisualizer(grid_dir / "results.json", path, grid_dir / "plots-n")
    fig = vis.plot_scaling_laws()
    for method in ("isoflop", "parametric"):
        label = approach_style(method).label
        line = next(ln for ln in fig.axes[0].get_lines()
                    if ln.get_label().startswith(label))
        x, y = line.get_xdata(), line.get_ydata()
        for i in (0, len(x) // 2, len(x) - 1):
            want = analysis.predict_optimal_size(float(x[i]), method=method)
            assert y[i] == pytest.approx(want.optimal_params, rel=1e-12), (method, x[i])


def test_a_new_approach_is_drawn_without_editing_the_figures(grid_dir, tmp_path, monkeypatch):
    """An approach registered in APPROACHES (here a copy of isoflop under a new name) is drawn
    in scaling_laws and tokens_per_param, in a style of its own, with its band."""
    from dataclasses import replace

    from flops_fit.analysis import approaches
    from flops_fit.plots.style import APPROACH_STYLES, approach_style

    copy = replace(approaches.APPROACHES["isoflop"], name="isoflop_copy",
                   title="Approach X (a copy)")
    monkeypatch.setitem(approaches.APPROACHES, "isoflop_copy", copy)
    data = json.loads((grid_dir / "analysis" / "scaling_laws.json").read_text())
    data["isoflop_copy"] = data["isoflop"]
    path = tmp_path / "scaling_laws.json"
    path.write_text(json.dumps(data))
    vis = ScalingVisualizer(grid_dir / "results.json", path, tmp_path / "plots")
    assert "isoflop_copy" not in APPROACH_STYLES
    style = approach_style("isoflop_copy", copy.title)
    assert style.label == "Approach X (a copy)"
    assert style.color not in {s.color for s in APPROACH_STYLES.values()}
    fig = vis.plot_scaling_laws()
    for ax in fig.axes[:3]:
        lines = [ln for ln in ax.get_lines() if ln.get_label().startswith(style.label)]
        assert len(lines) == 1 and lines[0].get_color() == style.color
        iso = next(ln for ln in ax.get_lines()
                   if ln.get_label().startswith(approach_style("isoflop").label))
        np.testing.assert_array_equal(lines[0].get_ydata(), iso.get_ydata())
        bands = [t.get_text() for t in ax.get_legend().get_texts()]
        assert f"95% band, {style.label}" in bands
    tpp = vis.plot_tokens_per_param()
    assert any(ln.get_label().startswith(style.label) for ln in tpp.axes[0].get_lines())
