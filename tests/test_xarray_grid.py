"""fit_along over several dimensions at once (a 2-D Gaussian on every frame of an image
stack) against xarray's own DataArray.curvefit with ``coords`` of those dimensions."""
import numpy as np
import pytest
import xarray as xr

from gradfit.errors import InputError
from gradfit.xarray_fit import fit_along

MODEL = "A*exp(-((x-x0)^2+(y-y0)^2)/(2*s^2)) + C"
P0 = {"A": 1.5, "x0": 3.5, "y0": 6.0, "s": 1.5, "C": 0.0}


def gauss2d(coords, A, x0, y0, s, C):
    y, x = coords
    return A * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * s * s)) + C


def stack(nt=4, ny=12, nx=15, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.arange(ny, dtype=float), 0.5 * np.arange(nx)
    Y, X = np.meshgrid(yy, xx, indexing="ij")
    A, x0 = rng.uniform(1, 2, (nt, 1, 1)), rng.uniform(2, 5, (nt, 1, 1))
    y0, s = rng.uniform(4, 8, (nt, 1, 1)), rng.uniform(1, 2, (nt, 1, 1))
    data = gauss2d((Y, X), A, x0, y0, s, 0.1) + 0.01 * rng.standard_normal((nt, ny, nx))
    return xr.DataArray(data, dims=("t", "y", "x"),
                        coords={"t": np.arange(nt), "y": yy, "x": xx})


def test_two_dimensions_agree_with_curvefit_over_both_coords():
    da = stack()
    ds = fit_along(MODEL, da, ("y", "x"), p0=P0)
    ref = da.curvefit(["y", "x"], gauss2d, p0=P0,
                      kwargs={"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15})
    assert ds["A"].dims == ("t",) and bool(ds["converged"].all())
    for name in P0:
        want = ref["curvefit_coefficients"].sel(param=name).values
        np.testing.assert_allclose(ds[name].values, want, rtol=1e-8, atol=1e-9, err_msg=name)
        err = np.sqrt(ref["curvefit_covariance"].sel(cov_i=name, cov_j=name).values)
        np.testing.assert_allclose(ds[f"{name}_stderr"].values, err, rtol=1e-6, err_msg=name)


def test_the_order_of_the_dimensions_and_chunks_do_not_change_the_answer():
    da = stack(seed=1)
    want = fit_along(MODEL, da, ("y", "x"), p0=P0)
    swapped = fit_along(MODEL, da, ["x", "y"], p0=P0)
    chunked = fit_along(MODEL, da.chunk({"t": 1, "y": 5}), ("y", "x"), p0=P0)
    for name in P0:
        np.testing.assert_allclose(swapped[name].values, want[name].values, rtol=1e-10)
        np.testing.assert_allclose(chunked[name].values, want[name].values, rtol=1e-12)


def test_a_frame_with_nan_fails_saying_where_on_the_grid_or_is_fitted_without_it():
    da = stack(nt=3).copy()
    da[1, 3, 4] = np.nan
    ds = fit_along(MODEL, da, ("y", "x"), p0=P0)
    assert ds["converged"].values.tolist() == [True, False, True]
    assert str(ds["message"].values[1]).startswith(
        "the data hold NaN at y index 3, x index 4 (of 12 x 15)")
    skipped = fit_along(MODEL, da, ("y", "x"), p0=P0, skipna=True)
    assert bool(skipped["converged"].all())
    # the frame fitted to its 179 finite points equals a fit of those points alone
    from gradfit import fit
    Y, X = np.meshgrid(da["y"].values, da["x"].values, indexing="ij")
    keep = np.isfinite(da[1].values)
    one = fit(MODEL, np.stack([X[keep], Y[keep]], -1), da[1].values[keep], inputs=("x", "y"),
              p0=P0)
    for name in P0:
        assert skipped[name].values[1] == pytest.approx(one.params[name], rel=1e-9)


def test_sigma_over_the_grid_and_weights_as_curve_fit():
    da = stack(nt=2)
    sigma = np.linspace(0.01, 0.03, da.sizes["y"] * da.sizes["x"]).reshape(
        da.sizes["y"], da.sizes["x"])
    ds = fit_along(MODEL, da, ("y", "x"), p0=P0, sigma=sigma)
    full = fit_along(MODEL, da, ("y", "x"), p0=P0,
                     sigma=xr.DataArray(np.broadcast_to(sigma, da.shape), dims=da.dims))
    from scipy.optimize import curve_fit
    Y, X = np.meshgrid(da["y"].values, da["x"].values, indexing="ij")
    for t in range(2):
        popt, pcov = curve_fit(lambda c, *p: gauss2d(c, *p), (Y.ravel(), X.ravel()),
                               da[t].values.ravel(), p0=list(P0.values()),
                               sigma=sigma.ravel())
        for i, name in enumerate(P0):
            assert ds[name].values[t] == pytest.approx(popt[i], rel=1e-7, abs=1e-9)
            assert ds[f"{name}_stderr"].values[t] == pytest.approx(np.sqrt(pcov[i, i]),
                                                                  rel=1e-5)
            assert full[name].values[t] == ds[name].values[t]


@pytest.mark.parametrize("dims, words", [
    (("y", "y"), "a dimension named twice"),
    ((), "no dimension to fit along"),
    (("y", "q"), "no dimension named 'q'"),
])
def test_bad_dimensions_are_refused_by_name(dims, words):
    with pytest.raises(InputError, match=words):
        fit_along(MODEL, stack(nt=1), dims, p0=P0)


def test_a_model_of_none_of_the_dimensions_is_refused():
    with pytest.raises(InputError, match="does not use any of the dimensions 'y', 'x'"):
        fit_along("a*t + b", stack(nt=1), ("y", "x"))
