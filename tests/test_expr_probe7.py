"""Regressions of the seventh probe of expressions: autograd through a cusp (``sqrt``,
``u^c`` with c < 1, ``u^v``) whose argument is 0 at a data point, a fitted exponent at a zero
base, and the Jacobian the report names. Oracles: central and one-sided differences, scipy's
curve_fit, least_squares (huber) and linprog (least absolute deviations), test-only
references."""
import numpy as np
import pytest
import torch

import gradfit
from gradfit.expr import parse_expression
from gradfit.expr_jacobian import ExpressionJacobian, infinite_slope, supports
from gradfit.models import make_model

scipy_optimize = pytest.importorskip("scipy.optimize")
F64 = torch.float64


def central(f, theta, h=1e-6):
    """``(n, P)`` central differences of ``f(theta)`` ``(n,)``."""
    cols = []
    for j in range(len(theta)):
        e = np.zeros(len(theta))
        e[j] = h
        cols.append((f(theta + e) - f(theta - e)) / (2 * h))
    return np.stack(cols, -1)


def autograd_jacobian(text, x, theta):
    m = make_model(text)
    xt = torch.as_tensor(x, dtype=F64)
    return torch.autograd.functional.jacobian(lambda t: m(xt, t),
                                              torch.tensor(theta, dtype=F64)).numpy()


def forward_jacobian(text, x, theta):
    m = make_model(text)
    _, jac = ExpressionJacobian(m.expression)({"x": torch.as_tensor(x, dtype=F64)},
                                              torch.tensor([theta], dtype=F64))
    return jac[0].numpy()


def values(text, x):
    m = make_model(text)
    xt = torch.as_tensor(x, dtype=F64)
    return lambda th: m(xt, torch.as_tensor(th, dtype=F64)).numpy()


# 1. autograd through a cusp whose argument does not move ------------------------------------

RESTING = [  # text, theta, x: u = 0 at x = 0 for every parameter value
    ("sqrt(a^2*x) + b", [2.0, 1.0], [0.0, 0.5, 2.0]),
    ("a*sqrt(x*(x+c))", [1.5, 2.0], [0.0, 0.5, 3.0]),
    ("(a*x)^0.5 + b", [2.0, 1.0], [0.0, 0.5, 2.0]),
    ("a*(x*(x+c))^(1/3)", [1.5, 2.0], [0.0, 0.5, 3.0]),
    ("(a*x)^b", [2.0, 0.5], [0.0, 0.5, 2.0]),
    ("(x/c)^h", [2.0, 0.7], [0.0, 0.5, 2.0]),
    ("sqrt(sqrt(a*x)) + b", [2.0, 1.0], [0.0, 0.5, 2.0]),
    ("A*exp(-sqrt(k*x))", [2.0, 3.0], [0.0, 0.5, 2.0]),
    ("sqrt(max(a*x, 0)) + b", [2.0, 1.0], [0.0, 0.5, 2.0]),     # no forward rule: by jvp
    ("min(a*x, b*x + 1)^0.5", [2.0, 1.0], [0.0, 0.5, 2.0]),
]


@pytest.mark.parametrize("text,theta,x", RESTING, ids=[c[0] for c in RESTING])
def test_autograd_through_a_resting_cusp_has_the_limit(text, theta, x):
    """Autograd had given NaN (its chain rule's inf * 0) where the forward Jacobian and
    central differences give the finite limit."""
    x, th = np.array(x), np.array(theta)
    want = central(values(text, x), th)
    got = autograd_jacobian(text, x, theta)
    assert np.isfinite(got).all(), got
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    if supports(make_model(text).expression):
        np.testing.assert_allclose(forward_jacobian(text, x, theta), got, rtol=1e-12, atol=0)


def test_forward_mode_vmap_and_second_derivatives_through_a_resting_cusp():
    m = make_model("sqrt(a^2*x) + b")
    x = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
    th = torch.tensor([2.0, 1.0], dtype=F64)
    _, d = torch.func.jvp(lambda t: m(x, t), (th,), (torch.tensor([1.0, 0.0], dtype=F64),))
    np.testing.assert_allclose(d.numpy(), np.sqrt(x.numpy()), rtol=1e-12)    # d/da |a| sqrt(x)
    batch = torch.stack([th, th + 1])
    jac = torch.vmap(torch.func.jacrev(lambda t: m(x, t)))(batch)
    np.testing.assert_allclose(jac[1, :, 0].numpy(), np.sqrt(x.numpy()), rtol=1e-12)
    h = torch.autograd.functional.hessian(lambda t: m(x, t).square().sum(), th)
    # sum (|a| sqrt(x) + b)^2: d2/da2 = 2 sum x, d2/dadb = 2 sum sqrt(x), d2/db2 = 2 n
    want = [[2 * x.sum(), 2 * x.sqrt().sum()], [2 * x.sqrt().sum(), 6.0]]
    np.testing.assert_allclose(h.numpy(), np.array(want, dtype=float), rtol=1e-12)


def data(n=41, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 4, n)
    y = 2 * np.sqrt(x) + 1 + 0.05 * rng.standard_normal(n)
    y[::10] += 0.8                          # outliers, so that huber and mae differ from mse
    return x, y


def lad_sqrt(x, y):
    """The least-absolute-deviations line in sqrt(x), by linprog: min sum(u + v),
    a sqrt(x) + b + u - v = y."""
    n = len(x)
    a_eq = np.hstack([np.sqrt(x)[:, None], np.ones((n, 1)), np.eye(n), -np.eye(n)])
    res = scipy_optimize.linprog(np.r_[0, 0, np.ones(2 * n)], A_eq=a_eq, b_eq=y,
                                 bounds=[(None, None)] * 2 + [(0, None)] * (2 * n))
    return res.x[:2]


@pytest.mark.parametrize("kw", [{"loss": "huber"}, {"loss": "mae"},
                                {"optimizer": "lbfgs", "steps": 200},
                                {"optimizer": "adam", "steps": 3000, "lr": 0.02},
                                {"optimizer": "gd", "steps": 3000, "lr": 0.05},
                                {"optimizer": "rmsprop", "steps": 3000, "lr": 0.005},
                                {"optimizer": "momentum", "steps": 3000, "lr": 0.02}])
def test_sqrt_of_a_parameter_times_x_through_zero_fits_as_scipy_does(kw):
    """``sqrt(a^2*x) + b`` with x = 0 among the data: every such fit had stopped at step 0
    as diverged (the gradient NaN). It is ``|a| sqrt(x) + b``, a line in sqrt(x)."""
    x, y = data()
    r = gradfit.fit("sqrt(a^2*x) + b", x, y, p0={"a": 1.0, "b": 0.5}, **kw)
    assert r.reason != "diverged", r.message
    if kw.get("loss") == "mae":
        want = lad_sqrt(x, y)
    elif kw.get("loss") == "huber":
        want = scipy_optimize.least_squares(lambda p: p[0] * np.sqrt(x) + p[1] - y, [1, 0.5],
                                            loss="huber", f_scale=1.0, xtol=1e-15,
                                            ftol=1e-15, gtol=1e-15).x
    else:
        want = scipy_optimize.curve_fit(lambda x, a, b: a * np.sqrt(x) + b, x, y)[0]
    tol = 1e-6 if "loss" in kw or kw["optimizer"] == "lbfgs" else 2e-3
    np.testing.assert_allclose([abs(r.params["a"]), r.params["b"]], want, rtol=tol)


# 2. a fitted exponent at a zero base ----------------------------------------------------------

def test_a_moving_base_under_a_fitted_exponent_has_an_infinite_slope():
    """``(x - c)^b`` at x = c with 0 < b < 1: the derivative in c is -b (x - c)^(b - 1), which
    grows without bound; the forward Jacobian had taken it as 0 (a kink), so LM went on."""
    x, th = np.array([0.0, 1.0, 2.0]), [0.0, 0.5]
    jac = forward_jacobian("(x - c)^b", x, th)
    f = values("(x - c)^b", x)
    one_sided = [(f(np.array([-h, 0.5]))[0] - f(np.array(th))[0]) / h for h in (1e-4, 1e-8)]
    assert one_sided[1] > 10 * one_sided[0] > 0 and jac[0, 0] == -np.inf
    assert np.isfinite(jac[1:]).all()
    assert autograd_jacobian("(x - c)^b", x, th)[0, 0] == -np.inf
    said = infinite_slope(parse_expression("(x - c)^b"), {"x": torch.as_tensor(x, dtype=F64)},
                          torch.tensor(th, dtype=F64))
    assert said.startswith("(x - c)^b has an infinite slope") and "point 1 (x = 0)" in said
    xs = np.linspace(0, 5, 40)
    r = gradfit.fit("a*(x - c)^b", xs, 1.5 * np.sqrt(xs + 0.5), p0={"a": 1, "c": 0, "b": 0.5})
    assert not r.converged and "(x - c)^b has an infinite slope" in r.message


@pytest.mark.parametrize("b", [0.3, 0.5, 1.0, 1.5])
def test_a_fitted_exponent_at_a_zero_base_has_slope_zero(b):
    """``x^b`` at x = 0 is 0 for every b > 0: its derivative in b is 0 (one-sided
    differences are exactly 0), by both rules."""
    x = np.array([0.0, 0.5, 2.0])
    f = values("a*x^b", x)
    for h in (1e-3, -1e-3):
        assert f(np.array([1.0, b + h]))[0] - f(np.array([1.0, b]))[0] == 0.0
    for jac in (forward_jacobian("a*x^b", x, [1.0, b]), autograd_jacobian("a*x^b", x, [1.0, b])):
        assert jac[0, 1] == 0.0
        np.testing.assert_allclose(jac[1:], central(f, np.array([1.0, b]))[1:], rtol=1e-6)


def test_a_resting_cusp_is_not_named_as_an_infinite_slope():
    """Its derivative is the finite limit, by both rules: nothing to name."""
    e = parse_expression("a*sqrt(x*(x+c))")
    x = {"x": torch.tensor([0.0, 1.0], dtype=F64)}
    assert infinite_slope(e, x, torch.tensor([1.0, 2.0], dtype=F64)) is None
    said = infinite_slope(parse_expression("a*sqrt(x*(x+c)) + sqrt(x - d)"), x,
                          torch.tensor([1.0, 2.0, 0.0], dtype=F64))
    assert said.startswith("sqrt(x - d)") and "derivative in d" in said


# 3. the Jacobian the report names -------------------------------------------------------------

def test_fit_many_reports_the_forward_rules():
    x = np.linspace(0, 3, 30)
    many = gradfit.fit_many("a*exp(-k*x) + c", x, np.stack([2 * np.exp(-x) + 1,
                                                             3 * np.exp(-2 * x) + 1]))
    text = many[0].report()
    assert "Jacobian by the expression's derivative rules (forward mode)" in text
