"""Regressions of the sixth probe of the one config (``FitConfig``) across Python's ``fit``
and ``fit_many``, the command line and ``FitResult``: one rule for p0 on a fixed name, one
validation of the optimizer options from the settings table (LM's and IRLS's included),
steps=0 alike, a multi-start CLI fit with --lr, nesterov without momentum, extreme finite
bounds, strict JSON of divergence=inf, a result that carries and reruns its config, value
equality, duplicate keys and the bound text "05", and the table's words on the command line.
"""
import csv
import json
import math

import numpy as np
import pytest
import torch

import gradfit
from gradfit.bounds import ParamTransform
from gradfit.config import FitConfig
from gradfit.errors import InputError
from gradfit.optimizers import OPTIMIZERS
from gradfit.result import FitResult
from gradfit.settings import OPTION_ROWS, SETTINGS

QUAD = "a*x^2+b*x+c"
D = gradfit.lesson_data()
Y2 = np.stack([D.y, D.y])


from test_cli_probe5 import one_line_exit_2 as refused, run  # noqa: E402  (the CLI's helpers)


def message_of(f) -> str:
    with pytest.raises(InputError) as exc:
        f()
    return str(exc.value)


def closed_form_quadratic():
    """The least-squares quadratic of the lesson's data (numpy's lstsq)."""
    X = np.stack([D.x ** 2, D.x, np.ones_like(D.x)], 1)
    return dict(zip("abc", np.linalg.lstsq(X, D.y, rcond=None)[0]))


def write_plate(path):
    """A long CSV of two series of the lesson's data (a quadratic each)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["well", "x", "y"])
        for well, shift in (("w0", 0.0), ("w1", 0.5)):
            for xi, yi in zip(D.x, D.y + shift):
                w.writerow([well, repr(float(xi)), repr(float(yi))])
    return path


# 1. p0 and fixed on one name: one rule everywhere -------------------------------------------
# The rule: a fixed parameter starts and stays at its fixed value; a different start for it in
# p0 is not used, and the result's message says so, in fit, fit_many, FitConfig and the
# command line (one and --group) alike. The same value in both says nothing.

NOTE = "the start a=3 in p0 is not used: a is fixed at 1"


def test_p0_on_a_fixed_name_is_said_in_fit_fit_many_and_config():
    r = gradfit.fit(QUAD, D.x, D.y, p0={"a": 3.0}, fixed={"a": 1.0})
    alone = gradfit.fit(QUAD, D.x, D.y, fixed={"a": 1.0})
    assert NOTE in r.message and NOTE not in alone.message
    assert r.start["a"] == 1.0 and r.params == alone.params
    # the closed form with a held at 1: lstsq of y - x^2 on (x, 1)
    X = np.stack([D.x, np.ones_like(D.x)], 1)
    b, c = np.linalg.lstsq(X, D.y - D.x ** 2, rcond=None)[0]
    assert r.params["b"] == pytest.approx(b, rel=1e-10)
    assert r.params["c"] == pytest.approx(c, rel=1e-10)
    many = gradfit.fit_many(QUAD, D.x, Y2, p0={"a": 3.0}, fixed={"a": 1.0})
    assert all(NOTE in m for m in many.message)
    for k, v in r.params.items():
        assert many.params[k][0] == pytest.approx(v, rel=1e-10)
    # per problem: only the problem whose start differs is told
    per = gradfit.fit_many(QUAD, D.x, Y2, p0={"a": [3.0, 1.0]}, fixed={"a": 1.0})
    assert NOTE in per.message[0] and "p0 is not used" not in per.message[1]
    # the config takes both, and runs as fit does
    cfg = FitConfig(model=QUAD, p0={"a": 3.0}, fixed={"a": 1.0})
    assert cfg.fit(D.x, D.y).params == r.params


def test_the_same_value_in_p0_and_fixed_says_nothing():
    r = gradfit.fit(QUAD, D.x, D.y, p0={"a": 1.0, "b": 2.0}, fixed={"a": 1.0})
    assert "p0 is not used" not in r.message
    many = gradfit.fit_many(QUAD, D.x, Y2, p0={"a": 1.0}, fixed={"a": [1.0, 1.0]})
    assert not any("p0 is not used" in m for m in many.message)


def test_p0_on_a_fixed_name_in_a_multi_start_fit_is_said_once():
    r = gradfit.fit("relu:2", D.x, D.y, p0={"m1": 3.0}, fixed={"m1": 1.0}, steps=30)
    assert r.message.count("p0 is not used") == 1
    assert "the start m1=3 in p0 is not used: m1 is fixed at 1" in r.message
    assert r.params["m1"] == 1.0


def test_p0_on_a_fixed_name_on_the_command_line_follows_the_same_rule(capsys, tmp_path):
    code, out, err = run(capsys, "fit", "lesson", "-m", QUAD, "--p0", "a=3", "--fix", "a=1",
                         "--json", "-")
    assert code == 0, err
    got = json.loads(out)
    py = gradfit.fit(QUAD, D.x, D.y, p0={"a": 3.0}, fixed={"a": 1.0})
    assert got["message"] == py.message and NOTE in got["message"]
    assert got["params"] == py.params
    plate = write_plate(tmp_path / "plate.csv")
    code, out, err = run(capsys, "fit", plate, "--group", "well", "-m", QUAD, "--p0", "a=3",
                         "--fix", "a=1", "--json", "-")
    assert code == 0, err
    assert all(NOTE in row["message"] for row in json.loads(out))


# 2. fit_many checks the options by the table's rows, as fit ----------------------------------

BAD_OPTIONS = [
    ("momentum", dict(momentum=1.5)), ("momentum", dict(momentum=-0.5)),
    ("momentum", dict(momentum=math.nan)), ("rmsprop", dict(momentum=2.0)),
    ("adam", dict(weight_decay=5.0)), ("adam", dict(weight_decay=-1.0)),
    ("adam", dict(weight_decay=math.nan)), ("momentum", dict(nesterov="yes")),
    ("gd", dict(accumulate_grad=1)), ("momentum", dict(momentum=0.0, nesterov=True)),
    ("lm", dict(xtol=-1.0)), ("lm", dict(xtol="abc")), ("lm", dict(factor=math.nan)),
    ("lm", dict(factor=0.0)), ("lm", dict(max_tries=0)), ("lm", dict(max_tries=2.5)),
    ("lm", dict(ftol=-1e-3)), ("irls", dict(inner_steps=-5)), ("irls", dict(inner_steps=0)),
]


@pytest.mark.parametrize("optimizer,options", BAD_OPTIONS)
def test_fit_and_fit_many_refuse_a_bad_option_in_the_same_words(optimizer, options):
    loss = "mae" if optimizer == "irls" else "mse"
    kw = dict(loss=loss, optimizer=optimizer, steps=5, **options)
    if optimizer == "lm" and "ftol" in options:     # lm's own ftol: in the config's options
        one = message_of(lambda: FitConfig(model=QUAD, optimizer="lm", options=options))
        assert "bad lm/irls option ftol" in one
        return
    one = message_of(lambda: gradfit.fit(QUAD, D.x, D.y, **kw))
    many = message_of(lambda: gradfit.fit_many(QUAD, D.x, Y2, **kw))
    config = message_of(lambda: FitConfig(model=QUAD, loss=loss, optimizer=optimizer,
                                           options=options))
    assert one == many == config


@pytest.mark.parametrize("flags,words", [
    (["--optimizer", "momentum", "--momentum", "1.5"], "bad momentum: expected a finite "
     "number, 0 <= momentum < 1, got 1.5"),
    (["--optimizer", "momentum", "--momentum", "-0.5"], "bad momentum"),
    (["--optimizer", "adam", "--weight-decay", "7"], "bad weight decay"),
    (["--optimizer", "sgd", "--nesterov"], "nesterov needs momentum > 0"),
])
def test_a_group_fit_refuses_what_one_fit_refuses(capsys, tmp_path, flags, words):
    plate = write_plate(tmp_path / "plate.csv")
    one = refused(capsys, "fit", "lesson", "-m", QUAD, *flags)
    if "sgd" in flags:         # sgd has no batched engine: fit_many says so first
        flags = ["--optimizer", "momentum", "--momentum", "0", "--nesterov"]
    group = refused(capsys, "fit", plate, "--group", "well", "-m", QUAD, *flags)
    assert words in one and words in group


def test_steps_0_is_one_rule_the_start_in_fit_and_fit_many(capsys, tmp_path):
    for optimizer in ("auto", "lm", "gd", "adam"):
        one = gradfit.fit(QUAD, D.x, D.y, optimizer=optimizer, steps=0)
        many = gradfit.fit_many(QUAD, D.x, Y2, optimizer=optimizer, steps=0)
        assert one.reason == "max_steps" and list(many.reason) == ["max_steps"] * 2
        assert one.params == one.start == {"a": 1.0, "b": 1.0, "c": 1.0}
        for k, v in one.params.items():
            assert many.params[k].tolist() == [v, v]
        assert many.loss[0] == pytest.approx(one.loss, rel=1e-12)
        assert many.message[0] == one.message == "reached the step limit (0 steps)"
    plate = write_plate(tmp_path / "plate.csv")
    code, out, err = run(capsys, "fit", plate, "--group", "well", "-m", QUAD, "--steps", "0",
                         "--json", "-")
    assert code == 1 and "expected a whole number" not in err       # not converged, no refusal
    assert [row["reason"] for row in json.loads(out)] == ["max_steps"] * 2


def test_fit_many_names_a_setting_it_does_not_take():
    assert "fit_many does not take time_limit" in message_of(
        lambda: gradfit.fit_many(QUAD, D.x, Y2, time_limit=5.0))
    for f in (gradfit.fit, gradfit.fit_many):
        y = D.y if f is gradfit.fit else Y2
        assert "(did you mean steps?)" in message_of(lambda: f(QUAD, D.x, y, stpes=5))


# 3. --lr / --schedule with several starts on the command line ------------------------------

def test_lr_with_several_starts_runs_and_equals_python(capsys):
    code, out, err = run(capsys, "fit", "lesson", "-m", "a*x+b", "--optimizer", "adam",
                         "--lr", "0.1", "--starts", "3", "--steps", "200", "--json", "-")
    assert code in (0, 1) and "internal error" not in err, err
    py = gradfit.fit("a*x+b", D.x, D.y, optimizer="adam", lr=0.1, starts=3, steps=200)
    got = json.loads(out)
    assert got["params"] == py.params and got["message"] == py.message


def test_lr_and_schedule_with_auto_several_starts_are_used(capsys, tmp_path):
    # auto chooses lbfgs for a flexible model and runs it at the given rate and schedule
    # (it had run its own rate without a schedule, saying so): no note, and the result's
    # config and the fit by the named method agree
    out = tmp_path / "r.json"
    code, _, err = run(capsys, "fit", "lesson", "-m", "relu:2", "--lr", "0.5", "--schedule",
                       "cosine", "--steps", "30", "-q", "--json", str(out))
    assert code in (0, 1) and "internal error" not in err, err
    assert "not used" not in err
    got = json.loads(out.read_text())
    assert got["lr"] == 0.5 and got["config"]["schedule"] == "cosine"


# 4. nesterov without momentum: the table's rule ---------------------------------------------

def test_nesterov_without_momentum_is_refused_by_the_table_everywhere(capsys):
    words = "nesterov needs momentum > 0 (the momentum is 0)"
    assert words in message_of(lambda: gradfit.fit(QUAD, D.x, D.y, optimizer="sgd",
                                                   nesterov=True))
    assert words in message_of(lambda: gradfit.fit(QUAD, D.x, D.y, optimizer="momentum",
                                                   momentum=0.0, nesterov=True))
    assert words in message_of(lambda: FitConfig(optimizer="sgd", options={"nesterov": True}))
    assert words in message_of(lambda: gradfit.fit_many(QUAD, D.x, Y2, optimizer="momentum",
                                                        momentum=0.0, nesterov=True))
    assert words in refused(capsys, "fit", "lesson", "-m", QUAD, "--optimizer", "sgd",
                            "--nesterov")
    # with a momentum it runs: torch's own SGD with nesterov, step by step
    r = gradfit.fit("a*x+b", D.x, D.y, optimizer="momentum", momentum=0.5, nesterov=True,
                    lr=0.05, steps=20, p0={"a": 1.0, "b": 1.0})
    theta = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([theta], lr=0.05, momentum=0.5, nesterov=True)
    x, y = torch.tensor(D.x), torch.tensor(D.y)
    for _ in range(20):
        opt.zero_grad()
        ((theta[0] * x + theta[1] - y) ** 2).mean().backward()
        opt.step()
    assert [r.params["a"], r.params["b"]] == pytest.approx(theta.tolist(), rel=1e-12)


# 5. extreme finite bounds ----------------------------------------------------------------

def test_the_transform_holds_a_start_far_from_a_one_sided_bound():
    for bounds, v in [({"a": (0.0, math.inf)}, 1e200), ({"a": (1e308, math.inf)}, 1.01e308),
                      ({"a": (-math.inf, -1e300)}, -1e305), ({"a": (0.0, math.inf)}, 3.0)]:
        t = ParamTransform(("a",), bounds)
        u = t.internal({"a": v})
        assert torch.isfinite(u).all()
        assert t.external(u).item() == pytest.approx(v, rel=1e-14)
        assert torch.isfinite(t.slope(u)).all()
        u.requires_grad_(True)
        t.external(u).sum().backward()
        assert torch.isfinite(u.grad).all()


def test_a_start_far_from_its_bound_fits_to_the_closed_form():
    # a >= 0 from a = 1e160: (d + 1)^2 had overflowed (OverflowError, exit 70)
    x = np.linspace(0, 1, 20)
    y = 2 * x + 1
    r = gradfit.fit("a*1e-160*x + b", x, y, bounds={"a": (0, None)}, p0={"a": 1e160})
    assert r.params["a"] == pytest.approx(2e160, rel=1e-12)
    assert r.params["b"] == pytest.approx(1.0, rel=1e-12)


def test_extreme_one_sided_bounds_end_in_words_not_a_crash(capsys):
    for flags in (["--bounds", "a=1e308:"], ["--bounds", "a=0:", "--p0", "a=1e200"],
                  ["--bounds", "a=:-1e300"]):
        code, _, err = run(capsys, "fit", "lesson", "-m", QUAD, *flags, "-q")
        assert code == 1 and "internal error" not in err, err
        assert "diverged at step 0" in err and "overflows" in err
    r = gradfit.fit(QUAD, D.x, D.y, bounds={"a": (1e308, None)})
    assert r.reason == "diverged" and 1e308 <= r.params["a"] < math.inf


def test_bounds_further_apart_than_a_float_are_refused_in_one_voice(capsys):
    words = "bounds for 'a' are too far apart"
    wide = {"a": (-1e308, 1e308)}
    one = message_of(lambda: gradfit.fit(QUAD, D.x, D.y, bounds=wide))
    assert words in one
    assert message_of(lambda: FitConfig(bounds=wide)) == one
    assert message_of(lambda: gradfit.fit_many(QUAD, D.x, Y2, bounds=wide)) == one
    assert words in refused(capsys, "fit", "lesson", "-m", QUAD, "--bounds", "a=-1e308:1e308")
    # among B pairs, the problem alone fails (as a crossed pair does)
    per = gradfit.fit_many(QUAD, D.x, Y2, bounds={"a": ([-1e308, 0.0], [1e308, 5.0])})
    assert per.reason[0] == "failed" and words in per.message[0]
    assert per.converged[1]


# 6. a valid seed with several starts -------------------------------------------------------

def test_fit_many_takes_the_largest_seed_with_starts():
    res = gradfit.fit_many(QUAD, D.x, Y2, seed=2**32 - 1, starts=3)
    assert res.converged.all()


def test_fit_takes_the_largest_seed_with_starts():
    r = gradfit.fit(QUAD, D.x, D.y, seed=2**32 - 1, starts=2)
    assert r.converged and r.config.seed == 2**32 - 1


# 7. strict JSON: divergence=inf ------------------------------------------------------------

def _strict(text):
    def no(name):
        raise AssertionError(f"{name} in JSON")
    return json.loads(text, parse_constant=no)


def test_divergence_inf_is_null_in_json_and_reads_back():
    c = FitConfig(optimizer="gd", divergence=math.inf)
    d = _strict(c.to_json())
    assert d["divergence"] is None
    assert FitConfig.from_json(c.to_json()) == c and FitConfig.from_dict(c.to_dict()) == c
    assert FitConfig.from_query(c.to_query()) == c
    r = c.fit(D.x, D.y)
    assert _strict(r.to_json())["config"]["divergence"] is None
    with pytest.raises(InputError, match="divergence factor"):
        FitConfig(divergence=None)          # None is JSON's inf only, not a Python value


# 8. LM and IRLS options have rows ------------------------------------------------------------

def test_every_option_of_every_optimizer_has_a_row_its_default_passes():
    for spec in OPTIMIZERS.values():
        for name, default in spec.options.items():
            assert name in OPTION_ROWS, (spec.name, name)
            assert OPTION_ROWS[name].scope == "option"
            assert OPTION_ROWS[name].check(default) == default
    # the config's own ftol is another row than lm's option ftol
    assert SETTINGS["ftol"].scope == "config" and OPTION_ROWS["ftol"].scope == "option"


def test_lm_and_irls_options_in_range_run_and_reach_the_closed_form(capsys):
    want = closed_form_quadratic()
    r = gradfit.fit(QUAD, D.x, D.y, optimizer="lm", xtol=1e-12, factor=1.0, max_tries=50)
    assert r.converged
    for k, v in want.items():
        assert r.params[k] == pytest.approx(v, rel=1e-9)
    # the same options on the command line: the same fit
    code, out, err = run(capsys, "fit", "lesson", "-m", QUAD, "--optimizer", "lm", "--xtol",
                         "1e-12", "--factor", "1", "--max-tries", "50", "--json", "-")
    assert code == 0, err
    assert json.loads(out)["params"] == r.params
    # lm's own ftol lives in the config's options, apart from the loop's ftol
    cfg = FitConfig(model=QUAD, optimizer="lm", options={"ftol": 1e-10})
    assert cfg.fit(D.x, D.y).params == pytest.approx(want, rel=1e-8)
    # irls: mae's exact minimum whatever the inner steps
    a = gradfit.fit(QUAD, D.x, D.y, loss="mae", optimizer="irls", inner_steps=5)
    b = gradfit.fit(QUAD, D.x, D.y, loss="mae", optimizer="irls")
    assert a.loss == pytest.approx(b.loss, rel=1e-9)
    assert "bad irls inner_steps" in refused(capsys, "fit", "lesson", "-m", QUAD, "--loss",
                                             "mae", "--optimizer", "irls", "--inner-steps",
                                             "0")


# 9. a result carries its config and reruns it --------------------------------------------------

def _same(a: FitResult, b: FitResult):
    assert a.params == b.params and a.loss == b.loss
    assert (a.reason, a.message, a.steps) == (b.reason, b.message, b.steps)
    np.testing.assert_array_equal(a.history, b.history)
    np.testing.assert_array_equal(a.trajectory, b.trajectory)


@pytest.mark.parametrize("kw", [
    dict(),
    dict(loss="huber", delta=0.5, optimizer="adam", lr=0.05, steps=80, schedule="cosine",
         weight_decay=0.01, seed=3, p0={"a": 1.1, "b": 1.1, "c": 1.1}),
    dict(optimizer="momentum", momentum=0.5, nesterov=True, steps=40, dtype="float32",
         bounds={"a": (0, 2.5)}, fixed={"c": 1.0}, divergence=math.inf),
    dict(optimizer="gd", starts=3, steps=30, seed=7, ftol=1e-9),
])
def test_a_result_reruns_bit_for_bit_from_its_config(kw):
    r = gradfit.fit(QUAD, D.x, D.y, **kw)
    settings = {k: v for k, v in kw.items() if SETTINGS[k].scope == "config"}
    options = {k: v for k, v in kw.items() if k not in settings}
    assert r.config == FitConfig(model=QUAD, options=options, **settings)
    _same(r.rerun(), r)
    back = FitResult.from_json(r.to_json())
    assert back.config == r.config
    assert back.params == r.params and back.reason == r.reason
    _same(back.config.fit(D.x, D.y), r)
    _same(back.rerun(D.x, D.y), r)
    assert back.predict([0.5]) == pytest.approx(r.predict([0.5]), rel=1e-12)


def test_the_command_lines_json_holds_the_config_that_reruns_it(capsys):
    code, out, err = run(capsys, "fit", "lesson", "-m", QUAD, "--optimizer", "adam", "--lr",
                         "0.05", "--steps", "60", "--seed", "5", "--loss", "huber", "--delta",
                         "0.5", "--json", "-")
    got = json.loads(out)
    cfg = FitConfig.from_dict(got["config"])
    assert (cfg.optimizer, cfg.lr, cfg.steps, cfg.seed, cfg.loss, cfg.delta) == \
        ("adam", 0.05, 60, 5, "huber", 0.5)
    assert cfg.fit(D.x, D.y).params == got["params"]


def test_a_function_model_reruns_given_its_function():
    def line(x, a, b):
        return a * x + b
    r = gradfit.fit(line, D.x, D.y)
    _same(r.rerun(), r)
    back = FitResult.from_json(r.to_json())
    assert back.model_object is None and back.model_source == "function"
    with pytest.raises(InputError, match="rerun"):
        back.rerun(D.x, D.y)
    _same(back.rerun(D.x, D.y, model=line), r)


# 10. value equality, duplicate keys, the bound text "05" --------------------------------------

def test_configs_equal_whatever_the_order_of_their_names():
    a = FitConfig(p0={"a": 1, "b": 2}, bounds={"a": (0, 5), "b": (None, 3)},
                  fixed={"c": 1.0, "d": 2.0}, optimizer="momentum",
                  options={"momentum": 0.5, "nesterov": True})
    b = FitConfig(p0={"b": 2, "a": 1}, bounds={"b": (None, 3), "a": (0, 5)},
                  fixed={"d": 2.0, "c": 1.0}, optimizer="momentum",
                  options={"nesterov": True, "momentum": 0.5})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != FitConfig(p0={"a": 1, "b": 3}, optimizer="momentum")


def test_a_key_given_twice_is_refused():
    assert "'lr' is given twice" in message_of(
        lambda: FitConfig.from_json('{"lr": 0.1, "lr": 5}'))
    assert "'a' is given twice" in message_of(
        lambda: FitConfig.from_json('{"p0": {"a": 1, "a": 2}}'))
    assert "'lr' is given twice" in message_of(lambda: FitConfig.from_query("lr=0.1&lr=5"))
    assert "'a' is given twice" in message_of(
        lambda: FitConfig.from_query('p0={"a": 1, "a": 2}'))


@pytest.mark.parametrize("pair", ["05", (True, 5), ("-inf", "1e3"), 5, (1, 2, 3)])
def test_bounds_that_are_no_pair_of_numbers_are_refused(pair):
    one = message_of(lambda: FitConfig(bounds={"a": pair}))
    assert one.startswith("bad bounds for 'a': expected a pair (low, high) of numbers")
    assert message_of(lambda: gradfit.fit(QUAD, D.x, D.y, bounds={"a": pair})) == one
    assert "bad bounds for 'a'" in message_of(
        lambda: gradfit.fit_many(QUAD, D.x, Y2, bounds={"a": pair}))
    assert FitConfig(bounds={"a": (0, 5)}).bounds == (("a", (0.0, 5.0)),)


# 11. the table's words on the command line -----------------------------------------------------

def test_the_command_line_refuses_in_the_tables_words(capsys):
    py = message_of(lambda: gradfit.fit(QUAD, D.x, D.y, optimizer="Adam"))
    assert py in refused(capsys, "fit", "lesson", "-m", QUAD, "--optimizer", "Adam")
    py = message_of(lambda: gradfit.fit(QUAD, D.x, D.y, steps=3.0))
    assert py in refused(capsys, "fit", "lesson", "-m", QUAD, "--steps", "3.0")
    py = message_of(lambda: gradfit.fit(QUAD, D.x, D.y, divergence=-math.inf))
    assert py in refused(capsys, "fit", "lesson", "-m", QUAD, "--divergence", "-inf")
    py = message_of(lambda: gradfit.fit(QUAD, D.x, D.y, lr=-math.inf))
    assert py in refused(capsys, "fit", "lesson", "-m", QUAD, "--lr", "-inf")
    assert "bad number of steps: expected a whole number 0..10000000, got 'ten'" in refused(
        capsys, "fit", "lesson", "-m", QUAD, "--steps", "ten")
