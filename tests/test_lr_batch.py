"""A learning-rate sweep as one batched run equals separate fits, one per rate."""
import numpy as np
import pytest

import gradfit
from gradfit import learning_rates as R
from gradfit.data import lesson_data
from gradfit.lr_batch import sweep_fits

QUAD = "a*x^2 + b*x + c"
GAUSS = "A*exp(-(x-mu)^2/(2*s^2))+C"


def _same(batched, single):
    assert batched.reason == single.reason, (batched.message, single.message)
    assert batched.steps == single.steps
    assert batched.message == single.message
    np.testing.assert_allclose(batched.history, single.history, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(batched.trajectory, single.trajectory, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(batched.grad_norms, single.grad_norms, rtol=1e-9)
    for k, v in single.params.items():
        assert batched.params[k] == pytest.approx(v, rel=1e-10, abs=1e-12)
    assert (batched.stderr is None) == (single.stderr is None)
    if single.stderr:
        for k, v in single.stderr.items():
            assert batched.stderr[k] == pytest.approx(v, rel=1e-7)
    assert batched.lr == single.lr and batched.converged == single.converged


@pytest.mark.parametrize("optimizer, loss, lrs, extra", [
    ("gd", "mse", [1e-3, 0.05, 0.4], {}),                                  # too slow, good, diverged
    ("gd", "mae", [0.01, 0.1], {"accumulate_grad": True}),
    ("momentum", "huber", [0.001, 0.02], {"nesterov": True, "schedule": "cosine"}),
    ("adam", "mse", [0.01, 0.1, 1.0], {"schedule": "onecycle"}),
    ("rmsprop", "mae", [0.003, 0.03], {"momentum": 0.5}),
])
def test_batched_sweep_equals_one_fit_per_rate(optimizer, loss, lrs, extra):
    d = lesson_data()
    kw = dict(optimizer=optimizer, loss=loss, steps=40, p0={"a": 1.1, "b": 1.1, "c": 1.1},
              **extra)
    batched = sweep_fits(QUAD, d.x, d.y, lrs, **kw)
    assert len(batched) == len(lrs)
    for lr, b in zip(lrs, batched):
        _same(b, gradfit.fit(QUAD, d.x, d.y, lr=lr, **kw))


def test_sweep_with_sigma_and_stopping_rules():
    rng = np.random.default_rng(5)
    x = np.linspace(-3, 3, 80)
    sigma = 0.05 + 0.1 * rng.random(80)
    y = 2 * np.exp(-(x - 0.2) ** 2 / 2) + 0.3 + sigma * rng.standard_normal(80)
    kw = dict(optimizer="adam", loss="mse", steps=3000, sigma=sigma, ftol=1e-9, gtol=1e-6,
              p0={"A": 1.0, "mu": 0.0, "s": 1.0, "C": 0.0})
    lrs = [0.003, 0.03, 0.3]
    batched = sweep_fits(GAUSS, x, y, lrs, **kw)
    assert {b.reason for b in batched} & {"ftol", "gtol"}        # runs stop at their own step
    assert len({b.steps for b in batched}) > 1
    for lr, b in zip(lrs, batched):
        _same(b, gradfit.fit(GAUSS, x, y, lr=lr, **kw))


def test_lr_sweep_runs_the_rates_as_one_batched_run(monkeypatch):
    d = lesson_data()
    calls = []
    monkeypatch.setattr(R, "fit", lambda *a, **k: calls.append(k))
    sweep = R.lr_sweep(QUAD, d.x, d.y, [0.001, 0.05, 0.5], steps=25, loss="mse")
    assert calls == []                       # no fit per rate
    assert [r.label for r in sweep.runs] == ["too slow", "good", "diverged"]


def test_what_the_batch_does_not_cover_runs_fit_per_rate():
    d = lesson_data()
    assert sweep_fits(QUAD, d.x, d.y, [0.01], optimizer="sgd") is None
    assert sweep_fits(QUAD, d.x, d.y, [0.01], optimizer="lbfgs") is None
    assert sweep_fits(QUAD, d.x, d.y, [0.01], bounds={"a": (0, 5)}) is None
    assert sweep_fits(QUAD, d.x, d.y, [0.01], fixed={"c": 0.5}) is None
    s = R.lr_sweep(QUAD, d.x, d.y, [0.01, 0.1], steps=10, fixed={"c": 0.5})
    assert [r.result.params["c"] for r in s.runs] == [0.5, 0.5]


def test_bad_input_still_gets_fits_messages():
    d = lesson_data()
    with pytest.raises(gradfit.InputError, match="unknown loss"):
        sweep_fits(QUAD, d.x, d.y, [0.01], loss="nope")
    with pytest.raises(gradfit.InputError, match="unknown schedule"):
        sweep_fits(QUAD, d.x, d.y, [0.01], schedule="nope")
