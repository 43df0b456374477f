"""Big data: exact least squares on n points, a gradient step, and a loss landscape.

1. exact least squares of a quadratic on ``--n`` points (f64): gradfit.fit (a model linear
   in its parameters: one chunked QR, see ``linear_lsq.py``) against numpy's lstsq and
   scipy's curve_fit. Each runs in a fresh process; its time and its peak memory above
   what the process held before the fit (the data included) are printed, with ratios.
2. one gd and one adam step (MAE, f64) on ``--n`` points, fused (``fused_step.py``,
   compiled when a run of ``--steps`` steps repays it) and unfused, against one read of x
   and y (``x.sum() + y.sum()``), medians of ``--rounds``.
3. a 201 x 201 loss landscape over ``--landscape-n`` points on ``--device`` against the CPU.

    python benchmarks/bench_big.py                      # this machine: n = 10^7
    python benchmarks/bench_big.py --n 100000000 --device cuda --skip-exact
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def child(which: str, n: int) -> dict:
    rng = np.random.default_rng(0)
    x = np.linspace(-2, 2, n)
    y = 3 * x**2 + 2 * x + 1 + rng.standard_normal(n)
    import torch  # noqa: F401  (imported before the baseline in every child alike)
    import gradfit
    from scipy.optimize import curve_fit
    gradfit.fit("a*x^2 + b*x + c", x[:100], y[:100])          # warm: first LAPACK calls
    np.linalg.lstsq(np.c_[x[:100], np.ones(100)], y[:100], rcond=None)
    before = max(_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    t = time.perf_counter()
    if which == "gradfit":
        r = gradfit.fit("a*x^2 + b*x + c", x, y)
        out = [r.params[k] for k in "abc"]
        assert r.converged and r.stderr is not None
    elif which == "lstsq":
        out = np.linalg.lstsq(np.c_[x**2, x, np.ones_like(x)], y, rcond=None)[0].tolist()
    else:
        out = curve_fit(lambda x, a, b, c: a * x**2 + b * x + c, x, y)[0].tolist()
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"time": dt, "extra_mb": peak - before, "params": out}


def exact(n: int) -> None:
    rows = {}
    for which in ("gradfit", "lstsq", "curve_fit"):
        out = subprocess.run([sys.executable, __file__, "--child", which, "--n", str(n)],
                             capture_output=True, text=True, check=True)
        rows[which] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"exact least squares, quadratic, n = {n:,} (f64), one process each")
    for k, v in rows.items():
        print(f"  {k:<10} {v['time']:8.2f} s   peak +{v['extra_mb']:7.0f} MB   {np.round(v['params'], 6)}")
    g, l, c = rows["gradfit"], rows["lstsq"], rows["curve_fit"]
    print(f"  time gradfit / curve_fit = {g['time'] / c['time']:.2f} (target <= 1)")
    print(f"  memory gradfit / lstsq   = {g['extra_mb'] / max(l['extra_mb'], 1):.2f} (target <= 1.5)")
    agree = np.max(np.abs(np.array(g["params"]) - l["params"]) / np.abs(l["params"]))
    print(f"  largest relative difference from lstsq: {agree:.1e}")


def step(n: int, device: str, dtype: str, rounds: int, steps: int) -> None:
    """One step of gd and of adam (MAE) on the real stepper, fused (``fused_step``: the
    run of ``steps`` steps repays the compile) and unfused, against one read of x and y."""
    import torch
    from gradfit.fit import prepare
    from gradfit.fused_step import worth_compiling
    from gradfit.optimizers import make_stepper
    dt = getattr(torch, dtype)
    x = torch.linspace(-2, 2, n, dtype=dt, device=device)
    y = 3 * x**2 + 2 * x + 1 + torch.randn(n, dtype=dt, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    problem = prepare("a*x^2 + b*x + c", x, y, loss="mae", dtype=dt, device=device)

    def timed(fn, k=5):
        fn()
        sync()
        t = time.perf_counter()
        for _ in range(k):
            fn()
        sync()
        return (time.perf_counter() - t) / k

    read_t = statistics.median(timed(lambda: (x.sum() + y.sum()).item()) for _ in range(rounds))
    print(f"one step, mae, a*x^2 + b*x + c, n = {n:,} ({dtype}, {device}); one read of x and y "
          f"(x.sum() + y.sum()) {read_t * 1e3:.2f} ms; compile chosen for {steps} steps: "
          f"{worth_compiling(n, steps)}; torch threads {torch.get_num_threads()}")
    for opt in ("gd", "adam"):
        times = {}
        for fused in (True, False):
            theta = torch.tensor([1.1, 1.1, 1.1], dtype=dt, device=device, requires_grad=True)
            s = make_stepper(opt, problem, theta, lr=1e-3, steps=steps)
            if not fused:
                s.fused = None
            t = time.perf_counter()
            s.step()                      # the first step compiles
            sync()
            first = time.perf_counter() - t
            times[fused] = statistics.median(timed(s.step, 3) for _ in range(rounds))
            if fused:
                print(f"  {opt:<5} fused  : first step (compile) {first:6.1f} s; "
                      f"{'fused' if s.fused is not None else 'FELL BACK to unfused'}")
        f, u = times[True], times[False]
        print(f"  {opt:<5} fused {f * 1e3:8.2f} ms a step = {f / read_t:5.2f} reads (target <= 2); "
              f"unfused {u * 1e3:8.2f} ms = {u / read_t:5.1f} reads; unfused / fused {u / f:5.1f}")


def landscape(n: int, device: str, rounds: int) -> None:
    import torch
    from gradfit import landscape as L
    rng = np.random.default_rng(1)
    x = np.linspace(-2, 2, n)
    y = 3 * x**2 + 2 * x + 1 + rng.standard_normal(n)
    times = {}
    for dev in dict.fromkeys(["cpu", device]):
        problem = L.as_problem("a*x^2 + b*x + c", x, y, loss="mae", device=dev)
        centre = {"a": 3.0, "b": 2.0, "c": 1.0}
        L.loss_grid(problem, ("a", "b"), centre, resolution=21)
        ts = []
        for _ in range(rounds):
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            L.loss_grid(problem, ("a", "b"), centre, resolution=201)
            ts.append(time.perf_counter() - t)
        times[dev] = statistics.median(ts)
    print(f"landscape 201 x 201 over {n:,} points (mae): " + ", ".join(
        f"{d} {t:.3f} s" for d, t in times.items())
        + (f"; cpu / {device} = {times['cpu'] / times[device]:.1f} (target >= 20)"
           if device != "cpu" else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--step-n", type=int, default=None, help="points of the gd step (default --n)")
    ap.add_argument("--landscape-n", type=int, default=100_000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200,
                    help="the run length the gd step is planned for (compile if it repays)")
    ap.add_argument("--skip-landscape", action="store_true")
    ap.add_argument("--skip-exact", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.n)))
        return
    if not a.skip_exact:
        exact(a.n)
    step(a.step_n or a.n, a.device, a.dtype, a.rounds, a.steps)
    if not a.skip_landscape:
        landscape(a.landscape_n, a.device, a.rounds)


if __name__ == "__main__":
    main()
