"""Fits on bounds, from a probe against scipy, linprog and finite differences: a parameter
left on a bound that does not hold it, a bound holding a parameter the data do not
determine, and the finish on the bounds running out of steps or not run at all."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import least_squares, linprog

import gradfit

CASES = json.loads((Path(__file__).parent / "data" / "probe5_bounds.json").read_text())


def _case(name):
    c = CASES[name]
    bounds = {k: (-math.inf if lo is None else lo, math.inf if hi is None else hi)
              for k, (lo, hi) in c["bounds"].items()}
    sigma = None if "sigma" not in c else np.asarray(c["sigma"])
    return c["model"], np.asarray(c["x"]), np.asarray(c["y"]), sigma, bounds, c["p0"]


def _dexp_loss(p, x, y, s):
    a, b, c, d = p
    return float(np.mean(((a * np.exp(-b * x) + c * np.exp(-d * x) - y) / s) ** 2))


def _scipy_dexp(x, y, s, bounds, start):
    names = "abcd"
    lo = [bounds.get(n, (-np.inf, np.inf))[0] for n in names]
    hi = [bounds.get(n, (-np.inf, np.inf))[1] for n in names]
    start = np.clip(start, np.nextafter(lo, np.inf), np.nextafter(hi, -np.inf))
    o = least_squares(lambda p: (p[0] * np.exp(-p[1] * x) + p[2] * np.exp(-p[3] * x) - y) / s,
                      start, bounds=(lo, hi), xtol=1e-15, ftol=1e-15, gtol=1e-15,
                      max_nfev=2000)
    return _dexp_loss(o.x, x, y, s)


@pytest.mark.parametrize("name, stuck", [("dexp_on_bound_a", "a"), ("dexp_on_bound_c", "c")])
def test_a_parameter_left_on_a_bound_that_does_not_hold_it_is_no_optimum(name, stuck):
    # LM in the bounds' internal variables sat on a bound (its start, or a return there:
    # the change of variables has no slope on a bound) where the loss falls inwards;
    # fit_many called it "xtol ... (KKT conditions hold)", naming the other bounds, with a
    # standard error for the stuck parameter
    model, x, y, s, bounds, p0 = _case(name)
    m = gradfit.fit_many(model, x, y[None], sigma=s[None], bounds=bounds, p0=p0)
    p = np.array([float(m.params[k][0]) for k in "abcd"])
    j = "abcd".index(stuck)
    lo, hi = bounds[stuck]
    inward = 1.0 if p[j] == lo else -1.0 if p[j] == hi else 0.0
    if m.converged[0]:
        # a converged end holds every parameter on a bound: the loss rises inwards
        h = p.copy()
        h[j] += inward * 1e-4 * max(abs(p[j]), 1.0)
        assert inward == 0.0 or _dexp_loss(h, x, y, s) >= _dexp_loss(p, x, y, s)
        # and nothing within the bounds near it is lower (scipy's trf from its point)
        assert _scipy_dexp(x, y, s, bounds, p) >= float(m.loss[0]) * (1 - 1e-9)
    else:
        assert m.reason[0] in ("failed", "max_steps")


def test_a_bound_holding_a_parameter_the_data_do_not_determine_is_no_answer():
    # a*x + b*x: the loss depends on a+b alone; a on its bound is held with a multiplier of
    # 0 and every a in [0, 1] fits equally well. fit called it converged (stderr of b 0.92)
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 10)
    y = 3 + 0.1 * rng.standard_normal(10)
    for loss in ("mse", "huber"):
        r = gradfit.fit("a*x+b*x", x, y, bounds={"a": (0, 1)}, loss=loss)
        assert not r.converged and r.reason == "failed", (loss, r.message)
        assert "lost rank" in r.message and r.stderr is None
        s = r.params["a"] + r.params["b"]
        losses = [np.mean((a * x + (s - a) * x - y) ** 2) for a in (0.0, 0.5, 1.0)]
        assert loss != "mse" or max(losses) - min(losses) <= 1e-12 * max(losses)
    m = gradfit.fit_many("a*x+b*x", x, y[None], bounds={"a": (0, 1)})
    assert not m.converged[0]
    # both on their bounds with positive multipliers: the box's corner is determined
    r = gradfit.fit("a*x+b*x", x, 5 * x, bounds={"a": (0, 1), "b": (0, 1)})
    assert r.converged and r.params == {"a": 1.0, "b": 1.0}
    assert "may not be smooth" not in r.message and "every free parameter on its bound" in r.message


def test_the_finish_on_the_bounds_leaves_steps_for_the_fit_after_a_crossing():
    # the unbounded inner fit (b held) ran off to another minimum for all 1000 steps; the
    # fit with the crossed bound on a held then had none: max_steps, 12% above the optimum,
    # "used its 1000 steps ... (0 steps)". It now takes half, and the rest finds the optimum
    model, x, y, s, bounds, p0 = _case("dexp_budget")
    best = min(_scipy_dexp(x, y, s, bounds, np.array(st, float)) for st in
               ([0.769, 0.4473, 1.1984, 0.666], [0.5, 0.4474, 1.0, 1.0], [0.7, 0.4475, 2, 2]))
    r = gradfit.fit(model, x, y, sigma=s, bounds=bounds, p0=p0)
    m = gradfit.fit_many(model, x, y[None], sigma=s[None], bounds=bounds, p0=p0)
    assert r.converged and m.converged[0]
    assert r.loss == pytest.approx(best, rel=1e-9)
    assert float(m.loss[0]) == pytest.approx(best, rel=1e-9)
    assert set(r.at_bound) == {"a", "b"} and "(0 steps)" not in r.message


def _lad(x, y, lo):
    n = len(x)
    A = np.stack([np.ones(n), x, x ** 2], 1)
    o = linprog(np.r_[np.zeros(3), np.ones(2 * n)] / n,
                A_eq=np.hstack([A, np.eye(n), -np.eye(n)]), b_eq=y,
                bounds=[(None, None), (lo, None), (None, None)] + [(0, None)] * (2 * n),
                method="highs")
    return o.fun


def test_a_failed_robust_row_away_from_its_bound_is_finished_as_fit_finishes_it():
    # fit_many's mae row failed 1.5% off a one-sided bound near 0 (the finish ran only
    # within 1% of a bound); fit finishes every failed end with bounds and certifies the
    # linear programme's optimum
    model, x, y, _, bounds, p0 = _case("mae_poly_one_sided")
    lp = _lad(x, y, bounds["c1"][0])
    r = gradfit.fit(model, x, y, loss="mae", bounds=bounds, p0=p0)
    m = gradfit.fit_many(model, x, y[None], loss="mae", bounds=bounds, p0=p0)
    assert r.converged and m.converged[0]
    assert r.loss == pytest.approx(lp, rel=1e-9) and float(m.loss[0]) == pytest.approx(lp, rel=1e-9)


def test_a_failed_mae_rational_row_is_finished_to_fits_certified_minimum():
    # batched IRLS stopped at MAE 0.629 (b 23% from its bound), uncertified; fit certifies
    # 0.0342 with b on its bound, and Nelder-Mead from fit_many's point falls there too
    model, x, y, _, bounds, p0 = _case("mae_rational")
    r = gradfit.fit(model, x, y, loss="mae", bounds=bounds, p0=p0)
    m = gradfit.fit_many(model, x, y[None], loss="mae", bounds=bounds, p0=p0)
    assert r.converged and m.converged[0]
    assert float(m.loss[0]) == pytest.approx(r.loss, rel=1e-9)
    a, b, c = (r.params[k] for k in "abc")
    assert r.loss == pytest.approx(np.mean(np.abs((a + b * x) / (1 + c * x) - y)), rel=1e-12)


@pytest.mark.parametrize("model, x, y, bounds", [
    ("poly:2", [-1.6319535060287031, -1.447908053572513, -1.1905673256328728],
     [-3.3542883172062505, -2.4610403954511515, 18.651538908804937],
     {"c1": (543.4478754612721, None)}),
    ("a*sin(x)+b*cos(x)+c", [0.04607472613567554, 1.6896985735756724, 2.0393997933223087],
     [19.678702241275012, -0.020970979405997917, 0.20424403920637452],
     {"b": (4.139371694468387, None)}),
])
def test_an_exact_fit_on_a_bound_is_held_there_whatever_the_rounding_says(model, x, y, bounds):
    # three points, three parameters, the bound at the interpolant's own value: the curve
    # passes through every point (loss ~1e-28), so nothing lowers it; the multiplier's sign
    # is rounding noise, and 'the loss falls inwards' had failed the fit
    x, y = np.asarray(x), np.asarray(y)
    for loss in ("huber", "mse"):
        r = gradfit.fit(model, x, y, loss=loss, delta=0.1, bounds=bounds)
        m = gradfit.fit_many(model, x, y[None], loss=loss, delta=0.1, bounds=bounds)
        assert r.converged and m.converged[0], (loss, r.message, m.message[0])
        assert r.loss <= 1e-20 and float(m.loss[0]) <= 1e-20


def test_a_lone_parameter_the_data_do_not_determine_is_no_answer():
    # an outlier at x = 0 that c*exp(-d*x) fits alone: past d ~ 40 the term is 0 at every
    # other x, so any larger d fits as well (193 +/- 4.6e79). fit_many called it converged:
    # only two parameters running off together were looked at
    x = np.arange(6.0)
    y = np.array([17.71706323097621, 1.248959987559366, 0.858343144040698,
                  0.5901135226623494, 0.4058704903948219, 0.2792639118521863])
    p0 = {"a": 0.793201845709896, "b": 0.3398068658521463, "c": 0.5756001678964366,
          "d": 1.8109320432542855}
    model, bounds = "a*exp(-b*x)+c*exp(-d*x)", {"d": (1.8081239193349505, None)}
    m = gradfit.fit_many(model, x, y[None], p0=p0, bounds=bounds)
    r = gradfit.fit(model, x, y, p0=p0, bounds=bounds)
    assert not m.converged[0] and not r.converged
    assert m.message[0].startswith("the data do not determine d: it is uncertain")
    p = {k: float(v[0]) for k, v in m.params.items()}

    def sse(d):
        return float(np.sum((p["a"] * np.exp(-p["b"] * x) + p["c"] * np.exp(-d * x) - y) ** 2))
    assert sse(10 * p["d"]) <= sse(p["d"]) * (1 + 1e-12)       # the oracle: flat beyond


def test_a_parameter_near_zero_with_a_large_relative_error_is_still_determined():
    # the lone-parameter test looks at relative errors beyond 1e6: the centre of a peak fitted
    # to data symmetric about 0 is 0 to rounding (+/- 0.004), and the loss rises along it as
    # its covariance says: determined
    x = np.linspace(-3, 3, 41)
    rng = np.random.default_rng(3)
    half = 0.01 * rng.standard_normal(21)
    y = 2 * np.exp(-x ** 2 / 2) + np.r_[half[:0:-1], half]          # symmetric noise
    model = "A*exp(-(x-mu)^2/(2*s^2))"
    p0 = {"A": 1.5, "mu": 0.0, "s": 1.2}
    r = gradfit.fit(model, x, y, p0=p0)
    m = gradfit.fit_many(model, x, y[None], p0=p0)
    assert r.converged and m.converged[0], (r.message, m.message[0])
    mu, sd = float(m.params["mu"][0]), float(m.stderr["mu"][0])
    assert sd > 1e6 * abs(mu)                   # a lone suspect indeed
