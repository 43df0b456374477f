"""A 96-well dose-response plate: fit_many against a loop of gradfit.fit and of curve_fit.

Every well is the four-parameter logistic ``bottom + (top-bottom)/(1+(ec50/x)^hill)`` over
10 doses in triplicate, with ``ec50`` and ``hill`` bounded, as a plate reader's software fits
it. ``--flat`` of the wells show no response (flat data: the data cannot place ``ec50`` or
``hill``, one of them runs to its bound, and LM crawls there): they cost most. Prints the
seconds of each (median of ``--rounds``), the ratios, and how many wells each calls
converged; fit_many's converged wells are checked against fit's losses (1e-9 relative).

    python benchmarks/bench_plate.py
    python benchmarks/bench_plate.py --flat 0 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import gradfit

MODEL = "bottom + (top-bottom)/(1+(ec50/x)^hill)"
BOUNDS = {"ec50": (1e-6, 1e4), "hill": (0.1, 10)}


def plate(flat: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    dose = np.repeat(np.logspace(-3, 2, 10), 3)
    wells = 96
    bottom, top = rng.uniform(5, 20, wells), rng.uniform(80, 100, wells)
    ec50, hill = 10 ** rng.uniform(-2, 1, wells), rng.uniform(0.7, 2.0, wells)
    y = bottom[:, None] + (top - bottom)[:, None] / (1 + (ec50[:, None] / dose) ** hill[:, None])
    y[:flat] = rng.uniform(40, 60, (flat, 1))
    y = y + rng.normal(0, 3, y.shape)
    p0 = {"bottom": 10.0, "top": 90.0, "ec50": 0.3, "hill": 1.0}
    return dose, y, p0


def curve_fit_loop(dose, y, p0):
    from scipy.optimize import curve_fit

    def f(x, bottom, top, ec50, hill):
        return bottom + (top - bottom) / (1 + (ec50 / x) ** hill)
    lo = [-np.inf, -np.inf, BOUNDS["ec50"][0], BOUNDS["hill"][0]]
    hi = [np.inf, np.inf, BOUNDS["ec50"][1], BOUNDS["hill"][1]]
    ok = 0
    for row in y:
        try:
            curve_fit(f, dose, row, p0=list(p0.values()), bounds=(lo, hi))
            ok += 1
        except RuntimeError:
            pass
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flat", type=int, default=16, help="wells with no response (of 96)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    dose, y, p0 = plate(args.flat)
    times = {"fit_many": [], "fit loop": [], "curve_fit loop": []}
    for _ in range(args.rounds):
        t = time.perf_counter()
        many = gradfit.fit_many(MODEL, dose, y, p0=p0, bounds=BOUNDS)
        times["fit_many"].append(time.perf_counter() - t)
        t = time.perf_counter()
        loop = [gradfit.fit(MODEL, dose, row, p0=p0, bounds=BOUNDS) for row in y]
        times["fit loop"].append(time.perf_counter() - t)
        t = time.perf_counter()
        scipy_ok = curve_fit_loop(dose, y, p0)
        times["curve_fit loop"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"96 wells ({args.flat} flat), 4PL with bounds on ec50 and hill, float64, "
          f"median of {args.rounds} rounds")
    print(f"  gradfit.fit_many   {med['fit_many']:8.3f} s   ({many.summary()})")
    print(f"  gradfit.fit loop   {med['fit loop']:8.3f} s   "
          f"({sum(r.converged for r in loop)} of 96 converged)")
    print(f"  curve_fit loop     {med['curve_fit loop']:8.3f} s   ({scipy_ok} of 96 returned)")
    print(f"  ratio fit loop / fit_many:        {med['fit loop'] / med['fit_many']:.2f}x")
    print(f"  ratio curve_fit loop / fit_many:  {med['curve_fit loop'] / med['fit_many']:.2f}x")
    same = [abs(many.loss[i] - r.loss) <= 1e-9 * r.loss
            for i, r in enumerate(loop) if r.converged and many.converged[i]]
    agree = sum(bool(many.converged[i]) == r.converged for i, r in enumerate(loop))
    print(f"  check against gradfit.fit: converged alike on {agree} of 96 wells; losses equal "
          f"to 1e-9 on {sum(same)} of {len(same)} converged in both "
          f"{'PASS' if all(same) else 'FAIL'}")


if __name__ == "__main__":
    main()
