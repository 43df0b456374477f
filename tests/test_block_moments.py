"""LM on a long series: sums and the rank check's R factor over blocks of points, against
the closed-form Jacobian, numpy's SVD of the whole scaled Jacobian and scipy's curve_fit."""
import numpy as np
import pytest
import torch
from scipy.optimize import curve_fit

import gradfit
from gradfit.block_moments import block_moments, block_r, expression_block
from gradfit.lm import LONG
from gradfit.models import make_model
from test_out_of_core import gaussian_data as data


def gauss_jacobian(x, A, mu, s):
    e = np.exp(-(x - mu) ** 2 / (2 * s * s))
    return e, np.stack([e, A * e * (x - mu) / s ** 2, A * e * (x - mu) ** 2 / s ** 3,
                        np.ones_like(x)], 1)


def test_block_sums_and_r_factor_equal_the_whole_jacobians():
    x, y, sigma = data(5 * 1000 + 17, seed=3)      # two spans on two threads
    th = np.array([1.9, 0.45, 0.82, 0.28])
    e, jac = gauss_jacobian(x, *th[:3])
    jac = jac / sigma[:, None]
    r = (th[0] * e + th[3] - y) / sigma
    block = expression_block(make_model("A*exp(-(x-mu)^2/(2*s^2)) + C"))
    t = [torch.tensor(v) for v in (x, y, sigma, th)]
    M = block_moments(block, *t, size=1000).numpy()
    whole = np.column_stack([jac, r])
    np.testing.assert_allclose(M, whole.T @ whole, rtol=1e-12)
    d = np.linalg.norm(jac, axis=0)
    R = block_r(block, *t, torch.tensor(d), size=1000).numpy()
    np.testing.assert_allclose(np.linalg.svd(R, compute_uv=False),
                               np.linalg.svd(jac / d, compute_uv=False), rtol=1e-12)


def test_a_long_fit_by_blocks_equals_curve_fit_with_its_standard_errors():
    x, y, sigma = data(LONG + 5000, seed=1)
    p0 = {"A": 1.5, "mu": 0.3, "s": 1.2, "C": 0.2}
    r = gradfit.fit("A*exp(-(x-mu)^2/(2*s^2)) + C", x, y, sigma=sigma, p0=p0)
    popt, pcov = curve_fit(lambda x, A, mu, s, C: A * np.exp(-(x - mu) ** 2 / (2 * s * s)) + C,
                           x, y, p0=list(p0.values()), sigma=sigma, ftol=1e-15, xtol=1e-15,
                           gtol=1e-15)
    assert r.converged, r.message
    got = np.array(list(r.params.values()))
    np.testing.assert_allclose(got, popt, rtol=3e-8)
    # the last digits: the Gauss-Newton step at gradfit's answer is nothing
    e, jac = gauss_jacobian(x, *got[:3])
    step = np.linalg.lstsq(jac / sigma[:, None], (y - got[0] * e - got[3]) / sigma, rcond=None)[0]
    assert np.abs(step / got).max() < 1e-12
    np.testing.assert_allclose(list(r.stderr.values()), np.sqrt(np.diag(pcov)), rtol=1e-6)


def test_a_long_fit_that_lost_rank_is_failed_by_the_blocks_r_factor():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, LONG + 10)
    y = 3.0 * x + 0.01 * rng.standard_normal(x.size)
    r = gradfit.fit("a*b*x", x, y, p0={"a": 1.0, "b": 1.0})
    assert not r.converged and r.reason == "failed"
    assert "rank" in r.message and "a" in r.message and "b" in r.message
    assert r.params["a"] * r.params["b"] == pytest.approx(3.0, rel=1e-3)
