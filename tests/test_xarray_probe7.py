"""fit_along against xarray's own curvefit: p0 and fixed given as a DataArray over a
labelled 'param' dimension (curvefit's coefficients) are read by name, a Dataset is
fitted variable by variable as Dataset.curvefit fits it, and a lazy result computed
later shares one string per distinct message, as the result in memory does."""

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("scipy")
pytest.importorskip("dask")

from gradfit.errors import InputError
from gradfit.xarray_fit import fit_along

T = np.linspace(0, 10, 60)
MODEL = "A*sin(w*time)"


def sine(A, w, time):
    return A * np.sin(w * time)


def waves(ws=(0.9, 1.1), seed=0):
    """Noisy sines of amplitude 2, one frequency a pixel."""
    w = xr.DataArray(list(ws), dims="pix")
    clean = 2.0 * np.sin(w * xr.DataArray(T, dims="time", coords={"time": T}))
    return clean + 0.05 * np.random.default_rng(seed).standard_normal(clean.shape)


def test_p0_as_a_param_dataarray_in_another_order_is_read_by_name():
    """Before: the DataArray's values were taken in the model's order (A, w), its labels
    unread: w started at 1.5 and the fit found another minimum (A 0.2, w 1.6)."""
    da = waves()
    p0 = xr.DataArray([1.0, 1.5], dims="param", coords={"param": ["w", "A"]})
    want = da.curvefit("time", lambda time, A, w: sine(A, w, time),
                       p0={"w": 1.0, "A": 1.5}).curvefit_coefficients
    got = fit_along(MODEL, da, "time", p0=p0)
    np.testing.assert_allclose(got["A"], want.sel(param="A"), rtol=1e-6)
    np.testing.assert_allclose(got["w"], want.sel(param="w"), rtol=1e-6)


def test_curvefits_coefficients_over_positions_start_each_position():
    """curvefit_coefficients (pix, param), params in curvefit's order, fed back as p0."""
    da = waves((0.9, 1.1, 1.3))
    first = da.curvefit("time", lambda time, A, w: sine(A, w, time),
                        p0={"A": 1.5, "w": 1.0})
    start = first.curvefit_coefficients.sel(param=["w", "A"])   # another order
    got = fit_along(MODEL, da, "time", p0=start)
    np.testing.assert_allclose(got["w"], first.curvefit_coefficients.sel(param="w"),
                               rtol=1e-6)


def test_fixed_as_a_param_dataarray_is_read_by_name():
    da = waves()
    fixed = xr.DataArray([2.0], dims="param", coords={"param": ["A"]})
    want = da.curvefit("time", lambda time, w: sine(2.0, w, time), p0={"w": 1.0})
    got = fit_along(MODEL, da, "time", p0={"w": 1.0}, fixed=fixed)
    np.testing.assert_allclose(got["w"], want.curvefit_coefficients.sel(param="w"),
                               rtol=1e-6)
    assert (got["A"] == 2.0).all()


@pytest.mark.parametrize("p0, words", [
    (xr.DataArray([1.0, 2.0], dims="q", coords={"q": ["A", "w"]}), "labelled 'param'"),
    (xr.DataArray([1.0, 2.0], dims="param", coords={"param": ["A", "z"]}),
     "'z' is not a parameter"),
    (xr.DataArray([1.0, 2.0], dims="param", coords={"param": ["A", "A"]}), "labelled twice"),
])
def test_a_param_dataarray_that_names_no_parameter_is_refused(p0, words):
    with pytest.raises(InputError, match=words):
        fit_along(MODEL, waves(), "time", p0=p0)


def test_a_dataset_is_fitted_as_dataset_curvefit_fits_it():
    """Before: 'bad data: expected an xarray DataArray, got Dataset'."""
    ds = xr.Dataset({"a": waves(), "b": waves((1.2,), seed=1).isel(pix=0, drop=True)},
                    attrs={"source": "probe"})
    want = ds.curvefit("time", lambda time, A, w: sine(A, w, time), p0={"A": 1.5, "w": 1.0})
    got = fit_along(MODEL, ds, "time", p0={"A": 1.5, "w": 1.0})
    for var in ("a", "b"):
        coeffs = want[f"{var}_curvefit_coefficients"]
        for p in ("A", "w"):
            np.testing.assert_allclose(got[f"{var}_{p}"], coeffs.sel(param=p), rtol=1e-6)
        cov = want[f"{var}_curvefit_covariance"]
        np.testing.assert_allclose(got[f"{var}_w_stderr"],
                                   np.sqrt(cov.sel(cov_i="w", cov_j="w")), rtol=1e-4)
        assert bool(got[f"{var}_converged"].all())
    assert got["b_A"].dims == () and got["a_A"].dims == ("pix",)
    assert got.attrs == {"source": "probe"}


def test_a_dataset_variable_without_the_dimension_is_refused_by_name():
    ds = xr.Dataset({"a": waves(), "flag": ("pix", [1, 0])})
    with pytest.raises(InputError, match="'flag' has no dimension 'time'"):
        fit_along(MODEL, ds, "time")


def test_a_lazy_dataset_fits_each_variable_and_computes_once():
    ds = xr.Dataset({"a": waves(), "b": waves((0.8, 1.2), seed=2)}).chunk({"pix": 1})
    lazy = fit_along(MODEL, ds, "time", p0={"A": 1.5, "w": 1.0}, compute=False)
    assert lazy["a_w"].chunks is not None
    got = lazy.compute()
    want = fit_along(MODEL, ds.load(), "time", p0={"A": 1.5, "w": 1.0})
    np.testing.assert_allclose(got["b_w"], want["b_w"], rtol=1e-10)
    np.testing.assert_allclose(got["b_w"], [0.8, 1.2], rtol=1e-2)


def distinct(values) -> int:
    return len({id(m) for m in np.asarray(values, dtype=object).reshape(-1)})


def test_a_lazy_results_messages_share_one_string_once_computed():
    """Before: computed by the user (compute=False, then .compute()), every position held
    its own copy of the same message (2000 strings here); in memory, one."""
    rng = np.random.default_rng(0)
    k = xr.DataArray(rng.uniform(0.5, 2, (40, 50)), dims=("row", "col"))
    da = 3.0 * np.exp(-k * xr.DataArray(T, dims="time", coords={"time": T}))
    da = da.where(da.time != T[3])              # NaN at one time: every position fails
    in_memory = fit_along("A*exp(-k*time)", da, "time")
    assert distinct(in_memory["message"].values) == 1
    lazy = fit_along("A*exp(-k*time)", da.chunk({"row": 10}), "time", compute=False)
    got = lazy.compute(scheduler="threads")   # in this process (on a cluster: one a block)
    assert distinct(got["message"].values) == 1 and distinct(got["reason"].values) == 1
    assert got["message"].values.tolist() == in_memory["message"].values.tolist()
    assert type(got["message"].values) is np.ndarray
    both = fit_along("A*exp(-k*time)", xr.Dataset({"v": da}).chunk({"row": 10}), "time",
                     compute=False).compute(scheduler="threads")
    assert distinct(both["v_message"].values) == 1


def test_dataset_results_that_would_share_a_name_are_refused():
    """A result named like a coordinate of the data ('a_loss') is refused by name (it
    had been xarray's own error from the rename)."""
    ds = xr.Dataset({"a": waves(), "a_A": waves(seed=1)})
    got = fit_along(MODEL, ds, "time", p0={"A": 1.5, "w": 1.0})
    assert {"a_A", "a_A_A", "a_A_w"} <= set(got.data_vars)
    clash = xr.Dataset({"a": waves()}, coords={"a_loss": ("pix", [0.0, 1.0])})
    with pytest.raises(InputError, match="two results would be named 'a_loss'"):
        fit_along(MODEL, clash, "time", p0={"A": 1.5, "w": 1.0})
