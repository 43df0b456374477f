"""Optimizers, schedules and learning-rate sweeps: auto's rate and schedule, sweep labels at
the optimum, and fit as the one-problem case of the batched gradient engine."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import gradfit
from gradfit import learning_rates as R
from gradfit.cli import main
from gradfit.lr_batch import sweep_fits
from gradfit.optimizers import OPTIMIZERS, SCHEDULES, batched_optimizers

D = gradfit.lesson_data()
QUAD = "a*x^2 + b*x + c"
P0 = {"a": 1.1, "b": 1.1, "c": 1.1}


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def same(r, params: dict):
    return list(r.params.values()) == [params[k] for k in r.params]


# 1. auto runs the method it picks at the rate and schedule given ----------------------------

# a ReLU sum is flexible: auto fits it by L-BFGS; an MLP of over 300 parameters under mae, by
# Adam (choose_method); the oracle is that method named, at the same rate and schedule
X = np.linspace(-2, 2, 60)
Y = np.abs(X) + 0.1 * np.sin(7 * X)
AUTO_CASES = [("relu:2", "mse", "lbfgs", 0.3, "cosine"),
              ("mlp:20,20", "mae", "adam", 0.003, "step")]


@pytest.mark.parametrize("model, loss, method, lr, schedule", AUTO_CASES)
def test_auto_runs_its_choice_at_the_given_rate_and_schedule(model, loss, method, lr, schedule):
    kw = dict(loss=loss, steps=15, starts=1, seed=2)
    auto = gradfit.fit(model, X, Y, optimizer="auto", lr=lr, schedule=schedule, **kw)
    named = gradfit.fit(model, X, Y, optimizer=method, lr=lr, schedule=schedule, **kw)
    assert auto.optimizer == f"auto ({method})"
    assert same(auto, named.params) and np.array_equal(auto.history, named.history)
    assert auto.lr == lr and auto.config.lr == lr and auto.config.schedule == schedule
    # without a rate: the chosen method's own default, as before
    plain = gradfit.fit(model, X, Y, optimizer="auto", **kw)
    own = gradfit.fit(model, X, Y, optimizer=method, **kw)
    assert plain.lr == OPTIMIZERS[method].default_lr and same(plain, own.params)


def test_auto_on_a_method_without_a_rate_still_ignores_it_and_says_so(capsys):
    given = gradfit.fit("a*x+b", D.x, D.y, lr=0.3, schedule="cosine")
    plain = gradfit.fit("a*x+b", D.x, D.y)
    assert given.optimizer == "auto (lm)" and same(given, plain.params)
    code, _, err = run(capsys, "fit", "lesson", "-m", "a*x+b", "--lr", "0.3", "--schedule",
                       "cosine")
    assert code == 0 and "--lr and --schedule not used" in err and "(lm)" in err


def test_the_command_line_runs_autos_choice_at_the_given_rate(capsys, tmp_path):
    data = tmp_path / "d.csv"
    np.savetxt(data, np.c_[X, Y], delimiter=",", header="x,y", comments="")
    code, out, err = run(capsys, "fit", data, "-m", "relu:2", "--lr", "0.3", "--schedule",
                         "cosine", "--steps", "15", "--starts", "1", "--seed", "2",
                         "--json", "-")
    assert code in (0, 1) and "internal error" not in err
    got = json.loads(out)
    py = gradfit.fit("relu:2", X, Y, lr=0.3, schedule="cosine", steps=15, starts=1, seed=2)
    assert got["params"] == py.params and got["lr"] == 0.3
    assert got["config"]["lr"] == 0.3 and got["config"]["schedule"] == "cosine"
    code, _, err = run(capsys, "fit", data, "-m", "relu:2", "--lr", "0.3", "--schedule",
                       "cosine", "--steps", "15", "--starts", "1", "--seed", "2")
    assert "not used" not in err


# 2. a learning-rate sweep that starts at the minimum ---------------------------------------

XL = np.linspace(0.0, 1.0, 21)
YL = 2.0 * XL + 1.0 + 0.1 * np.sin(13 * XL)


def _stable_limit() -> float:
    """2 / lambda_max of the Hessian of mse(a*x+b): H = 2/n [[sum x^2, sum x], [sum x, n]]."""
    H = 2.0 * np.array([[np.mean(XL * XL), np.mean(XL)], [np.mean(XL), 1.0]])
    return 2.0 / np.linalg.eigvalsh(H).max()


def _optimum(y) -> dict:
    (a, b), *_ = np.linalg.lstsq(np.c_[XL, np.ones_like(XL)], y, rcond=None)
    return {"a": float(a), "b": float(b)}


@pytest.mark.parametrize("y", [YL, 2.0 * XL + 1.0], ids=["residuals", "exact"])
@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
def test_a_sweep_started_at_the_minimum_says_so_at_every_rate(y, optimizer):
    limit = _stable_limit()
    lrs = [0.01 * limit, 0.5 * limit, 0.95 * limit, 1.2 * limit, 3 * limit]
    sweep = R.lr_sweep("a*x+b", XL, y, lrs, steps=40, optimizer=optimizer, p0=_optimum(y))
    assert [r.label for r in sweep.runs] == ["at the minimum"] * len(lrs)


def test_an_ordinary_start_is_still_labelled_by_the_stable_limit():
    limit = _stable_limit()
    lrs = [1e-4 * limit, 0.5 * limit, 0.95 * limit, 1.05 * limit, 2 * limit]
    sweep = R.lr_sweep("a*x+b", XL, YL, lrs, steps=300, p0={"a": 0.0, "b": 0.0})
    labels = [r.label for r in sweep.runs]
    assert labels[0] == "too slow" and labels[1] == "good"
    assert labels[2] in ("good", "bouncing") and labels[3:] == ["diverged", "diverged"]
    # a rate too small to move the loss far from the minimum is too slow, not at it
    tiny = R.lr_sweep("a*x+b", XL, YL, [1e-15, 1e-14], steps=20, p0={"a": 0.0, "b": 0.0})
    assert "at the minimum" not in [r.label for r in tiny.runs]


def test_from_an_exact_minimum_only_rates_past_the_stable_limit_leave_it():
    # the data on the line: the start's residuals are rounding, which a rate above
    # 2 / lambda_max amplifies step by step until the loss runs away
    y = 2.0 * XL + 1.0
    limit = _stable_limit()
    lrs = [0.01 * limit, 0.5 * limit, 0.95 * limit, 1.2 * limit, 3 * limit]
    # one ulp off the line in a: lstsq's own answer may have residuals of exactly 0 on
    # some machines' LAPACK, and nothing to amplify
    p0 = {"a": float(np.nextafter(2.0, 3.0)), "b": 1.0}
    sweep = R.lr_sweep("a*x+b", XL, y, lrs, steps=300, p0=p0, gtol=0, ftol=0)
    assert [r.label for r in sweep.runs] == ["at the minimum"] * 3 + ["diverged"] * 2


def test_an_end_above_the_start_by_rounding_is_no_bounce():
    h = [0.25, 0.25 + np.spacing(0.25)]
    assert R.classify_run(h, best_drop=0.0) == "too slow"
    assert R.classify_run(h, best_drop=0.0, minimum=0.0) == "at the minimum"
    bounce = [0.25, 0.3, 0.26, 0.3, 0.26]
    assert R.classify_run(bounce, best_drop=0.0, minimum=1e-14) == "bouncing"


def test_the_sweep_command_and_picture_at_the_minimum(capsys, tmp_path):
    data = tmp_path / "line.csv"
    np.savetxt(data, np.c_[XL, 2.0 * XL + 1.0], delimiter=",", header="x,y", comments="")
    code, out, err = run(capsys, "lr-sweep", data, "-m", "a*x+b", "--p0", "a=2,b=1",
                         "--lrs", "0.01,0.5,2", "--steps", "30", "--out", tmp_path / "s.png")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()[1:4]]
    assert [" ".join(r[3:]) for r in rows] == ["at the minimum"] * 3
    assert (tmp_path / "s.png").stat().st_size > 0
    for label in R.LR_LABELS:
        assert label + ":" in R.LR_RULE


# 3. fit is the one-problem case of the batched engine -------------------------------------

GRADIENT = [(m, {}) for m in batched_optimizers("gradient")] + [
    ("momentum", {"nesterov": True}), ("momentum", {"momentum": 0.5}),
    ("rmsprop", {"momentum": 0.9}), ("adam", {"weight_decay": 0.1}),
    ("gd", {"accumulate_grad": True})]


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("method, options", GRADIENT,
                         ids=[f"{m}-{'-'.join(o) or 'plain'}" for m, o in GRADIENT])
def test_fit_and_fit_many_take_the_same_steps(method, options, schedule):
    # one problem: fit's steps, bit for bit, bounded, float32 and chaotic runs alike
    cases = [dict(loss="mse", dtype="float64"), dict(loss="huber", dtype="float32"),
             dict(loss="mse", dtype="float64", bounds={"a": (-10.0, 10.0)})]
    for case in cases:
        kw = dict(optimizer=method, lr=0.01, steps=150, p0=P0, schedule=schedule, **options,
                  **case)
        one = gradfit.fit(QUAD, D.x, D.y, **kw)
        many = gradfit.fit_many(QUAD, D.x, D.y.reshape(1, -1), **kw)
        got = {k: float(many.params[k][0]) for k in one.params}
        assert got == pytest.approx(one.params, rel=1e-10, abs=1e-12), case
        assert float(many.loss[0]) == pytest.approx(one.loss, rel=1e-10)
        assert int(many.steps[0]) == one.steps and many.reason[0] == one.reason


@pytest.mark.parametrize("method", batched_optimizers("gradient"))
def test_in_a_batch_a_problem_differs_from_fit_by_rounding_only(method):
    """Among other problems, torch may sum a row's points in another order (its reduction
    kernel follows the tensor's shape) and run a bounded fit's sin/cos vectorised or not:
    one unit in the last place of a gradient, which a stable rate keeps at rounding."""
    for case in (dict(lr=0.002), dict(lr=0.002, bounds={"a": (-10.0, 10.0)})):
        kw = dict(optimizer=method, steps=150, p0=P0, ftol=0, gtol=0, **case)
        one = gradfit.fit(QUAD, D.x, D.y, **kw)
        many = gradfit.fit_many(QUAD, D.x, np.vstack([D.y.ravel()] * 3), **kw)
        for b in range(3):
            got = {k: float(many.params[k][b]) for k in one.params}
            assert got == pytest.approx(one.params, rel=1e-9), (case, b)


@pytest.mark.parametrize("method", batched_optimizers("gradient"))
def test_a_batched_sweep_replays_fit_step_for_step(method):
    lrs = [0.003, 0.01]
    for schedule in SCHEDULES:
        runs = sweep_fits(QUAD, D.x, D.y, lrs, optimizer=method, steps=80, p0=P0,
                          schedule=schedule, ftol=0, gtol=0)
        for lr, r in zip(lrs, runs):
            one = gradfit.fit(QUAD, D.x, D.y, optimizer=method, lr=lr, steps=80, p0=P0,
                              schedule=schedule, ftol=0, gtol=0)
            np.testing.assert_allclose(r.history, one.history, rtol=1e-12)
            np.testing.assert_allclose(r.trajectory, one.trajectory, rtol=1e-12, atol=1e-14)


_TORCH = {"gd": lambda p, lr, o: torch.optim.SGD(p, lr=lr),
          "momentum": lambda p, lr, o: torch.optim.SGD(p, lr=lr, **o),
          "adam": lambda p, lr, o: torch.optim.Adam(p, lr=lr, **o),
          "adamw": lambda p, lr, o: torch.optim.AdamW(p, lr=lr, **o),
          "rmsprop": lambda p, lr, o: torch.optim.RMSprop(p, lr=lr, **o)}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("method", sorted(_TORCH))
def test_each_update_rule_is_torch_optims(method, schedule):
    """The oracle: torch.optim's own optimizer and scheduler, step by step."""
    opts = {k: v for k, v in OPTIMIZERS[method].options.items() if k != "accumulate_grad"}
    r = gradfit.fit(QUAD, D.x, D.y, optimizer=method, lr=0.01, steps=30, ftol=0, gtol=0,
                    p0=P0, schedule=schedule)
    theta = torch.tensor([1.1, 1.1, 1.1], dtype=torch.float64, requires_grad=True)
    opt = _TORCH[method]([theta], 0.01, opts)
    group = opt.param_groups[0]
    cycle = bool(group.get("momentum")) or "betas" in group
    sched = {"constant": lambda: None,
             "step": lambda: torch.optim.lr_scheduler.StepLR(opt, 10, 0.1),
             "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 30),
             "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(
                 opt, max_lr=0.01, total_steps=31, cycle_momentum=cycle)}[schedule]()
    x, y = torch.tensor(D.x.reshape(-1)), torch.tensor(D.y.reshape(-1))
    for _ in range(30):
        opt.zero_grad()
        ((theta[0] * x ** 2 + theta[1] * x + theta[2] - y) ** 2).mean().backward()
        opt.step()
        if sched is not None:
            sched.step()
    np.testing.assert_allclose(list(r.params.values()), theta.detach().numpy(), rtol=1e-10)
