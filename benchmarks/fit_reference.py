"""Benchmark the fits of flops_fit.fitting against the Chinchilla replication and a known law.

Usage::

    python benchmarks/fit_reference.py [CSV] [--seeds 100] [--resamples 1000] [--half-width 1.5]

1. Reference data: the 245 Chinchilla runs of Besiroglu et al. (2024) (``chinchilla_epoch.csv``),
   the 5 highest losses dropped, ``D = C / (6 N)``. Our Approach 3 (Huber delta=1e-3 on log
   loss, summed) against the replication's E, A, B, alpha, beta (E, alpha, beta within 1%; A, B
   within 3% of either published optimum), our bootstrap standard errors of alpha and beta
   against 0.0154 and 0.0206 (within 25%), and the wall time of the fit plus a 1,000-resample
   bootstrap (under 10 s).
2. Synthetic IsoFLOP sweeps from a known law (E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28):
   6 budgets log-spaced over 1e17..1e20, 10 sizes per budget log-spaced over
   ``N_opt * 10**[-w, w]`` around the true optimum (``w = --half-width`` decades), 1%
   multiplicative log-normal noise on the loss. Mean |relative error| of N_opt at 1e24 for
   Approach 2 and Approach 3 (Huber and least squares) over the noise seeds; target <= 8% for
   Approach 3 with the shipped loss settings (``AnalysisConfig().loss``/``huber_delta``). The
   data are Approach 3's own functional form extrapolated four decades, a check of the
   numerics that favours Approach 3 by construction; which approach predicts by default
   (``predict_with``) is decided on real runs (holdout and ``validate``, see the README), and
   its row is marked.

3. Held-out budgets of the reference: the runs grouped into Hoffmann et al.'s nine IsoFLOP
   budgets (6e18..3e21, each run to the nearest in log C), both approaches fitted on the
   budgets up to a cut-off and scored at 1e21 and 3e21 against those budgets' own parabola
   minima: relative error of N_opt and of the loss (info; the measurement behind the default
   ``predict_with``, with the CPU sweeps' in the README); also the joint fit with a skewed
   profile (``fit_joint_skew``) and its skew s (a finding, docs/calibration.md).

Prints PASS/FAIL per target; exit status 0 when all pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from flops_fit.analysis.analyzer import AnalysisConfig  # noqa: E402
from flops_fit.fitting import (  # noqa: E402
    bootstrap_parametric,
    fit_isoflop,
    fit_joint,
    fit_joint_skew,
    fit_parametric,
    optimal_allocation,
    parametric_loss,
)

#: Besiroglu et al. (2024): plain Huber grid optimum and the likelihood (headline) fit
REPLICATION = {
    "huber grid": {"E": 1.8172, "A": 477.84, "B": 2143.86, "alpha": 0.3473, "beta": 0.3672},
    "likelihood": {"E": 1.8169, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658},
}
REPLICATION_SE = {"E": 0.0257, "A": 124.5, "B": 1293.0, "alpha": 0.0154, "beta": 0.0206}
TOLERANCE = {"E": 0.01, "alpha": 0.01, "beta": 0.01, "A": 0.03, "B": 0.03}
SE_TOLERANCE = 0.25
TIME_TARGET_S = 10.0
SYNTH_LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
SYNTH_TARGET = 0.08
TARGET_C = 1e24


def find_csv(arg: str | None) -> Path:
    """The reference CSV: the argument, else ../shared/reference (cwd, then the repository's
    parent), else the copy in tests/data."""
    candidates = [Path(arg)] if arg else []
    candidates += [
        Path("../shared/reference/chinchilla_epoch.csv"),
        REPO.parent / "shared" / "reference" / "chinchilla_epoch.csv",
        REPO / "tests" / "data" / "chinchilla_epoch.csv",
    ]
    for p in candidates:
        if p.is_file():
            return p
    sys.exit(f"chinchilla_epoch.csv not found (tried {', '.join(map(str, candidates))}); "
             "pass its path as the first argument.")


def load_reference(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, loss) of the reference runs minus the 5 highest losses, D = C / (6 N)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    n = np.array([float(r["Model Size"]) for r in rows])
    c = np.array([float(r["Training FLOP"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    keep = np.argsort(loss)[:-5]
    return n[keep], c[keep] / (6.0 * n[keep]), loss[keep]


#: Hoffmann et al.'s IsoFLOP budgets (their Figure 3), which the reference runs were read from
HOFFMANN_BUDGETS = np.array([6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21])


def holdout_part(path: Path) -> None:
    """Fit on the budgets up to a cut-off, predict a larger budget's optimum (info only)."""
    n, d, loss = load_reference(path)
    cfg = AnalysisConfig()
    c = 6.0 * n * d
    nearest = np.argmin(np.abs(np.log(c)[:, None] - np.log(HOFFMANN_BUDGETS)[None, :]), axis=1)
    budget = HOFFMANN_BUDGETS[nearest]
    own = {o.compute_budget: o for o in fit_isoflop(budget, n, d, loss, c).budgets}
    print("## Held-out budgets of the reference (runs grouped into Hoffmann's nine budgets; "
          "error = predicted / the held-out budget's own parabola minimum - 1)\n")
    skew = fit_joint_skew(fit_joint(budget, n, d, loss, c))
    print(f"Skewed joint profile on all runs (fitting/asymmetry.py): s = {skew.skew:+.3f} "
          f"(se {skew.skew_se:.3f}; s > 0: steeper on the large-N side), F = {skew.f_stat:.1f}, "
          f"p = {skew.p_value:.2g}, a = {skew.a:.3f}\n")
    print("| fitted on budgets | predicted budget | x beyond | Approach 2 N_opt | Approach 2 loss "
          "| Approach 3 N_opt | Approach 3 loss | joint N_opt | joint loss | joint+skew N_opt "
          "| joint+skew loss | s (se) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for target in (3e21, 1e21):
        ref = own[target]
        at = float(np.exp(np.mean(np.log(c[budget == target]))))
        for cut in (1e21, 6e20, 3e20, 1e20):
            if cut >= target:
                continue
            m = budget <= cut
            iso = fit_isoflop(budget[m], n[m], d[m], loss[m], c[m])
            par = fit_parametric(n[m], d[m], loss[m], loss_type=cfg.loss,
                                 huber_delta=cfg.huber_delta)  # the shipped Approach 3
            joint = fit_joint(budget[m], n[m], d[m], loss[m], c[m])
            sk = fit_joint_skew(joint)
            pn, pd = par.allocation(at)
            errs = (float(iso.n_opt(at)) / ref.optimal_params - 1,
                    float(iso.loss_opt(at)) / ref.optimal_loss - 1,
                    float(pn) / ref.optimal_params - 1,
                    float(par.predict(pn, pd)) / ref.optimal_loss - 1,
                    float(joint.n_opt(at)) / ref.optimal_params - 1,
                    float(joint.loss_opt(at)) / ref.optimal_loss - 1,
                    float(sk.n_opt(at)) / ref.optimal_params - 1,
                    float(sk.loss_opt(at)) / ref.optimal_loss - 1)
            print(f"| 6e18..{cut:.0e} | {target:.0e} | {at / cut:.1f} | {errs[0]:+.1%} | "
                  f"{errs[1]:+.2%} | {errs[2]:+.1%} | {errs[3]:+.2%} | {errs[4]:+.1%} | "
                  f"{errs[5]:+.2%} | {errs[6]:+.1%} | {errs[7]:+.2%} | {sk.skew:+.3f} "
                  f"({sk.skew_se:.3f}) |")
    print()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def reference_part(path: Path, resamples: int) -> list[bool]:
    n, d, loss = load_reference(path)
    t0, c0 = time.perf_counter(), time.process_time()
    fit = fit_parametric(n, d, loss, loss_type="huber", huber_delta=1e-3)
    t_fit = time.perf_counter() - t0
    boot = bootstrap_parametric(fit, n, d, loss, n_resamples=resamples, seed=0)
    t_all, cpu = time.perf_counter() - t0, time.process_time() - c0
    oks = []
    print(f"## Chinchilla replication data ({path}; {n.size} runs after dropping the 5 highest "
          "losses; D = C/6N)\n")
    print("| quantity | ours | replication (Huber grid) | replication (likelihood) | target | "
          "result |")
    print("|---|---|---|---|---|---|")
    for k in ("E", "A", "B", "alpha", "beta"):
        ours = getattr(fit, k)
        refs = [REPLICATION[m][k] for m in REPLICATION]
        errs = [abs(ours / r - 1) for r in refs]
        ok = min(errs) <= TOLERANCE[k]
        oks.append(ok)
        print(f"| {k} | {ours:.5g} | {refs[0]:.5g} ({errs[0]:+.2%}) | {refs[1]:.5g} "
              f"({errs[1]:+.2%}) | within {TOLERANCE[k]:.0%} of either | {verdict(ok)} |")
    print(f"| a = beta/(alpha+beta) | {fit.a:.4f} | 0.513 | | info | |")
    c = 5.88e23
    nn, dd = fit.allocation(c)
    print(f"| tokens/param at 5.88e23 | {float(dd / nn):.1f} | about 18 | | info | |")
    print(f"| degenerate | {fit.degenerate} | | | not degenerate | {verdict(not fit.degenerate)} |")
    oks.append(not fit.degenerate)
    print()
    print(f"Bootstrap, {resamples} resamples of the runs (replication: 4,000):\n")
    print("| SE of | ours | replication | target | result |")
    print("|---|---|---|---|---|")
    for k in ("E", "A", "B", "alpha", "beta"):
        se = boot.se(k)
        ref = REPLICATION_SE[k]
        if k in ("alpha", "beta"):
            ok = abs(se / ref - 1) <= SE_TOLERANCE
            oks.append(ok)
            print(f"| {k} | {se:.4g} | {ref:.4g} ({se / ref - 1:+.1%}) | within "
                  f"{SE_TOLERANCE:.0%} | {verdict(ok)} |")
        else:
            print(f"| {k} | {se:.4g} | {ref:.4g} ({se / ref - 1:+.1%}) | info | |")
    lo, hi = boot.interval("a")
    print(f"| a: 95% interval | [{lo:.3f}, {hi:.3f}] | | info | |")
    print()
    ok = t_all < TIME_TARGET_S
    oks.append(ok)
    print(f"Wall time: fit {t_fit:.2f} s, fit + {resamples}-resample bootstrap {t_all:.2f} s "
          f"(CPU {cpu:.2f} s; target < {TIME_TARGET_S:.0f} s): {verdict(ok)}\n")
    return oks


def synthetic_sweep(seed: int, half_width: float):
    """(budget, N, D, loss) of one noisy IsoFLOP sweep of SYNTH_LAW."""
    law = SYNTH_LAW
    rng = np.random.default_rng(seed)
    budgets = np.logspace(17, 20, 6)
    rows = []
    for c in budgets:
        n_opt, _ = optimal_allocation(c, law["A"], law["B"], law["alpha"], law["beta"])
        n = n_opt * np.logspace(-half_width, half_width, 10)
        d = c / (6.0 * n)
        loss = parametric_loss(n, d, *law.values()) * np.exp(0.01 * rng.standard_normal(10))
        rows += [(c, a, b, e) for a, b, e in zip(n, d, loss, strict=True)]
    return (np.array(col) for col in zip(*rows, strict=True))


def synthetic_part(seeds: int, half_width: float) -> list[bool]:
    law = SYNTH_LAW
    true_n, _ = optimal_allocation(TARGET_C, law["A"], law["B"], law["alpha"], law["beta"])
    cfg = AnalysisConfig()  # the shipped loss settings decide which Approach 3 is targeted
    names = {"isoflop": "Approach 2 (IsoFLOP)",
             "huber_paper": "Approach 3, Huber delta=0.001 (Chinchilla's)",
             "huber": f"Approach 3, Huber delta={cfg.huber_delta:g}",
             "lsq": "Approach 3, least squares on log loss"}
    target_key = names[cfg.loss]
    default_key = names["isoflop"] if cfg.predict_with == "isoflop" else target_key
    errs: dict[str, list[float]] = {v: [] for v in names.values()}
    excluded = 0
    t0 = time.perf_counter()
    for seed in range(seeds):
        budget, n, d, loss = synthetic_sweep(seed, half_width)
        iso = fit_isoflop(budget, n, d, loss)
        excluded += sum(not o.interior for o in iso.budgets)
        errs[names["isoflop"]].append(
            abs(float(iso.n_opt(TARGET_C)) / true_n - 1) if iso.available else math.nan)
        for key, lt, delta in (("huber_paper", "huber", 1e-3),
                               ("huber", "huber", cfg.huber_delta), ("lsq", "lsq", 1e-3)):
            fit = fit_parametric(n, d, loss, loss_type=lt, huber_delta=delta)
            errs[names[key]].append(abs(float(fit.allocation(TARGET_C)[0]) / true_n - 1))
    dt = time.perf_counter() - t0
    print(f"## Synthetic IsoFLOP sweeps ({seeds} noise seeds; 6 budgets 1e17..1e20 x 10 sizes "
          f"over N_opt x 10^[-{half_width:g}, {half_width:g}]; 1% noise; true N_opt(1e24) = "
          f"{true_n:.4g})\n")
    print("| estimator | mean abs rel error of N_opt(1e24) | +- s.e. | median | seeds 0-19 | "
          "target | result |")
    print("|---|---|---|---|---|---|---|")
    oks = []
    for key, e in errs.items():
        arr = np.array(e)
        mean = float(np.nanmean(arr))
        sem = float(np.nanstd(arr, ddof=1) / math.sqrt(np.isfinite(arr).sum()))
        targeted = key == target_key
        ok = mean <= SYNTH_TARGET
        if targeted:
            oks.append(ok)
        label = f"{key} (default predictor)" if key == default_key else key
        print(f"| {label} | {mean:.1%} | {sem:.1%} | {float(np.nanmedian(arr)):.1%} | "
              f"{float(np.nanmean(arr[:20])):.1%} | "
              f"{'<= 8%' if targeted else 'info'} | {verdict(ok) if targeted else ''} |")
    print(f"\n({excluded} budget fits had an edge minimum and were excluded by Approach 2; "
          f"{dt:.1f} s for {4 * seeds} fits.)\n")
    return oks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", nargs="?", default=None,
                    help="chinchilla_epoch.csv (default ../shared/reference/chinchilla_epoch.csv)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=100, help="noise seeds (at least 20)")
    ap.add_argument("--half-width", type=float, default=1.5,
                    help="decades either side of the true optimum the sizes span")
    args = ap.parse_args(argv)
    if args.seeds < 20:
        ap.error("--seeds must be at least 20")
    path = find_csv(args.csv)
    oks = reference_part(path, args.resamples)
    holdout_part(path)
    oks += synthetic_part(args.seeds, args.half_width)
    print(f"Overall: {sum(oks)}/{len(oks)} targets met.")
    return 0 if all(oks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
