"""gradfit on Dask against its baselines, in one run; prints rates and ratios (medians).

1. Many series: S Gaussian series of 25 points (long form, Parquet files) fitted by
   ``gradfit.dask_fit.fit_table`` on a local cluster, against the single-process engine
   (``fit_many`` on the same table read into memory): fits per second.
2. xarray: ``fit_along`` over P pixels x 25 points against ``DataArray.curvefit`` (scipy's
   curve_fit per pixel, timed on a subset of C pixels and scaled): fits per second.
3. One series of N points in Parquet files: ``fit_out_of_core`` (LM, one pass over the
   partitions per trial step) against ``gradfit.fit`` on the same points in memory.

    .venv/bin/python benchmarks/bench_dask.py --quick          # S=2e4, P=1e4, N=1e6
    .venv/bin/python benchmarks/bench_dask.py                  # S=1e6, P=1e5, N=1e8
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import pandas as pd

GAUSS = "A*exp(-(t-mu)^2/(2*s^2)) + C"
P0 = {"A": 1.5, "mu": 0.0, "s": 1.0, "C": 0.0}


def gauss(t, A, mu, s, C):
    return A * np.exp(-(t - mu) ** 2 / (2 * s * s)) + C


def series(S, n=25, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(-5, 5, n)
    A, mu = rng.uniform(1, 3, (S, 1)), rng.uniform(-1, 1, (S, 1))
    s, C = rng.uniform(0.6, 1.5, (S, 1)), rng.uniform(0, 1, (S, 1))
    return t, gauss(t, A, mu, s, C) + 0.05 * rng.standard_normal((S, n))


def guesses(t, y):
    """Per-series starting values from the data (as bench_many.py), the same for everyone."""
    return {"A": y.max(1) - y.min(1), "mu": t[y.argmax(1)], "s": np.ones(len(y)),
            "C": y.min(1)}


def write_long(folder, t, y, files):
    S, n = y.shape
    for i, rows in enumerate(np.array_split(np.arange(S), files)):
        pd.DataFrame({"id": np.repeat(rows, n), "t": np.tile(t, len(rows)),
                      "v": y[rows].ravel()}).to_parquet(os.path.join(folder, f"part{i:03d}.parquet"))


def _warm_worker():
    import gradfit
    t = np.linspace(-5, 5, 25)
    gradfit.fit_many(GAUSS, t, gauss(t, 2.0, 0.1, 1.0, 0.5)[None].repeat(3, 0), p0=P0,
                     inputs=("t",))


def warm(client):
    """Every worker imports torch and gradfit and fits once before anything is timed."""
    client.run(_warm_worker)


def timed(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def many_series(client, S, repeat, folder):
    import gradfit
    from gradfit.dask_fit import fit_table
    t, y = series(S)
    write_long(folder, t, y, files=max(2, S // 50_000))
    glob = os.path.join(folder, "*.parquet")
    t_dask, table = timed(lambda: fit_table(GAUSS, glob, x="t", y="v", group="id", p0=P0,
                                            scheduler=client), repeat)
    frame = pd.concat(pd.read_parquet(os.path.join(folder, f)) for f in sorted(os.listdir(folder)))
    t_one, ref = timed(lambda: gradfit.fit_many(GAUSS, data=frame, x="t", y="v", group="id",
                                                p0=P0, inputs=("t",)), repeat)
    same = np.allclose(table.sort_values("id")["mu"].to_numpy(), ref.params["mu"], rtol=1e-8)
    print(f"many series: {S} Gaussians x 25 points from Parquet, "
          f"{len(client.scheduler_info()['workers'])} workers")
    print(f"  fit_table (Dask)      {S / t_dask:12.0f} fits/s  ({t_dask:.2f} s; "
          f"{int(table['converged'].sum())} converged)")
    print(f"  fit_many (1 process)  {S / t_one:12.0f} fits/s  ({t_one:.2f} s)")
    print(f"  ratio Dask / single   {t_one / t_dask:12.2f}x   (same answers: {same})")


def xarray_pixels(P, C, device="cpu", client=None):
    import xarray as xr
    from gradfit.xarray_fit import fit_along
    t, y = series(P, seed=1)
    da = xr.DataArray(y, dims=("pixel", "t"), coords={"t": t})
    g = guesses(t, y)
    fit_along(GAUSS, da.isel(pixel=slice(0, 100)), "t", p0=P0, device=device)   # warm up
    t_ours, ds = timed(lambda: fit_along(GAUSS, da, "t", p0=g, device=device), 1)
    sub = da.isel(pixel=slice(0, C))
    g_sub = {k: xr.DataArray(v[:C], dims="pixel") for k, v in g.items()}
    sub.isel(pixel=slice(0, 10)).curvefit("t", gauss, p0=P0)
    t_ref, ref = timed(lambda: sub.curvefit("t", gauss, p0=g_sub), 1)
    ours, theirs = P / t_ours, C / t_ref
    agree = np.abs(ds["mu"].values[:C] - ref["curvefit_coefficients"].sel(param="mu").values)
    print(f"xarray: {P} pixels x 25 points (curvefit timed on {C} pixels)")
    print(f"  fit_along ({device:4s})      {ours:12.0f} fits/s  ({t_ours:.2f} s)")
    print(f"  DataArray.curvefit    {theirs:12.0f} fits/s")
    print(f"  ratio                 {ours / theirs:12.1f}x   (largest |mu| difference "
          f"{agree.max():.1e}, curvefit's default tolerances)")
    if client is None:
        return
    workers = len(client.scheduler_info()["workers"])
    chunked = da.chunk({"pixel": -(-P // (2 * workers))})      # two chunks a worker
    g_chunked = {k: xr.DataArray(v, dims="pixel").chunk({"pixel": chunked.chunks[0]})
                 for k, v in g.items()}
    fit_along(GAUSS, chunked.isel(pixel=slice(0, 100)), "t", p0=P0, scheduler=client)
    t_dask, ds_dask = timed(lambda: fit_along(GAUSS, chunked, "t", p0=g_chunked,
                                              scheduler=client), 1)
    same = np.allclose(ds_dask["mu"].values, ds["mu"].values, rtol=1e-8, equal_nan=True)
    print(f"  fit_along, Dask chunks on {workers} workers {P / t_dask:9.0f} fits/s  "
          f"({t_dask:.2f} s; {P / t_dask / theirs:.1f}x curvefit; same as in process: {same})")


def out_of_core(client, N, folder):
    import gradfit
    from gradfit.out_of_core import fit_out_of_core
    rng = np.random.default_rng(2)
    per_file = min(N, 2_000_000)
    xs, ys = [], []
    for i in range(N // per_file):
        x = rng.uniform(-5, 5, per_file)
        y = gauss(x, 2.0, 0.5, 0.8, 0.3) + 0.1 * rng.standard_normal(per_file)
        pd.DataFrame({"t": x, "v": y}).to_parquet(os.path.join(folder, f"p{i:04d}.parquet"))
        if N <= 20_000_000:
            xs.append(x), ys.append(y)
    t0 = time.perf_counter()
    r = fit_out_of_core(GAUSS, os.path.join(folder, "*.parquet"), x="t", y="v", p0=P0,
                        scheduler=client)
    t_ooc = time.perf_counter() - t0
    print(f"one series of {N:.0e} points in {N // per_file} Parquet files")
    print(f"  fit_out_of_core (lm)  {t_ooc:8.2f} s, {r.passes} passes, {r.reason}")
    if xs:
        x, y = np.concatenate(xs), np.concatenate(ys)
        t0 = time.perf_counter()
        s = gradfit.fit(GAUSS, x, y, p0=P0, inputs=("t",))
        t_mem = time.perf_counter() - t0
        rel = max(abs(r.params[k] - v) / abs(v) for k, v in s.params.items())
        print(f"  gradfit.fit in memory {t_mem:8.2f} s, {s.reason}; ratio {t_mem / t_ooc:.2f}x; "
              f"largest relative difference {rel:.1e}")
    else:
        print("  (in memory: not run, over 2e7 points)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes: S=2e4, P=1e4, N=1e6")
    ap.add_argument("--series", type=int, help="S, the many-series size")
    ap.add_argument("--pixels", type=int, help="P, the xarray size")
    ap.add_argument("--curvefit", type=int, default=500, help="C, curvefit's subset")
    ap.add_argument("--points", type=int, help="N, the out-of-core size")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="fit_along's device (cpu, cuda)")
    ap.add_argument("--only", choices=["xarray", "many", "one"], help="run one part")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process "
                    "(default 1, as each worker's)")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    S = a.series or (20_000 if a.quick else 1_000_000)
    P = a.pixels or (10_000 if a.quick else 100_000)
    N = a.points or (1_000_000 if a.quick else 100_000_000)
    from gradfit.cluster import client_for
    with client_for(workers=a.workers) as client, tempfile.TemporaryDirectory() as tmp:
        warm(client)
        if a.only in (None, "xarray"):
            xarray_pixels(P, a.curvefit, a.device, client if a.device == "cpu" else None)
        if a.only == "xarray":
            return
        os.makedirs(os.path.join(tmp, "many")), os.makedirs(os.path.join(tmp, "one"))
        if a.only in (None, "many"):
            many_series(client, S, a.repeat, os.path.join(tmp, "many"))
        if a.only in (None, "one"):
            out_of_core(client, N, os.path.join(tmp, "one"))


if __name__ == "__main__":
    main()
