"""The plots of a run directory, one module per figure, drawn from one :class:`PlotData`.

=====================  =====================================================================
``isoflops``           final loss vs N per budget, the parabolas and their minima
``scaling_laws``       N_opt, D_opt, L_opt vs C: optima, laws with bands, validation, prediction
``tokens_per_param``   D/N of every run and of the compute-optimal allocation vs C
``parametric``         iso-loss contours of L(N, D), the frontier and the runs
``fit_quality``        predicted vs observed loss of L(N, D), residuals by N
``training_curves``    loss vs training compute of every run with a metrics.jsonl
=====================  =====================================================================

Each module has ``draw(data) -> Figure | None`` (None, with a line in ``data.notes``, when its
data are missing). :data:`FIGURES` is the registry: name -> (draw function, caption), read by
:func:`plot_all`, the visualizer and the report. A new plot is its module and one line there.
:func:`plot_all` draws them all, :func:`save` writes PNG and SVG.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from matplotlib.figure import Figure

from flops_fit.errors import FlopsFitError
from flops_fit.plots import (
    fit_quality,
    isoflops,
    parametric,
    scaling_laws,
    tokens_per_param,
    training_curves,
)
from flops_fit.plots.data import PlotData
from flops_fit.plots.style import rc_context, save_atomic

__all__ = ["FIGURES", "FigureEntry", "PlotData", "caption", "draw", "plot_all", "save"]


class FigureEntry(NamedTuple):
    """One plot: its draw function and the caption report.html shows under it."""

    draw: Callable[[PlotData], Figure | None]
    caption: str


#: file stem -> the plot, in the order plot_all draws them
FIGURES: dict[str, FigureEntry] = {
    "isoflops": FigureEntry(isoflops.draw, (
        "IsoFLOP curves: final loss against model size for each compute budget, the parabola "
        "fitted in log N and its minimum with a 95% interval. A budget whose minimum is not "
        "inside the sampled sizes is marked and left out of the laws.")),
    "scaling_laws": FigureEntry(scaling_laws.draw, (
        "Compute-optimal model size, data and loss against compute: the IsoFLOP optima, the "
        "fitted power laws (Approach 2) with 95% bands, the parametric fit (Approach 3), "
        "extended to the prediction budget.")),
    "tokens_per_param": FigureEntry(tokens_per_param.draw, (
        "Tokens per parameter of every run and of the compute-optimal allocation, against "
        "compute; Chinchilla's 20 for reference.")),
    "parametric": FigureEntry(parametric.draw, (
        "Iso-loss contours of the fitted L(N, D), the compute-optimal frontier, iso-FLOP lines "
        "(C = 6ND) and the runs.")),
    "fit_quality": FigureEntry(fit_quality.draw, (
        "Parametric fit quality: predicted against observed loss, and the relative residuals "
        "by model size.")),
    "training_curves": FigureEntry(training_curves.draw, (
        "Training curves: loss against training compute, coloured by model size; dots are "
        "held-out evaluations.")),
}


def draw(name: str, data: PlotData) -> Figure | None:
    """The plot ``name`` under the shared style."""
    with rc_context():
        return FIGURES[name].draw(data)


def caption(name: str) -> str:
    """The caption of plot ``name`` (a figure not in :data:`FIGURES`: its name in words)."""
    entry = FIGURES.get(name)
    return entry.caption if entry is not None else name.replace("_", " ")


def plot_all(data: PlotData) -> list[Figure]:
    """Every plot the data allow; the others are skipped with a line in ``data.notes``.

    The Figures' ``get_label()`` is the file stem.
    """
    figures: list[Figure] = []
    for name in list(FIGURES):
        try:
            fig = draw(name, data)
        except FlopsFitError:
            raise
        except Exception as exc:  # noqa: BLE001 - one odd plot must not sink the others
            data.notes.append(f"{name}: skipped, it could not be drawn "
                              f"({type(exc).__name__}: {exc})")
            continue
        if fig is not None:
            figures.append(fig)
    return figures


def save(figures: Iterable[Figure], output_dir: Path, dpi: int = 150) -> list[Path]:
    """Write each Figure as ``<label>.png`` and ``<label>.svg`` in ``output_dir``."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlopsFitError(f"Cannot create {output_dir}: {exc.strerror or exc}; "
                            "choose a writable run_dir.") from exc
    paths: list[Path] = []
    for fig in figures:
        stem = fig.get_label() or f"figure_{len(paths)}"
        for fmt in ("png", "svg"):
            path = output_dir / f"{stem}.{fmt}"
            try:
                with rc_context():  # svg.hashsalt: reproducible SVG ids
                    save_atomic(fig, path, fmt, dpi)
            except OSError as exc:
                raise FlopsFitError(f"Cannot write {path}: {exc.strerror or exc}; free "
                                    "disk space or choose another run_dir.") from exc
            paths.append(path)
    return paths
