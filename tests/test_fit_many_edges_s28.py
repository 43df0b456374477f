"""Three edges where ``fit_many`` (LM, mse) had disagreed with ``fit`` on the same problem:
data of 0 leaving a rate undetermined, a biexponential through 5 points finished elsewhere,
and a parameter 1e-9 inside its bound on data with noise of 1e-9. Each is judged against an
oracle (a profile of the loss, scipy's ``least_squares`` with the bounds from the answer)."""
import numpy as np
import pytest
from scipy.optimize import least_squares

import gradfit

TIGHT = dict(xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=5000)


@pytest.mark.parametrize("bounds", [None, {"k": (0, 10)}])
@pytest.mark.parametrize("starts", [None, 3])
def test_data_of_zero_determine_a_but_not_the_rate(bounds, starts):
    # a*exp(-k*x) on y = 0: LM drives a to 1e-64 and k's column with it; the column norms
    # at the end scale k's back to 1 (full rank), LM's own scaling sees it vanish. With k
    # bounded fit_many had called it converged (a = -4.6e-64, k anything)
    x = np.linspace(0, 3, 20)
    y = np.zeros_like(x)
    r = gradfit.fit("a*exp(-k*x)", x, y, bounds=bounds, starts=starts)
    m = gradfit.fit_many("a*exp(-k*x)", x, y[None], bounds=bounds, starts=starts)
    # the oracle: with a profiled out (linear least squares: a* = <e, y> / <e, e>), the
    # loss is 0 for every k: k is not determined, a = 0 is
    for k in (0.1, 1.0, 5.0):
        e = np.exp(-k * x)
        a = e @ y / (e @ e)
        assert a == 0.0 and np.sum((a * e - y) ** 2) == 0.0
    assert not r.converged and not m.converged[0]
    assert "do not determine k " in m.message[0] and "determine only" not in m.message[0]
    assert m.message[0] == r.message
    assert abs(m.params["a"][0]) < 1e-30


def _dexp(p, x):
    return p[0] * np.exp(-p[1] * x) + p[2] * np.exp(-p[3] * x)


def _scipy_from(p, x, y, s, bounds):
    lo = [bounds.get(n, (-np.inf, np.inf))[0] for n in "abcd"]
    hi = [bounds.get(n, (-np.inf, np.inf))[1] for n in "abcd"]
    start = np.clip(p, np.nextafter(lo, np.inf), np.nextafter(hi, -np.inf))
    o = least_squares(lambda q: (_dexp(q, x) - y) / s, start, bounds=(lo, hi), **TIGHT)
    return float(np.sum(o.fun ** 2))


BIEXP = {
    # b on its lower bound: fit's unbounded inner fit crosses c's upper bound and certifies
    # the optimum with c held there; fit_many's one round in the bounds had stopped in a
    # flat valley (c = 0.46, d = 11.4: failed, c and d not determined)
    "crossing": dict(
        x=[2.6187449473160047, 2.9512855322629576, 4.3809008084990255, 4.5659795850639915,
           4.813459073975561],
        y=[0.44570799785416654, 0.3073187833625202, 0.11298759261858818, 0.10409203933306413,
           0.12097118865916752],
        sigma=[0.05208481343270465, 0.06477306209794333, 0.00916150396879127,
               0.011235394989670019, 0.05415287647383865],
        p0={"a": 1.1312868285193405, "b": 0.7621199491264, "c": 0.4180391646798363,
            "d": 1.3320189801800992},
        bounds={"b": (0.7620291279343264, 0.7819610314016299),
                "c": (-0.5, 0.8360783293596726), "d": (1.3320189801800992, np.inf)}),
    # LM stalls (no step lowers the loss) with a on its bound; the finish's inner fits at
    # the batch's xtol=1e-10 stalled in turn, where fit's (xtol=1e-15) reached the optimum
    "stalled": dict(
        x=[2.7362721646311403, 3.0502402574139236, 3.173724274440732, 3.605776239111631,
           4.361473337538163],
        y=[0.7392051482954154, 0.7181765271779298, 0.6864921562110103, 0.5868220736505921,
           0.42942092460307374],
        sigma=None,
        p0={"a": 2.784851557754353, "b": 0.22115279282889388, "c": 1.2826496062765997,
            "d": 2.113302867323046},
        bounds={"a": (2.779270802942222, 3.8515563439126224),
                "d": (2.113302867323046, np.inf)}),
}


@pytest.mark.parametrize("case", sorted(BIEXP))
def test_a_biexponential_through_five_points_ends_where_fit_ends_it(case):
    c = BIEXP[case]
    x, y = np.asarray(c["x"]), np.asarray(c["y"])
    s = None if c["sigma"] is None else np.asarray(c["sigma"])
    model = "a*exp(-b*x)+c*exp(-d*x)"
    r = gradfit.fit(model, x, y, sigma=s, p0=c["p0"], bounds=c["bounds"])
    m = gradfit.fit_many(model, x, y[None], sigma=None if s is None else s[None],
                         p0=c["p0"], bounds=c["bounds"])
    assert r.converged and m.converged[0], m.message[0]
    assert m.message[0].split("; ")[-1] == r.message.split("; ")[-1]    # the same bounds held
    p = np.array([float(m.params[n][0]) for n in "abcd"])
    S = float(np.sum(((_dexp(p, x) - y) / (1.0 if s is None else s)) ** 2))
    assert S == pytest.approx(r.loss * len(x), rel=1e-9)
    # the oracle: scipy's trf with the bounds, from the answer, finds nothing lower
    assert _scipy_from(p, x, y, 1.0 if s is None else s, c["bounds"]) >= S * (1 - 1e-9)


PSEUDO_VOIGT = "A*(eta/(1+((x-mu)/w)^2) + (1-eta)*exp(-((x-mu)/w)^2*0.6931471805599453))"


def _voigt(A, eta, mu, w, x):
    u = ((x - mu) / w) ** 2
    return A * (eta / (1 + u) + (1 - eta) * np.exp(-u * 0.6931471805599453))


@pytest.mark.parametrize("seed", [11, 47])
def test_a_parameter_a_hair_inside_its_bound_on_quiet_data_is_the_free_optimum(seed):
    # eta = 1.1e-9 inside its bound at 0 (within active_set.NEAR of it), data of 2 with
    # noise of 1e-9: the gradient's cosines at the optimum are rounding (1e-7), beyond
    # STUCK_MU, and fit_many failed it ("eta on a bound where the loss falls inwards"),
    # its finish's certified end refused for a loss higher in the 8th digit
    rng = np.random.default_rng(seed)
    noise = 1e-9 * rng.choice([0.3, 1, 3])
    A, mu, w = rng.uniform(0.5, 3), rng.uniform(-1, 1), rng.uniform(0.5, 2)
    x = np.linspace(-5, 5, 41)
    y = _voigt(A, 1e-9, mu, w, x) + noise * rng.standard_normal(41)
    p0 = {"A": A * rng.uniform(0.7, 1.3), "mu": mu + rng.uniform(-0.3, 0.3),
          "w": w * rng.uniform(0.7, 1.3), "eta": rng.uniform(0.1, 0.9)}
    bounds = {"eta": (0, 1)}
    r = gradfit.fit(PSEUDO_VOIGT, x, y, p0=p0, bounds=bounds)
    m = gradfit.fit_many(PSEUDO_VOIGT, x, y[None], p0=p0, bounds=bounds)
    assert r.converged and m.converged[0], m.message[0]
    eta = float(m.params["eta"][0])
    assert eta == pytest.approx(r.params["eta"], rel=1e-6)

    def profile(e):                # the loss with eta held at e, the others refitted
        o = least_squares(lambda q: _voigt(q[0], e, q[1], q[2], x) - y,
                          [m.params[n][0] for n in ("A", "mu", "w")], **TIGHT)
        return float(np.sum(o.fun ** 2))
    # the oracle: the profile of the loss in eta is least inside the bound, near eta
    at = profile(eta)
    assert profile(0.0) > at * 1.1 and profile(2 * eta) > at * 1.1
    assert min(profile(0.8 * eta), profile(1.2 * eta)) >= at * (1 - 1e-6)
