"""Forward-mode Jacobians of expressions against autograd and central differences."""
import pytest
import torch

from gradfit.expr_jacobian import ExpressionJacobian, supports
from gradfit.models import make_model

EXPRESSIONS = [
    "A*exp(-(x-mu)^2/(2*s^2))+C", "a*sin(w*x + p) + cos(b)*x", "log(a + x^2) * sqrt(b + x)",
    "tanh(a*x) + sigmoid(b - x) + atan(c*x) + arctan(c)", "relu(a*x - b) + abs(c - x)",
    "a^x + x^b + (a*b)^2 - 3/(c + x) + tan(c*x/5)", "-a*x - +b + 2*pi*c/e", "a/b/c*x",
    # shared derivatives (one node for two parameters), parts of parameters alone, numbers
    "a*x + b*x + c", "2*a*x + b*x^2*a", "exp(a)*x + a + log(2)*b", "x^a * (1/b) - x/(b*a)",
]


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_jacobian_matches_autograd_and_differences(text):
    m = make_model(text)
    assert supports(m.expression)
    x = torch.linspace(0.1, 2.0, 7, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    theta = 0.5 + torch.rand(5, m.n_params, generator=gen, dtype=torch.float64)
    f, jac = ExpressionJacobian(m.expression)({"x": x}, theta)
    torch.testing.assert_close(f, m(x, theta), rtol=1e-14, atol=1e-14)
    auto = torch.func.vmap(torch.func.jacrev(lambda p: m(x, p)))(theta)
    torch.testing.assert_close(jac, auto, rtol=1e-12, atol=1e-12)
    h = 1e-6
    for j in range(m.n_params):
        e = torch.zeros(m.n_params, dtype=torch.float64)
        e[j] = h
        fd = (m(x, theta + e) - m(x, theta - e)) / (2 * h)
        torch.testing.assert_close(jac[..., j], fd, rtol=1e-6, atol=1e-7)


def test_block_form_and_unsupported():
    m = make_model("a*x + b")
    x = torch.arange(3.0, dtype=torch.float64)
    y = torch.ones(2, 3, dtype=torch.float64)
    block = ExpressionJacobian(m.expression)({"x": x}, torch.ones(2, 2, dtype=torch.float64), y)
    assert block.shape == (2, 3, 3)
    torch.testing.assert_close(block[0], torch.stack([x, torch.ones(3, dtype=torch.float64), x]))
    assert not supports(make_model("max(a*x, b)").expression)


def _autograd(m, x, theta):
    """``J`` by autograd, one problem at a time (``x`` shared ``(n,)`` or ``(k, n)``)."""
    rows = [torch.func.jacrev(lambda p, xx=(x if x.ndim == 1 else x[i]): m(xx, p))(theta[i])
            for i in range(theta.shape[0])]
    return torch.stack(rows)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_per_problem_inputs_and_single_precision(dtype):
    """Inputs ``(k, n)`` (one row per problem) and float32 give autograd's Jacobian, in the
    parameters' dtype, the block form included."""
    m = make_model("A*exp(-(x-mu)^2/(2*s^2))+C")
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 9, generator=gen, dtype=dtype) * 4 - 2
    theta = (0.5 + torch.rand(3, 4, generator=gen, dtype=torch.float64)).to(dtype)
    f, jac = ExpressionJacobian(m.expression)({"x": x}, theta)
    assert jac.dtype == dtype and jac.shape == (3, 9, 4)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    want = torch.stack([m(x[i], theta[i:i + 1])[0] for i in range(3)])
    torch.testing.assert_close(f, want, rtol=tol, atol=tol)
    torch.testing.assert_close(jac, _autograd(m, x, theta), rtol=tol, atol=tol)
    y = torch.zeros(3, 9, dtype=dtype)
    block = ExpressionJacobian(m.expression)({"x": x}, theta, y)
    torch.testing.assert_close(block[:, :4], jac.transpose(-1, -2))
    torch.testing.assert_close(block[:, 4], f)


def test_a_long_chain_needs_no_recursion():
    """A chain of 990 sums, as long as the checker accepts (it counts a chain once), is read
    without recursion (a recursive reading ran out of Python's stack here)."""
    m = make_model("a*exp(b*x)" + "+x" * 990)
    x = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    theta = torch.tensor([[2.0, 0.5]], dtype=torch.float64)
    f, jac = ExpressionJacobian(m.expression)({"x": x}, theta)
    want = torch.stack([torch.exp(0.5 * x), 2.0 * x * torch.exp(0.5 * x)], -1)
    torch.testing.assert_close(jac[0], want)
    torch.testing.assert_close(f[0], 2.0 * torch.exp(0.5 * x) + 990 * x)


def test_a_power_with_a_fitted_exponent_is_differentiable_at_a_zero_base():
    """Zero-dose controls of a Hill curve, or x = 0 under a*x^b: the model is finite there
    (0^h = 0) and so is its Jacobian; the forward rules gave 0 * log 0 and 0 * (1/0), NaN,
    and the fit stopped as 'diverged at step 0'. Oracle: scipy's curve_fit."""
    import numpy as np
    from scipy.optimize import curve_fit
    import gradfit
    x = np.r_[0.0, 0.0, 0.0, np.logspace(-9, -5, 12)]
    rng = np.random.default_rng(0)

    def hill(x, bottom, top, EC50, h):
        return bottom + (top - bottom) / (1 + (x / EC50) ** h)
    for h_true in (1.2, 0.7):
        y = hill(x, 5, 100, 1e-7, h_true) + 2 * rng.normal(size=x.size)
        p0 = dict(bottom=0.0, top=100.0, EC50=1e-7, h=1.0)
        want, _ = curve_fit(hill, x, y, p0=list(p0.values()), xtol=1e-15, ftol=1e-15,
                            maxfev=100000)
        text = "bottom+(top-bottom)/(1+(x/EC50)^h)"
        r = gradfit.fit(text, x, y, p0=p0)
        assert r.converged, r.message
        np.testing.assert_allclose(list(r.params.values()), want, rtol=1e-6)
        m = gradfit.fit_many(text, x, y[None], p0=p0)
        assert m.converged[0]
        np.testing.assert_allclose([m.params[k][0] for k in p0], want, rtol=1e-6)
    x = np.linspace(0, 10, 20)
    r = gradfit.fit("a*x^b", x, 2 * x ** 1.5)
    assert r.converged and r.params["b"] == pytest.approx(1.5, rel=1e-10)
