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
