"""Training curves: loss against training compute, coloured by model size."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flops_fit.plots.data import PlotData
from flops_fit.plots.style import new_figure, smooth


def draw(data: PlotData) -> Figure | None:
    """Training loss vs FLOPs of every run with a ``metrics.jsonl``, coloured by N."""
    curves = data.curves
    if not curves:
        data.notes.append("training_curves: skipped, no runs/*/metrics.jsonl")
        return None
    ns = [cur.n for cur in curves if cur.n > 0] or [1.0]
    cmap = matplotlib.colormaps["plasma"]
    norm = mcolors.LogNorm(vmin=min(ns), vmax=max(max(ns), min(ns) * 1.01))
    fig = new_figure("training_curves", (8.5, 5.4))
    ax = fig.add_subplot()
    ax.set_xscale("log")
    has_val = False
    ys_all = []
    for cur in sorted(curves, key=lambda cur: cur.n):
        x = cur.flops
        xlabel = "training compute (FLOPs)"
        if not np.isfinite(x).any():
            x, xlabel = cur.tokens, "training tokens"
        col = cmap(0.9 * norm(cur.n)) if cur.n > 0 else "grey"
        ok = np.isfinite(x) & (x > 0) & np.isfinite(cur.train_loss)
        if ok.sum() >= 2:
            y = smooth(cur.train_loss[ok], 5)
            ax.plot(x[ok], y, color=col, lw=1.1, alpha=0.85,
                    ls="-" if cur.status in ("completed", "") else "--")
            ys_all.append(y)
        okv = np.isfinite(x) & (x > 0) & np.isfinite(cur.val_loss)
        if okv.any():
            has_val = True
            ax.plot(x[okv], cur.val_loss[okv], "o", color=col, ms=3.5, mec="black", mew=0.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss (nats/token)")
    if ys_all:  # clip the first steps' very high loss so the ends are readable
        ends = np.concatenate([y[len(y) // 10:] for y in ys_all])
        top = float(np.percentile(ends, 99.5))
        bottom = float(np.min(np.concatenate(ys_all)))
        ax.set_ylim(bottom - 0.05 * (top - bottom), top + 0.05 * (top - bottom))
    fig.colorbar(ScalarMappable(norm=norm, cmap=mcolors.ListedColormap(
        cmap(np.linspace(0, 0.9, 256)))), ax=ax, label="model size N (parameters)", pad=0.01)
    handles = [Line2D([], [], color="grey", label="training loss (smoothed)")]
    if has_val:
        handles.append(Line2D([], [], ls="", marker="o", color="grey", mec="black", ms=4,
                              label="held-out loss"))
    if any(cur.status not in ("completed", "") for cur in curves):
        handles.append(Line2D([], [], ls="--", color="grey", label="not completed"))
    ax.legend(handles=handles, loc="upper right", framealpha=0.9)
    ax.set_title(f"Training curves of {len(curves)} runs")
    return fig
