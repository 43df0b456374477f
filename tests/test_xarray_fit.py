"""fit_along against xarray's own DataArray.curvefit (scipy's curve_fit per pixel), on
numpy-backed and Dask-backed arrays."""
import numpy as np
import pytest
import xarray as xr

from gradfit.errors import InputError
from gradfit.xarray_fit import fit_along

MODEL = "A*exp(-(time-mu)^2/(2*s^2)) + C"
P0 = {"A": 1.5, "mu": 0.0, "s": 1.0, "C": 0.0}


def gauss(time, A, mu, s, C):
    return A * np.exp(-(time - mu) ** 2 / (2 * s * s)) + C


def cube(ny=4, nx=5, n=25, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(-5, 5, n)
    A, mu = rng.uniform(1, 3, (ny, nx, 1)), rng.uniform(-1, 1, (ny, nx, 1))
    s, C = rng.uniform(0.6, 1.5, (ny, nx, 1)), rng.uniform(0, 1, (ny, nx, 1))
    y = gauss(t, A, mu, s, C) + 0.05 * rng.standard_normal((ny, nx, n))
    return xr.DataArray(y, dims=("y", "x", "time"), coords={"time": t, "x": np.arange(nx)})


def test_agrees_with_curvefit_to_8_digits():
    """8 digits relative to max(|value|, 1), the data's unit: for a centre near 0 (mu =
    -0.029) scipy stops on ftol 2e-9 away, at a sum of squares no lower than ours."""
    da = cube()
    ds = fit_along(MODEL, da, "time", p0=P0)
    ref = da.curvefit("time", gauss, p0=P0, kwargs={"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15})
    assert bool(ds["converged"].all())
    assert set(ds["reason"].values.ravel()) <= {"gtol", "ftol", "xtol"}
    assert ds["A"].dims == ("y", "x") and (ds["x"] == da["x"]).all()
    for i, name in enumerate(P0):
        want = ref["curvefit_coefficients"].sel(param=name).values
        got = ds[name].values
        assert (np.abs(got - want) <= 1e-8 * np.maximum(np.abs(want), 1.0)).all(), name
        err = np.sqrt(ref["curvefit_covariance"].sel(cov_i=name, cov_j=name).values)
        np.testing.assert_allclose(ds[f"{name}_stderr"].values, err, rtol=1e-6, err_msg=name)
    coef = ref["curvefit_coefficients"]
    theirs = ((gauss(da["time"], *(coef.sel(param=n) for n in P0)) - da) ** 2).mean("time")
    assert (ds["loss"] <= theirs * (1 + 1e-14)).all()


def test_dask_chunks_on_the_cluster_equal_the_in_memory_fit(dask_client):
    da = cube(6, 8, seed=1)
    want = fit_along(MODEL, da, "time", p0=P0)
    lazy = fit_along(MODEL, da.chunk({"y": 2, "x": 4, "time": 5}), "time", p0=P0, compute=False)
    assert lazy["A"].chunks is not None           # nothing ran yet
    got = fit_along(MODEL, da.chunk({"y": 2, "x": 4}), "time", p0=P0, scheduler=dask_client)
    for name in list(P0) + ["loss", "A_stderr"]:
        np.testing.assert_allclose(got[name].values, want[name].values, rtol=1e-12, err_msg=name)
    # the verdict; its name (gtol/xtol) may differ at the margin with the batch's make-up
    assert (got["converged"].values == want["converged"].values).all()
    np.testing.assert_allclose(lazy.compute()["mu"].values, want["mu"].values, rtol=1e-12)


def test_a_bad_pixel_fails_alone_and_bad_input_is_refused():
    da = cube(2, 3, seed=2).copy()
    da[0, 1, 3] = np.nan
    ds = fit_along(MODEL, da, "time", p0=P0)
    assert ds["reason"].values[0, 1] == "failed" and not ds["converged"].values[0, 1]
    assert int(ds["converged"].sum()) == 5
    with pytest.raises(InputError, match="no dimension named 't'"):
        fit_along(MODEL, da, "t")
    with pytest.raises(InputError, match="expected an xarray DataArray"):
        fit_along(MODEL, da.values, "time")


def test_starting_values_and_bounds_per_pixel_follow_their_pixels(dask_client):
    # p0 and one side of a bound as DataArrays over the other dimensions (an array of their
    # shape works too): each pixel is fitted from its own values, in memory and in chunks,
    # and equals the engine on that pixel alone
    import gradfit
    da = cube(4, 5, seed=2)
    p0 = {"A": da.max("time") - da.min("time"), "mu": da["time"][da.argmax("time")].drop_vars("time"),
          "s": 0.5, "C": da.min("time").values}
    upper = xr.DataArray(np.where(np.arange(20).reshape(4, 5) % 2, 0.7, 5.0), dims=("y", "x"))
    bounds = {"s": (0.1, upper)}
    got = fit_along(MODEL, da, "time", p0=p0, bounds=bounds)
    chunked = fit_along(MODEL, da.chunk({"y": 2, "x": 3}), "time", p0=p0, bounds=bounds,
                        scheduler=dask_client)
    assert bool(got["converged"].all()) and (got["s"].values <= upper.values + 1e-15).all()
    assert (np.abs(got["s"].values - 0.7) < 1e-12).sum() >= 3        # the bound holds some
    for iy in range(4):
        for ix in range(5):
            start = {k: float(np.asarray(v)[iy, ix]) if np.ndim(v) else v for k, v in p0.items()}
            one = gradfit.fit_many(MODEL, da["time"].values, da.values[iy, ix][None],
                                   p0=start, bounds={"s": (0.1, float(upper[iy, ix]))},
                                   inputs=("time",))
            for k in P0:
                # LM stops at a relative step of 1e-10: batches of another make-up (and
                # a worker's one thread) agree to fit_many's promise, 1e-8
                np.testing.assert_allclose(got[k].values[iy, ix], one.params[k][0], rtol=1e-8)
                np.testing.assert_allclose(chunked[k].values[iy, ix], got[k].values[iy, ix],
                                           rtol=1e-8)
    with pytest.raises(InputError, match=r"bad p0 'A': expected .* shape \(4, 5\)"):
        fit_along(MODEL, da, "time", p0={**P0, "A": np.ones(7)})
    with pytest.raises(InputError, match="dimension 'time'"):
        fit_along(MODEL, da, "time", p0={**P0, "A": da})
