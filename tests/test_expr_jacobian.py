"""Forward-mode Jacobians of expressions against autograd and central differences."""
import pytest
import torch

from gradfit.expr_jacobian import ExpressionJacobian, supports
from gradfit.models import make_model

EXPRESSIONS = [
    "A*exp(-(x-mu)^2/(2*s^2))+C", "a*sin(w*x + p) + cos(b)*x", "log(a + x^2) * sqrt(b + x)",
    "tanh(a*x) + sigmoid(b - x) + atan(c*x) + arctan(c)", "relu(a*x - b) + abs(c - x)",
    "a^x + x^b + (a*b)^2 - 3/(c + x) + tan(c*x/5)", "-a*x - +b + 2*pi*c/e", "a/b/c*x",
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
