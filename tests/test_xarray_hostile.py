"""fit_along under hostile input: each position that cannot be fitted says why in its
``message``, the others equal their fit alone; bad coordinates, sigma, models and complex
data are one InputError saying what was expected."""
import numpy as np
import pytest

import gradfit
from gradfit.errors import InputError
from gradfit.xarray_fit import fit_along

xr = pytest.importorskip("xarray")
T = np.linspace(0, 3, 15)
MODEL = "A*exp(-k*time)"


def decays():
    k = xr.DataArray([0.5, 1.0, 2.0], dims="pixel")
    return 2.0 * np.exp(-k * xr.DataArray(T, dims="time", coords={"time": T}))


@pytest.mark.parametrize("chunked", [False, True])
def test_a_failed_position_says_why_and_the_others_equal_their_fit_alone(chunked):
    # before: the Dataset had a reason ('failed') but no message: why was not to be had
    da = decays()
    da[1, 3] = np.nan
    ds = fit_along(MODEL, da.chunk({"pixel": 1}) if chunked else da, "time",
                   p0={"A": 1.0, "k": 1.0})
    assert ds["message"].values[1] == ("the data hold NaN at time index 3 (of 15 points, "
                                       "from 0): expected finite numbers")
    for i in (0, 2):
        alone = gradfit.fit_many(MODEL, T, da.values[i], inputs=("time",), p0={"A": 1.0, "k": 1.0})
        assert ds["k"].values[i] == alone.params["k"][0]
        assert ds["message"].values[i] == alone.message[0]


@pytest.mark.parametrize("change, text", [
    (lambda da: da.assign_coords(time=np.datetime64("2020-01-01") + np.arange(15).astype(
        "timedelta64[D]")), r"the coordinate of 'time' holds datetime64\[\w+\] values: "
                            "expected numbers"),
    (lambda da: da.astype(complex), "bad data: complex numbers: expected real numbers"),
])
def test_a_coordinate_or_data_that_are_not_real_numbers_are_refused(change, text):
    # before: dates were taken as nanoseconds since 1970 and every fit failed; complex data
    # lost their imaginary part with a ComplexWarning
    with pytest.raises(InputError, match=text):
        fit_along(MODEL, change(decays()), "time")


def test_sigma_over_another_dimension_is_refused_in_one_line():
    # before: ValueError: ('pixel', 'time') must be a permuted list of (...), unless ...
    with pytest.raises(InputError, match="bad sigma: expected a DataArray over .*"
                                         "got \"dimension 'z'\""):
        fit_along(MODEL, decays(), "time", sigma=xr.DataArray(np.ones(4), dims="z"))


def test_a_model_that_does_not_use_the_dimension_is_refused():
    # before: 't' became a third parameter and every position failed (lost rank)
    with pytest.raises(InputError, match="the model does not use the dimension 'time' as "
                                         "its input: expected an expression of time"):
        fit_along("A*exp(-k*t)", decays(), "time")


def test_outputs_do_not_take_the_datas_attributes_and_numpy_sigma_is_taken():
    import numpy as np
    import xarray as xr
    from gradfit.xarray_fit import fit_along
    t = np.linspace(0, 3, 12)
    k = np.array([0.5, 1.0, 2.0])
    da = xr.DataArray(2 * np.exp(-k[:, None] * t), dims=("pix", "time"),
                      coords={"time": t}, attrs={"units": "V"})
    ds = fit_along("A*exp(-k*time)", da, "time", p0={"A": 1.0, "k": 1.0})
    assert all(ds[v].attrs == {} for v in ds.data_vars)      # k is no voltage
    for sigma in (np.full(da.shape, 0.1), np.full(12, 0.1)):
        got = fit_along("A*exp(-k*time)", da, "time", p0={"A": 1.0, "k": 1.0}, sigma=sigma)
        np.testing.assert_allclose(got.k.values, k, rtol=1e-9)
    with pytest.raises(InputError, match="bad sigma"):
        fit_along("A*exp(-k*time)", da, "time", sigma=np.ones(5))


def test_a_p0_whose_coordinates_do_not_match_is_named():
    import numpy as np
    import xarray as xr
    from gradfit.xarray_fit import fit_along
    t = np.linspace(0, 3, 12)
    da = xr.DataArray(np.exp(-np.outer([1.0, 2.0], t)), dims=("pix", "time"),
                      coords={"time": t, "pix": [10, 20]})
    p0k = xr.DataArray([1.0, 2.0], dims=("pix",), coords={"pix": [10, 30]})
    with pytest.raises(InputError, match="coordinates do not match"):
        fit_along("exp(-k*time)", da, "time", p0={"k": p0k}).compute()
