"""Bounds for every loss, checked against scipy's bounded solvers (test-only oracles).

least squares: ``scipy.optimize.least_squares(method="trf", bounds=...)``; mae on models
linear in their parameters: the linear programme (``scipy.optimize.linprog``) with the same
bounds; huber: ``least_squares(loss="huber", f_scale=delta, bounds=...)``, whose objective
is twice gradfit's huber loss (the same minimiser).
"""
import numpy as np
import pytest
from scipy.optimize import least_squares, linprog

import gradfit
from gradfit import fit

RNG = np.random.default_rng(7)
X = np.linspace(0, 10, 40)
Y = 3 + 0.5 * X + np.sin(X) + 0.3 * RNG.standard_normal(40)
LINE = "b0 + b1*x"
TIGHT = dict(xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=10000)


def lre(value, truth):
    """Digits of agreement (log relative error)."""
    if value == truth:
        return 16.0
    return -np.log10(abs(value - truth) / max(abs(truth), 1e-300))


def trf(fun, x0, lo, hi, **kw):
    return least_squares(fun, x0, bounds=(lo, hi), method="trf", **TIGHT, **kw).x


def lp_mae(design, y, lo, hi):
    """min sum |y - design b| with lo <= b <= hi, as a linear programme in (b, t)."""
    n, p = design.shape
    c = np.r_[np.zeros(p), np.ones(n)]
    a_ub = np.block([[design, -np.eye(n)], [-design, -np.eye(n)]])
    b_ub = np.r_[y, -y]
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=list(zip(lo, hi)) + [(0, None)] * n,
                  method="highs")
    return res.x[:p], res.fun / n


LS_CASES = [   # bounds on b1: a start on the bound with the optimum inside, then active ones
    ({"b1": (0, 1)}, None),
    ({"b1": (0, 0.3)}, "upper"),
    ({"b1": (0.7, None)}, "lower"),
    ({"b0": (None, 2.0), "b1": (0.0, 0.4)}, "both"),
]


@pytest.mark.parametrize("bounds,active", LS_CASES)
def test_least_squares_reach_the_bounded_optimum_of_trf(bounds, active):
    lo = [(bounds.get(n, (None, None))[0] if bounds.get(n, (None,))[0] is not None else -np.inf)
          for n in ("b0", "b1")]
    hi = [(bounds.get(n, (None, None))[1] if bounds.get(n, (None, None))[1] is not None else np.inf)
          for n in ("b0", "b1")]
    x0 = np.clip([1.0, 1.0], np.nextafter(lo, 1), np.nextafter(hi, -1))
    want = trf(lambda b: b[0] + b[1] * X - Y, x0, lo, hi)
    r = fit(LINE, X, Y, bounds=bounds)
    assert r.converged, r.message
    got = [r.params["b0"], r.params["b1"]]
    assert min(lre(g, w) for g, w in zip(got, want)) >= 8
    for (name, (l, h)) in zip(("b0", "b1"), zip(lo, hi)):
        assert l <= r.params[name] <= h                      # exactly within
    if active is None:
        assert r.at_bound == () and "moved inside" in r.message
    else:
        assert r.at_bound and "bound" in r.message and "KKT" in r.message
        for name in r.at_bound:
            assert r.params[name] in (lo[("b0", "b1").index(name)], hi[("b0", "b1").index(name)])
            assert name not in (r.stderr or {})                      # lmfit: no error bar at a bound


def test_a_nonlinear_fit_with_an_active_bound_matches_trf():
    x = np.linspace(0, 4, 30)
    y = 5 * np.exp(-1.3 * x) + 1 + 0.05 * np.sin(7 * x)
    want = trf(lambda p: p[0] * np.exp(-p[1] * x) + p[2] - y, [4.0, 1.0, 0.4],
               [-np.inf, -np.inf, -np.inf], [np.inf, np.inf, 0.5])
    for start in ({"A": 4.0, "k": 1.0, "C": 0.4}, {"A": 4.0, "k": 1.0, "C": 0.5}):
        r = fit("A*exp(-k*x) + C", x, y, p0=start, bounds={"C": (None, 0.5)})
        assert r.converged and r.at_bound == ("C",) and r.params["C"] == 0.5, r.message
        assert min(lre(r.params[n], w) for n, w in zip("AkC", want)) >= 8


@pytest.mark.parametrize("lo,hi", [(0.0, 0.3), (0.7, 5.0), (-1.0, 1.0)])
def test_mae_with_bounds_is_the_linear_programme(lo, hi):
    design = np.c_[np.ones_like(X), X]
    b, mae = lp_mae(design, Y, [-np.inf, lo], [np.inf, hi])
    r = fit(LINE, X, Y, loss="mae", bounds={"b1": (lo, hi)})
    assert r.converged, r.message
    assert r.loss <= mae * (1 + 1e-9)                        # the LP's optimum
    assert abs(r.loss - mae) <= 1e-9 * mae
    assert lo <= r.params["b1"] <= hi


def test_mae_with_a_bound_on_a_quadratic_is_the_linear_programme(lesson):
    x, y = lesson.x.reshape(-1), lesson.y.reshape(-1)
    design = np.c_[x**2, x, np.ones_like(x)]
    bounds = {"a": (None, 2.0), "c": (1.0, None)}
    b, mae = lp_mae(design, y, [-np.inf, -np.inf, 1.0], [2.0, np.inf, np.inf])
    r = fit("a*x^2 + b*x + c", x, y, loss="mae", bounds=bounds)
    assert r.converged and abs(r.loss - mae) <= 1e-9 * mae, (r.loss, mae, r.message)


@pytest.mark.parametrize("bound", [(0.0, 0.3), (0.6, None)])
def test_huber_with_bounds_matches_least_squares_huber(bound):
    delta = 0.5
    lo, hi = bound[0], np.inf if bound[1] is None else bound[1]
    want = least_squares(lambda b: b[0] + b[1] * X - Y, [1.0, (lo + min(hi, lo + 1)) / 2],
                         loss="huber", f_scale=delta, bounds=([-np.inf, lo], [np.inf, hi]),
                         method="trf", **TIGHT).x
    r = fit(LINE, X, Y, loss="huber", delta=delta, bounds={"b1": bound})
    assert r.converged, r.message
    assert min(lre(r.params[n], w) for n, w in zip(("b0", "b1"), want)) >= 8


@pytest.mark.parametrize("optimizer", ["gd", "adam", "lbfgs", "lm", "auto"])
def test_a_start_on_a_bound_moves_inside_for_every_optimizer(optimizer):
    steps = 3000 if optimizer in ("gd", "adam") else 200
    lr = {"gd": 0.005, "adam": 0.05}.get(optimizer)
    r = fit(LINE, X, Y, optimizer=optimizer, lr=lr, steps=steps, bounds={"b1": (0, 1)},
            p0={"b0": 3.0, "b1": 1.0})
    free = np.polyfit(X, Y, 1)[::-1]                          # the optimum lies inside
    assert "moved inside" in r.message
    assert r.loss < r.history[0]
    assert abs(r.params["b1"] - free[1]) < 1e-2
    assert 0 <= r.params["b1"] <= 1


def test_values_on_a_bound_are_the_bound_exactly():
    x = np.linspace(0, 3, 25)
    y = 4 * np.exp(-0.05 * x) + 0.01 * np.cos(5 * x)
    r = fit("A*exp(-K*x)", x, y, bounds={"K": (0.1, None)})
    assert r.converged and r.params["K"] == 0.1 and r.at_bound == ("K",)


@pytest.mark.parametrize("scale", [1e-10, 1e10])
def test_an_inactive_bound_costs_no_digits(scale):
    x = np.linspace(1, 2, 20)
    y = scale * (2 * x + 1) + scale * 1e-3 * np.sin(9 * x)
    free = fit("a*x + b", x, y, p0={"a": scale, "b": scale})
    r = fit("a*x + b", x, y, p0={"a": scale, "b": scale}, bounds={"a": (0, None)})
    assert r.converged and free.converged and r.at_bound == ()
    for n in "ab":
        assert lre(r.params[n], free.params[n]) >= 12


@pytest.mark.parametrize("optimizer", ["auto", "lm", "lbfgs", "gd", "irls"])
def test_fewer_points_than_parameters_is_never_converged(optimizer):
    loss = "mae" if optimizer == "irls" else "mse"
    r = fit("a*x^2 + b*x + c", [1.0], [2.0], optimizer=optimizer, loss=loss, steps=50)
    assert not r.converged and r.reason == "failed"


def test_the_rank_verdict_does_not_depend_on_units():
    x = np.linspace(-9, -3, 60)
    y = 1 + 0.5 * x + 0.02 * x**3 + 1e-3 * np.sin(x)
    verdicts = set()
    for unit in (1.0, 0.5, 1e-3, 1e4):
        r = fit("poly:6", x * unit, y / unit)
        verdicts.add((r.converged, r.stderr is not None))
    assert verdicts == {(True, True)}


def test_a_relu_sum_is_best_of_starts_never_exact_and_never_blows_up():
    d = gradfit.DATASETS["step"]()
    for loss in ("mae", "mse", "huber"):
        r = fit("relu:5", d.x, d.y, loss=loss, steps=300)
        assert r.reason == "starts" and not r.converged
        assert "best of 5 starts" in r.message and "exact" not in r.message
        assert max(abs(v) for v in r.params.values()) < 1e6
        assert r.loss < r.history[0]
        # no worse than plain gradient descent from the first start
        gd = fit("relu:5", d.x, d.y, loss=loss, optimizer="adam", steps=300, starts=1)
        assert r.loss <= gd.loss * (1 + 1e-12)


def test_a_fit_that_ends_worse_than_it_started_failed():
    # gd with a learning rate that bounces without diverging past the factor
    r = fit("a*x + b", X, Y, optimizer="gd", lr=0.0205, steps=3, p0={"a": 0.5, "b": 3.0},
            divergence=1e12)
    if r.loss > r.history[0]:
        assert r.reason in ("failed", "diverged") and not r.converged


def test_starts_keep_the_best_of_k_for_curves():
    x = np.linspace(0, 6, 50)
    y = 2 * np.sin(1.7 * x + 0.3)
    one = fit("A*sin(w*x + p)", x, y, p0={"A": 1, "w": 1, "p": 0})
    many = fit("A*sin(w*x + p)", x, y, p0={"A": 1, "w": 1, "p": 0}, starts=6)
    assert many.loss <= one.loss
    assert "best of 6 starts" in many.message
    assert many.loss < 1e-20 and many.converged


@pytest.mark.parametrize("loss", ["huber", "mae"])
def test_mae_and_huber_optima_to_ten_digits(loss, lesson):
    x, y = lesson.x.reshape(-1), lesson.y.reshape(-1)
    design = np.c_[x**2, x, np.ones_like(x)]
    r = fit("a*x^2 + b*x + c", x, y, loss=loss, delta=1.0)
    if loss == "mae":
        want, _ = lp_mae(design, y, [-np.inf] * 3, [np.inf] * 3)
    else:
        # scipy stops at ~8 digits (the loss is flat there); the exact optimum of a linear
        # model solves the normal equations of its partition (quadratic rows Q, linear L)
        want = least_squares(lambda p: design @ p - y, [1.0, 1.0, 1.0], loss="huber", f_scale=1.0,
                             method="trf", **TIGHT).x
        for _ in range(5):
            res = design @ want - y
            q = np.abs(res) <= 1.0
            g = design[q].T @ res[q] + design[~q].T @ np.sign(res[~q])
            want = want - np.linalg.solve(design[q].T @ design[q], g)
    assert r.converged
    assert min(lre(r.params[n], w) for n, w in zip("abc", want)) >= 10


def test_an_active_bound_agrees_with_lmfit():
    lmfit = pytest.importorskip("lmfit")
    x = np.linspace(0, 4, 30)
    y = 5 * np.exp(-1.3 * x) + 1 + 0.05 * np.sin(7 * x)
    params = lmfit.Parameters()
    params.add("A", value=4.0)
    params.add("k", value=1.0)
    params.add("C", value=0.4, max=0.5)
    out = lmfit.minimize(lambda p: p["A"] * np.exp(-p["k"] * x) + p["C"] - y, params,
                         method="least_squares", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    r = fit("A*exp(-k*x) + C", x, y, p0={"A": 4.0, "k": 1.0, "C": 0.4}, bounds={"C": (None, 0.5)})
    assert r.converged and r.at_bound == ("C",)
    for n in "AkC":
        assert lre(r.params[n], out.params[n].value) >= 8
