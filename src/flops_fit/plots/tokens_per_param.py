"""Tokens per parameter D/N of every run and of the compute-optimal allocation, against C.

The compute-optimal ratio of every approach of the registry the analysis has a fit of is its
own law evaluation (:meth:`~flops_fit.plots.curves.Laws.curves`), drawn in its style.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from flops_fit.plots.curves import interval, num
from flops_fit.plots.data import PlotData, Run
from flops_fit.plots.style import (
    A2_COLOR,
    LOSS_LABEL,
    PRED_COLOR,
    approach_styles,
    clip_ylim,
    fmt_sci,
    new_figure,
    yerr_of,
)


def draw(data: PlotData) -> Figure | None:
    """D/N of every run and of the compute-optimal allocation vs C."""
    runs = data.runs
    laws = data.laws
    predict = data.predict_budget
    optima = [o for o in data.optima if o.n > 0 and o.d > 0]
    if not runs and not optima:
        data.notes.append("tokens_per_param: skipped, no completed runs")
        return None
    fig = new_figure("tokens_per_param", (8.0, 5.2))
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    if runs:
        _scatter_runs(fig, ax, runs)
    cs = [o.c for o in optima] or [r.c for r in runs]
    c_hi = max(max(cs) * 2, (predict or 0) * 1.5)
    grid = np.geomspace(min(cs) / 2, c_hi, 200)
    curves = laws.curves(grid)
    look = approach_styles((c.name, c.title) for c in curves)
    for ac in curves:
        ratio = ac.curve.tokens_per_param
        if not (np.all(np.isfinite(ratio)) and np.all(ratio > 0)):
            continue
        st = look[ac.name]
        degenerate = ac.curve.degenerate
        ax.plot(grid, ratio, linestyle=st.ls if not degenerate else ":", color=st.color, lw=st.lw,
                label=f"{st.label}: $D_{{opt}}/N_{{opt}}$"
                      + (" (degenerate)" if degenerate else ""))
    pred = data.prediction(predict) if predict else None
    pred_ratio = num(pred.get("tokens_per_param")) if pred is not None else math.nan
    for o in optima:
        kw = dict(color=A2_COLOR) if o.interior else dict(mfc="white", color="grey")
        ax.plot([o.c], [o.d / o.n], "o", ms=7, mec="black", zorder=4, **kw)
    if optima:
        ax.plot([], [], "o", color=A2_COLOR, mec="black", ms=7, label="IsoFLOP optimum")
    ax.axhline(20, color="grey", ls=":", lw=1.2, label="Chinchilla's 20 tokens/parameter")
    core = [r.d / r.n for r in runs] + [o.d / o.n for o in optima] + [20.0]
    ci = interval(pred, "tokens_per_param") if pred is not None else None
    if predict and pred_ratio > 0:
        ax.errorbar([predict], [pred_ratio], yerr=yerr_of(pred_ratio, ci), fmt="*", ms=15,
                    color=PRED_COLOR, mec="black", mew=0.6, ecolor="black", capsize=4,
                    zorder=5, label=f"prediction at {fmt_sci(predict)}: "
                                    f"{fmt_sci(pred_ratio, 3)} tokens/parameter")
    ax.set_xlabel("compute C (FLOPs)")
    clip_ylim(ax, core + [pred_ratio], log=True)
    ax.set_ylabel("tokens per parameter D/N (tokens/parameter)")
    ax.set_title("Tokens per parameter: every run and the compute-optimal ratio")
    ax.legend(loc="best", framealpha=0.9)
    return fig


def _scatter_runs(fig: Figure, ax, runs: list[Run]) -> None:
    """The runs, coloured by their loss above the budget's best (a grid) or by loss."""
    c = np.array([r.c for r in runs])
    ratio = np.array([r.d / r.n for r in runs])
    loss = np.array([r.loss for r in runs])
    best: dict[float, float] = {}
    sizes: dict[float, set[float]] = {}
    for r in runs:
        best[r.budget] = min(best.get(r.budget, math.inf), r.loss)
        sizes.setdefault(r.budget, set()).add(r.n)
    if any(len(v) >= 3 for v in sizes.values()):  # a grid: distance from the best run
        excess = np.array([100 * (r.loss / best[r.budget] - 1) for r in runs])
        cmap = mcolors.ListedColormap(matplotlib.colormaps["magma"](np.linspace(0, 0.82, 256)))
        sc = ax.scatter(c, ratio, c=excess, cmap=cmap, s=24, edgecolors="none",
                        vmin=0, vmax=max(float(np.percentile(excess, 90)), 0.1), zorder=2)
        ax.scatter([], [], color="grey", s=24, label="runs (colour: loss above the budget's best)")
        fig.colorbar(sc, ax=ax, label="loss above the best run of its budget (%)", pad=0.01,
                     extend="max")
    else:
        sc = ax.scatter(c, ratio, c=loss, cmap="viridis_r", s=22, alpha=0.85, edgecolors="none",
                        zorder=2)
        ax.scatter([], [], color="grey", s=22, label="runs (colour: final loss)")
        fig.colorbar(sc, ax=ax, label=LOSS_LABEL, pad=0.01)
