"""Own data in the playground's API: the chosen columns' names are the model's inputs, a
sigma column weights the fit, two input columns give a surface, the exact fit reports its
uncertainty (checked against scipy's curve_fit), flexible models get the best of K starts."""

import numpy as np
import pytest

pytest.importorskip("fastapi")
optimize = pytest.importorskip("scipy.optimize")

from gradfit.stats import student_t_quantile
from gradfit.web.exact import STARTS

DECAY = "A*exp(-k*t)+C"


def decay_csv(n=25, seed=1):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 5, n)
    err = 0.05 + 0.1 * rng.random(n)
    signal = 3 * np.exp(-0.8 * t) + 0.5 + err * rng.standard_normal(n)
    rows = "\n".join(f"{a:.6g},{b:.6g},{c:.6g}" for a, b, c in zip(t, signal, err))
    return "t,signal,err\n" + rows + "\n", t, signal, err


def upload(client, text, **form):
    return client.post("/api/csv", files={"file": ("decay.csv", text.encode(), "text/csv")},
                       data=form)


def test_the_x_columns_name_is_the_input_and_y_skips_sigma(client):
    text, t, signal, err = decay_csv()
    body = upload(client, text, x="t", sigma="err").json()
    assert body["inputs"] == ["t"] and body["y_name"] == "signal"     # not err
    assert body["sigma"] == pytest.approx(err, rel=1e-5)
    info = client.post("/api/model", json={"model": DECAY, "data": {
        k: body[k] for k in ("x", "y", "sigma", "inputs")}}).json()
    assert info["param_names"] == ["A", "k", "C"] and info["inputs"] == ["t"]


def test_a_weighted_exact_fit_matches_curve_fit(client):
    text, t, signal, err = decay_csv()
    body = upload(client, text, x="t", sigma="err").json()
    data = {k: body[k] for k in ("x", "y", "sigma", "inputs")}
    t, signal, err = (np.array(body[k]) for k in ("x", "y", "sigma"))   # as the file holds them
    r = client.post("/api/exact", json={"data": data, "model": DECAY, "loss": "mse",
                                        "p0": {"A": 1, "k": 1, "C": 0}}).json()
    p, cov = optimize.curve_fit(lambda t, A, k, C: A * np.exp(-k * t) + C, t, signal,
                                p0=[1, 1, 0], sigma=err)
    u = r["uncertainty"]
    names = ["A", "k", "C"]
    assert [r["params"][n] for n in names] == pytest.approx(p, rel=1e-4)
    assert [u["params"][n]["stderr"] for n in names] == pytest.approx(np.sqrt(np.diag(cov)), rel=1e-3)
    tq = student_t_quantile(0.975, len(t) - 3)
    for n, v, se in zip(names, p, np.sqrt(np.diag(cov))):
        assert u["params"][n]["ci"] == pytest.approx([v - tq * se, v + tq * se], rel=1e-3)
    chi2 = float(np.sum(((p[0] * np.exp(-p[1] * t) + p[2] - signal) / err) ** 2))
    assert u["chi2"] == pytest.approx(chi2, rel=1e-6) and u["dof"] == len(t) - 3
    assert u["redchi"] == pytest.approx(chi2 / (len(t) - 3), rel=1e-6)
    band = u["band"]
    assert len(band["x"]) == 200 and all(lo < hi for lo, hi in zip(band["lo"], band["hi"]))
    assert r["label"].startswith("exact optimum")


def test_mae_has_no_standard_errors_and_says_why(client):
    text, *_ = decay_csv()
    body = upload(client, text, x="t").json()
    data = {k: body[k] for k in ("x", "y", "inputs")}
    r = client.post("/api/exact", json={"data": data, "model": DECAY, "loss": "mae",
                                        "p0": {"A": 1, "k": 1, "C": 0}}).json()
    assert r["uncertainty"] is None and "mse" in r["uncertainty_note"]


def test_two_input_columns_give_a_surface(client):
    text = "u,v,z\n" + "\n".join(f"{u},{v},{2 * u - v + 1}" for u in range(4) for v in range(4))
    body = upload(client, text, x="u,v").json()
    assert body["inputs"] == ["u", "v"] and len(body["x2"]) == 16
    data = {k: body[k] for k in ("x", "x2", "y", "inputs")}
    r = client.post("/api/eval", json={"data": data, "model": "a*u + b*v + c", "loss": "mse",
                                       "params": {"a": 2, "b": -1, "c": 1}}).json()
    assert r["loss"] == pytest.approx(0)
    s = r["curve"]
    z = np.array(s["z"])
    assert z.shape == (len(s["x2"]), len(s["x1"]))
    assert z[3, 5] == pytest.approx(2 * s["x1"][5] - s["x2"][3] + 1)
    ex = client.post("/api/exact", json={"data": data, "model": "a*u + b*v + c", "loss": "mse"}).json()
    assert ex["params"] == pytest.approx({"a": 2, "b": -1, "c": 1}, abs=1e-8)


def test_a_flexible_model_gets_the_best_of_k_starts(client):
    rng = np.random.default_rng(0)
    x = np.linspace(-2, 2, 20)
    data = {"x": x.tolist(), "y": (np.abs(x) + 0.1 * rng.standard_normal(20)).tolist()}
    r = client.post("/api/exact", json={"data": data, "model": "relu:3", "loss": "mse"}).json()
    assert r["starts"] == STARTS and r["label"].startswith(f"best of {STARTS} starts")
    assert r["converged"] is False                        # never called an exact optimum


@pytest.mark.parametrize("loss", ["mae", "huber"])
def test_a_flexible_models_exact_fit_is_the_cores_auto(client, loss):
    """mae and huber too: the page calls the core's one path (best of K L-BFGS starts)."""
    import gradfit
    rng = np.random.default_rng(0)
    x = np.linspace(-2, 2, 20)
    y = np.abs(x) + 0.1 * rng.standard_normal(20)
    r = client.post("/api/exact", json={"data": {"x": x.tolist(), "y": y.tolist()},
                                        "model": "relu:3", "loss": loss}).json()
    ref = gradfit.fit("relu:3", x, y, loss=loss, optimizer="auto", steps=200)
    assert "lbfgs" in r["optimizer"] and r["params"] == pytest.approx(ref.params, rel=1e-12)
    assert r["loss"] == pytest.approx(ref.loss, rel=1e-12)


@pytest.mark.parametrize("k", [1, 5, 8])
def test_relu_sums_up_to_8_never_fail(client, k):
    x = np.linspace(-2, 2, 20)
    data = {"x": x.tolist(), "y": (x ** 2).tolist()}
    far = {n: 1e200 for n in client.post("/api/model", json={"model": f"relu:{k}"}).json()["param_names"]}
    near = {n: -v for n, v in far.items()}
    for path, body in [("/api/exact", {"loss": "mae"}), ("/api/model", {}),
                       ("/api/eval", {"loss": "mae", "params": far, "optimum": near})]:
        r = client.post(path, json={"data": data, "model": f"relu:{k}", **body})
        assert r.status_code == 200, r.text


def test_held_out_points_are_not_fitted(client):
    x = np.linspace(0, 1, 10)
    data = {"x": x.tolist(), "y": (2 * x + 1).tolist()}
    data["y"][0] = 50.0                                    # an outlier...
    r = client.post("/api/eval", json={"data": data, "model": "a*x+b", "loss": "mse",
                                       "params": {"a": 2, "b": 1}, "test_fraction": 0.3,
                                       "split_seed": 0}).json()
    test = np.array(r["test"])
    assert test.sum() == 3
    if test[0]:                                            # ...held out: only the test loss sees it
        assert r["loss"] == pytest.approx(0) and r["test_loss"] > 100
    else:
        assert r["loss"] > 100 and r["test_loss"] == pytest.approx(0)


@pytest.mark.parametrize("data, words", [
    ({"x": [1, 2], "y": [1, 2], "sigma": [1, 0]}, "sigma"),
    ({"x": [1, 2], "y": [1, 2], "inputs": ["1t"]}, "input name"),
    ({"x": [1, 2], "y": [1, 2], "x2": [1, 2], "inputs": ["u"]}, "input names"),
    ({"x": [1, 2], "y": [1, 2], "x2": [1, 2], "inputs": ["u", "u"]}, "repeat"),
])
def test_bad_own_data_gets_422(client, data, words):
    r = client.post("/api/eval", json={"data": data, "model": "a*x+b", "params": {"a": 1, "b": 1}})
    assert r.status_code == 422 and words in r.json()["detail"]


def test_the_column_menus_list_the_columns_as_read(client):
    """An unnamed index column (pandas' to_csv) is not offered; a file without a header
    row offers c1, c2, ... (the names its columns get), not the numbers of its first row."""
    body = upload(client, ",t,v\n0,0,1\n1,1,3\n2,2,5\n").json()
    assert body["columns"] == ["t", "v"] and body["inputs"] == ["t"]
    assert body["y"] == [1.0, 3.0, 5.0]
    body = upload(client, "0,1\n1,3\n2,5\n").json()
    assert body["columns"] == ["c1", "c2"] and body["y"] == [1.0, 3.0, 5.0]


def timestamps_csv(n=48):
    t = 1.7e9 + 3600.0 * np.arange(n)                     # hourly, seconds since 1970
    v = 20 + 3e-6 * (t - t[0]) + 0.1 * np.sin(np.arange(n))
    return "t,v\n" + "\n".join(f"{a:.10g},{b:.6g}" for a, b in zip(t, v)) + "\n", t, v


def test_data_far_from_size_one_give_each_parameter_its_scale(client):
    # before: a*x + b over timestamps started at a = 1 (a curve at 1.7e9 over data of 20)
    # with sliders of +-5 in steps of 0.01: a slope of 3e-6 sat at the slider's 0
    text, t, v = timestamps_csv()
    body = upload(client, text).json()
    data = {k: body[k] for k in ("x", "y", "inputs")}
    info = client.post("/api/model", json={"model": "a*x + b", "data": data}).json()
    scale_a = np.sqrt(np.mean(v ** 2)) / np.sqrt(np.mean(t ** 2))     # rms(y) / rms(dy/da)
    assert info["scales"]["a"] == pytest.approx(scale_a, rel=1e-9)
    assert info["initial"]["a"] == pytest.approx(scale_a, rel=1e-9)
    curve = info["initial"]["a"] * t + info["initial"]["b"]
    assert np.sqrt(np.mean((curve - v) ** 2)) < np.sqrt(np.mean(v ** 2))   # the data's size
    # data of the lesson's size keep the lesson's starts and sliders
    lesson = client.post("/api/data", json={"name": "lesson"}).json()
    info = client.post("/api/model", json={"model": "a*x^2 + b*x + c", "data": {
        "x": lesson["x"], "y": lesson["y"]}}).json()
    assert info["initial"] == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert set(info["scales"].values()) == {None}
