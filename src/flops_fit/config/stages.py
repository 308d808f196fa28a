"""The options of the stages after training: ``predict``, ``validate``, ``estimate``,
``analysis`` and ``tune`` (one dataclass each, one field per key).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from flops_fit.config.reading import need
from flops_fit.errors import FlopsFitError

#: find-optimal predicts for this multiple of the largest budget when predict.budget is null
PREDICT_MULTIPLE = 100.0
#: validate trains at this multiple of the largest budget when validate.budget is null
VALIDATE_MULTIPLE = 4.0
#: upper bounds on the counts that allocate: each value beyond is refused in one sentence
MAX_SEEDS = 100  # validate.seeds
MAX_BOOTSTRAP = 100_000  # analysis.bootstrap
MAX_PROBE_STEPS = 1000  # estimate.probe_steps
MAX_TUNE_SIZES = 20  # tune.sizes
MAX_GRID_POINTS = 50  # tune.grid_points
MAX_EXTENSIONS = 20  # tune.max_extensions


@dataclass
class PredictConfig:
    """``predict`` in ``conf/base.yaml``: the budget find-optimal predicts for."""

    budget: float | None = None  # None: PREDICT_MULTIPLE x the largest budget

    def check(self) -> None:
        """One sentence for an impossible budget."""
        need(self.budget is None or (math.isfinite(self.budget) and self.budget > 0),
              f"predict.budget={self.budget} must be a positive number of FLOPs, e.g. 1e15.")

    def budget_for(self, largest: float | None) -> float | None:
        """The budget to predict for, given the sweep's largest budget."""
        if self.budget is not None:
            return float(self.budget)
        return None if largest is None else PREDICT_MULTIPLE * largest


@dataclass
class ValidateConfig:
    """``validate`` in ``conf/base.yaml``: the held-out budget of ``flops-fit validate``."""

    budget: float | None = None  # None: VALIDATE_MULTIPLE x the largest planned budget
    neighbours: bool = True  # also train one size on each side of the predicted optimum
    seeds: int = 1  # train the predicted optimum this many times, each with its own seed

    def check(self) -> None:
        """One sentence for an impossible budget or number of seeds."""
        need(self.budget is None or (math.isfinite(self.budget) and self.budget > 0),
              f"validate.budget={self.budget} must be a positive number of FLOPs, e.g. 1e13.")
        need(not isinstance(self.seeds, bool) and isinstance(self.seeds, int)
             and self.seeds >= 1, f"validate.seeds={self.seeds} must be a whole number of "
             "runs >= 1, e.g. 3.")
        need(self.seeds <= MAX_SEEDS, f"validate.seeds={self.seeds} is more than {MAX_SEEDS}; "
             f"train the predicted optimum at most {MAX_SEEDS} times.")

    def budget_for(self, largest: float) -> float:
        """The held-out budget, given the sweep's largest budget."""
        return float(self.budget) if self.budget is not None else VALIDATE_MULTIPLE * largest


@dataclass
class EstimateConfig:
    """``estimate`` in ``conf/base.yaml``: the throughput probe behind the plan's time estimate
    and the precision forecast (analysis/forecast.py)."""

    probe: bool = True  # time a few real optimizer steps per size (cached in probe.json)
    probe_steps: int = 3  # timed steps per size, after one untimed warm-up step
    forecast: bool = True  # simulate the plan's interval widths (about 5 s)
    noise: float | None = None  # run-to-run sd of log loss behind the forecast; None: the run
    # directory's measured scatter, else analysis/forecast.py's DEFAULT_NOISE

    def check(self) -> None:
        """One sentence for an impossible number of steps."""
        need(self.probe_steps >= 1, f"estimate.probe_steps={self.probe_steps} must be at "
              "least 1 (or turn the probe off with estimate.probe=false).")
        need(self.probe_steps <= MAX_PROBE_STEPS, f"estimate.probe_steps={self.probe_steps} "
             f"is more than {MAX_PROBE_STEPS}; a few steps time a size well, e.g. 3.")
        need(isinstance(self.forecast, bool), f"estimate.forecast={self.forecast!r} must be "
             "true or false.")
        need(self.noise is None or (not isinstance(self.noise, bool)
                                    and isinstance(self.noise, (int, float))
                                    and 0 < self.noise < 0.5),
             f"estimate.noise={self.noise!r} must be a fraction between 0 and 0.5 (the "
             "run-to-run sd of log loss, e.g. 0.01), or null for the measured scatter.")


@dataclass
class AnalysisConfig:
    """Settings of the analyze stage; one field per key of ``conf/analysis/default.yaml``.

    predict_with : the approach that predicts, a name of
        :data:`flops_fit.analysis.approaches.APPROACHES` (checked there, by the stages, before
        anything runs); when it cannot predict, the next one that can stands in, with a
        warning. The measured reason for the default is beside it in
        ``conf/analysis/default.yaml``.
    loss : ``"huber"`` (Huber with ``huber_delta`` on log loss, summed) or ``"lsq"``.
    huber_delta : default 1e-2, about the run-to-run noise of log loss, so that ordinary runs
        are fitted by least squares and only outliers are down-weighted (Chinchilla's 1e-3 acts
        like least absolute deviations: less accurate on 1%-noise sweeps, see the benchmark).
    bootstrap : resamples behind every interval (0: point estimates only); ``ci`` their level.
    fix_E : hold the irreducible loss at this value instead of fitting it.
    flops_convention : C of a run, ``"flops"`` (measured) or ``"6nd"`` (``6 * N * D``).
    params_convention : N of a run, ``"total"`` or ``"non_embedding"``.
    holdout : None or ``"largest"`` (refit without the largest budget and compare).
    table_budgets : budgets of the printed table (None: the sweep's own and two decades beyond).
    approach1 : also fit the envelope of the training curves when ``metrics.jsonl`` exist.
    """

    predict_with: str = "joint"
    loss: str = "huber"
    huber_delta: float = 1e-2
    bootstrap: int = 200
    ci: float = 0.95
    seed: int = 0
    fix_E: float | None = None
    flops_convention: str = "flops"
    params_convention: str = "total"
    holdout: str | None = None
    table_budgets: list[float] | None = None
    approach1: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.predict_with, str) or not self.predict_with:
            raise FlopsFitError(f"analysis.predict_with={self.predict_with!r} is not valid; "
                                "name an approach such as isoflop.")

        def bad(key: str, value: Any, allowed: str) -> FlopsFitError:
            return FlopsFitError(
                f"analysis.{key}={value!r} is not valid; use {allowed}."
            )

        choices = {
            "loss": ("huber", "lsq"),
            "flops_convention": ("flops", "6nd"),
            "params_convention": ("total", "non_embedding"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise bad(key, getattr(self, key), " or ".join(allowed))
        if self.holdout not in (None, "largest"):
            raise bad("holdout", self.holdout, "null or largest")
        self.huber_delta = checked_number(self.huber_delta, "huber_delta", positive=True)
        self.ci = checked_number(self.ci, "ci", positive=True)
        if not self.ci < 1:
            raise bad("ci", self.ci, "a confidence level between 0 and 1, such as 0.95")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) \
                or self.bootstrap < 0:
            raise bad("bootstrap", self.bootstrap, "a whole number of resamples >= 0")
        if self.bootstrap > MAX_BOOTSTRAP:
            raise bad("bootstrap", self.bootstrap, f"at most {MAX_BOOTSTRAP} resamples, e.g. 200")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise bad("seed", self.seed, "a whole number")
        if self.fix_E is not None:
            self.fix_E = checked_number(self.fix_E, "fix_E", positive=True)
        if not isinstance(self.approach1, bool):
            raise bad("approach1", self.approach1, "true or false")
        if self.table_budgets is not None:
            self.table_budgets = checked_budgets(self.table_budgets, "analysis.table_budgets")


@dataclass
class TuneConfig:
    """``conf/tune/*.yaml``: ``flops-fit tune``, the peak-LR search per model size (tune.py).

    ``sizes`` model sizes spanning the plan (smallest .. largest) each train ``grid_points``
    peak LRs ``grid_factor`` apart, centred on the configured rule, at their run length in
    ``budget`` (None: the plan's middle budget, lowered until the whole search fits
    ``max_fraction``; at least ``budgets.min_steps`` steps); the grid grows by one
    point at a time (at most ``max_extensions`` per size) while the best LR is at an edge.
    ``params`` may add ``batch_size`` (batches x1/2, x1, x2 at each size's best LR).
    ``max_fraction`` caps the tuning compute as a share of the sweep's. ``first``: find-optimal
    runs tune before the sweep (``tune=true`` on the command line).
    """

    params: list[str] = field(default_factory=lambda: ["lr"])
    sizes: int = 3
    budget: float | None = None
    grid_points: int = 5
    grid_factor: float = 2.0
    max_extensions: int = 3
    max_fraction: float = 0.4
    first: bool = False

    def check(self) -> None:
        """One sentence for each impossible setting."""
        bad = sorted(set(self.params) - {"lr", "batch_size"})
        need(not bad and "lr" in self.params, f"tune.params={self.params} is not valid; use "
              "[lr] or [lr,batch_size].")
        need(self.sizes >= 2, f"tune.sizes={self.sizes} must be at least 2 to fit lr(N).")
        need(self.sizes <= MAX_TUNE_SIZES, f"tune.sizes={self.sizes} is more than "
             f"{MAX_TUNE_SIZES}; tune at most {MAX_TUNE_SIZES} model sizes.")
        need(self.grid_points >= 3, f"tune.grid_points={self.grid_points} must be at least 3 "
              "to fit a parabola in log LR.")
        need(self.grid_points <= MAX_GRID_POINTS, f"tune.grid_points={self.grid_points} is "
             f"more than {MAX_GRID_POINTS}; use at most {MAX_GRID_POINTS} LRs per size, e.g. 5.")
        need(math.isfinite(self.grid_factor) and self.grid_factor > 1,
              f"tune.grid_factor={self.grid_factor} must be greater than 1, e.g. 2.")
        need(self.max_extensions >= 0,
              f"tune.max_extensions={self.max_extensions} must be a whole number >= 0.")
        need(self.max_extensions <= MAX_EXTENSIONS, f"tune.max_extensions="
             f"{self.max_extensions} is more than {MAX_EXTENSIONS}; use at most {MAX_EXTENSIONS}.")
        need(math.isfinite(self.max_fraction) and self.max_fraction > 0,
              f"tune.max_fraction={self.max_fraction} must be a positive share, e.g. 0.4.")
        need(self.budget is None or (math.isfinite(self.budget) and self.budget > 0),
              f"tune.budget={self.budget} must be a positive number of FLOPs (or null).")


def checked_number(value: Any, key: str, positive: bool = False) -> float:
    """``analysis.<key>`` as a float; one sentence when it is not a (positive) number."""
    try:
        if isinstance(value, bool):
            raise TypeError
        out = float(value)
    except (TypeError, ValueError):
        raise FlopsFitError(f"analysis.{key}={value!r} is not a number; give a number.") from None
    if not math.isfinite(out) or (positive and out <= 0):
        raise FlopsFitError(f"analysis.{key}={value!r} must be a finite positive number.")
    return out


def checked_budgets(values: Any, what: str) -> list[float]:
    """A list of positive finite FLOP budgets (a single number is a list of one)."""
    if isinstance(values, (int, float, str)) and not isinstance(values, bool):
        values = [values]
    out = []
    try:
        for v in values:
            if isinstance(v, bool):
                raise TypeError
            out.append(float(v))
    except (TypeError, ValueError):
        raise FlopsFitError(
            f"{what}={values!r} is not a list of FLOP budgets; give numbers such as [1e18, 1e19]."
        ) from None
    if not out or not all(math.isfinite(v) and v > 0 for v in out):
        raise FlopsFitError(
            f"{what}={values!r} must hold positive finite FLOP budgets, such as [1e18, 1e19]."
        )
    return out


