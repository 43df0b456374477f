"""The lesson, replayed with gradfit's own calls, as lines of narration.

"Deep learning is just graph plotting": make noisy data from a quadratic, measure a
guess by its mean absolute error, let autograd give the gradient, step against it, and
see that sums of ReLUs fit the same data. ``replay()`` yields the text; the command
line prints it. The numbers are the lesson's own (its loop never zeroes the gradient).
"""
from __future__ import annotations

from typing import Iterator

from .data import lesson_data
from .fit import fit, iter_fit, loss_and_grad

QUAD = "a*x^2 + b*x + c"
GUESS = {"a": 1.1, "b": 1.1, "c": 1.1}
LR = 0.01


def _ten_steps(accumulate: bool) -> list[str]:
    """The lesson's first step and ten more, as 'step=i; loss=..' lines."""
    d = lesson_data()
    run = iter_fit(QUAD, d.x, d.y, loss="mae", optimizer="gd", lr=LR, steps=11, p0=GUESS,
                   accumulate_grad=accumulate, ftol=0, gtol=0)
    records = list(run)[1:]     # record 0 is the guess itself; record 1 is after one step
    return [f"step={r.step - 1}; loss={r.loss:.2f}" for r in records]


def replay() -> Iterator[str]:
    """Yield the lesson's narration, line by line."""
    d = lesson_data()
    yield "The lesson's data: 20 points from f(x) = 3x^2 + 2x + 1, with multiplicative"
    yield "noise N(0, 0.15) and additive noise N(0, 1.5), numpy seed 42."
    yield ""
    yield "Fit by hand: guess a = b = c = 1.1 and measure the mean absolute error (MAE)."
    mae, grad = loss_and_grad(QUAD, d.x, d.y, GUESS, loss="mae")
    yield f"quad_mae([1.1, 1.1, 1.1]) = {mae:.4f}"
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
    yield ""
    gd = fit(QUAD, d.x, d.y, loss="mae", optimizer="gd", lr=LR, steps=2000, p0=GUESS)
    yield (f"Gradient descent for {gd.steps} steps on the MAE: "
           + ", ".join(f"{k}={v:.3f}" for k, v in gd.params.items()) + f"; MAE={gd.loss:.4f}")
    ls = fit(QUAD, d.x, d.y, loss="mse", optimizer="lbfgs", steps=200, p0=GUESS)
    yield (f"The least-squares quadratic (L-BFGS, mse): "
           + ", ".join(f"{k}={v:.3f} +- {ls.stderr[k]:.3f}" for k, v in ls.params.items())
           + f"; RMSE={ls.rmse:.4f}")
    yield "The data came from a=3, b=2, c=1: the noise leaves that much uncertainty."
    yield ""
    yield "Sums of ReLUs: relu(m*x + b) bends once; add several and they follow any curve."
    for units in (1, 2, 5):
        r = fit(f"relu:{units}", d.x, d.y, loss="mae", optimizer="adam", lr=0.05, steps=1500,
                seed=0)
        yield f"  relu:{units} ({len(r.params)} parameters): MAE={r.loss:.4f}"
