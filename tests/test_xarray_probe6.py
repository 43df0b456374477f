"""fit_along after the sixth probe (/tmp/probes/xr.md): bounds arrays mean (low, high) as
in fit and fit_many, never per-position lower bounds; skipna and compute are True or
False; numpy data with Dask-backed p0/bounds/fixed/sigma is computed; object data, text
sigma and a dimension named like an internal one are clear errors or work; messages name
the data and its cells as given (before NaN points were skipped); NaN labels match
themselves; repeated messages share one string. Oracles: scipy's curve_fit, xarray's
curvefit, gradfit.fit / fit_many on single pixels."""
import numpy as np
import pytest

import gradfit
from gradfit.errors import DataError, InputError
from gradfit.xarray_fit import fit_along

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")
dask_array = pytest.importorskip("dask.array")
optimize = pytest.importorskip("scipy.optimize")

MODEL = "A*exp(-k*time)"
P0 = {"A": 1.0, "k": 0.5}
T = np.linspace(0, 4, 25)
TIGHT = {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15}


def decay(time, A, k):
    return A * np.exp(-k * time)


def two():
    """Two clean decays (k = 1.4 and 0.76) along time: another dimension of size 2, where
    a pair (low, high) has the shape of the positions."""
    return xr.DataArray(np.array([decay(T, 2, 1.4), decay(T, 2, 0.76)]), dims=("x", "time"),
                        coords={"time": T})


def stack(seed=0, ny=3, nx=4):
    rng = np.random.default_rng(seed)
    A, k = rng.uniform(1, 3, (ny, nx, 1)), rng.uniform(0.3, 2, (ny, nx, 1))
    y = decay(T, A, k) + 0.01 * rng.standard_normal((ny, nx, T.size))
    return xr.DataArray(y, dims=("y", "x", "time"),
                        coords={"time": T, "y": np.arange(ny), "x": np.arange(nx)})


def alone(y, **kw):
    """gradfit.fit on one pixel: the reference for a position's numbers."""
    return gradfit.fit(MODEL, T, y, inputs=("time",), **{"p0": P0, **kw})


# 1: a bounds value that is an array is a pair (low, high) ---------------------------------

def test_a_numpy_pair_is_low_high_as_in_fit_many_and_scipy():
    # before: [1.4, 5.0]; np.array([0, 5]) became per-pixel LOWER bounds 0 and 5
    da = two()
    got = fit_along(MODEL, da, "time", p0=P0, bounds={"k": np.array([0.0, 5.0])})
    many = gradfit.fit_many(MODEL, T, da.values, inputs=("time",), p0=P0,
                            bounds={"k": np.array([0.0, 5.0])})
    np.testing.assert_allclose(got["k"].values, many.params["k"], rtol=1e-10)
    np.testing.assert_allclose(got["k"].values, [1.4, 0.76], rtol=1e-8)
    assert bool(got["converged"].all())
    # a bound that holds: the same as curve_fit's bounded fit and gradfit.fit per pixel
    got = fit_along(MODEL, da, "time", p0=P0, bounds={"k": np.array([0.0, 1.0])})
    for i in range(2):
        ref, _ = optimize.curve_fit(decay, T, da.values[i], p0=[1.0, 0.5],
                                    bounds=([-np.inf, 0.0], [np.inf, 1.0]), **TIGHT)
        np.testing.assert_allclose([got["A"].values[i], got["k"].values[i]], ref, rtol=1e-6)
        one = alone(da.values[i], bounds={"k": (0.0, 1.0)})
        assert got["k"].values[i] == pytest.approx(one.params["k"], rel=1e-9)
        assert got["A"].values[i] == pytest.approx(one.params["A"], rel=1e-9)
    assert got["k"].values[0] == pytest.approx(1.0) and got["k"].values[1] < 1.0


def test_an_array_of_low_then_high_per_position_is_taken_as_the_pair():
    da = two()
    lo, hi = np.array([0.0, 0.0]), np.array([1.0, 5.0])
    stacked = fit_along(MODEL, da, "time", p0=P0, bounds={"k": np.stack([lo, hi])})
    pair = fit_along(MODEL, da, "time", p0=P0,
                     bounds={"k": (xr.DataArray(lo, dims="x"), xr.DataArray(hi, dims="x"))})
    for i in range(2):
        one = alone(da.values[i], bounds={"k": (lo[i], hi[i])})
        assert stacked["k"].values[i] == pytest.approx(one.params["k"], rel=1e-9)
        assert pair["k"].values[i] == stacked["k"].values[i]
    assert stacked["k"].values[0] == pytest.approx(1.0)        # clamped at its own high side
    assert stacked["k"].values[1] == pytest.approx(0.76, rel=1e-8)


@pytest.mark.parametrize("value, text", [
    (lambda o: xr.full_like(o, 1.0), r"bad bounds 'k': one DataArray \(taken as neither "
                                     r"side\): expected a pair \(low, high\)"),
    (lambda o: np.ones((3, 4)), r"bad bounds 'k': an array of shape \(3, 4\): expected a "
                                r"pair \(low, high\)"),
    (lambda o: np.ones(3), r"an array of shape \(3,\): expected a pair \(low, high\)"),
    (lambda o: (0, 1, 2), r"bad bounds 'k': 3 values: expected a pair \(low, high\), each "
                          r"side None, a number, a DataArray over the other dimensions "
                          r"\(y, x\) or an array of shape \(3, 4\).*got \(0, 1, 2\)"),
    (lambda o: 1.0, r"bad bounds 'k': expected a pair \(low, high\).*got 1.0"),
    (lambda o: (0, "a"), r"bad bounds 'k': its high side: expected None, a number"),
])
def test_a_bounds_value_that_is_not_a_pair_is_refused_saying_low_high(value, text):
    # before: a DataArray was silently the lower bounds ([1.4, 1.0]: clamped); (0, 1, 2)
    # said "an array of shape (3, 4)"
    da = stack()
    other = da.isel(time=0, drop=True)
    for d in (da, da.chunk({"y": 1})):
        with pytest.raises(InputError, match=text):
            fit_along(MODEL, d, "time", p0=P0, bounds={"k": value(other)})


# 2: skipna and compute are booleans --------------------------------------------------------

@pytest.mark.parametrize("name", ["skipna", "compute"])
@pytest.mark.parametrize("value", ["no", "False", 0, 1, None, 0.0])
def test_skipna_and_compute_are_true_or_false(name, value):
    # before: skipna="no" skipped the NaN point (a truthy string)
    da = two()
    da[0, 3] = np.nan
    shown = repr(value) if isinstance(value, str) else str(value)
    with pytest.raises(InputError, match=rf"^bad {name}: expected True or False, got "
                                         rf"{shown}$".replace("(", r"\(")):
        fit_along(MODEL, da, "time", p0=P0, **{name: value})


def test_numpy_booleans_are_taken():
    da = two()
    da[0, 3] = np.nan
    got = fit_along(MODEL, da, "time", p0=P0, skipna=np.bool_(False), compute=np.True_)
    assert not got["converged"].values[0] and got["converged"].values[1]


# 3, 4: Dask-backed arguments with data in memory -------------------------------------------

def _arguments(da, which, lazy):
    """p0, fixed, bounds or sigma that vary by position: Dask-backed (chunked unlike the
    data, along time too for sigma) or the same in memory."""
    def chunk(a, **chunks):
        return a.chunk(chunks) if lazy else a
    other = da.isel(time=0, drop=True)
    return {
        "p0": dict(p0={"A": 1.0, "k": chunk(xr.full_like(other, 0.5), y=1)}),
        "fixed": dict(p0={"k": 0.5}, fixed={"A": chunk(da.isel(time=0, drop=True), x=2)}),
        "bounds": dict(p0=P0, bounds={"k": (0.0, chunk(xr.full_like(other, 5.0), y=2))}),
        "sigma": dict(p0=P0, sigma=chunk(xr.full_like(da, 0.01), time=5, y=2)),
    }[which]


@pytest.mark.parametrize("which", ["p0", "fixed", "bounds", "sigma"])
def test_numpy_data_with_a_dask_argument_is_computed_and_equals_it_in_memory(which):
    # before: compute=True returned a Dask-backed Dataset (p0, fixed, bounds), or a raw
    # apply_ufunc ValueError (a sigma chunked along time)
    da = stack()
    got = fit_along(MODEL, da, "time", **_arguments(da, which, lazy=True))
    assert all(isinstance(v.data, np.ndarray) for v in got.variables.values())
    want = fit_along(MODEL, da, "time", **_arguments(da, which, lazy=False))
    for name in ("k", "loss", "converged", "reason", "message"):
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)
    assert bool(got["converged"].all())
    # ... and a pixel is its fit alone
    y = da.values[1, 2]
    kw = {"p0": P0} if which != "fixed" else {"p0": {"k": 0.5}, "fixed": {"A": y[0]}}
    if which == "sigma":
        kw["sigma"] = np.full(T.size, 0.01)
    assert got["k"].values[1, 2] == pytest.approx(alone(y, **kw).params["k"], rel=1e-8)


def test_numpy_data_with_a_dask_p0_runs_on_the_scheduler_given(dask_client):
    da = stack()
    p0 = {"A": 1.0, "k": xr.full_like(da.isel(time=0, drop=True), 0.5).chunk({"y": 1})}
    distributed = pytest.importorskip("distributed")
    with distributed.get_task_stream(client=dask_client) as tasks:
        got = fit_along(MODEL, da, "time", p0=p0, scheduler=dask_client)
    assert len(tasks.data) >= 3                       # the fit ran there, chunk by chunk
    assert isinstance(got["k"].data, np.ndarray)
    want = fit_along(MODEL, da, "time", p0=P0)
    np.testing.assert_array_equal(got["k"].values, want["k"].values)
    lazy = fit_along(MODEL, da, "time", p0=p0, compute=False)
    assert isinstance(lazy["k"].data, dask_array.Array)
    np.testing.assert_array_equal(lazy.compute()["k"].values, want["k"].values)


def test_workers_and_scheduler_are_checked_for_data_in_memory_too():
    with pytest.raises(InputError, match="bad number of workers: expected a whole number"):
        fit_along(MODEL, two(), "time", p0=P0, workers=0)
    with pytest.raises(InputError, match="bad scheduler address"):
        fit_along(MODEL, two(), "time", p0=P0, scheduler="nope")


def test_data_and_sigma_chunked_differently_along_time_equal_it_in_memory():
    da = stack()
    sigma = xr.full_like(da, 0.01)
    sigma[1, 1, 4] = 0.02
    got = fit_along(MODEL, da.chunk({"time": 7, "x": 3}), "time", p0=P0,
                    sigma=sigma.chunk({"time": 4, "y": 2}))
    want = fit_along(MODEL, da, "time", p0=P0, sigma=sigma)
    np.testing.assert_array_equal(got["k"].values, want["k"].values)
    ref, _ = optimize.curve_fit(decay, T, da.values[1, 1], p0=[1.0, 0.5],
                                sigma=sigma.values[1, 1], **TIGHT)
    assert got["k"].values[1, 1] == pytest.approx(ref[1], rel=1e-7)


# 5: data and sigma that are not numbers ----------------------------------------------------

@pytest.mark.parametrize("chunked", [False, True])
def test_object_data_with_text_is_a_data_error_naming_the_cell(chunked):
    # before: ValueError: could not convert string to float: 'bad' (from _fit_block)
    values = two().values.astype(object)
    values[1, 3] = "bad"
    da = xr.DataArray(values, dims=("x", "time"), coords={"time": T})
    with pytest.raises(DataError, match=r"^bad data: 'bad' \(str\) at x index 1, time index 3 "
                                        r"is not a number: expected numbers \(a missing value "
                                        r"as NaN, None or pd.NA\)$"):
        fit_along(MODEL, da.chunk({"x": 1}) if chunked else da, "time", p0=P0)


def test_object_numbers_with_pd_na_and_none_are_numbers_with_nan():
    # before: TypeError: float() argument must be ... not 'NAType'
    clean = two()
    values = clean.values.astype(object)
    values[0, 3], values[1, 5] = pd.NA, None
    da = xr.DataArray(values, dims=("x", "time"), coords={"time": T})
    floats = clean.copy()
    floats[0, 3] = floats[1, 5] = np.nan
    for skipna in (False, True):
        got = fit_along(MODEL, da, "time", p0=P0, skipna=skipna)
        want = fit_along(MODEL, floats, "time", p0=P0, skipna=skipna)
        for name in ("k", "converged", "message"):
            np.testing.assert_array_equal(got[name].values, want[name].values)
    assert got["k"].values == pytest.approx([1.4, 0.76], rel=1e-8)      # skipna=True
    assert fit_along(MODEL, da, "time", p0=P0)["message"].values[0] == (
        "the data hold NaN at time index 3 (of 25 points, from 0): expected finite numbers")


def test_text_data_and_text_sigma_are_refused():
    with pytest.raises(DataError, match=r"bad data: text values: expected numbers"):
        fit_along(MODEL, two().astype(str), "time", p0=P0)
    with pytest.raises(InputError, match=r"^bad sigma: expected a DataArray, a number or an "
                                         r"array of numbers, got 'abc'$"):
        fit_along(MODEL, two(), "time", p0=P0, sigma="abc")
    s = np.full((2, T.size), 0.1, dtype=object)
    s[0, 2] = "x"
    with pytest.raises(DataError, match=r"bad sigma: 'x' \(str\) at dim_0 index 0, dim_1 "
                                        r"index 2 is not a number"):
        fit_along(MODEL, two(), "time", p0=P0, sigma=s)
    p0 = xr.DataArray(np.array(["1", "2"], dtype=object), dims="x")
    with pytest.raises(DataError, match=r"bad p0 'A': '1' \(str\) at x index 0 is not a number"):
        fit_along(MODEL, two(), "time", p0={"A": p0, "k": 0.5})


# 6: a dimension named like the internal one ------------------------------------------------

def test_a_dimension_named_field_fits_as_any_other():
    # before: ValueError from apply_ufunc: unexpected dimensions ['_field']
    da = stack()
    renamed = da.rename(x="_field", y="__field")
    got = fit_along(MODEL, renamed, "time", p0=P0)
    want = fit_along(MODEL, da, "time", p0=P0)
    assert got["k"].dims == ("__field", "_field")
    np.testing.assert_array_equal(got["k"].values, want["k"].values)
    ref = da.curvefit("time", decay, p0=P0, kwargs=TIGHT)["curvefit_coefficients"]
    np.testing.assert_allclose(got["k"].values, ref.sel(param="k").values, rtol=1e-7)


# 7, 10: messages name the data and the cell as given --------------------------------------

def test_a_1d_message_names_the_data_and_the_dimension():
    # before: "y holds NaN at index 3 (of 25 points, from 0)" in a (y, x, time) stack
    da = stack()
    da[1, 2, 3] = np.nan
    for d in (da, da.chunk({"y": 1})):
        got = fit_along(MODEL, d, "time", p0=P0)
        assert got["message"].values[1, 2] == ("the data hold NaN at time index 3 (of 25 "
                                               "points, from 0): expected finite numbers")
        assert not got["converged"].values[1, 2] and int(got["converged"].sum()) == 11


def test_with_skipna_a_point_is_named_by_its_index_before_nan_was_skipped():
    # before: "sigma holds 0 at index 8 (of 23 points, from 0)": its index among the
    # finite points; the cell is 10
    da = two()
    da[0, :2] = np.nan
    sigma = xr.full_like(da, 0.01)
    sigma[0, 10] = 0.0
    for d, s in ((da, sigma), (da.chunk({"x": 1}), sigma.chunk({"time": 5}))):
        got = fit_along(MODEL, d, "time", p0=P0, sigma=s, skipna=True)
        assert got["message"].values[0] == ("sigma holds 0 at time index 10 (of 25 points, "
                                            "from 0): expected positive finite numbers")
        assert got["k"].values[1] == pytest.approx(0.76, rel=1e-8)
    plain = da.copy()
    plain[0, :2] = 1.0
    assert fit_along(MODEL, plain, "time", p0=P0, sigma=sigma)["message"].values[0] == \
        got["message"].values[0]


def test_with_skipna_a_grid_cell_is_named_by_its_own_indices():
    # before: 'sigma holds 0 at y index 3, x index 3 (of 4 x 5)'; the cell is y 3, x 4
    g = xr.DataArray(np.random.default_rng(0).random((2, 4, 5)) + 1, dims=("time", "y", "x"))
    g[0, 0, 0] = np.nan
    sg = xr.full_like(g, 1.0)
    sg[0, 3, 4] = 0
    got = fit_along("a + b*x + c*y", g, ("y", "x"), sigma=sg, skipna=True)
    assert got["message"].values[0] == ("sigma holds 0 at y index 3, x index 4 (of 4 x 5): "
                                        "expected positive finite numbers")
    # the other frame is the plane of least squares (numpy's lstsq)
    Y, X = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    A = np.stack([np.ones(20), X.ravel(), Y.ravel()], axis=1)
    coef = np.linalg.lstsq(A, g.values[1].ravel(), rcond=None)[0]
    np.testing.assert_allclose([got[n].values[1] for n in "abc"], coef, rtol=1e-8)


def test_a_cell_is_named_along_the_coordinate_as_given_after_nan_coordinates_were_cut():
    da = stack().isel(y=0, x=[0, 1])
    time = T.copy()
    time[[1, 2]] = np.nan
    da = da.assign_coords(time=time)
    da[1, 7] = np.nan
    sigma = xr.full_like(da, 0.01)
    sigma[0, 9] = -1.0
    got = fit_along(MODEL, da, "time", p0=P0, sigma=sigma, skipna=True)
    assert got["message"].values[0] == ("sigma holds -1 at time index 9 (of 25 points, "
                                        "from 0): expected positive finite numbers")
    keep = np.isfinite(time) & np.isfinite(da.values[1])
    ref, _ = optimize.curve_fit(decay, time[keep], da.values[1][keep], p0=[1.0, 0.5], **TIGHT)
    assert got["k"].values[1] == pytest.approx(ref[1], rel=1e-7)


# 8: NaN labels ------------------------------------------------------------------------------

@pytest.mark.parametrize("chunked", [False, True])
def test_a_nan_label_on_another_dimension_matches_itself(chunked):
    # before: InputError "bad p0 'A': its coordinates do not match the data's"
    da = two()
    dn = da.assign_coords(x=[0.0, np.nan])
    d = dn.chunk({"x": 1}) if chunked else dn
    got = fit_along(MODEL, d, "time", p0={"A": dn.max("time"), "k": 0.5},
                    sigma=xr.full_like(dn, 0.01))
    want = fit_along(MODEL, da, "time", p0={"A": da.max("time"), "k": 0.5},
                     sigma=xr.full_like(da, 0.01))
    np.testing.assert_array_equal(got["k"].values, want["k"].values)
    np.testing.assert_array_equal(got["x"].values, [0.0, np.nan])
    assert got["k"].values == pytest.approx([1.4, 0.76], rel=1e-8)
    # labels that differ are still refused, shown as plain numbers
    with pytest.raises(InputError, match=r"bad p0 'A': its coordinates do not match the "
                                         r"data's: expected the data's labels along 'x', got "
                                         r"'\[0.0, 1.0\]'"):
        fit_along(MODEL, d, "time", p0={"A": da.assign_coords(x=[0.0, 1.0]).max("time"),
                                        "k": 0.5})


# 11: one string per distinct message -----------------------------------------------------------

@pytest.mark.parametrize("chunked", [False, True])
def test_repeated_messages_and_reasons_share_one_string(chunked):
    # before: a str object per position (xarray's pandas round trip copied each), 113
    # bytes a pixel of the same text
    da = stack(ny=6, nx=8)
    da[2, 3, 5] = np.nan
    got = fit_along(MODEL, da.chunk({"y": 3}) if chunked else da, "time", p0=P0)
    for name in ("message", "reason"):
        values = got[name].values.reshape(-1)
        assert values.dtype == object and all(type(v) is str for v in values)
        texts = set(values.tolist())
        blocks = 2 if chunked else 1
        assert len({id(v) for v in values}) <= len(texts) * blocks, name
    # ... and say what fit_many says, position by position
    many = gradfit.fit_many(MODEL, T, da.values.reshape(-1, T.size), inputs=("time",), p0=P0)
    want = [m.replace("y holds NaN at index 5 (of 25 points, from 0)",
                      "the data hold NaN at time index 5 (of 25 points, from 0)")
            for m in many.message]
    assert got["message"].values.reshape(-1).tolist() == want
    assert got["reason"].values.reshape(-1).tolist() == list(many.reason)
    assert got["message"].values[2, 3].startswith("the data hold NaN at time index 5")


# 12: smaller items ---------------------------------------------------------------------------

def test_a_result_without_other_dimensions_has_object_reason_and_message():
    got = fit_along(MODEL, two().isel(x=0), "time", p0=P0)
    assert got["reason"].dtype == object and got["message"].dtype == object
    assert got["reason"].shape == () and isinstance(got["reason"].values.item(), str)
    assert float(got["k"]) == pytest.approx(1.4, rel=1e-8)


def test_0d_data_and_a_stacked_dimension_are_refused_clearly():
    with pytest.raises(InputError, match=r"no dimension named 'time': expected a dimension "
                                         r"of the data \(they have none"):
        fit_along(MODEL, two().isel(x=0, time=0), "time", p0=P0)
    with pytest.raises(InputError, match=r"the dimension 'p' is stacked \(a MultiIndex of "
                                         r"'x', 'time'\): expected a dimension of numbers: "
                                         r"unstack it"):
        fit_along(MODEL, two().stack(p=("x", "time")), "p", p0=P0)


def test_the_probe_baseline_still_agrees_with_curvefit():
    da = stack()
    got = fit_along(MODEL, da, "time", p0=P0)
    ref = da.curvefit("time", decay, p0=P0, kwargs=TIGHT)
    for name in P0:
        np.testing.assert_allclose(got[name].values,
                                   ref["curvefit_coefficients"].sel(param=name).values,
                                   rtol=1e-7, err_msg=name)
