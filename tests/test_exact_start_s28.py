"""A fit started at the exact parameters of exact data: its loss is rounding from the first
step, which is neither a divergence nor a plateau "not at a minimum". A start's loss at the
rounding level of the data is no scale to judge the end against (``stationary.loss_scale``),
and a step that lands a rounding above a loss of 0 is no divergence (``fit._rounding_loss``).
Oracle: the data are the model's own values, so the start is the least-squares solution."""
import numpy as np
import pytest
from scipy.optimize import curve_fit

import gradfit

X = np.linspace(0, 3, 20)
TRUE = {"a": 3e9, "b": 7e9, "c": 0.5e9}
Y = 1e9 * (3 + 7 * X + 0.5 * X ** 2)      # the model's values, a rounding off its own sums
QUAD = "a + b*x + c*x^2"


@pytest.mark.parametrize("optimizer", ["gd", "adam", "lbfgs", "momentum"])
def test_a_gradient_method_from_the_exact_start_converges_there(optimizer):
    r = gradfit.fit(QUAD, X, Y, p0=TRUE, optimizer=optimizer, lr=1e-30, steps=20)
    assert r.converged, r.message
    for k, v in TRUE.items():
        assert r.params[k] == pytest.approx(v, rel=1e-12)


def test_fit_many_says_the_same():
    Ys = np.stack([Y, 2 * Y])
    p0 = {k: np.array([v, 2 * v]) for k, v in TRUE.items()}
    m = gradfit.fit_many(QUAD, X, Ys, p0=p0, optimizer="gd", lr=1e-30, steps=20)
    assert m.converged.all(), list(m.message)


def test_a_start_far_off_is_still_judged():
    """The rule changes nothing for a start whose loss is no rounding: gd stopped by its
    step limit far from the minimum is not called converged."""
    r = gradfit.fit(QUAD, X, Y, p0={"a": 1.0, "b": 1.0, "c": 1.0}, optimizer="gd",
                    lr=1e-3, steps=20)
    assert not r.converged


def test_standard_errors_of_a_linear_fit_whose_sum_of_squares_underflows():
    """y ~ 1e-200: the residuals' squares underflow to 0, and the standard errors had come
    out 0; they are curve_fit's on the same data rescaled."""
    rng = np.random.default_rng(0)
    y = 1e-200 * (1 + 2 * X + rng.normal(0, 0.1, X.size))
    r = gradfit.fit("a + b*x", X, y)
    _, pcov = curve_fit(lambda x, a, b: a + b * x, X, y * 1e200)
    ref = np.sqrt(np.diag(pcov)) * 1e-200
    assert [r.stderr["a"], r.stderr["b"]] == pytest.approx(ref, rel=1e-6)
