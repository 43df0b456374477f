"""LM's walk test (``batch_lm.WALK``): parameters that keep moving along a valley where the
loss is flat end the fit as failed within a few hundred steps, instead of running the step
limit twice (the main fit and the finish on the bounds) to the same verdict."""
import numpy as np
import pytest
from scipy.optimize import least_squares

import gradfit
from test_many_refine import _bench_plate as plate   # benchmarks/bench_plate.py's plate

MODEL = "bottom + (top-bottom)/(1+(ec50/x)^hill)"
BOUNDS = {"ec50": (1e-6, 1e4), "hill": (0.1, 10)}
P0 = {"bottom": 10.0, "top": 90.0, "ec50": 0.3, "hill": 1.0}


def model(p, x):
    bottom, top, ec50, hill = p
    return bottom + (top - bottom) / (1 + (ec50 / x) ** hill)


def profile(x, y, top, start):
    """The least sum of squares with ``top`` fixed (scipy, within the bounds)."""
    b0, _, e0, h0 = start
    fit = least_squares(lambda q: model((q[0], top, q[1], q[2]), x) - y, [b0, e0, h0],
                        bounds=([-np.inf, 1e-6, 0.1], [np.inf, 1e4, 10]),
                        xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=20000)
    return 2 * fit.cost


@pytest.mark.parametrize("well", [9, 13])
def test_a_walk_along_a_flat_valley_fails_early(well):
    """Two flat wells whose fit slides top and ec50 together past the last dose (hill on
    its bound): the loss fell by ~1e-9 of itself per 100 steps. fit ran 2000 steps (1000,
    then 1000 in the finish) to max_steps; now it fails in under 1000, saying why. The
    verdict is right: fixing top 50 units either way from the end and fitting the others
    (scipy) raises the loss by less than one sigma^2 = S/(n-p) on one side at least, so
    the data do not determine top (a profile likelihood flat over 50 units)."""
    dose, y = plate()
    r = gradfit.fit(MODEL, dose, y[well], p0=P0, bounds=BOUNDS)
    assert not r.converged and r.reason == "failed", (r.reason, r.message)
    assert r.steps < 1000, r.steps
    assert "do not determine" in r.message, r.message
    end = [r.params[k] for k in ("bottom", "top", "ec50", "hill")]
    S = float(np.sum((model(end, dose) - y[well]) ** 2))
    sigma2 = S / (dose.size - 4)
    rise = min(profile(dose, y[well], end[1] + d, end) for d in (-50.0, 50.0)) - S
    assert rise < sigma2, (rise, sigma2)


def test_fit_many_ends_those_wells_alike():
    """The batch gives the same verdict on the walking wells, and certifies the others as
    fit does (equal losses on the wells both converge)."""
    dose, y = plate()
    rows = [9, 13, 20, 40]
    many = gradfit.fit_many(MODEL, dose, y[rows], p0=P0, bounds=BOUNDS)
    for i, w in enumerate(rows):
        one = gradfit.fit(MODEL, dose, y[w], p0=P0, bounds=BOUNDS)
        assert bool(many.converged[i]) == one.converged, (w, many.message[i], one.message)
        if one.converged:
            assert abs(float(many.loss[i]) - one.loss) <= 1e-9 * one.loss
    assert not many.converged[0] and not many.converged[1]
    assert max(int(many.steps[0]), int(many.steps[1])) < 1000
