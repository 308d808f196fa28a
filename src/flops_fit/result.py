"""``Result``: what ``find_optimal`` returns and ``Result.load(run_dir)`` rebuilds from files.

A thin facade over the run directory: the fitted :class:`ScalingAnalysis` (from
``analysis/scaling_laws.json``), the runs (``results.json``) as a DataFrame, the plots, and
the validation outcome when ``flops-fit validate`` has run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from flops_fit.analysis.laws import Prediction
from flops_fit.analysis.realise import in_user_terms
from flops_fit.analysis.scaling_analysis import ScalingAnalysis
from flops_fit.errors import FlopsFitError
from flops_fit.rundir.io import read_results
from flops_fit.rundir.layout import (
    ANALYSIS_DIR,
    LAWS_FILE,
    PLOTS_DIR,
    RESULTS_FILE,
    VALIDATION_FILE,
)
from flops_fit.rundir.records import ValidationOutcome, beyond_limits, read_validation

__all__ = ["Result", "RESULTS_FILE", "ANALYSIS_FILE"]

ANALYSIS_FILE = Path(ANALYSIS_DIR) / LAWS_FILE  # relative to the run directory
_VALIDATION = Path(ANALYSIS_DIR) / VALIDATION_FILE


@dataclass
class Result:
    """The outcome of a sweep: fitted laws, predictions, runs and plots of one run directory."""

    analysis: ScalingAnalysis
    output_dir: Path
    compute_budgets: list[float] = field(default_factory=list)
    validation: ValidationOutcome | None = None

    def __post_init__(self) -> None:
        if isinstance(self.validation, dict):  # the plain JSON object, as it used to be
            self.validation = ValidationOutcome.from_dict(self.validation)

    @classmethod
    def load(cls, run_dir: str | Path) -> Result:
        """Rebuild the Result of ``run_dir`` from its files (any process, any time)."""
        run_dir = Path(run_dir).expanduser().absolute()
        if not run_dir.is_dir():
            raise FlopsFitError(f"No run directory at {run_dir}; check the path.")
        path = run_dir / ANALYSIS_FILE
        if not path.exists():
            raise FlopsFitError(
                f"{run_dir} has no {ANALYSIS_FILE}; run "
                f"`flops-fit analyze run_dir={run_dir}` first."
            )
        analysis = ScalingAnalysis.from_json(path)  # checked: one sentence naming the field
        validation = None
        if (run_dir / _VALIDATION).exists():
            validation = read_validation(run_dir / _VALIDATION)
        budgets: list[float] = []
        if (run_dir / RESULTS_FILE).exists():
            records = read_results(run_dir / RESULTS_FILE)
            budgets = sorted({float(r["compute_budget"]) for r in records
                              if _finite_positive(r.get("compute_budget"))
                              and r.get("status") == "completed" and not beyond_limits(r)})
        return cls(analysis, run_dir, budgets, validation)

    @property
    def validation_outcome(self) -> ValidationOutcome | None:
        """``validation`` (an older name of it)."""
        return self.validation

    @property
    def runs(self) -> pd.DataFrame:
        """Every run record of ``results.json``, one row per run."""
        path = Path(self.output_dir) / RESULTS_FILE
        return pd.DataFrame(read_results(path))

    def chinchilla_table(self, compute_budgets: list[float] | None = None) -> str:
        """Markdown table of the compute-optimal N, D, D/N and loss per budget."""
        return self.analysis.chinchilla_table(compute_budgets)

    def predict(self, compute_budget: float | Sequence[float], method: str | None = None
                ) -> Prediction | list[Prediction]:
        """Compute-optimal ``optimal_params``, ``optimal_tokens``, ``expected_loss``, ... for C.

        A :class:`~flops_fit.analysis.laws.Prediction`, which also reads like the dict it used to
        be; a list of budgets gives a list of Predictions. ``p["model"]`` is the nearest model one
        can build (size value and full kwargs) and ``p["notes"]`` warns of a budget far outside
        the sweep or of tokens beyond the data's (:mod:`flops_fit.analysis.realise`). ``method``
        (a name of :data:`~flops_fit.analysis.approaches.APPROACHES`) asks one approach instead
        of the analysis's own.
        """
        if isinstance(compute_budget, (list, tuple)):
            return [self.predict(c, method) for c in compute_budget]
        p = self.analysis.predict_optimal_size(compute_budget, method)
        params = ((self.analysis.provenance or {}).get("conventions") or {}).get("params")
        return in_user_terms(p, self.output_dir, self.compute_budgets, params or "total")

    def plot(self, show: bool = False, predict_budget: float | None = None) -> list:
        """Draw every plot (saved under ``plots/`` as PNG and SVG) and return the Figures."""
        from flops_fit.plots.visualizer import ScalingVisualizer

        out = Path(self.output_dir)
        vis = ScalingVisualizer(out / RESULTS_FILE, out / ANALYSIS_FILE, out / PLOTS_DIR,
                                predict_budget=predict_budget)
        figures = vis.plot_all(save=True)
        if show:
            import matplotlib.pyplot as plt

            for fig in figures:  # Figures made without pyplot need a manager to be shown
                manager = plt.figure().canvas.manager
                manager.canvas.figure = fig
                fig.set_canvas(manager.canvas)
            plt.show()
        return figures

    def summary(self) -> str:
        """A few readable lines: the fitted laws and, if done, the validation."""
        lines = [f"flops-fit result: {self.output_dir}"]
        if self.compute_budgets:
            lines.append("budgets: " + ", ".join(f"{c:.3g}" for c in self.compute_budgets))
        describe = getattr(self.analysis, "describe", None)
        if callable(describe):
            lines.append(describe())
        if self.validation is not None:
            v = self.validation

            def value(x: float | None) -> float:
                return float("nan") if x is None else x

            lines.append(
                f"validation at C={v.compute_budget:.3g}: predicted loss "
                f"{value(v.predicted_loss):.4f}, achieved {value(v.achieved_loss):.4f} "
                f"({value(v.relative_error):+.2%})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _finite_positive(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)
