"""The FIGURES registry: one line per plot, read by plot_all, the visualizer and the report."""

from __future__ import annotations

import json
from pathlib import Path

from flops_fit import plots
from flops_fit.plots import FIGURES, FigureEntry, PlotData, caption
from flops_fit.plots.style import new_figure
from flops_fit.plots.visualizer import ScalingVisualizer
from flops_fit.report.page import write_report


def test_every_figure_has_a_draw_function_and_a_caption():
    assert list(FIGURES) == ["isoflops", "scaling_laws", "tokens_per_param", "parametric",
                             "fit_quality", "training_curves"]
    for name, entry in FIGURES.items():
        assert callable(entry.draw) and entry.caption.endswith("."), name
    assert caption("isoflops").startswith("IsoFLOP curves: final loss against model size")
    assert caption("not_registered") == "not registered"  # an unknown figure: its name


def _toy_draw(data: PlotData):
    """Final loss against N of every completed run."""
    fig = new_figure("toy", (4.0, 3.0))
    ax = fig.add_subplot()
    runs = data.runs
    ax.plot([r.n for r in runs], [r.loss for r in runs], "o")
    ax.set_xscale("log")
    return fig


def _run_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records = [{"run_id": f"r{i}", "status": "completed", "compute_budget": 1e15,
                "num_params": n, "num_tokens": 1e15 / (6 * n), "flops": 1e15,
                "final_loss": 2.0 + 1e3 / n ** 0.5} for i, n in enumerate((1e5, 3e5, 1e6))]
    (run_dir / "results.json").write_text(json.dumps(records))
    return run_dir


def test_a_new_figure_is_one_registry_line(monkeypatch, tmp_path):
    # one FIGURES line, nothing else: the visualizer draws and saves it, the report captions it
    monkeypatch.setitem(plots.FIGURES, "toy", FigureEntry(_toy_draw, "A toy: loss against N."))
    run_dir = _run_dir(tmp_path)
    vis = ScalingVisualizer(run_dir / "results.json", None, run_dir / "plots")
    assert [name for name, _ in vis.plotters()][-1] == "toy"
    assert vis.plot("toy").get_label() == "toy"
    figures = vis.plot_all(save=True)
    assert "toy" in {f.get_label() for f in figures}
    assert (run_dir / "plots" / "toy.png").is_file() and (run_dir / "plots" / "toy.svg").is_file()
    report = write_report(run_dir, figures, None, run_dir / "results.json")
    text = report.read_text(encoding="utf-8")
    assert '<figure id="plot-toy">' in text and "<b>toy</b>: A toy: loss against N." in text
