"""Correctness sweep: float32 claims on the NIST StRD problems (27 problems x 2 starts).

Each problem is fitted by ``gradfit.fit(..., dtype="float32")`` (auto: LM). The oracle for
every end: float64 LM from the float32 end point, on the float32-rounded data. A converged
claim that float64 still lowers by over 1% of the loss (``--drop``) is "wrong": float32
stopped short of its minimum and said it had not (``precision.py`` should refuse it). The
float32 LRE against NIST's certified values is printed for scale (float32 resolves at most
about 7 digits, fewer on ill-conditioned problems).

    PYTHONPATH=src python benchmarks/sweeps/sweep_nist_float32.py [--drop 0.01]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import gradfit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_nist import NIST, load, lre  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drop", type=float, default=0.01)
    a = ap.parse_args()
    counts = {"converged": 0, "refused": 0, "wrong": 0}
    for path in sorted(NIST.glob("*.json")):
        d, x, y, inputs = load(path)
        X = x.T if inputs else x
        for start in ("start1", "start2"):
            p0 = dict(zip(d["params"], d[start]))
            r = gradfit.fit(d["model"], X, y, inputs=inputs, p0=p0, dtype="float32")
            q = [float(r.params[p]) for p in d["params"]]
            f32 = lambda v: np.asarray(v, np.float32).astype(float)  # noqa: E731
            on = gradfit.fit(d["model"], f32(X), f32(y), inputs=inputs,
                             p0=dict(zip(d["params"], q)))
            drop = (r.loss - on.loss) / r.loss if np.isfinite(r.loss) and r.loss > 0 else 0.0
            wrong = r.converged and drop > a.drop
            counts["converged" if r.converged else "refused"] += 1
            counts["wrong"] += wrong
            print(f"{d['name']:<9} {start:<6} {r.reason:<9} LRE {lre(q, d['certified']):4.1f}  "
                  f"float64 from there lowers the loss by {drop:9.2e}{'  WRONG' if wrong else ''}")
    print(f"converged {counts['converged']}, refused {counts['refused']}, "
          f"wrong claims (float64 lowers by over {a.drop:g}) {counts['wrong']}")


if __name__ == "__main__":
    main()
