"""fit_many's seventh probe: kinked models on a bound, each problem's own default start,
and standard errors at parameter scales of 1e+-160. Each against its oracle: a look
around the end by scipy's Nelder-Mead, ``model.initial`` at the problem's own x, and
curve_fit on the rescaled data."""
import numpy as np
import pytest
import torch
from scipy.optimize import curve_fit, minimize

import gradfit
from gradfit.models import make_model

X = np.linspace(-2, 2, 21)

# model, its numpy form, data of a shape that puts one parameter on its bound
KINKED = [
    ("a*max(x-c, 0) + b", lambda p: p["a"] * np.maximum(X - p["c"], 0) + p["b"],
     lambda r: r.uniform(0.5, 2) * np.maximum(X - r.uniform(-1, 1), 0) + r.uniform(-1, -0.2),
     {"b": (0, 5)}),
    ("a*abs(x-c) + b", lambda p: p["a"] * np.abs(X - p["c"]) + p["b"],
     lambda r: r.uniform(-2, -0.5) * np.abs(X - r.uniform(-1, 1)) + r.uniform(0, 1),
     {"a": (0, 3)}),
    ("a*min(x-c, 0) + b*x", lambda p: p["a"] * np.minimum(X - p["c"], 0) + p["b"] * X,
     lambda r: r.uniform(0.5, 2) * np.minimum(X - r.uniform(-1, 1), 0) - r.uniform(0.2, 1) * X,
     {"b": (0, 2)}),
]


def _fall_nearby(f, y, params, held, bounds) -> float:
    """The relative fall of the mse that Nelder-Mead finds from ``params`` within the
    bounds, the parameters on a bound held there (the oracle of a minimum on a kink)."""
    names = [n for n in params if n not in held]
    base = np.mean((f(params) - y) ** 2)

    def loss(v):
        p = dict(params)
        for n, vi in zip(names, v):
            lo, hi = bounds.get(n, (-np.inf, np.inf))
            p[n] = min(max(vi, lo), hi)
        return np.mean((f(p) - y) ** 2)
    v0 = np.array([params[n] for n in names])
    simplex = [v0] + [v0 + 1e-3 * max(abs(v0[j]), 1) * np.eye(len(v0))[j]
                      for j in range(len(v0))]
    best = minimize(loss, v0, method="Nelder-Mead", options=dict(
        initial_simplex=simplex, xatol=1e-12, fatol=1e-16, maxiter=4000)).fun
    return (base - best) / base


@pytest.mark.parametrize("ftol", [1e-7, 1e-12])
def test_a_kinked_fit_on_a_bound_gets_fits_verdict_and_is_a_minimum_where_converged(ftol):
    # fit_many left every row with a parameter on a bound out of the kink checks, and held
    # parameters within 1e-7 of a bound (fit: 1e-9): adam's ftol stops 1e-7 to 4e-5 above a
    # point a short step away were converged, where fit said "not at a minimum"
    rng = np.random.default_rng(1)
    kw = dict(optimizer="adam", lr=0.05, steps=3000, ftol=ftol,
              p0={"a": 1, "c": 0.3, "b": 0.5})
    held_checked = 0
    for model, f, draw, bounds in KINKED:
        y = np.array([draw(rng) + 0.05 * rng.normal(size=X.size) for _ in range(4)])
        res = gradfit.fit_many(model, X, y, bounds=bounds, **kw)
        for i in range(len(y)):
            one = gradfit.fit(model, X, y[i], bounds=bounds, **kw)
            assert res.reason[i] == one.reason, (model, i, res.message[i], one.message)
            row = res[i]
            fall = _fall_nearby(f, y[i], row.params, row.at_bound, bounds)
            if row.converged:                 # no lower point near: a minimum
                assert fall < 1e-8, (model, i, fall)
            elif "not at a minimum" in row.message:
                assert fall > 1e-8, (model, i, fall)     # a lower point near: no minimum
                held_checked += bool(row.at_bound)
    if ftol == 1e-7:
        assert held_checked >= 4          # the rows on a bound were judged, and failed


def test_a_parameter_inside_its_bound_by_1e_8_is_free_for_the_rank_as_in_fit():
    # b 1.3e-8 inside its bound: fit holds only those within 1e-9, and finds the rank lost
    # (c beyond every x: a*(x-c) + b*x); fit_many held b by 1e-7 and called it converged
    rng = np.random.default_rng(0)
    for _, _, draw, _ in KINKED:
        y = np.array([draw(rng) + 0.05 * rng.normal(size=X.size) for _ in range(6)])
    model, kw = "a*min(x-c, 0) + b*x", dict(optimizer="adam", lr=0.05, steps=1500,
                                             bounds={"b": (0, 2)},
                                             p0={"a": 1, "c": 0.3, "b": 0.5})
    one = gradfit.fit(model, X, y[5], **kw)
    res = gradfit.fit_many(model, X, y[5:6], **kw)
    assert one.params["c"] > X.max() and 1e-9 < one.params["b"] / 2 < 1e-7   # the case
    assert one.reason == res.reason[0] == "failed"
    assert "lost rank" in one.message and "lost rank" in res.message[0]


@pytest.mark.parametrize("kw", [dict(optimizer="lm"), dict(optimizer="lm", starts=3),
                                dict(optimizer="adam", starts=3, steps=300, lr=0.02)])
def test_each_problems_default_start_of_a_relu_sum_comes_from_its_own_x(kw):
    # every problem's relu:K start had been drawn over problem 0's x range: kinks at
    # 0..1 for a series on 100..110; fit_many must equal fit on each problem alone
    x = np.array([np.linspace(0, 1, 15), np.linspace(100, 110, 15), np.linspace(0, 1, 15)])
    y = np.abs(x - x.mean(1, keepdims=True)) + 0.01 * np.sin(5 * x)
    m = make_model("relu:2")
    K = kw.get("starts", 1)
    kw = dict(kw, steps=kw.get("steps", 200), seed=3)
    res = gradfit.fit_many("relu:2", x, y, **kw)
    for b in range(len(y)):
        one = gradfit.fit("relu:2", x[b], y[b], **kw)
        assert res[b].start == pytest.approx(one.start, rel=1e-12)
        pick = int(res.message[b].split("(start ")[1][0]) if K > 1 else 0
        own = m.initial(torch.as_tensor(x[b]), 3 + pick)       # the oracle: its own x
        assert res[b].start == pytest.approx(own, rel=1e-12)
        assert res.loss[b] == pytest.approx(one.loss, rel=1e-6, abs=1e-12)


def test_per_problem_x_of_a_model_whose_start_ignores_x_costs_one_draw(monkeypatch):
    # the starts of an expression do not depend on x: one draw serves every problem
    m = make_model("a*exp(-k*x)")
    calls = []
    real = type(m).initial
    monkeypatch.setattr(type(m), "initial", lambda self, *a: calls.append(1) or real(self, *a))
    x = np.linspace(0, 3, 10) + np.arange(50)[:, None]
    res = gradfit.fit_many("a*exp(-k*x)", x, 2 * np.exp(-0.5 * (x - x[:, :1])) + 0 * x,
                           p0={"a": 1, "k": 0.5}, steps=0)
    assert len(res) == 50 and len(calls) <= 4


T = np.linspace(1, 2, 20)
Y = 2 * T + 0.01 * np.sin(7 * T)


def _curve_fit(model, x, y, p0):
    f = {"a*x": lambda x, a: a * x, "a*x + b": lambda x, a, b: a * x + b,
         "a*exp(-k*x)": lambda x, a, k: a * np.exp(-k * x)}[model]
    p, c = curve_fit(f, x, y, p0=p0)
    return p, np.sqrt(np.diag(c))


@pytest.mark.parametrize("scale", [1e-160, 1e160, 1e-200, 1e200, 1e-100])
@pytest.mark.parametrize("model, p0", [("a*x", [1.0]), ("a*x + b", [1.0, 1.0]),
                                       ("a*exp(-k*x)", [1.0, -0.5])])
def test_standard_errors_scale_with_the_parameters_far_from_1(scale, model, p0):
    # x of 1e-160: a = 2e160 +/- 1e157, its variance 1e314 overflows and J^T J (1e-320)
    # has no digits: fit_many said "failed" (inf errors: "the data do not determine a"),
    # and its linear solve gave a = 9e-199 for 2e200 and -0.0 for 2e-160. The oracle:
    # curve_fit on the unscaled x; the parameter multiplying x scales by 1/scale
    if model == "a*exp(-k*x)" and scale > 1:
        pytest.skip("LM cannot start at k of 1e-160 (the loss overflows): both fail")
    ref, ref_se = _curve_fit(model, T, Y, p0)
    per = {"a*x": [1 / scale], "a*x + b": [1 / scale, 1.0], "a*exp(-k*x)": [1.0, 1 / scale]}
    start = dict(zip(("a", "b") if "b" in model else ("a", "k"), np.multiply(p0, per[model])))
    res = gradfit.fit_many(model, T * scale, Y[None], p0=start)
    if model == "a*exp(-k*x)" and scale < 1e-180:
        # J^T J of k's column underflows to 0 (1e-400): LM never moves k, as fit's LM:
        # failed by the lost rank in both
        one = gradfit.fit(model, T * scale, Y, p0=start)
        assert res.reason[0] == one.reason == "failed" and "lost rank" in res.message[0]
        return
    assert res.converged[0], res.message[0]
    for j, name in enumerate(start):
        # within 1e-4 of its error (curve_fit stops at a relative step of 1.5e-8)
        assert res.params[name][0] == pytest.approx(ref[j] * per[model][j],
                                                    abs=1e-4 * ref_se[j] * per[model][j])
        assert res.stderr[name][0] == pytest.approx(ref_se[j] * per[model][j], rel=1e-6)
        assert res[0].stderr[name] == pytest.approx(ref_se[j] * per[model][j], rel=1e-6)


def test_least_squares_errors_of_fit_scale_with_the_parameter():
    # fit's covariance of a nonlinear model (result.least_squares_errors): k = -6.6e159
    # +/- 1.3e158 where the variance overflows; the oracle is curve_fit on T
    from gradfit.result import least_squares_errors
    ref, ref_se = _curve_fit("a*exp(-k*x)", T, Y, [1.0, -0.5])
    _, pcov = curve_fit(lambda x, a, k: a * np.exp(-k * x), T, Y, p0=[1.0, -0.5])
    ref_corr = pcov / np.outer(ref_se, ref_se)
    for scale in (1e-160, 1e160, 1.0):
        t, y = torch.as_tensor(T * scale), torch.as_tensor(Y)
        theta = torch.tensor([ref[0], ref[1] / scale], dtype=torch.float64)
        out = least_squares_errors(lambda p: p[0] * torch.exp(-p[1] * t) - y, theta)
        assert out is not None
        cov, se, corr = out
        assert se == pytest.approx(ref_se * [1, 1 / scale], rel=1e-6)
        assert corr == pytest.approx(ref_corr, rel=1e-6)       # units do not change it
        # k's variance: 1.6e316 overflows at x of 1e-160 (its error does not)
        assert np.isfinite(cov[0, 0]) and (cov[1, 1] == np.inf) == (scale == 1e-160)
