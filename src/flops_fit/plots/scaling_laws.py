"""N_opt, D_opt and L_opt against compute: the optima, the fitted laws with their bands, the
held-out validation run and the prediction.

Every approach of :data:`~flops_fit.analysis.approaches.APPROACHES` the analysis has a fit of
is drawn from its own law evaluation (:meth:`~flops_fit.plots.curves.Laws.curves`), in its
style (:func:`~flops_fit.plots.style.approach_style`): a new approach needs no edit here.
Bands are the bootstrap's percentiles; an approach fitted without a bootstrap has none, and
its legend entry says so.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flops_fit.analysis.laws import Prediction
from flops_fit.plots.curves import ApproachCurve, interval, num
from flops_fit.plots.data import PlotData
from flops_fit.plots.style import (
    A1_COLOR,
    PRED_COLOR,
    VAL_COLOR,
    ApproachStyle,
    approach_styles,
    clip_ylim,
    fmt_sci,
    new_figure,
    yerr_of,
)

#: per panel: the prediction's key and the y label
PANELS = (
    ("optimal_params", "compute-optimal model size $N_{opt}$ (parameters)"),
    ("optimal_tokens", "compute-optimal data $D_{opt}$ (tokens)"),
    ("expected_loss", "loss at the optimum $L_{opt}$ (nats/token)"),
)


def draw(data: PlotData, predict: float | None = None) -> Figure | None:
    """The three panels, extended to ``predict`` (default: ``data.predict_budget``)."""
    predict = predict or data.predict_budget
    laws = data.laws
    optima = [o for o in data.optima if o.n > 0]
    interior = [o for o in optima if o.interior]
    cs = [o.c for o in optima] or [r.c for r in data.runs]
    val = data.validation
    if not cs:
        data.notes.append("scaling_laws: skipped, neither IsoFLOP optima nor runs to draw")
        return None
    c_hi = max(max(cs) * 2, (predict or 0) * 1.5, (val.compute_budget if val else 0) * 1.5)
    grid = np.geomspace(min(cs) / 2, c_hi, 200)
    curves = laws.curves(grid)
    if not optima and not curves:
        data.notes.append("scaling_laws: skipped, neither IsoFLOP optima nor a fitted law "
                          "to draw")
        return None
    look = approach_styles((c.name, c.title) for c in curves)
    fig = new_figure("scaling_laws", (14.5, 4.9))
    axes = fig.subplots(1, 3)
    degenerate = laws.degenerate_note()
    pred = data.prediction(predict) if predict else None
    pct = f"{laws.ci_level:.0%}"
    a1 = laws.approach1_law()
    for j, (pred_key, ylabel) in enumerate(PANELS):
        ax = axes[j]
        ax.set_xscale("log")
        if j < 2:
            ax.set_yscale("log")
        core = [o.value(j) for o in optima]
        for ac in curves:
            core += _draw_curve(ax, ac, j, grid, look[ac.name], pct)
        if j == 0 and a1 is not None:
            k1, e1 = a1
            ax.plot(grid, k1 * grid ** e1, "-.", color=A1_COLOR, lw=1.3,
                    label=f"Approach 1 (curve envelope): $\\propto C^{{{e1:.3f}}}$")
        for o in optima:
            yv = o.value(j)
            if not yv > 0:
                continue
            kw = dict(color="black") if o.interior else dict(mfc="white", color="grey")
            ax.errorbar([o.c], [yv], yerr=yerr_of(yv, o.ci(j)), fmt="o", ms=5, capsize=2,
                        zorder=4, **kw)
        if val:  # the held-out run of `flops-fit validate`, against the extrapolation
            yv = val.value(j)
            if yv > 0:
                ax.plot([val.compute_budget], [yv], "D", color=VAL_COLOR, mec="black", ms=8,
                        zorder=7, label="held-out validation run")
                core.append(yv)
        if predict:
            core.append(_mark_prediction(ax, predict, pred, pred_key))
        clip_ylim(ax, core, log=j < 2)
        ci = interval(pred, pred_key) if pred else None
        if ci and (ci[0] < ax.get_ylim()[0] or ci[1] > ax.get_ylim()[1]):
            ax.text(0.98, 0.02, "the prediction's interval runs off the plot",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                    color=PRED_COLOR)
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel(ylabel)
        if j == 2:
            ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.2f"))
        _legend(ax, j, bool(interior), any(not o.interior for o in optima))
    title = "Compute-optimal scaling"
    if predict:
        how = f" ({pred['method']} fit)" if pred and pred.get("method") else ""
        title += f", extended to the prediction{how} at C = {fmt_sci(predict)} FLOPs"
    if degenerate:
        title += f"\nApproach 3 {degenerate}"
    fig.suptitle(title)
    return fig


def _draw_curve(ax, ac: ApproachCurve, j: int, grid: np.ndarray, st: ApproachStyle,
                pct: str) -> list[float]:
    """Law ``j`` of one approach with its band; the values drawn (none where undefined)."""
    y = ac.values(j)
    if not (np.all(np.isfinite(y)) and np.all(y > 0)):
        return []
    sym = ("N", "D", "L")[j]
    expo = ac.exponents[j]
    label = st.label + (f": ${sym}_{{opt}} \\propto C^{{{expo:.3f}}}$" if math.isfinite(expo)
                        else "")
    degenerate = ac.curve.degenerate
    if degenerate:
        label += " (degenerate)"
    elif not ac.has_bootstrap:
        label += " (no bootstrap: no band)"
    ax.plot(grid, y, linestyle=st.ls if not degenerate else ":", color=st.color, lw=st.lw,
            label=label)
    band = ac.band(j)
    if band is not None and not degenerate:
        ax.fill_between(grid, band[0], band[1], color=st.color, alpha=st.band_alpha, lw=0,
                        label=f"{pct} band, {st.label}")
    return list(y)


def _legend(ax, j: int, any_interior: bool, any_edge: bool) -> None:
    handles, _ = ax.get_legend_handles_labels()
    extra = [Line2D([], [], ls="", marker="o", color="black", ms=5,
                    label="IsoFLOP optimum")] if any_interior else []
    if any_edge:
        extra.append(Line2D([], [], ls="", marker="o", mfc="white", color="grey", ms=5,
                            label="not interior (excluded)"))
    ax.legend(handles=handles + extra, loc="upper left" if j < 2 else "upper right",
              framealpha=0.9, fontsize=7.5)


def _mark_prediction(ax, c: float, pred: Prediction | None, key: str) -> float:
    """A star at the predicted value (the analysis's method) with its interval."""
    ax.axvline(c, color=PRED_COLOR, lw=0.8, ls=":", alpha=0.8)
    if pred is None:
        return math.nan
    y, ci = num(pred.get(key)), interval(pred, key)
    if not (math.isfinite(y) and y > 0):
        return math.nan
    ax.errorbar([c], [y], yerr=yerr_of(y, ci), fmt="*", ms=14, color=PRED_COLOR, mec="black",
                mew=0.6, ecolor="black", elinewidth=1.1, capsize=4, zorder=6,
                label="prediction")
    text = f"{y:.3f}" if key == "expected_loss" else fmt_sci(y, 3)
    ax.annotate(text, (c, y), xytext=(-10, 8), textcoords="offset points", ha="right",
                va="bottom", fontsize=8.5, color=PRED_COLOR,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    return y
