"""Out-of-core fits over Dask partitions against the single-machine fit of the same data
(gradfit.fit, 1e-10 relative) and scipy's curve_fit; normal_lm alone, without Dask."""
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import curve_fit

import gradfit
from gradfit.errors import InputError
from gradfit.models import make_model
from gradfit.normal_lm import normal_lm, partition_moments, sum_moments
from gradfit.out_of_core import fit_out_of_core

GAUSS = "A*exp(-(x-mu)^2/(2*s^2)) + C"
P0 = {"A": 1.5, "mu": 0.3, "s": 1.2, "C": 0.2}


def gaussian_data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5, 5, n)
    sigma = rng.uniform(0.05, 0.2, n)
    y = 2.0 * np.exp(-(x - 0.5) ** 2 / (2 * 0.8 ** 2)) + 0.3 + sigma * rng.standard_normal(n)
    return x, y, sigma


def test_normal_lm_over_chunks_equals_curve_fit():
    x, y, sigma = gaussian_data(3000, seed=1)
    m = make_model(GAUSS)
    parts = [(x[i:i + 700], y[i:i + 700], sigma[i:i + 700]) for i in range(0, 3000, 700)]
    out = normal_lm(lambda th: sum_moments(partition_moments(m, *p, th) for p in parts),
                    np.array(list(P0.values())), n=3000)
    popt, pcov = curve_fit(lambda x, A, mu, s, C: A * np.exp(-(x - mu) ** 2 / (2 * s * s)) + C,
                           x, y, p0=list(P0.values()), sigma=sigma, ftol=1e-15, xtol=1e-15,
                           gtol=1e-15)
    assert out.reason in ("gtol", "ftol", "xtol")
    # curve_fit (MINPACK) stops about 1e-8 short here (its J^T r is 7e-4): the oracle of
    # the last digits is the Gauss-Newton step at our answer, which must be nothing
    np.testing.assert_allclose(out.theta, popt, rtol=3e-8)
    A, mu, s, C = out.theta
    e = np.exp(-(x - mu) ** 2 / (2 * s * s))
    jac = np.stack([e, A * e * (x - mu) / s ** 2, A * e * (x - mu) ** 2 / s ** 3,
                    np.ones_like(x)], 1) / sigma[:, None]
    step = np.linalg.lstsq(jac, (y - A * e - C) / sigma, rcond=None)[0]
    assert np.abs(step / out.theta).max() < 1e-13
    np.testing.assert_allclose(np.sqrt(np.diag(out.covariance)), np.sqrt(np.diag(pcov)), rtol=1e-6)


def test_partition_moments_by_blocks_equal_the_closed_form():
    # more than two blocks of forward mode, with sigma: J^T J, J^T r and S against the
    # Gaussian's own derivatives
    from gradfit.block_moments import BLOCK
    x, y, sigma = gaussian_data(2 * BLOCK + 777, seed=5)
    th = np.array([1.9, 0.45, 0.82, 0.28])
    got = partition_moments(make_model(GAUSS), x, y, sigma, th)
    A, mu, s, C = th
    e = np.exp(-(x - mu) ** 2 / (2 * s * s))
    jac = np.stack([e, A * e * (x - mu) / s ** 2, A * e * (x - mu) ** 2 / s ** 3,
                    np.ones_like(x)], 1) / sigma[:, None]
    r = (A * e + C - y) / sigma
    np.testing.assert_allclose(got.A, jac.T @ jac, rtol=1e-12)
    np.testing.assert_allclose(got.g, jac.T @ r, rtol=1e-11)
    assert got.S == pytest.approx(r @ r, rel=1e-13) and got.n == len(x)
    assert got.yy == pytest.approx(np.sum((y / sigma) ** 2), rel=1e-13)


def test_lm_over_partitions_equals_the_single_machine_fit(dask_client):
    import dask.dataframe as dd
    x, y, sigma = gaussian_data(20_000)
    ddf = dd.from_pandas(pd.DataFrame({"x": x, "y": y, "err": sigma}), npartitions=5)
    r = fit_out_of_core(GAUSS, ddf, x="x", y="y", sigma="err", p0=P0, scheduler=dask_client)
    s = gradfit.fit(GAUSS, x, y, sigma=sigma, p0=P0, optimizer="lm")
    assert r.converged and s.converged, (r.message, s.message)
    for k, v in s.params.items():
        assert r.params[k] == pytest.approx(v, rel=1e-10), k
        assert r.stderr[k] == pytest.approx(s.stderr[k], rel=1e-8), k
    assert r.loss == pytest.approx(s.loss, rel=1e-10)
    assert r.n_points == 20_000 and r.passes <= 3 * r.steps + 12


def test_lm_rereads_parquet_each_pass(dask_client, tmp_path):
    x, y, _ = gaussian_data(9000, seed=2)
    for i in range(3):
        pd.DataFrame({"t": x[i::3], "v": y[i::3]}).to_parquet(tmp_path / f"p{i}.parquet")
    model = "A*exp(-(t-mu)^2/(2*s^2)) + C"
    r = fit_out_of_core(model, str(tmp_path / "*.parquet"), x="t", y="v", p0=P0, loss="rmse",
                        scheduler=dask_client)
    xs = np.concatenate([x[i::3] for i in range(3)])
    ys = np.concatenate([y[i::3] for i in range(3)])
    s = gradfit.fit(model, xs, ys, p0=P0, loss="rmse", optimizer="lm", inputs=("t",))
    for k, v in s.params.items():
        assert r.params[k] == pytest.approx(v, rel=1e-10), k
    assert r.loss == pytest.approx(s.loss, rel=1e-10)


@pytest.mark.parametrize("optimizer,loss,lr", [("adam", "mse", 0.05), ("gd", "mae", 0.1)])
def test_gradient_methods_follow_the_single_machine_path(dask_client, optimizer, loss, lr):
    import dask.dataframe as dd
    x, y, _ = gaussian_data(4000, seed=3)
    ddf = dd.from_pandas(pd.DataFrame({"x": x, "y": y}), npartitions=4)
    kw = dict(p0=P0, optimizer=optimizer, loss=loss, lr=lr, steps=25)
    r = fit_out_of_core(GAUSS, ddf, x="x", y="y", scheduler=dask_client, **kw)
    s = gradfit.fit(GAUSS, x, y, **kw)
    assert r.steps == s.steps == 25 and r.reason == s.reason == "max_steps"
    for k, v in s.params.items():
        assert r.params[k] == pytest.approx(v, rel=1e-10), k
    assert r.loss == pytest.approx(s.loss, rel=1e-10)


@pytest.mark.parametrize("bounds, fixed", [
    ({"s": (0.1, 0.7), "A": (0, 10)}, {"C": 0.25}),   # s held at its upper bound, C fixed
    ({"mu": (-1, 1), "C": (0.0, None)}, {}),           # bounds that do not bind
    ({}, {"mu": 0.45}),                                 # fixed only
])
def test_lm_with_bounds_and_fixed_values_equals_fit(dask_client, bounds, fixed):
    import dask.dataframe as dd
    x, y, sigma = gaussian_data(12_000, seed=6)
    ddf = dd.from_pandas(pd.DataFrame({"x": x, "y": y, "err": sigma}), npartitions=4)
    kw = dict(sigma=None, p0=P0, bounds=bounds, fixed=fixed)
    r = fit_out_of_core(GAUSS, ddf, x="x", y="y", scheduler=dask_client, **{**kw, "sigma": "err"})
    s = gradfit.fit(GAUSS, x, y, optimizer="lm", **{**kw, "sigma": sigma})
    assert r.converged and s.converged, (r.message, s.message)   # reasons: two LMs' own words
    for k, v in s.params.items():
        assert r.params[k] == pytest.approx(v, rel=1e-10, abs=1e-12), k
    assert r.loss == pytest.approx(s.loss, rel=1e-10)
    assert set(r.stderr) == set(s.stderr)                 # none for fixed or held parameters
    for k, v in s.stderr.items():
        assert r.stderr[k] == pytest.approx(v, rel=1e-7), k
    if "s" in bounds:
        assert r.params["s"] == 0.7 and "s at its upper bound" in r.message
    for k, v in fixed.items():
        assert r.params[k] == v


def test_adam_with_bounds_and_fixed_values_follows_fit(dask_client):
    import dask.dataframe as dd
    x, y, _ = gaussian_data(4000, seed=7)
    ddf = dd.from_pandas(pd.DataFrame({"x": x, "y": y}), npartitions=3)
    kw = dict(p0=P0, optimizer="adam", loss="mae", lr=0.05, steps=30,
              bounds={"s": (0.5, 1.0), "A": (None, 1.9)}, fixed={"C": 0.3})
    r = fit_out_of_core(GAUSS, ddf, x="x", y="y", scheduler=dask_client, **kw)
    s = gradfit.fit(GAUSS, x, y, **kw)
    assert r.steps == s.steps == 30 and r.reason == s.reason
    for k, v in s.params.items():
        assert r.params[k] == pytest.approx(v, rel=1e-10), k
    assert r.params["C"] == 0.3 and r.params["A"] <= 1.9
    assert r.loss == pytest.approx(s.loss, rel=1e-10)


def test_bad_input(dask_client):
    df = pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [1.0, np.nan, 2.0]})
    with pytest.raises(InputError, match="NaN"):
        fit_out_of_core("a*x + b", df, x="x", y="y", scheduler=dask_client)
    with pytest.raises(InputError, match="cannot minimise the mae"):
        fit_out_of_core("a*x + b", df, x="x", y="y", loss="mae", optimizer="lm")
    with pytest.raises(InputError, match="cannot run out of core"):
        fit_out_of_core("a*x + b", df, x="x", y="y", optimizer="lbfgs")
    with pytest.raises(InputError, match="bounds"):
        fit_out_of_core("a*x + b", df, x="x", y="y", bounds={"q": (0, 1)})
    with pytest.raises(InputError, match="bad bounds"):
        fit_out_of_core("a*x + b", df, x="x", y="y", bounds={"a": (1, 0)})
    with pytest.raises(InputError, match="NaN"):      # the client in use gets the error
        fit_out_of_core("a*x + b", df, x="x", y="y", fixed={"a": 1.0})


def test_cli_one_series_on_a_cluster_gradfit_starts(tmp_path, capsys):
    """No --group: one series out of core, on a local cluster of --workers 1 that gradfit
    starts and closes itself."""
    import json
    from gradfit.cli import main
    x, y, _ = gaussian_data(6000, seed=4)
    for i in range(2):
        pd.DataFrame({"t": x[i::2], "v": y[i::2]}).to_parquet(tmp_path / f"p{i}.parquet")
    model = "A*exp(-(t-mu)^2/(2*s^2)) + C"
    code = main(["fit", str(tmp_path / "*.parquet"), "--x", "t", "--y", "v", "--model", model,
                 "--p0", "A=1.5,mu=0.3,s=1.2,C=0.2", "--workers", "1", "--json", "-"])
    assert code == 0, capsys.readouterr().err
    got = json.loads(capsys.readouterr().out)
    xs, ys = np.concatenate([x[0::2], x[1::2]]), np.concatenate([y[0::2], y[1::2]])
    s = gradfit.fit(model, xs, ys, p0=P0, inputs=("t",))
    for k, v in s.params.items():
        assert got["params"][k] == pytest.approx(v, rel=1e-10), k


def test_an_unreachable_scheduler_is_one_line(monkeypatch, capsys, tmp_path):
    from gradfit import cluster
    from gradfit.cli import main
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    pd.DataFrame({"t": [0.0, 1.0, 2.0], "v": [0.0, 1.0, 2.0]}).to_parquet(tmp_path / "a.parquet")
    code = main(["fit", str(tmp_path / "a.parquet"), "--x", "t", "--y", "v", "--model", "a*t",
                 "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err
    code = main(["fit", str(tmp_path / "none*.parquet"), "--x", "t", "--y", "v", "--model",
                 "a*t", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "no data file matches" in err and err.count("\n") == 1


def test_cli_out_of_core_takes_bounds_and_fix_as_fit_does(tmp_path, capsys, dask_client):
    """Before: '--bounds and --fix are not supported out of core' (exit 2), though the
    Python API took them."""
    import json
    from gradfit.cli import main
    x, y, _ = gaussian_data(6000, seed=8)
    for i in range(2):
        pd.DataFrame({"t": x[i::2], "v": y[i::2]}).to_parquet(tmp_path / f"p{i}.parquet")
    model = "A*exp(-(t-mu)^2/(2*s^2)) + C"
    code = main(["fit", str(tmp_path), "--x", "t", "--y", "v", "--model", model,
                 "--p0", "A=1.5,mu=0.3,s=1.2", "--bounds", "s=0.1:0.7", "--fix", "C=0.25",
                 "--scheduler", dask_client.scheduler.address, "--json", "-"])
    assert code == 0, capsys.readouterr().err
    got = json.loads(capsys.readouterr().out)
    xs, ys = np.concatenate([x[0::2], x[1::2]]), np.concatenate([y[0::2], y[1::2]])
    s = gradfit.fit(model, xs, ys, p0={"A": 1.5, "mu": 0.3, "s": 1.2}, inputs=("t",),
                    bounds={"s": (0.1, 0.7)}, fixed={"C": 0.25}, optimizer="lm")
    assert got["params"]["s"] == 0.7 and got["params"]["C"] == 0.25
    for k, v in s.params.items():
        assert got["params"][k] == pytest.approx(v, rel=1e-10), k
    assert set(got["stderr"]) == set(s.stderr) == {"A", "mu"}
    for k, v in s.stderr.items():
        assert got["stderr"][k] == pytest.approx(v, rel=1e-7), k


@pytest.mark.parametrize("column, value, text", [
    ("v", np.nan, r"b\.parquet, row 3, column 'v': NaN, inf or an empty cell"),
    ("err", 0.0, r"b\.parquet, row 3, column 'err': uncertainty must be positive: "
                 r"expected a number > 0, got '0\.0'"),
])
def test_a_bad_value_out_of_core_names_its_parquet_file_row_and_column(
        tmp_path, dask_client, column, value, text):
    """Before: "column 'v': NaN, inf or an empty cell" (no file), and for a sigma of 0
    'bad sigma: expected positive finite numbers' (no file, row, column or value)."""
    x, y, sigma = gaussian_data(40, seed=9)
    frame = pd.DataFrame({"x": x, "y": y, "err": sigma}).rename(columns={"y": "v"})
    frame.iloc[:20].to_parquet(tmp_path / "a.parquet")
    b = frame.iloc[20:].reset_index(drop=True)
    b.loc[2, column] = value
    b.to_parquet(tmp_path / "b.parquet")
    with pytest.raises(InputError, match=text):
        fit_out_of_core(GAUSS, str(tmp_path), x="x", y="v", sigma="err", p0=P0,
                        scheduler=dask_client)


def test_a_sigma_of_0_in_a_csv_file_is_named_as_the_one_file_reader_names_it(
        tmp_path, dask_client, capsys):
    from gradfit.cli import main
    (tmp_path / "a.csv").write_text("x,y,err\n1,2.1,0.1\n2,3.9,0.1\n3,6.2,0.1\n")
    (tmp_path / "b.csv").write_text("# a note\nx,y,err\n4,8.1,0.1\n5,9.8,0\n")
    code = main(["fit", str(tmp_path), "--model", "a*x+b", "--sigma", "err",
                 "--scheduler", dask_client.scheduler.address])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "b.csv, row 4, column 'err': uncertainty must be positive: expected a number " \
           "> 0, got '0'" in err
