"""The sixth probe of the playground, its notebook face and its pictures (the server's and
Python's side; the page's own in ``test_page_probe6.py``):

- IRLS on data that are all zero (mae, huber; ``fit`` and ``fit_many``) reaches the exact
  fit and says converged (its tolerances, relative to the data, had been 0: "failed" at
  loss 0), and tiny data (1e-300) keep an honest verdict;
- an upload with a quoted header or a comment line above it takes ``err`` as sigma, as the
  command line does (it had fitted the uncertainties as y), and so does ``playground(df)``;
- ``playground`` applies the page's limit on parameters in the cell;
- an input column named ``e`` or ``pi`` that the model writes is refused before the
  sliders are built, in the command line's words; so is a model that uses no input;
- the page's landscape lowers its resolution to fit the server's limits (a CSV of 25,000
  points had none, with the advice of "a lower resolution" the page does not offer);
- every name of ``gradfit.plots.__all__`` is a function that draws (``surface`` had been
  the submodule: "'module' object is not callable"), and two legends say what is drawn.

Oracles: ``gradfit.fit`` and the command line for what the server answers, scipy's
``linprog`` for a least-absolute-deviations fit."""
import contextlib
import io
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")

import gradfit
from gradfit import landscape as L
from gradfit.cli import main as cli_main
from gradfit.errors import InputError

QUAD = "a*x^2 + b*x + c"
DECAY = "A*exp(-k*t) + C"


def upload(client, name, text, **form):
    return client.post("/api/csv", files={"file": (name, text.encode(), "text/csv")}, data=form)


def decay_table(n=25, seed=3):
    rng = np.random.default_rng(seed)
    t = np.round(np.linspace(0, 6, n), 4)
    err = np.round(0.05 + 0.2 * rng.random(n), 4)
    signal = np.round(3.2 * np.exp(-0.7 * t) + 0.5 + err * rng.standard_normal(n), 5)
    return t, signal, err


def cli_json(path, *args) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(["fit", str(path), *args, "--json", "-"])
    assert code in (0, 1), code
    return json.loads(out.getvalue())


# ---------------------------------------------------------------- IRLS on zero data

T = np.linspace(0, 5, 30)


@pytest.mark.parametrize("loss", ["mae", "huber"])
@pytest.mark.parametrize("zero", [0.0, -0.0])
def test_a_fit_of_all_zero_data_is_the_exact_fit_and_converged(loss, zero):
    r = gradfit.fit(QUAD, T, np.full(30, zero), loss=loss)
    assert r.converged and r.reason != "failed", r.message
    assert r.loss == pytest.approx(0.0, abs=1e-300)
    assert np.abs(r.predict(T)).max() <= 1e-12          # the curve is y = 0
    # with sigma, the same (y / sigma is all zero too)
    w = gradfit.fit(QUAD, T, np.zeros(30), sigma=np.full(30, 0.1), loss=loss)
    assert w.converged, w.message


@pytest.mark.parametrize("loss", ["mae", "huber"])
def test_fit_many_says_the_same_of_zero_rows(loss):
    Y = np.stack([np.zeros(30), -0.0 * np.ones(30), 3 * T + 1, 1e-300 * np.ones(30)])
    many = gradfit.fit_many(QUAD, T, Y, loss=loss)
    for i in range(3):                       # row by row as fit says it
        one = gradfit.fit(QUAD, T, Y[i], loss=loss)
        assert bool(many.converged[i]) == one.converged is True, (i, many.message[i])
    assert float(many.loss[0]) == pytest.approx(0.0, abs=1e-300)


@pytest.mark.parametrize("loss", ["mae", "huber"])
@pytest.mark.parametrize("scale", [1e-300, 1e-200])
def test_tiny_but_nonzero_data_keep_an_honest_verdict(loss, scale):
    """Converged only where the curve is on the data; else not converged, and said so (the
    all-zero rule, the unit scale, must not reach data that have a scale of their own)."""
    y = scale * (1.0 + 0.1 * np.sin(T))
    for r in (gradfit.fit(QUAD, T, y, loss=loss),
              gradfit.fit_many(QUAD, T, y[None], loss=loss)):
        converged = bool(np.asarray(r.converged).reshape(-1)[0])
        params = r.params if isinstance(r.params, dict) else {k: float(v[0]) for k, v in r.params.items()}
        pred = params["a"] * T ** 2 + params["b"] * T + params["c"]
        if converged:
            assert np.abs(pred - y).max() <= 0.2 * scale
        else:
            assert np.asarray(r.reason).reshape(-1)[0] in ("failed", "diverged", "max_steps")
    # data of a scale, 1e-9, as before: converged on the data
    r = gradfit.fit(QUAD, T, 1e-9 * (1.0 + 0.1 * np.sin(T)), loss=loss)
    assert r.converged


def test_zeros_among_tiny_data_are_not_given_the_unit_scale():
    """A least-absolute-deviations line through data of 1e-20 with some zeros: the optimum
    of the linear programme (scipy's linprog), not a fit stopped at 1e-16 of it."""
    linprog = pytest.importorskip("scipy.optimize").linprog
    x = np.linspace(0, 4, 13)
    y = 1e-20 * np.where(np.arange(13) % 3 == 0, 0.0, 2.0 * x + 1.0 + 0.3 * np.cos(5 * x))
    r = gradfit.fit("a*x + b", x, y, loss="mae")
    assert r.converged, r.message
    # min sum(u + v) s.t. a x + b + u - v = y, u, v >= 0 (in units of 1e-20)
    n = len(x)
    c = np.r_[0.0, 0.0, np.ones(2 * n)]
    A = np.c_[x, np.ones(n), np.eye(n), -np.eye(n)]
    lp = linprog(c, A_eq=A, b_eq=y / 1e-20, bounds=[(None, None)] * 2 + [(0, None)] * (2 * n))
    assert lp.status == 0
    assert r.loss == pytest.approx(lp.fun / n * 1e-20, rel=1e-9)


# ---------------------------------------------------------------- sigma by its name

def test_a_quoted_header_or_a_comment_above_it_takes_err_as_sigma(client, tmp_path):
    t, signal, err = decay_table()
    rows = "".join(f"{a},{b},{c}\n" for a, b, c in zip(t, signal, err))
    files = {"quoted.csv": '"t","signal","err"\n' + rows,
             "comment.csv": "# measured 2024-05-01\nt,signal,err\n" + rows,
             "both.csv": "# measured\n\n# by hand\n\"t\",\"signal\",\"err\"\n" + rows}
    want = gradfit.fit(DECAY, t, signal, sigma=err, loss="mse", inputs=["t"])
    for name, text in files.items():
        r = upload(client, name, text)
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["x_name"], out["y_name"], out["sigma_name"]) == ("t", "signal", "err"), name
        assert out["y"] == pytest.approx(signal.tolist()) and out["sigma"] == pytest.approx(err.tolist())
        # the command line reads the file the same way, and the page's exact fit is its fit
        path = tmp_path / name
        path.write_text(text)
        cli = cli_json(path, "--model", DECAY, "--loss", "mse")
        ex = client.post("/api/exact", json={"model": DECAY, "loss": "mse", "data": {
            k: out[k] for k in ("x", "y", "sigma", "inputs")}}).json()
        for k in ("A", "k", "C"):
            assert ex["params"][k] == pytest.approx(want.params[k], rel=1e-9)
            assert cli["params"][k] == pytest.approx(want.params[k], rel=1e-9)
    # a column chosen as y is y, and no sigma is guessed beside it (as --y does)
    out = upload(client, "quoted.csv", files["quoted.csv"], y="err").json()
    assert (out["y_name"], out["sigma_name"]) == ("err", None)


def test_playground_of_a_frame_takes_err_as_sigma_as_the_page_does(client):
    pd = pytest.importorskip("pandas")
    t, signal, err = decay_table()
    p = gradfit.playground(pd.DataFrame({"t": t, "signal": signal, "err": err}), model=DECAY)
    from gradfit.web.notebook import server
    app, _ = server()
    from fastapi.testclient import TestClient
    with TestClient(app, base_url="http://127.0.0.1") as c:
        shared = c.get(f"/api/shared/{p.url.split('shared:')[1]}").json()
    assert shared["y"] == pytest.approx(signal.tolist()) and shared["sigma"] == pytest.approx(err.tolist())
    assert shared["inputs"] == ["t"]
    # as the upload of the same table reads it
    rows = "".join(f"{a},{b},{c}\n" for a, b, c in zip(t, signal, err))
    up = upload(client, "table.csv", "t,signal,err\n" + rows).json()
    assert (up["y"], up["sigma"]) == (shared["y"], shared["sigma"])
    # y or sigma named: no guess (y=err fits err, as the page's y menu does)
    q = gradfit.playground(pd.DataFrame({"t": t, "signal": signal, "err": err}), y="err")
    with TestClient(app, base_url="http://127.0.0.1") as c:
        shared = c.get(f"/api/shared/{q.url.split('shared:')[1]}").json()
    assert shared["y"] == pytest.approx(err.tolist()) and "sigma" not in shared


# ---------------------------------------------------------------- the model's limits

@pytest.mark.parametrize("model", ["relu:5000", "poly:5000"])
def test_playground_refuses_in_the_cell_a_model_the_page_refuses(client, model):
    t = np.linspace(0, 1, 20)
    page = client.post("/api/model", json={"model": model, "data": {"x": t.tolist(), "y": t.tolist()}})
    assert page.status_code == 422
    with pytest.raises(InputError) as cell:
        gradfit.playground(t, t, model=model)
    assert str(cell.value) == page.json()["detail"]


E_ROWS = "".join(f"{v},{4 - 0.5 * v:.6f}\n" for v in np.linspace(0, 5, 12))


@pytest.mark.parametrize("column", ["e", "pi"])
def test_an_input_named_like_a_constant_is_refused_up_front_in_the_clis_words(client, tmp_path, column):
    up = upload(client, f"{column}.csv", f"{column},y\n" + E_ROWS).json()
    data = {k: up[k] for k in ("x", "y", "inputs")}
    assert data["inputs"] == [column]
    model = f"a*{column} + b"
    # the command line's refusal of the same file and model
    path = tmp_path / f"{column}.csv"
    path.write_text(f"{column},y\n" + E_ROWS)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli_main(["fit", str(path), "--model", model]) == 2
    said = err.getvalue().strip().removeprefix("gradfit: error: ")
    r = client.post("/api/model", json={"model": model, "data": data})       # no sliders
    assert r.status_code == 422 and r.json()["detail"] == said
    for path_, extra in (("/api/eval", {"params": {"a": 1, "b": 1}}), ("/api/exact", {})):
        r = client.post(path_, json={"model": model, "data": data, "loss": "mse", **extra})
        assert r.status_code == 422 and r.json()["detail"] == said
    # x for the column, as the message says: the page's fit is gradfit's
    ok = client.post("/api/exact", json={"model": "a*x + b", "data": data, "loss": "mse"}).json()
    want = gradfit.fit("a*x + b", np.array(up["x"]), np.array(up["y"]), loss="mse")
    assert ok["params"]["a"] == pytest.approx(want.params["a"], rel=1e-9)


def test_a_model_of_no_input_gets_no_sliders(client, pts):
    body = {"model": "a*b", "data": pts}
    r = client.post("/api/model", json=body)
    e = client.post("/api/eval", json={**body, "params": {"a": 1, "b": 1}})
    assert r.status_code == e.status_code == 422
    assert r.json()["detail"] == e.json()["detail"] and "does not use its input x" in r.json()["detail"]


# ---------------------------------------------------------------- landscapes of many points

def test_the_pages_landscape_of_many_points_comes_at_a_resolution_that_fits(client):
    n = 25_000
    x = np.linspace(-2, 2, n)
    y = 2 * x ** 2 + x + 0.1 * np.sin(40 * x)
    body = {"data": {"x": x.tolist(), "y": y.tolist()}, "model": QUAD, "loss": "mae",
            "params": {"a": 1.0, "b": 1.0, "c": 1.0}, "names": ["a", "b"], "slice": "c",
            "resolution": 61}
    refused = client.post("/api/landscape", json=body)
    assert refused.status_code == 422 and "a lower resolution" in refused.json()["detail"]
    r = client.post("/api/landscape", json={**body, "fit_resolution": True})
    assert r.status_code == 200, r.text
    out = r.json()
    k = out["resolution"]
    assert 11 <= k < 61 and len(out["grid"]["x"]) == k
    # the grid is gradfit's at that resolution
    problem = L.as_problem(QUAD, x, y, loss="mae")
    center = L.full_center(problem, body["params"])
    want = L.loss_grid(problem, ["a", "b"], center, resolution=k)
    np.testing.assert_allclose(out["grid"]["loss"], want.loss, rtol=1e-9)
    # one step higher would not have fitted
    higher = client.post("/api/landscape", json={**body, "resolution": k + 1})
    assert higher.status_code == 422
    # a resolution that fits is kept as asked
    small = client.post("/api/landscape", json={**body, "data": {"x": x[:500].tolist(), "y": y[:500].tolist()},
                                                "fit_resolution": True}).json()
    assert small["resolution"] == 61 and len(small["slice"]["values"]) == 101


def test_a_landscape_refused_even_at_the_lowest_resolution_says_only_what_can_change(client):
    n = 100_000
    x = np.linspace(-2, 2, n)
    info = client.post("/api/model", json={"model": "mlp:30,30", "data": {"x": x[:5].tolist(), "y": x[:5].tolist()}}).json()
    names = info["param_names"]
    r = client.post("/api/landscape", json={
        "data": {"x": x.tolist(), "y": np.sin(x).tolist()}, "model": "mlp:30,30",
        "params": info["initial"], "names": names[:2], "slice": names[-1], "fit_resolution": True})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "lowest resolution (11 x 11)" in detail and "lower resolution" not in detail
    assert detail.endswith("expected fewer points or a smaller model")


# ---------------------------------------------------------------- pictures

def test_every_name_in_plots_all_is_a_function_that_draws(tmp_path):
    plots = pytest.importorskip("gradfit.plots")
    from matplotlib.figure import Figure
    from gradfit import learning_rates as R
    d = gradfit.lesson_data()
    r = gradfit.fit(QUAD, d.x, d.y, optimizer="gd", lr=0.05, steps=30)
    x2 = np.c_[d.x, d.x ** 2]
    r2 = gradfit.fit("a*x1 + b*x2 + c", x2, d.y, loss="mse")
    problem = L.as_problem(QUAD, d.x, d.y, loss="mae")
    center = L.full_center(problem, r.params)
    sweep = R.lr_sweep(QUAD, d.x, d.y, [0.01, 0.05], steps=10)
    calls = {
        "fit": lambda: plots.fit(r, d),
        "residuals": lambda: plots.residuals(r, d),
        "loss_curve": lambda: plots.loss_curve(r),
        "surface": lambda: plots.surface(r2, x2, d.y),
        "animate": lambda: plots.animate(r, tmp_path / "a.gif", d, max_frames=3),
        "frame_steps": lambda: plots.frame_steps(30, 5),
        "landscape": lambda: plots.landscape(r, d, params=("a", "b"), resolution=15),
        "draw_grid": lambda: plots.draw_grid(L.loss_grid(problem, ["a", "b"], center, resolution=9)),
        "draw_slice": lambda: plots.draw_slice(L.loss_slice(problem, "a", center, resolution=9)),
        "compare_losses": lambda: plots.compare_losses(QUAD, d.x, d.y, ("a", "b"), r.params, resolution=9),
        "lr_sweep": lambda: plots.lr_sweep(sweep, d),
        "lr_find": lambda: plots.lr_find(R.lr_find(QUAD, d.x, d.y, num_it=20)),
        "relus": lambda: plots.relus("relu:2", {"m1": 1, "b1": 0, "m2": -1, "b2": 0.5, "c": 0}),
        "lesson_figures": lambda: plots.lesson_figures(tmp_path / "lesson"),
        "save": lambda: plots.save(plots.fit(r, d), tmp_path / "fit.png"),
    }
    assert sorted(calls) == sorted(plots.__all__)
    for name in plots.__all__:
        f = getattr(plots, name)
        assert callable(f), name
        out = calls[name]()
        if name in ("animate", "frame_steps"):
            assert list(out) and all(isinstance(s, int) for s in out), name
        elif name == "lesson_figures":
            assert out and all(p.stat().st_size > 0 for p in out.values())
        elif name == "save":
            assert out.stat().st_size > 0
        else:
            assert isinstance(out, Figure) and out.axes, name
    # the function draws the fitted surface: its mesh holds the model's values
    from gradfit.plots import surface
    mesh = next(a for a in surface(r2, x2, d.y).axes[0].collections if a.get_gid() == "surface")
    assert np.isfinite(np.asarray(mesh.get_array())).all()
    # the submodule is still importable by its path, for the command line's pictures
    from gradfit.plots.surface import draw_view
    assert callable(draw_view) and callable(gradfit.plots.surface)


def test_a_fit_in_view_is_not_said_to_be_beyond_it_on_subnormal_data():
    plots = pytest.importorskip("gradfit.plots")
    x = np.linspace(0, 5, 30)
    y = np.array([4, 4] + [3] * 5 + [2] * 7 + [1] * 16) * 5e-324     # 2e-323 .. 5e-324
    r = gradfit.fit(QUAD, x, y)
    ax = plots.fit(r, x, y).axes[0]
    fit = next(ln for ln in ax.get_lines() if ln.get_gid() == "fit")
    lo, hi = sorted(ax.get_ylim())
    f = np.asarray(fit.get_ydata(), float)
    assert lo <= f.min() and f.max() <= hi
    assert fit.get_label() == "fit"
    # a diverged fit off the view is still said to be
    d = gradfit.lesson_data()
    rdiv = gradfit.fit(QUAD, d.x, d.y, loss="mse", optimizer="gd", lr=3, steps=200)
    ax = plots.fit(rdiv, d).axes[0]
    assert "beyond the view" in next(ln for ln in ax.get_lines() if ln.get_gid() == "fit").get_label()


def test_the_landscape_of_one_point_says_its_minimum_is_a_valley():
    plots = pytest.importorskip("gradfit.plots")
    r = gradfit.fit("a*x + b", [1.0], [2.0], optimizer="gd", steps=50)
    ax = plots.landscape(r, [1.0], [2.0], params=("a", "b")).axes[0]
    low = next(ln for ln in ax.get_lines() if ln.get_gid() == "grid-min")
    assert "valley" in low.get_label() and "lies beyond" not in low.get_label()
    # the loss along the valley a + b = 2 is 0: no point of it is the minimum
    assert gradfit.loss_and_grad("a*x + b", [1.0], [2.0], {"a": 5.0, "b": -3.0}, loss="mse")[0] == 0.0
    # a determined fit's view keeps its plain label
    d = gradfit.lesson_data()
    q = gradfit.fit(QUAD, d.x, d.y, optimizer="gd", lr=0.05, steps=100)
    ax = plots.landscape(q, d, params=("a", "b"), resolution=21).axes[0]
    low = next(ln for ln in ax.get_lines() if ln.get_gid() == "grid-min")
    assert "valley" not in low.get_label()
