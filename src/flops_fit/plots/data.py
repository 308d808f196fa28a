"""What the plots draw, read once from the run directory: :class:`PlotData`.

Every figure module takes a :class:`PlotData` (never a path or a raw dict): the completed runs
under the fit's conventions (:class:`Run`), the IsoFLOP optima (:class:`Optimum`), the
training curves (:class:`Curve`), the validation run (:class:`ValidationPoint`) and the fitted
laws (:class:`~flops_fit.plots.curves.Laws`).

Units: N in parameters, D in tokens, C in FLOPs, loss in nats per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flops_fit.analysis.laws import Prediction
from flops_fit.errors import FlopsFitError
from flops_fit.plots.curves import Laws, Optimum, num
from flops_fit.rundir.io import read_json
from flops_fit.rundir.layout import VALIDATION_FILE, Layout
from flops_fit.rundir.records import RunRecord, beyond_limits, read_metrics, read_validation


@dataclass(frozen=True)
class Run:
    """A completed run with finite positive N, D and loss; C under the fit's convention."""

    run_id: str
    n: float
    d: float
    loss: float
    c: float
    budget: float


@dataclass(frozen=True)
class Curve:
    """A run's training curve from its ``metrics.jsonl`` (NaN where a line has no value)."""

    n: float
    status: str
    tokens: np.ndarray
    flops: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray


@dataclass(frozen=True)
class ValidationPoint:
    """The predicted-optimum run of ``analysis/validation.json``."""

    compute_budget: float
    n: float
    d: float
    loss: float

    def value(self, j: int) -> float:
        return float((self.n, self.d, self.loss)[j])


@dataclass
class PlotData:
    """Everything the plots draw; build it with :meth:`load`."""

    records: list[RunRecord]
    laws: Laws
    curves: list[Curve] = field(default_factory=list)
    validation: ValidationPoint | None = None
    predict_budget: float | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runs = self._runs()
        self.optima = self.laws.optima()

    # ----------------------------------------------------------------------------- building

    @classmethod
    def load(cls, results_path: Path, analysis_path: Path | None,
             predict_budget: float | None = None) -> PlotData:
        """From ``results.json`` and ``analysis/scaling_laws.json`` (which may be missing)."""
        raw = read_json(results_path, "results")
        if not isinstance(raw, list):
            raise FlopsFitError(
                f"{results_path} is not a list of run records; rebuild it with "
                "`flops-fit train` or fix the file."
            )
        # a record without a status counts as completed (imported data), as it always did
        records = [RunRecord.from_dict({"run_id": "", "status": "completed", **r})
                   for r in raw if isinstance(r, dict)]
        notes: list[str] = []
        laws = Laws.read(analysis_path, notes)
        curves = _curves(Layout(results_path.parent), records, laws.param_key)
        validation = None
        if analysis_path is not None:
            validation = _validation(analysis_path.parent / VALIDATION_FILE, notes)
        data = cls(records, laws, curves, validation, None, notes)
        data.predict_budget = data._default_predict(predict_budget)
        return data

    def _runs(self) -> list[Run]:
        out = []
        non_embedding = self.laws.param_key == "num_params_non_embedding"
        for r in self.records:
            if r.status != "completed":
                continue
            too_large = beyond_limits(r)
            if too_large:  # analyze refuses it; a plot cannot place it
                self.notes.append(f"run {r.run_id} left out: {too_large} is beyond any "
                                  "training run")
                continue
            n = num(r.num_params_non_embedding if non_embedding and
                    r.num_params_non_embedding is not None else r.num_params)
            d, loss = num(r.num_tokens), num(r.final_loss)
            if not (n > 0 and d > 0 and loss > 0):
                continue
            c = num(r.flops)
            c = c if c > 0 and not self.laws.uses_6nd else 6.0 * n * d
            budget = num(r.compute_budget)
            out.append(Run(r.run_id, n, d, loss, c, budget if budget > 0 else c))
        return out

    def _default_predict(self, predict_budget: float | None) -> float | None:
        if predict_budget is not None and num(predict_budget) > 0:
            return float(predict_budget)
        budgets = [o.c for o in self.optima] or [r.c for r in self.runs]
        return 100.0 * max(budgets) if budgets else None

    # ------------------------------------------------------------------------------ queries

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    def prediction(self, compute_budget: float | None) -> Prediction | None:
        """The analysis's own prediction at ``compute_budget`` (its method), or None."""
        return self.laws.prediction(compute_budget)


def _curves(layout: Layout, records: list[RunRecord], param_key: str) -> list[Curve]:
    out = []
    for r in records:
        try:
            path = layout.metrics(r.run_id)
        except FlopsFitError:
            continue  # not a safe folder name: it has no curve
        if not path.is_file():
            continue
        lines = read_metrics(path)
        if len(lines) < 2:
            continue
        n = num(r.num_params_non_embedding if param_key == "num_params_non_embedding"
                and r.num_params_non_embedding is not None else r.num_params)

        def col(key: str, lines=lines) -> np.ndarray:
            return np.array([num(getattr(ln, key)) for ln in lines])

        out.append(Curve(n, r.status, col("tokens"), col("flops"), col("train_loss"),
                         col("val_loss")))
    return out


def _validation(path: Path, notes: list[str]) -> ValidationPoint | None:
    if not path.exists():
        return None
    try:
        v = read_validation(path)
    except FlopsFitError as exc:
        notes.append(f"scaling_laws: the validation run is not drawn ({exc})")
        return None
    run = next((r for r in v.runs if r.get("predicted_optimum")), None)
    if run is None or v.achieved_loss is None:
        return None
    return ValidationPoint(float(v.compute_budget), num(run.get("num_params")),
                           num(run.get("num_tokens")), num(v.achieved_loss))


__all__ = ["PlotData", "Run", "Optimum", "Curve", "ValidationPoint"]
