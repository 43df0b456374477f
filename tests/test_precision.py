"""A float32 least-squares fit is not called converged where float32's normal equations
lost the way on (``precision.short_of_minimum``). Oracles: float64 LM from the float32 end
point on the same (float32-rounded) data, which still lowers the loss a long way; a
well-conditioned float32 fit, which stays converged and agrees with float64."""
import json
from pathlib import Path

import numpy as np
import pytest

import gradfit

# a*exp(b*x)+c crawling towards a line (tiny sigma): float32 ended "at the rounding level"
X = np.array([0.30752123, 0.58769901, 0.94496203, 2.57934854])
Y = np.array([1.51526391, 1.71141962, 1.96146909, 3.10553833])
SIGMA = np.array([1.56324641e-05, 1.98958784e-05, 2.54039910e-05, 1.80872128e-05])
P0 = {"a": 2.048050545816134, "b": 0.6928253459419308, "c": 0.0}
MODEL = "a*exp(b*x)+c"


def _f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def test_float32_that_stopped_short_is_not_converged_in_fit_and_fit_many():
    kw = dict(sigma=SIGMA, p0=P0, absolute_sigma=True, dtype="float32")
    r = gradfit.fit(MODEL, X, Y, **kw)
    m = gradfit.fit_many(MODEL, X, Y[None], sigma=SIGMA[None], absolute_sigma=True,
                         p0={k: [v] for k, v in P0.items()}, dtype="float32")
    for converged, reason, message in ((r.converged, r.reason, r.message),
                                       (m.converged[0], m.reason[0], m.message[0])):
        assert not converged and reason == "failed"
        assert message.startswith("float32 cannot resolve this minimum")
        assert "dtype='float64'" in message
    # the oracle: float64 from the float32 end, on the float32-rounded data, goes on down
    on = gradfit.fit(MODEL, _f32(X), _f32(Y), sigma=_f32(SIGMA), p0=r.params, steps=50,
                     absolute_sigma=True)
    assert on.loss < 0.5 * r.loss


@pytest.mark.parametrize("name, start", [("Lanczos2", "start1"), ("Lanczos1", "start1"),
                                         ("Lanczos3", "start2")])
def test_lanczos_in_float32_is_refused_where_float64_goes_on(name, start):
    """Lanczos1 start1 and Lanczos3 start2 passed the bar of S's rounding level (LRE 0)."""
    nist = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nist" / f"{name}.json"
    if not nist.exists():
        pytest.skip("the NIST data are not here")
    d = json.loads(nist.read_text())
    x, y = np.asarray(d["x"], float), np.asarray(d["y"], float)
    r = gradfit.fit(d["model"], x, y, p0=dict(zip(d["params"], d[start])), dtype="float32")
    assert not r.converged and r.message.startswith("float32 cannot resolve")
    on = gradfit.fit(d["model"], _f32(x), _f32(y), p0=r.params)
    assert on.converged and on.loss < 0.5 * r.loss


def test_a_dexp_with_a_tiny_sigma_16_times_above_its_minimum_is_refused():
    """Weighted data whose norm |y/sigma| (1e6) dwarfs the residuals': S's rounding level
    (2 |r| eps |y|) let float32's "rounding level" end at 16 times the minimum's loss
    pass (sweep --seed 22, case 1); the bar is now what rounding leaves of the gain at a
    true minimum."""
    d = json.loads((Path(__file__).parent / "data" / "dexp_tiny_sigma.json").read_text())
    x, y, sigma = (np.asarray(d[k], float) for k in ("x", "y", "sigma"))
    r = gradfit.fit(d["model"], x, y, sigma=sigma, p0=d["p0"], dtype="float32")
    m = gradfit.fit_many(d["model"], x, y[None], sigma=sigma[None], p0=d["p0"],
                         dtype="float32")
    assert not r.converged and r.message.startswith("float32 cannot resolve")
    assert not m.converged[0] and m.message[0].startswith("float32 cannot resolve")
    on = gradfit.fit(d["model"], _f32(x), _f32(y), sigma=_f32(sigma), p0=r.params)
    assert on.converged and on.loss < 0.2 * r.loss
    # float64 converges there from the same start (the data's float32 rounding moves the
    # minimum's loss by 4e-4 of itself)
    r64 = gradfit.fit(d["model"], x, y, sigma=sigma, p0=d["p0"])
    assert r64.converged and r64.loss == pytest.approx(on.loss, rel=1e-3)


def test_a_well_conditioned_float32_fit_stays_converged():
    x = np.linspace(-5, 5, 25)
    rng = np.random.default_rng(4)
    y = 2 * np.exp(-(x - 0.3) ** 2 / 2) + 0.5 + 0.05 * rng.standard_normal(25)
    p0 = {"A": 1.5, "mu": 0.0, "s": 1.0, "C": 0.3}
    model = "A*exp(-(x-mu)^2/(2*s^2))+C"
    r32 = gradfit.fit(model, x, y, p0=p0, dtype="float32")
    m32 = gradfit.fit_many(model, x, y[None], p0={k: [v] for k, v in p0.items()},
                           dtype="float32")
    r64 = gradfit.fit(model, x, y, p0=p0)
    assert r32.converged and m32.converged[0] and r64.converged
    for k in p0:
        assert r32.params[k] == pytest.approx(r64.params[k], rel=1e-4, abs=1e-5)


def test_a_float32_fit_that_finds_no_step_says_float64_may_tell():
    # an exponential over x in [1000, 1100]: float32 ends "no step lowered the loss ...
    # the model may not be smooth here"; float64 converges (the oracle: its loss is lower)
    tt = np.linspace(1000, 1100, 40)
    y = 5 * np.exp(-0.05 * (tt - 1000)) + 1 + np.random.default_rng(1).normal(0, 0.05, 40)
    p0 = {"A": 5 * np.exp(0.04 * 1000), "k": 0.04, "C": 0}
    r64 = gradfit.fit("A*exp(-k*x)+C", tt, y, p0=p0)
    r32 = gradfit.fit("A*exp(-k*x)+C", tt, y, p0=p0, dtype="float32")
    m32 = gradfit.fit_many("A*exp(-k*x)+C", tt, y[None], p0=p0, dtype="float32")
    assert r64.converged and r64.loss < r32.loss
    for reason, text in ((r32.reason, r32.message), (m32.reason[0], m32.message[0])):
        assert reason == "failed" and text.endswith("expected a fit in float64 "
                                                    "(dtype='float64') to tell")
    assert "float32" not in r64.message
