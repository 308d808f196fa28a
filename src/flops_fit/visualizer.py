"""Plots of a run directory: IsoFLOP curves, scaling laws, tokens per parameter, L(N, D), fit
quality and training curves.

:class:`ScalingVisualizer` reads ``results.json`` (the runs) and ``analysis/scaling_laws.json``
(the fit) and draws with :class:`matplotlib.figure.Figure` directly, so it works headless and
leaves no pyplot state behind. A plot whose data are missing (no IsoFLOP budgets for imported
runs, no parametric fit, no training curves) is skipped with a note in :attr:`notes`.

Units: N in parameters, D in tokens, C in FLOPs, loss in nats per token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flops_fit.errors import FlopsFitError
from flops_fit.rundir import METRICS_FILE, atomic_file, read_json

__all__ = ["ScalingVisualizer", "PLOT_NAMES", "fmt_sci"]

#: file stems of the plots, in the order plot_all draws them
PLOT_NAMES = (
    "isoflops", "scaling_laws", "tokens_per_param", "parametric", "fit_quality",
    "training_curves",
)
LOSS_LABEL = "final loss (nats/token)"
PRED_COLOR = "#d62728"
VAL_COLOR = "#2ca02c"
A2_COLOR = "#1f77b4"
A3_COLOR = "#ff7f0e"
#: at most this many budgets get a legend entry each; more get a colourbar
_MAX_LEGEND_BUDGETS = 8
_RC = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
    "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.6, "svg.hashsalt": "flops-fit",
}


# --------------------------------------------------------------------------------------------
# small helpers (defensive reading of JSON that may lack optional keys)
# --------------------------------------------------------------------------------------------


def _num(x: Any) -> float:
    """``x`` as a float, NaN when it is not a finite number."""
    if isinstance(x, bool):
        return math.nan
    if isinstance(x, dict):
        for key in ("value", "estimate", "mean"):
            if key in x:
                return _num(x[key])
        return math.nan
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def _pair(x: Any) -> tuple[float, float] | None:
    """A finite ``(lo, hi)`` from a list/tuple or a ``{lo, hi}`` dict, else None."""
    if isinstance(x, dict):
        for lo_key, hi_key in (("lo", "hi"), ("low", "high"), ("lower", "upper")):
            if lo_key in x and hi_key in x:
                x = [x[lo_key], x[hi_key]]
                break
        else:
            return None
    if isinstance(x, (list, tuple)) and len(x) == 2:
        lo, hi = _num(x[0]), _num(x[1])
        if math.isfinite(lo) and math.isfinite(hi):
            return (min(lo, hi), max(lo, hi))
    return None


def interval(obj: Any, name: str) -> tuple[float, float] | None:
    """The confidence interval of ``obj[name]``, wherever the JSON keeps it, or None.

    Accepts ``obj[name + "_ci"]``, ``obj["ci"][name]``, ``obj["intervals"][name]`` and
    ``obj[name] = {"value": ..., "ci": [lo, hi]}``.
    """
    if not isinstance(obj, dict):
        return None
    for key in (f"{name}_ci", f"{name}_interval"):
        if key in obj:
            got = _pair(obj[key])
            if got:
                return got
    for key in ("ci", "intervals", "confidence_intervals"):
        sub = obj.get(key)
        if isinstance(sub, dict) and name in sub:
            got = _pair(sub[name])
            if got:
                return got
    val = obj.get(name)
    if isinstance(val, dict):
        for key in ("ci", "interval", "confidence_interval"):
            if key in val:
                got = _pair(val[key])
                if got:
                    return got
    return None


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


def _smooth(y: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or y.size < k:
        return y
    pad = k // 2
    return np.convolve(np.pad(y, pad, mode="edge"), np.ones(k) / k, mode="valid")[: y.size]


def _log_limits(values: Iterable[float], pad: float = 0.15) -> tuple[float, float]:
    v = np.asarray([x for x in values if math.isfinite(x) and x > 0], dtype=float)
    lo, hi = np.log10(v.min()), np.log10(v.max())
    span = max(hi - lo, 0.3)
    return 10 ** (lo - pad * span), 10 ** (hi + pad * span)


def _clip_ylim(ax, values: Iterable[float], log: bool) -> None:
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


def _save_atomic(fig: Figure, path: Path, fmt: str, dpi: int) -> None:
    """``fig.savefig`` into a temp file beside ``path``, renamed over it when complete."""
    meta = {"Date": None} if fmt == "svg" else None
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=dpi, metadata=meta, bbox_inches="tight")


class _Band:
    """A power law ``y = k C^a`` with a pointwise confidence band in log space."""

    def __init__(self, k: float, a: float, xc: float, se_center: float, a_half: float,
                 z: float):
        self.k, self.a, self.xc = k, a, xc
        self.se_center, self.a_half, self.z = se_center, a_half, z

    def __call__(self, c: np.ndarray) -> np.ndarray:
        return self.k * np.asarray(c, dtype=float) ** self.a

    def band(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(lo, hi)`` of the band at ``c``, or None when nothing is known about it."""
        lc = np.log(np.asarray(c, dtype=float))
        h_center = self.z * self.se_center if math.isfinite(self.se_center) else 0.0
        h_slope = self.a_half if math.isfinite(self.a_half) else 0.0
        if h_center == 0.0 and h_slope == 0.0:
            return None
        half = np.sqrt(h_center ** 2 + ((lc - self.xc) * h_slope) ** 2)
        y = self(c)
        return y * np.exp(-half), y * np.exp(half)


# --------------------------------------------------------------------------------------------
# the visualizer
# --------------------------------------------------------------------------------------------


class ScalingVisualizer:
    """Draw the plots of one run directory.

    Parameters
    ----------
    results_path : ``results.json`` (a JSON array of run records).
    analysis_path : ``analysis/scaling_laws.json``; may be missing (only the plots that need no
        fit are drawn then).
    output_dir : where :meth:`plot_all` writes ``<name>.png`` and ``<name>.svg`` (``plots/``).
    predict_budget : the budget (FLOPs) the scaling-law lines are extended to; default 100x
        the largest budget.
    """

    def __init__(self, results_path: str | Path, analysis_path: str | Path | None,
                 output_dir: str | Path, predict_budget: float | None = None,
                 dpi: int = 150):
        self.results_path = Path(results_path)
        self.analysis_path = Path(analysis_path) if analysis_path is not None else None
        self.output_dir = Path(output_dir)
        self.dpi = dpi
        self.notes: list[str] = []
        self.saved: list[Path] = []
        self.run_dir = self.results_path.parent
        records = read_json(self.results_path, "results")
        if not isinstance(records, list):
            raise FlopsFitError(
                f"{self.results_path} is not a list of run records; rebuild it with "
                "`flops-fit train` or fix the file."
            )
        self.records: list[dict[str, Any]] = [r for r in records if isinstance(r, dict)]
        self.analysis: dict[str, Any] = {}
        if self.analysis_path is not None and self.analysis_path.exists():
            data = read_json(self.analysis_path, "scaling-law analysis")
            self.analysis = data if isinstance(data, dict) else {}
        elif self.analysis_path is not None:
            self.notes.append(f"no fit at {self.analysis_path}: only the data are drawn")
        self.predict_budget = self._default_predict(predict_budget)

    # ----------------------------------------------------------------------------- data access

    @property
    def conventions(self) -> dict[str, Any]:
        """``provenance.conventions`` of the analysis (which N and C the fit used)."""
        prov = self.analysis.get("provenance")
        conv = prov.get("conventions") if isinstance(prov, dict) else None
        return conv if isinstance(conv, dict) else {}

    @property
    def param_key(self) -> str:
        """The run-record field the fit used as N (total or non-embedding parameters)."""
        conv = self.conventions
        for key in ("params_field", "params"):
            val = conv.get(key)
            if isinstance(val, str) and "non" in val and "embed" in val:
                return "num_params_non_embedding"
        return "num_params"

    @property
    def uses_6nd(self) -> bool:
        """True when the fit took C = 6ND instead of the measured FLOPs."""
        return str(self.conventions.get("flops", "")).lower() == "6nd"

    @property
    def kappa(self) -> float:
        """FLOPs per parameter per token of the parametric allocation (C = kappa N D)."""
        par = self.analysis.get("parametric")
        for src in (par if isinstance(par, dict) else {}, self.conventions):
            v = _num(src.get("flops_per_param_token"))
            if v > 0:
                return v
        return 6.0

    @property
    def ci_level(self) -> float:
        for sec in (self.analysis.get("parametric"), self.analysis.get("isoflop")):
            v = _num(sec.get("ci_level")) if isinstance(sec, dict) else math.nan
            if 0 < v < 1:
                return v
        return 0.95

    def _runs(self) -> list[dict[str, Any]]:
        """Completed runs with finite positive N, D and loss (as floats under short keys)."""
        out = []
        pk = self.param_key
        for r in self.records:
            if r.get("status", "completed") != "completed":
                continue
            n = _num(r.get(pk, r.get("num_params")))
            d, loss = _num(r.get("num_tokens")), _num(r.get("final_loss"))
            if not (n > 0 and d > 0 and loss > 0):
                continue
            c = _num(r.get("flops"))
            c = c if c > 0 and not self.uses_6nd else 6.0 * n * d
            budget = _num(r.get("compute_budget"))
            out.append({"run_id": str(r.get("run_id", "")), "n": n, "d": d, "loss": loss,
                        "c": c, "budget": budget if budget > 0 else c})
        return out

    def _status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.records:
            s = str(r.get("status", "completed"))
            counts[s] = counts.get(s, 0) + 1
        return counts

    def _isoflop(self) -> dict[str, Any]:
        iso = self.analysis.get("isoflop")
        return iso if isinstance(iso, dict) else {}

    def _parametric(self) -> dict[str, Any] | None:
        """``{E, A, B, alpha, beta, ...}`` when all five are finite (A, B, exponents > 0)."""
        par = self.analysis.get("parametric")
        if not isinstance(par, dict) or par.get("available") is False:
            return None
        vals = {k: _num(par.get(k)) for k in ("E", "A", "B", "alpha", "beta")}
        if not all(math.isfinite(v) for v in vals.values()):
            return None
        if not (vals["A"] > 0 and vals["B"] > 0 and vals["alpha"] > 0 and vals["beta"] > 0):
            return None
        return {**par, **vals}

    def _degenerate_note(self) -> str:
        par = self.analysis.get("parametric")
        if not isinstance(par, dict) or not par.get("degenerate"):
            return ""
        reasons = par.get("degenerate_reasons") or par.get("reasons") or []
        if isinstance(reasons, str):
            reasons = [reasons]
        text = "; ".join(str(r) for r in reasons[:2])
        return "degenerate fit" + (f": {text}" if text else "")

    def _budget_optima(self) -> list[dict[str, Any]]:
        """The IsoFLOP optima of the analysis (floats; ``c`` the x of the power laws)."""
        out = []
        for b in self._isoflop().get("budgets") or []:
            if not isinstance(b, dict):
                continue
            cb = _num(b.get("compute_budget"))
            c = _num(b.get("compute"))
            c = c if c > 0 else cb
            if not c > 0:
                continue
            out.append({
                "budget": cb if cb > 0 else c, "c": c,
                "n": _num(b.get("optimal_params")), "d": _num(b.get("optimal_tokens")),
                "loss": _num(b.get("optimal_loss")),
                "interior": bool(b.get("interior")),
                "n_ci": interval(b, "optimal_params"), "d_ci": interval(b, "optimal_tokens"),
                "loss_ci": interval(b, "optimal_loss"), "note": str(b.get("note") or ""),
                "raw": b,
            })
        return sorted(out, key=lambda o: o["c"])

    def _law(self, name: str, points: list[tuple[float, float]]) -> _Band | None:
        """The power law ``isoflop[name]`` with a confidence band.

        The band combines the spread of the fitted points about the line (its centre) with the
        exponent's interval from the analysis (its slope); when the analysis carries OLS
        standard errors those are used instead.
        """
        law = self._isoflop().get(name)
        if not isinstance(law, dict):
            return None
        k, a = _num(law.get("coefficient")), _num(law.get("exponent"))
        if not (k > 0 and math.isfinite(a)):
            return None
        pts = [(c, y) for c, y in points if c > 0 and y > 0]
        lx = np.log([c for c, _ in pts]) if pts else np.array([])
        xc = _num(law.get("log_x_center"))
        if not math.isfinite(xc):
            xc = float(lx.mean()) if lx.size else math.nan
        m = lx.size
        se_center = math.nan
        z = 1.96
        if m > 2:
            from scipy import stats

            resid = np.log([y for _, y in pts]) - np.log(k * np.exp(lx) ** a)
            s2 = float(resid @ resid) / (m - 2)
            se_center = math.sqrt(s2 / m)
            z = float(stats.t.ppf(0.975, m - 2))
        a_half = math.nan
        ci = interval(law, "exponent")
        if ci:
            a_half = (ci[1] - ci[0]) / 2
        else:
            se = _num(law.get("exponent_se"))
            if math.isfinite(se):
                a_half = z * se
        if not math.isfinite(xc):
            return _Band(k, a, 0.0, math.nan, math.nan, z)
        return _Band(k, a, xc, se_center, a_half, z)

    def _default_predict(self, predict_budget: float | None) -> float | None:
        if predict_budget is not None and _num(predict_budget) > 0:
            return float(predict_budget)
        for key in ("predict_budget", "prediction_budget"):
            v = _num(self.analysis.get(key))
            if v > 0:
                return v
        budgets = [o["c"] for o in self._budget_optima()] or [r["c"] for r in self._runs()]
        return 100.0 * max(budgets) if budgets else None

    def _parametric_alloc(self, par: dict[str, Any], c: np.ndarray):
        from flops_fit.fitting import optimal_allocation, parametric_loss

        n, d = optimal_allocation(c, par["A"], par["B"], par["alpha"], par["beta"], self.kappa)
        loss = parametric_loss(n, d, par["E"], par["A"], par["B"], par["alpha"], par["beta"])
        return n, d, loss

    def _new_figure(self, name: str, size: tuple[float, float]) -> Figure:
        fig = Figure(figsize=size, layout="constrained")
        fig.set_label(name)
        return fig

    def _budget_colors(self, budgets: list[float]):
        """``(color_of(budget), norm)`` on a log scale of viridis."""
        import matplotlib

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

    # ----------------------------------------------------------------------------------- plots

    def plot_isoflops(self) -> Figure | None:
        """Final loss vs N per budget, the fitted parabolas and each budget's optimum."""
        import matplotlib

        with matplotlib.rc_context(_RC):
            return self._plot_isoflops()

    def _plot_isoflops(self) -> Figure | None:
        runs = self._runs()
        groups: dict[float, list[dict[str, Any]]] = {}
        for r in runs:
            groups.setdefault(r["budget"], []).append(r)
        optima = {o["budget"]: o for o in self._budget_optima()}
        groups = {b: g for b, g in groups.items()
                  if len({r["n"] for r in g}) >= 3 or b in optima}
        if not groups:
            self.notes.append("isoflops: skipped, no compute budget has runs of 3 or more sizes "
                              "(data not on an IsoFLOP grid)")
            return None
        budgets = sorted(groups)
        color_of, sm = self._budget_colors(budgets)
        fig = self._new_figure("isoflops", (9.5, 5.4))
        ax = fig.add_subplot()
        ax.set_xscale("log")
        drawn = {"star": False, "edge": False, "concave": False, "convex": False}
        for b in budgets:
            g = sorted(groups[b], key=lambda r: r["n"])
            col = color_of(b)
            n = np.array([r["n"] for r in g])
            loss = np.array([r["loss"] for r in g])
            o = optima.get(b)
            lab = None
            if len(budgets) <= _MAX_LEGEND_BUDGETS:
                lab = f"C = {fmt_sci(b)} FLOPs"
                if o is not None and not o["interior"]:
                    lab += " (no minimum)" if not o["n"] > 0 else " (minimum outside)"
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
            if o is not None and o["n"] > 0:
                y = o["loss"]
                if not math.isfinite(y) and np.unique(n).size >= 3:
                    y = float(np.polyval(np.polyfit(np.log(n), loss, 2), math.log(o["n"])))
                if not math.isfinite(y):
                    continue
                xerr = None
                if o["n_ci"]:
                    xerr = [[max(o["n"] - o["n_ci"][0], 0)], [max(o["n_ci"][1] - o["n"], 0)]]
                if o["interior"]:
                    drawn["star"] = True
                    ax.errorbar([o["n"]], [y], xerr=xerr, fmt="*", ms=14, color=col,
                                mec="black", mew=0.7, ecolor="black", elinewidth=1.1,
                                capsize=3, zorder=5)
                else:
                    drawn["edge"] = True
                    ax.errorbar([o["n"]], [y], xerr=xerr, fmt="X", ms=9, mfc="white",
                                color=col, mec=PRED_COLOR, mew=1.4, ecolor="black",
                                elinewidth=1.1, capsize=3, zorder=5)
        if len(budgets) > _MAX_LEGEND_BUDGETS:
            fig.colorbar(sm, ax=ax, label="compute budget C (FLOPs)", pad=0.01)
        handles, labels = ax.get_legend_handles_labels()
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
        fig.legend(handles=handles, loc="outside right upper", framealpha=0.9)
        pk = "non-embedding parameters" if self.param_key.endswith("embedding") else "parameters"
        ax.set_xlabel(f"model size N ({pk})")
        ax.set_ylabel(LOSS_LABEL)
        title = "IsoFLOP curves: final loss vs model size at fixed compute"
        bad = {s: c for s, c in self._status_counts().items() if s in ("failed", "diverged")}
        if bad:
            title += "\n(" + ", ".join(f"{c} {s}" for s, c in bad.items()) + " not shown)"
        if optima and not any(o["interior"] for o in optima.values()):
            title += "\nNo budget has an interior minimum: widen the sweep."
        ax.set_title(title)
        return fig

    def plot_scaling_laws(self, predict_budget: float | None = None) -> Figure | None:
        """N_opt, D_opt and the loss frontier vs C with fitted laws, bands and the prediction."""
        import matplotlib

        with matplotlib.rc_context(_RC):
            return self._plot_scaling_laws(predict_budget or self.predict_budget)

    def _samples(self, section: str) -> np.ndarray | None:
        """The bootstrap samples of ``section`` (rows: resamples), or None."""
        sec = self.analysis.get(section)
        boot = sec.get("bootstrap") if isinstance(sec, dict) else None
        raw = boot.get("samples") if isinstance(boot, dict) else None
        if not isinstance(raw, list) or len(raw) < 2:
            return None
        try:
            arr = np.array([[np.nan if v is None else v for v in row] for row in raw],
                           dtype=float)
        except (TypeError, ValueError):
            return None
        return arr if arr.ndim == 2 else None

    def _percentiles(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Pointwise interval at :attr:`ci_level` of samples ``y`` (resamples x points)."""
        from flops_fit.fitting import percentile_interval

        if y.shape[0] < 2 or not np.isfinite(y).any():
            return None
        lo, hi = percentile_interval(y, self.ci_level, axis=0)
        return lo, hi

    def _iso_curve(self, j: int, grid: np.ndarray, pts: list[tuple[float, float]]):
        """Approach 2's law ``j`` (0: N_opt, 1: D_opt, 2: L_opt) on ``grid``: (y, band, exp)."""
        name = ("n_opt", "d_opt", "loss_opt")[j]
        law = self._law(name, pts)
        if law is None and j == 2:
            law = self._law_from_points(pts)  # not in the analysis: fit the points
        if law is None:
            return None
        s = self._samples("isoflop")
        band = None
        if s is not None and s.shape[1] >= 2 * j + 2 and self._isoflop().get(name):
            with np.errstate(all="ignore"):
                ys = np.exp(s[:, 2 * j, None] + s[:, 2 * j + 1, None] * np.log(grid)[None, :])
            band = self._percentiles(ys)
        if band is None:
            band = law.band(grid)
        return law(grid), band, law.a

    def _par_curves(self, par: dict[str, Any], grid: np.ndarray):
        """Approach 3's N_opt, D_opt and L_opt on ``grid``, each ``(y, band or None)``."""
        from flops_fit.fitting import optimal_allocation, parametric_loss

        central = self._parametric_alloc(par, grid)
        s = self._samples("parametric")
        bands: list[Any] = [None, None, None]
        if s is not None and s.shape[1] >= 5:
            with np.errstate(all="ignore"):
                ns, ds = optimal_allocation(grid[None, :], s[:, 1, None], s[:, 2, None],
                                            s[:, 3, None], s[:, 4, None], self.kappa)
                ls = parametric_loss(ns, ds, s[:, 0, None], s[:, 1, None], s[:, 2, None],
                                     s[:, 3, None], s[:, 4, None])
            bands = [self._percentiles(ns), self._percentiles(ds), self._percentiles(ls)]
        return [(central[k], bands[k]) for k in range(3)]

    def prediction(self, compute_budget: float) -> dict[str, Any] | None:
        """The analysis's own prediction at ``compute_budget`` (its method), or None."""
        if not self.analysis or not compute_budget:
            return None
        try:
            from flops_fit.analyzer import ScalingAnalysis

            return ScalingAnalysis.from_json(self.analysis).predict_optimal_size(compute_budget)
        except Exception:  # noqa: BLE001 - no analyzer, an older file, or nothing to predict
            return None

    def _plot_scaling_laws(self, predict: float | None) -> Figure | None:
        optima = [o for o in self._budget_optima() if o["n"] > 0]
        par = self._parametric()
        if not optima and par is None:
            self.notes.append("scaling_laws: skipped, neither IsoFLOP optima nor a parametric "
                              "fit to draw")
            return None
        interior = [o for o in optima if o["interior"]]
        runs = self._runs()
        cs = [o["c"] for o in optima] or [r["c"] for r in runs]
        c_lo = min(cs) / 2
        val = self._validation()
        c_hi = max(max(cs) * 2, (predict or 0) * 1.5, (val or {}).get("compute_budget", 0) * 1.5)
        grid = np.geomspace(c_lo, c_hi, 200)
        fig = self._new_figure("scaling_laws", (14.5, 4.9))
        axes = fig.subplots(1, 3)
        panels = [
            ("n", "n_ci", "optimal_params", "compute-optimal model size $N_{opt}$ (parameters)"),
            ("d", "d_ci", "optimal_tokens", "compute-optimal data $D_{opt}$ (tokens)"),
            ("loss", "loss_ci", "expected_loss",
             "loss at the optimum $L_{opt}$ (nats/token)"),
        ]
        a3 = self._par_curves(par, grid) if par is not None else None
        degenerate = self._degenerate_note()
        pred = self.prediction(predict) if predict else None
        pct = f"{self.ci_level:.0%}"
        a1 = self.analysis.get("approach1")
        a1_law = a1.get("n_opt") if isinstance(a1, dict) and a1.get("available") else None
        for j, (key, ci_key, pred_key, ylabel) in enumerate(panels):
            ax = axes[j]
            ax.set_xscale("log")
            if j < 2:
                ax.set_yscale("log")
            sym = ("N", "D", "L")[j]
            pts = [(o["c"], o[key]) for o in interior if o[key] > 0]
            iso = self._iso_curve(j, grid, pts) if self._isoflop().get("available", True) \
                else None
            if iso is not None:
                y, band, expo = iso
                ax.plot(grid, y, "-", color=A2_COLOR, lw=1.8,
                        label=f"Approach 2 (IsoFLOP): ${sym}_{{opt}} \\propto C^{{{expo:.3f}}}$")
                if band is not None:
                    ax.fill_between(grid, band[0], band[1], color=A2_COLOR, alpha=0.15, lw=0,
                                    label=f"{pct} band (Approach 2)")
            if a3 is not None:
                y3, band3 = a3[j]
                if np.all(np.isfinite(y3)) and np.all(y3 > 0):
                    exp3 = (_num(par.get("a")), _num(par.get("b")), math.nan)[j]
                    lab = "Approach 3, L(N, D)" + (
                        f": $\\propto C^{{{exp3:.3f}}}$" if math.isfinite(exp3) else "")
                    if degenerate:
                        lab += " (degenerate)"
                    ax.plot(grid, y3, "--" if not degenerate else ":", color=A3_COLOR, lw=1.6,
                            label=lab)
                    if band3 is not None and not degenerate:
                        ax.fill_between(grid, band3[0], band3[1], color=A3_COLOR, alpha=0.13,
                                        lw=0, label=f"{pct} band (Approach 3)")
            if j == 0 and isinstance(a1_law, dict):
                k1, e1 = _num(a1_law.get("coefficient")), _num(a1_law.get("exponent"))
                if k1 > 0 and math.isfinite(e1):
                    ax.plot(grid, k1 * grid ** e1, "-.", color="#2ca02c", lw=1.3,
                            label=f"Approach 1 (curve envelope): $\\propto C^{{{e1:.3f}}}$")
            for o in optima:
                yv = o[key]
                if not yv > 0:
                    continue
                yerr = None
                if o[ci_key]:
                    yerr = [[max(yv - o[ci_key][0], 0)], [max(o[ci_key][1] - yv, 0)]]
                if o["interior"]:
                    ax.errorbar([o["c"]], [yv], yerr=yerr, fmt="o", color="black", ms=5,
                                capsize=2, zorder=4)
                else:
                    ax.errorbar([o["c"]], [yv], yerr=yerr, fmt="o", mfc="white", color="grey",
                                ms=5, capsize=2, zorder=4)
            core = [o[key] for o in optima] + (list(iso[0]) if iso is not None else [])
            if val:  # the held-out run of `flops-fit validate`, against the extrapolation
                yv = _num((val["n"], val["d"], val["loss"])[j])
                if yv > 0:
                    ax.plot([val["compute_budget"]], [yv], "D", color=VAL_COLOR, mec="black",
                            ms=8, zorder=7, label="held-out validation run")
                    core.append(yv)
            if a3 is not None:
                core += list(a3[j][0])
            if predict:
                core.append(self._mark_prediction(ax, predict, pred, pred_key, iso,
                                                  a3[j] if a3 else None, grid))
            _clip_ylim(ax, core, log=j < 2)
            ci = _pair(pred.get(f"{pred_key}_ci")) if pred else None
            if ci and (ci[0] < ax.get_ylim()[0] or ci[1] > ax.get_ylim()[1]):
                ax.text(0.98, 0.02, "the prediction's interval runs off the plot",
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                        color=PRED_COLOR)
            ax.set_xlabel("compute C (FLOPs)")
            ax.set_ylabel(ylabel)
            if j == 2:
                ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.2f"))
            handles, _ = ax.get_legend_handles_labels()
            extra = [Line2D([], [], ls="", marker="o", color="black", ms=5,
                            label="IsoFLOP optimum")] if interior else []
            if any(not o["interior"] for o in optima):
                extra.append(Line2D([], [], ls="", marker="o", mfc="white", color="grey", ms=5,
                                    label="not interior (excluded)"))
            ax.legend(handles=handles + extra, loc="upper left" if j < 2 else "upper right",
                      framealpha=0.9, fontsize=7.5)
        title = "Compute-optimal scaling"
        if predict:
            how = f" ({pred['method']} fit)" if pred and pred.get("method") else ""
            title += f", extended to the prediction{how} at C = {fmt_sci(predict)} FLOPs"
        if degenerate:
            title += f"\nApproach 3 {degenerate}"
        fig.suptitle(title)
        return fig

    def _validation(self) -> dict[str, Any] | None:
        """The predicted-optimum run of analysis/validation.json (budget, n, d, loss), if any."""
        if self.analysis_path is None:
            return None
        path = self.analysis_path.parent / "validation.json"
        if not path.exists():
            return None
        try:
            v = json.loads(path.read_text(encoding="utf-8"))
            run = next(r for r in v["runs"] if r.get("predicted_optimum"))
            if v.get("achieved_loss") is None:
                return None
            return {"compute_budget": float(v["compute_budget"]), "n": run["num_params"],
                    "d": run["num_tokens"], "loss": v["achieved_loss"]}
        except (OSError, ValueError, KeyError, StopIteration, TypeError):
            self.notes.append("scaling_laws: analysis/validation.json unreadable, not drawn")
            return None

    def _law_from_points(self, pts: list[tuple[float, float]]) -> _Band | None:
        if len(pts) < 2:
            return None
        from flops_fit.fitting import fit_power_law

        try:
            pl = fit_power_law([p[0] for p in pts], [p[1] for p in pts])
        except ValueError:
            return None
        m = pl.n_points
        se_center, z = math.nan, 1.96
        a_half = math.nan
        if m > 2:
            from scipy import stats

            z = float(stats.t.ppf(0.975, m - 2))
            lx = np.log([p[0] for p in pts])
            resid = np.log([p[1] for p in pts]) - np.log(pl(np.exp(lx)))
            se_center = math.sqrt(float(resid @ resid) / (m - 2) / m)
            a_half = z * pl.exponent_se
        return _Band(pl.coefficient, pl.exponent, pl.log_x_center, se_center, a_half, z)

    def _mark_prediction(self, ax, c: float, pred: dict[str, Any] | None, key: str,
                         iso, a3, grid: np.ndarray) -> float:
        """A star at the predicted value (the analysis's method) with its interval."""
        ax.axvline(c, color=PRED_COLOR, lw=0.8, ls=":", alpha=0.8)
        y, ci = math.nan, None
        if pred is not None:
            y, ci = _num(pred.get(key)), _pair(pred.get(f"{key}_ci"))
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
        yerr = [[max(y - ci[0], 0)], [max(ci[1] - y, 0)]] if ci else None
        ax.errorbar([c], [y], yerr=yerr, fmt="*", ms=14, color=PRED_COLOR, mec="black",
                    mew=0.6, ecolor="black", elinewidth=1.1, capsize=4, zorder=6,
                    label="prediction")
        text = f"{y:.3f}" if key == "expected_loss" else fmt_sci(y, 3)
        ax.annotate(text, (c, y), xytext=(-10, 8), textcoords="offset points", ha="right",
                    va="bottom", fontsize=8.5, color=PRED_COLOR,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
        return y

    def plot_tokens_per_param(self) -> Figure | None:
        """D/N of every run and of the compute-optimal allocation vs C."""
        import matplotlib

        with matplotlib.rc_context(_RC):
            return self._plot_tokens_per_param()

    def _plot_tokens_per_param(self) -> Figure | None:
        runs = self._runs()
        optima = [o for o in self._budget_optima() if o["n"] > 0 and o["d"] > 0]
        par = self._parametric()
        if not runs and not optima:
            self.notes.append("tokens_per_param: skipped, no completed runs")
            return None
        fig = self._new_figure("tokens_per_param", (8.0, 5.2))
        ax = fig.add_subplot()
        ax.set_xscale("log")
        ax.set_yscale("log")
        if runs:
            c = np.array([r["c"] for r in runs])
            ratio = np.array([r["d"] / r["n"] for r in runs])
            loss = np.array([r["loss"] for r in runs])
            best: dict[float, float] = {}
            sizes: dict[float, set[float]] = {}
            for r in runs:
                best[r["budget"]] = min(best.get(r["budget"], math.inf), r["loss"])
                sizes.setdefault(r["budget"], set()).add(r["n"])
            if any(len(v) >= 3 for v in sizes.values()):  # a grid: distance from the best run
                excess = np.array([100 * (r["loss"] / best[r["budget"]] - 1) for r in runs])
                import matplotlib

                cmap = mcolors.ListedColormap(matplotlib.colormaps["magma"](
                    np.linspace(0, 0.82, 256)))
                sc = ax.scatter(c, ratio, c=excess, cmap=cmap, s=24, edgecolors="none",
                                vmin=0, vmax=max(float(np.percentile(excess, 90)), 0.1),
                                zorder=2)
                ax.scatter([], [], color="grey", s=24,
                           label="runs (colour: loss above the budget's best)")
                fig.colorbar(sc, ax=ax, label="loss above the best run of its budget (%)",
                             pad=0.01, extend="max")
            else:
                sc = ax.scatter(c, ratio, c=loss, cmap="viridis_r", s=22, alpha=0.85,
                                edgecolors="none", zorder=2)
                ax.scatter([], [], color="grey", s=22, label="runs (colour: final loss)")
                fig.colorbar(sc, ax=ax, label=LOSS_LABEL, pad=0.01)
        cs = [o["c"] for o in optima] or [r["c"] for r in runs]
        c_hi = max(max(cs) * 2, (self.predict_budget or 0) * 1.5)
        grid = np.geomspace(min(cs) / 2, c_hi, 200)
        n_law = self._law("n_opt", [(o["c"], o["n"]) for o in optima if o["interior"]])
        d_law = self._law("d_opt", [(o["c"], o["d"]) for o in optima if o["interior"]])
        pred_ratio = math.nan
        if n_law is not None and d_law is not None:
            ax.plot(grid, d_law(grid) / n_law(grid), "-", color=A2_COLOR, lw=1.8,
                    label="Approach 2: $D_{opt}/N_{opt}$")
            if self.predict_budget:
                pred_ratio = float(d_law(self.predict_budget) / n_law(self.predict_budget))
        if par is not None:
            n3, d3, _ = self._parametric_alloc(par, grid)
            if np.all(np.isfinite(d3 / n3)):
                lab = "Approach 3, L(N, D)" + (" (degenerate)" if self._degenerate_note() else "")
                ax.plot(grid, d3 / n3, "--", color=A3_COLOR, lw=1.6, label=lab)
                if self.predict_budget and not math.isfinite(pred_ratio):
                    n_p, d_p, _ = self._parametric_alloc(par, np.array([self.predict_budget]))
                    pred_ratio = float(d_p[0] / n_p[0])
        for o in optima:
            kw = dict(color=A2_COLOR) if o["interior"] else dict(mfc="white", color="grey")
            ax.plot([o["c"]], [o["d"] / o["n"]], "o", ms=7, mec="black", zorder=4, **kw)
        if optima:
            ax.plot([], [], "o", color=A2_COLOR, mec="black", ms=7, label="IsoFLOP optimum")
        ax.axhline(20, color="grey", ls=":", lw=1.2, label="Chinchilla's 20 tokens/parameter")
        core = [r["d"] / r["n"] for r in runs] + [o["d"] / o["n"] for o in optima] + [20.0]
        pred = self.prediction(self.predict_budget) if self.predict_budget else None
        ci = None
        if pred is not None and _num(pred.get("tokens_per_param")) > 0:
            pred_ratio = _num(pred.get("tokens_per_param"))
            ci = _pair(pred.get("tokens_per_param_ci"))
        if self.predict_budget and math.isfinite(pred_ratio):
            yerr = [[max(pred_ratio - ci[0], 0)], [max(ci[1] - pred_ratio, 0)]] if ci else None
            ax.errorbar([self.predict_budget], [pred_ratio], yerr=yerr, fmt="*", ms=15,
                        color=PRED_COLOR, mec="black", mew=0.6, ecolor="black", capsize=4,
                        zorder=5, label=f"prediction at {fmt_sci(self.predict_budget)}: "
                                        f"{fmt_sci(pred_ratio, 3)} tokens/parameter")
        ax.set_xlabel("compute C (FLOPs)")
        _clip_ylim(ax, core + [pred_ratio], log=True)
        ax.set_ylabel("tokens per parameter D/N (tokens/parameter)")
        ax.set_title("Tokens per parameter: every run and the compute-optimal ratio")
        ax.legend(loc="best", framealpha=0.9)
        return fig

    def plot_parametric(self) -> Figure | None:
        """Iso-loss contours of the fitted L(N, D) with the compute-optimal frontier and runs."""
        import matplotlib

        with matplotlib.rc_context(_RC):
            return self._plot_parametric()

    def _plot_parametric(self) -> Figure | None:
        par = self._parametric()
        if par is None:
            self.notes.append("parametric: skipped, the analysis has no usable L(N, D) fit")
            return None
        from flops_fit.fitting import parametric_loss

        runs = self._runs()
        ns = [r["n"] for r in runs]
        ds = [r["d"] for r in runs]
        if self.predict_budget:
            n_p, d_p, _ = self._parametric_alloc(par, np.array([self.predict_budget]))
            ns.append(float(n_p[0]))
            ds.append(float(d_p[0]))
        if not ns:
            self.notes.append("parametric: skipped, no completed runs")
            return None
        n_lim = _log_limits(ns, 0.12)
        d_lim = _log_limits(ds, 0.12)
        gn = np.geomspace(*n_lim, 240)
        gd = np.geomspace(*d_lim, 240)
        nn, dd = np.meshgrid(gn, gd)
        ll = parametric_loss(nn, dd, par["E"], par["A"], par["B"], par["alpha"], par["beta"])
        fig = self._new_figure("parametric", (8.0, 6.0))
        ax = fig.add_subplot()
        ax.set_xscale("log")
        ax.set_yscale("log")
        lo = min([r["loss"] for r in runs] + [float(np.min(ll))])
        hi = float(np.percentile(ll, 97))
        levels = np.geomspace(max(lo * 0.98, par["E"] + 1e-6), max(hi, lo * 1.05), 16)
        cf = ax.contourf(nn, dd, ll, levels=levels, cmap="viridis_r", extend="both",
                         alpha=0.9)
        cs = ax.contour(nn, dd, ll, levels=levels[::3], colors="white", linewidths=0.6,
                        alpha=0.7)
        ax.clabel(cs, fmt=lambda v: f"{v:.2f}", fontsize=7.5, colors="white")
        fig.colorbar(cf, ax=ax, label="L(N, D) (nats/token)", pad=0.01,
                     format=ticker.FormatStrFormatter("%.2f"))
        # iso-FLOP diagonals, C = kappa N D
        kappa = self.kappa
        c_lo, c_hi = kappa * n_lim[0] * d_lim[0], kappa * n_lim[1] * d_lim[1]
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
        cgrid = np.geomspace(c_lo / 10, c_hi * 10, 400)
        fn, fd, _ = self._parametric_alloc(par, cgrid)
        ax.plot(fn, fd, "-", color=PRED_COLOR, lw=2.2, label="compute-optimal frontier")
        if runs:
            ax.scatter([r["n"] for r in runs], [r["d"] for r in runs], s=22, color="white",
                       edgecolors="black", linewidths=0.8, zorder=4, label="runs")
        if self.predict_budget:
            ax.plot([ns[-1]], [ds[-1]], "*", ms=15, color=PRED_COLOR, mec="black", mew=0.7,
                    zorder=5, label=f"optimum at C = {fmt_sci(self.predict_budget)}")
        ax.set_xlim(*n_lim)
        ax.set_ylim(*d_lim)
        ax.grid(False)
        ax.set_xlabel("model size N (parameters)")
        ax.set_ylabel("training data D (tokens)")
        title = (f"Fitted L(N, D) = {par['E']:.3f} + {par['A']:.3g}/N$^{{{par['alpha']:.3f}}}$ "
                 f"+ {par['B']:.3g}/D$^{{{par['beta']:.3f}}}$")
        note = self._degenerate_note()
        kap = "6" if abs(kappa - 6) < 1e-9 else f"{kappa:.3g}"
        title += f"\n{note}" if note else f"\n(dotted lines: iso-FLOP, C = {kap}·N·D FLOPs)"
        ax.set_title(title)
        ax.legend(loc="best", framealpha=0.9)
        return fig

    def plot_fit_quality(self) -> Figure | None:
        """Predicted vs observed loss of the parametric fit, and the residuals."""
        import matplotlib

        with matplotlib.rc_context(_RC):
            return self._plot_fit_quality()

    def _plot_fit_quality(self) -> Figure | None:
        par = self._parametric()
        runs = self._runs()
        if par is None or not runs:
            self.notes.append("fit_quality: skipped, no parametric fit or no completed runs")
            return None
        from flops_fit.fitting import parametric_loss

        n = np.array([r["n"] for r in runs])
        d = np.array([r["d"] for r in runs])
        obs = np.array([r["loss"] for r in runs])
        c = np.array([r["c"] for r in runs])
        pred = parametric_loss(n, d, par["E"], par["A"], par["B"], par["alpha"], par["beta"])
        rel = 100.0 * (obs - pred) / pred
        dropped = self._dropped_ids()
        used = np.array([r["run_id"] not in dropped for r in runs])
        norm = mcolors.LogNorm(vmin=c.min(), vmax=max(c.max(), c.min() * 1.01))
        fig = self._new_figure("fit_quality", (12.5, 5.0))
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
        note = self._degenerate_note()
        if note:
            fig.suptitle(f"Approach 3 {note}", color=PRED_COLOR)
        return fig

    def _dropped_ids(self) -> set[str]:
        prov = self.analysis.get("provenance")
        out: set[str] = set()
        if not isinstance(prov, dict):
            return out
        for key in ("runs_dropped", "dropped", "dropped_runs", "excluded_runs"):
            val = prov.get(key)
            items = val.items() if isinstance(val, dict) else enumerate(val or [])
            for k, v in items:
                if isinstance(v, dict):
                    rid = v.get("run_id")
                    if rid:
                        out.add(str(rid))
                elif isinstance(v, str):
                    out.add(v)
                elif isinstance(val, dict) and isinstance(k, str):
                    out.add(k)
        return out

    def plot_training_curves(self) -> Figure | None:
        """Training loss vs FLOPs of every run with a ``metrics.jsonl``, coloured by N."""
        import matplotlib

        with matplotlib.rc_context(_RC):
            return self._plot_training_curves()

    def _read_curve(self, run_id: str) -> dict[str, np.ndarray] | None:
        path = self.run_dir / "runs" / run_id / METRICS_FILE
        if not run_id or not path.is_file():
            return None
        rows = []
        try:
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a half-written last line of a running job
                    if isinstance(row, dict):
                        rows.append(row)
        except OSError:
            return None
        if len(rows) < 2:
            return None
        out = {}
        for key in ("step", "tokens", "flops", "train_loss", "val_loss"):
            out[key] = np.array([_num(r.get(key)) for r in rows])
        return out

    def _plot_training_curves(self) -> Figure | None:
        pk = self.param_key
        curves = []
        for r in self.records:
            cur = self._read_curve(str(r.get("run_id", "")))
            if cur is None:
                continue
            n = _num(r.get(pk, r.get("num_params")))
            curves.append((n, str(r.get("status", "")), cur))
        if not curves:
            self.notes.append("training_curves: skipped, no runs/*/metrics.jsonl")
            return None
        ns = [n for n, _, _ in curves if n > 0] or [1.0]
        import matplotlib

        cmap = matplotlib.colormaps["plasma"]
        norm = mcolors.LogNorm(vmin=min(ns), vmax=max(max(ns), min(ns) * 1.01))
        fig = self._new_figure("training_curves", (8.5, 5.4))
        ax = fig.add_subplot()
        ax.set_xscale("log")
        has_val = False
        ys_all = []
        for n, status, cur in sorted(curves, key=lambda t: t[0]):
            x = cur["flops"]
            xlabel = "training compute (FLOPs)"
            if not np.isfinite(x).any():
                x, xlabel = cur["tokens"], "training tokens"
            col = cmap(0.9 * norm(n)) if n > 0 else "grey"
            ok = np.isfinite(x) & (x > 0) & np.isfinite(cur["train_loss"])
            if ok.sum() >= 2:
                y = _smooth(cur["train_loss"][ok], 5)
                ax.plot(x[ok], y, color=col, lw=1.1, alpha=0.85,
                        ls="-" if status in ("completed", "") else "--")
                ys_all.append(y)
            okv = np.isfinite(x) & (x > 0) & np.isfinite(cur["val_loss"])
            if okv.any():
                has_val = True
                ax.plot(x[okv], cur["val_loss"][okv], "o", color=col, ms=3.5, mec="black",
                        mew=0.3)
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
        if any(s not in ("completed", "") for _, s, _ in curves):
            handles.append(Line2D([], [], ls="--", color="grey", label="not completed"))
        ax.legend(handles=handles, loc="upper right", framealpha=0.9)
        ax.set_title(f"Training curves of {len(curves)} runs")
        return fig

    # -------------------------------------------------------------------------------- plot_all

    def plotters(self) -> list[tuple[str, Callable[[], Figure | None]]]:
        """``(name, method)`` of every plot, in the order :meth:`plot_all` draws them."""
        return [(name, getattr(self, f"plot_{name}")) for name in PLOT_NAMES]

    def plot_all(self, save: bool = True) -> list[Figure]:
        """Draw every plot the data allow; with ``save`` write ``<name>.png`` and ``.svg``.

        Plots that cannot be drawn are skipped with a line in :attr:`notes`. Returns the
        Figures (their ``get_label()`` is the file stem).
        """
        figures: list[Figure] = []
        for name, method in self.plotters():
            try:
                fig = method()
            except FlopsFitError:
                raise
            except Exception as exc:  # noqa: BLE001 - one odd plot must not sink the others
                self.notes.append(f"{name}: skipped, it could not be drawn "
                                  f"({type(exc).__name__}: {exc})")
                continue
            if fig is not None:
                figures.append(fig)
        if save:
            self.save(figures)
        return figures

    def save(self, figures: Iterable[Figure]) -> list[Path]:
        """Write each Figure as ``<label>.png`` and ``<label>.svg`` in ``output_dir``."""
        import matplotlib

        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FlopsFitError(f"Cannot create {self.output_dir}: {exc.strerror or exc}; "
                                "choose a writable run_dir.") from exc
        paths = []
        for fig in figures:
            stem = fig.get_label() or f"figure_{len(paths)}"
            for fmt in ("png", "svg"):
                path = self.output_dir / f"{stem}.{fmt}"
                try:
                    with matplotlib.rc_context(_RC):  # svg.hashsalt: reproducible SVG ids
                        _save_atomic(fig, path, fmt, self.dpi)
                except OSError as exc:
                    raise FlopsFitError(f"Cannot write {path}: {exc.strerror or exc}; free "
                                        "disk space or choose another run_dir.") from exc
                paths.append(path)
        self.saved = paths
        return paths
