"""Plots of a run directory: IsoFLOP curves, scaling laws, tokens per parameter, L(N, D), fit
quality and training curves.

:class:`ScalingVisualizer` is the file-based front of :mod:`flops_fit.plots`: it reads
``results.json`` (the runs) and ``analysis/scaling_laws.json`` (the fit) once into a
:class:`~flops_fit.plots.data.PlotData` and hands it to one module per figure. Figures are
:class:`matplotlib.figure.Figure` objects made without pyplot, so drawing works headless and
leaves no pyplot state behind. A plot whose data are missing (no IsoFLOP budgets for imported
runs, no parametric fit, no training curves) is skipped with a note in :attr:`notes`.

Units: N in parameters, D in tokens, C in FLOPs, loss in nats per token.

matplotlib is imported at module top: ``import flops_fit`` does not import this module (the
package's ``__init__`` stays light and ``Result.plot`` imports it on use).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from flops_fit import plots
from flops_fit.plots import FIGURES, PlotData
from flops_fit.plots import scaling_laws as scaling_laws_plot
from flops_fit.plots.curves import interval
from flops_fit.plots.style import fmt_sci, rc_context
from flops_fit.rundir.records import RunRecord

__all__ = ["ScalingVisualizer", "FIGURES", "fmt_sci", "interval"]


class ScalingVisualizer:
    """Draw the plots of one run directory.

    Parameters
    ----------
    results_path : ``results.json`` (a JSON array of run records).
    analysis_path : ``analysis/scaling_laws.json``; may be missing (only the plots that need no
        fit are drawn then).
    output_dir : where :meth:`plot_all` writes ``<name>.png`` and ``<name>.svg`` (``plots/``).
    predict_budget : the budget (FLOPs) the scaling-law lines are extended to; default 100x
        the largest budget.
    """

    def __init__(self, results_path: str | Path, analysis_path: str | Path | None,
                 output_dir: str | Path, predict_budget: float | None = None,
                 dpi: int = 150):
        self.results_path = Path(results_path)
        self.analysis_path = Path(analysis_path) if analysis_path is not None else None
        self.output_dir = Path(output_dir)
        self.dpi = dpi
        self.saved: list[Path] = []
        self.run_dir = self.results_path.parent
        self.data = PlotData.load(self.results_path, self.analysis_path, predict_budget)

    # ----------------------------------------------------------------------------- data access

    @property
    def notes(self) -> list[str]:
        """Why plots were skipped (and other remarks), in the order they were made."""
        return self.data.notes

    @property
    def records(self) -> list[RunRecord]:
        return self.data.records

    @property
    def analysis(self) -> dict[str, Any]:
        """``scaling_laws.json`` as read (empty without a fit)."""
        return self.data.laws.analysis

    @property
    def predict_budget(self) -> float | None:
        return self.data.predict_budget

    @property
    def conventions(self) -> dict[str, Any]:
        """``provenance.conventions`` of the analysis (which N and C the fit used)."""
        return self.data.laws.conventions

    @property
    def param_key(self) -> str:
        """The run-record field the fit used as N (total or non-embedding parameters)."""
        return self.data.laws.param_key

    @property
    def uses_6nd(self) -> bool:
        """True when the fit took C = 6ND instead of the measured FLOPs."""
        return self.data.laws.uses_6nd

    @property
    def kappa(self) -> float:
        """FLOPs per parameter per token of the parametric allocation (C = kappa N D)."""
        return self.data.laws.kappa

    @property
    def ci_level(self) -> float:
        return self.data.laws.ci_level

    def prediction(self, compute_budget: float) -> dict[str, Any] | None:
        """The analysis's own prediction at ``compute_budget`` (its method), or None."""
        return self.data.prediction(compute_budget)

    # ----------------------------------------------------------------------------------- plots

    def plot(self, name: str) -> Figure | None:
        """The plot ``name`` of :data:`~flops_fit.plots.FIGURES` (None: its data are missing)."""
        return plots.draw(name, self.data)

    # the figures by name, for callers who prefer methods (plot_all goes through FIGURES)
    def plot_isoflops(self) -> Figure | None:
        """Final loss vs N per budget, the fitted parabolas and each budget's optimum."""
        return self.plot("isoflops")

    def plot_scaling_laws(self, predict_budget: float | None = None) -> Figure | None:
        """N_opt, D_opt and the loss frontier vs C with fitted laws, bands and the prediction."""
        with rc_context():
            return scaling_laws_plot.draw(self.data, predict_budget)

    def plot_tokens_per_param(self) -> Figure | None:
        """D/N of every run and of the compute-optimal allocation vs C."""
        return self.plot("tokens_per_param")

    def plot_parametric(self) -> Figure | None:
        """Iso-loss contours of the fitted L(N, D) with the compute-optimal frontier and runs."""
        return self.plot("parametric")

    def plot_fit_quality(self) -> Figure | None:
        """Predicted vs observed loss of the parametric fit, and the residuals."""
        return self.plot("fit_quality")

    def plot_training_curves(self) -> Figure | None:
        """Training loss vs FLOPs of every run with a ``metrics.jsonl``, coloured by N."""
        return self.plot("training_curves")

    # -------------------------------------------------------------------------------- plot_all

    def plotters(self) -> list[tuple[str, Callable[[], Figure | None]]]:
        """``(name, draw)`` of every plot of :data:`~flops_fit.plots.FIGURES`, in the order
        :meth:`plot_all` draws them."""
        return [(name, partial(self.plot, name)) for name in FIGURES]

    def plot_all(self, save: bool = True) -> list[Figure]:
        """Draw every plot the data allow; with ``save`` write ``<name>.png`` and ``.svg``.

        Plots that cannot be drawn are skipped with a line in :attr:`notes`. Returns the
        Figures (their ``get_label()`` is the file stem).
        """
        figures = plots.plot_all(self.data)
        if save:
            self.save(figures)
        return figures

    def save(self, figures: Iterable[Figure]) -> list[Path]:
        """Write each Figure as ``<label>.png`` and ``<label>.svg`` in ``output_dir``."""
        self.saved = plots.save(figures, self.output_dir, self.dpi)
        return self.saved
