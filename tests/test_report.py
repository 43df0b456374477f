"""The report as lmfit's fit_report: statistics checked against lmfit's formulas computed
here from the residuals, intervals against scipy.stats.t; constants shown as constants."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

import gradfit
from gradfit.errors import InputError


def data():
    x = np.linspace(0, 4, 30)
    rng = np.random.default_rng(3)
    sigma = 0.02 + 0.01 * x
    return x, 2.5 * np.exp(-1.3 * x) + 0.5 + sigma * rng.standard_normal(30), sigma


@pytest.mark.parametrize("weighted", [False, True])
def test_statistics_follow_lmfits_formulas(weighted):
    x, y, sigma = data()
    r = gradfit.fit("a*exp(-k*x) + c", x, y, sigma=sigma if weighted else None,
                    fixed={"c": 0.5}, optimizer="lm")
    res = (r.params["a"] * np.exp(-r.params["k"] * x) + 0.5 - y) / (sigma if weighted else 1)
    n, nvarys = len(x), 2                      # c is fixed: it does not vary
    chisqr = float(np.sum(res ** 2))
    want = {"ndata": n, "nvarys": nvarys, "nfree": n - nvarys, "chisqr": chisqr,
            "redchi": chisqr / (n - nvarys),
            "aic": n * math.log(chisqr / n) + 2 * nvarys,
            "bic": n * math.log(chisqr / n) + math.log(n) * nvarys}
    got = r.statistics()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    d = r.to_dict(history=False)
    assert d["chisqr"] == pytest.approx(chisqr, rel=1e-12) and d["aic"] == got["aic"]
    text = r.report()
    assert f"chi-square = {chisqr:.8g}" in text and f"AIC = {want['aic']:.6g}" in text
    assert f"reduced chi-square = {want['redchi']:.8g}" in text
    assert f"{n - nvarys} degrees of freedom" in text
    if weighted:
        assert "chi2/N = " in text and "mse" not in text and "weighted by 1/sigma^2" in text
        assert d["loss_label"] == "chi2/N" and r.loss == pytest.approx(chisqr / n, rel=1e-12)
    else:
        assert "mse = " in text and "weighted" not in text


@pytest.mark.parametrize("level", [0.95, 0.683])
def test_intervals_use_students_t(level):
    x, y, sigma = data()
    r = gradfit.fit("a*exp(-k*x) + c", x, y, optimizer="lm")
    t = stats.t.ppf((1 + level) / 2, len(x) - 3)
    ci = r.intervals(level)
    for name, (lo, hi) in ci.items():
        assert lo == pytest.approx(r.params[name] - t * r.stderr[name], rel=1e-8)
        assert hi == pytest.approx(r.params[name] + t * r.stderr[name], rel=1e-8)
    text = r.report(level)
    assert f"{level:.4g} interval" in text
    assert f"[{ci['k'][0]:.8g}, {ci['k'][1]:.8g}]" in text
    with pytest.raises(InputError, match="confidence level"):
        r.report(1.5)


def test_a_parameters_row_shows_value_error_start_bounds_and_a_bound_note():
    x, y, _ = data()
    r = gradfit.fit("a*exp(-k*x) + c", x, y, p0={"a": 2.0}, bounds={"k": (0, 5)},
                    optimizer="lm")
    row = next(line for line in r.report().splitlines() if line.strip().startswith("k "))
    assert f"{r.params['k']:.10g}" in row and f"{r.stderr['k']:.4g}" in row
    assert "[0, 5]" in row and "at " not in row
    a_row = next(line for line in r.report().splitlines() if line.strip().startswith("a "))
    assert a_row.split()[-1] == "2"            # the start given
    assert r.bounds == {"k": (0.0, 5.0)} and r.at_bound == ()
    # the lead's solver fills at_bound in; the report names the side
    r.at_bound = ("k",)
    r.params["k"] = 5.0
    assert "(at upper bound)" in r.report() and "(at upper bound)" in r._repr_html_()
    r.params["k"] = 0.0
    assert "(at lower bound)" in r.report()


def test_the_html_report_holds_the_statistics():
    x, y, sigma = data()
    r = gradfit.fit("a*exp(-k*x) + c", x, y, sigma=sigma, optimizer="lm")
    html = r._repr_html_()
    s = r.statistics()
    assert f"{s['chisqr']:.8g}" in html and f"{s['aic']:.6g}" in html and "chi2/N" in html
    assert "0.95 interval" in html and "derivative rules (forward mode)" in html


def test_the_jacobian_used_is_reported():
    # a text expression: LM's steps and the errors come from its own derivative rules
    x, y, _ = data()
    r = gradfit.fit("a*exp(-k*x) + c", x, y)
    assert "Jacobian by the expression's derivative rules (forward mode)" in r.report()
    assert r.jacobian == "the expression's derivative rules (forward mode)"
    assert r.to_dict()["jacobian"] == r.jacobian
    # max has no forward rule, and a torch function none of its own: autograd
    for model in ("a*max(x - k, 0) + c", lambda x, a, k, c: a * torch.exp(-k * x) + c):
        r = gradfit.fit(model, x, y)
        assert r.jacobian == "autograd" and "Jacobian by autograd" in r.report()


@pytest.mark.parametrize("kw, name", [({"p0": {"e": 1.0}}, "e"), ({"bounds": {"e": (0, 1)}}, "e"),
                                      ({"fixed": {"pi": 2.0}}, "pi")])
def test_naming_a_constant_says_what_it_is(kw, name):
    x = np.linspace(0, 1, 20)
    with pytest.raises(InputError) as info:
        gradfit.fit("a*x^2 + b*x + e*pi", x, x, **kw)
    text = str(info.value)
    meaning = "Euler's number" if name == "e" else "pi = 3.14159"
    assert meaning in text and f"{name}0" in text and "\n" not in text


def test_constants_are_listed_as_constants():
    x = np.linspace(0, 1, 20)
    r = gradfit.fit("a*x^4 + b*x^3 + c*x^2 + d*x + e", x, 1 + x ** 2)
    assert r.param_names == ("a", "b", "c", "d")
    assert r.constants == {"e": math.e} and r.to_dict(history=False)["constants"] == {"e": math.e}
    assert "constants (not fitted): e = 2.718281828" in r.report()


def test_the_command_line_says_a_constant_is_one(capsys):
    from gradfit.cli import main
    code = main(["eval", "lesson", "--model", "a*x + e", "--params", "a=1,e=2"])
    err = capsys.readouterr().err
    assert code == 2 and "Euler's number" in err and "e0" in err
    code = main(["landscape", "lesson", "--model", "a*x + b + pi", "--params", "a,pi"])
    err = capsys.readouterr().err
    assert code == 2 and "the choice of parameters names 'pi'" in err and "pi = 3.14159" in err
