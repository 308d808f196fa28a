"""Calibration of the 95% intervals on synthetic sweeps drawn from known Chinchilla laws.

Usage::

    python benchmarks/calibration.py [--designs default9,default,dense] [--noise 0.005,0.01,0.02]
        [--sweeps 200] [--bootstrap 200] [--jobs 2] [--estimators A2,joint,joint+floor,A3,A3+floor]
        [--law random|prior|cpu] [--save sweeps.json]
    python benchmarks/calibration.py --quick     # 20 sweeps, 50 resamples, default design, 1%

Designs: ``default9`` the current default as planned (:data:`DEFAULT9_DESIGN`), ``default`` the
previous one, ``dense``. Each sweep draws a law (``--law random``, the default) with
``flops_fit.fitting.synthetic.draw_law`` (E in [0.6, 2], alpha and beta in [0.25, 0.6], the true
optimum at 30-300 tokens/parameter at the middle budget, reducible loss 0.4-1.5 nats there),
simulates the design's runs with log-normal noise, and asks every
estimator for its 95% interval of the exponent a, of N_opt and of the optimal loss at 10x the
largest budget. Estimators:

* ``A2``: today's per-budget parabolas (``fit_isoflop``, case bootstrap within budgets);
* ``joint``: the joint IsoFLOP fit, free floor (``fit_joint``, parametric bootstrap);
* ``joint+floor``: the joint fit with the forward-validated floor (``fit_joint_floor``);
* ``A3``: Approach 3 with a free floor (``fit_parametric`` + ``bootstrap_parametric``);
* ``A3+floor``: Approach 3 with the forward-validated floor (``fit_parametric_floor``);
* ``joint+skew``: the joint fit with a skewed profile (``fit_joint_skew``; not in the default
  list): a diagnostic, not a shipped predictor.

``--law prior|cpu`` simulates every sweep from one fixed law (:data:`LAWS`) instead;
``--bootstrap 0`` scores point estimates only (fast).

Printed per design, noise and estimator: sweeps with an interval / all (an estimator that
declines to give one is counted here, not in the coverage), coverage of the truth (a, N_opt,
loss), median interval width (a: hi - lo; N_opt: hi / lo; loss: (hi - lo) / truth), median
error of the point estimate (a: absolute; N_opt and loss: relative, %), and the share of
bootstrap resamples that failed; then the signed errors (median and quartiles: the bias).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from flops_fit.fitting import (  # noqa: E402
    bootstrap_joint_skew,
    bootstrap_parametric,
    fit_isoflop,
    fit_joint_skew,
    fit_parametric,
    optimal_allocation,
    parametric_loss,
    percentile_interval,
)
from flops_fit.fitting.floor import fit_joint_floor, fit_parametric_floor  # noqa: E402
from flops_fit.fitting.joint import fit_joint  # noqa: E402
from flops_fit.fitting.synthetic import DESIGNS as BUILTIN_DESIGNS  # noqa: E402
from flops_fit.fitting.synthetic import (  # noqa: E402
    Design,
    law_from_optimum,
    random_sweep,
    simulate_sweep,
)

#: the current default sweep (conf/budgets/cpu.yaml: 9 budgets sqrt(2) apart over 2.5e11..4e12,
#: 5 sizes over span 6) as the planner laid it out for the default GPT: each budget's real
#: parameter counts (the GPT's width steps and ``min_steps`` leave 3-5 sizes per budget, 40 runs)
_W = (12368, 37024, 73968, 123200, 184720, 369312)
DEFAULT9_DESIGN = Design(
    (2.5e11, 3.54e11, 5e11, 7.07e11, 1e12, 1.41e12, 2e12, 2.83e12, 4e12), 5, name="default9",
    planned=(_W[:3], _W[:3], _W[:4], _W[:5], _W[:5], _W[:5], _W[:5], _W[:4] + _W[5:], _W[1:]))
DESIGNS = {**BUILTIN_DESIGNS, "default9": DEFAULT9_DESIGN}

ESTIMATORS = ("A2", "joint", "joint+floor", "A3", "A3+floor", "joint+skew")
#: fixed laws for ``--law`` (E, alpha, beta, tokens/param and reducible loss at the middle
#: budget): ``prior``, the planner's prior (analysis/forecast.py); ``cpu``, the default CPU run's
#: Approach 3 fit (E 1.13, alpha 0.72, beta 0.53; at 1e12 its optimum has 106 tokens/param and
#: L* - E = 0.62). ``random`` draws a law per sweep (``draw_law``).
LAWS = {"prior": (1.0, 0.35, 0.45, 100.0, 0.8), "cpu": (1.129, 0.72, 0.53, 106.0, 0.62)}
#: Approach 3's Huber threshold: the shipped ``analysis.huber_delta`` (the tables of
#: docs/calibration.md measured before 2026-12-05 14:00 used fit_parametric's 1e-3)
A3_DELTA = 1e-2
QUANTITIES = ("a", "n_opt", "loss_opt")
NAN3 = {q: (math.nan, math.nan, math.nan) for q in QUANTITIES}  # (point, lo, hi)


def _points(a: float, n_opt: float, loss_opt: float) -> dict:
    """Point estimates without intervals (``--bootstrap 0``, or an estimator with none)."""
    return {"a": (a, math.nan, math.nan), "n_opt": (n_opt, math.nan, math.nan),
            "loss_opt": (loss_opt, math.nan, math.nan)}


def _a2(sw, C, B, seed):
    fit = fit_isoflop(sw.budget, sw.n, sw.d, sw.loss, sw.c, n_bootstrap=B, seed=seed)
    if not fit.available or fit.loss_opt is None:
        return NAN3, 0, B
    if fit.bootstrap is None:
        return _points(fit.n_opt.exponent, float(fit.n_opt(C)), float(fit.loss_opt(C))), 0, 0
    s = fit.bootstrap.samples
    n_s = np.exp(s[:, 0] + s[:, 1] * math.log(C))
    l_s = np.exp(s[:, 4] + s[:, 5] * math.log(C))
    out = {"a": (fit.n_opt.exponent, *percentile_interval(s[:, 1])),
           "n_opt": (float(fit.n_opt(C)), *percentile_interval(n_s)),
           "loss_opt": (float(fit.loss_opt(C)), *percentile_interval(l_s))}
    return out, fit.bootstrap.n_failed, B


def _joint(fit, C, B):
    if not fit.available or not fit.precise:
        return NAN3, (fit.bootstrap.n_failed if fit.bootstrap else 0), B
    if fit.bootstrap is None:
        return _points(fit.a, float(fit.n_opt(C)), float(fit.loss_opt(C))), 0, 0
    out = {"a": (fit.a, *fit.interval("a")),
           "n_opt": (fit.n_opt(C), *fit.interval("n_opt", C)),
           "loss_opt": (fit.loss_opt(C), *fit.interval("loss_opt", C))}
    return out, fit.bootstrap.n_failed, B


def _skew(sk, C, B, seed):
    if not B:
        return _points(sk.a, float(sk.n_opt(C)), float(sk.loss_opt(C))), 0, 0
    boot = bootstrap_joint_skew(sk, n_resamples=B, seed=seed)
    if not boot.usable:
        return NAN3, boot.n_failed, B
    out = {"a": (sk.a, *sk.interval("a")), "n_opt": (float(sk.n_opt(C)), *sk.interval("n_opt", C)),
           "loss_opt": (float(sk.loss_opt(C)), *sk.interval("loss_opt", C))}
    return out, boot.n_failed, B


def _a3(fit, boot, C):
    if boot is None:
        n0, d0 = fit.allocation(C)
        return _points(fit.a, float(n0), float(fit.predict(n0, d0))), 0, 0
    s = boot.samples
    n_s, d_s = optimal_allocation(C, s[:, 1], s[:, 2], s[:, 3], s[:, 4])
    l_s = parametric_loss(n_s, d_s, *(s[:, j] for j in range(5)))
    n0, d0 = fit.allocation(C)
    out = {"a": (fit.a, *boot.interval("a")),
           "n_opt": (float(n0), *percentile_interval(n_s)),
           "loss_opt": (float(fit.predict(n0, d0)), *percentile_interval(l_s))}
    return out, boot.n_failed, boot.n_resamples


def one_sweep(job):
    """Every estimator on one sweep: ``{estimator: (results, n_failed, n_resamples, seconds)}``."""
    design_name, noise, seed, B, estimators, law = job
    design = DESIGNS[design_name]
    sw = random_sweep(design, noise, seed) if law == "random" else simulate_sweep(
        design, law_from_optimum(*LAWS[law][:3], design.middle_budget, *LAWS[law][3:]), noise,
        seed)
    C = design.target_budget
    res = {"truth": sw.truth(C), "law": sw.law.__dict__}
    for est in estimators:
        t = time.perf_counter()
        try:
            if est == "A2":
                r = _a2(sw, C, B, seed)
            elif est == "joint":
                r = _joint(fit_joint(sw.budget, sw.n, sw.d, sw.loss, sw.c, n_bootstrap=B,
                                     seed=seed), C, B)
            elif est == "joint+floor":
                r = _joint(fit_joint_floor(sw.budget, sw.n, sw.d, sw.loss, sw.c, n_bootstrap=B,
                                           seed=seed), C, B)
            elif est == "joint+skew":  # the skewed profile (fitting/asymmetry.py)
                fit = fit_joint(sw.budget, sw.n, sw.d, sw.loss, sw.c)
                r = (NAN3, 0, B) if not (fit.available and fit.precise) else \
                    _skew(fit_joint_skew(fit), C, B, seed)
            elif est == "A3":
                fit = fit_parametric(sw.n, sw.d, sw.loss, huber_delta=A3_DELTA)
                r = _a3(fit, bootstrap_parametric(fit, sw.n, sw.d, sw.loss, n_resamples=B,
                                                  seed=seed) if B else None, C)
            else:
                fit, boot, _ = fit_parametric_floor(sw.budget, sw.n, sw.d, sw.loss,
                                                    n_bootstrap=B, seed=seed)
                boot = boot if B else None
                r = _a3(fit, boot, C)
        except Exception as exc:  # a crash is a result too: no interval
            print(f"{est} crashed on seed {seed}: {exc!r}", file=sys.stderr)
            r = (NAN3, 0, 0)
        res[est] = (*r, time.perf_counter() - t)
    return res


def summarise(results: list[dict], est: str) -> dict:
    truth = [r["truth"] for r in results]
    rows = [r[est] for r in results]
    out = {"n": len(rows), "failed": sum(r[1] for r in rows),
           "resamples": max(sum(r[2] for r in rows), 1), "seconds": sum(r[3] for r in rows)}
    for q in QUANTITIES:
        pt = np.array([r[0][q][0] for r in rows], dtype=float)
        lo = np.array([r[0][q][1] for r in rows], dtype=float)
        hi = np.array([r[0][q][2] for r in rows], dtype=float)
        tr = np.array([t[q] for t in truth])
        ok = np.isfinite(lo) & np.isfinite(hi)
        out[f"avail_{q}"] = int(ok.sum())
        out[f"cov_{q}"] = float(np.mean((lo[ok] <= tr[ok]) & (tr[ok] <= hi[ok]))) if ok.any() \
            else math.nan
        with np.errstate(all="ignore"):
            signed = pt - tr if q == "a" else 100 * (pt / tr - 1)
            width = hi - lo if q == "a" else hi / lo if q == "n_opt" else (hi - lo) / tr
        err = np.abs(signed)
        out[f"w_{q}"] = float(np.median(width[ok])) if ok.any() else math.nan
        fin = np.isfinite(err)
        out[f"points_{q}"] = int(fin.sum())
        out[f"e_{q}"] = float(np.median(err[fin])) if fin.any() else math.nan
        out[f"b_{q}"] = tuple(float(np.percentile(signed[fin], p)) for p in (50, 25, 75)) \
            if fin.any() else (math.nan,) * 3
    return out


def fmt_table(blocks: list[tuple[str, float, str, dict]]) -> str:
    head = ("| design | noise | estimator | with interval | cover a | cover N_opt | cover loss "
            "| width a | width N_opt (hi/lo) | width loss | err a | err N_opt | err loss "
            "| failed resamples | s/sweep |")
    lines = [head, "|" + "---|" * 15]
    for design, noise, est, s in blocks:
        lines.append(
            f"| {design} | {noise:.1%} | {est} | {s['avail_n_opt']}/{s['n']} "
            f"| {s['cov_a']:.1%} | {s['cov_n_opt']:.1%} | {s['cov_loss_opt']:.1%} "
            f"| {s['w_a']:.3f} | {s['w_n_opt']:.2f}x | {s['w_loss_opt']:.2%} "
            f"| {s['e_a']:.3f} | {s['e_n_opt']:.1f}% | {s['e_loss_opt']:.2f}% "
            f"| {s['failed'] / s['resamples']:.1%} | {s['seconds'] / s['n']:.2f} |")
    return "\n".join(lines)


def fmt_bias(blocks: list[tuple[str, float, str, dict]], law: str) -> str:
    """Signed errors of the point estimates: median [quartiles]; a absolute, N_opt and the
    loss at the target relative."""
    lines = ["| design | law | noise | estimator | sweeps with a point | bias a [IQR] "
             "| bias N_opt [IQR] | bias loss | median abs err a | median abs err N_opt |",
             "|" + "---|" * 10]
    for design, noise, est, s in blocks:
        (ba, qa1, qa3), (bn, qn1, qn3) = s["b_a"], s["b_n_opt"]
        lines.append(
            f"| {design} | {law} | {noise:.1%} | {est} | {s['points_n_opt']}/{s['n']} "
            f"| {ba:+.3f} [{qa1:+.3f}, {qa3:+.3f}] | {bn:+.1f}% [{qn1:+.1f}%, {qn3:+.1f}%] "
            f"| {s['b_loss_opt'][0]:+.2f}% | {s['e_a']:.3f} | {s['e_n_opt']:.1f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--designs", default="default,dense")
    p.add_argument("--noise", default="0.005,0.01,0.02")
    p.add_argument("--sweeps", type=int, default=200)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="first sweep seed")
    p.add_argument("--estimators", default=",".join(ESTIMATORS[:5]))
    p.add_argument("--save", default=None, help="write every sweep's results to this JSON file")
    p.add_argument("--law", default="random", choices=("random", *LAWS),
                   help="random: a law drawn per sweep; prior/cpu: one fixed law (LAWS)")
    p.add_argument("--quick", action="store_true",
                   help="20 sweeps, 50 resamples, default design, 1%% noise")
    a = p.parse_args(argv)
    if a.quick:
        a.designs, a.noise, a.sweeps, a.bootstrap = "default", "0.01", 20, 50
    estimators = tuple(e for e in a.estimators.split(",") if e)
    unknown = set(estimators) - set(ESTIMATORS)
    if unknown:
        p.error(f"unknown estimator(s) {sorted(unknown)}; known: {', '.join(ESTIMATORS)}")
    blocks, saved = [], []
    t0 = time.time()
    for design in a.designs.split(","):
        for noise in (float(x) for x in a.noise.split(",")):
            jobs = [(design, noise, a.seed + i, a.bootstrap, estimators, a.law)
                    for i in range(a.sweeps)]
            t = time.time()
            if a.jobs > 1:
                with Pool(a.jobs) as pool:
                    results = pool.map(one_sweep, jobs, chunksize=4)
            else:
                results = [one_sweep(j) for j in jobs]
            saved += [{"design": design, "noise": noise, "seed": j[2], **r}
                      for j, r in zip(jobs, results, strict=True)]
            for est in estimators:
                blocks.append((design, noise, est, summarise(results, est)))
            print(f"# {design}, noise {noise:.1%}: {a.sweeps} sweeps in {time.time() - t:.0f} s",
                  file=sys.stderr, flush=True)
            print(fmt_table(blocks[-len(estimators):]), flush=True)
    print(f"\n## all ({a.sweeps} sweeps each, law {a.law}, {a.bootstrap} resamples, target 10x "
          f"the largest budget; {time.time() - t0:.0f} s)\n")
    if a.save:
        Path(a.save).write_text(json.dumps(saved, default=float))
    if a.bootstrap:
        print(fmt_table(blocks) + "\n")
    print(fmt_bias(blocks, a.law))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
