"""A fit whose loss keeps falling as parameters grow without bound is not called converged
(``verdict.not_determined``); a determined fit, however uncertain, still is."""
import numpy as np
import pytest

import gradfit
from gradfit.verdict import UNDETERMINED

X = np.arange(1.0, 8.0)
RUNAWAY = {   # Michaelis-Menten on data that look like a line or curve upward: V, K -> inf
    "line with noise": 2 * X + 0.1 * np.array([1, -1, 1, -1, 1, -1, 1.0]),
    "convex": 2 * X + 0.05 * X ** 2,
}


def sse(V, K, y):
    return float(np.sum((V * X / (K + X) - y) ** 2))


@pytest.mark.parametrize("case", RUNAWAY)
def test_a_runaway_is_failed_in_fit_and_fit_many(case):
    y = RUNAWAY[case]
    r = gradfit.fit("V*x/(K+x)", X, y, p0={"V": 10.0, "K": 1.0})
    V, K = r.params["V"], r.params["K"]
    # the oracle: along the valley (V and K scaled together) the loss keeps falling
    assert sse(100 * V, 100 * K, y) < sse(10 * V, 10 * K, y) < sse(V, K, y)
    assert not r.converged and r.reason == "failed"
    assert "do not determine V, K" in r.message and "without bound" in r.message
    assert r.stderr["V"] > UNDETERMINED * abs(V)           # the values are still reported
    m = gradfit.fit_many("V*x/(K+x)", X, np.stack([y, y, 3 * X / (2 + X)]),
                         p0={"V": 10.0, "K": 1.0})
    assert list(m.reason[:2]) == ["failed", "failed"]
    assert "do not determine V, K" in m.message[0]
    # a determined problem in the same batch is untouched
    assert m.converged[2] and m.params["V"][2] == pytest.approx(3.0, rel=1e-9)


def test_a_determined_fit_with_huge_standard_errors_stays_converged():
    """NIST's Wampler5 (a quintic; standard errors 10^3 times the values, the coefficients
    correlated) is exactly quadratic in its parameters: converged, in fit_many too, with
    NIST's certified values."""
    from test_nist_linear import NIST, read
    if not NIST.exists():
        pytest.skip("NIST linear files absent")
    d = read("Wampler5")
    x, y = d["x"][:, 0], d["y"]
    text = "B0 + B1*x + B2*x^2 + B3*x^3 + B4*x^4 + B5*x^5"
    m = gradfit.fit_many(text, x, y[None], p0={f"B{i}": 0.5 for i in range(6)})
    assert m.converged[0], m.message[0]
    for name, (cert, sd) in d["params"].items():
        assert sd > UNDETERMINED * abs(cert) or name in ("B0",)   # suspects indeed
        assert m.params[name][0] == pytest.approx(cert, rel=1e-5)
    r = gradfit.fit(lambda x, B0, B1, B2, B3, B4, B5:
                    B0 + B1 * x + B2 * x**2 + B3 * x**3 + B4 * x**4 + B5 * x**5, x, y,
                    optimizer="lm", p0={f"B{i}": 0.5 for i in range(6)})
    assert r.converged, r.message


def test_a_runaway_with_standard_errors_of_a_few_hundred_times_the_values_is_failed():
    """Outliers under a tiny (absolute) sigma: LM walks V and K out along the line limit
    and stops at 1e8 with standard errors some 230 times the values; the loss still falls
    along the valley (the oracle), so neither fit nor fit_many may call it converged."""
    import json
    from pathlib import Path
    d = json.loads((Path(__file__).parent / "data" / "mm_outliers_runaway.json").read_text())
    x, y, s = (np.array(d[k]) for k in ("x", "y", "sigma"))

    def S(V, K):
        return float(np.sum(((V * x / (K + x) - y) / s) ** 2))
    r = gradfit.fit(d["model"], x, y, sigma=s, p0=d["p0"], absolute_sigma=True)
    V, K = r.params["V"], r.params["K"]
    assert S(100 * V, 100 * K) < S(10 * V, 10 * K) < S(V, K)
    assert r.reason == "failed" and "do not determine V, K" in r.message
    m = gradfit.fit_many(d["model"], x, y[None], sigma=s[None], p0=d["p0"],
                         absolute_sigma=True)
    assert m.reason[0] == "failed" and "do not determine V, K" in m.message[0]


@pytest.mark.parametrize("seed, determined", [(0, False), (4, False), (3, True)])
def test_a_logistic_steeper_than_the_spacing_of_x_is_not_called_converged(seed, determined):
    # before: converged (ftol/xtol) with r = 61 +/- 2.8e11 and x0 = 5.02 +/- 9.4e7: one
    # point on the step sees the rate, the loss is flat to rounding as r -> inf along the
    # valley (profile: mse 1.5588921023680e-3 at r = 61.39, ...669e-3 at r = 80 and 300),
    # but one standard error away the model is a hard step, whose loss rose for that reason
    x = np.linspace(0, 10, 21)
    y = 2 / (1 + np.exp(-40 * (x - 5.03))) + 0.1 + \
        np.random.default_rng(seed).normal(0, 0.05, x.size)
    model, p0 = "K/(1+exp(-r*(x-x0)))+B", {"K": 1, "r": 1, "x0": 5, "B": 0}
    one = gradfit.fit(model, x, y, p0=p0)
    many = gradfit.fit_many(model, x, y[None], p0=p0)
    assert one.converged is determined and bool(many.converged[0]) is determined
    if not determined:
        assert "the data do not determine r, x0" in one.message
        assert "the data do not determine r, x0" in many.message[0]
    else:                                  # r = 10.7 +/- 4.8: a minimum, as curve_fit's
        from scipy.optimize import curve_fit
        p, cov = curve_fit(lambda t, K, r, x0, B: K / (1 + np.exp(-r * (t - x0))) + B, x, y,
                           p0=list(one.params.values()))
        np.testing.assert_allclose(list(one.params.values()), p, rtol=1e-6)
        np.testing.assert_allclose(one.stderr["r"], np.sqrt(cov[1, 1]), rtol=1e-4)


def test_errors_beyond_the_float_range_are_judged_and_quoted_in_own_units():
    """Standard errors of 1e163 (variances overflow) are judged in units near each error:
    the same verdict as the same fit at scale 1, its message quoting the values as given."""
    from gradfit.verdict import not_determined_scaled
    corr = np.array([[1.0, 0.999], [0.999, 1.0]])
    flat = lambda theta: 5.0            # noqa: E731  (the loss does not rise: not a bowl)
    said = {}
    for scale in (1.0, 1e160):
        theta, se = np.array([1.0 * scale, 2.0]), np.array([1e3 * scale, 1e3])
        said[scale] = not_determined_scaled(("a", "b"), theta, se, corr, flat, 5.0, 1.0)
    assert "(a = 1 +/- 1e+03)" in said[1.0]
    assert said[1e160] == said[1.0].replace("(a = 1 +/- 1e+03)", "(a = 1e+160 +/- 1e+163)")
