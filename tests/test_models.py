"""Every model passes one shared check; values against hand-written formulas."""
import functools

import numpy as np
import pytest
import torch

from gradfit.errors import InputError
from gradfit.models import (MODELS, CallableModel, ExpressionModel, MLPModel, Model,
                            PolynomialModel, ReLUSumModel, make_model, start_values)


def curve_fit_style(x, a, b=2.0, c=0.5):
    return a * torch.exp(-b * x) + c


def lesson_quad(a, b, c, x):
    return a * x**2 + b * x + c


CASES = [
    ("a*x^2 + b*x + c", ("x",)),
    ("A*exp(-k*t) + C", ("t",)),
    ("w1*x1 + w2*sin(x2) + c", ("x1", "x2")),
    (curve_fit_style, ("x",)),
    (lesson_quad, ("x",)),
    (functools.partial(lesson_quad), ("x",)),
    ("poly:3", ("x",)),
    ("relu:3", ("x",)),
    ("relu:2", ("x1", "x2")),
    ("mlp:4,3", ("x",)),
    ("mlp:5:tanh", ("x1", "x2")),
]


def check_model(model: Model, n: int = 7):
    """Named parameters, output shapes, batch consistency, gradients, repr."""
    names = model.param_names
    assert names and len(set(names)) == len(names) and all(isinstance(n_, str) and n_ for n_ in names)
    d = len(model.input_names)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, dtype=torch.float64, generator=gen) * 2 - 1
    if d > 1:
        x = torch.rand(n, d, dtype=torch.float64, generator=gen) * 2 - 1
    start = start_values(model, None, x, seed=0)
    assert list(start) == list(names)
    theta = torch.tensor(list(start.values()), dtype=torch.float64)
    out = model(x, theta)
    assert out.shape == (n,) and out.dtype == torch.float64
    batch = theta + 0.1 * torch.randn(4, 2, len(names), dtype=torch.float64, generator=gen)
    many = model(x, batch)
    assert many.shape == (4, 2, n)
    for i in range(4):
        for j in range(2):
            torch.testing.assert_close(many[i, j], model(x, batch[i, j]))
    # gradients flow and equal central finite differences
    t = theta.clone().requires_grad_(True)
    w = torch.linspace(0.5, 1.5, n, dtype=torch.float64)
    (model(x, t) * w).sum().backward()
    assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    h = 1e-6
    for k in range(min(len(names), 12)):
        e = torch.zeros_like(theta); e[k] = h
        fd = ((model(x, theta + e) - model(x, theta - e)) * w).sum() / (2 * h)
        assert abs(fd.item() - t.grad[k].item()) <= 1e-5 * max(1.0, abs(fd.item()))
    assert type(model).__name__ in repr(model)


@pytest.mark.parametrize("spec,inputs", CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_every_model_passes_the_shared_check(spec, inputs):
    check_model(make_model(spec, inputs))


def test_every_registered_family_is_checked():
    checked = {s.split(":")[0] for s, _ in CASES if isinstance(s, str) and ":" in s}
    assert checked == set(MODELS)


def test_expression_model_values_and_names():
    m = make_model("a*x^2 + b*x + c")
    assert isinstance(m, ExpressionModel) and m.param_names == ("a", "b", "c")
    x = torch.linspace(-2, 2, 5, dtype=torch.float64)
    np.testing.assert_allclose(m(x, torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)).numpy(),
                               3 * x.numpy() ** 2 + 2 * x.numpy() + 1)


def test_constant_expression_broadcasts_to_the_data():
    m = make_model("c")
    x = torch.zeros(5, dtype=torch.float64)
    assert m(x, torch.ones(3, 1, dtype=torch.float64)).shape == (3, 5)


def test_callable_conventions_read_names_and_defaults():
    m = make_model(curve_fit_style)
    assert isinstance(m, CallableModel) and m.param_names == ("a", "b", "c")
    assert m.initial() == {"a": 1.0, "b": 2.0, "c": 0.5}
    lm = make_model(lesson_quad)
    assert lm.param_names == ("a", "b", "c")
    x = torch.tensor([2.0], dtype=torch.float64)
    assert lm(x, torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)).item() == 17.0


def test_polynomial_is_horner_of_numpy():
    m = make_model("poly:3")
    assert isinstance(m, PolynomialModel) and m.param_names == ("c0", "c1", "c2", "c3")
    x = torch.linspace(-1, 2, 9, dtype=torch.float64)
    c = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)
    np.testing.assert_allclose(m(x, c).numpy(), np.polynomial.polynomial.polyval(x.numpy(), c.numpy()))


def test_relu_sum_is_the_lessons_double_relu():
    m = make_model("relu:2")
    assert isinstance(m, ReLUSumModel) and m.param_names == ("m1", "b1", "m2", "b2", "c")
    x = torch.linspace(-2, 2, 11, dtype=torch.float64)
    p = torch.tensor([1.0, 0.5, -2.0, 0.3, 0.1], dtype=torch.float64)
    xs = x.numpy()
    expected = np.maximum(xs * 1.0 + 0.5, 0) + np.maximum(-2.0 * xs + 0.3, 0) + 0.1
    np.testing.assert_allclose(m(x, p).numpy(), expected)
    assert m.parts(x, p).shape == (2, 11)


def test_relu_start_is_seeded_and_kinks_lie_in_the_data():
    m = make_model("relu:4")
    x = torch.linspace(3, 5, 10, dtype=torch.float64)
    a, b = m.initial(x, seed=1), m.initial(x, seed=1)
    assert a == b and a != m.initial(x, seed=2)
    for i in range(1, 5):
        assert 3 <= -a[f"b{i}"] / a[f"m{i}"] <= 5


def test_mlp_matches_torch_linear_layers():
    m = make_model("mlp:3:tanh", ("x1", "x2"))
    assert isinstance(m, MLPModel)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 2, dtype=torch.float64, generator=gen)
    theta = torch.randn(m.n_params, dtype=torch.float64, generator=gen)
    w1, b1 = theta[:6].reshape(3, 2), theta[6:9]
    w2, b2 = theta[9:12].reshape(1, 3), theta[12:13]
    expected = (torch.tanh(x @ w1.T + b1) @ w2.T + b2)[:, 0]
    torch.testing.assert_close(m(x, theta), expected)


@pytest.mark.parametrize("spec,message", [
    ("poly:x", "poly:K"), ("relu:0", "at least one"), ("mlp:4,-1", "mlp"), ("mlp:4:swoosh", "activation"),
])
def test_bad_family_specs_are_refused(spec, message):
    with pytest.raises(InputError, match=message):
        make_model(spec)


def test_p0_with_unknown_name_is_refused():
    with pytest.raises(InputError, match="unknown parameter 'z'"):
        start_values(make_model("a*x"), {"z": 1.0})


def test_wrong_number_of_inputs_is_refused():
    m = make_model("a*x1 + b*x2", ("x1", "x2"))
    with pytest.raises(InputError, match="needs 2 input"):
        m(torch.zeros(4, dtype=torch.float64), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("text,linear", [
    ("a*x^2 + b*x + c", True), ("-a*x/3 + sin(x)*b - c + x", True), ("w1*x1 + w2*sin(x2)", True),
    ("a*x + a", True), ("a*exp(-k*x)", False), ("(a + 1)*x", False), ("a^2*x", False),
    ("x/a", False), ("a*b*x", False), ("sin(a*x)", False),
    # chains as long as the checker accepts (it counts a chain once): read without recursion
    # (the first is linear, but its design matrix re-joined is too long: it stays general)
    ("a*x+b" + "+x" * 995, False), ("a*exp(b*x)" + "-x" * 990, False),
])
def test_models_linear_in_their_parameters_use_a_design_matrix(text, linear):
    inputs = ("x1", "x2") if "x1" in text else ("x",)
    m = make_model(text, inputs)
    assert (m.linear is not None) is linear
    # either way the values equal the general evaluator's, batched and not
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(9, len(inputs), dtype=torch.float64, generator=gen).squeeze(-1)
    p = torch.randn(4, m.n_params, dtype=torch.float64, generator=gen)
    env = dict(zip(inputs, [x] if x.ndim == 1 else list(x.unbind(-1))))
    for row in p:
        general = m.expression({**env, **dict(zip(m.param_names, row.unbind()))})
        torch.testing.assert_close(m(x, row), general.expand(9))
    torch.testing.assert_close(m(x, p)[2], m(x, p[2]))


def test_a_huge_network_is_refused_before_it_is_built():
    import time
    t = time.perf_counter()
    with pytest.raises(InputError, match="too large"):
        make_model("mlp:10000,10000")
    assert time.perf_counter() - t < 1.0


@pytest.mark.parametrize("model", ["a*x^2 + b*x + c", "A*exp(-k*x) + C"])
def test_a_result_of_an_expression_model_pickles(model):
    # before: "Can't pickle local object 'ExpressionModel._bind.<locals>.<lambda>'" for
    # fit and fit_many results, which joblib, multiprocessing and caches pickle
    import pickle

    import numpy as np

    import gradfit
    d = gradfit.lesson_data()
    r = gradfit.fit(model, d.x, d.y)
    back = pickle.loads(pickle.dumps(r))
    assert back.params == r.params
    np.testing.assert_array_equal(back.predict(d.x), r.predict(d.x))
    many = gradfit.fit_many(model, d.x, np.stack([d.y, 2 * d.y]))
    again = pickle.loads(pickle.dumps(many))
    np.testing.assert_array_equal(again.to_pandas().to_numpy(), many.to_pandas().to_numpy())
