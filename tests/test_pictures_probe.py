"""Defects the pictures probe found (/tmp/probes/pictures.md), each checked on what is drawn:
the artists' data, axis limits, colour-bar labels, labels of constructed loss sequences, and
the command line's exit codes and messages."""
import json

import numpy as np
import pytest

import gradfit
from gradfit import landscape as L
from gradfit import learning_rates as R
from gradfit.cli import main
from gradfit.errors import InputError
from gradfit.fit import loss_and_grad

plots = pytest.importorskip("gradfit.plots")
from gradfit.plots import animation as A  # noqa: E402
from gradfit.plots import common as C  # noqa: E402

QUAD = "a*x^2 + b*x + c"


@pytest.fixture(scope="module")
def d():
    return gradfit.lesson_data()


@pytest.fixture(scope="module")
def blowup(d):
    """gd at lr=0.3 on the lesson's quadratic: the loss grows past 1e4 times its start."""
    return gradfit.fit(QUAD, d.x, d.y, optimizer="gd", lr=0.3, steps=100)


def by_gid(ax, gid):
    found = [a for a in ax.get_children() if a.get_gid() == gid]
    assert found, f"no artist {gid!r}"
    return found[0]


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- 1: a diverged run

def test_a_diverged_run_ends_on_the_loss_that_showed_the_divergence(d, blowup):
    r, k = blowup, len(blowup.history) - 1
    assert r.reason == "diverged" and f"diverged at step {k}:" in r.message
    h = r.history
    assert h[-1] > 2 * h[-2]                       # the blow-up, not a plateau at h[-2]
    # the path's last point is one more gd step from the last finite one (the oracle: the
    # lesson's gradient), and the history's last loss is the loss there
    loss, grad = loss_and_grad(QUAD, d.x, d.y, dict(zip("abc", r.trajectory[-2])), loss="mse")
    np.testing.assert_allclose(r.trajectory[-1], r.trajectory[-2] - 0.3 * np.array(list(grad.values())),
                               rtol=1e-12)
    end, _ = loss_and_grad(QUAD, d.x, d.y, dict(zip("abc", r.trajectory[-1])), loss="mse")
    assert h[-1] == pytest.approx(end, rel=1e-12) and h[-2] == pytest.approx(loss, rel=1e-12)
    # the result itself stays the last finite point
    assert r.params == dict(zip("abc", r.trajectory[-2])) and r.loss == h[-2]


def test_the_fit_picture_of_a_diverged_run_draws_the_blowup(d, blowup):
    fig = plots.fit(blowup, d)
    loss_ax = fig.axes[2]
    k = len(blowup.history) - 1
    np.testing.assert_allclose(by_gid(loss_ax, "loss").get_ydata(), blowup.history)
    x = by_gid(loss_ax, "diverged")
    assert tuple(x.get_xydata()[0]) == (k, blowup.history[-1])
    assert f"DIVERGED at step {k}" in loss_ax.get_title()
    assert f"DIVERGED at step {k}" in fig.get_suptitle()


def test_an_infinite_loss_is_marked_at_the_top_of_the_axis(d):
    r = gradfit.fit("exp(a*x)+b", d.x, d.y, optimizer="gd", lr=1, steps=50, divergence=1e300)
    assert r.reason == "diverged" and np.isinf(r.history[-1])
    ax = plots.loss_curve(r).axes[0]
    line = by_gid(ax, "loss")
    assert np.isfinite(line.get_ydata()).all() and len(line.get_ydata()) == len(r.history) - 1
    x = by_gid(ax, "diverged")
    assert x.get_transform() == ax.get_xaxis_transform() and not x.get_clip_on()
    assert tuple(x.get_xydata()[0]) == (len(r.history) - 1, 1.0)       # x: data, y: the top


def test_lr_sweep_ends_a_diverged_run_on_its_blowup(capsys, d, tmp_path):
    sweep = R.lr_sweep(QUAD, d.x, d.y, [0.01, 1.0], steps=100)
    diverged = sweep.runs[1].result
    single = gradfit.fit(QUAD, d.x, d.y, optimizer="gd", lr=1.0, steps=100)
    np.testing.assert_allclose(diverged.history, single.history)
    assert diverged.history[-1] > 10 * diverged.history[-2]
    fig = plots.lr_sweep(sweep, d)
    low = fig.axes[3]                               # the lr=1 run's loss panel
    assert tuple(by_gid(low, "diverged").get_xydata()[0]) == (len(single.history) - 1,
                                                              single.history[-1])
    assert by_gid(fig.axes[2], "off-view")          # its curve left the view: said so
    code, out, _ = run(capsys, "lr-sweep", "lesson", "-m", QUAD, "--lrs", "0.01,1",
                       "--out", tmp_path / "s.png")
    row = [line.split() for line in out.splitlines() if line.split()[:1] == ["1"]][0]
    assert code == 0 and float(row[2]) == pytest.approx(single.history[-1], rel=1e-4)


def test_the_animations_last_frame_is_the_step_it_draws(d, blowup, tmp_path, monkeypatch):
    made = []

    class Kept(A.Figure):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)
    monkeypatch.setattr(A, "Figure", Kept)
    steps = plots.animate(blowup, tmp_path / "d.gif", d, max_frames=20)
    k = len(blowup.history) - 1
    assert steps[-1] == k
    ax = made[0].axes[0]                  # as the writer left it: the last frame
    assert f"step {k} of {k}: DIVERGED" in ax.get_title()
    assert f"mse = {blowup.history[-1]:.4g}" in ax.get_title()
    fit_line = [ln for ln in ax.get_lines() if ln.get_label() == "current fit"][0]
    xs = fit_line.get_xdata()
    a, b, c = blowup.trajectory[k]
    np.testing.assert_allclose(fit_line.get_ydata(), a * xs ** 2 + b * xs + c, rtol=1e-12)


def test_the_landscape_of_a_diverged_path_says_diverged(d, blowup):
    ax = plots.landscape(blowup, d, params=("a", "b"), resolution=21).axes[0]
    k = len(blowup.history) - 1
    assert any(f"DIVERGED at step {k}" in t for t in legend_texts(ax))
    np.testing.assert_allclose(by_gid(ax, "path").get_xdata(), blowup.trajectory[:k, 0])
    assert tuple(by_gid(ax, "escape").get_xydata()[0]) == tuple(blowup.trajectory[k, :2])
    assert tuple(by_gid(ax, "end").get_xydata()[0]) == (blowup.params["a"], blowup.params["b"])


# ---------------------------------------------------------------- 2: constant y

def test_constant_data_are_drawn_flat_not_zoomed_into_rounding(d):
    x = np.arange(10.0)
    y = np.full(10, 5.0)
    r = gradfit.fit("a*x+b", x, y)
    main_ax, resid_ax = plots.fit(r, x, y).axes[:2]
    lo, hi = main_ax.get_ylim()
    assert lo < 5 < hi and hi - lo > 0.5              # was 3e-15: a staircase
    np.testing.assert_allclose(by_gid(main_ax, "fit").get_ydata(), 5.0, rtol=1e-12)
    rlo, rhi = resid_ax.get_ylim()
    assert rhi - rlo >= 1e-9 * 5                      # residuals of rounding show as zero
    from matplotlib.figure import Figure
    ax = Figure().add_subplot()
    traj = np.asarray(r.trajectory, float)
    A._curve_frames(ax, r, traj, list(range(len(traj))), x, y, None)
    lo, hi = ax.get_ylim()
    assert lo < 5 < hi and hi - lo > 0.5


# ---------------------------------------------------------------- 3: the default view

def test_the_default_view_follows_the_parameters_scale():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 40)
    y = 1e-9 * (3 * x + 1) + rng.normal(0, 1e-11, 40)
    p = L.as_problem("a*x+b", x, y)
    best = dict(zip("ab", np.polyfit(x, y, 1)))
    g = L.loss_grid(p, ("a", "b"), best, None, 21)
    assert g.x[-1] - g.x[0] < 1e-7 and g.y[-1] - g.y[0] < 1e-7      # was +-1
    assert g.x[0] < best["a"] < g.x[-1] and g.loss.max() / g.loss.min() > 100
    # data of the lesson's size keep their view
    assert L.default_half_width(2.76, 3.1) == 1.38 and L.default_half_width(0.5, 5.0) == 1.0
    # the picture: a path from a start of 1 (3e8 natural widths off) leaves the view, saying so
    r = gradfit.fit("a*x+b", x, y)
    ax = plots.landscape(r, x, y, params=("a", "b"), resolution=21).axes[0]
    lo, hi = ax.get_xlim()
    assert hi - lo < 1e-7 and lo < best["a"] < hi
    assert any("it starts off the view, at a=1, b=1" in t for t in legend_texts(ax))


def test_the_default_view_holds_the_slices_minimum_and_says_when_it_cannot(d):
    crawl = gradfit.fit(QUAD, d.x, d.y, optimizer="gd", lr=0.001, steps=50)
    ax = plots.landscape(crawl, d, params=("a", "b"), resolution=31).axes[0]
    c = crawl.params["c"]
    a_star, b_star = np.linalg.lstsq(np.c_[d.x ** 2, d.x], d.y - c, rcond=None)[0]   # c held
    assert ax.get_xlim()[0] < a_star < ax.get_xlim()[1]
    assert ax.get_ylim()[0] < b_star < ax.get_ylim()[1]
    assert "edge" not in by_gid(ax, "grid-min").get_label()
    ax = plots.landscape(crawl, d, params=("a", "b"), span={"a": (0, 1), "b": (0, 1)},
                         resolution=11).axes[0]
    assert "on its edge, the minimum lies beyond" in by_gid(ax, "grid-min").get_label()
    assert not by_gid(ax, "grid-min").get_clip_on()


# ---------------------------------------------------------------- 4: the colour bar

@pytest.mark.parametrize("decades", [2, 8, 12, 20])
def test_the_colour_bar_always_has_labelled_ticks(decades):
    x, y = np.linspace(0, 1, 30), np.linspace(0, 1, 20)
    grid = L.LossGrid(("a", "b"), x, y, 10.0 ** (decades * np.add.outer(y, x) / 2),
                      {"a": 0.0, "b": 0.0}, "mse")
    fig = plots.draw_grid(grid)
    fig.canvas.draw()
    bar = fig.axes[-1]                                   # the colour bar's axes
    labels = [t.get_text() for t in bar.get_yticklabels() if t.get_text()]
    assert 3 <= len(labels) <= 12, labels


# ---------------------------------------------------------------- 5: the labels

@pytest.mark.parametrize("history, label", [
    ([2.61] + [10.301, 5.558] * 50, "bouncing"),       # gd on mae at lr=5: a bounded 2-cycle
    ([2.61, 3.0, 3.3, 2.1, 4.2, 2.3, 2.8, 3.5, 3.0, 3.3, 2.9, 3.45], "bouncing"),  # bounded
    ([1, 3, 2, 6, 4, 12, 8], "diverged"),              # a growing bounce runs away
    ([4, 5], "diverged"),
])
def test_a_bounded_oscillation_is_bouncing_a_runaway_diverged(history, label):
    assert R.classify_run(history, 1.0) == label


def test_the_mae_sweep_at_a_big_rate_bounces(d):
    sweep = R.lr_sweep(QUAD, d.x, d.y, [2.0, 5.0], loss="mae", steps=100)
    h = sweep.runs[1].result.history
    np.testing.assert_allclose(h[-4:-2], h[-2:])                          # an exact 2-cycle
    assert [r.label for r in sweep.runs] == ["bouncing", "bouncing"]


def test_a_sweep_over_an_optimizer_without_a_learning_rate_is_refused(capsys, d, tmp_path):
    for name in ("lm", "auto", "lbfgs", "irls"):
        with pytest.raises(InputError, match="learning-rate sweep cannot use"):
            R.lr_sweep(QUAD, d.x, d.y, [0.01, 1], optimizer=name, steps=5)
    code, _, err = run(capsys, "lr-sweep", "lesson", "-m", QUAD, "--optimizer", "auto",
                       "--lrs", "0.01,1", "--out", tmp_path / "q.png")
    assert code == 2 and "sets its own steps" in err and not (tmp_path / "q.png").exists()


# ---------------------------------------------------------------- 6, 7, 8, 10: the CLI

def test_a_sweep_without_a_finite_loss_exits_2_with_the_fits_message(capsys, tmp_path):
    code, out, err = run(capsys, "lr-sweep", "lesson", "-m", "sqrt(a*x)+b", "--out",
                         tmp_path / "n.png")
    assert code == 2 and "no finite loss" in err and "undefined (NaN)" in err
    assert err.count("\n") == 1 and not (tmp_path / "n.png").exists()


def test_frames_are_capped_before_the_fit_runs(capsys, d, tmp_path, monkeypatch):
    import sys
    r = gradfit.fit("a*x+b", d.x, d.y)
    monkeypatch.setattr(sys.modules["gradfit.fit"], "iter_fit",
                        lambda *a, **k: pytest.fail("the fit ran"))
    code, _, err = run(capsys, "fit", "lesson", "-m", QUAD, "--animate", tmp_path / "a.gif",
                       "--frames", "1000")
    assert code == 2 and f"from 2 to {A.MAX_FRAMES}" in err
    with pytest.raises(InputError, match="from 2 to 500"):
        plots.animate(r, tmp_path / "a.gif", d, max_frames=501)


def test_three_inputs_are_refused_for_an_animation_before_the_fit(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (40, 3))
    np.savetxt(tmp_path / "t.csv", np.c_[X, X.sum(1)], delimiter=",", header="u,v,w,y",
               comments="")
    code, _, err = run(capsys, "fit", tmp_path / "t.csv", "--x", "u,v,w", "-m", "a+b*u+c*v+d*w",
                       "--animate", tmp_path / "t.gif", "--plot", tmp_path / "t.png", "-q")
    assert code == 2 and "cannot animate" in err and "3 inputs" in err
    assert not (tmp_path / "t.png").exists()         # refused before the fit and its picture


def test_many_points_are_thinned_in_the_pictures():
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, 50_000)
    y = 2 * x + 1 + rng.normal(0, 0.1, x.size)
    r = gradfit.fit("a*x+b", x, y)
    ax = plots.fit(r, x, y).axes[0]
    data = by_gid(ax, "data")
    assert len(data.get_xdata()) == C.MAX_DRAWN
    assert "20,000 of 50,000 drawn" in data.get_label()
    keep = C.thinned(x.size)
    np.testing.assert_array_equal(data.get_xdata(), x[keep])      # evenly chosen, as given


def test_landscape_json_reuses_the_pictures_grid_and_the_work_is_priced(capsys, tmp_path,
                                                                       monkeypatch):
    from gradfit.cli import pictures
    calls = []
    real = L.loss_grid
    monkeypatch.setattr(L, "loss_grid", lambda *a, **k: calls.append(1) or real(*a, **k))
    code, _, _ = run(capsys, "landscape", "lesson", "-m", QUAD, "--params", "a,b",
                     "--resolution", "21", "--out", tmp_path / "l.png", "--json", tmp_path / "l.json")
    body = json.loads((tmp_path / "l.json").read_text())
    assert code == 0 and len(calls) == 1 and len(body["loss"]) == 21
    monkeypatch.setattr(pictures, "LANDSCAPE_WORK", 1e4)
    code, _, err = run(capsys, "landscape", "lesson", "-m", QUAD, "--params", "a,b",
                       "--out", tmp_path / "m.png")
    assert code == 2 and "too much work" in err and "--resolution 22 or less" in err


def test_a_span_too_small_for_the_values_precision_says_so():
    with pytest.raises(InputError, match="too small for the precision of its value"):
        L.axis_range("a", 1.1399, 1e-300)
    assert L.axis_range("a", 0.0, 1e-300) == (-1e-300, 1e-300)      # at 0 it is a span


def test_lr_given_to_a_method_without_one_is_noted(capsys, tmp_path):
    code, _, err = run(capsys, "landscape", "lesson", "-m", QUAD, "--params", "a,b",
                       "--optimizer", "lm", "--lr", "5", "--resolution", "11",
                       "--out", tmp_path / "l.png")
    assert code == 0 and err.count("\n") == 1 and "--lr not used" in err


# ---------------------------------------------------------------- 9: bounds and held values

def test_bounds_are_shaded_and_a_value_held_elsewhere_is_projected(d):
    r = gradfit.fit(QUAD, d.x, d.y, optimizer="gd", lr=0.05, steps=200, bounds={"a": (0, 2)},
                    fixed={"c": 1.5})
    ax = plots.landscape(r, d, params=("a", "b"), resolution=21).axes[0]
    shade = by_gid(ax, "bound-a")
    x0 = shade.get_x() if hasattr(shade, "get_x") else np.min(shade.get_xy()[:, 0])
    assert x0 == pytest.approx(2.0)                      # the infeasible side, from a = 2
    assert "(outside the bounds)" in by_gid(ax, "grid-min").get_label()
    assert not by_gid(ax, "start").get_clip_on()
    ax = plots.landscape(r, d, params=("a", "b"), around={"c": -3.0}, resolution=21).axes[0]
    assert any("projected: the fit had c=1.5" in t for t in legend_texts(ax))


# ---------------------------------------------------------------- 11: cosmetics

def test_words_and_names_in_the_pictures(d):
    r = gradfit.fit(QUAD, d.x, d.y)                       # auto: one exact step
    ax = plots.landscape(r, d, params=("a", "b"), resolution=11).axes[0]
    assert any("(lm): 1 step " in t for t in legend_texts(ax))    # was "1 steps"
    sigma = np.full(d.n, 0.7)
    w = gradfit.fit(QUAD, d.x, d.y, sigma=sigma)
    fig = plots.landscape(w, d.x, d.y, sigma, params=("a", "b"), resolution=11)
    assert fig.axes[0].get_title().startswith("chi2/N over") and w.loss_label == "chi2/N"
    sweep = R.lr_sweep(QUAD, d.x, d.y, [0.01], steps=5, sigma=sigma)
    assert plots.lr_sweep(sweep).axes[0].get_ylabel() == "chi2/N"
    slow = gradfit.fit(QUAD, d.x, d.y, optimizer="gd", lr=0.01, steps=20)
    assert slow.covariance is not None and not slow.converged
    labels = [t.get_text() for t in plots.fit(slow, d).axes[0].get_legend().get_texts()]
    assert "95% band" not in labels
    labels = [t.get_text() for t in plots.fit(r, d).axes[0].get_legend().get_texts()]
    assert "95% band" in labels
    relu = gradfit.fit("relu:3", d.x, d.y, optimizer="adam", lr=0.05, steps=30, seed=1)
    fit_line = by_gid(plots.fit(relu, d).axes[0], "fit")
    assert "the 3 ReLUs added + c" in fit_line.get_label()
