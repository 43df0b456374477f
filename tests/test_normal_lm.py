"""The out-of-core LM (``normal_lm``: moments summed over partitions) is ``fit``'s LM: on
NIST problems split into 5 partitions it reaches fit's answer to 1e-10, converged as fit,
and its failures carry ``batch_lm``'s and ``verdict``'s messages."""
import numpy as np
import pytest

import gradfit
from gradfit import batch_lm
from gradfit.models import make_model
from gradfit.normal_lm import normal_lm, partition_moments, sum_moments
from test_nist import NIST, load

# the summed moments round differently from fit's Jacobian, so where the last steps are at
# the rounding level of S, which converged rule fires first (gtol, or xtol's two) is a
# toss-up: the reasons are both converged, not compared
CASES = [("Misra1a", "start1"), ("Thurber", "start1"), ("MGH09", "start2"),
         ("Lanczos3", "start2"), ("Rat43", "start2")]
CONVERGED = ("gtol", "ftol", "xtol")


def on_partitions(model, x, y, k=5, sigma=None):
    """``theta -> Moments`` summed over ``k`` partitions, and the count of passes made."""
    edges = np.linspace(0, len(y), k + 1).astype(int)
    parts = [(x[a:b], y[a:b], None if sigma is None else sigma[a:b])
             for a, b in zip(edges[:-1], edges[1:])]
    calls = [0]

    def moments(theta):
        calls[0] += 1
        return sum_moments(partition_moments(model, *p, theta) for p in parts)
    return moments, calls


@pytest.mark.skipif(not NIST.is_dir(), reason="the NIST StRD files are not there")
@pytest.mark.parametrize("name, start", CASES)
def test_out_of_core_lm_equals_fit_on_nist(name, start):
    d, x, y, inputs = load(NIST / f"{name}.json")
    m = make_model(d["model"], inputs or ("x",))
    p0 = dict(zip(d["params"], d[start]))
    moments, calls = on_partitions(m, x, y)
    out = normal_lm(moments, np.array([p0[k] for k in m.param_names]), n=len(y),
                    names=m.param_names)
    s = gradfit.fit(d["model"], x, y, optimizer="lm", inputs=inputs, p0=p0, steps=1000)
    assert s.converged, s.message
    assert out.reason in CONVERGED and s.reason in CONVERGED
    ref = np.array([s.params[k] for k in m.param_names])
    np.testing.assert_allclose(out.theta, ref, rtol=1e-10)
    assert out.S == pytest.approx(s.loss * len(y), rel=1e-10)
    assert out.passes == calls[0] and out.steps < out.passes   # one pass per trial point


def test_non_finite_moments_at_the_start_fail_with_batch_lm_message():
    x = np.linspace(0, 3, 200)
    moments, calls = on_partitions(make_model("a*exp(b*x)"), x, 2.0 * np.exp(-x))
    out = normal_lm(moments, np.array([1.0, 400.0]), n=200)      # exp(1200) = inf
    assert out.reason == "failed" and out.covariance is None
    assert out.message == batch_lm.message(batch_lm.NONFINITE, {})
    assert out.steps == 0 and out.passes == calls[0] == 1


def test_a_lost_rank_fails_with_fits_message():
    x = np.linspace(0, 3, 200)
    y = 2.5 * np.exp(-1.3 * x) + 0.01 * np.sin(7 * x)
    model, p0 = "a*exp(-b*x) + c*exp(-b*x)", {"a": 1.0, "b": 1.0, "c": 0.5}
    m = make_model(model)
    moments, _ = on_partitions(m, x, y)
    out = normal_lm(moments, np.array([p0[k] for k in m.param_names]), n=200,
                    names=m.param_names)
    s = gradfit.fit(model, x, y, optimizer="lm", p0=p0)
    assert out.reason == s.reason == "failed"
    assert out.message == s.message and "lost rank (2 of 3)" in out.message


def test_the_step_limit_is_fits():
    x = np.linspace(0, 3, 200)
    moments, _ = on_partitions(make_model("a*exp(-b*x) + c"), x, 2.5 * np.exp(-1.3 * x) + 0.5)
    out = normal_lm(moments, np.array([1.0, 0.1, 0.0]), n=200, steps=2)
    assert (out.reason, out.steps) == ("max_steps", 2)
    assert out.message == batch_lm.message(batch_lm.MAX_STEPS, {}, 2)
