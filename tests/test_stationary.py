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


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_fit_many_judges_each_stop_as_fit_does(optimizer):
    # a plateau series beside a well-posed one (its x in thousands): each gets fit's
    # verdict and message, alone
    x = np.linspace(0, 1000, 50)
    xs = np.stack([x, x / 1000])
    ys = np.stack([2 * np.exp(0.003 * x), 2 * np.exp(-0.003 * x) + 0.01 * np.sin(x / 50)])
    b0 = [0.1, -1.0]
    many = gradfit.fit_many("a*exp(b*x)", xs, ys, p0={"a": 1, "b": b0}, optimizer=optimizer,
                            steps=3000)
    assert many.reason[0] == "failed"
    assert adam_converges_the_other(optimizer, many)
    for i in range(2):
        one = gradfit.fit("a*exp(b*x)", xs[i], ys[i], p0={"a": 1, "b": b0[i]},
                          optimizer=optimizer, steps=3000)
        assert many.reason[i] == one.reason and many.message[i] == one.message


def adam_converges_the_other(optimizer, many) -> bool:
    return optimizer != "adam" or bool(many.converged[1])


def test_models_with_kinks_are_not_judged_by_their_gradient():
    # a ReLU sum, and abs/max in an expression, can stop on a kink with one-sided slopes
    from gradfit.models import make_model
    from gradfit.stationary import smooth
    assert [smooth(make_model(m)) for m in ("A*exp(-k*x) + C", "a*abs(x - b)", "relu:4",
                                            "max(a*x, b)", "mlp:4")] == [True] + [False] * 4
