"""IsoFLOP curves: final loss against N per budget, the parabolas and each budget's optimum."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flops_fit.plots.data import PlotData, Run
from flops_fit.plots.style import (
    LOSS_LABEL,
    MAX_LEGEND_BUDGETS,
    PRED_COLOR,
    budget_colors,
    fmt_sci,
    new_figure,
    yerr_of,
)


def draw(data: PlotData) -> Figure | None:
    """Final loss vs N per budget, the fitted parabolas and each budget's optimum."""
    groups: dict[float, list[Run]] = {}
    for r in data.runs:
        groups.setdefault(r.budget, []).append(r)
    optima = {o.budget: o for o in data.optima}
    groups = {b: g for b, g in groups.items() if len({r.n for r in g}) >= 3 or b in optima}
    if not groups:
        data.notes.append("isoflops: skipped, no compute budget has runs of 3 or more sizes "
                          "(data not on an IsoFLOP grid)")
        return None
    budgets = sorted(groups)
    color_of, sm = budget_colors(budgets)
    fig = new_figure("isoflops", (9.5, 5.4))
    ax = fig.add_subplot()
    ax.set_xscale("log")
    drawn = {"star": False, "edge": False, "concave": False, "convex": False}
    for b in budgets:
        g = sorted(groups[b], key=lambda r: r.n)
        col = color_of(b)
        n = np.array([r.n for r in g])
        loss = np.array([r.loss for r in g])
        o = optima.get(b)
        lab = None
        if len(budgets) <= MAX_LEGEND_BUDGETS:
            lab = f"C = {fmt_sci(b)} FLOPs"
            if o is not None and not o.interior:
                lab += " (no minimum)" if not o.n > 0 else " (minimum outside)"
        ax.plot(n, loss, "o", color=col, ms=5, mec="white", mew=0.5, label=lab, zorder=3)
        if np.unique(n).size >= 3:
            ln = np.log(n)
            coef = np.polyfit(ln, loss, 2)
            span = ln.max() - ln.min()
            xs = np.linspace(ln.min() - 0.08 * span, ln.max() + 0.08 * span, 200)
            concave = not coef[0] > 0  # no minimum: draw the fit faint and dashed
            drawn["concave"] |= concave
            drawn["convex"] |= not concave
            ax.plot(np.exp(xs), np.polyval(coef, xs), "--" if concave else "-", color=col,
                    lw=1.0 if concave else 1.4, alpha=0.5 if concave else 0.85, zorder=2)
        if o is not None and o.n > 0:
            y = o.loss
            if not math.isfinite(y) and np.unique(n).size >= 3:
                y = float(np.polyval(np.polyfit(np.log(n), loss, 2), math.log(o.n)))
            if not math.isfinite(y):
                continue
            xerr = yerr_of(o.n, o.n_ci)
            if o.interior:
                drawn["star"] = True
                ax.errorbar([o.n], [y], xerr=xerr, fmt="*", ms=14, color=col, mec="black",
                            mew=0.7, ecolor="black", elinewidth=1.1, capsize=3, zorder=5)
            else:
                drawn["edge"] = True
                ax.errorbar([o.n], [y], xerr=xerr, fmt="X", ms=9, mfc="white", color=col,
                            mec=PRED_COLOR, mew=1.4, ecolor="black", elinewidth=1.1,
                            capsize=3, zorder=5)
    if len(budgets) > MAX_LEGEND_BUDGETS:
        fig.colorbar(sm, ax=ax, label="compute budget C (FLOPs)", pad=0.01)
    fig.legend(handles=_legend(ax, drawn), loc="outside right upper", framealpha=0.9)
    pk = "non-embedding parameters" if data.laws.param_key.endswith("embedding") \
        else "parameters"
    ax.set_xlabel(f"model size N ({pk})")
    ax.set_ylabel(LOSS_LABEL)
    title = "IsoFLOP curves: final loss vs model size at fixed compute"
    bad = {s: c for s, c in data.status_counts().items() if s in ("failed", "diverged")}
    if bad:
        title += "\n(" + ", ".join(f"{c} {s}" for s, c in bad.items()) + " not shown)"
    if optima and not any(o.interior for o in optima.values()):
        title += "\nNo budget has an interior minimum: widen the sweep."
    ax.set_title(title)
    return fig


def _legend(ax, drawn: dict[str, bool]) -> list:
    handles, _ = ax.get_legend_handles_labels()
    if drawn["convex"]:
        handles.append(Line2D([], [], ls="-", color="grey", label="parabola in log N"))
    if drawn["concave"]:
        handles.append(Line2D([], [], ls="--", color="grey", alpha=0.6,
                              label="parabola without a minimum"))
    if drawn["star"]:
        handles.append(Line2D([], [], ls="", marker="*", ms=12, color="grey", mec="black",
                              label="optimum of the parabola\n(bar: 95% interval)"))
    if drawn["edge"]:
        handles.append(Line2D([], [], ls="", marker="X", ms=9, mfc="white", color="grey",
                              mec=PRED_COLOR, mew=1.4,
                              label="minimum not inside the\nsampled sizes (excluded)"))
    return handles
