"""IRLS's certificates at true minima (mae, huber), and off them.

Oracles: an exact profile of the MAE (the best amplitude for a given rate is a weighted
median) and Nelder-Mead; scipy's least_squares with loss='huber'."""
import numpy as np
import pytest
import torch

import gradfit
from gradfit.irls_check import certify, rounding_level
from gradfit.losses import LOSSES

so = pytest.importorskip("scipy.optimize")


def _gompertz_data(seed):
    x = np.linspace(0, 10, 100)
    rng = np.random.default_rng(seed)
    yt = 2.8 * np.exp(-3.4 * np.exp(-0.45 * x))
    y = yt + 1e-9 * np.std(yt) * rng.standard_normal(100)          # precise data ...
    at = rng.choice(100, 10, replace=False)                          # ... and gross outliers
    y[at] += 20 * np.std(yt) * rng.choice([-1, 1], 10)
    return x, y


def _gompertz_profile(x, y, b):
    """The least MAE over ``a`` at rate ``b``, exactly (a weighted median), and that ``a``."""
    g = np.exp(-b * np.exp(-0.45 * x))
    t = y / g
    o = np.argsort(t)
    cw = np.cumsum(g[o])
    a = t[o][np.searchsorted(cw, cw[-1] / 2)]
    return a, np.mean(np.abs(a * g - y))


def _certified(expr_residuals, theta, y, loss):
    t = torch.tensor(theta, dtype=torch.float64)
    r = expr_residuals(t)
    jac = torch.func.jacrev(expr_residuals)(t)
    level = rounding_level(r[None], jac[None], t[None], torch.as_tensor(y)[None])
    ok, measure = certify(loss, r[None], jac[None], level=level)
    return bool(ok[0]), float(measure[0])


def test_mae_vertex_kept_at_its_minimum_with_tiny_inlier_residuals():
    x, y = _gompertz_data(0)
    r = gradfit.fit("a*exp(-b*exp(-c*x))", x, y, loss="mae", fixed={"c": 0.45},
                    p0=dict(a=2.9, b=3.1))
    assert r.converged, r.message
    # the exact profile around the fit's rate: nothing lower
    b0 = r.params["b"]
    best = min(_gompertz_profile(x, y, b)[1] for b in np.linspace(b0 - 1e-7, b0 + 1e-7, 4001))
    assert r.loss <= best * (1 + 1e-14)
    nm = so.minimize(lambda p: np.mean(np.abs(p[0] * np.exp(-p[1] * np.exp(-0.45 * x)) - y)),
                     [r.params["a"], b0], method="Nelder-Mead",
                     options=dict(xatol=1e-14, fatol=1e-17))
    assert r.loss <= nm.fun * (1 + 1e-14)
    many = gradfit.fit_many("a*exp(-b*exp(-c*x))", x, np.stack([_gompertz_data(s)[1]
                                                                 for s in range(20)]),
                            loss="mae", fixed={"c": 0.45}, p0=dict(a=2.9, b=3.1))
    assert bool(np.all(many.converged)), [m for m, c in zip(many.message, many.converged)
                                          if not c]


def test_mae_certificate_still_refuses_a_point_just_off_the_minimum():
    x, y = _gompertz_data(0)
    X, Y = torch.tensor(x), torch.tensor(y)

    def res(t):
        return t[0] * torch.exp(-t[1] * torch.exp(-0.45 * X)) - Y
    r = gradfit.fit("a*exp(-b*exp(-c*x))", x, y, loss="mae", fixed={"c": 0.45},
                    p0=dict(a=2.9, b=3.1))
    a, b = r.params["a"], r.params["b"]
    assert _certified(res, [a, b], y, LOSSES["mae"])[0]
    # 1e-11 off in a (the inliers' residuals are 1e-9): the MAE is higher, and refused
    off = [a * (1 + 1e-11), b]
    assert np.mean(np.abs(res(torch.tensor(off)).numpy())) > r.loss
    ok, gap = _certified(res, off, y, LOSSES["mae"])
    assert not ok and gap > 1e-3


HILL_X = [0.01, 0.21544346900318834, 4.6415888336127775, 100.0]
HILL_Y = [9.441149357033079e-06, 0.011100925154615632, 2.3156541942531192,
          2.8096655073482015]
HILL_P0 = {"V": 2.8627932970776198, "K": 2.4883254665550227, "nh": 2.13325812320627}


def _hill(x, V, K, nh):
    return V * x ** nh / (K ** nh + x ** nh)


def test_huber_minimum_with_a_residual_at_its_rounding_is_certified():
    x, y = np.array(HILL_X), np.array(HILL_Y)
    kw = dict(loss="huber", delta=1.0, bounds={"nh": (0.5, 4.0)})
    r = gradfit.fit("V*x^nh/(K^nh+x^nh)", x, y, p0=HILL_P0, **kw)
    many = gradfit.fit_many("V*x^nh/(K^nh+x^nh)", x, y[None], p0=HILL_P0, **kw)
    assert r.converged, r.message
    assert bool(many.converged[0]), many.message[0]
    q = [r.params[k] for k in ("V", "K", "nh")]
    s = so.least_squares(lambda p: _hill(x, *p) - y, q, loss="huber", f_scale=1.0,
                         xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert r.loss <= s.cost / len(x) * (1 + 1e-6)
    # a point a little off (K 1e-7 higher: a loss 100 times higher) is refused
    X, Y = torch.tensor(x), torch.tensor(y)

    def res(t):
        return t[0] * X ** t[2] / (t[1] ** t[2] + X ** t[2]) - Y
    assert _certified(res, q, y, LOSSES["huber"])[0]
    off = [q[0], q[1] * (1 + 1e-7), q[2]]
    ok, cosine = _certified(res, off, y, LOSSES["huber"])
    assert not ok and cosine > 1e-3
