"""Quality of the parametric fit: predicted against observed loss, and the residuals by N."""

from __future__ import annotations

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.figure import Figure

from flops_fit.plots.data import PlotData
from flops_fit.plots.style import PRED_COLOR, new_figure


def draw(data: PlotData) -> Figure | None:
    """Predicted vs observed loss of the parametric fit, and the residuals."""
    laws = data.laws
    runs = data.runs
    if laws.parametric() is None or not runs:
        data.notes.append("fit_quality: skipped, no parametric fit or no completed runs")
        return None
    n = np.array([r.n for r in runs])
    d = np.array([r.d for r in runs])
    obs = np.array([r.loss for r in runs])
    c = np.array([r.c for r in runs])
    pred = laws.loss_surface(n, d)
    rel = 100.0 * (obs - pred) / pred
    dropped = laws.dropped_ids()
    used = np.array([r.run_id not in dropped for r in runs])
    norm = mcolors.LogNorm(vmin=c.min(), vmax=max(c.max(), c.min() * 1.01))
    fig = new_figure("fit_quality", (12.5, 5.0))
    ax1, ax2 = fig.subplots(1, 2)
    lo, hi = min(obs.min(), pred.min()), max(obs.max(), pred.max())
    pad = 0.04 * (hi - lo or 1.0)
    ax1.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "-", color="grey", lw=1,
             label="predicted = observed")
    sc = ax1.scatter(pred[used], obs[used], c=c[used], norm=norm, cmap="viridis", s=26,
                     edgecolors="white", linewidths=0.5, zorder=3, label="runs used")
    if (~used).any():
        ax1.scatter(pred[~used], obs[~used], marker="x", color=PRED_COLOR, s=30, zorder=3,
                    label="dropped from the fit")
    ax1.set_xlim(lo - pad, hi + pad)
    ax1.set_ylim(lo - pad, hi + pad)
    ax1.set_aspect("equal", adjustable="box")
    ax1.set_xlabel("predicted loss L(N, D) (nats/token)")
    ax1.set_ylabel("observed final loss (nats/token)")
    rmse = float(np.sqrt(np.mean(np.log(obs[used] / pred[used]) ** 2))) if used.any() else 0
    ax1.set_title(f"Parametric fit: predicted vs observed (RMS log error {rmse:.2%})")
    ax1.legend(loc="upper left", framealpha=0.9)
    ax2.set_xscale("log")
    ax2.axhline(0, color="grey", lw=1)
    ax2.scatter(n[used], rel[used], c=c[used], norm=norm, cmap="viridis", s=26,
                edgecolors="white", linewidths=0.5, zorder=3)
    if (~used).any():
        ax2.scatter(n[~used], rel[~used], marker="x", color=PRED_COLOR, s=30, zorder=3)
    lim = max(float(np.abs(rel).max()) * 1.15, 0.5)
    ax2.set_ylim(-lim, lim)
    ax2.yaxis.set_major_formatter(ticker.FuncFormatter(
        lambda v, _: "0%" if abs(v) < 1e-12 else f"{v:+.3g}%"))
    ax2.set_xlabel("model size N (parameters)")
    ax2.set_ylabel("relative residual (observed − predicted) / predicted (%)")
    ax2.set_title("Residuals by model size")
    fig.colorbar(sc, ax=[ax1, ax2], label="compute C (FLOPs)", pad=0.01, shrink=0.9)
    note = laws.degenerate_note()
    if note:
        fig.suptitle(f"Approach 3 {note}", color=PRED_COLOR)
    return fig
