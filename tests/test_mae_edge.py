"""mae fits whose minimum is not a vertex, and the slow linear convergence of IRLS near a
minimum: the oracles are Nelder-Mead polishing from the answer (it finds nothing lower), the
constrained minimum through the curve's points solved by scipy's SLSQP, and the
first-order certificate."""
import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import gradfit
from gradfit.irls_check import mae_certificate
from gradfit.mae_edge import edge_minimum

GAUSS = "A*exp(-(x-mu)^2/(2*s^2))+C"
X = np.linspace(-5, 5, 25)
# a noisy Gaussian whose MAE is least with the curve through 3 of the 25 points (not 4):
# IRLS crawled for 1000 steps there and ended "max_steps", in fit and fit_many alike
EDGE_Y = np.array([
    0.10494193916704359, -0.002968526955079171, 0.06555563814565857, 0.053260939043790076,
    0.16846209391734263, 0.01746583219724243, 0.13611637614915795, 0.27356404377029875,
    0.5623912528325751, 0.7089175179519968, 1.0950119623709296, 1.294995610112772,
    1.3386069703299506, 1.2473955352873434, 0.9516942099721223, 0.7782577402087621,
    0.44157581771349874, 0.29037522471978444, 0.18100539189570758, 0.07606155023809695,
    0.0994761666520789, 0.028299782095713114, -0.04918782099191232, -0.026928868985935647,
    -0.03825440999215768])
EDGE_P0 = {"A": 1.387794791321863, "mu": 0.0, "s": 1.0, "C": -0.04918782099191232}
# one whose minimum is a vertex that IRLS approached at 0.97 a step (220 steps)
CRAWL_Y = np.array([
    0.3605720458909242, 0.38578516818277653, 0.4278424676246061, 0.4422086664845495,
    0.42016061268489396, 0.4455793386436789, 0.5215349545838212, 0.44195358767290505,
    0.41661970252070873, 0.43631426244298277, 0.41518464133684824, 0.861285253673145,
    1.5889627989517194, 2.4058204918721158, 2.4051086139319113, 1.63802983640619,
    0.8236493978734963, 0.5365160250775448, 0.5870771027917427, 0.45453015845017364,
    0.5332492030836345, 0.3909106638963801, 0.4386340472624395, 0.4823657690286932,
    0.49148547561882305])
CRAWL_P0 = {"A": 2.0452484459811915, "mu": 0.41666666666666696, "s": 1.0,
            "C": 0.3605720458909242}


def _gauss(p, x=X):
    A, mu, s, C = p
    return A * np.exp(-(x - mu) ** 2 / (2 * s ** 2)) + C


def _mae(p, y):
    return np.abs(_gauss(p) - y).mean()


def _nelder_mead(p, y):
    return minimize(_mae, p, args=(y,), method="Nelder-Mead",
                    options={"xatol": 1e-13, "fatol": 1e-17, "maxfev": 40000}).fun


def test_a_minimum_through_three_points_of_a_four_parameter_gaussian_is_found_and_certified():
    r = gradfit.fit(GAUSS, X, EDGE_Y, loss="mae", p0=EDGE_P0)
    p = np.array(list(r.params.values()))
    assert r.converged and r.reason == "ftol" and r.steps < 100
    res = np.abs(_gauss(p) - EDGE_Y)
    on = np.sort(res)
    assert on[2] < 1e-12 and on[3] > 1e-3        # three points on the curve, not four
    assert r.loss <= _nelder_mead(p, EDGE_Y) * (1 + 1e-12)
    # the oracle: the least MAE with the curve held through those three points (SLSQP),
    # the signs of the others free to change
    zero = np.argsort(res)[:3]
    slsqp = minimize(_mae, p * (1 + 1e-3), args=(EDGE_Y,), method="SLSQP",
                     constraints={"type": "eq", "fun": lambda q: _gauss(q)[zero] - EDGE_Y[zero]},
                     options={"ftol": 1e-15, "maxiter": 500})
    assert slsqp.success
    assert r.loss <= slsqp.fun * (1 + 1e-10)
    # the same point, to 1e-5 of the parameters' scale (mu is near 0, where a relative
    # tolerance of its own is no measure: SLSQP's mu moved 1.4e-6 with this machine's
    # arithmetic, its loss no lower than gradfit's)
    np.testing.assert_allclose(p, slsqp.x, rtol=1e-5, atol=1e-5 * np.abs(p).max())


def test_fit_many_finds_the_same_minimum_between_vertices():
    ys = np.stack([EDGE_Y, CRAWL_Y])
    p0 = {k: [EDGE_P0[k], CRAWL_P0[k]] for k in EDGE_P0}
    m = gradfit.fit_many(GAUSS, X, ys, loss="mae", p0=p0)
    assert m.converged.all() and list(m.reason) == ["ftol", "ftol"]
    for b, (y, start) in enumerate(((EDGE_Y, EDGE_P0), (CRAWL_Y, CRAWL_P0))):
        r = gradfit.fit(GAUSS, X, y, loss="mae", p0=start)
        assert float(m.loss[b]) == pytest.approx(r.loss, rel=1e-12)
        for k in r.params:
            assert float(m.params[k][b]) == pytest.approx(r.params[k], rel=1e-8, abs=1e-10)
        assert m.steps[b] < 100


def test_a_slow_approach_to_a_vertex_is_stretched_along_its_line():
    r = gradfit.fit(GAUSS, X, CRAWL_Y, loss="mae", p0=CRAWL_P0)
    p = np.array(list(r.params.values()))
    assert r.converged and r.steps < 60                    # 220 steps before
    assert np.sort(np.abs(_gauss(p) - CRAWL_Y))[3] < 1e-12  # a vertex: four points
    assert r.loss <= _nelder_mead(p, CRAWL_Y) * (1 + 1e-12)


def test_edge_minimum_without_kinks_is_newtons_minimum():
    # (t - 1)^2 + 1 + c t x_i above every point: no residual is zero at the minimum, where
    # sum_i r_i' = 6 (t - 1) + 3 c = 0
    x = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    y = torch.tensor([0.0, 0.25, 0.5], dtype=torch.float64)
    c = 0.3

    def residuals(t):
        return (t[0] - 1) ** 2 + 1 + c * t[0] * x - y
    theta, ok = edge_minimum(residuals, torch.tensor([2.0], dtype=torch.float64))
    assert ok and float(theta[0]) == pytest.approx(1 - c / 2, rel=1e-14)


def test_edge_minimum_refuses_a_stationary_point_that_is_not_a_minimum():
    # |t^2 - 1| + |t^2 - 4| = 5 - 2 t^2 near t = 0: stationary there, with no kink, and
    # first-order "optimal"; but a maximum (the second-order test refuses it)
    y = torch.tensor([1.0, 4.0], dtype=torch.float64)

    def residuals(t):
        return t[0] ** 2 - y
    start = torch.tensor([0.0], dtype=torch.float64)
    r = residuals(start)
    assert bool(mae_certificate(r[None], torch.zeros(1, 2, 1, dtype=torch.float64))[0][0])
    theta, ok = edge_minimum(residuals, start)
    assert not ok and float(theta[0]) == 0.0
