"""A fit that ends (or starts) where the model is 0 at every point, with no slope in any
parameter: Arrhenius ``A*exp(-Ea/(R*T))`` at Ea = 1e7 underflows (exp(-4000) is 0). It was
told "the Jacobian lost rank (0 of 2): the data determine only combinations of A, Ea",
which is not what happened. Oracles: numpy's own values there (all 0), and curve_fit from
a start near the data, which gradfit matches."""
import numpy as np
import pytest
from scipy.optimize import curve_fit

import gradfit

T = np.linspace(280, 380, 12)
Y = 1e10 * np.exp(-5e4 / (8.314 * T)) * (1 + 0.01 * np.sin(T))


def arrhenius(t, A, Ea):
    return A * np.exp(-Ea / (8.314 * t))


@pytest.mark.parametrize("optimizer", ["auto", "adam"])
def test_a_model_that_vanishes_everywhere_is_told_so(optimizer):
    p0 = {"A": 1.0, "Ea": 1e7}
    assert not arrhenius(T, *p0.values()).any() and Y.all()     # 0 everywhere, data not
    r = gradfit.fit("A*exp(-Ea/(8.314*x))", T, Y, p0=p0, optimizer=optimizer)
    assert r.reason == "failed"
    assert r.message.startswith("the model is 0 at every point here (A = 1, Ea = 1e+07)")
    assert "combinations" not in r.message


def test_from_a_start_near_the_data_it_fits_as_curve_fit():
    popt, _ = curve_fit(arrhenius, T, Y, p0=[1e10, 5e4], maxfev=10000)
    r = gradfit.fit("A*exp(-Ea/(8.314*x))", T, Y, p0={"A": 1e10, "Ea": 5e4})
    assert r.converged
    np.testing.assert_allclose([r.params["A"], r.params["Ea"]], popt, rtol=1e-6)
