"""A gradient method's stop is called converged only at a stationary point: the gradient
relative to its scale (the largest cosine between residuals and a Jacobian column)."""
import numpy as np
import pytest

import gradfit


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs", "rmsprop"])
def test_a_plateau_is_not_called_converged(optimizer):
    # from b = 0.1 the fit drifts to b < 0: the model is zero but at x = 0, the loss
    # hardly moves (279 where the minimum is 0) and the loss-change rule fires
    x = np.linspace(0, 1000, 50)
    y = 2 * np.exp(0.003 * x)
    r = gradfit.fit("a*exp(b*x)", x, y, p0={"a": 1, "b": 0.1}, optimizer=optimizer,
                    steps=3000)
    exact = gradfit.fit("a*exp(b*x)", x, y, p0={"a": 1, "b": 0.001})
    assert exact.converged and exact.loss < 1e-20 < r.loss
    assert not r.converged and r.reason == "failed"
    assert r.message.startswith("the loss stopped changing, but not at a minimum")


@pytest.mark.parametrize("optimizer", ["gd", "adam", "lbfgs", "momentum", "rmsprop"])
@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_converged_exactly_when_at_the_minimum(optimizer, loss):
    # the verdict against the exact method's loss: every stop at the minimum stays
    # converged; rmsprop's constant steps bounce across huber's minimum 14% above it and
    # are not called converged
    x = np.linspace(-3, 3, 40)
    y = x ** 2 + 0.1 * np.sin(5 * x)
    r = gradfit.fit("a*x^2 + b*x + c", x, y, optimizer=optimizer, loss=loss, steps=5000)
    best = gradfit.fit("a*x^2 + b*x + c", x, y, loss=loss)
    at_minimum = r.loss <= best.loss * (1 + 1e-6)
    assert r.converged == at_minimum, r.message
    assert at_minimum or (optimizer, loss) == ("rmsprop", "huber")


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_fit_many_judges_each_stop_as_fit_does(optimizer):
    # a plateau series beside a well-posed one (its x in thousands): each gets fit's
    # verdict and message, alone
    x = np.linspace(0, 1000, 50)
    xs = np.stack([x, x / 1000])
    ys = np.stack([2 * np.exp(0.003 * x), 2 * np.exp(-0.003 * x) + 0.01 * np.sin(x / 50)])
    b0 = [0.1, -1.0]
    many = gradfit.fit_many("a*exp(b*x)", xs, ys, p0={"a": 1, "b": b0}, optimizer=optimizer,
                            steps=3000)
    assert many.reason[0] == "failed"
    assert adam_converges_the_other(optimizer, many)
    for i in range(2):
        one = gradfit.fit("a*exp(b*x)", xs[i], ys[i], p0={"a": 1, "b": b0[i]},
                          optimizer=optimizer, steps=3000)
        assert many.reason[i] == one.reason and many.message[i] == one.message


def adam_converges_the_other(optimizer, many) -> bool:
    return optimizer != "adam" or bool(many.converged[1])


def test_models_with_kinks_are_not_judged_by_their_gradient():
    # a ReLU sum, and abs/max in an expression, can stop on a kink with one-sided slopes
    from gradfit.models import make_model
    from gradfit.stationary import smooth
    assert [smooth(make_model(m)) for m in ("A*exp(-k*x) + C", "a*abs(x - b)", "relu:4",
                                            "max(a*x, b)", "mlp:4")] == [True] + [False] * 4


def _relu_sum(x, q):
    k = (len(q) - 1) // 2
    return sum(np.maximum(q[2 * j] * x + q[2 * j + 1], 0) for j in range(k)) + q[-1]


def test_relu_claims_by_lbfgs_are_local_minima():
    """A ReLU sum's gradient need not vanish at a minimum on a kink, so it was never judged:
    L-BFGS stopped by ftol with a point 1e-5 of a parameter away 2e-5 to 4e-4 lower (35 of
    107 claims). Now a stop whose gradient does not vanish is looked around, and refused
    where a short step lowers the loss. The oracle: 400 random directions at 1e-3, 1e-5
    and 1e-7 of each parameter's size, in numpy."""
    refused = wrong = 0
    for seed in range(4):
        rng = np.random.default_rng(seed)
        x = np.sort(rng.uniform(-2, 2, 60))
        for y in (np.sin(2 * x), x ** 2, np.abs(x - 0.3)):
            y = y + 0.1 * rng.standard_normal(60)
            for k in (3, 5):
                r = gradfit.fit(f"relu:{k}", x, y, starts=1, seed=seed, steps=200)
                if not r.converged:
                    refused += r.message.startswith("the loss stopped changing, but not at "
                                                    "a minimum: a short step")
                    continue
                q = np.array(list(r.params.values()))
                base = np.mean((_relu_sum(x, q) - y) ** 2)
                assert base == pytest.approx(r.loss, rel=1e-9)
                dirs = rng.standard_normal((400, len(q)))
                dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
                size = np.maximum(np.abs(q), 1e-3)
                low = min(np.mean((_relu_sum(x, q + t * v * size) - y) ** 2)
                          for v in dirs for t in (1e-3, 1e-5, 1e-7))
                wrong += low < base * (1 - 1e-5)
    assert wrong == 0 and refused >= 3


def test_fit_many_judges_a_relu_stop_as_fit_does():
    rng = np.random.default_rng(2)
    x = np.sort(rng.uniform(-2, 2, 60))
    Y = np.stack([np.sin(2 * x), x ** 2, np.abs(x - 0.3)]) + 0.1 * rng.standard_normal((3, 60))
    m = gradfit.fit_many("relu:3", x, Y, optimizer="adam", lr=0.01, seed=2)
    for i in range(3):
        r = gradfit.fit("relu:3", x, Y[i], starts=1, optimizer="adam", lr=0.01, seed=2)
        assert (m.reason[i], m.message[i]) == (r.reason, r.message)
        assert m.loss[i] == pytest.approx(r.loss, rel=1e-9)


def _decays_with_outliers(seed, B=1):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 4, 40)
    Y = np.stack([2 * np.exp(-0.8 * x) + 0.3 + 0.05 * rng.standard_normal(40) for _ in range(B)])
    for row in Y:
        row[rng.choice(40, 3)] += 1.0
    return x, Y


@pytest.mark.parametrize("seed", range(3))
def test_mae_by_lbfgs_is_not_called_converged_above_the_exact_minimum(seed):
    """mae has no gradient at its minimum, so a gradient method's ftol stop was never
    judged: L-BFGS stopped 1e-5 to 7e-4 above the exact (IRLS, certified) minimum on six of
    six such fits. A look around now finds the lower point."""
    x, Y = _decays_with_outliers(seed)
    kw = dict(loss="mae", p0={"a": 1, "k": 1, "c": 0})
    exact = gradfit.fit("a*exp(-k*x)+c", x, Y[0], **kw)
    r = gradfit.fit("a*exp(-k*x)+c", x, Y[0], optimizer="lbfgs", **kw)
    assert exact.converged and r.loss > exact.loss * (1 + 1e-7)
    assert not r.converged and r.reason == "failed"
    assert "mae's kinks stalled the optimizer" in r.message
    assert "optimizer='auto'" in r.message


def test_mae_by_adam_in_fit_many_is_judged_as_in_fit():
    x, Y = _decays_with_outliers(0, B=4)
    kw = dict(loss="mae", optimizer="momentum", lr=0.01, steps=3000, ftol=1e-7,
              p0={"a": 1, "k": 1, "c": 0})
    m = gradfit.fit_many("a*exp(-k*x)+c", x, Y, **kw)
    failed = 0
    for i in range(4):
        r = gradfit.fit("a*exp(-k*x)+c", x, Y[i], **kw)
        assert (m.reason[i], m.message[i]) == (r.reason, r.message)
        failed += r.reason == "failed"
        exact = gradfit.fit("a*exp(-k*x)+c", x, Y[i], loss="mae", p0=kw["p0"])
        assert r.converged or r.loss > exact.loss     # every one refused is above the minimum
    assert failed >= 2


def test_a_flat_valley_is_not_called_converged_by_a_small_cosine():
    """L-BFGS stopped by ftol on a dexp's long, nearly flat valley: the largest cosine
    1e-7 (stationary, by the cosine test), the loss 0.5% above the minimum LM reaches from
    that very point. The Gauss-Newton gain (0 exactly where J^T r = 0) sees it."""
    from pathlib import Path
    import json
    d = json.loads((Path(__file__).parent / "data" / "dexp_flat_valley.json").read_text())
    x, y, sigma = (np.asarray(d[k], float) for k in ("x", "y", "sigma"))
    r = gradfit.fit(d["model"], x, y, sigma=sigma, p0=d["p0"], optimizer="lbfgs")
    assert not r.converged and r.reason == "failed"
    assert "a Gauss-Newton step still predicts a fall" in r.message
    on = gradfit.fit(d["model"], x, y, sigma=sigma, p0=r.params)      # the oracle: LM
    assert on.converged and on.loss < r.loss * (1 - 1e-3)
    # a stop at the minimum stays converged: L-BFGS from LM's answer
    again = gradfit.fit(d["model"], x, y, sigma=sigma, p0=on.params, optimizer="lbfgs")
    assert again.converged and again.loss == pytest.approx(on.loss, rel=1e-9)


def test_a_flat_valley_by_huber_is_not_called_converged():
    """The same valley under huber: the Gauss-Newton gain of IRLS's weighted problem (whose
    gradient is the Huber loss's) sees it; L-BFGS had called it ftol, 1.6e-4 above the loss
    IRLS reaches from that point."""
    from pathlib import Path
    import json
    d = json.loads((Path(__file__).parent / "data" / "dexp_flat_valley.json").read_text())
    x, y, sigma = (np.asarray(d[k], float) for k in ("x", "y", "sigma"))
    kw = dict(sigma=sigma, loss="huber", delta=1.0)
    r = gradfit.fit(d["model"], x, y, p0=d["p0"], optimizer="lbfgs", **kw)
    assert not r.converged and "a Gauss-Newton step still predicts a fall" in r.message
    on = gradfit.fit(d["model"], x, y, p0=r.params, **kw)          # the oracle: IRLS
    assert on.loss < r.loss * (1 - 1e-4)


def test_an_mae_stop_on_one_kink_is_looked_along_it():
    """L-BFGS by mae stopped on an exponential decay where one residual is zero: the loss
    rises along the gradient, every axis and the random directions (each crosses the
    kink) and falls only along the kink line, to a minimum 2.4e-4 lower. The oracle: IRLS
    (certified) from the same point, and scipy's Nelder-Mead."""
    from scipy.optimize import minimize
    rng = np.random.default_rng(5)
    x = np.linspace(0.1, 3, 30)
    y = 2 * np.exp(-1.5 * x) + 0.3 + 0.02 * rng.standard_normal(30)
    r = gradfit.fit("A*exp(-k*x)", x, y, loss="mae", optimizer="lbfgs")
    assert not r.converged and "a kink" in r.message
    exact = gradfit.fit("A*exp(-k*x)", x, y, loss="mae", p0=r.params)
    nm = minimize(lambda p: np.mean(np.abs(p[0] * np.exp(-p[1] * x) - y)),
                  list(r.params.values()), method="Nelder-Mead",
                  options=dict(xatol=1e-12, fatol=1e-15))
    assert exact.converged and exact.loss < r.loss * (1 - 1e-4)
    assert nm.fun < r.loss * (1 - 1e-4)
    # from the minimum itself, L-BFGS's claim stands
    again = gradfit.fit("A*exp(-k*x)", x, y, loss="mae", optimizer="lbfgs", p0=exact.params)
    assert again.loss <= exact.loss * (1 + 1e-8)
