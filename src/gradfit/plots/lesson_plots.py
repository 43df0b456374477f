"""The lesson's figures ("deep learning is just graph plotting"), drawn from real runs:
``lesson_figures(DIR)`` writes one PNG per entry of ``gradfit.lesson.FIGURES``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import lesson
from ..data import lesson_data
from ..errors import InputError
from ..fit import loss_and_grad
from .common import FIT_COLOR, START_COLOR, data_points, figure, new_figure, save
from .curves import fit as fit_picture
from .relu import relus
from .surface import compare_losses, landscape

X_RANGE = (-2.1, 2.1)           # the lesson's plot_function range
LR_TITLES = {"lr_small": "a small learning rate takes many small steps",
             "lr_too_high": "a learning rate too high makes the loss worse",
             "lr_bouncing": "a high learning rate bounces across the valley"}


def lesson_figures(directory, *, dpi: int = 110) -> dict[str, Path]:
    """Write the lesson's pictures into ``directory`` (made if missing); returns key ->
    path for every entry of ``gradfit.lesson.FIGURES``."""
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise InputError("cannot write the pictures: not a folder", expected="a folder",
                         given=str(folder))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError("cannot make the folder for the pictures", expected="a writable path",
                         given=f"{folder} ({exc.strerror or exc})") from None
    d = lesson_data()
    out = {}
    for key, (name, _) in lesson.FIGURES.items():
        fig = MAKERS[key](d) if key not in LR_TITLES else _learning_rate(d, key)
        out[key] = save(fig, folder / name, dpi)
    return out


def _quad(values: dict, x):
    return values["a"] * x ** 2 + values["b"] * x + values["c"]


def quadratic(d=None, *, ax=None):
    """The lesson's f(x) = 3x^2 + 2x + 1."""
    fig, ax = new_figure(ax, (6.5, 4.3))
    xs = np.linspace(*X_RANGE, 300)
    (ln,) = ax.plot(xs, _quad({"a": 3, "b": 2, "c": 1}, xs), color=FIT_COLOR, lw=2.2,
                    label="f(x) = 3x² + 2x + 1")
    ln.set_gid("f")
    _frame(ax, "the quadratic f(x) = 3x² + 2x + 1  (a = 3, b = 2, c = 1)")
    return fig


def noisy_data(d, *, ax=None):
    """The lesson's 20 noisy points, with f faintly behind them."""
    fig, ax = new_figure(ax, (6.5, 4.3))
    xs = np.linspace(*X_RANGE, 300)
    ax.plot(xs, _quad({"a": 3, "b": 2, "c": 1}, xs), ":", color=START_COLOR, lw=1.4,
            label="f, without noise")
    data_points(ax, d.x, d.y)
    _frame(ax, "the noisy data: f(x) with 15% multiplicative and N(0, 1.5) additive noise")
    return fig


def guess(d, *, ax=None):
    """The guess a = b = c = 1.1 on the data, its MAE in the title."""
    fig, ax = new_figure(ax, (6.5, 4.3))
    mae, _ = loss_and_grad(lesson.QUAD, d.x, d.y, lesson.GUESS, loss="mae")
    xs = np.linspace(*X_RANGE, 300)
    data_points(ax, d.x, d.y)
    (ln,) = ax.plot(xs, _quad(lesson.GUESS, xs), color=FIT_COLOR, lw=2.2,
                    label="1.1x² + 1.1x + 1.1")
    ln.set_gid("guess")
    _frame(ax, f"the guess a = b = c = 1.1: MAE = {mae:.2f}")
    return fig


def _learning_rate(d, key):
    r = lesson.lr_run(key)
    h = r.history
    title = (f"lr = {r.lr:g}: {LR_TITLES[key]}\nMAE {h[0]:.2f} → {h[-1]:.2f} in {r.steps} "
             f"steps (b = c = 1.1 held)")
    a = r.trajectory[:, 0]
    pad = 0.35 * (a.max() - a.min()) + 0.2
    fig = landscape(r, d, params="a", max_arrows=r.steps, title=title,
                    span=(min(a.min(), 2.0) - pad, max(a.max(), 3.2) + pad))
    fig.set_size_inches(7, 4.6)
    return fig


def relu(d=None, *, ax=None):
    """The lesson's single ReLU, max(0, 1·x + 1)."""
    return relus("relu:1", {"m1": 1.0, "b1": 1.0, "c": 0.0}, x_range=X_RANGE, ax=ax)


def double_relu(d=None, *, ax=None):
    """The lesson's double ReLU (m1 = b1 = -1.5, m2 = b2 = 1.5): two bends added."""
    return relus("relu:2", {"m1": -1.5, "b1": -1.5, "m2": 1.5, "b2": 1.5, "c": 0.0},
                 x_range=X_RANGE, ax=ax)


def relu_fits(d):
    """Sums of 1, 2 and 5 ReLUs fitted to the data, side by side."""
    fig = figure((15, 4.6))
    for k, units in enumerate((1, 2, 5), 1):
        relus(lesson.relu_fit(units), x=d, ax=fig.add_subplot(1, 3, k))
    fig.suptitle("more ReLUs follow the data more closely (Adam on the MAE, 1500 steps)")
    return fig


def before_after(d):
    """The guess, then the fit after the lesson's gradient descent."""
    fig = figure((13, 4.8))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2, sharey=None)
    guess(d, ax=left)
    left.set_title(left.get_title().replace("the guess", "before: the guess"))
    r = lesson.gd_fit()
    fit_picture(r, d, ax=right, band=False)
    right.set_title(f"after {r.steps} steps of gradient descent (lr = {r.lr:g})\n"
                    f"MAE = {r.loss:.2f}: " + ", ".join(f"{k} = {v:.2f}" for k, v in r.params.items()))
    right.set_ylim(left.get_ylim())
    return fig


def landscapes(d):
    """The loss over (a, b), c at its least-squares value, for mae, mse and huber."""
    from ..fit import fit
    ls = fit(lesson.QUAD, d.x, d.y, loss="mse")
    fig = compare_losses(lesson.QUAD, d.x, d.y, ("a", "b"), ls.params,
                         span={"a": (0.5, 5.0), "b": (-1.5, 4.0)}, resolution=101)
    fig.suptitle(f"the loss over (a, b) for the same data, c held at {ls.params['c']:.2f}: "
                 "mae has corners, mse is a smooth bowl, huber lies between")
    return fig


def _frame(ax, title):
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9, loc="upper left")


MAKERS = {"quadratic": quadratic, "data": noisy_data, "guess": guess, "relu": relu,
          "double_relu": double_relu, "relu_fit": relu_fits, "before_after": before_after,
          "landscapes": landscapes}
