"""Sequential planning (``budgets.sequential``): budgets train in rounds, smallest first, and
each round's sizes are centred on the optimum trend the rounds before it measured.

Why: the planner centres every budget on a prior (D/N = ``budgets.tokens_per_param``, the
default GPT's). On a model whose optimum lies elsewhere (a GPT sized by depth, a GRU) the prior
puts every budget's sizes to one side of its minimum, and all the compute of the sweep says
little. Measuring first costs nothing extra when the prior was right:

* **Rounds** (:func:`rounds`): the smallest budget alone; then each round takes the budgets up
  to ``ROUND_FACTOR`` x the largest budget trained so far (the default's 9 budgets over 16x
  train in 3 rounds: 1, 4 and 4 budgets), so the trend is never extrapolated further than 4x.
* **Bracketing**: the first round's budget is extended as ``budgets.adaptive`` does
  (:mod:`flops_fit.planning.adaptive`): a size beyond an edge minimum, at most
  ``budgets.max_added`` per budget (every round's, with ``budgets.adaptive=true``).
* **Seeded by tune**: when ``tuning.json`` holds this model's grids, each size's best loss
  there is a point of the tune budget's IsoFLOP curve (:func:`tuned_optimum`), and the
  budgets are centred on it before the first round.
* **The trend** (:func:`fit_trend`): the interior IsoFLOP minima of the finished budgets,
  ``log N* = b + a log C``, with ``a`` pulled towards the prior's exponent (0.5, or
  ``budgets.exponent``): one budget fixes the level, several the slope as far as they can.
* **Re-centring** (:func:`propose`): the budgets not started yet are planned again around the
  trend when it moves one of their centres by more than ``RECENTRE_FRACTION`` of the
  half-span (in log N); below that the plan stays as it is (a right prior costs nothing, and
  the trunks of ``train.reuse`` are shared as planned). The new runs replace the old in
  plan.json with a ``recentred`` entry per budget (:func:`~flops_fit.planning.plans.recentre_runs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flops_fit.fitting import isoflop_optima
from flops_fit.planning.adaptive import budget_optimum, finished, fit_side
from flops_fit.planning.planner import SweepPlan, prior_optima
from flops_fit.rundir.records import TuningRecord

#: a round takes the budgets up to this factor above the largest one trained so far
ROUND_FACTOR = 4.0
#: re-centre when the trend moves a budget's centre by more than this fraction of log(span)
#: (span 6: 1.56x); closer, the minimum lies well inside the planned sizes anyway
RECENTRE_FRACTION = 0.25
#: scatter of one budget's IsoFLOP minimum in log N (about 20%) and the prior's sd of the
#: exponent: with the default's 5 budgets over 4x, the data and the prior weigh about equally
POINT_SD = 0.2
EXPONENT_SD = 0.15
#: the exponent a D/N-ratio prior implies (N* ∝ C^0.5)
PRIOR_EXPONENT = 0.5


def rounds(budgets: list[float]) -> list[list[float]]:
    """The budgets in training rounds: the smallest alone, then up to ``ROUND_FACTOR`` x the
    largest of the rounds before."""
    left = sorted(budgets)
    out: list[list[float]] = []
    while left:
        top = left[0] if not out else max(out[-1]) * ROUND_FACTOR
        group = [c for c in left if c <= top * (1 + 1e-9)] or left[:1]
        out.append(group)
        left = left[len(group):]
    return out


def measured_optima(plan: SweepPlan, records: dict[str, dict[str, Any]]
                    ) -> tuple[dict[float, float], dict[float, tuple[float, str]]]:
    """``(optima, edges)``: budget -> N* at its IsoFLOP parabola's vertex for the finished
    budgets whose minimum is interior, and budget -> ``(N of the edge size, "below" or
    "above")`` for those whose minimum stayed at an edge (N* lies beyond it: a bound)."""
    optima: dict[float, float] = {}
    edges: dict[float, tuple[float, str]] = {}
    for c in finished(plan, records):
        fit = budget_optimum([r for r in plan.runs if r.compute_budget == c], records)
        if fit is None:
            continue
        opt, n, _ = fit
        if opt.interior and math.isfinite(opt.optimal_params) and opt.optimal_params > 0:
            optima[c] = float(opt.optimal_params)
        else:
            side = fit_side(*fit)
            if side is not None:
                edges[c] = (float(n.min() if side == "below" else n.max()), side)
    return optima, edges


@dataclass(frozen=True)
class Trend:
    """``N*(C) = exp(level + exponent * (log C - log_c0))``, from ``points`` budgets."""

    exponent: float
    level: float
    log_c0: float
    points: int
    edges: bool = False  # fitted to edge sizes (bounds), no interior minimum yet

    def n_star(self, budget: float) -> float:
        return math.exp(self.level + self.exponent * (math.log(budget) - self.log_c0))

    def describe(self) -> str:
        return (f"N* = {self.n_star(math.exp(self.log_c0)):,.0f} x (C / "
                f"{math.exp(self.log_c0):.3g})^{self.exponent:.2f} from {self.points} "
                f"budget{'s' * (self.points != 1)}"
                + (" (their edge sizes: the minimum lies beyond)" if self.edges else ""))


def fit_trend(optima: dict[float, float], prior_exponent: float = PRIOR_EXPONENT) -> Trend:
    """The ridge fit of ``log N* = level + a (log C - mean log C)`` to ``optima``: the level
    is the mean, ``a`` the least-squares slope pulled towards ``prior_exponent``
    (``POINT_SD``, ``EXPONENT_SD``)."""
    if not optima:
        raise ValueError("no measured optimum to fit a trend to")
    x = np.log(np.array(sorted(optima), dtype=float))
    y = np.log(np.array([optima[c] for c in sorted(optima)], dtype=float))
    x0 = float(x.mean())
    sxx, sxy = float(((x - x0) ** 2).sum()), float(((x - x0) * (y - y.mean())).sum())
    a = (sxy / POINT_SD**2 + prior_exponent / EXPONENT_SD**2) \
        / (sxx / POINT_SD**2 + 1.0 / EXPONENT_SD**2)
    return Trend(float(a), float(y.mean()), x0, len(optima))


@dataclass
class Recentring:
    """What one look at the finished budgets proposes: new centres for the budgets not
    started, with one line saying why (or why not)."""

    centres: dict[float, float] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    line: str = ""


def tuned_optimum(record: TuningRecord | None, plan: SweepPlan) -> dict[float, float]:
    """``{budget: N*}`` from ``flops-fit tune``'s grids when they are this plan's model and
    show an interior minimum: tune trains its sizes at one budget, so each size's best loss
    over its LR grid is a point of that budget's IsoFLOP curve (empty otherwise)."""
    if record is None or record.model != plan.model.get("_target_") \
            or record.size_param != plan.model.get("size_param"):
        return {}
    best = [(t.num_params, min(x for x in t.losses if x is not None)) for t in record.sizes
            if any(x is not None and math.isfinite(x) for x in t.losses)]
    if len({n for n, _ in best}) < 3:
        return {}
    n = np.array([b[0] for b in best], dtype=float)
    c = np.full(n.size, record.budget)
    (opt,), _ = isoflop_optima(c, n, c / (6.0 * n), np.array([b[1] for b in best]), c)
    if not (opt.interior and math.isfinite(opt.optimal_params) and opt.optimal_params > 0):
        return {}
    return {float(record.budget): float(opt.optimal_params)}


def current_centre(plan: SweepPlan, budget: float) -> float:
    """Where ``budget``'s sizes are centred now: its latest re-centring, else the prior."""
    placed = plan.centre(budget)
    if placed is not None:
        return placed
    st = plan.settings
    budgets = sorted(float(c) for c in st.get("compute_budgets") or plan.compute_budgets)
    prior = prior_optima(budgets, float(st.get("tokens_per_param", 20.0)), st.get("exponent"))
    return dict(zip(budgets, prior, strict=True)).get(budget, prior[-1])


def propose(plan: SweepPlan, records: dict[str, dict[str, Any]], pending: list[float],
            span: float, seed: dict[float, float] | None = None) -> Recentring:
    """New centres for the ``pending`` budgets (not started) from the finished budgets' trend
    (``seed``: optima measured elsewhere, e.g. :func:`tuned_optimum`, that the sweep's own
    replace); empty when there is no interior minimum yet or every centre is close enough."""
    out = Recentring()
    optima, edges = measured_optima(plan, records)
    optima = {**(seed or {}), **optima}
    if not pending:
        return out
    if not optima and not edges:
        out.line = ("no finished budget has an interior minimum yet, so the next budgets stay "
                    "centred on the prior (budgets.tokens_per_param).")
        return out
    exponent = plan.settings.get("exponent")
    # no interior minimum yet: the edge sizes (N* lies beyond them) are the nearest guess
    sides = {side for _, side in edges.values()}
    if not optima and len(sides) > 1:
        out.line = ("the finished budgets' minima lie at both edges, so the next budgets stay "
                    "centred on the prior.")
        return out
    trend = fit_trend(optima or {c: n for c, (n, _) in edges.items()},
                      float(exponent) if exponent else PRIOR_EXPONENT)
    centres = {c: trend.n_star(c) for c in pending}
    if not optima:  # a bound moves the centres towards it, never away
        trend = Trend(trend.exponent, trend.level, trend.log_c0, trend.points, edges=True)
        pick = min if sides == {"below"} else max
        centres = {c: pick(n, current_centre(plan, c)) for c, n in centres.items()}
    shifts = {c: math.log(centres[c] / current_centre(plan, c)) for c in pending}
    worst = max(shifts.values(), key=abs)
    if abs(worst) <= RECENTRE_FRACTION * math.log(span):
        out.line = (f"optimum trend {trend.describe()}: the next budgets' sizes are centred "
                    f"within {math.exp(abs(worst)):.2f}x of it; kept as planned.")
        return out
    out.centres = centres
    basis = f"optimum trend {trend.describe()}"
    out.entries = [{"budget": c, "n_star": n, "basis": basis} for c, n in out.centres.items()]
    out.line = (f"{basis}: the prior was {math.exp(abs(worst)):.2f}x "
                f"{'low' if worst > 0 else 'high'}; re-centring the sizes of "
                f"{len(pending)} budget(s) from {min(pending):.3g} on it.")
    return out
