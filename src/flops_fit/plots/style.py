"""The look shared by every plot: rc params, colours, number formatting, axis limits, saving.

Figures are made with :class:`matplotlib.figure.Figure` directly (no pyplot), so drawing works
headless and leaves no global state behind.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from flops_fit.rundir.io import atomic_file

LOSS_LABEL = "final loss (nats/token)"
PRED_COLOR = "#d62728"
VAL_COLOR = "#2ca02c"
A1_COLOR = "#2ca02c"
A2_COLOR = "#1f77b4"
A3_COLOR = "#ff7f0e"


@dataclass(frozen=True)
class ApproachStyle:
    """How one fitting approach's curves are drawn (see :func:`approach_style`)."""

    label: str  #: the legend's name of the approach
    color: str
    ls: str | tuple  #: line style
    lw: float = 1.6
    band_alpha: float = 0.14


#: the look of each approach of :data:`flops_fit.analysis.approaches.APPROACHES`, by name; an
#: approach not named here is drawn in :data:`OTHER_APPROACH_COLORS` with its registry title
APPROACH_STYLES: dict[str, ApproachStyle] = {
    "isoflop": ApproachStyle("Approach 2 (IsoFLOP)", A2_COLOR, "-", 1.8, 0.15),
    "parametric": ApproachStyle("Approach 3, L(N, D)", A3_COLOR, "--", 1.6, 0.13),
    "joint": ApproachStyle("Joint IsoFLOP fit", "#9467bd", "-", 2.0, 0.18),
}
OTHER_APPROACH_COLORS = ("#8c564b", "#e377c2", "#17becf", "#bcbd22")
_OTHER_LINES = ("-.", (0, (5, 1.5, 1, 1.5)), (0, (1, 1)))


def approach_style(name: str, title: str = "", index: int = 0) -> ApproachStyle:
    """The style of approach ``name``; an unknown one gets a colour and dash of its own by
    ``index`` (its place among the unknown ones) and ``title`` (or its name) as its label."""
    if name in APPROACH_STYLES:
        return APPROACH_STYLES[name]
    return ApproachStyle(title or name, OTHER_APPROACH_COLORS[index % len(
        OTHER_APPROACH_COLORS)], _OTHER_LINES[index % len(_OTHER_LINES)])


def approach_styles(approaches: Iterable[tuple[str, str]]) -> dict[str, ApproachStyle]:
    """``{name: style}`` of ``(name, title)`` pairs: the table's style, or for each unknown
    approach in turn a colour and dash of its own."""
    out: dict[str, ApproachStyle] = {}
    unknown = 0
    for name, title in approaches:
        out[name] = approach_style(name, title, unknown)
        unknown += name not in APPROACH_STYLES
    return out


#: at most this many budgets get a legend entry each; more get a colourbar
MAX_LEGEND_BUDGETS = 8
RC = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
    "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.6, "svg.hashsalt": "flops-fit",
}
_RC = RC  # the name visualizer.py used


def fmt_sci(x: float, digits: int = 2, tex: bool = True) -> str:
    """``3e12`` as ``3×10¹²`` (mathtext when ``tex``, plain ``3e+12``-free text otherwise)."""
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    exp = int(math.floor(math.log10(abs(x))))
    mant = x / 10 ** exp
    if round(mant, digits - 1) >= 10:
        mant, exp = mant / 10, exp + 1
    m = f"{mant:.{digits - 1}f}".rstrip("0").rstrip(".") if digits > 1 else f"{mant:.0f}"
    if -2 <= exp <= 3:
        return f"{x:.{max(digits - 1 - exp, 0)}f}" if exp < digits else f"{x:,.0f}"
    if tex:
        return (rf"${m}\times10^{{{exp}}}$" if m != "1" else rf"$10^{{{exp}}}$")
    return f"{m}e{exp}"


def smooth(y: np.ndarray, k: int) -> np.ndarray:
    """Running mean of width ``k`` (edges padded), ``y`` itself when too short."""
    if k <= 1 or y.size < k:
        return y
    pad = k // 2
    return np.convolve(np.pad(y, pad, mode="edge"), np.ones(k) / k, mode="valid")[: y.size]


def log_limits(values: Iterable[float], pad: float = 0.15) -> tuple[float, float]:
    """Axis limits of the positive ``values`` on a log scale, padded by ``pad`` of the span."""
    v = np.asarray([x for x in values if math.isfinite(x) and x > 0], dtype=float)
    lo, hi = np.log10(v.min()), np.log10(v.max())
    span = max(hi - lo, 0.3)
    return 10 ** (lo - pad * span), 10 ** (hi + pad * span)


def clip_ylim(ax, values: Iterable[float], log: bool) -> None:
    """Fit the y-range to the curves and points, so that a runaway interval (a degenerate
    fit's bootstrap) is cut at the frame instead of squashing everything else."""
    v = np.asarray([x for x in values if math.isfinite(x) and (x > 0 or not log)], dtype=float)
    if v.size == 0:
        return
    lo, hi = float(v.min()), float(v.max())
    if log:
        span = max(math.log10(hi / lo), 0.5)
        ax.set_ylim(lo / 10 ** (0.25 * span), hi * 10 ** (0.25 * span))
    else:
        span = (hi - lo) or 0.1 * abs(hi) or 1.0
        ax.set_ylim(lo - 0.25 * span, hi + 0.25 * span)


def yerr_of(y: float, ci: tuple[float, float] | None) -> list[list[float]] | None:
    """``errorbar``'s asymmetric ``[[below], [above]]`` of an interval around ``y``."""
    if not ci:
        return None
    return [[max(y - ci[0], 0)], [max(ci[1] - y, 0)]]


def new_figure(name: str, size: tuple[float, float]) -> Figure:
    """A constrained-layout Figure labelled ``name`` (the file stem it is saved under)."""
    fig = Figure(figsize=size, layout="constrained")
    fig.set_label(name)
    return fig


def budget_colors(budgets: list[float]):
    """``(color_of(budget), mappable)`` on a log scale of viridis."""
    cmap = matplotlib.colormaps["viridis"]
    lo, hi = min(budgets), max(budgets)
    if hi <= lo:
        hi = lo * 10
    norm = mcolors.LogNorm(vmin=lo, vmax=hi)

    def color_of(b: float):
        return cmap(0.05 + 0.75 * norm(b))  # skip viridis' pale yellow end

    sm = ScalarMappable(norm=norm, cmap=mcolors.ListedColormap(cmap(np.linspace(0.05, 0.8,
                                                                                256))))
    return color_of, sm


def rc_context():
    """The shared rc params, for drawing and saving."""
    return matplotlib.rc_context(RC)


def save_atomic(fig: Figure, path: Path, fmt: str, dpi: int) -> None:
    """``fig.savefig`` into a temp file beside ``path``, renamed over it when complete."""
    meta = {"Date": None} if fmt == "svg" else None
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=dpi, metadata=meta, bbox_inches="tight")
