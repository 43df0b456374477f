"""Correctness sweep: converged claims on models with kinks (abs, min, max: breakpoints).

For each model, loss and seed: 30 points with x uniform on (0, 1), noise 0.05, fitted by
``gradfit.fit`` from a fixed start (relu:3 from its own seeded one), by the exact methods or
``--optimizer`` (lbfgs, adam: their ftol/gtol stops). Every fit called converged is probed
at random: 300 unit directions, steps of 1e-5 and 1e-7 of each parameter's size; a probe
that lowers the loss by over 1e-9 of it (sqrt(eps), 1.5e-8, for a gradient method: what its
look around promises) means the claim was no local minimum ("wrong"). The fits not converged
are counted, not judged (failed, "LM stalled short of a minimum", is an honest answer
there).

    PYTHONPATH=src python benchmarks/sweeps/sweep_nonsmooth.py [--seeds 20] [--losses mse,mae,huber]
        [--optimizer lbfgs]
"""
import argparse
import warnings

import numpy as np

import gradfit

warnings.filterwarnings("ignore")

MODELS = {
    "a*abs(x-c)+b": (lambda x, a, c, b: a * np.abs(x - c) + b, [1.5, 0.4, 0.2],
                     {"a": 1, "c": 0.5, "b": 0}),
    "min(a*x, b)": (lambda x, a, b: np.minimum(a * x, b), [2.0, 1.2], {"a": 1, "b": 1}),
    "max(a, b*x+c)": (lambda x, a, b, c: np.maximum(a, b * x + c), [0.5, 2.0, -0.6],
                      {"a": 0.3, "b": 1, "c": 0}),
    "a + b*max(x-c, 0)": (lambda x, a, b, c: a + b * np.maximum(x - c, 0), [1, 2, 0.37],
                          {"a": 1, "b": 1, "c": 0.5}),
    "a + b*max(x-c, 0) + d*max(x-g, 0)": (
        lambda x, a, b, c, d, g: a + b * np.maximum(x - c, 0) + d * np.maximum(x - g, 0),
        [1, 2, 0.3, -3, 0.7], {"a": 1, "b": 1, "c": 0.2, "d": -1, "g": 0.8}),
    # a flexible model: its own starting values (seeded), one start
    "relu:3": (lambda x, m1, b1, m2, b2, m3, b3, c: np.maximum(m1 * x + b1, 0)
               + np.maximum(m2 * x + b2, 0) + np.maximum(m3 * x + b3, 0) + c,
               [2, -0.6, -3, 1.5, 4, -3, 0.5], None),
}
LOSS = {"mse": lambda r: np.mean(r ** 2), "mae": lambda r: np.mean(np.abs(r)),
        "huber": lambda r: np.mean(np.where(np.abs(r) <= 1, 0.5 * r * r, np.abs(r) - 0.5))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--losses", default="mse,mae,huber")
    ap.add_argument("--optimizer", default="auto", help="auto (the exact methods), lbfgs, adam")
    a = ap.parse_args()
    tol = 1e-9 if a.optimizer in ("auto", "lm", "irls") else np.sqrt(np.finfo(float).eps)
    total_wrong = 0
    for loss in a.losses.split(","):
        for name, (f, truth, p0) in MODELS.items():
            claims = wrong = 0
            for seed in range(a.seeds):
                rng = np.random.default_rng(seed)
                x = np.sort(rng.uniform(0, 1, 30))
                y = f(x, *truth) + 0.05 * rng.standard_normal(30)
                r = gradfit.fit(name, x, y, p0=p0, loss=loss, optimizer=a.optimizer,
                                starts=1, seed=seed)
                if not r.converged:
                    continue
                claims += 1
                q = np.array(list(r.params.values()))
                value = lambda v: LOSS[loss](f(x, *v) - y)
                base, size = value(q), np.maximum(np.abs(q), 1e-3)
                dirs = rng.standard_normal((300, len(q)))
                dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
                if any(value(q + t * v * size) < base * (1 - tol)
                       for v in dirs for t in (1e-5, 1e-7)):
                    wrong += 1
                    print(f"  wrong: {name} {loss} seed {seed}: {r.reason}: {r.message[:80]}")
            total_wrong += wrong
            print(f"{loss:6s} {name:36s} converged {claims:3d} of {a.seeds}, wrong {wrong}")
    print(f"wrong claims in all: {total_wrong}")


if __name__ == "__main__":
    main()
