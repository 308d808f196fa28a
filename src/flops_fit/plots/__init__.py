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
data are missing). :func:`plot_all` draws them all, :func:`save` writes PNG and SVG.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

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

__all__ = ["PLOT_NAMES", "DRAW", "PlotData", "draw", "plot_all", "save"]

#: file stems of the plots, in the order plot_all draws them
PLOT_NAMES = (
    "isoflops", "scaling_laws", "tokens_per_param", "parametric", "fit_quality",
    "training_curves",
)
#: the draw function of each plot
DRAW: dict[str, Callable[[PlotData], Figure | None]] = {
    "isoflops": isoflops.draw, "scaling_laws": scaling_laws.draw,
    "tokens_per_param": tokens_per_param.draw, "parametric": parametric.draw,
    "fit_quality": fit_quality.draw, "training_curves": training_curves.draw,
}


def draw(name: str, data: PlotData) -> Figure | None:
    """The plot ``name`` under the shared style."""
    with rc_context():
        return DRAW[name](data)


def plot_all(data: PlotData) -> list[Figure]:
    """Every plot the data allow; the others are skipped with a line in ``data.notes``.

    The Figures' ``get_label()`` is the file stem.
    """
    figures: list[Figure] = []
    for name in PLOT_NAMES:
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
