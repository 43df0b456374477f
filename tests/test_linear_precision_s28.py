"""The exact solve of a model linear in its parameters (``linear_lsq``): in float32 it is
as accurate as the data's own rounding allows (the factorisation runs in float64), and a
start that already is the least-squares solution is kept rather than traded for a solve a
rounding above it (which the fit loop had called diverged).

Oracles: ``numpy.linalg.lstsq`` in float64 on the float32-rounded design and data (the
problem float32 poses), the closed-form covariance of that solve, and exact data whose
solution is known."""
from __future__ import annotations

import numpy as np
import pytest

import gradfit


def _float32_problem(design, x, y):
    """The least-squares problem float32 poses: its design columns evaluated in float32
    from float32 x, its data rounded to float32; solved in float64 (the oracle)."""
    x32 = x.astype(np.float32)
    a = np.stack([c(x32) for c in design], 1).astype(np.float64)
    b = y.astype(np.float32).astype(np.float64)
    theta = np.linalg.lstsq(a, b, rcond=None)[0]
    rss = float(np.sum((a @ theta - b) ** 2))
    cov = np.linalg.inv(a.T @ a) * rss / (len(b) - a.shape[1])
    return theta, np.sqrt(np.diag(cov))


CASES = {
    # a quadratic of condition 44 whose noise is ten roundings of y: the float32 QR had
    # put it 6.3 standard errors from this solution, at 3.4 times its sum of squares
    "quadratic": ("a + b*x + c*x^2",
                  (lambda x: np.ones_like(x), lambda x: x, lambda x: x * x),
                  lambda x: 0.0054067 - 0.06717 * x + 0.10431 * x * x, 3e-9, 0.64),
    # condition 2.5: 2.6 standard errors off
    "sine-cosine": ("a*sin(x) + b*cos(x) + c",
                    (np.sin, np.cos, lambda x: np.ones_like(x)),
                    lambda x: 1.0356 * np.sin(x) + 2.0712 * np.cos(x) + 0.3107, 1.9e-6, 4.0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_linear_fit_is_the_solution_of_its_own_data(name):
    text, design, truth, noise, span = CASES[name]
    rng = np.random.default_rng(15)
    worst = 0.0
    for _ in range(6):
        x = np.sort(rng.uniform(0, span, 35))
        y = truth(x) + noise * rng.normal(size=x.size)
        r = gradfit.fit(text, x, y, dtype="float32")
        assert r.converged, r.message
        theta, se = _float32_problem(design, x, y)
        got = np.array(list(r.params.values()))
        worst = max(worst, float(np.max(np.abs(got - theta) / se)))
        # its standard errors are those of that solution (the residuals, computed in
        # float32, hold a rounding of y against a noise of about ten)
        stderr = np.array(list(r.stderr.values()))
        assert np.allclose(stderr, se, rtol=0.25), (stderr, se)
    # float32 rounds the parameters themselves (a: 0.2 of its standard error here)
    assert worst < 0.5, worst


def test_float32_linear_fit_matches_float64_where_float32_suffices():
    """Noise far above float32's rounding: the float32 answer and its standard errors are
    the float64 fit's to float32's digits."""
    rng = np.random.default_rng(3)
    x = np.linspace(0, 2, 40)
    y = 1.5 - 0.7 * x + 0.25 * x * x + 1e-3 * rng.normal(size=x.size)
    sigma = 1e-3 * 10 ** rng.uniform(-0.5, 0.5, x.size)
    r64 = gradfit.fit("a + b*x + c*x^2", x, y, sigma=sigma)
    r32 = gradfit.fit("a + b*x + c*x^2", x, y, sigma=sigma, dtype="float32")
    assert r32.converged and r64.converged
    se = np.array(list(r64.stderr.values()))
    off = (np.array(list(r32.params.values())) - np.array(list(r64.params.values()))) / se
    assert np.max(np.abs(off)) < 1e-3, off
    assert np.allclose(list(r32.stderr.values()), se, rtol=1e-4)


@pytest.mark.parametrize("scale", [1e9, 1e12])
def test_an_exact_start_is_kept_not_called_diverged(scale):
    """A start that fits exactly (loss 0) stays: the solve from zero lands a rounding
    above it, and the fit loop had called that 'diverged at step 1' with advice to rescale."""
    x = np.arange(20.0)
    y = scale * (3 + 7 * x + 0.5 * x * x)
    r = gradfit.fit("a + b*x + c*x^2", x, y, p0={"a": 3 * scale, "b": 7 * scale, "c": 0.5 * scale})
    assert r.converged, r.message
    assert r.loss == 0.0
    assert r.params == {"a": 3 * scale, "b": 7 * scale, "c": 0.5 * scale}


def test_wampler1_in_float32_is_exact():
    """NIST's Wampler1, y = 1 + x + ... + x^5 exactly (integers float32 holds): the
    float32 fit had been 'diverged' (its solve 0.26 above the exact start's 0)."""
    x = np.arange(21.0)
    y = sum(x ** k for k in range(6))
    r = gradfit.fit("B0 + B1*x + B2*x^2 + B3*x^3 + B4*x^4 + B5*x^5", x, y, dtype="float32")
    assert r.converged, r.message
    assert r.loss == 0.0
    assert all(v == 1.0 for v in r.params.values()), r.params


def test_float32_rank_is_still_judged_at_float32_precision():
    """A quadratic in raw x over [1000, 1010]: its columns are separable in float64, not
    in float32; the float64 factorisation must not hide that."""
    rng = np.random.default_rng(0)
    x = 1000 + np.linspace(0, 10, 30)
    y = 1 + 2e-3 * (x - 1000) + 3e-4 * (x - 1000) ** 2 + rng.normal(0, 1e-3, 30)
    r32 = gradfit.fit("a + b*x + c*x^2", x, y, dtype="float32")
    assert r32.reason == "failed" and "lost rank" in r32.message, r32.message
    assert gradfit.fit("a + b*x + c*x^2", x, y).converged


def test_standard_errors_from_the_residual_norm_do_not_underflow():
    """Residuals of 1e-201 square to 0 in float64; from their norm the standard errors are
    the closed form's 2.5e-202 (``fit`` had reported 0.0: ``stderr(rss=0)``)."""
    import torch

    from gradfit.batch_lm import data_norm
    from gradfit.fit_prepare import prepare
    from gradfit.linear_lsq import linear_least_squares
    rng = np.random.default_rng(1)
    x = np.linspace(0, 1, 20)
    y = 1e-200 * (1 + 2 * x + rng.normal(0, 0.1, 20))
    problem = prepare("a + b*x", x, y)
    solution = linear_least_squares(problem, torch.ones(2, dtype=torch.float64))
    residuals = problem.residuals(solution.theta)
    a = np.c_[np.ones(20), x]
    scaled = y * 1e200                      # the oracle, at a scale where squares exist
    theta = np.linalg.lstsq(a, scaled, rcond=None)[0]
    rss = float(np.sum((a @ theta - scaled) ** 2))
    want = np.sqrt(np.diag(np.linalg.inv(a.T @ a)) * rss / 18) * 1e-200
    got = solution.stderr(float(residuals.square().sum()), rnorm=float(data_norm(residuals)))
    np.testing.assert_allclose(got, want, rtol=1e-10)
