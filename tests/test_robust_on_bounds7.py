"""Robust fits (huber, mae) whose optimum has a parameter exactly on its bound: fit_many
ended them "failed" where fit certified them. Its finish ran fit from the batch's end with
no steps of its own; a start exactly on a bound moves inside (``bounds.inside``), so that
fit stopped at once, short of the bound, its active set never run. Oracles: scipy's
bounded huber least_squares (same loss, f_scale = delta) and Nelder-Mead on the MAE."""
import numpy as np
import pytest
from scipy.optimize import least_squares, minimize

import gradfit

LN2 = 0.6931471805599453
VOIGT = f"A*(eta/(1+((x-m)/g)^2)+(1-eta)*exp(-{LN2}*((x-m)/g)^2))+C"


def voigt(x, A, eta, m, g, C):
    return A * (eta / (1 + ((x - m) / g) ** 2) + (1 - eta) * np.exp(-LN2 * ((x - m) / g) ** 2)) + C


def huber(r, delta=1.0):
    return np.mean(np.where(abs(r) <= delta, r * r / 2, delta * (abs(r) - delta / 2)))


def test_a_gaussian_peak_fitted_as_a_pseudo_voigt_by_huber_is_certified_in_both():
    rng = np.random.default_rng(5)
    x = np.linspace(-5, 5, 40)
    t = [rng.uniform(1, 3), 0.0, rng.uniform(-1, 1), rng.uniform(.4, 1.5), rng.uniform(-.3, .3)]
    y = voigt(x, *t) + 10 ** rng.uniform(-4, -2) * rng.standard_normal(40)    # eta = 0
    p0 = dict(A=t[0] * 1.05, eta=0.1, m=t[2] + .05, g=t[3] * 1.1, C=t[4])
    kw = dict(loss="huber", delta=1.0, bounds={"eta": (0.0, 1.0)})
    r = gradfit.fit(VOIGT, x, y, p0=p0, **kw)
    m = gradfit.fit_many(VOIGT, x, y[None], p0=p0, **kw)
    assert r.converged and m.converged[0], (r.message, m.message[0])
    assert "moved inside" not in m.message[0]          # the finish's own start is not told
    q = np.array([m.params[k][0] for k in ("A", "eta", "m", "g", "C")])
    assert q[1] == 0.0
    inf = np.inf
    ref = least_squares(lambda p: voigt(x, *p) - y, q, loss="huber", f_scale=1.0,
                        bounds=([-inf, 0, -inf, -inf, -inf], [inf, 1, inf, inf, inf]),
                        xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert float(m.loss[0]) <= huber(voigt(x, *ref.x) - y) * (1 + 1e-9)
    assert float(m.loss[0]) == pytest.approx(r.loss, rel=1e-9)


@pytest.mark.parametrize("seed", [1, 5])
def test_a_biexponential_with_its_slow_rate_on_its_bound_by_mae_agrees(seed):
    x = np.linspace(0, 8, 100)
    f = lambda x, a, b, c, d: a * np.exp(-b * x) + c * np.exp(-d * x)      # noqa: E731
    rng = np.random.default_rng(seed)
    t = [rng.uniform(1, 2), 1.0, rng.uniform(.5, 1.5), rng.uniform(2, 8)]   # b on its bound
    yt = f(x, *t)
    y = yt + 1e-4 * np.std(yt) * rng.standard_normal(100)
    p0 = dict(a=t[0] * 0.96, b=0.9, c=t[2] * 1.1, d=t[3] * 0.98)
    kw = dict(loss="mae", bounds={"b": (0.0, 1.0), "d": (1.0, 100.0)})
    r = gradfit.fit("a*exp(-b*x)+c*exp(-d*x)", x, y, p0=p0, **kw)
    m = gradfit.fit_many("a*exp(-b*x)+c*exp(-d*x)", x, y[None], p0=p0, **kw)
    assert bool(m.converged[0]) == r.converged, (r.message, m.message[0])
    if r.converged:
        q = np.array([m.params[k][0] for k in "abcd"])
        nm = minimize(lambda p: np.mean(np.abs(f(x, *p) - y)), q, method="Nelder-Mead",
                      bounds=[(None, None), (0, 1), (None, None), (1, 100)],
                      options=dict(xatol=1e-13, fatol=1e-17, maxiter=20000))
        assert float(m.loss[0]) <= nm.fun * (1 + 1e-9)
