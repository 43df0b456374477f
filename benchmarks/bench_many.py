"""Many fits at once: gradfit.fit_many against a scipy curve_fit loop and a naive batched LM.

The problem (issue 9): B Gaussians ``A*exp(-(x-mu)^2/(2*s^2))+C``, 25 points each, noise
0.05, the same starting guesses for every method. Prints fits/s of each (the median of
``--rounds``), the ratios, and checks a sample of fit_many's results against gradfit.fit on
the same problem (1e-8 relative in float64).

    python benchmarks/bench_many.py                          # this machine, 10,000 fits, f64
    python benchmarks/bench_many.py --device cuda --dtype float32 --problems 1000000

The curve_fit loop is timed on a sample (``--scipy-sample``; it runs on the CPU whatever the
device). The methods take turns within each round, so that a change in the machine's load
falls on all of them alike.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import gradfit

GAUSS = "A*exp(-(x-mu)^2/(2*s^2))+C"
NAMES = ("A", "mu", "s", "C")


def problems(B: int, n: int = 25, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.linspace(-5, 5, n)
    A, mu = rng.uniform(1, 3, B), rng.uniform(-1, 1, B)
    s, C = rng.uniform(0.5, 1.5, B), rng.uniform(0, 1, B)
    y = (A[:, None] * np.exp(-(x - mu[:, None]) ** 2 / (2 * s[:, None] ** 2)) + C[:, None]
         + 0.05 * rng.standard_normal((B, n)))
    p0 = {"A": y.max(1) - y.min(1), "mu": x[y.argmax(1)], "s": np.ones(B), "C": y.min(1)}
    return x, y, p0


def naive_lm(x, y, p0, iters: int = 30):
    """The textbook batched LM: torch.func Jacobians of every problem, a damping per
    problem (x10 / x0.1), normal equations solved by torch.linalg.solve, a fixed number of
    iterations, no stopping rule and no compaction."""
    def model(p, xx):
        A, mu, s, C = p[..., 0:1], p[..., 1:2], p[..., 2:3], p[..., 3:4]
        return A * torch.exp(-(xx - mu) ** 2 / (2 * s ** 2)) + C

    def resid(p, xx, yy):
        return model(p, xx) - yy
    jac = torch.func.vmap(torch.func.jacfwd(resid), in_dims=(0, None, 0))
    p = p0.clone()
    lam = torch.full(p.shape[:1], 1e-3, dtype=p.dtype, device=p.device)
    eye = torch.eye(p.shape[-1], dtype=p.dtype, device=p.device)
    r = resid(p, x, y)
    S = r.square().sum(-1)
    for _ in range(iters):
        J = jac(p, x, y)
        A = J.transpose(-1, -2) @ J
        g = (J.transpose(-1, -2) @ r.unsqueeze(-1)).squeeze(-1)
        damp = A + lam[:, None, None] * torch.diag_embed(A.diagonal(dim1=-2, dim2=-1)) + 1e-30 * eye
        step = torch.linalg.solve(damp, -g)
        pt = p + step
        rt = resid(pt, x, y)
        St = rt.square().sum(-1)
        ok = St < S
        p = torch.where(ok[:, None], pt, p)
        r = torch.where(ok[:, None], rt, r)
        S = torch.where(ok, St, S)
        lam = torch.where(ok, lam * 0.1, lam * 10).clamp(1e-12, 1e12)
    return p


def timed(fn, device):
    """Seconds of one call of ``fn`` (the GPU's work included), and its result."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=25)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scipy-sample", type=int, default=1000,
                    help="problems in the timed curve_fit loop (default 1000)")
    ap.add_argument("--check", type=int, default=50, help="problems checked against gradfit.fit")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads, for every method (default 1: on a small shared "
                         "machine OpenMP's waiting threads cost more than they give; 0: "
                         "torch's own choice)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    B = a.problems
    x, y, p0 = problems(B, a.points)
    dt = {"float64": torch.float64, "float32": torch.float32}[a.dtype]
    print(f"{B} Gaussians, {a.points} points each, {a.dtype}, device {a.device}, "
          f"torch threads {torch.get_num_threads()}, median of {a.rounds} rounds")

    gradfit.fit_many(GAUSS, x, y[:100], p0={k: v[:100] for k, v in p0.items()},
                     dtype=a.dtype, device=a.device)                      # warm up
    xt = torch.as_tensor(x, dtype=dt, device=a.device)
    yt = torch.as_tensor(y, dtype=dt, device=a.device)
    pt = torch.as_tensor(np.stack([p0[k] for k in NAMES], 1), dtype=dt, device=a.device)
    from scipy.optimize import curve_fit
    m = min(a.scipy_sample, B)

    def loop():
        for i in range(m):
            curve_fit(lambda t, A, mu, s, C: A * np.exp(-(t - mu) ** 2 / (2 * s ** 2)) + C,
                      x, y[i], p0=[p0[k][i] for k in NAMES])
    # the methods take turns within each round, so that a change in the machine's load
    # falls on all of them alike
    t_many, t_naive, t_scipy = [], [], []
    for _ in range(a.rounds):
        t, res = timed(lambda: gradfit.fit_many(GAUSS, x, y, p0=p0, dtype=a.dtype,
                                                device=a.device), a.device)
        t_many.append(t)
        t_naive.append(timed(lambda: naive_lm(xt, yt, pt), a.device)[0])
        t_scipy.append(timed(loop, "cpu")[0])
    t_many, t_naive, t_scipy = map(statistics.median, (t_many, t_naive, t_scipy))
    scipy_rate = m / t_scipy

    rate = B / t_many
    print(f"  gradfit.fit_many     {rate:14,.0f} fits/s   ({res.summary()})")
    print(f"  naive batched LM     {B / t_naive:14,.0f} fits/s   (30 iterations, no stopping)")
    print(f"  scipy curve_fit loop {scipy_rate:14,.0f} fits/s   (timed on {m})")
    print(f"  ratio fit_many / curve_fit loop: {rate / scipy_rate:8.1f}x")
    print(f"  ratio fit_many / naive batched:  {rate * t_naive / B:8.2f}x")

    rng = np.random.default_rng(1)
    sample = rng.choice(B, size=min(a.check, B), replace=False)
    worst = 0.0
    for i in sample:
        one = gradfit.fit(GAUSS, x, y[i], p0={k: float(v[i]) for k, v in p0.items()})
        for k in NAMES:
            worst = max(worst, abs(res.params[k][i] - one.params[k]) / abs(one.params[k]))
    tol = 1e-8 if a.dtype == "float64" else 1e-3
    verdict = "PASS" if worst <= tol else "FAIL"
    print(f"  check against gradfit.fit on {len(sample)} problems: largest relative "
          f"difference {worst:.2e} (tolerance {tol:g}) {verdict}")


if __name__ == "__main__":
    main()
