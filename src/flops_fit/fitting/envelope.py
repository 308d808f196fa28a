"""Approach 1: the lower envelope of the training curves, then N_opt = k * C**a."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flops_fit.fitting.common import (
    PowerLaw,
    fit_power_law,
)

# --------------------------------------------------------------------------------------------
# Approach 1: lower envelope of training curves
# --------------------------------------------------------------------------------------------


@dataclass
class EnvelopeFit:
    """Result of Approach 1: ``N_opt = k * C**a`` from the lower envelope of training curves.

    ``levels`` are the FLOP levels used (shape ``(k,)``), ``winners`` the N of the run with the
    lowest loss at each; ``law`` is None (and ``message`` says why) when fewer than two distinct
    sizes ever win.
    """

    law: PowerLaw | None
    levels: np.ndarray
    winners: np.ndarray
    n_curves: int
    message: str = ""


def fit_envelope(
    curves: Sequence[tuple[float, np.ndarray, np.ndarray]], *, n_levels: int = 200,
    smooth: int = 5,
) -> EnvelopeFit:
    """Chinchilla's Approach 1.

    ``curves`` holds one ``(N, flops, loss)`` per run: its parameter count and its training
    curve (cumulative FLOPs and loss, arrays of equal length). Each curve is smoothed by a
    centred moving average of ``smooth`` points and interpolated in log FLOPs; at ``n_levels``
    log-spaced FLOP levels the run with the lowest loss among those whose curve covers the level
    (at least two) wins. ``N_opt = k * C**a`` is fitted to the winners.
    """
    prepared = []
    for nn, f, lo in curves:
        f = np.asarray(f, dtype=float)
        lo = np.asarray(lo, dtype=float)
        ok = np.isfinite(f) & np.isfinite(lo) & (f > 0) & (lo > 0)
        f, lo = f[ok], lo[ok]
        if f.size < 2:
            continue
        order = np.argsort(f)
        f, lo = f[order], lo[order]
        if smooth > 1 and lo.size >= smooth:
            kernel = np.ones(smooth) / smooth
            pad = smooth // 2
            lo = np.convolve(np.pad(lo, pad, mode="edge"), kernel, mode="valid")[: f.size]
        prepared.append((float(nn), np.log(f), lo))
    empty = EnvelopeFit(None, np.array([]), np.array([]), len(prepared))
    if len(prepared) < 2:
        empty.message = "Approach 1 needs training curves of at least two runs."
        return empty
    lo_f = min(p[1][0] for p in prepared)
    hi_f = max(p[1][-1] for p in prepared)
    grid = np.linspace(lo_f, hi_f, n_levels)
    levels, winners = [], []
    for g in grid:
        best_n, best_l, count = math.nan, math.inf, 0
        for nn, lf, lo in prepared:
            if lf[0] <= g <= lf[-1]:
                count += 1
                v = float(np.interp(g, lf, lo))
                if v < best_l:
                    best_l, best_n = v, nn
        if count >= 2:
            levels.append(math.exp(g))
            winners.append(best_n)
    levels_a, winners_a = np.array(levels), np.array(winners)
    if np.unique(winners_a).size < 2:
        return EnvelopeFit(None, levels_a, winners_a, len(prepared),
                           "Approach 1 found fewer than two model sizes on the loss envelope.")
    return EnvelopeFit(fit_power_law(levels_a, winners_a), levels_a, winners_a, len(prepared))


# --------------------------------------------------------------------------------------------
# Approach 1 from run endpoints (wsd: each run's cooldown end), interval by resampling runs
# --------------------------------------------------------------------------------------------


def endpoint_winners(budget: np.ndarray, c: np.ndarray, n: np.ndarray, loss: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The envelope of run endpoints: per budget, the ``(C, N)`` of the run with lowest loss.

    All arrays have shape ``(runs,)``; one point per run (its final loss at its own C).
    """
    levels, winners = [], []
    for key in np.unique(budget):
        m = np.flatnonzero(budget == key)
        best = m[int(np.argmin(loss[m]))]
        levels.append(float(c[best]))
        winners.append(float(n[best]))
    return np.array(levels), np.array(winners)


def fit_endpoint_envelope(budget: np.ndarray, c: np.ndarray, n: np.ndarray, loss: np.ndarray,
                          *, n_resamples: int = 200, ci: float = 0.95, seed: int = 0
                          ) -> tuple[EnvelopeFit, tuple[float, float] | None]:
    """Approach 1 on run endpoints, and a ``ci`` interval of its exponent from resampling runs.

    Each resample draws the runs with replacement (shape ``(runs,)``), takes each budget's
    best run and refits ``N_opt = k * C**a``; resamples with fewer than two distinct winners are
    skipped. The interval is None when fewer than half of the resamples give a law.
    """
    budget, c, n, loss = (np.asarray(v, dtype=float) for v in (budget, c, n, loss))
    levels, winners = endpoint_winners(budget, c, n, loss)
    if np.unique(winners).size < 2:
        return EnvelopeFit(None, levels, winners, int(n.size),
                           "Approach 1 found fewer than two model sizes winning a budget."), None
    fit = EnvelopeFit(fit_power_law(levels, winners), levels, winners, int(n.size))
    rng = np.random.default_rng(seed)
    exps = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n.size, n.size)
        lv, wn = endpoint_winners(budget[idx], c[idx], n[idx], loss[idx])
        if np.unique(wn).size >= 2:
            exps.append(fit_power_law(lv, wn).exponent)
    if n_resamples == 0 or len(exps) < n_resamples / 2:
        return fit, None
    tail = 100.0 * (1.0 - ci) / 2.0
    lo, hi = np.percentile(exps, [tail, 100.0 - tail])
    return fit, (float(lo), float(hi))
