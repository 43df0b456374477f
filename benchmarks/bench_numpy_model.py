"""gradfit on numpy model functions (finite differences) against scipy's curve_fit.

For a few models written as for curve_fit (numpy inside), on ``n`` points, the median wall
time over ``--repeats`` runs of

- ``gradfit.fit(f, x, y, optimizer="lm")`` (f run on numpy, central differences),
- ``gradfit.fit(f, x, y, optimizer="lm", jac=jac)`` (the user's Jacobian),
- ``gradfit.fit(text, x, y, optimizer="lm")``, the same model as an expression (autograd),
- ``scipy.optimize.curve_fit(f, x, y, p0)`` (MINPACK's lmdif, forward differences),

the digits of agreement of the values (gradfit's numpy fit against curve_fit), and the
ratios of the times: numpy function / expression (the cost of finite differences inside
gradfit) and numpy function / curve_fit (above 1: gradfit is slower). All include the
covariance.

    .venv/bin/python benchmarks/bench_numpy_model.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import gradfit
except ImportError:                      # not installed: run from the source tree
    sys.path.insert(0, str(ROOT / "src"))
    import gradfit
from scipy.optimize import curve_fit


def decay(x, A, k, c):
    return A * np.exp(-k * x) + c


def decay_jac(x, A, k, c):
    e = np.exp(-k * x)
    return np.stack([e, -A * x * e, np.ones_like(x)], axis=1)


def gauss(x, A, mu, s):
    return A * np.exp(-((x - mu) ** 2) / (2 * s * s))


def gauss_jac(x, A, mu, s):
    g = np.exp(-((x - mu) ** 2) / (2 * s * s))
    return np.stack([g, A * g * (x - mu) / s ** 2, A * g * (x - mu) ** 2 / s ** 3], axis=1)


CASES = [("decay", decay, decay_jac, "A*exp(-k*x) + c", (2.5, 1.3, 0.5), (1.0, 1.0, 1.0), (0, 4)),
         ("gauss", gauss, gauss_jac, "A*exp(-(x - mu)^2 / (2*s*s))", (3.0, 0.4, 0.7),
          (2.0, 0.0, 1.0), (-3, 3))]


def median_time(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def digits(a, b):
    err = np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(np.abs(b), 1e-300)
    return float(-np.log10(np.maximum(err, 1e-16)).min())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"{'case':<7} {'n':>5} {'numpy fd':>9} {'numpy jac':>10} {'expr':>8} {'curve_fit':>10} "
          f"{'fd/expr':>8} {'fd/scipy':>9} {'digits':>7}")
    for name, f, jac, text, true, p0, (lo, hi) in CASES:
        for n in (50, 1000):
            x = np.linspace(lo, hi, n)
            y = f(x, *true) + 0.01 * np.random.default_rng(0).standard_normal(n)
            start = dict(zip(("A", "k", "c") if name == "decay" else ("A", "mu", "s"), p0))
            t_fd, r = median_time(lambda: gradfit.fit(f, x, y, optimizer="lm", p0=start),
                                  args.repeats)
            t_jac, _ = median_time(lambda: gradfit.fit(f, x, y, optimizer="lm", p0=start,
                                                       jac=jac), args.repeats)
            t_ex, _ = median_time(lambda: gradfit.fit(text, x, y, optimizer="lm", p0=start),
                                  args.repeats)
            t_sp, (popt, _) = median_time(lambda: curve_fit(f, x, y, p0=p0), args.repeats)
            print(f"{name:<7} {n:>5} {t_fd * 1e3:>7.1f}ms {t_jac * 1e3:>8.1f}ms "
                  f"{t_ex * 1e3:>6.1f}ms {t_sp * 1e3:>8.1f}ms {t_fd / t_ex:>8.2f} "
                  f"{t_fd / t_sp:>9.0f} {digits(list(r.params.values()), popt):>7.1f}")


if __name__ == "__main__":
    main()
