"""The exact minimum-MAE and Huber fits against linear programming and scipy's minimize."""
import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize

import gradfit
from gradfit import fit
from gradfit.errors import InputError


def l1_by_linprog(X, y):
    """min sum |X b - y| as a linear programme over (b, t)."""
    n, p = X.shape
    c = np.r_[np.zeros(p), np.ones(n)]
    A = np.block([[X, -np.eye(n)], [-X, -np.eye(n)]])
    b = np.r_[y, -y]
    res = linprog(c, A_ub=A, b_ub=b, bounds=[(None, None)] * p + [(0, None)] * n, method="highs")
    return res.x[:p], res.fun / n


def test_lessons_minimum_mae_quadratic(lesson):
    r = fit("a*x^2 + b*x + c", lesson.x, lesson.y, loss="mae")
    assert r.optimizer == "auto (irls)" and r.converged
    assert [round(v, 3) for v in r.params.values()] == [2.614, 1.337, 0.564]
    assert round(r.loss, 4) == 0.9859
    X = np.vander(lesson.x, 3)
    beta, best = l1_by_linprog(X, lesson.y)
    assert r.loss == pytest.approx(best, rel=1e-9)


def test_lessons_least_squares_quadratic_by_default(lesson):
    r = fit("a*x^2 + b*x + c", lesson.x, lesson.y, loss="mse")
    assert r.optimizer == "auto (lm)"
    assert [round(v, 3) for v in r.params.values()] == [2.760, 1.140, 0.574]
    mae = np.mean(np.abs(r.predict(lesson.x) - lesson.y))
    assert round(mae, 4) == 1.0095


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("model,design", [
    ("poly:3", lambda x: np.vander(x, 4, increasing=True)),
    ("a*sin(x) + b*cos(x) + c*x", lambda x: np.c_[np.sin(x), np.cos(x), x]),
])
def test_linear_models_reach_the_linear_programming_optimum(seed, model, design):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-3, 3, 60))
    y = np.sin(x) * 2 + 0.3 * x + rng.standard_t(2, 60)
    r = fit(model, x, y, loss="mae")
    _, best = l1_by_linprog(design(x), y)
    assert r.loss == pytest.approx(best, rel=1e-6) and r.loss >= best * (1 - 1e-9)
    assert r.converged


def test_weighted_mae_matches_linear_programming():
    rng = np.random.default_rng(9)
    x = np.linspace(0, 5, 40)
    sigma = rng.uniform(0.5, 2, 40)
    y = 1 + 2 * x + rng.laplace(0, sigma)
    r = fit("m*x + k", x, y, sigma=sigma, loss="mae")
    X = np.c_[x, np.ones_like(x)] / sigma[:, None]
    _, best = l1_by_linprog(X, y / sigma)
    assert r.loss == pytest.approx(best, rel=1e-6)


def test_nonlinear_mae_beats_gradient_descent_and_scipy_minimize(lesson):
    r = fit("A*exp(k*x) + C", lesson.x, lesson.y, loss="mae", p0={"A": 1, "k": 1, "C": 0})

    def mae(p):
        return np.mean(np.abs(p[0] * np.exp(p[1] * lesson.x) + p[2] - lesson.y))
    ref = minimize(mae, list(r.start.values()), method="Nelder-Mead",
                   options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 40000, "maxfev": 40000})
    gd = fit("A*exp(k*x) + C", lesson.x, lesson.y, loss="mae", optimizer="adam", steps=3000,
             p0={"A": 1, "k": 1, "C": 0})
    assert r.loss <= ref.fun * (1 + 1e-9) and r.loss < gd.loss


@pytest.mark.parametrize("delta", [0.5, 1.0, 3.0])
def test_huber_reaches_its_optimum(lesson, delta):
    r = fit("a*x^2 + b*x + c", lesson.x, lesson.y, loss="huber", delta=delta)

    def huber(p):
        res = np.polyval(p, lesson.x) - lesson.y
        a = np.abs(res)
        return np.mean(np.where(a <= delta, 0.5 * res**2, delta * (a - 0.5 * delta)))
    ref = minimize(huber, [1.0, 1.0, 1.0], method="BFGS", options={"gtol": 1e-12})
    assert r.loss == pytest.approx(ref.fun, rel=1e-10)
    np.testing.assert_allclose(list(r.params.values()), ref.x, rtol=1e-5)


def test_irls_refuses_squared_losses(lesson):
    with pytest.raises(InputError, match="irls"):
        fit("a*x", lesson.x, lesson.y, loss="mse", optimizer="irls")


def _decay_with_a_kink_line():
    rng = np.random.default_rng(5)
    x = np.linspace(0.1, 3, 30)
    return x, 2 * np.exp(-1.5 * x) + 0.3 + 0.02 * rng.standard_normal(30)


def test_a_certified_vertex_elsewhere_certifies_nothing_here():
    """IRLS walked the MAE's edges from a refused vertex to a certified one whose MAE was
    higher than at IRLS's own point, stayed put, and called its own point "the exact
    minimum (certified)": 2.1e-4 above the minimum, falling along the line to it. The
    oracle: Nelder-Mead from that minimum finds nothing lower; fit and fit_many agree."""
    x, y = _decay_with_a_kink_line()
    r = gradfit.fit("A*exp(-k*x)", x, y, loss="mae")
    many = gradfit.fit_many("A*exp(-k*x)", x, y[None], loss="mae")
    mae = lambda p: np.mean(np.abs(p[0] * np.exp(-p[1] * x) - y))       # noqa: E731
    ref = minimize(mae, [r.params["A"], r.params["k"]], method="Nelder-Mead",
                             options=dict(xatol=1e-13, fatol=1e-16, maxiter=20000))
    assert r.converged and many.converged[0]
    assert r.loss <= ref.fun * (1 + 1e-12)
    assert r.loss == pytest.approx(mae([r.params["A"], r.params["k"]]), rel=1e-14)
    assert many.loss[0] == pytest.approx(r.loss, rel=1e-12)
    # and the certificate holds where the claim is made
    from gradfit.irls_check import mae_certificate
    A, k = r.params["A"], r.params["k"]
    J = torch.tensor(np.stack([np.exp(-k * x), -A * x * np.exp(-k * x)], -1))[None]
    ok, _ = mae_certificate(torch.tensor(A * np.exp(-k * x) - y)[None], J)
    assert bool(ok[0])
