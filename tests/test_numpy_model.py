"""Model functions written for numpy, as for curve_fit: run on numpy, differentiated by
central differences (or the user's jac), against scipy's curve_fit and exact derivatives."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import curve_fit

import gradfit
from gradfit.errors import InputError
from gradfit.lm import jacobian_by_rows, jacobian_from_graph
from gradfit.models import make_model


def decay(x, A, k, c):
    return A * np.exp(-k * x) + c


def decay_jac(x, A, k, c):
    e = np.exp(-k * x)
    return np.stack([e, -A * x * e, np.ones_like(x)], axis=1)


def data(n=40, seed=0):
    x = np.linspace(0, 4, n)
    rng = np.random.default_rng(seed)
    return x, decay(x, 2.5, 1.3, 0.5) + 0.01 * rng.standard_normal(n)


def digits(a, b):
    """Digits of agreement (the log relative error, as NIST's LRE)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    err = np.abs(a - b) / np.maximum(np.abs(b), 1e-300)
    return float(-np.log10(np.maximum(err, 1e-17)).min())


def oracle(x, y, sigma=None, jac="3-point"):
    # trf with central differences and tight tolerances: the optimum itself, not a stop near it
    return curve_fit(decay, x, y, p0=[1, 1, 1], sigma=sigma, method="trf", jac=jac,
                     ftol=1e-15, xtol=1e-15, gtol=1e-15)


@pytest.mark.parametrize("n", [40, 400])     # LM's Jacobian by rows (n <= 150) and by graph
def test_lm_with_a_numpy_model_agrees_with_curve_fit(n):
    x, y = data(n)
    sigma = 0.01 + 0.005 * x
    r = gradfit.fit(decay, x, y, sigma=sigma, optimizer="lm")
    popt, pcov = oracle(x, y, sigma)
    assert r.converged and r.jacobian == "finite differences"
    assert digits(list(r.params.values()), popt) >= 8
    assert digits(r.covariance, pcov) >= 8
    assert "finite differences" in r.report()


def test_a_users_jac_is_used_as_curve_fit_uses_it():
    x, y = data()
    calls = []

    def jac(x, A, k, c):
        calls.append(1)
        return decay_jac(x, A, k, c)
    r = gradfit.fit(decay, x, y, jac=jac, optimizer="lm")
    popt, pcov = oracle(x, y, jac=decay_jac)
    assert r.converged and r.jacobian == "user's jac" and calls
    assert digits(list(r.params.values()), popt) >= 10
    assert digits(r.covariance, pcov) >= 10
    run = gradfit.iter_fit(decay, x, y, jac=decay_jac, optimizer="lm")
    list(run)
    assert run.result.jacobian == "user's jac"
    # a torch function with a jac: the jac is used, as curve_fit would
    t = gradfit.fit(lambda x, A, k, c: A * torch.exp(-k * x) + c, x, y, jac=decay_jac)
    assert t.jacobian == "user's jac" and digits(list(t.params.values()), popt) >= 10


def test_central_differences_match_the_exact_jacobian_through_both_lm_paths():
    x, _ = data(30)
    xt = torch.tensor(x)
    model = make_model(decay)
    theta = torch.tensor([2.0, 0.7, -0.3], dtype=torch.float64, requires_grad=True)
    exact = torch.tensor(decay_jac(x, 2.0, 0.7, -0.3))
    by_graph = jacobian_from_graph(model(xt, theta), theta)
    by_rows = jacobian_by_rows(lambda t: model(xt, t), theta, len(x))
    assert model.jacobian_kind == "finite differences"
    for jac in (by_graph, by_rows):
        assert torch.allclose(jac, exact, rtol=1e-9, atol=1e-10)


def test_steps_follow_a_small_parameters_own_size():
    """A rate constant of 1e-6 over times to 3e6 (exp(-k*t)): a step of eps^(1/3) max(1, |k|)
    = 6e-6 is six times k, and the fit had failed; the step scales with the start's size.
    Oracle: the same model as an expression (exact derivatives) and curve_fit."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 3e6, 40)

    def slow(x, A, k):
        return A * np.exp(-k * np.asarray(x, float))
    y = slow(x, 2.0, 1e-6) + 0.01 * rng.standard_normal(40)
    r = gradfit.fit(slow, x, y, p0={"A": 1, "k": 2e-6})
    exact = gradfit.fit("A*exp(-k*x)", x, y, p0={"A": 1, "k": 2e-6})
    popt, pcov = curve_fit(slow, x, y, p0=[1, 2e-6])
    assert r.converged and r.jacobian == "finite differences" and exact.converged
    assert digits([r.params["A"], r.params["k"]], [exact.params["A"], exact.params["k"]]) >= 9
    assert digits([r.params["A"], r.params["k"]], popt) >= 6
    assert digits([r.stderr["A"], r.stderr["k"]], [exact.stderr["A"], exact.stderr["k"]]) >= 6
    model = make_model(slow)
    xt, theta = torch.tensor(x), torch.tensor([2.0, 1e-6], dtype=torch.float64)
    model(xt, theta)                                  # the first call: the typical sizes
    jac = model._run.jacobian(xt, theta).numpy()
    want = np.stack([np.exp(-1e-6 * x), -2.0 * x * np.exp(-1e-6 * x)], axis=1)
    np.testing.assert_allclose(jac, want, rtol=1e-8, atol=1e-12)
    # fit_many: starts of that size in a batch, each row equal to fit
    many = gradfit.fit_many(slow, x, np.stack([y, y * 1.1]), p0={"A": 1, "k": 2e-6})
    assert many.converged.all()
    assert digits(many.params["k"][0], r.params["k"]) >= 8


def test_a_torch_function_keeps_exact_autograd():
    x, y = data()
    r = gradfit.fit(lambda x, A, k, c: A * torch.exp(-k * x) + c, x, y, optimizer="lm")
    assert r.jacobian == "autograd" and r.converged


def test_a_function_that_loses_a_parameter_through_math_is_differentiated_numerically():
    # math.exp turns the tensor k into a float: autograd would give k a zero derivative
    def f(x, A, k):
        return A * math.exp(-k) * x
    x = np.linspace(1, 2, 10)
    r = gradfit.fit(f, x, 3 * math.exp(-0.5) * x + 0.01 * np.sin(7 * x), p0={"A": 3})
    assert r.jacobian == "finite differences"
    # only A*exp(-k) is determined: the two run together, and the model overflows one
    # standard error away; that is a failure naming them, never a traceback
    assert not r.converged and "do not determine A, k" in r.message


@pytest.mark.parametrize("optimizer", ["gd", "adam", "lbfgs"])
def test_gradient_methods_fit_a_numpy_model(optimizer):
    x, y = data()
    lr = {"gd": 0.3, "adam": 0.05, "lbfgs": None}[optimizer]
    r = gradfit.fit(decay, x, y, optimizer=optimizer, lr=lr, steps=2000)
    popt, _ = oracle(x, y)
    assert r.converged and r.jacobian == "finite differences"
    assert r.loss < (1 + 1e-8) * np.mean((decay(x, *popt) - y) ** 2)
    assert np.allclose(list(r.params.values()), popt, rtol=1e-5)


def test_gradients_match_finite_differences_of_the_loss():
    x, y = data()
    value, grad = gradfit.loss_and_grad(decay, x, y, {"A": 2.0, "k": 1.0, "c": 0.0})
    h = 1e-6
    for name in ("A", "k", "c"):
        hi = {"A": 2.0, "k": 1.0, "c": 0.0, name: {"A": 2.0, "k": 1.0, "c": 0.0}[name] + h}
        lo = {**hi, name: hi[name] - 2 * h}
        num = (gradfit.loss_and_grad(decay, x, y, hi)[0] - gradfit.loss_and_grad(decay, x, y, lo)[0]) / (2 * h)
        assert grad[name] == pytest.approx(num, rel=1e-6)


def test_a_landscape_over_a_numpy_model_matches_the_loss_at_each_point():
    from gradfit.landscape import as_problem, loss_grid
    x, y = data(20)
    prob = as_problem(decay, x, y)
    g = loss_grid(prob, ("A", "k"), {"A": 2.5, "k": 1.3, "c": 0.5}, span=1.0, resolution=5)
    for j, k in enumerate(g.y):
        for i, a in enumerate(g.x):
            assert g.loss[j, i] == pytest.approx(np.mean((decay(x, a, k, 0.5) - y) ** 2), rel=1e-12)


@pytest.mark.parametrize("fn, words", [
    (lambda x, a: None, "returned None"),
    (lambda x, a: a * np.ones(3), "returned ndarray of shape (3,)"),
    (lambda x, a: "text", "returned 'text'"),
    (lambda x, a: 1 / 0, "raised ZeroDivisionError"),
    (lambda x, a: torch.ones(3, 2) * a, "returned a tensor of shape (3, 2)"),
    # complex values had lost their imaginary part with numpy's warning only, and converged
    (lambda x, a: a * x + 1j * x, "returned complex numbers: expected 10 real numbers"),
    (lambda x, a: np.asarray(a * x, dtype=complex), "returned complex numbers"),
])
def test_a_bad_model_function_gets_one_line_naming_it(fn, words):
    x = np.linspace(0, 1, 10)
    with pytest.raises(InputError) as info:
        gradfit.fit(fn, x, x, optimizer="lm")
    text = str(info.value)
    assert words in text and "'<lambda>'" in text and "\n" not in text


def test_a_bad_jac_gets_one_line_naming_it():
    x, y = data()

    def my_jac(x, A, k, c):
        return np.ones((3, len(x)))
    with pytest.raises(InputError, match=r"jac function 'my_jac' returned ndarray of shape "
                                         r"\(3, 40\): expected an array of shape \(40, 3\)"):
        gradfit.fit(decay, x, y, jac=my_jac, optimizer="lm")
    with pytest.raises(InputError, match="jac= is for a model given as a Python function"):
        gradfit.fit("a*x", x, y, jac=my_jac)


def test_a_batch_of_parameter_sets_gets_each_sets_gradient():
    x, _ = data(15)
    xt = torch.tensor(x)
    model = make_model(decay)
    p = torch.tensor([[2.0, 0.7, -0.3], [1.0, 2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    w = torch.linspace(-1, 1, 15, dtype=torch.float64)
    (model(xt, p) * w).sum().backward()
    for i in range(2):
        exact = w.numpy() @ decay_jac(x, *p[i].tolist())
        assert np.allclose(p.grad[i].numpy(), exact, rtol=1e-9, atol=1e-9)   # rounding: eps/h


def test_a_jac_that_raises_is_named_with_the_parameters():
    x, y = data()

    def broken(x, A, k, c):
        raise KeyError("boom")
    with pytest.raises(InputError, match=r"^the jac function 'broken' raised KeyError: 'boom' "
                                         r"\(at parameters 1, 1, 1\)$"):
        gradfit.fit(decay, x, y, jac=broken, optimizer="lm")


def test_the_model_is_not_called_at_all_zero_parameters():
    """The loss scale of the final checks is that of predicting 0, from the data: calling a
    user's A/(x*w) at w = 0 warned of a division the user never asked for."""
    import warnings
    calls = []

    def f(x, A, w):
        calls.extend(np.ravel(np.asarray(w, dtype=float)).tolist())
        return A / (x * w)
    x = np.linspace(1, 5, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradfit.fit(f, x, 4 / x + 0.01 * np.sin(x), p0=[1, 1])
    assert 0.0 not in calls


def test_a_fit_of_a_numpy_function_takes_one_jacobian_per_step():
    # before: LM took the Jacobian "by rows" (n copies of the parameters, one per point),
    # and a numpy function gave each copy its own central differences: 5,628 calls of the
    # function for a 12-step fit of 50 points (113 now), 200x curve_fit's time
    calls = [0]

    def decay(x, A, k, C):
        calls[0] += 1
        return A * np.exp(-k * x) + C
    x = np.linspace(0, 5, 50)
    y = decay(x, 3, 0.8, 0.5) + 0.01 * np.random.default_rng(0).standard_normal(50)
    calls[0] = 0
    r = gradfit.fit(decay, x, y, p0={"A": 1, "k": 1, "C": 0})
    assert r.converged and calls[0] < 20 * (2 * 3 + 1)
    e = gradfit.fit("A*exp(-k*x)+C", x, y, p0={"A": 1, "k": 1, "C": 0})
    np.testing.assert_allclose(list(r.params.values()), list(e.params.values()), rtol=1e-8)


@pytest.mark.parametrize("seed", [100, 103, 107])
def test_a_narrow_peak_far_from_zero_gets_steps_narrower_than_itself(seed):
    # before: the step of the peak's position at 2000 was 0.012 (eps^(1/3) * 2000), a third
    # of its width: standard errors 2-3% high, and 19 of 20 such fits "failed: the gradient
    # does not vanish" (the model may not be smooth). Oracle: the same model as an
    # expression (exact derivatives), and curve_fit
    from scipy.optimize import curve_fit

    def peak(x, A, mu, w, C):
        return A * np.exp(-(x - mu) ** 2 / (2 * w ** 2)) + C
    rng = np.random.default_rng(seed)
    w = 0.03 + 0.002 * (seed % 5)
    x = np.linspace(2000, 2001, 60)
    y = peak(x, 1, 2000.45, w, 0.1) + rng.normal(0, 0.02, 60)
    p0 = {"A": 1, "mu": 2000.44, "w": w * 1.2, "C": 0}
    r = gradfit.fit(peak, x, y, p0=p0)
    e = gradfit.fit("A*exp(-(x-mu)^2/(2*w^2))+C", x, y, p0=p0)
    assert r.converged and e.converged, r.message
    np.testing.assert_allclose(list(r.params.values()), list(e.params.values()), rtol=1e-9)
    np.testing.assert_allclose(list(r.stderr.values()), list(e.stderr.values()), rtol=1e-5)
    p, cov = curve_fit(peak, x, y, p0=list(p0.values()))     # forward differences: 1e-4
    np.testing.assert_allclose(list(r.stderr.values()), np.sqrt(np.diag(cov)), rtol=1e-3)
