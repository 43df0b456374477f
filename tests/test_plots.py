"""Pictures (gradfit.plots): files are written and not blank, animations have the frames
they promise, and the drawn data equal the model's values (the artists, not pixels).
Everything runs headless: figures sit on Agg canvases, pyplot is never imported."""
import subprocess
import sys

import numpy as np
import pytest
import torch

import gradfit
from gradfit import landscape as L
from gradfit import learning_rates as R
from gradfit import lesson
from gradfit.cli import main
from gradfit.errors import InputError

plots = pytest.importorskip("gradfit.plots")
from PIL import Image  # noqa: E402  (matplotlib needs Pillow, so it is there)

QUAD = "a*x^2 + b*x + c"


@pytest.fixture(scope="module")
def d():
    return gradfit.lesson_data()


@pytest.fixture(scope="module")
def quad(d):
    return gradfit.fit(QUAD, d.x, d.y, optimizer="gd", lr=0.05, steps=40)


@pytest.fixture(scope="module")
def relu3(d):
    return gradfit.fit("relu:3", d.x, d.y, optimizer="adam", lr=0.05, steps=60, loss="mae")


def by_gid(ax, gid):
    found = [a for a in ax.get_children() if a.get_gid() == gid]
    assert found, f"no artist {gid!r}"
    return found[0]


def not_blank(path):
    img = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img.std() > 10 and len(np.unique(img)) > 20, f"{path} looks blank"


def model_at(result, theta, x):
    with torch.no_grad():
        return result.model_object(torch.tensor(np.asarray(x, float)),
                                   torch.tensor(np.asarray(theta, float))).numpy()


def test_plots_need_no_display_and_no_pyplot(tmp_path):
    code = ("import os, sys\nos.environ.pop('DISPLAY', None)\nos.environ.pop('MPLBACKEND', None)\n"
            "import gradfit, gradfit.plots\nd = gradfit.lesson_data()\n"
            "r = gradfit.fit('a*x+b', d.x, d.y, optimizer='gd', steps=3)\n"
            "gradfit.plots.fit(r, d).savefig(sys.argv[1])\n"
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.png")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    not_blank(tmp_path / "a.png")


def test_fit_picture_draws_the_models_values(d, quad, tmp_path):
    fig = plots.fit(quad, d)
    main_ax, resid_ax, loss_ax = fig.axes[:3]
    fit_line = by_gid(main_ax, "fit")
    xs = fit_line.get_xdata()
    np.testing.assert_allclose(fit_line.get_ydata(), quad.predict(xs), rtol=1e-12)
    start = by_gid(main_ax, "start")
    np.testing.assert_allclose(start.get_ydata(), model_at(quad, list(quad.start.values()), xs))
    data = by_gid(main_ax, "data")
    assert data.get_xdata().tolist() == d.x.tolist() and data.get_ydata().tolist() == d.y.tolist()
    res = by_gid(resid_ax, "residuals")
    np.testing.assert_allclose(res.get_ydata(), d.y - quad.predict(d.x), rtol=1e-12)
    loss = by_gid(loss_ax, "loss")
    np.testing.assert_allclose(loss.get_ydata(), quad.history)
    assert loss_ax.get_yscale() == "log"
    title = main_ax.get_title()
    assert QUAD in title and f"mse = {quad.loss:.4g}" in title
    assert main_ax.get_ylabel() == "y" and resid_ax.get_xlabel() == "x" and loss_ax.get_xlabel() == "step"
    path = plots.save(fig, tmp_path / "fit.png")
    not_blank(path)


def test_fit_on_a_given_axes_returns_its_figure(d, quad):
    from matplotlib.figure import Figure
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.fit(quad, d.x, d.y, ax=ax) is fig
    assert len(fig.axes) == 1 and by_gid(ax, "fit")
    quad.x = quad.y = None              # a result without its data needs it passed
    try:
        with pytest.raises(InputError, match="no data"):
            plots.fit(quad)
    finally:
        quad.x, quad.y = d.x, d.y


def test_error_bars_when_sigma_is_given(d):
    sigma = np.full(d.n, 0.7)
    r = gradfit.fit(QUAD, d.x, d.y, sigma=sigma)
    fig = plots.fit(r, d.x, d.y, sigma)
    bars = [c for c in fig.axes[0].collections if c.__class__.__name__ == "LineCollection"]
    segs = bars[0].get_segments()
    assert len(segs) == d.n
    assert segs[0][1][1] - segs[0][0][1] == pytest.approx(1.4)     # y +- sigma


def test_relu_fit_draws_each_unit_and_their_sum(d, relu3):
    ax = plots.fit(relu3, d).axes[0]
    xs = by_gid(ax, "fit").get_xdata()
    theta = torch.tensor(list(relu3.params.values()), dtype=torch.float64)
    with torch.no_grad():
        parts = relu3.model_object.parts(torch.tensor(xs), theta).numpy()
    for i in range(3):
        np.testing.assert_allclose(by_gid(ax, f"relu-{i + 1}").get_ydata(), parts[i])
    np.testing.assert_allclose(parts.sum(0) + relu3.params["c"], by_gid(ax, "fit").get_ydata())


def test_relus_the_lessons_double_relu():
    params = {"m1": -1.5, "b1": -1.5, "m2": 1.5, "b2": 1.5, "c": 0.0}
    ax = plots.relus("relu:2", params).axes[0]
    xs = by_gid(ax, "sum").get_xdata()
    np.testing.assert_allclose(by_gid(ax, "relu-1").get_ydata(), np.maximum(0, -1.5 * xs - 1.5))
    np.testing.assert_allclose(by_gid(ax, "relu-2").get_ydata(), np.maximum(0, 1.5 * xs + 1.5))
    np.testing.assert_allclose(by_gid(ax, "sum").get_ydata(), np.abs(1.5 * xs + 1.5))
    assert xs.min() == -2.1 and xs.max() == 2.1
    with pytest.raises(InputError, match="not a sum of ReLUs"):
        plots.relus(QUAD, {"a": 1, "b": 1, "c": 1})


def test_two_inputs_give_a_surface_of_the_fitted_model(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (40, 2))
    y = 1.5 * x[:, 0] + 0.8 * x[:, 1] ** 2 + 0.5 + rng.normal(0, 0.2, 40)
    r = gradfit.fit("a*x1 + b*x2^2 + c", x, y)
    fig = plots.fit(r, x, y)
    ax = fig.axes[0]
    mesh = by_gid(ax, "surface")
    coords = mesh.get_coordinates()                       # (rows+1, cols+1, 2) corners
    z = np.asarray(mesh.get_array()).reshape(coords.shape[0] - 1, coords.shape[1] - 1)
    # pcolormesh (shading="auto") centres each cell on a grid point: compare at a few of them
    g1 = np.unique(np.round((coords[0, :-1, 0] + coords[0, 1:, 0]) / 2, 12))
    g2 = np.unique(np.round((coords[:-1, 0, 1] + coords[1:, 0, 1]) / 2, 12))
    for i, j in [(0, 0), (5, 17), (len(g2) - 1, len(g1) - 1)]:
        assert z[i, j] == pytest.approx(r.predict(np.array([[g1[j], g2[i]]]))[0], rel=1e-9)
    assert ax.get_xlabel() == "x1" and ax.get_ylabel() == "x2"
    not_blank(plots.save(fig, tmp_path / "surface.png"))
    steps = plots.animate(r, tmp_path / "surface.gif", x, y, max_frames=4)
    assert Image.open(tmp_path / "surface.gif").n_frames == len(steps)


# ---------------------------------------------------------------- animations

def test_frame_steps_sample_a_long_run():
    assert plots.frame_steps(3, 10) == [0, 1, 2, 3]
    s = plots.frame_steps(10_000, 100)
    assert len(s) <= 100 and s[0] == 0 and s[-1] == 10_000 and s == sorted(set(s))
    assert s[1] - s[0] < s[-1] - s[-2]                      # denser at the start
    with pytest.raises(InputError):
        plots.frame_steps(10, 1)


def test_animation_has_the_frames_it_promised(d, tmp_path):
    r = gradfit.fit(QUAD, d.x, d.y, optimizer="gd", lr=0.05, steps=500, ftol=0, gtol=0)
    path = tmp_path / "fit.gif"
    steps = plots.animate(r, path, d, max_frames=12)
    assert len(steps) <= 12 and steps[0] == 0 and steps[-1] == r.steps
    img = Image.open(path)
    assert img.n_frames == len(steps)
    img.seek(img.n_frames - 1)
    assert np.asarray(img.convert("L")).std() > 10
    assert path.stat().st_size < 2_000_000


def test_animation_paths_are_checked(d, quad, tmp_path, monkeypatch):
    from matplotlib import animation
    monkeypatch.setattr(animation.writers, "is_available", lambda name: False)
    with pytest.raises(InputError, match="ffmpeg is not installed.*gif"):
        plots.animate(quad, tmp_path / "fit.mp4", d)
    with pytest.raises(InputError, match=".gif or .mp4"):
        plots.animate(quad, tmp_path / "fit.avi", d)
    with pytest.raises(InputError, match="no such folder"):
        plots.animate(quad, tmp_path / "nope" / "fit.gif", d)


# ---------------------------------------------------------------- landscapes

def test_landscape_two_parameters_draws_the_grid_and_the_path(d, quad):
    fig = plots.landscape(quad, d, params=("a", "b"), resolution=21)
    ax = fig.axes[0]
    path = by_gid(ax, "path")
    np.testing.assert_allclose(path.get_xdata(), quad.trajectory[:, 0])
    np.testing.assert_allclose(path.get_ydata(), quad.trajectory[:, 1])
    assert tuple(by_gid(ax, "start").get_xydata()[0]) == tuple(quad.trajectory[0, :2])
    assert tuple(by_gid(ax, "end").get_xydata()[0]) == tuple(quad.trajectory[-1, :2])
    p = L.as_problem(QUAD, d.x, d.y)
    grid = L.loss_grid(p, ("a", "b"), quad.params, None, 21, path=quad.trajectory[:, :2])
    j, i = np.unravel_index(np.argmin(grid.loss), grid.loss.shape)
    assert tuple(by_gid(ax, "grid-min").get_xydata()[0]) == (grid.x[i], grid.y[j])
    assert ax.get_xlabel() == "a" and ax.get_ylabel() == "b"
    assert "mse over (a, b)" in ax.get_title() and "c=" in ax.get_title()


def test_landscape_one_parameter_puts_the_steps_on_the_curve(d):
    r = lesson.lr_run("lr_bouncing")
    ax = plots.landscape(r, d, params="a", max_arrows=5).axes[0]
    p = L.as_problem(QUAD, d.x, d.y, loss="mae")
    curve = by_gid(ax, "slice")
    want = L.loss_along(p, ("a",), curve.get_xdata()[:, None], r.params)
    np.testing.assert_allclose(curve.get_ydata(), want)
    pts = by_gid(ax, "path")
    np.testing.assert_allclose(pts.get_xdata(), r.trajectory[:6, 0])
    np.testing.assert_allclose(pts.get_ydata(), r.history[:6])      # b, c fixed: on the slice
    arrows = [t for t in ax.texts if t.arrow_patch is not None]
    assert len(arrows) == 5


@pytest.mark.parametrize("params", [("a", "b"), "a"])
def test_compare_losses_one_panel_per_loss(d, params):
    fig = plots.compare_losses(QUAD, d.x, d.y, params, {"a": 3, "b": 2, "c": 1}, resolution=11)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["mae", "mse", "huber (delta=1)"]


def test_landscape_refuses_unknown_names(d, quad):
    with pytest.raises(InputError, match="unknown parameter 'z'"):
        plots.landscape(quad, d, params=("a", "z"))
    with pytest.raises(InputError):
        plots.landscape(quad, d, params="a", around={"q": 1})


# ---------------------------------------------------------------- learning rates

def test_lr_sweep_figure_labels_and_caption(d, tmp_path):
    sweep = R.lr_sweep(QUAD, d.x, d.y, [0.001, 0.05, 0.5], steps=20)
    found = R.lr_find(QUAD, d.x, d.y, num_it=40)
    fig = plots.lr_sweep(sweep, d, finder=found)
    titles = [ax.get_title() for ax in fig.axes]
    for run in sweep.runs:
        assert f"lr = {run.lr:g}\n{run.label}" in titles
    assert " ".join(fig.get_supxlabel().split()) == "How runs are labelled: " + R.LR_RULE
    fits = [a for ax in fig.axes for a in ax.get_lines() if a.get_gid() == "fit"]
    assert len(fits) == 3
    np.testing.assert_allclose(fits[1].get_ydata(), sweep.runs[1].result.predict(fits[1].get_xdata()))
    finder_ax = fig.axes[-1]
    dot = by_gid(finder_ax, "suggestion")
    k = int(np.argmin(np.abs(np.log(found.lrs) - np.log(found.suggestion))))
    assert tuple(dot.get_xydata()[0]) == (found.lrs[k], found.losses[k])
    assert finder_ax.get_xscale() == "log"
    not_blank(plots.save(fig, tmp_path / "sweep.png"))
    # on one axes: every run's loss, labelled
    from matplotlib.figure import Figure
    ax = Figure().add_subplot()
    plots.lr_sweep(sweep, ax=ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == \
        [f"lr={r.lr:g}: {r.label}" for r in sweep.runs]


# ---------------------------------------------------------------- the lesson's figures

def test_lesson_learning_rate_pictures_are_real_runs(d):
    from gradfit.plots import lesson_plots as LF
    for key in lesson.LR_PICTURES:
        r = lesson.lr_run(key)
        ax = LF._learning_rate(d, key).axes[0]
        np.testing.assert_allclose(by_gid(ax, "path").get_xdata(), r.trajectory[:, 0])
        assert f"lr = {r.lr:g}" in ax.get_title()
    small, high, bouncy = (lesson.lr_run(k).history for k in lesson.LR_PICTURES)
    assert np.all(np.diff(small) < 0)                        # many small steps down
    assert high[-1] > high[0]                                # the loss got worse
    assert np.sum(np.diff(bouncy) > 0) >= 2 and bouncy[-1] < bouncy[0]   # bounces, still lower
    guess = LF.guess(d).axes[0]
    assert guess.get_title().endswith("MAE = 2.42")
    np.testing.assert_allclose(by_gid(guess, "guess").get_ydata(),
                               1.1 * by_gid(guess, "guess").get_xdata() ** 2
                               + 1.1 * by_gid(guess, "guess").get_xdata() + 1.1)


def test_fit_result_shows_a_table_in_notebooks(quad):
    html = quad._repr_html_()
    assert html.count("<table>") == 2
    for name, value in quad.params.items():
        assert f"<td>{name}</td><td>{value:.10g}</td>" in html
    assert "not converged" in html and "&lt;" not in quad.model


# ---------------------------------------------------------------- the command line

def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_fit_plot_and_animate(capsys, tmp_path):
    code, out, err = run(capsys, "fit", "lesson", "--model", QUAD, "--optimizer", "gd",
                         "--lr", "0.05", "--steps", "30", "--plot", tmp_path / "f.png",
                         "--animate", tmp_path / "f.gif", "--frames", "5")
    assert code == 1 and "step limit" in err           # not converged, but drawn
    not_blank(tmp_path / "f.png")
    assert Image.open(tmp_path / "f.gif").n_frames == 5
    assert "(5 frames)" in out


@pytest.mark.parametrize("argv, message", [
    (["fit", "lesson", "-m", QUAD, "--plot", "f.bmp"], "cannot write a picture of that kind"),
    (["fit", "lesson", "-m", QUAD, "--animate", "f.avi"], ".gif or .mp4"),
    (["fit", "lesson", "-m", QUAD, "--plot", "/no/such/dir/f.png"], "no such folder"),
    (["landscape", "lesson", "-m", QUAD, "--params", "a,z"], "unknown parameter 'z'"),
    (["landscape", "lesson", "-m", QUAD, "--params", "a,b,c"], "bad --params"),
    (["landscape", "lesson", "-m", QUAD, "--params", "a", "--around", "q=1"], "unknown parameter 'q'"),
    (["landscape", "lesson", "-m", QUAD, "--params", "a", "--span", "a=3:1"], "bad span"),
    (["landscape", "lesson", "-m", QUAD, "--params", "a", "--out", "x.txt"], "picture of that kind"),
    (["lr-sweep", "lesson", "-m", QUAD, "--lrs", "0.1,x"], "bad --lrs"),
    (["lr-sweep", "lesson", "-m", QUAD, "--lrs", "0.1,-1"], "bad learning rates"),
    (["lr-sweep", "lesson", "-m", QUAD, "--optimizer", "lbfgs", "--find"], "lr_find cannot drive"),
])
def test_cli_bad_picture_input_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_cli_landscape_and_lr_sweep_write_pictures(capsys, tmp_path):
    code, out, _ = run(capsys, "landscape", "lesson", "-m", QUAD, "--params", "a",
                       "--around", "b=1.1,c=1.1", "--p0", "a=1.1,b=1.1,c=1.1", "--fix-others",
                       "--loss", "mae", "--lr", "1", "--steps", "6", "--out", tmp_path / "l.png",
                       "--json", tmp_path / "l.json")
    assert code == 0 and "mae over a" in out
    not_blank(tmp_path / "l.png")
    import json
    body = json.loads((tmp_path / "l.json").read_text())
    assert body["name"] == "a" and len(body["path"]) == 7
    assert body["path_loss"] == pytest.approx(body["history"])    # others fixed: on the slice
    code, out, _ = run(capsys, "lr-sweep", "lesson", "-m", QUAD, "--lrs", "0.001,0.05,0.5",
                       "--steps", "20", "--find", "--out", tmp_path / "s.png")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:4]]
    assert [(r[0], " ".join(r[3:])) for r in rows] == [("0.001", "too slow"), ("0.05", "good"),
                                                       ("0.5", "diverged")]
    assert "lr_find suggests" in out and R.LR_RULE in out
    not_blank(tmp_path / "s.png")


def test_cli_lesson_pictures_and_the_text_names_them(capsys, tmp_path):
    code, out, _ = run(capsys, "lesson", "--pictures", tmp_path / "pics")
    assert code == 0
    for key, (name, what) in lesson.FIGURES.items():
        path = tmp_path / "pics" / name
        not_blank(path)
        assert f"picture: {path}  ({what})" in out
    # the narration still holds the lesson's numbers, with the pictures between them
    assert "quad_mae([1.1, 1.1, 1.1]) = 2.4219" in out and "step=9; loss=1.46" in out
    code, _, err = run(capsys, "lesson", "--pictures", tmp_path / "pics" / "01_quadratic.png")
    assert code == 2 and "not a folder" in err


def test_a_result_keeps_its_data_so_a_picture_needs_nothing_else(lesson):
    import gradfit
    import gradfit.plots
    r = gradfit.fit("a*x^2 + b*x + c", lesson.x, lesson.y)
    np.testing.assert_array_equal(r.x, lesson.x)
    np.testing.assert_array_equal(r.y, lesson.y)
    fig = gradfit.plots.fit(r)
    xs = [np.asarray(line.get_xdata(), dtype=float) for ax in fig.axes for line in ax.get_lines()]
    assert fig.axes and any(len(v) for v in xs)


def test_a_figure_that_is_a_cells_value_is_drawn_without_pyplot():
    # before: Jupyter showed '<Figure size 1150x620 with 3 Axes>' until something had
    # imported matplotlib.pyplot (whose inline backend registers the drawing)
    formatters = pytest.importorskip("IPython.core.formatters")
    d = gradfit.lesson_data()
    r = gradfit.fit("a*x^2 + b*x + c", d.x, d.y)
    data, _ = formatters.DisplayFormatter().format(gradfit.plots.fit(r, d.x, d.y))
    png = data["image/png"]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1150, 620)          # the figure's size at 100 dpi
