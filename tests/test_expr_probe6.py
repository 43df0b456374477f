"""Regressions of the sixth probe of expressions: relu as a derivative (it has no ``out=``),
every function of the grammar through the Jacobian against finite differences, the chain
rule's 0 * inf at a cusp of sqrt and of u^0.5, decomposed accents, ``weights=``, and the
parser's and report's smaller messages. Oracles: numpy, central differences, scipy's
curve_fit (a test-only reference)."""
import json
import warnings

import numpy as np
import pytest
import torch

import gradfit
from gradfit.cli import main
from gradfit.errors import ExpressionError, InputError
from gradfit.expr import FUNCTIONS, MAX_DEPTH, VARIADIC, parse_expression
from gradfit.expr_jacobian import ExpressionJacobian, infinite_slope, supports
from gradfit.models import make_model
from gradfit.report import rows

curve_fit = pytest.importorskip("scipy.optimize").curve_fit
F64 = torch.float64

NUMPY = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log,
         "sqrt": np.sqrt, "abs": np.abs, "tanh": np.tanh,
         "sigmoid": lambda u: 1 / (1 + np.exp(-u)), "relu": lambda u: np.maximum(u, 0),
         "arctan": np.arctan, "atan": np.arctan}
UNARY = [f for f in FUNCTIONS if f not in VARIADIC]
# a shift m that keeps the argument x - m in the function's domain and off its kink
SHIFT = {"log": 0.5, "sqrt": 0.5, "tan": 1.0}
X = np.linspace(1.1, 1.9, 9)


def central(model, x, theta, h=1e-6):
    """``(n, P)`` central differences of ``model`` at ``theta`` ``(P,)``."""
    cols = []
    for j in range(len(theta)):
        e = np.zeros(len(theta))
        e[j] = h
        cols.append((model(x, theta + e) - model(x, theta - e)) / (2 * h))
    return np.stack(cols, -1)


def ej(text, x, theta):
    m = make_model(text)
    f, jac = ExpressionJacobian(m.expression)({"x": torch.as_tensor(x, dtype=F64)},
                                              torch.tensor([theta], dtype=F64))
    return m, f[0].numpy(), jac[0].numpy()


def numpy_model(m):
    return lambda x, th: m(torch.as_tensor(x, dtype=F64), torch.as_tensor(th, dtype=F64)).numpy()


def test_the_table_covers_the_grammar():
    assert set(UNARY) == set(NUMPY)
    assert all(supports(make_model(f"c + a*{f}(x - m)").expression) for f in UNARY)


# 1. relu (and every other function) as a derivative's last step ----------------------------

@pytest.mark.parametrize("fn", UNARY)
@pytest.mark.parametrize("form", ["c + a*{f}(x - m)", "c + {f}(a*x - m)"])
def test_every_function_through_the_jacobian(fn, form):
    """``d/da`` of ``a*f(x - m)`` is the node ``f(x - m)`` itself, written into the Jacobian
    with ``out=`` (relu has none: TypeError); the value against numpy, every column against
    central differences."""
    text = form.format(f=fn)
    m_at = SHIFT.get(fn, 1.45)
    theta = np.array([0.3, 1.2, m_at])            # c, a, m
    m, f, jac = ej(text, X, list(theta))
    c, a, mm = theta
    want = c + a * NUMPY[fn](X - mm) if form.startswith("c + a") else c + NUMPY[fn](a * X - mm)
    np.testing.assert_allclose(f, want, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(jac, central(numpy_model(m), X, theta), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fn", ["min", "max"])
def test_min_and_max_fit_as_scipy_does(fn):
    x = np.linspace(0, 4, 40)
    y = 1 + 2 * (np.maximum(x - 1.7, 0) if fn == "max" else np.minimum(x - 1.7, 0))
    y = y + 0.01 * np.sin(7 * x)
    np_fn = np.maximum if fn == "max" else np.minimum
    ref, _ = curve_fit(lambda x, c, a, m: c + a * np_fn(x - m, 0), x, y, p0=[1, 1, 1.5])
    r = gradfit.fit(f"c + a*{fn}(x - m, 0)", x, y, p0={"m": 1.5})
    assert r.converged
    np.testing.assert_allclose(list(r.params.values()), ref, rtol=1e-6)


def hinge(seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 4, 50)
    return x, 1.0 + 2.0 * np.maximum(x - 1.7, 0) + rng.normal(0, 0.05, 50)


def scipy_hinge(x, y):
    p, _ = curve_fit(lambda x, c, a, m: c + a * np.maximum(x - m, 0), x, y, p0=[1, 1, 1.5])
    return dict(zip("cam", p))


@pytest.mark.parametrize("kw", [{}, {"optimizer": "lm"}, {"loss": "huber"},
                                {"optimizer": "lbfgs", "steps": 2000}])
def test_a_relu_hinge_fits(kw):
    x, y = hinge()
    r = gradfit.fit("c + a*relu(x-m)", x, y, p0={"m": 1.5}, **kw)
    same = gradfit.fit("c + a*max(x-m, 0)", x, y, p0={"m": 1.5}, **kw)
    for k, v in same.params.items():
        assert r.params[k] == pytest.approx(v, rel=1e-6, abs=1e-9)
    if not kw.get("loss"):
        for k, v in scipy_hinge(x, y).items():
            assert r.params[k] == pytest.approx(v, rel=1e-5)


def test_a_relu_hinge_fits_in_fit_many():
    x, y0 = hinge(0)
    _, y1 = hinge(1)
    res = gradfit.fit_many("c + a*relu(x-m)", x, np.stack([y0, y1]), p0={"m": 1.5})
    assert list(res.converged) == [True, True]
    for i, y in enumerate((y0, y1)):
        for k, v in scipy_hinge(x, y).items():
            assert res.params[k][i] == pytest.approx(v, rel=1e-5)


def test_a_relu_hinge_fits_on_the_command_line(tmp_path, capsys):
    x, y = hinge()
    path = tmp_path / "hinge.csv"
    path.write_text("x,y\n" + "".join(f"{a:.17g},{b:.17g}\n" for a, b in zip(x, y)))
    code = main(["fit", str(path), "--model", "c + a*relu(x-m)", "--p0", "m=1.5",
                 "--json", "-"])
    out, err = capsys.readouterr()
    assert code == 0, err
    got = json.loads(out)["params"]
    for k, v in scipy_hinge(x, y).items():
        assert got[k] == pytest.approx(v, rel=1e-5)


@pytest.fixture(scope="module")
def web():
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from gradfit.web.app import create_app
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


def test_a_relu_hinge_fits_on_the_web(web):
    x, y = hinge()
    r = web.post("/api/exact", json={"data": {"x": x.tolist(), "y": y.tolist()},
                                     "model": "c + a*relu(x-m)", "loss": "mse"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["converged"]
    for k, v in scipy_hinge(x, y).items():
        assert body["params"][k] == pytest.approx(v, rel=1e-5)


# 2. sqrt and u^0.5 at an argument of 0 -----------------------------------------------------

CUSPS = [  # text, theta, x: the derivative's limit is finite at the point where u = 0
    ("a*sqrt(x*(x+c))", [1.5, 2.0], [0.0, 0.5, 1.0, 3.0]),
    ("a*(x*(x+c))^0.5", [1.5, 2.0], [0.0, 0.5, 1.0, 3.0]),
    ("a*(x*(x+c))^(1/3)", [1.5, 2.0], [0.0, 0.5, 1.0, 3.0]),
    ("sqrt(a*x) + b", [2.0, 1.0], [0.0, 0.5, 2.0]),
    ("a*sqrt(x/c)", [2.0, 1.0], [0.0, 0.5, 2.0]),
    ("sqrt(x^3*a)", [2.0], [0.0, 0.5, 2.0]),
    ("(x-a)^0 + b*x", [1.0, 2.0], [0.0, 1.0, 2.0]),    # u^0 = 1: no 0 * u^-1 at x = a
    ("0^a + b*x", [1.5, 2.0], [0.0, 1.0, 2.0]),        # 0^a = 0 for a > 0
]


@pytest.mark.parametrize("text,theta,x", CUSPS, ids=[c[0] for c in CUSPS])
def test_a_cusp_whose_argument_does_not_move_has_the_limit_as_derivative(text, theta, x):
    """``sqrt(x*(x+c))`` is 0 at x = 0 for every c: its derivative in c is 0 there, which
    central differences give, where the chain rule ``(0.5/0) * 0`` had given NaN."""
    x, theta = np.array(x), np.array(theta, dtype=float)
    m, f, jac = ej(text, x, list(theta))
    assert np.isfinite(jac).all(), jac
    np.testing.assert_allclose(jac, central(numpy_model(m), x, theta), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("text", ["a*sqrt(x*(x+c))", "a*(x*(x+c))^0.5"])
def test_sqrt_through_zero_fits_as_scipy_does(text):
    rng = np.random.default_rng(1)
    x = np.linspace(0, 5, 40)
    y = 1.5 * np.sqrt(x * (x + 2)) + rng.normal(0, 0.02, 40)
    ref, _ = curve_fit(lambda x, a, c: a * np.sqrt(x * (x + c)), x, y, p0=[1, 1])
    r = gradfit.fit(text, x, y)
    assert r.converged, r.message
    np.testing.assert_allclose([r.params["a"], r.params["c"]], ref, rtol=1e-5)
    many = gradfit.fit_many(text, x, np.stack([y, y]))
    np.testing.assert_allclose(many.params["c"], [ref[1]] * 2, rtol=1e-5)


@pytest.mark.parametrize("text,part", [("a*sqrt(x - c)", "sqrt(x - c)"),
                                       ("a*(x - c)^0.5", "(x - c)^0.5")])
def test_an_infinite_slope_stays_infinite_and_is_named(text, part):
    """``sqrt(x - c)`` at x = c: the derivative in c is -inf, as its one-sided differences
    grow without bound; it is not taken as 0, and the part and point are named."""
    x = np.array([0.0, 1.0, 2.0])
    m, f, jac = ej(text, x, [2.0, 0.0])
    assert jac[0, 1] == -np.inf and np.isfinite(jac[1:]).all() and np.isfinite(jac[:, 0]).all()
    fwd = [(np.sqrt(x[0] - (0 - h)) - np.sqrt(x[0])) / h * 2.0 for h in (1e-4, 1e-8)]
    assert fwd[1] > 10 * fwd[0] > 0              # |d/dc| grows as h shrinks: no finite slope
    said = m.undefined_slope(torch.as_tensor(x, dtype=F64), torch.tensor([2.0, 0.0], dtype=F64))
    assert said.startswith(part) and "point 1 (x = 0)" in said and "derivative in c" in said
    assert "fitted exponent" not in said


def test_naming_an_argument_that_does_not_move():
    e = parse_expression("a*sqrt(x*(x+c))")
    said = infinite_slope(e, {"x": torch.tensor([0.0, 1.0], dtype=F64)},
                          torch.tensor([1.0, 2.0], dtype=F64))
    # x*(x+c) is 0 at x = 0 and so is its slope in c: the derivative there is its finite
    # limit, 0 (``expr_jacobian.at_rest``), so no slope is infinite to name
    assert said is None
    assert infinite_slope(parse_expression("a*x + b"), {"x": torch.zeros(2, dtype=F64)},
                          torch.ones(2, dtype=F64)) is None


def test_the_fit_names_the_function_whose_slope_is_infinite():
    x = np.linspace(0, 5, 40)
    r = gradfit.fit("a*sqrt(x - c)", x, 1.5 * np.sqrt(x + 0.5), p0={"a": 1, "c": 0})
    assert "sqrt(x - c)" in r.message and "fitted exponent" not in r.message


# 3. a decomposed accent ---------------------------------------------------------------------

ACUTE = "a\u0301"          # 'a' and U+0301 COMBINING ACUTE ACCENT: Python reads U+00E1


def assert_names_the_accent(message):
    assert "U+0301 COMBINING ACUTE ACCENT" in message and "'\\xe1'" in message, message
    assert "expected the accented letter as one character" in message, message


@pytest.mark.parametrize("call", [
    lambda: parse_expression(ACUTE + "*x"),
    lambda: gradfit.fit(ACUTE + "*x", [0, 1, 2, 3], [0, 1, 2, 3]),
    lambda: gradfit.fit("e\u0301*x", [0, 1, 2, 3], [0, 1, 2, 3]),
    lambda: gradfit.fit("a*x", [0, 1, 2, 3], [0, 1, 2, 3], p0={ACUTE: 1}),
    lambda: gradfit.fit("a*x", [0, 1, 2, 3], [0, 1, 2, 3], bounds={ACUTE: (0, 1)}),
], ids=["parse", "model", "e-acute", "p0", "bounds"])
def test_a_decomposed_accent_is_refused_with_a_reason(call):
    with pytest.raises(InputError) as info:
        call()
    if "e\u0301" in str(info.value):
        assert "U+0301" in str(info.value)
    else:
        assert_names_the_accent(str(info.value))


def test_the_composed_accent_is_a_parameter():
    x = np.arange(4.0)
    r = gradfit.fit("\u00e1*x", x, 2 * x)
    assert r.params == {"\u00e1": pytest.approx(2.0)}


def test_a_decomposed_accent_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("x,y\n0,0\n1,1\n2,2\n")
    for argv in (["--model", ACUTE + "*x"], ["--model", "a*x", "--p0", ACUTE + "=1"]):
        code = main(["fit", str(path), *argv])
        _, err = capsys.readouterr()
        assert code == 2 and "internal error" not in err
        assert_names_the_accent(err)


def test_a_decomposed_accent_on_the_web(web):
    for path, body in (("/api/model", {"model": ACUTE + "*x"}),
                       ("/api/exact", {"model": ACUTE + "*x", "loss": "mse",
                                       "data": {"x": [0, 1, 2], "y": [0, 1, 2]}})):
        r = web.post(path, json=body)
        assert r.status_code == 422, r.text
        assert_names_the_accent(r.json()["detail"])


# 4. weights= --------------------------------------------------------------------------------

def test_weights_point_to_sigma_which_weights_as_curve_fit_does():
    rng = np.random.default_rng(3)
    x = np.linspace(0, 3, 30)
    sig = 0.05 + 0.1 * x
    y = 2 * np.exp(-0.7 * x) + 0.3 + rng.normal(0, sig)
    w = 1 / sig ** 2
    for call in (lambda: gradfit.fit("a*exp(-k*x) + c", x, y, weights=w),
                 lambda: gradfit.fit("a*exp(-k*x) + c", x, y, optimizer="adam", weights=w),
                 lambda: gradfit.fit_many("a*exp(-k*x) + c", x, np.stack([y, y]), weights=w)):
        with pytest.raises(InputError, match=r"does not take weights=: expected sigma=.*"
                                             r"weights = 1/sigma\^2"):
            call()
    r = gradfit.fit("a*exp(-k*x) + c", x, y, sigma=1 / np.sqrt(w))     # as the message says
    ref, cov = curve_fit(lambda x, a, k, c: a * np.exp(-k * x) + c, x, y, p0=[1, 1, 1],
                         sigma=sig, ftol=1e-15, xtol=1e-15, gtol=1e-15)
    np.testing.assert_allclose(list(r.params.values()), ref, rtol=1e-6)
    np.testing.assert_allclose(list(r.stderr.values()), np.sqrt(np.diag(cov)), rtol=1e-5)


# 5. smaller messages --------------------------------------------------------------------------

def test_the_depth_limit_counts_operators_not_the_leaf():
    x = torch.linspace(-1, 1, 5, dtype=F64)
    e = parse_expression("-" * MAX_DEPTH + "x")                  # 60 levels, as 60 brackets
    assert torch.equal(e({"x": x}), x)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse_expression("-" * (MAX_DEPTH + 1) + "x")
    nest = parse_expression("sin(" * (MAX_DEPTH - 1) + "a*x" + ")" * (MAX_DEPTH - 1))
    want = x.numpy() * 0.5
    for _ in range(MAX_DEPTH - 1):
        want = np.sin(want)
    np.testing.assert_allclose(nest({"x": x, "a": torch.tensor(0.5, dtype=F64)}).numpy(), want)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse_expression("sin(" * MAX_DEPTH + "a*x" + ")" * MAX_DEPTH)


@pytest.mark.parametrize("text,column,hint", [
    ("2x", 2, "such as 2*x"), ("2 x", 3, "such as 2*x"), ("a*x^2 + 3x", 10, "such as 3*x"),
    ("(x+1)x", 6, "such as (...)*x"), ("sin x", 5, "such as sin(x)"),
    ("2(x+1)", 2, "such as 2*(...)"),
])
def test_a_product_without_star_says_so(text, column, hint):
    with pytest.raises(ExpressionError, match=rf"at column {column}: expected .*") as info:
        parse_expression(text)
    assert hint in str(info.value) and "decimal literal" not in str(info.value)


def test_a_number_below_float64_is_refused_not_zero():
    with pytest.raises(ExpressionError, match=r"number too small: 1e-400 is 0 in float64 at "
                                              r"column 5"):
        parse_expression("a*x+1e-400")
    x = torch.tensor([1.0, 2.0], dtype=F64)
    sub = parse_expression("1e-310*x")({"x": x}).numpy()        # subnormal: kept
    np.testing.assert_array_equal(sub, 1e-310 * x.numpy())
    assert parse_expression("0e-400 + x")({"x": x}).tolist() == [1.0, 2.0]


def test_p0_naming_the_input_says_it_is_the_input():
    with pytest.raises(InputError, match=r"p0 names 'x', which is the model's input"):
        gradfit.fit("a*x + b", [0, 1, 2], [1, 2, 3], p0={"x": 1})


def test_rel_of_a_value_at_zero_is_short():
    x = np.linspace(-1, 1, 21)
    y = 2 * x + 0.01 * np.cos(9 * x)
    r = gradfit.fit("a*x + b*x^3", x, y)
    r.params["b"] = 1e-19                                  # a value at 0 within its error
    cells = {row["name"]: row["rel"] for row in rows(r)}
    se = r.stderr["b"]
    assert cells["b"] == f"{se / 1e-19 * 100:.1e}%" and len(cells["b"]) <= 10
    assert cells["a"] == f"{r.stderr['a'] / abs(r.params['a']):.2%}"
