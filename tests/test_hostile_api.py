"""Hostile input to ``gradfit.fit`` and answers that must not be called converged.

Oracles: scipy (``least_squares(loss="huber")``, ``minimize``) for the robust losses;
closed forms for the rest.
"""
import numpy as np
import pytest
import torch
from scipy.optimize import least_squares, minimize

import gradfit
from gradfit.errors import InputError
from gradfit.irls_check import GTOL, huber_certificate, mae_certificate

SINE = "a*sin(w*x+p)"
SINE_P0 = {"a": 1.0, "w": 1.5, "p": 0.0}


def sine_with_outliers(seed):
    """A sine with every 7th point an outlier (seed 3 leaves IRLS short of the minimum)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 4, 30)
    rng.standard_normal(30), rng.integers(0, 30, 4), rng.normal(0, 2, 4)
    y = np.sin(2 * x) + 0.1 * rng.standard_normal(30)
    y[::7] += 3
    return x, y


def sine(p, x):
    return p[0] * np.sin(p[1] * x + p[2])


def best_mae(x, y, start):
    """scipy's Nelder-Mead from gradfit's end point: the MAE cannot be lower than this."""
    res = minimize(lambda p: np.mean(np.abs(sine(p, x) - y)), start, method="Nelder-Mead",
                   options=dict(xatol=1e-12, fatol=1e-15, maxiter=20000))
    return res.fun


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mae_by_irls_is_converged_only_where_nothing_is_lower(seed):
    x, y = sine_with_outliers(seed)
    r = gradfit.fit(SINE, x, y, loss="mae", p0=SINE_P0)
    ref = best_mae(x, y, list(r.params.values()))
    if r.converged:
        assert r.loss <= ref * (1 + 1e-9)
    else:
        assert r.reason == "failed" and "cannot certify" in r.message
        assert "subgradient" in r.message


def test_an_uncertified_mae_stop_is_failed_in_fit_and_fit_many():
    x, y = sine_with_outliers(3)
    r = gradfit.fit(SINE, x, y, loss="mae", p0=SINE_P0)
    ref = best_mae(x, y, list(r.params.values()))
    assert r.loss > ref * (1 + 1e-6)             # the point IRLS stopped at is not the minimum
    assert not r.converged and r.reason == "failed" and "gap" in r.message
    many = gradfit.fit_many(SINE, x, y[None], loss="mae", p0=SINE_P0)
    assert not many.converged[0] and many.reason[0] == "failed"


@pytest.mark.parametrize("seed", [0, 3])
def test_huber_by_irls_matches_scipy_and_is_certified(seed):
    x, y = sine_with_outliers(seed)
    delta = 0.3
    r = gradfit.fit(SINE, x, y, loss="huber", delta=delta, p0=SINE_P0)
    ref = least_squares(lambda p: sine(p, x) - y, list(r.params.values()), loss="huber",
                        f_scale=delta, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert r.converged
    assert r.loss == pytest.approx(ref.cost / len(x), rel=1e-9)
    assert list(r.params.values()) == pytest.approx(ref.x, rel=1e-6, abs=1e-9)


def test_huber_certificate_refuses_a_point_beside_the_optimum():
    x, y = sine_with_outliers(0)
    delta = 0.3
    ref = least_squares(lambda p: sine(p, x) - y, [1.0, 2.0, 0.0], loss="huber",
                        f_scale=delta, xtol=1e-15, ftol=1e-15, gtol=1e-15)

    def certificate(p):
        t = torch.tensor(p, dtype=torch.float64)
        xt, yt = torch.tensor(x), torch.tensor(y)
        jac = torch.func.jacfwd(lambda q: q[0] * torch.sin(q[1] * xt + q[2]) - yt)(t)
        return huber_certificate(torch.tensor(sine(p, x) - y)[None], jac[None], delta)

    ok, cos = certificate(ref.x)
    assert bool(ok[0]) and float(cos[0]) <= GTOL
    ok, cos = certificate(ref.x * (1 + 1e-3))
    assert not bool(ok[0]) and float(cos[0]) > GTOL


def test_mae_certificate_agrees_with_linear_programming_on_a_line():
    """For a*x + b, the LAD line (scipy's minimize of the MAE) is certified; a tilt is not."""
    rng = np.random.default_rng(5)
    x = np.linspace(0, 1, 25)
    y = 2 * x + 1 + rng.standard_normal(25)
    r = gradfit.fit("a*x + b", x, y, loss="mae")
    assert r.converged
    jac = torch.tensor(np.stack([x, np.ones_like(x)], -1))[None]
    a, b = r.params["a"], r.params["b"]
    ok, _ = mae_certificate(torch.tensor(a * x + b - y)[None], jac)
    assert bool(ok[0])
    ok, gap = mae_certificate(torch.tensor((a + 0.05) * x + b - y)[None], jac)
    assert not bool(ok[0]) and float(gap[0]) > 1e-3


X_BIG = np.linspace(0, 1000, 50)
Y_GROWTH = 2 * np.exp(0.005 * X_BIG)


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
@pytest.mark.parametrize("b0", [1.0, 0.7])
def test_a_model_that_overflows_at_the_start_is_diverged_with_advice(loss, b0):
    """exp(1000) overflows: no LinAlgError, and advice on p0 and scale, not on lr."""
    r = gradfit.fit("a*exp(b*x)", X_BIG, Y_GROWTH, loss=loss, p0={"a": 1.0, "b": b0})
    assert r.reason == "diverged" and not r.converged
    assert "p0" in r.message and "rescale" in r.message and "learning rate" not in r.message
    assert r.params == {"a": 1.0, "b": b0}


@pytest.mark.parametrize("model, x", [("a*x + b", [1e308, -1e308, 3.0]),
                                      ("a*exp(x) + b", X_BIG[:3].tolist() + [1000.0])])
def test_a_linear_model_whose_design_overflows_is_diverged(model, x):
    r = gradfit.fit(model, x, [1.0, 2.0, 4.0, 5.0][:len(x)])
    assert r.reason == "diverged" and "rescale" in r.message
