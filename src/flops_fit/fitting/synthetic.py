"""Synthetic IsoFLOP sweeps drawn from known Chinchilla laws, to score estimators and intervals.

A :class:`Design` is what a planner decides before it sees data: the budgets, the sizes per
budget and their span, centred on a *prior* tokens-per-parameter (``N_centre = sqrt(C / (6
tpp))``, sizes log-spaced over ``span``: 4.0 is a 4x range around the centre). A
:class:`ChinchillaLaw` ``L = E + A/N**alpha + B/D**beta`` with ``D = C / (6 N)`` is the truth the
design does not know. :func:`simulate_sweep` adds multiplicative log-normal noise (``noise`` is
the sd of log loss, 0.01 = 1%, about one CPU run's seed-to-seed scatter).

:func:`draw_law` draws laws in the range of real tiny-model fits (byte-level GPTs on CPU at
1e11..1e13 FLOPs; DESIGN.md, README):

* ``E`` uniform in [0.6, 2.0] nats;
* ``alpha``, ``beta`` uniform in [0.25, 0.6];
* ``A``, ``B`` such that at the design's middle budget the true optimum has tokens/parameter
  log-uniform in [30, 300] (the planner's prior is 100, so the optimum is off-centre by up to
  ``sqrt(3.3)`` in N) and a reducible loss ``L* - E`` log-uniform in [0.4, 1.5] nats.

Everything is deterministic given the seed. :func:`forecast_precision` runs the joint fit on
simulated sweeps of a design to forecast the width of its intervals (for a planner).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: FLOPs per parameter-token of the synthetic runs (the 6ND convention)
FLOPS_PER_PARAM_TOKEN = 6.0


@dataclass(frozen=True)
class Design:
    """An IsoFLOP sweep design: ``sizes_per_budget`` sizes per budget over a ``span``-fold range
    of N, centred at ``sqrt(C / (6 tokens_per_param))``. Budgets in FLOPs."""

    budgets: tuple[float, ...]
    sizes_per_budget: int = 4
    span: float = 4.0
    tokens_per_param: float = 100.0
    name: str = ""
    #: the exact parameter counts of each budget (a real plan's), instead of the rule above
    planned: tuple[tuple[float, ...], ...] | None = None

    def sizes(self, C: float) -> np.ndarray:
        """The parameter counts planned at budget C."""
        if self.planned is not None:
            return np.asarray(self.planned[self.budgets.index(C)], dtype=float)
        centre = math.sqrt(C / (FLOPS_PER_PARAM_TOKEN * self.tokens_per_param))
        steps = np.linspace(-0.5, 0.5, self.sizes_per_budget)
        return centre * self.span ** steps

    @property
    def middle_budget(self) -> float:
        """Geometric middle of the budgets."""
        return float(math.exp(np.mean(np.log(self.budgets))))

    @property
    def target_budget(self) -> float:
        """Ten times the largest budget: where the calibration scores extrapolation."""
        return 10.0 * max(self.budgets)


#: today's default sweep: 5 budgets 2x apart, 4 sizes each over a 4x span, prior tpp 100
DEFAULT_DESIGN = Design((2.5e11, 5e11, 1e12, 2e12, 4e12), 4, 4.0, 100.0, "default")
#: a dense sweep: 11 budgets sqrt(2) apart over 32x (2.5e11..8e12), 6 sizes each over 4x
DENSE_DESIGN = Design(tuple(2.5e11 * 2.0 ** (i / 2) for i in range(11)), 6, 4.0, 100.0, "dense")
DESIGNS = {"default": DEFAULT_DESIGN, "dense": DENSE_DESIGN}


@dataclass(frozen=True)
class ChinchillaLaw:
    """``L(N, D) = E + A / N**alpha + B / D**beta`` (nats/token) with ``C = 6 N D``."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, n: float | np.ndarray, d: float | np.ndarray) -> float | np.ndarray:
        n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        return self.E + self.A * n ** (-self.alpha) + self.B * d ** (-self.beta)

    @property
    def a(self) -> float:
        """Exponent of N_opt in C: ``beta / (alpha + beta)``."""
        return self.beta / (self.alpha + self.beta)

    def n_opt(self, C: float | np.ndarray) -> float | np.ndarray:
        """True compute-optimal N at compute C (closed form)."""
        s = self.alpha + self.beta
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / s)
        return G * (np.asarray(C, dtype=float) / FLOPS_PER_PARAM_TOKEN) ** (self.beta / s)

    def d_opt(self, C: float | np.ndarray) -> float | np.ndarray:
        return np.asarray(C, dtype=float) / (FLOPS_PER_PARAM_TOKEN * self.n_opt(C))

    def loss_opt(self, C: float | np.ndarray) -> float | np.ndarray:
        """True loss frontier ``L(N_opt(C), D_opt(C))``."""
        return self.loss(self.n_opt(C), self.d_opt(C))


def law_from_optimum(E: float, alpha: float, beta: float, C: float, tokens_per_param: float,
                     reducible: float) -> ChinchillaLaw:
    """The Chinchilla law whose optimum at compute C has the given tokens/parameter and
    reducible loss ``L* - E`` (nats).

    At the optimum ``alpha A N*^-alpha = beta B D*^-beta = S`` and ``L* - E = S (1/alpha +
    1/beta)``; this solves for ``S``, then ``A`` and ``B``.
    """
    n_star = math.sqrt(C / (FLOPS_PER_PARAM_TOKEN * tokens_per_param))
    d_star = C / (FLOPS_PER_PARAM_TOKEN * n_star)
    S = reducible / (1.0 / alpha + 1.0 / beta)
    return ChinchillaLaw(E, S * n_star ** alpha / alpha, S * d_star ** beta / beta, alpha, beta)


def draw_law(
    seed: int | np.random.Generator | None,
    design: Design = DEFAULT_DESIGN,
    *,
    E_range: tuple[float, float] = (0.6, 2.0),
    exponent_range: tuple[float, float] = (0.25, 0.6),
    tokens_per_param_range: tuple[float, float] = (30.0, 300.0),
    reducible_range: tuple[float, float] = (0.4, 1.5),
) -> ChinchillaLaw:
    """A random law in the ranges of real tiny-model fits (module docstring), deterministic."""
    rng = np.random.default_rng(seed)
    E = rng.uniform(*E_range)
    alpha, beta = rng.uniform(*exponent_range, size=2)
    tpp = math.exp(rng.uniform(*np.log(tokens_per_param_range)))
    red = math.exp(rng.uniform(*np.log(reducible_range)))
    return law_from_optimum(E, float(alpha), float(beta), design.middle_budget, tpp, red)


@dataclass
class Sweep:
    """One simulated sweep: arrays ``(m,)`` of planned budget, N, D, loss and spent C."""

    budget: np.ndarray
    n: np.ndarray
    d: np.ndarray
    loss: np.ndarray
    c: np.ndarray
    law: ChinchillaLaw
    design: Design
    noise: float
    seed: int | None = None
    meta: dict = field(default_factory=dict)

    def truth(self, C: float) -> dict[str, float]:
        """True ``a``, ``n_opt``, ``d_opt``, ``loss_opt`` at compute C."""
        return {"a": self.law.a, "n_opt": float(self.law.n_opt(C)),
                "d_opt": float(self.law.d_opt(C)), "loss_opt": float(self.law.loss_opt(C))}


def simulate_sweep(design: Design, law: ChinchillaLaw, noise: float,
                   seed: int | np.random.Generator | None = 0) -> Sweep:
    """The runs of ``design`` under ``law`` with log-normal noise of sd ``noise`` on the loss.

    Every run spends exactly its budget: ``D = C / (6 N)``, ``c = C``.
    """
    rng = np.random.default_rng(seed)
    sizes = [design.sizes(C) for C in design.budgets]
    budget = np.concatenate([np.full(len(s), C) for C, s in zip(design.budgets, sizes,
                                                                   strict=True)])
    n = np.concatenate(sizes)
    d = budget / (FLOPS_PER_PARAM_TOKEN * n)
    clean = np.asarray(law.loss(n, d))
    loss = clean * np.exp(noise * rng.standard_normal(clean.size))
    return Sweep(budget, n, d, loss, budget.copy(), law, design, noise,
                 seed if isinstance(seed, int) else None)


def random_sweep(design: Design, noise: float, seed: int) -> Sweep:
    """A sweep of a law drawn with :func:`draw_law` (both from ``seed``)."""
    rng = np.random.default_rng(seed)
    law = draw_law(rng, design)
    sweep = simulate_sweep(design, law, noise, rng)
    sweep.seed = seed
    return sweep


# --------------------------------------------------------------------------------------------
# precision forecast
# --------------------------------------------------------------------------------------------


@dataclass
class PrecisionForecast:
    """Median expected 95% interval widths of the joint fit at ``target_compute`` (FLOPs).

    ``n_opt_width`` is ``hi / lo`` of N_opt, ``loss_width`` ``(hi - lo) / L_opt``, ``a_width``
    ``hi - lo`` of the exponent; ``n_imprecise`` sweeps gave no interval (counted as infinitely
    wide in the medians).
    """

    target_compute: float
    n_opt_width: float
    loss_width: float
    a_width: float
    n_sims: int
    n_imprecise: int


def forecast_precision(
    design: Design,
    noise: float,
    law: ChinchillaLaw | None = None,
    *,
    target_compute: float | None = None,
    n_sims: int = 20,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> PrecisionForecast:
    """Forecast the joint fit's 95% interval widths for a design before training it.

    Simulates ``n_sims`` sweeps of ``design`` with noise sd ``noise`` (log loss) from ``law``
    (or, when None, from laws drawn by :func:`draw_law`), fits each jointly with a
    ``n_bootstrap``-resample bootstrap and returns the median widths at ``target_compute``
    (default: 10x the largest budget). About 0.3 s per simulation at the defaults.
    """
    from flops_fit.fitting.joint import fit_joint

    C = design.target_budget if target_compute is None else float(target_compute)
    wn, wl, wa = [], [], []
    bad = 0
    for i in range(n_sims):
        sw = (simulate_sweep(design, law, noise, seed + i) if law is not None
              else random_sweep(design, noise, seed + i))
        fit = fit_joint(sw.budget, sw.n, sw.d, sw.loss, sw.c, n_bootstrap=n_bootstrap, seed=i)
        if not fit.available or not fit.precise:
            bad += 1
            wn.append(math.inf), wl.append(math.inf), wa.append(math.inf)
            continue
        nlo, nhi = fit.interval("n_opt", C)
        llo, lhi = fit.interval("loss_opt", C)
        alo, ahi = fit.interval("a")
        wn.append(nhi / nlo)
        wl.append((lhi - llo) / fit.loss_opt(C))
        wa.append(ahi - alo)
    return PrecisionForecast(C, _median(wn), _median(wl), _median(wa), n_sims, bad)


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def design_from(budgets: Sequence[float], sizes_per_budget: int = 4, span: float = 4.0,
                tokens_per_param: float = 100.0) -> Design:
    """A :class:`Design` from plain values (budgets in FLOPs)."""
    return Design(tuple(float(b) for b in budgets), int(sizes_per_budget), float(span),
                  float(tokens_per_param))


def design_of_runs(budgets: Sequence[float], params: Sequence[float]) -> Design:
    """The :class:`Design` of a real plan: one entry per run, its budget (FLOPs) and N."""
    by: dict[float, list[float]] = {}
    for c, n in zip(budgets, params, strict=True):
        by.setdefault(float(c), []).append(float(n))
    keys = tuple(sorted(by))
    return Design(keys, max(len(v) for v in by.values()), name="plan",
                  planned=tuple(tuple(sorted(by[k])) for k in keys))
