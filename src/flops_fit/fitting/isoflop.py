"""Approach 2: a parabola in log N per compute budget, then power laws of the minima."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from flops_fit.fitting.common import (
    PowerLaw,
    as_positive_array,
    fit_power_law,
    nanstd,
    percentile_interval,
    serial,
)

# --------------------------------------------------------------------------------------------
# Approach 2: IsoFLOP parabolas
# --------------------------------------------------------------------------------------------


@dataclass
class BudgetOptimum:
    """One compute budget's IsoFLOP minimum.

    ``compute_budget`` is the group key (the planned C), ``compute`` the geometric mean of the
    runs' C under the chosen FLOP convention (the x of the power laws). ``interior`` is True when
    the parabola opens upwards and its vertex lies strictly inside the sampled ``log N`` range
    ``log_n_range``; only interior optima enter the power laws.
    """

    compute_budget: float
    compute: float
    n_runs: int
    n_sizes: int
    log_n_range: tuple[float, float]
    optimal_params: float
    optimal_tokens: float
    optimal_loss: float
    curvature: float
    interior: bool
    note: str = ""


def _parabola_vertex(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None):
    """Least-squares parabola ``y = c0 + c1 u + c2 u**2`` with ``u = x - mean(x)``.

    Returns ``(vertex_x, vertex_y, c2)``; vertex is NaN when ``c2 <= 0``.
    """
    xm = float(np.mean(x))
    u = x - xm
    design = np.stack([np.ones_like(u), u, u * u], axis=1)
    if w is not None:
        sw = np.sqrt(w)
        coef = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)[0]
    else:
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
    c0, c1, c2 = (float(v) for v in coef)
    if not c2 > 0:
        return math.nan, math.nan, c2
    uv = -c1 / (2.0 * c2)
    return xm + uv, c0 + c1 * uv + c2 * uv * uv, c2


def _budget_optimum(
    key: float, n: np.ndarray, d: np.ndarray, loss: np.ndarray, c: np.ndarray,
    w: np.ndarray | None = None,
) -> BudgetOptimum:
    ln, ld = np.log(n), np.log(d)
    lo, hi = float(ln.min()), float(ln.max())
    xv, yv, curv = _parabola_vertex(ln, loss, w)
    xd, _, _ = _parabola_vertex(ld, loss, w)
    interior = bool(np.isfinite(xv) and lo < xv < hi)
    note = ""
    if not np.isfinite(xv):
        note = "the losses do not curve upwards in log N, so there is no minimum"
    elif xv <= lo:
        note = "the minimum lies at or below the smallest model"
    elif xv >= hi:
        note = "the minimum lies at or above the largest model"
    c_geo = float(np.exp(np.mean(np.log(c))))
    # a vertex beyond e^700 (a flat profile) is no size at all: nan, never inf
    n_opt = float(np.exp(xv)) if np.isfinite(xv) and abs(xv) < 700 else math.nan
    d_opt = float(np.exp(xd)) if np.isfinite(xd) and abs(xd) < 700 else math.nan
    return BudgetOptimum(
        compute_budget=float(key),
        compute=c_geo,
        n_runs=int(n.size),
        n_sizes=int(np.unique(n).size),
        log_n_range=(lo, hi),
        optimal_params=n_opt,
        optimal_tokens=d_opt,
        optimal_loss=float(yv) if np.isfinite(yv) else math.nan,
        curvature=curv,
        interior=interior,
        note=note,
    )


def isoflop_optima(
    budget: np.ndarray, n: np.ndarray, d: np.ndarray, loss: np.ndarray, c: np.ndarray,
    *, min_sizes: int = 3,
) -> tuple[list[BudgetOptimum], list[float]]:
    """Per-budget IsoFLOP minima.

    Groups runs by equal ``budget`` (the planned C). Returns the optima of the budgets with at
    least ``min_sizes`` distinct N, sorted by budget, and the list of budgets skipped for having
    fewer sizes.
    """
    budget = np.asarray(budget, dtype=float)
    out: list[BudgetOptimum] = []
    skipped: list[float] = []
    for key in np.unique(budget):
        m = budget == key
        if np.unique(n[m]).size < min_sizes:
            skipped.append(float(key))
            continue
        out.append(_budget_optimum(float(key), n[m], d[m], loss[m], c[m]))
    return out, skipped


@dataclass
class IsoFlopBootstrap:
    """Bootstrap of Approach 2: ``samples[i] = (log k_N, a, log k_D, b, log k_L, c)`` per resample
    (NaN rows where fewer than two interior budgets survived)."""

    samples: np.ndarray
    n_resamples: int
    n_failed: int
    ci: float
    #: (n_resamples, n_budgets) interior optimum N / loss of each budget in each resample (NaN if
    #: that budget was not interior there), in the order of :attr:`IsoFlopFit.budgets`
    budget_params: np.ndarray | None = None
    budget_tokens: np.ndarray | None = None
    budget_loss: np.ndarray | None = None

    COLUMNS = ("log_k_n", "a", "log_k_d", "b", "log_k_loss", "c")

    def interval(self, column: str) -> tuple[float, float]:
        j = self.COLUMNS.index(column)
        lo, hi = percentile_interval(self.samples[:, j], self.ci)
        return float(lo), float(hi)

    def se(self, column: str) -> float:
        return float(nanstd(self.samples[:, self.COLUMNS.index(column)]))


@dataclass
class IsoFlopFit:
    """Result of Approach 2.

    ``budgets`` holds every budget with enough sizes (interior or not); ``n_opt``, ``d_opt`` and
    ``loss_opt`` are the power laws in C fitted to the interior ones (None when fewer than two).
    ``warnings`` are sentences for the user; ``message`` says why no law was fitted, if none was.
    """

    budgets: list[BudgetOptimum]
    skipped_budgets: list[float]
    n_opt: PowerLaw | None
    d_opt: PowerLaw | None
    loss_opt: PowerLaw | None
    warnings: list[str] = field(default_factory=list)
    message: str = ""
    bootstrap: IsoFlopBootstrap | None = None

    @property
    def available(self) -> bool:
        return self.n_opt is not None


def _laws_from_optima(opt: list[BudgetOptimum]) -> tuple[PowerLaw, PowerLaw, PowerLaw] | None:
    use = [o for o in opt if o.interior and np.isfinite(o.optimal_tokens)]
    if len({o.compute for o in use}) < 2:
        return None
    c = np.array([o.compute for o in use])
    n_law = fit_power_law(c, np.array([o.optimal_params for o in use]))
    d_law = fit_power_law(c, np.array([o.optimal_tokens for o in use]))
    losses = np.array([o.optimal_loss for o in use])
    l_law = fit_power_law(c, losses) if np.all(losses > 0) else PowerLaw(math.nan, math.nan)
    return n_law, d_law, l_law


def _fmt_c(c: float) -> str:
    return f"{c:.3g}"


@serial
def fit_isoflop(
    budget: Sequence[float] | np.ndarray,
    n: Sequence[float] | np.ndarray,
    d: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    c: Sequence[float] | np.ndarray | None = None,
    *,
    min_sizes: int = 3,
    n_bootstrap: int = 0,
    ci: float = 0.95,
    seed: int | None = 0,
) -> IsoFlopFit:
    """Chinchilla's Approach 2.

    Parameters
    ----------
    budget : (m,) planned compute budget of each run (FLOPs); runs with equal values form a group.
    n, d, loss : (m,) parameters, tokens and final loss of each run.
    c : (m,) compute actually spent (FLOPs); defaults to ``6 * n * d``.
    min_sizes : budgets with fewer distinct N are skipped (reported once in ``warnings``).
    n_bootstrap : resamples of runs within budgets for the intervals (0: none).
    """
    budget = np.asarray(budget, dtype=float).reshape(-1)
    n = as_positive_array(n, "n")
    d = as_positive_array(d, "d")
    loss = as_positive_array(loss, "loss")
    c = 6.0 * n * d if c is None else as_positive_array(c, "c")
    opt, skipped = isoflop_optima(budget, n, d, loss, c, min_sizes=min_sizes)
    notes: list[str] = []
    if not opt:
        msg = (
            f"Approach 2 has no compute budgets to group: no budget has runs of at least "
            f"{min_sizes} different sizes, so the IsoFLOP fit is skipped and the parametric fit "
            "carries on."
        )
        return IsoFlopFit([], skipped, None, None, None, [msg], msg)
    if skipped:
        notes.append(
            f"Approach 2 skips {len(skipped)} budget(s) with fewer than {min_sizes} model sizes "
            f"({', '.join(_fmt_c(s) for s in skipped[:6])}{', ...' if len(skipped) > 6 else ''})."
        )
    edge = [o for o in opt if not o.interior]
    if edge:
        notes.append(
            "Approach 2 excludes budget(s) "
            + ", ".join(f"{_fmt_c(o.compute_budget)} ({o.note})" for o in edge)
            + "; widen the sweep (more sizes on that side) so the minimum lies inside it."
        )
    laws = _laws_from_optima(opt)
    if laws is None:
        n_int = sum(o.interior for o in opt)
        msg = (
            f"Approach 2 found {n_int} budget(s) with an interior minimum but needs at least two "
            "to fit N_opt(C); add budgets or widen the sweep."
        )
        notes.append(msg)
        return IsoFlopFit(opt, skipped, None, None, None, notes, msg)
    fit = IsoFlopFit(opt, skipped, *laws, warnings=notes)
    if n_bootstrap > 0:
        fit.bootstrap = _bootstrap_isoflop(budget, n, d, loss, c, opt, n_bootstrap, ci, seed,
                                           min_sizes)
    return fit


def _bootstrap_isoflop(
    budget: np.ndarray, n: np.ndarray, d: np.ndarray, loss: np.ndarray, c: np.ndarray,
    opt: list[BudgetOptimum], n_resamples: int, ci: float, seed: int | None, min_sizes: int,
) -> IsoFlopBootstrap:
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(budget == o.compute_budget) for o in opt]
    samples = np.full((n_resamples, 6), np.nan)
    bparams = np.full((n_resamples, len(opt)), np.nan)
    btokens = np.full((n_resamples, len(opt)), np.nan)
    bloss = np.full((n_resamples, len(opt)), np.nan)
    failed = 0
    for i in range(n_resamples):
        res = []
        for j, (o, idx) in enumerate(zip(opt, groups, strict=True)):
            pick = idx[rng.integers(0, idx.size, idx.size)]
            if np.unique(n[pick]).size < min_sizes:
                continue
            r = _budget_optimum(o.compute_budget, n[pick], d[pick], loss[pick], c[pick])
            if r.interior:
                bparams[i, j], btokens[i, j] = r.optimal_params, r.optimal_tokens
                bloss[i, j] = r.optimal_loss
            res.append(r)
        laws = _laws_from_optima(res)
        if laws is None:
            failed += 1
            continue
        nl, dl, ll = laws
        samples[i] = (math.log(nl.coefficient), nl.exponent, math.log(dl.coefficient),
                      dl.exponent, math.log(ll.coefficient) if ll.coefficient > 0 else math.nan,
                      ll.exponent)
    return IsoFlopBootstrap(samples, n_resamples, failed, ci, bparams, btokens, bloss)
