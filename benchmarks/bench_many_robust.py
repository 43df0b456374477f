"""Many robust fits at once: gradfit.fit_many by mae and huber against scipy loops.

The problem: B Gaussians ``A*exp(-(x-mu)^2/(2*s^2))+C``, 25 points each, noise 0.05 and
two outliers a problem (+-1), the same starting guesses for every method. The baselines
are what a scipy user writes for one problem, looped (timed on ``--scipy-sample``):

- huber: ``least_squares(loss="huber", f_scale=delta)``, whose minimiser is Huber's;
- mae: ``minimize(method="Nelder-Mead")`` on the mean absolute error (scipy has no exact
  least-absolute-deviations fit of a nonlinear model).

Prints fits/s of each (the median of ``--rounds``), the ratio, how often gradfit's loss is
at or below the baseline's on the same problem (1e-9 relative; where it is above, each
method ended in a different local minimum), how many fits gradfit certified (converged),
and checks a sample against gradfit.fit (1e-8 relative).

    python benchmarks/bench_many_robust.py                  # 1000 problems, mae and huber
    python benchmarks/bench_many_robust.py --loss mae --problems 10000
"""
from __future__ import annotations

import argparse
import collections
import statistics
import time

import numpy as np
import torch
from scipy.optimize import least_squares, minimize

import gradfit

from bench_many import GAUSS, NAMES
from bench_many import problems as clean_problems


def problems(B: int, n: int = 25, seed: int = 0):
    """``bench_many``'s Gaussians with two outliers (+-1) a problem; C starts at the median."""
    x, y, p0 = clean_problems(B, n, seed)
    rng = np.random.default_rng([seed, 1])
    rows = np.arange(B)[:, None]
    y[rows, rng.integers(0, n, (B, 2))] += rng.choice([-1.0, 1.0], (B, 2))
    p0 = {"A": y.max(1) - y.min(1), "mu": x[y.argmax(1)], "s": np.ones(B), "C": np.median(y, 1)}
    return x, y, p0


def _gauss(p, x):
    A, mu, s, C = p
    return A * np.exp(-(x - mu) ** 2 / (2 * s ** 2)) + C


def loss_value(loss: str, r: np.ndarray, delta: float) -> float:
    if loss == "mae":
        return float(np.abs(r).mean())
    a = np.abs(r)
    return float(np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)).mean())


def scipy_one(loss: str, x, y, p0, delta: float):
    if loss == "huber":
        return least_squares(lambda p: _gauss(p, x) - y, p0, loss="huber", f_scale=delta,
                             method="trf").x
    return minimize(lambda p: np.abs(_gauss(p, x) - y).mean(), p0, method="Nelder-Mead",
                    options={"maxfev": 4000, "xatol": 1e-10, "fatol": 1e-12}).x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--loss", choices=["mae", "huber", "both"], default="both")
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scipy-sample", type=int, default=100)
    ap.add_argument("--check", type=int, default=20, help="problems checked against gradfit.fit")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    x, y, p0 = problems(a.problems)
    losses = ["mae", "huber"] if a.loss == "both" else [a.loss]
    S = min(a.scipy_sample, a.problems)
    print(f"{a.problems} Gaussians, 25 points, 2 outliers each, float64, torch threads "
          f"{torch.get_num_threads()}, median of {a.rounds} rounds")
    for loss in losses:
        kw = dict(loss=loss, delta=a.delta)
        gradfit.fit_many(GAUSS, x, y[:8], p0={k: v[:8] for k, v in p0.items()}, **kw)  # warm
        ours, theirs, res, base = [], [], None, None
        for _ in range(a.rounds):          # turns within a round: the load falls on both
            t = time.perf_counter()
            res = gradfit.fit_many(GAUSS, x, y, p0=p0, **kw)
            ours.append(a.problems / (time.perf_counter() - t))
            t = time.perf_counter()
            base = [scipy_one(loss, x, y[b], [p0[k][b] for k in NAMES], a.delta)
                    for b in range(S)]
            theirs.append(S / (time.perf_counter() - t))
        g, s = statistics.median(ours), statistics.median(theirs)
        counts = collections.Counter(res.reason.tolist())
        mine = [loss_value(loss, _gauss([res.params[k][b] for k in NAMES], x) - y[b], a.delta)
                for b in range(S)]
        ref = [loss_value(loss, _gauss(p, x) - y[b], a.delta) for b, p in enumerate(base)]
        at_or_below = sum(m <= r * (1 + 1e-9) for m, r in zip(mine, ref))
        baseline = "least_squares(huber)" if loss == "huber" else "Nelder-Mead"
        print(f"  {loss}: gradfit.fit_many {g:10,.0f} fits/s  ({res.converged.sum()} of "
              f"{a.problems} converged: {dict(counts)})")
        print(f"  {loss}: scipy {baseline} loop {s:10,.0f} fits/s  (timed on {S})")
        print(f"  {loss}: ratio fit_many / scipy loop: {g / s:.1f}x; gradfit's loss at or "
              f"below scipy's on {at_or_below} of {S} (scipy's above gradfit's by up to "
              f"{max(r / m - 1 for m, r in zip(mine, ref)):.2e} relative)")
        worst = 0.0
        for b in range(min(a.check, a.problems)):
            r = gradfit.fit(GAUSS, x, y[b], p0={k: float(p0[k][b]) for k in NAMES}, **kw)
            if r.converged != bool(res.converged[b]):
                worst = float("inf")
            if not r.converged:            # a failed fit's end is no answer to agree on
                continue
            for k in NAMES:
                v, w = float(res.params[k][b]), r.params[k]
                worst = max(worst, abs(v - w) / max(abs(w), 1e-12))
        print(f"  {loss}: check against gradfit.fit on {min(a.check, a.problems)} problems "
              f"(the same verdict; equal parameters where converged): "
              f"largest relative difference {worst:.2e} (tolerance 1e-08) "
              f"{'PASS' if worst <= 1e-8 else 'FAIL'}")


if __name__ == "__main__":
    main()
