"""Iso-loss contours of the fitted L(N, D), the compute-optimal frontier and the runs."""

from __future__ import annotations

import math

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from flops_fit.plots.data import PlotData
from flops_fit.plots.style import PRED_COLOR, fmt_sci, log_limits, new_figure


def draw(data: PlotData) -> Figure | None:
    """Iso-loss contours of the fitted L(N, D) with the compute-optimal frontier and runs."""
    laws = data.laws
    par = laws.parametric()
    if par is None:
        data.notes.append("parametric: skipped, the analysis has no usable L(N, D) fit")
        return None
    runs = data.runs
    predict = data.predict_budget
    ns = [r.n for r in runs]
    ds = [r.d for r in runs]
    if predict:
        n_p, d_p, _ = laws.allocation(np.array([predict]))
        ns.append(float(n_p[0]))
        ds.append(float(d_p[0]))
    if not ns:
        data.notes.append("parametric: skipped, no completed runs")
        return None
    n_lim = log_limits(ns, 0.12)
    d_lim = log_limits(ds, 0.12)
    nn, dd = np.meshgrid(np.geomspace(*n_lim, 240), np.geomspace(*d_lim, 240))
    ll = laws.loss_surface(nn, dd)
    fig = new_figure("parametric", (8.0, 6.0))
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo = min([r.loss for r in runs] + [float(np.min(ll))])
    hi = float(np.percentile(ll, 97))
    levels = np.geomspace(max(lo * 0.98, par.E + 1e-6), max(hi, lo * 1.05), 16)
    cf = ax.contourf(nn, dd, ll, levels=levels, cmap="viridis_r", extend="both", alpha=0.9)
    cs = ax.contour(nn, dd, ll, levels=levels[::3], colors="white", linewidths=0.6, alpha=0.7)
    ax.clabel(cs, fmt=lambda v: f"{v:.2f}", fontsize=7.5, colors="white")
    fig.colorbar(cf, ax=ax, label="L(N, D) (nats/token)", pad=0.01,
                 format=ticker.FormatStrFormatter("%.2f"))
    kappa = laws.kappa
    c_lo, c_hi = kappa * n_lim[0] * d_lim[0], kappa * n_lim[1] * d_lim[1]
    _iso_flop_lines(ax, kappa, n_lim, d_lim, c_lo, c_hi)
    fn, fd, _ = laws.allocation(np.geomspace(c_lo / 10, c_hi * 10, 400))
    ax.plot(fn, fd, "-", color=PRED_COLOR, lw=2.2, label="compute-optimal frontier")
    if runs:
        ax.scatter([r.n for r in runs], [r.d for r in runs], s=22, color="white",
                   edgecolors="black", linewidths=0.8, zorder=4, label="runs")
    if predict:
        ax.plot([ns[-1]], [ds[-1]], "*", ms=15, color=PRED_COLOR, mec="black", mew=0.7,
                zorder=5, label=f"optimum at C = {fmt_sci(predict)}")
    ax.set_xlim(*n_lim)
    ax.set_ylim(*d_lim)
    ax.grid(False)
    ax.set_xlabel("model size N (parameters)")
    ax.set_ylabel("training data D (tokens)")
    title = (f"Fitted L(N, D) = {par.E:.3f} + {par.A:.3g}/N$^{{{par.alpha:.3f}}}$ "
             f"+ {par.B:.3g}/D$^{{{par.beta:.3f}}}$")
    note = laws.degenerate_note()
    kap = "6" if abs(kappa - 6) < 1e-9 else f"{kappa:.3g}"
    title += f"\n{note}" if note else f"\n(dotted lines: iso-FLOP, C = {kap}·N·D FLOPs)"
    ax.set_title(title)
    ax.legend(loc="best", framealpha=0.9)
    return fig


def _iso_flop_lines(ax, kappa: float, n_lim, d_lim, c_lo: float, c_hi: float) -> None:
    """Dotted diagonals C = kappa N D at each power of ten inside the frame, labelled."""
    for e in range(int(math.ceil(math.log10(c_lo))), int(math.floor(math.log10(c_hi))) + 1):
        c = 10.0 ** e
        x = np.geomspace(*n_lim, 50)
        y = c / (kappa * x)
        ok = (y >= d_lim[0]) & (y <= d_lim[1])
        if ok.sum() < 2:
            continue
        ax.plot(x[ok], y[ok], color="black", lw=0.6, ls=(0, (2, 3)), alpha=0.45)
        i = int(np.flatnonzero(ok)[len(np.flatnonzero(ok)) // 2])
        ax.text(x[i], y[i], f"{fmt_sci(c)}", fontsize=7, alpha=0.7, rotation=-35,
                ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.5))
