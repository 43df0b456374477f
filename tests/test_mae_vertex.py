"""The MAE's exact minimum on many points: edge descent from a vertex (mae_vertex) and IRLS
with it, against scipy's linear programme (HiGHS) for models linear in their parameters and
the first-order optimality test plus Nelder-Mead for a nonlinear one."""
import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize

import gradfit
from gradfit.mae_vertex import descend


def lad_by_linprog(A, y):
    """min sum |A b - y| by its dual linear programme, max y^T d with A^T d = 0 and
    |d_i| <= 1 (P equality constraints: fast on many points); b from its multipliers."""
    res = linprog(-y, A_eq=A.T, b_eq=np.zeros(A.shape[1]), bounds=(-1, 1), method="highs")
    assert res.status == 0
    f = -res.fun
    for b in (res.eqlin.marginals, -res.eqlin.marginals):
        if np.abs(A @ b - y).sum() == pytest.approx(f, rel=1e-9):
            return b, f
    raise AssertionError("no primal solution from the dual's multipliers")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_descent_from_a_far_vertex_reaches_the_linear_programme(seed):
    rng = np.random.default_rng(seed)
    n = 2000
    x = rng.uniform(-2, 2, n)
    A = np.stack([x ** 2, x, np.ones(n)], 1)
    y = A @ [1.5, -0.7, 0.3] + rng.standard_t(2, n)
    b_lp, f_lp = lad_by_linprog(A, y)
    At, yt = torch.tensor(A), torch.tensor(y)
    theta, certified = descend(lambda b: At @ b - yt, torch.tensor([5.0, 5.0, 5.0],
                                                                 dtype=torch.float64),
                               steps=500)
    assert certified
    assert float((At @ theta - yt).abs().sum()) == pytest.approx(f_lp, rel=1e-10)
    np.testing.assert_allclose(theta.numpy(), b_lp, rtol=1e-7, atol=1e-9)


def test_mae_on_forty_thousand_points_of_a_linear_model_is_the_lp_optimum():
    rng = np.random.default_rng(4)
    n = 40_000
    x = rng.uniform(-2, 2, n)
    y = 1.5 * x ** 2 - 0.7 * x + 0.3 + 0.2 * rng.standard_t(2, n)
    b_lp, f_lp = lad_by_linprog(np.stack([x ** 2, x, np.ones(n)], 1), y)
    r = gradfit.fit("a*x^2 + b*x + c", x, y, loss="mae")
    assert r.converged, r.message
    assert r.loss * n == pytest.approx(f_lp, rel=1e-10)
    np.testing.assert_allclose(list(r.params.values()), b_lp, rtol=1e-7, atol=1e-9)


def test_mae_on_forty_thousand_points_of_a_gaussian_is_certified_and_not_improvable():
    # IRLS alone crawled here (40,000 points: 118 s, 165 steps; 100,000: 203 s, failed)
    rng = np.random.default_rng(2)
    n = 40_000
    x = rng.uniform(-5, 5, n)
    y = 2.0 * np.exp(-(x - 0.5) ** 2 / 1.28) + 0.3 + 0.1 * rng.standard_normal(n)
    r = gradfit.fit("A*exp(-(x-mu)^2/(2*s^2))+C", x, y, loss="mae",
                    p0={"A": 1.5, "mu": 0.2, "s": 1.0, "C": 0.0})
    assert r.converged and r.reason == "ftol", r.message
    A, mu, s, C = r.params.values()

    def mae(p):
        return np.abs(p[0] * np.exp(-(x - p[1]) ** 2 / (2 * p[2] ** 2)) + p[3] - y).mean()
    # first order: P points on the curve, zero in the subgradient (|l| <= 1)
    e = np.exp(-(x - mu) ** 2 / (2 * s * s))
    res = A * e + C - y
    jac = np.stack([e, A * e * (x - mu) / s ** 2, A * e * (x - mu) ** 2 / s ** 3,
                    np.ones(n)], 1)
    order = np.argsort(np.abs(res))
    on, off = order[:4], order[4:]
    assert np.abs(res[on]).max() < 1e-9 * np.abs(res).max()
    lam = np.linalg.solve(jac[on].T, -jac[off].T @ np.sign(res[off]))
    assert np.abs(lam).max() <= 1 + 1e-9
    # and Nelder-Mead from the answer finds nothing lower
    nm = minimize(mae, [A, mu, s, C], method="Nelder-Mead",
                  options={"xatol": 1e-12, "fatol": 1e-15, "maxfev": 3000})
    assert nm.fun >= r.loss * (1 - 1e-12)
    assert r.loss == pytest.approx(mae([A, mu, s, C]), rel=1e-12)


def test_an_mae_stop_partway_along_an_edge_goes_on_to_the_vertex_in_fit_and_fit_many():
    # four points nearly on a line fitted by a*exp(b*x)+c (a ~ -c ~ 1700): the stop where
    # the loss stopped falling lay 1.3e-4 above the minimum in fit_many, and was called
    # the exact minimum; the edge walk from there reaches it (scipy's polish: rounding)
    x = np.arange(4.0)
    y = np.array([1.3000049919077936, 1.9999224133639388, 2.699919573058225, 3.400319845491752])
    p0 = {"a": 1.2775363740230425, "b": 1.6331086716128338, "c": 0.0}
    r = gradfit.fit("a*exp(b*x)+c", x, y, loss="mae", p0=p0, steps=100)
    m = gradfit.fit_many("a*exp(b*x)+c", x, y[None], loss="mae",
                         p0={k: [v] for k, v in p0.items()}, steps=100)

    def mae(p):
        return np.abs(p[0] * np.exp(p[1] * x) + p[2] - y).mean()
    for loss, params in ((r.loss, list(r.params.values())),
                         (float(m.loss[0]), [float(v[0]) for v in m.params.values()])):
        nm = minimize(mae, params, method="Nelder-Mead",
                      options={"xatol": 1e-14, "fatol": 1e-18, "maxfev": 20000})
        assert loss <= nm.fun * (1 + 1e-8)
    assert r.converged and m.converged[0]
