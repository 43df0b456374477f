"""The Python API with the data formats scientists hold: times, pandas' nullable columns and
Series, reversed views, torch tensors, big integer labels, names that clash with the result's
columns. Oracles: numpy's own least squares on the same numbers, pandas' own grouping."""
import numpy as np
import pandas as pd
import pytest
import torch

import gradfit
from gradfit import landscape
from gradfit.errors import InputError

X = np.linspace(0, 4, 20)


@pytest.mark.parametrize("x", [
    pd.date_range("2026-01-01", periods=20, freq="h").values,          # datetime64[us or ns]
    np.arange(20).astype("timedelta64[s]"),
    list(pd.date_range("2026-01-01", periods=20, freq="D").to_pydatetime()),
    pd.period_range("2026-01", periods=20, freq="M"),
])
def test_times_are_refused_with_the_conversion_to_write(x):
    # before: counts of an unstated unit (us, ns or days by the dtype) were fitted, and NaT
    # was the point -9.2e18, called converged
    y = 0.5 * np.arange(20) + 3
    for call in (lambda: gradfit.fit("a*x+b", x, y),
                 lambda: gradfit.loss_and_grad("a*x+b", x, y, {"a": 1, "b": 1}),
                 lambda: gradfit.fit_many("a*x+b", x, y[None])):
        with pytest.raises(InputError, match=r"bad x: times .*np\.timedelta64\(1, 's'\)"):
            call()
    frame = pd.DataFrame({"g": ["a"] * 20, "t": x, "v": y})
    with pytest.raises(InputError, match="bad column 't': times"):
        gradfit.fit_many("a*t+b", data=frame, x="t", y="v", group="g")


def test_a_reversed_view_is_data_like_any_other():
    # before: torch's "negative strides are not currently supported"
    y = 2 * X + 1 + 0.01 * np.sin(7 * X)
    r = gradfit.fit("a*x+b", X[::-1], y[::-1], sigma=np.linspace(1, 2, 20)[::-1])
    ref = gradfit.fit("a*x+b", X[::-1].copy(), y[::-1].copy(),
                      sigma=np.linspace(1, 2, 20)[::-1].copy())
    assert r.params == ref.params and r.converged


def test_pandas_missing_values_and_series_starting_values():
    # a nullable column's pd.NA fails its own row (it had stopped the whole call), and a
    # Series of starting values is read by its labels (it had been read by position)
    wide = pd.DataFrame(np.stack([2 * X + 1, 3 * X, X - 1]), dtype="Float64")
    wide.iloc[1, 4] = pd.NA
    res = gradfit.fit_many("a*x+b", X, wide)
    assert res.converged.tolist() == [True, False, True] and "NaN at index 4 (of 20 points" in res.message[1]
    y = 3.0 * np.exp(-0.7 * X) + 0.5
    p0 = pd.Series({"k": 0.7, "A": 3.0, "C": 0.5})
    r = gradfit.fit("A*exp(-k*x)+C", X, y, p0=p0)
    assert r.start == {"A": 3.0, "k": 0.7, "C": 0.5}
    grad = gradfit.loss_and_grad("A*exp(-k*x)+C", X, y, [3.0, 0.7, 0.5])[1]  # in order
    assert max(abs(v) for v in grad.values()) < 1e-12


def test_tensors_that_need_care():
    y = 2 * X + 1
    res = gradfit.fit_many("a*x+b", X, torch.tensor(y[None], requires_grad=True))
    assert res.converged[0] and res.params["a"][0] == pytest.approx(2)
    with pytest.raises(InputError, match="'meta' device holds no values"):
        gradfit.fit("a*x+b", torch.empty(20, device="meta"), y)


def test_whole_number_labels_stay_exact_and_index_by_label():
    # ids above 2^53 with one missing: float64 had merged two of them (19 points, a mix of
    # slopes 1 and 2, called converged); wells 2, 3, 1: result[1] had been the 2nd row
    ids = [2 ** 53, 2 ** 53 + 1]
    rows = [(g, xi, (j + 1) * xi) for j, g in enumerate(ids) for xi in np.linspace(0, 4, 10)]
    frame = pd.DataFrame(rows, columns=["id", "x", "y"])
    frame["id"] = frame["id"].astype("Int64")
    frame.loc[0, "id"] = pd.NA
    res = gradfit.fit_many("a*x", data=frame, x="x", y="y", group="id")
    sizes = frame.groupby("id", dropna=False).size()         # pandas' own grouping
    table = res.to_pandas()
    assert table["id"].dtype == "Int64" and table["id"].tolist()[1:] == ids
    assert res.n_points.tolist()[1:] == [int(sizes[i]) for i in ids]
    assert res.params["a"].tolist()[1:] == pytest.approx([1.0, 2.0])
    wells = pd.DataFrame({"well": np.repeat([2, 3, 1], 20), "t": np.tile(X, 3),
                          "v": np.concatenate([np.exp(-k * X) for k in (0.3, 0.6, 0.9)])})
    res = gradfit.fit_many("exp(-k*t)", data=wells, x="t", y="v", group="well", p0={"k": 1})
    assert res[1].params["k"] == pytest.approx(0.9) and res[3].params["k"] == pytest.approx(0.6)


def test_parameters_named_like_result_columns_keep_their_values():
    # a parameter 'loss' had lost its values to the loss column, and one named like a
    # dimension was missing from fit_along's Dataset
    y = np.stack([3 * np.exp(-k * X) + 0.25 for k in (0.5, 1.0)])
    res = gradfit.fit_many("loss*exp(-k*x) + converged", X, y, p0={"loss": 1, "k": 1})
    table = res.to_pandas()
    assert table["loss"].tolist() == pytest.approx([3, 3]) and table["converged"].tolist() == \
        pytest.approx([0.25, 0.25])
    assert table["fit_loss"].tolist() == pytest.approx([0, 0], abs=1e-20)
    assert table["fit_converged"].all() and "loss_stderr" in table
    xr = pytest.importorskip("xarray")
    from gradfit.xarray_fit import fit_along
    da = xr.DataArray(y - 0.25, dims=("x", "t"), coords={"t": X})
    ds = fit_along("loss*exp(-x*t)", da, "t", p0={"loss": 1, "x": 1})
    assert ds["param_x"].values.tolist() == pytest.approx([0.5, 1.0])
    assert ds["loss"].values.tolist() == pytest.approx([3, 3], rel=1e-3)
    assert "fit_loss" in ds and "fit_converged" not in ds


@pytest.mark.parametrize("call, text", [
    (lambda p, c: landscape.loss_grid(p, ("a", "b"), {**c, "c": None}), "bad value of 'c'"),
    (lambda p, c: landscape.loss_grid(p, ("a", "b"), c, span="x"), "bad span for 'a'"),
    (lambda p, c: landscape.loss_grid(p, ("a", "b"), c, path=[[1, 2, 3]]), "bad path"),
    (lambda p, c: landscape.loss_grid(p, ("a", "b"), c, resolution=5.0), "bad resolution"),
    (lambda p, c: landscape.loss_slice(p, ["a"], c), "bad parameter name"),
    (lambda p, c: landscape.loss_along(p, ("a", "b"), [1, 2, 3], c), "bad points"),
])
def test_landscape_arguments_are_checked_in_one_voice(call, text):
    d = gradfit.lesson_data()
    p = landscape.as_problem("a*x^2+b*x+c", d.x, d.y)
    with pytest.raises(InputError, match=text):
        call(p, {"a": 1.1, "b": 1.1, "c": 1.1})
    grid = landscape.loss_grid(p, ("a", "b"), {"a": 1.1, "b": 1.1, "c": 1.1},
                               resolution=np.int64(3))
    assert grid.loss.shape == (3, 3)


def test_sigma_one_number_or_one_per_point_and_the_bad_one_named():
    # before: a scalar sigma was refused by fit and fit_many (fit_along took it), an
    # (n/2, 2) array was flattened silently, and a bad value was not named
    y = 2 * X + 1 + 0.01 * np.sin(7 * X)
    one = gradfit.fit("a*x+b", X, y, sigma=0.1, absolute_sigma=True)
    each = gradfit.fit("a*x+b", X, y, sigma=np.full(20, 0.1), absolute_sigma=True)
    many = gradfit.fit_many("a*x+b", X, y[None], sigma=0.1, absolute_sigma=True)
    assert one.stderr == each.stderr and many.stderr["a"][0] == pytest.approx(one.stderr["a"])
    with pytest.raises(InputError, match=r"got 'shape \(10, 2\)'"):
        gradfit.fit("a*x+b", X, y, sigma=np.ones((10, 2)))
    with pytest.raises(InputError, match="got '0 at index 7'"):
        gradfit.fit("a*x+b", X, y, sigma=np.where(np.arange(20) == 7, 0.0, 1.0))


def test_a_pandas_series_name_is_the_input_the_model_names():
    # before: fit("a*t + c", df["t"], df["v"]) fitted t as a third parameter and failed
    # ("lost rank ... combinations of a, t, c"); a typo (z for x) did the same
    pd = pytest.importorskip("pandas")
    t = np.linspace(0, 5, 30)
    df = pd.DataFrame({"t": t, "u": t ** 2, "v": 2 * t + 1 + 0.01 * np.sin(7 * t)})
    want = np.polyfit(t, df["v"], 1)
    for x in (df["t"], df[["t"]]):
        r = gradfit.fit("a*t + c", x, df["v"])
        assert r.converged and list(r.params) == ["a", "c"]
        np.testing.assert_allclose([r.params["a"], r.params["c"]], want, rtol=1e-10)
    assert gradfit.fit("a*x + c", df["t"], df["v"]).params["a"] == pytest.approx(want[0])
    two = gradfit.fit("a*t + b*u + c", df[["t", "u"]], df["v"])
    assert list(two.params) == ["a", "b", "c"] and two.converged
    assert gradfit.fit("c", t, df["v"]).params["c"] == pytest.approx(df["v"].mean())
    for fn in (lambda m: gradfit.fit(m, t, df["v"].to_numpy()),
               lambda m: gradfit.fit_many(m, t, np.stack([df["v"].to_numpy()] * 2))):
        with pytest.raises(InputError, match=r"the model 'A\*exp\(-k\*z\)\+C' does not use "
                                             r"its input x: every other name in it \(A, k, z, C\)"):
            fn("A*exp(-k*z)+C")
