"""N_opt, D_opt and L_opt against compute: the optima, the fitted laws with their bands, the
held-out validation run and the prediction."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flops_fit.plots.curves import interval, num
from flops_fit.plots.data import PlotData
from flops_fit.plots.style import (
    A1_COLOR,
    A2_COLOR,
    A3_COLOR,
    PRED_COLOR,
    VAL_COLOR,
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
    par = laws.parametric()
    if not optima and par is None:
        data.notes.append("scaling_laws: skipped, neither IsoFLOP optima nor a parametric "
                          "fit to draw")
        return None
    interior = [o for o in optima if o.interior]
    cs = [o.c for o in optima] or [r.c for r in data.runs]
    val = data.validation
    c_hi = max(max(cs) * 2, (predict or 0) * 1.5, (val.compute_budget if val else 0) * 1.5)
    grid = np.geomspace(min(cs) / 2, c_hi, 200)
    fig = new_figure("scaling_laws", (14.5, 4.9))
    axes = fig.subplots(1, 3)
    a3 = laws.parametric_curves(grid) if par is not None else None
    degenerate = laws.degenerate_note()
    pred = data.prediction(predict) if predict else None
    pct = f"{laws.ci_level:.0%}"
    a1 = laws.approach1_law()
    for j, (pred_key, ylabel) in enumerate(PANELS):
        ax = axes[j]
        ax.set_xscale("log")
        if j < 2:
            ax.set_yscale("log")
        sym = ("N", "D", "L")[j]
        pts = [(o.c, o.value(j)) for o in interior if o.value(j) > 0]
        iso = laws.isoflop_curve(j, grid, pts) if laws.isoflop_available else None
        if iso is not None:
            y, band, expo = iso
            ax.plot(grid, y, "-", color=A2_COLOR, lw=1.8,
                    label=f"Approach 2 (IsoFLOP): ${sym}_{{opt}} \\propto C^{{{expo:.3f}}}$")
            if band is not None:
                ax.fill_between(grid, band[0], band[1], color=A2_COLOR, alpha=0.15, lw=0,
                                label=f"{pct} band (Approach 2)")
        if a3 is not None:
            _approach3(ax, a3[j], laws.parametric_exponent(j), degenerate, grid, pct)
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
        core = [o.value(j) for o in optima] + (list(iso[0]) if iso is not None else [])
        if val:  # the held-out run of `flops-fit validate`, against the extrapolation
            yv = val.value(j)
            if yv > 0:
                ax.plot([val.compute_budget], [yv], "D", color=VAL_COLOR, mec="black", ms=8,
                        zorder=7, label="held-out validation run")
                core.append(yv)
        if a3 is not None:
            core += list(a3[j][0])
        if predict:
            core.append(_mark_prediction(ax, predict, pred, pred_key, iso,
                                         a3[j] if a3 else None, grid))
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


def _approach3(ax, curve, exp3: float, degenerate: str, grid: np.ndarray, pct: str) -> None:
    y3, band3 = curve
    if not (np.all(np.isfinite(y3)) and np.all(y3 > 0)):
        return
    lab = "Approach 3, L(N, D)" + (f": $\\propto C^{{{exp3:.3f}}}$" if math.isfinite(exp3)
                                   else "")
    if degenerate:
        lab += " (degenerate)"
    ax.plot(grid, y3, "--" if not degenerate else ":", color=A3_COLOR, lw=1.6, label=lab)
    if band3 is not None and not degenerate:
        ax.fill_between(grid, band3[0], band3[1], color=A3_COLOR, alpha=0.13, lw=0,
                        label=f"{pct} band (Approach 3)")


def _legend(ax, j: int, any_interior: bool, any_edge: bool) -> None:
    handles, _ = ax.get_legend_handles_labels()
    extra = [Line2D([], [], ls="", marker="o", color="black", ms=5,
                    label="IsoFLOP optimum")] if any_interior else []
    if any_edge:
        extra.append(Line2D([], [], ls="", marker="o", mfc="white", color="grey", ms=5,
                            label="not interior (excluded)"))
    ax.legend(handles=handles + extra, loc="upper left" if j < 2 else "upper right",
              framealpha=0.9, fontsize=7.5)


def _mark_prediction(ax, c: float, pred: dict[str, Any] | None, key: str, iso, a3,
                     grid: np.ndarray) -> float:
    """A star at the predicted value (the analysis's method) with its interval."""
    ax.axvline(c, color=PRED_COLOR, lw=0.8, ls=":", alpha=0.8)
    y, ci = math.nan, None
    if pred is not None:
        y, ci = num(pred.get(key)), interval(pred, key)
    if not math.isfinite(y):
        curve = iso if iso is not None else a3
        if curve is None:
            return math.nan
        y = float(np.exp(np.interp(math.log(c), np.log(grid), np.log(curve[0]))))
        band = curve[1]
        if band is not None:
            ci = (float(np.exp(np.interp(math.log(c), np.log(grid), np.log(band[0])))),
                  float(np.exp(np.interp(math.log(c), np.log(grid), np.log(band[1])))))
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
