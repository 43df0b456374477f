"""gradfit's gd against the lesson's own loop, on the same data and steps.

Runs ``../shared/lesson/lesson_loop.py N STEPS`` (the lesson's loop: MAE on the quadratic,
lr 0.01, gradient never zeroed) and gradfit's ``fit(..., loss="mae", optimizer="gd")`` on the
same data, alternating, several rounds; prints the median time per step of each and the
ratio gradfit / lesson (below 1 means gradfit is faster).

    .venv/bin/python benchmarks/bench_lesson_loop.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import gradfit

LESSON = Path(__file__).resolve().parents[1].parent / "shared" / "lesson" / "lesson_loop.py"
SIZES = [(20, 3000), (1_000_000, 30)]
GUESS = {"a": 1.1, "b": 1.1, "c": 1.1}


def lesson_us(n: int, steps: int) -> float:
    out = subprocess.run([sys.executable, "-W", "ignore", str(LESSON), str(n), str(steps)],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"per_step_us=([\d.]+)", out).group(1))


def gradfit_us(data, steps: int, accumulate: bool) -> float:
    r = gradfit.fit("a*x^2 + b*x + c", data.x, data.y, loss="mae", optimizer="gd", lr=0.01,
                    steps=steps, p0=GUESS, ftol=0, gtol=0, accumulate_grad=accumulate,
                    divergence=float("inf"))
    assert r.steps == steps, r.message
    return r.wall_time / steps * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if not LESSON.exists():
        sys.exit(f"the lesson's loop is not at {LESSON}")
    warnings.simplefilter("ignore")
    print(f"{'n':>9} {'steps':>6} {'lesson us/step':>15} {'gradfit us/step':>16} "
          f"{'(accumulated)':>14} {'ratio':>7}")
    worst = 0.0
    for n, steps in SIZES:
        data = gradfit.lesson_data(n)
        ours, ours_acc, theirs = [], [], []
        for _ in range(args.rounds):
            theirs.append(lesson_us(n, steps))
            ours.append(gradfit_us(data, steps, accumulate=False))
            ours_acc.append(gradfit_us(data, steps, accumulate=True))
        lo, go, ga = (statistics.median(v) for v in (theirs, ours, ours_acc))
        ratio = go / lo
        worst = max(worst, ratio, ga / lo)
        print(f"{n:>9} {steps:>6} {lo:>15.1f} {go:>16.1f} {ga:>14.1f} {ratio:>7.2f}")
    print(f"worst ratio gradfit/lesson: {worst:.2f} ({'not slower' if worst <= 1 else 'SLOWER'})")


if __name__ == "__main__":
    main()
