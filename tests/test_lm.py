"""Levenberg-Marquardt (gradfit.lm) against oracles: closed-form least squares, scipy's
curve_fit with weights, autograd's Jacobian; and its refusals and stop reasons."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import curve_fit

import gradfit
from gradfit import fit, loss_and_grad
from gradfit.errors import InputError
from gradfit.fit import prepare
from gradfit.lm import (OPTIONS, LevenbergMarquardt, jacobian_from_graph,
                        residuals_and_jacobian, scaled_svd)
from gradfit.optimizers import OPTIMIZERS

CONVERGED = ("ftol", "xtol", "gtol")


def decay_data(n=40, seed=1, sigma=False):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 4.0, n)
    s = 0.02 + 0.08 * rng.random(n) if sigma else None
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + (s if sigma else 0.05) * rng.standard_normal(n)
    return x, y, s


def test_lm_is_registered_and_ignores_the_learning_rate():
    spec = OPTIMIZERS["lm"]
    assert spec.default_lr == 1.0 and spec.stepper is not None
    assert set(spec.options) == set(OPTIONS)
    x, y, _ = decay_data()
    a = fit("a*exp(-b*x) + c", x, y, optimizer="lm", steps=200)
    b = fit("a*exp(-b*x) + c", x, y, optimizer="lm", lr=123.0, steps=200)
    assert a.params == b.params and a.steps == b.steps


@pytest.mark.parametrize("degree", [1, 3, 6])
def test_polynomial_equals_numpy_lstsq(degree):
    rng = np.random.default_rng(degree)
    x = np.linspace(-1.5, 2.0, 60)
    y = np.cos(2 * x) + 0.1 * rng.standard_normal(x.size)
    r = fit(f"poly:{degree}", x, y, optimizer="lm", steps=100, )
    expected = np.linalg.lstsq(np.vander(x, degree + 1, increasing=True), y, rcond=None)[0]
    assert r.converged, r.message
    np.testing.assert_allclose(list(r.params.values()), expected, rtol=1e-10, atol=1e-10)


def test_weighted_fit_equals_curve_fit_with_sigma():
    x, y, s = decay_data(sigma=True)
    r = fit("a*exp(-b*x) + c", x, y, sigma=s, optimizer="lm", steps=200,
            p0={"a": 1.0, "b": 1.0, "c": 0.0}, )
    popt, pcov = curve_fit(lambda x, a, b, c: a * np.exp(-b * x) + c, x, y, p0=[1, 1, 0],
                           sigma=s, ftol=1e-15, xtol=1e-15, gtol=0, maxfev=10_000)
    assert r.converged, r.message
    np.testing.assert_allclose(list(r.params.values()), popt, rtol=1e-8)
    np.testing.assert_allclose(list(r.stderr.values()), np.sqrt(np.diag(pcov)), rtol=1e-6)
    # the loss reported is the weighted mse, the problem's objective
    chi2 = np.sum(((popt[0] * np.exp(-popt[1] * x) + popt[2] - y) / s) ** 2)
    assert r.loss == pytest.approx(chi2 / x.size, rel=1e-12)


def test_rmse_has_the_same_minimiser_and_reports_its_own_loss():
    x, y, _ = decay_data()
    mse = fit("a*exp(-b*x) + c", x, y, loss="mse", optimizer="lm", steps=200, )
    rmse = fit("a*exp(-b*x) + c", x, y, loss="rmse", optimizer="lm", steps=200, )
    assert rmse.converged and rmse.loss_name == "rmse"
    np.testing.assert_allclose(list(rmse.params.values()), list(mse.params.values()), rtol=1e-9)
    assert rmse.loss == pytest.approx(math.sqrt(mse.loss), rel=1e-12)


@pytest.mark.parametrize("loss", ["mae", "huber"])
def test_lm_refuses_losses_that_are_not_squared_errors(loss):
    x, y, _ = decay_data()
    with pytest.raises(InputError, match="mse or rmse"):
        fit("a*exp(-b*x) + c", x, y, loss=loss, optimizer="lm")


def test_each_recorded_step_lowers_the_loss_and_reports_the_true_gradient():
    x, y, _ = decay_data()
    p0 = {"a": 1.0, "b": 3.0, "c": 0.0}
    r = fit("a*exp(-b*x) + c", x, y, optimizer="lm", p0=p0, steps=200, )
    h = r.history
    # strictly lower until the last few, which may move within the rounding of the loss
    assert np.all(np.diff(h) <= 1e-13 * h[:-1])
    assert h[-1] < 0.01 * h[0]
    loss0, grad0 = loss_and_grad("a*exp(-b*x) + c", x, y, p0)
    assert h[0] == pytest.approx(loss0, rel=1e-14)
    assert r.grad_norms[0] == pytest.approx(np.linalg.norm(list(grad0.values())), rel=1e-12)


def test_rank_deficient_model_reports_lost_rank_not_convergence():
    # a and b only appear as their product: the data fix a*b, not a and b
    x = np.linspace(0.0, 1.0, 30)
    y = 6.0 * x + 1.0 + 0.01 * np.sin(17 * x)
    p0 = {"a": 1.0, "b": 2.0, "c": 0.0}
    slope, icpt = np.polyfit(x, y, 1)
    # LM's own verdict (the fit loop's gtol, on by default, stops first and calls it converged)
    r = fit("a*b*x + c", x, y, optimizer="lm", steps=200, p0=p0, )
    assert r.reason == "failed" and not r.converged and not r.ok
    assert "lost rank" in r.message and "of a, b" in r.message
    # either way: finite values on the least-squares line, and no standard errors
    for res in (r, fit("a*b*x + c", x, y, optimizer="lm", steps=200, p0=p0)):
        assert res.stderr is None and res.covariance is None
        assert all(math.isfinite(v) for v in res.params.values())
        assert res.params["a"] * res.params["b"] == pytest.approx(slope, rel=1e-9)
        assert res.params["c"] == pytest.approx(icpt, rel=1e-9)


def test_parameter_the_model_ignores_is_named():
    x = np.linspace(0.0, 1.0, 20)
    r = fit(lambda x, a, b: a * x + 0 * b, x, 3 * x + 0.1 * np.cos(9 * x), optimizer="lm",
            steps=50, )
    assert r.reason == "failed" and "the data do not determine b" in r.message


def test_perfect_fit_and_tolerances():
    x = np.linspace(0.0, 1.0, 20)
    r = fit("a*x + b", x, 2 * x + 1, optimizer="lm", steps=50, )
    assert r.converged and r.params == pytest.approx({"a": 2.0, "b": 1.0}, rel=1e-14)
    xd, yd, _ = decay_data()
    loose = fit("a*exp(-b*x) + c", xd, yd, optimizer="lm", steps=200,
                xtol=1e-3)
    tight = fit("a*exp(-b*x) + c", xd, yd, optimizer="lm", steps=200, )
    assert loose.reason == "xtol" and loose.steps < tight.steps
    with pytest.raises(InputError, match="does not take"):
        fit("a*x + b", x, 2 * x + 1, optimizer="lm", lambda_=1.0)


def test_rosenbrock_from_the_classic_start():
    # residuals (1 - a) and 10 (b - a^2): a curved valley
    x, y = np.array([0.0, 1.0]), np.zeros(2)
    model = lambda x, a, b: torch.where(x == 0, 1 - a, 10 * (b - a**2))  # noqa: E731
    r = fit(model, x, y, optimizer="lm", steps=200, p0={"a": -1.2, "b": 1.0}, )
    assert r.converged and r.params == pytest.approx({"a": 1.0, "b": 1.0}, abs=1e-12)


def test_float32_fits():
    x, y, _ = decay_data()
    r = fit("a*exp(-b*x) + c", x, y, optimizer="lm", steps=200, dtype="float32")
    ref = fit("a*exp(-b*x) + c", x, y, optimizer="lm", steps=200)
    assert r.ok
    np.testing.assert_allclose(list(r.params.values()), list(ref.params.values()), rtol=1e-4)


def test_non_finite_start_fails_cleanly():
    x = np.linspace(1.0, 2.0, 10)
    r = fit("a*log(b*x)", x, np.log(x), optimizer="lm", p0={"a": 1.0, "b": -1.0}, steps=20)
    assert not r.converged and r.reason in ("failed", "diverged")


# ---- the pieces -------------------------------------------------------------------------

def test_jacobian_equals_autograd_jacfwd_also_batched():
    x, y, _ = decay_data()
    prob = prepare("a*exp(-b*x) + c*x^2", x, y)
    theta = torch.tensor([1.5, 0.7, -0.2], dtype=torch.float64)
    r, jac = residuals_and_jacobian(prob.residuals, theta)
    expected = torch.func.jacfwd(prob.residuals)(theta)
    torch.testing.assert_close(jac, expected, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(r, prob.residuals(theta))
    batch = torch.stack([theta, 2 * theta]).requires_grad_(True)
    jb = jacobian_from_graph(prob.residuals(batch), batch)
    assert jb.shape == (2, x.size, 3)
    torch.testing.assert_close(jb[1], torch.func.jacfwd(prob.residuals)(2 * theta))


@pytest.mark.parametrize("n", [30, 3000])      # by the SVD of J D^-1, and by its QR first
def test_scaled_svd_factors_the_column_scaled_jacobian(n):
    rng = np.random.default_rng(0)
    jac = torch.tensor(rng.standard_normal((n, 4)) * [1, 1e3, 1e-4, 5], dtype=torch.float64)
    r = torch.tensor(rng.standard_normal(n), dtype=torch.float64)
    d = torch.linalg.vector_norm(jac, dim=0)
    s, vh, c = scaled_svd(jac, d, r)
    u, s_ref, vh_ref = np.linalg.svd((jac / d).numpy(), full_matrices=False)
    np.testing.assert_allclose(s.numpy(), s_ref, rtol=1e-12)
    # singular vectors up to sign: V^T's rows and U^T r flip together
    sign = np.sign((vh.numpy() * vh_ref).sum(1))
    np.testing.assert_allclose(vh.numpy() * sign[:, None], vh_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c.numpy() * sign, u.T @ r.numpy(), rtol=1e-10, atol=1e-12)
    # the Gauss-Newton step from the SVD solves the normal equations J^T J delta = -J^T r
    delta = -(vh.T @ (c / s)) / d
    torch.testing.assert_close(jac.T @ jac @ delta, -jac.T @ r, rtol=1e-9, atol=1e-9)


def test_stepper_counts_and_stops_on_its_own():
    x, y, _ = decay_data()
    prob = prepare("a*exp(-b*x) + c", x, y)
    theta = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64, requires_grad=True)
    st = LevenbergMarquardt(prob, theta, options=OPTIONS)
    for _ in range(100):
        st.step()
        if st.stop:
            break
    assert st.stop[0] in CONVERGED and st.nfev >= st.njev > 1
    assert gradfit.fit("a*exp(-b*x) + c", x, y, optimizer="lm").converged


def test_more_parameters_than_points_interpolates_and_says_so():
    x = np.linspace(-1.0, 1.0, 6)
    y = np.array([0.3, -0.2, 0.5, 0.1, -0.4, 0.2])
    r = fit("mlp:4:tanh", x, y, optimizer="lm", steps=500, )   # 13 parameters
    assert r.loss < 1e-20 and all(math.isfinite(v) for v in r.params.values())
    assert r.reason == "failed" and "lost rank (6 of 13)" in r.message
    assert r.stderr is None


@pytest.mark.parametrize("model", ["poly:3", "a + b*x + c*x^2 + d*x^3 + sin(x)"])
def test_a_linear_model_is_one_exact_solve_with_sigma_and_fixed(model):
    x = np.linspace(-9, -3, 40)
    sigma = 0.5 + 0.1 * np.abs(np.cos(x))
    offset = np.sin(x) if "sin" in model else 0.0
    y = 1 + 0.5 * x - 0.2 * x**2 + 0.01 * x**3 + offset + 0.05 * np.cos(11 * x)
    names = ["c0", "c1", "c2", "c3"] if model.startswith("poly") else ["a", "b", "c", "d"]
    r = gradfit.fit(model, x, y, sigma=sigma, fixed={names[1]: 0.4})
    design = np.c_[np.ones_like(x), x**2, x**3] / sigma[:, None]
    want = np.linalg.lstsq(design, (y - offset - 0.4 * x) / sigma, rcond=None)[0]
    got = [r.params[n] for n in (names[0], names[2], names[3])]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert r.converged and "exact least-squares solution" in r.message and r.steps == 1


@pytest.mark.parametrize("name", ["Misra1a", "Thurber", "MGH09", "BoxBOD"])
def test_the_numpy_and_torch_state_reach_the_same_certified_answer(name, monkeypatch):
    """One fit keeps LM's small state in numpy (array_ns); torch's tensors run the same
    formulas. Both reach NIST's certified values from NIST's second start."""
    import json
    from pathlib import Path
    import gradfit.array_ns as ns
    path = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nist" / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"the NIST StRD files are not at {path.parent}")
    d = json.loads(path.read_text())
    x, y = np.asarray(d["x"], float), np.asarray(d["y"], float)
    runs = {}
    for limit in (ns.NUMPY_MAX_BATCH, 0):            # numpy state, then torch state
        monkeypatch.setattr(ns, "NUMPY_MAX_BATCH", limit)
        r = fit(d["model"], x, y, optimizer="lm", p0=dict(zip(d["params"], d["start2"])))
        assert r.converged, r.message
        runs[limit] = np.array([r.params[p] for p in d["params"]])
    want = np.array(d["certified"])
    for got in runs.values():
        np.testing.assert_allclose(got, want, rtol=1e-8)
    np.testing.assert_allclose(runs[0], runs[ns.NUMPY_MAX_BATCH], rtol=1e-9)


def test_a_batch_whose_tail_moves_to_numpy_ends_as_torch_alone(monkeypatch):
    """A large batch starts in torch; once its running tail is small it moves to numpy
    (array_ns). The answers are torch's to rounding, and come back as torch tensors."""
    import gradfit.array_ns as ns
    from gradfit.batch_lm import CODES, batch_lm
    x = torch.linspace(0, 3, 30, dtype=torch.float64)
    k = torch.linspace(0.2, 3.0, 40, dtype=torch.float64)
    y = 2.5 * torch.exp(-k[:, None] * x) + 0.01 * torch.sin(7 * x)

    def fn(th, idx):
        return th[:, :1] * torch.exp(-th[:, 1:] * x) - y[idx]
    start = torch.tensor([[1.0, 1.0]], dtype=torch.float64).repeat(40, 1)
    outs = {}
    for limit in (0, 8):                 # torch throughout; torch, then numpy for the tail
        monkeypatch.setattr(ns, "NUMPY_MAX_BATCH", limit)
        outs[limit] = batch_lm(fn, start)
    a, b = outs[0], outs[8]
    assert all(isinstance(v, torch.Tensor) for v in b)
    assert {CODES[c] for c in b.code.tolist()} <= {"gtol", "ftol", "xtol"}
    torch.testing.assert_close(b.theta, a.theta, rtol=1e-9, atol=0)
    assert int(a.steps.max()) > int(a.steps.min())     # problems did stop at different times
