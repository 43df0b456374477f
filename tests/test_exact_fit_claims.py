"""An exact fit (``stationary.exact_fit``): a loss fallen to 1e-14 of its scale is no exact
fit where a Gauss-Newton step still lowers it well above the rounding level. Adam stopped
0.8% above the least-squares minimum of data with noise 1e-9 (loss 1.26e-18 against
1.25e-18) and was called converged, its gradient never looked at: its loss was "small"
against the data's size. Truly exact data keep their claim."""
import numpy as np
import pytest
from scipy.optimize import least_squares

import gradfit

X = np.linspace(-5, 5, 25)
MODEL = "A/(1+((x-m)/g)^2)+C"
P0 = dict(A=1.3, m=-0.46, C=-0.47)


def lorentz(x, A, m, C, g=0.5):
    return A / (1 + ((x - m) / g) ** 2) + C


@pytest.mark.parametrize("seed", [0, 3])
def test_adam_short_of_a_minimum_of_tiny_noise_is_not_converged(seed):
    y = lorentz(X, 1.06, -0.49, -0.45) + 1e-9 * np.random.default_rng(seed).standard_normal(25)
    kw = dict(fixed={"g": 0.5}, p0=P0, optimizer="adam", lr=0.01, ftol=1e-15, steps=5000)
    r = gradfit.fit(MODEL, X, y, **kw)
    m = gradfit.fit_many(MODEL, X, y[None], **kw)
    q = np.array([r.params[k] for k in "AmC"])
    best = least_squares(lambda p: lorentz(X, *p) - y, q, method="lm", xtol=1e-15,
                         ftol=1e-15, gtol=1e-15)
    lowest = np.mean(best.fun ** 2)
    if r.loss > lowest * (1 + 1e-5):          # short of the minimum: no claim
        assert not r.converged and not m.converged[0], (r.message, m.message[0])
    else:
        assert r.converged


def test_exact_data_fitted_to_rounding_keep_their_claim():
    """y exactly of the model: LM, and gd's lesson fit of a line, end with the residuals
    at rounding, the Gauss-Newton step predicting nothing above it: converged, the truth
    recovered."""
    y = lorentz(X, 1.06, -0.49, -0.45)
    line = gradfit.fit("a*x+b", X, 2 * X + 1, optimizer="gd", lr=0.02, steps=20000,
                       p0={"a": 0.0, "b": 0.0})
    assert line.converged, line.message
    np.testing.assert_allclose([line.params["a"], line.params["b"]], [2, 1], rtol=1e-10)
    for opt in ("lm",):
        r = gradfit.fit(MODEL, X, y, fixed={"g": 0.5}, p0=P0, optimizer=opt, steps=2000)
        assert r.converged, (opt, r.message)
        np.testing.assert_allclose([r.params[k] for k in "AmC"], [1.06, -0.49, -0.45],
                                   rtol=1e-7)
