"""fit_along where points are missing, against xarray's own curvefit: skipna=True leaves a
position's NaN points out of its fit as curvefit(skipna=True) does; without it a NaN in
the coordinate is one error naming the coordinate; a fit dimension of length 0 is refused;
a stacked (MultiIndex) dimension fits without FutureWarnings."""
import warnings

import numpy as np
import pytest

import gradfit
from gradfit.errors import InputError
from gradfit.xarray_fit import fit_along

xr = pytest.importorskip("xarray")
MODEL = "A*exp(-k*time)"
P0 = {"A": 1.0, "k": 1.0}
TIGHT = {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15}


def decay(time, A, k):
    return A * np.exp(-k * time)


def cube(seed=0, n=20):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 4, n)
    A, k = rng.uniform(1, 3, (3, 4, 1)), rng.uniform(0.3, 2, (3, 4, 1))
    y = decay(t, A, k) + 0.01 * rng.standard_normal((3, 4, n))
    return xr.DataArray(y, dims=("y", "x", "time"),
                        coords={"time": t, "y": np.arange(3), "x": np.arange(4)})


def holed():
    da = cube().copy()
    da[0, 1, 3] = np.nan                  # one missing point
    da[2, 2, [0, 5, 6, 19]] = np.nan      # four, the first and last included
    return da


@pytest.mark.parametrize("chunked", [False, True])
def test_skipna_fits_each_position_to_its_points_as_curvefit_does(chunked, dask_client):
    """Before: fit_along had no skipna (drop_nan= was blamed on the optimizer), and a
    position with one NaN failed where curvefit(skipna=True) fits it."""
    da = holed()
    ds = fit_along(MODEL, da.chunk({"y": 2}) if chunked else da, "time", p0=P0, skipna=True)
    ref = da.curvefit("time", decay, p0=P0, skipna=True, kwargs=TIGHT)
    assert bool(ds["converged"].all())
    for name in P0:
        want = ref["curvefit_coefficients"].sel(param=name).values
        np.testing.assert_allclose(ds[name].values, want, rtol=1e-8, err_msg=name)
        err = np.sqrt(ref["curvefit_covariance"].sel(cov_i=name, cov_j=name).values)
        np.testing.assert_allclose(ds[f"{name}_stderr"].values, err, rtol=1e-6, err_msg=name)
    # a position with a gap is the engine's fit of its finite points alone ...
    keep = np.isfinite(da.values[2, 2])
    alone = gradfit.fit_many(MODEL, da["time"].values[keep], da.values[2, 2][keep][None],
                             p0=P0, inputs=("time",))
    assert ds["k"].values[2, 2] == pytest.approx(alone.params["k"][0], rel=1e-10)
    # ... and one without a gap is what it is without skipna
    plain = fit_along(MODEL, da, "time", p0=P0)
    assert ds["k"].values[1, 1] == plain["k"].values[1, 1]
    assert plain["reason"].values[0, 1] == "failed" and plain["reason"].values[2, 2] == "failed"


def test_skipna_with_per_position_starts_and_an_empty_position(dask_client):
    da = holed()
    da[1, 3, :] = np.nan                                   # no point at all
    p0 = {"A": da.max("time"), "k": xr.full_like(da.isel(time=0, drop=True), 0.8)}
    ds = fit_along(MODEL, da.chunk({"x": 2}), "time", p0=p0, skipna=True)
    assert ds["reason"].values[1, 3] == "failed" and not ds["converged"].values[1, 3]
    assert ds["message"].values[1, 3].startswith("no finite points left after skipping NaN")
    assert int(ds["converged"].sum()) == 11
    keep = np.isfinite(da.values[0, 1])
    alone = gradfit.fit_many(MODEL, da["time"].values[keep], da.values[0, 1][keep][None],
                             p0={"A": float(np.nanmax(da.values[0, 1])), "k": 0.8},
                             inputs=("time",))
    assert ds["A"].values[0, 1] == pytest.approx(alone.params["A"][0], rel=1e-10)


def test_a_nan_in_the_coordinate_is_one_error_or_left_out_with_skipna():
    """Before: every position failed with 'x holds NaN at index 0' (no 'x' there)."""
    da = cube()
    bad = da.assign_coords(time=np.r_[np.nan, da["time"].values[1:]])
    with pytest.raises(InputError, match=r"the coordinate of 'time' holds nan at index 0: "
                                         r"expected finite numbers \(skipna=True"):
        fit_along(MODEL, bad, "time", p0=P0)
    ds = fit_along(MODEL, bad, "time", p0=P0, skipna=True)
    ref = fit_along(MODEL, da.isel(time=slice(1, None)), "time", p0=P0)
    np.testing.assert_array_equal(ds["k"].values, ref["k"].values)


def test_a_fit_dimension_of_length_0_is_refused():
    """Before: IndexError: index 0 is out of bounds for axis 0 with size 0."""
    da = xr.DataArray(np.zeros((0, 3)), dims=("time", "x"), coords={"time": np.zeros(0)})
    with pytest.raises(InputError, match="no points along 'time': expected at least one "
                                         "point along 'time'"):
        fit_along(MODEL, da, "time")


def test_drop_nan_is_pointed_to_skipna():
    with pytest.raises(InputError, match=r"fit_along does not take drop_nan=: expected "
                                         r"skipna=True"):
        fit_along(MODEL, cube(), "time", drop_nan=True)


def test_a_stacked_dimension_fits_without_warnings():
    """Before: 8 FutureWarnings 'Deleting a single level of a MultiIndex is deprecated'."""
    da = cube()
    stacked = da.stack(pix=("y", "x"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = fit_along(MODEL, stacked, "time", p0=P0)
    assert ds["k"].dims == ("pix",) and set(ds.indexes["pix"].names) == {"y", "x"}
    flat = fit_along(MODEL, da, "time", p0=P0)
    np.testing.assert_array_equal(ds["k"].unstack("pix").transpose("y", "x").values,
                                  flat["k"].values)
