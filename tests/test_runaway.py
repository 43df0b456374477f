"""A fit whose parameters run off to infinity along a valley is stopped as "failed" within a
few hundred steps (it ran to the 1000-step limit, twice with bounds, before): LM in fit and
fit_many alike. Oracles: the weighted straight line (the limit of a*exp(b*x)+c as b -> 0,
the infimum approached) and scipy's least_squares from another start (a true minimum
elsewhere, which gradfit reaches from there)."""
import numpy as np
import pytest
from scipy.optimize import least_squares

import gradfit

X = np.array([0.10513779240121823, 0.3692316423640646, 0.4506735983688973,
              0.46721993952966057, 1.2449549254518282, 1.4350181314213009, 1.7399500998594546,
              1.7880976888520725, 2.0025287966236114, 2.2595706349497084])
Y = np.array([1.5154119173909937, 1.5309871898016087, 1.1790781206709038, 1.708104082896135,
              2.2753742045327265, 2.341011590620449, 2.8246942309207794, 2.595761477843462,
              2.732257874477821, 2.798026364260933])
SIGMA = np.array([0.15621140599371558, 0.12366352269173156, 0.1849849945508972,
                  0.21544753396584326, 0.2244395814054377, 0.11604299213799484,
                  0.1509836613386689, 0.25162593317606735, 0.20835266968905358,
                  0.12515570673072998])
MODEL = "a*exp(b*x)+c"
P0 = {"a": 1.0872403026629216, "b": 1.0148006749541452, "c": 0.0}


def _line_loss():
    c1, c0 = np.polyfit(X, Y, 1, w=1 / SIGMA)
    return np.mean(((c0 + c1 * X - Y) / SIGMA) ** 2)


@pytest.mark.parametrize("bounds", [None, {"b": (-6.5, 9.3)}])
def test_parameters_that_run_off_are_stopped_as_failed(bounds):
    r = gradfit.fit(MODEL, X, Y, sigma=SIGMA, p0=P0, bounds=bounds)
    m = gradfit.fit_many(MODEL, X, Y[None], sigma=SIGMA[None],
                         p0={k: [v] for k, v in P0.items()}, bounds=bounds)
    for reason, steps, message, a in ((r.reason, r.steps, r.message, r.params["a"]),
                                      (m.reason[0], m.steps[0], m.message[0],
                                       m.params["a"][0])):
        assert reason == "failed" and "run off without bound" in message
        assert steps <= 400                       # 1000 (2000 with bounds) before
        assert abs(a) > 100                       # it did run off
    # where it stopped, the loss is just above the line's, the infimum along that valley
    line = _line_loss()
    assert line < r.loss < line * (1 + 1e-3)


def test_the_minimum_elsewhere_is_found_from_a_start_near_it():
    ls = least_squares(lambda p: (p[0] * np.exp(p[1] * X) + p[2] - Y) / SIGMA, [1, -1, 2],
                       xtol=1e-15, ftol=1e-15, gtol=1e-15)
    r = gradfit.fit(MODEL, X, Y, sigma=SIGMA, p0={"a": 1, "b": -1, "c": 2})
    assert r.converged and r.loss < _line_loss()
    # ill-conditioned (scipy's own answers from two starts differ by 4e-7): the loss is
    # the judge, the parameters agree to what it determines
    assert r.loss <= np.mean(ls.fun ** 2) * (1 + 1e-12)
    np.testing.assert_allclose(list(r.params.values()), ls.x, rtol=1e-5)
