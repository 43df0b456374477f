"""The fused (compiled) full-batch step against the unfused one, and its fallbacks."""
import numpy as np
import pytest
import torch

import gradfit
from gradfit import fused_step as F
from gradfit.fit import iter_fit, prepare

GAUSS = "A*exp(-(x-mu)^2/(2*s^2))+C"


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    x = np.linspace(-3, 3, 1500)
    sigma = 0.5 + rng.random(1500)
    y = 2.0 * np.exp(-(x - 0.3) ** 2 / 2) + 0.5 + 0.1 * rng.standard_normal(1500)
    return x, y, sigma


KW = dict(loss="mae", optimizer="adam", lr=0.01, steps=25, ftol=0, gtol=0,
          p0={"A": 1.5, "mu": 0.0, "s": 1.3, "C": 0.2})


def _run(x, y, sigma, **kw):
    run = iter_fit(GAUSS, x, y, sigma=sigma, **{**KW, **kw})
    for _ in run:
        pass
    return run


@pytest.mark.skipif(not any(__import__("shutil").which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile's CPU code needs a C++ compiler (CI installs g++)")
def test_fused_step_equals_unfused_step(data, monkeypatch):
    x, y, sigma = data
    F.clear_cache()
    monkeypatch.setattr(F, "COMPILE_MIN_WORK", 0)
    monkeypatch.setattr(F, "MIN_POINTS", 0)
    fused = _run(x, y, sigma)
    assert fused.stepper.fused is not None and all(v is not None for v in F._cache.values())
    monkeypatch.setattr(F, "MIN_POINTS", 10 ** 9)          # the same run, unfused
    plain = _run(x, y, sigma)
    assert plain.stepper.fused is None
    a, b = fused.result, plain.result
    assert a.steps == b.steps == 25
    np.testing.assert_allclose(a.history, b.history, rtol=1e-12)
    np.testing.assert_allclose(a.trajectory, b.trajectory, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(a.grad_norms, b.grad_norms, rtol=1e-10)
    assert a.history[-1] < 0.7 * a.history[0]
    F.clear_cache()


def test_a_failed_compile_falls_back_to_the_unfused_step(data, monkeypatch):
    x, y, sigma = data
    F.clear_cache()
    monkeypatch.setattr(F, "COMPILE_MIN_WORK", 0)
    monkeypatch.setattr(F, "MIN_POINTS", 0)

    def broken(fn, **kw):
        def run(*a):
            raise RuntimeError("inductor: no C compiler")
        return run
    monkeypatch.setattr(torch, "compile", broken)
    r = _run(x, y, sigma).result
    assert list(F._cache.values()) == [None]               # tried once, then never again
    monkeypatch.setattr(F, "MIN_POINTS", 10 ** 9)
    ref = _run(x, y, sigma).result
    np.testing.assert_array_equal(r.history, ref.history)
    F.clear_cache()


def test_compiles_only_when_the_run_repays_it(data):
    x, y, sigma = data
    F.clear_cache()
    p = prepare(GAUSS, x, y, sigma, loss="mae")
    assert F.fused_gradient(p, steps=10 ** 6) is None     # 1500 points: never worth it
    assert F.worth_compiling(10 ** 7, 1000) and not F.worth_compiling(10 ** 7, 10)
    assert not F._cache
    # bounds or fixed values: a transformed problem, not fused
    from gradfit.bounds import ParamTransform, TransformedProblem
    tr = ParamTransform(p.model.param_names, {"s": (0.1, 5)}, {}, torch.float64, "cpu")
    assert F.fused_gradient(TransformedProblem(p, tr), steps=10 ** 9) is None


def test_a_numpy_model_is_never_compiled(monkeypatch):
    monkeypatch.setattr(F, "COMPILE_MIN_WORK", 0)
    monkeypatch.setattr(F, "MIN_POINTS", 0)

    def f(x, a, b):
        return np.asarray(a) * np.exp(-np.asarray(b) * np.asarray(x))
    x = np.linspace(0, 2, 50)
    p = prepare(f, x, 2 * np.exp(-x), loss="mse")
    assert F.fused_gradient(p, steps=10 ** 9) is None
    r = gradfit.fit(f, x, 2 * np.exp(-x), optimizer="gd", lr=0.1, steps=5)
    assert np.isfinite(r.loss)


def test_two_functions_of_one_name_never_share_a_compiled_step():
    def f(x, a, b):
        return a * x + b
    g = f

    def f(x, a, b):                                     # noqa: F811 - the same name, new math
        return a * torch.exp(-b * x)
    x = np.linspace(0, 1, 10)
    k1, k2 = (F._model_key(prepare(fn, x, x).model) for fn in (g, f))
    assert k1 != k2
    assert F._model_key(prepare("a*x+b", x, x).model) == F._model_key(prepare("a*x+b", x, x).model)
