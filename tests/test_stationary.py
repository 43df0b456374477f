"""A gradient method's stop is called converged only at a stationary point: the gradient
relative to its scale (the largest cosine between residuals and a Jacobian column)."""
import numpy as np
import pytest

import gradfit


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs", "rmsprop"])
def test_a_plateau_is_not_called_converged(optimizer):
    # from b = 0.1 the fit drifts to b < 0: the model is zero but at x = 0, the loss
    # hardly moves (279 where the minimum is 0) and the loss-change rule fires
    x = np.linspace(0, 1000, 50)
    y = 2 * np.exp(0.003 * x)
    r = gradfit.fit("a*exp(b*x)", x, y, p0={"a": 1, "b": 0.1}, optimizer=optimizer,
                    steps=3000)
    exact = gradfit.fit("a*exp(b*x)", x, y, p0={"a": 1, "b": 0.001})
    assert exact.converged and exact.loss < 1e-20 < r.loss
    assert not r.converged and r.reason == "failed"
    assert r.message.startswith("the loss stopped changing, but not at a minimum")


@pytest.mark.parametrize("optimizer", ["gd", "adam", "lbfgs", "momentum", "rmsprop"])
@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_converged_exactly_when_at_the_minimum(optimizer, loss):
    # the verdict against the exact method's loss: every stop at the minimum stays
    # converged; rmsprop's constant steps bounce across huber's minimum 14% above it and
    # are not called converged
    x = np.linspace(-3, 3, 40)
    y = x ** 2 + 0.1 * np.sin(5 * x)
    r = gradfit.fit("a*x^2 + b*x + c", x, y, optimizer=optimizer, loss=loss, steps=5000)
    best = gradfit.fit("a*x^2 + b*x + c", x, y, loss=loss)
    at_minimum = r.loss <= best.loss * (1 + 1e-6)
    assert r.converged == at_minimum, r.message
    assert at_minimum or (optimizer, loss) == ("rmsprop", "huber")
