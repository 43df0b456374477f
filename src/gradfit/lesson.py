"""The lesson, replayed with gradfit's own calls, as lines of narration.

"Deep learning is just graph plotting": make noisy data from a quadratic, measure a
guess by its mean absolute error, let autograd give the gradient, step against it, and
see that sums of ReLUs fit the same data. ``replay()`` yields the text; the command
line prints it. The numbers are the lesson's own (its loop never zeroes the gradient).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterator, Mapping

from .data import lesson_data
from .fit import fit, iter_fit, loss_and_grad

QUAD = "a*x^2 + b*x + c"
GUESS = {"a": 1.1, "b": 1.1, "c": 1.1}
LR = 0.01

#: the lesson's pictures, written by ``gradfit lesson --pictures DIR``
#: (``gradfit.plots.lesson_figures``): key -> (file name, what it shows)
FIGURES: dict[str, tuple[str, str]] = {
    "quadratic": ("01_quadratic.png", "the quadratic f(x) = 3x^2 + 2x + 1"),
    "data": ("02_noisy_data.png", "the noisy data made from f"),
    "guess": ("03_guess_1.1.png", "the guess a = b = c = 1.1, its MAE in the title"),
    "lr_small": ("04_lr_small.png", "a small learning rate: many small steps down the loss"),
    "lr_too_high": ("05_lr_too_high.png", "a learning rate too high: the loss gets worse"),
    "lr_bouncing": ("06_lr_bouncing.png", "a high learning rate: the steps bounce across the valley"),
    "relu": ("07_relu.png", "one ReLU, max(0, x + 1)"),
    "double_relu": ("08_double_relu.png", "two ReLUs added"),
    "relu_fit": ("09_relu_fit.png", "sums of 1, 2 and 5 ReLUs fitted to the data"),
    "before_after": ("10_before_after.png", "the quadratic before and after gradient descent"),
    "landscapes": ("11_landscapes.png", "the loss over (a, b) for mae, mse and huber"),
}

#: the lesson's learning-rate pictures: gradient descent on ``a`` alone (b and c held at
#: the guess), on the lesson's MAE, starting from the guess: rate and steps of each run
LR_PICTURES = {"lr_small": (0.05, 25), "lr_too_high": (4.0, 3), "lr_bouncing": (1.0, 10)}


def _ten_steps(accumulate: bool) -> list[str]:
    """The lesson's first step and ten more, as 'step=i; loss=..' lines."""
    d = lesson_data()
    run = iter_fit(QUAD, d.x, d.y, loss="mae", optimizer="gd", lr=LR, steps=11, p0=GUESS,
                   accumulate_grad=accumulate, ftol=0, gtol=0)
    records = list(run)[1:]     # record 0 is the guess itself; record 1 is after one step
    return [f"step={r.step - 1}; loss={r.loss:.2f}" for r in records]


def lr_run(key: str):
    """The real run behind a learning-rate picture (a key of ``LR_PICTURES``): gradient
    descent on ``a`` alone, b and c held at the guess, on the lesson's MAE."""
    lr, steps = LR_PICTURES[key]
    d = lesson_data()
    held = {k: v for k, v in GUESS.items() if k != "a"}
    return fit(QUAD, d.x, d.y, loss="mae", optimizer="gd", lr=lr, steps=steps, p0=GUESS,
               fixed=held, ftol=0, gtol=0)


@lru_cache(maxsize=None)
def gd_fit():
    """Gradient descent on the MAE from the guess, as the lesson runs it (2000 steps)."""
    d = lesson_data()
    return fit(QUAD, d.x, d.y, loss="mae", optimizer="gd", lr=LR, steps=2000, p0=GUESS)


@lru_cache(maxsize=None)
def relu_fit(units: int):
    """A sum of ``units`` ReLUs fitted to the lesson's data (Adam on the MAE, seed 0)."""
    d = lesson_data()
    return fit(f"relu:{units}", d.x, d.y, loss="mae", optimizer="adam", lr=0.05, steps=1500,
               seed=0)


def _show(pictures: Mapping[str, str] | None, *keys: str) -> list[str]:
    """'picture: PATH  (what it shows)' lines for the pictures that were written."""
    if not pictures:
        return []
    return [f"  picture: {pictures[k]}  ({FIGURES[k][1]})" for k in keys if k in pictures]


def replay(pictures: Mapping[str, str] | None = None) -> Iterator[str]:
    """Yield the lesson's narration, line by line. ``pictures`` (key of ``FIGURES`` ->
    path, as ``gradfit.plots.lesson_figures`` returns them): say which file shows what."""
    d = lesson_data()
    yield "The lesson's data: 20 points from f(x) = 3x^2 + 2x + 1, with multiplicative"
    yield "noise N(0, 0.15) and additive noise N(0, 1.5), numpy seed 42."
    yield from _show(pictures, "quadratic", "data")
    yield ""
    yield "Fit by hand: guess a = b = c = 1.1 and measure the mean absolute error (MAE)."
    mae, grad = loss_and_grad(QUAD, d.x, d.y, GUESS, loss="mae")
    yield f"quad_mae([1.1, 1.1, 1.1]) = {mae:.4f}"
    yield from _show(pictures, "guess")
    yield "Autograd gives the gradient of the MAE with respect to a, b and c:"
    yield "grad = [" + ", ".join(f"{g:.4f}" for g in grad.values()) + "]"
    yield "All three are negative, so increasing each lowers the loss."
    yield f"Step against the gradient with learning rate {LR}: p <- p - lr * grad."
    accumulated = _ten_steps(accumulate=True)
    yield f"loss={accumulated[0].split('=')[-1]}"
    yield ""
    yield "Ten more steps, as the lesson's loop runs them (it never zeroes the gradient):"
    yield from accumulated
    yield ""
    yield "The same ten steps with the gradient zeroed before each step (gradfit's default):"
    yield from _ten_steps(accumulate=False)
    yield ("They differ because the lesson never zeroes the gradient: backward() adds to "
           "abc.grad, so each step moves by the sum of all earlier gradients and speeds up.")
    if pictures:
        yield ""
        yield ("The learning rate, seen on the loss against a alone (b = c = 1.1), each "
               "arrow one step of gradient descent:")
        for key, (lr, steps) in LR_PICTURES.items():
            h = lr_run(key).history
            yield (f"  lr={lr:g}: MAE {h[0]:.2f} -> {h[-1]:.2f} in {steps} steps "
                   f"(lowest {min(h):.2f}, highest {max(h):.2f})")
            yield from _show(pictures, key)
    yield ""
    gd = gd_fit()
    yield (f"Gradient descent for {gd.steps} steps on the MAE: "
           + ", ".join(f"{k}={v:.3f}" for k, v in gd.params.items()) + f"; MAE={gd.loss:.4f}")
    yield from _show(pictures, "before_after")
    exact = fit(QUAD, d.x, d.y, loss="mae", p0=GUESS)
    yield ("Gradient descent only circles the MAE's minimum; the exact one (IRLS): "
           + ", ".join(f"{k}={v:.3f}" for k, v in exact.params.items())
           + f"; MAE={exact.loss:.4f}")
    ls = fit(QUAD, d.x, d.y, loss="mse", p0=GUESS)
    yield ("The least-squares quadratic (Levenberg-Marquardt, mse): "
           + ", ".join(f"{k}={v:.3f} +- {ls.stderr[k]:.3f}" for k, v in ls.params.items())
           + f"; RMSE={ls.rmse:.4f}")
    yield "The data came from a=3, b=2, c=1: the noise leaves that much uncertainty."
    yield from _show(pictures, "landscapes")
    yield ""
    yield "Sums of ReLUs: relu(m*x + b) bends once; add several and they follow any curve."
    yield from _show(pictures, "relu", "double_relu")
    for units in (1, 2, 5):
        r = relu_fit(units)
        yield f"  relu:{units} ({len(r.params)} parameters): MAE={r.loss:.4f}"
    yield from _show(pictures, "relu_fit")
