"""gradfit's Levenberg-Marquardt against scipy's curve_fit on the NIST StRD suite.

For each of the 27 problems and both of NIST's starts: the smallest log relative error
(LRE, digits agreeing with the certified values; >= 4 counts as solved) and the median
wall time over ``--repeats`` runs, of

- ``gradfit.fit(model, x, y, optimizer="lm", loss="mse")`` (LM's own stopping rules;
  ``--loop-defaults`` adds the fit loop's ftol=1e-12, gtol=1e-10, which stop sooner),
- ``scipy.optimize.curve_fit(f, x, y, p0, method="lm", maxfev=100000)`` (default tolerances),

then the totals and the ratio of total times gradfit / scipy (above 1: gradfit is slower).
Both times include the standard errors each computes.

    .venv/bin/python benchmarks/bench_nist.py [--repeats 3] [--loop-defaults]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import gradfit
except ImportError:                      # not installed: run from the source tree
    sys.path.insert(0, str(ROOT / "src"))
    import gradfit
from scipy.optimize import curve_fit

NIST = ROOT.parent / "shared" / "datasets" / "nist"
NUMPY = {"exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos, "arctan": np.arctan,
         "sqrt": np.sqrt}


def load(path: Path):
    d = json.loads(path.read_text())
    x = np.asarray(d["x"], dtype=float)
    inputs = ("x1", "x2") if x.ndim == 2 else None
    y = np.asarray(d["y"], dtype=float)
    if d.get("response", "y") == "log(y)":
        y = np.log(y)
    return d, x, y, inputs


def numpy_model(d, inputs):
    """The NIST expression as ``f(x, b1, ..., bk)`` for curve_fit (trusted local files)."""
    code = compile(d["model"], d["name"], "eval")
    names = d["params"]

    def f(x, *b):
        env = dict(NUMPY, **dict(zip(names, b)))
        env.update(dict(zip(inputs, x)) if inputs else {"x": x})
        return eval(code, {"__builtins__": {}}, env)
    return f


def lre(values, certified) -> float:
    v, c = np.asarray(values, float), np.asarray(certified, float)
    if not np.all(np.isfinite(v)):
        return 0.0
    err = np.abs(v - c) / np.abs(c)
    return float(np.clip(-np.log10(np.maximum(err, 1e-15)), 0, 15).min())


def run_gradfit(d, x, y, inputs, start, loop_defaults):
    tol = {"ftol": 1e-12, "gtol": 1e-10} if loop_defaults else {}
    t = time.perf_counter()
    r = gradfit.fit(d["model"], x.T if inputs else x, y, optimizer="lm", loss="mse",
                    inputs=inputs, p0=dict(zip(d["params"], start)), steps=2000, **tol)
    return time.perf_counter() - t, lre([r.params[p] for p in d["params"]], d["certified"]), r.steps


def run_scipy(d, x, y, inputs, start):
    f = numpy_model(d, inputs)
    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, _, info, _, _ = curve_fit(f, x, y, p0=start, method="lm", maxfev=100_000,
                                            full_output=True)
        digits, nfev = lre(popt, d["certified"]), info["nfev"]
    except (RuntimeError, ValueError, FloatingPointError):
        digits, nfev = 0.0, -1
    return time.perf_counter() - t, digits, nfev


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loop-defaults", action="store_true",
                    help="keep the fit loop's own ftol and gtol (stop earlier)")
    args = ap.parse_args(argv)
    files = sorted(NIST.glob("*.json"))
    if not files:
        sys.exit(f"no NIST files at {NIST}")
    d, x, y, inputs = load(files[0])          # warm up torch's autograd and vmap once
    run_gradfit(d, x, y, inputs, d["start2"], args.loop_defaults)

    cases = [(load(path), start) for path in files for start in ("start1", "start2")]
    g_runs = {i: [] for i in range(len(cases))}
    s_runs = {i: [] for i in range(len(cases))}
    for _ in range(args.repeats):             # rounds over the suite: load spikes spread out
        for i, ((d, x, y, inputs), start) in enumerate(cases):
            g_runs[i].append(run_gradfit(d, x, y, inputs, d[start], args.loop_defaults))
            s_runs[i].append(run_scipy(d, x, y, inputs, d[start]))

    print(f"{'problem':<9} {'start':<6} {'gradfit LRE':>11} {'ms':>8} {'steps':>5}   "
          f"{'scipy LRE':>9} {'ms':>7} {'nfev':>5}")
    tot = {"g": 0.0, "s": 0.0, "gs": 0, "ss": 0, "n": 0}
    for i, ((d, x, y, inputs), start) in enumerate(cases):
        g, s = g_runs[i], s_runs[i]
        gt, st = statistics.median(v[0] for v in g), statistics.median(v[0] for v in s)
        gl, sl = g[0][1], s[0][1]
        print(f"{d['name']:<9} {start:<6} {gl:>11.2f} {gt * 1e3:>8.1f} {g[0][2]:>5}   "
              f"{sl:>9.2f} {st * 1e3:>7.2f} {s[0][2]:>5}")
        tot["g"] += gt
        tot["s"] += st
        tot["gs"] += gl >= 4
        tot["ss"] += sl >= 4
        tot["n"] += 1
    print()
    print(f"solved (min LRE >= 4): gradfit lm {tot['gs']}/{tot['n']}, "
          f"scipy curve_fit lm {tot['ss']}/{tot['n']}")
    print(f"total time (medians of {args.repeats}): gradfit {tot['g']:.3f} s, "
          f"scipy {tot['s']:.3f} s, ratio gradfit/scipy {tot['g'] / tot['s']:.1f}")
    g_med = statistics.median(statistics.median(v[0] for v in g_runs[i]) for i in g_runs)
    s_med = statistics.median(statistics.median(v[0] for v in s_runs[i]) for i in s_runs)
    print(f"median time a fit: gradfit {g_med * 1e3:.2f} ms, scipy {s_med * 1e3:.2f} ms; "
          f"load average {os.getloadavg()[0]:.2f} (uptime)")


if __name__ == "__main__":
    main()
