"""``gradfit.playground`` checks its arguments in the call, before any server starts, in
gradfit's voice (``InputError``, one line), with ``gradfit.fit``'s own checks: the oracle for
a data error is the message ``fit`` gives for the same data. What it accepts is checked on
the data the server actually serves (``/api/shared/{key}``) and on the parsed HTML."""
import json
import time
import urllib.parse
import urllib.request
from html.parser import HTMLParser

import numpy as np
import pytest

import gradfit
from gradfit.web import notebook
from gradfit.models import make_model

pd = pytest.importorskip("pandas")

X5 = np.arange(5.0)
T = np.linspace(0, 1, 8)


@pytest.fixture
def no_server(monkeypatch):
    """A call that must fail never starts (or reaches) the server."""
    def started():
        raise AssertionError("the server was reached before the arguments were checked")
    monkeypatch.setattr(notebook, "server", started)


def served(p) -> dict:
    base, key = p.url.split("#")[0], p.url.split("shared:")[1]
    return json.loads(urllib.request.urlopen(f"{base}api/shared/{key}", timeout=10).read())


def model_of(p) -> str:
    return urllib.parse.parse_qs(p.url.split("#")[1])["model"][0]


def fit_message(*args, **kwargs) -> str:
    with pytest.raises(gradfit.InputError) as e:
        gradfit.fit(*args, **kwargs)
    return str(e.value)


# the same data given to fit and to playground: the same message
SAME_AS_FIT = {
    "nan": (X5, np.array([1, 2, np.nan, 4, 5.0]), {}),
    "inf in x": (np.array([0, 1, np.inf, 3, 4.0]), X5, {}),
    "masked point": (np.ma.array(X5, mask=[0, 1, 0, 0, 0]), X5, {}),
    "datetime64": (np.arange("2020-01-01", "2020-01-06", dtype="datetime64[D]"), X5, {}),
    "timedelta64": (np.arange(5).astype("timedelta64[s]"), X5, {}),
    "complex x": (X5 + 1j, X5, {}),
    "complex y": (X5, X5 * 1j, {}),
    "y (2, 3) against x (6,)": (np.arange(6.0), np.zeros((2, 3)), {}),
    "length mismatch": (X5, np.arange(4.0), {}),
    "x (5, 1, 1)": (np.zeros((5, 1, 1)), X5, {}),
    "empty": (np.array([]), np.array([]), {}),
    "sigma zeros": (X5, X5, {"sigma": np.zeros(5)}),
    "sigma wrong length": (X5, X5, {"sigma": np.ones(3)}),
    "text": (["a", "b"], [1.0, 2.0], {}),
}


@pytest.mark.parametrize("case", SAME_AS_FIT)
def test_bad_data_get_fits_message_before_the_server_starts(case, no_server):
    x, y, kw = SAME_AS_FIT[case]
    expected = fit_message("a*x + c", x, y, **kw)
    with pytest.raises(gradfit.InputError) as e:
        gradfit.playground(x, y, **kw)
    assert str(e.value) == expected and "\n" not in expected


def test_a_masked_array_without_masked_points_is_served_as_is():
    p = gradfit.playground(np.ma.array(X5, mask=False), 2 * X5)
    assert served(p)["x"] == X5.tolist() and served(p)["y"] == (2 * X5).tolist()


def test_one_sigma_for_every_point_as_fit_takes_it():
    got = served(gradfit.playground(X5, X5, sigma=0.5))
    assert got["sigma"] == [0.5] * 5


def test_too_many_points_says_the_limit_and_how_to_subsample_at_once(no_server):
    n = 1_000_000
    x = np.arange(float(n))
    t0 = time.perf_counter()
    with pytest.raises(gradfit.InputError) as e:
        gradfit.playground(x, x)
    took = time.perf_counter() - t0
    text = str(e.value)
    assert "too many points for the playground (1,000,000)" in text
    assert "at most 100,000 (the page's limit)" in text and "x[::10], y[::10]" in text
    assert took < 2.0, f"the refusal took {took:.1f} s"       # (it had taken 3.5 s)


def test_a_model_that_does_not_parse_is_refused_in_the_cell(no_server):
    expected = fit_message("a*x+", X5, X5)
    with pytest.raises(gradfit.ExpressionError) as e:
        gradfit.playground(X5, X5, model="a*x+")
    assert str(e.value) == expected == "invalid syntax (unexpected end of expression) at column 5"


def test_an_unknown_p0_name_is_refused_as_fit_refuses_it(no_server):
    expected = fit_message("a*x + c", X5, 2 * X5 + 1, p0={"zz": 3})
    with pytest.raises(gradfit.InputError) as e:
        gradfit.playground(X5, 2 * X5 + 1, p0={"zz": 3})
    assert str(e.value) == expected and "'zz'" in expected


@pytest.mark.parametrize("kwargs, text", [
    ({"p0": {"a": "q"}}, "bad value of 'a': expected a finite number, got 'q'"),
    ({"loss": "zz"}, "unknown loss 'zz'"),
    ({"model": lambda x, a: a * x}, "bad model for the playground"),
    ({"model": "a*x + " * 100 + "c"}, "at most 500 characters"),
    ({"inputs": ["my var"]}, "the input name 'my var' cannot be written in an expression"),
    ({"inputs": ["exp"]}, "the input name 'exp' is a function in an expression"),
    ({"inputs": ["pi"]}, "the input name 'pi' is a constant in an expression"),
    ({"inputs": ["t", "u"]}, "bad inputs: expected 1 name"),
    ({"height": '1" onload="alert(1)'}, "bad height"),
    ({"height": -5}, "bad height: expected a whole number of pixels from 100 to 5000, got -5"),
    ({"height": True}, "bad height"),
    ({"height": 760.5}, "bad height"),
    ({"x": "t"}, "x= and y= name a DataFrame's columns"),
])
def test_bad_arguments_are_refused_in_one_line(kwargs, text, no_server):
    with pytest.raises(gradfit.InputError) as e:
        gradfit.playground(X5, 2 * X5 + 1, **kwargs)
    assert text in str(e.value) and "\n" not in str(e.value)


def test_a_p0_in_the_models_order_as_curve_fit_takes_it():
    p = gradfit.playground(X5, 2 * X5 + 1, p0=[2.0, 1.0])
    assert json.loads(urllib.parse.parse_qs(p.url.split("#")[1])["p0"][0]) == {"a": 2.0, "c": 1.0}


# ---------------------------------------------------------------- DataFrames and Series

FRAME = pd.DataFrame({"t": T, "signal": 2 * T + 1, "err": np.full(8, 0.1)})


@pytest.mark.parametrize("make, text", [
    (lambda: gradfit.playground(FRAME, np.zeros(8)),
     "y is given as values, so the DataFrame is x, and its 3 columns would all be inputs"),
    (lambda: gradfit.playground(FRAME, x="t", y="t"), "x and y name the same column 't'"),
    (lambda: gradfit.playground(FRAME, x="t", y="signal", sigma="signal"),
     "y and sigma name the same column 'signal'"),
    (lambda: gradfit.playground(FRAME, x="z"), "no column named 'z' for x: expected one of t, signal, err"),
    (lambda: gradfit.playground(FRAME, x=np.zeros(8)), "x= names the DataFrame's input columns"),
    (lambda: gradfit.playground(pd.DataFrame(np.ones((3, 2)), columns=pd.MultiIndex.from_tuples(
        [("a", "x"), ("a", "y")]))), "the DataFrame's columns have several levels (a MultiIndex)"),
    (lambda: gradfit.playground(pd.DataFrame({"t": T, "label": list("abcdefgh")})),
     "column 'label' holds text, not numbers: expected columns of numbers (choose them with "
     "x=, y= and sigma=), got 'a'"),
    (lambda: gradfit.playground(pd.DataFrame({"when": pd.date_range("2020", periods=5), "v": X5})),
     "bad column 'when': times (datetime64"),
    (lambda: gradfit.playground(pd.DataFrame({"time (s)": T, "y": T})),
     "the input name 'time (s)' cannot be written in an expression: expected a name such as t "
     "or x1 (letters, digits, _; at most 40 characters): pass inputs=['t'] (or rename 'time (s)')"),
    (lambda: gradfit.playground(pd.DataFrame({"exp": T, "y": T})),
     "the input name 'exp' is a function in an expression"),
    (lambda: gradfit.playground(pd.DataFrame({"e": T, "y": T})),
     "the input name 'e' is a constant in an expression"),
    (lambda: gradfit.playground(pd.DataFrame({"t": T})), "no column left for y"),
    (lambda: gradfit.playground(pd.DataFrame({"t": pd.array([1, None, 3, 4, 5], dtype="Int64"),
                                              "y": X5})), "the data hold NaN or inf"),
    (lambda: gradfit.playground(pd.DataFrame({"u": T, "v": T, "y": T}), x=["u", "v"], model="a*x+b"),
     "the input columns are u, v, but the model 'a*x+b' names x"),
    (lambda: gradfit.playground(FRAME["t"].rename("time (s)"), FRAME["signal"]),
     "the input name 'time (s)' cannot be written"),
])
def test_frames_that_cannot_be_shown_are_refused_in_one_line(make, text, no_server):
    with pytest.raises(gradfit.InputError) as e:
        make()
    assert text in str(e.value) and "\n" not in str(e.value)


def test_pandas_default_integer_columns_are_x_and_y():
    # pd.DataFrame(array) names its columns 0, 1, ...: never chosen by the user, so the input
    # is called x; a column is chosen by its label or the label's text
    f = pd.DataFrame({0: [1, 2, 3.0], 1: [1, 2, 4.0], 2: [3, 3, 3.0]})
    p = gradfit.playground(f)
    got = served(p)
    assert got["inputs"] == ["x"] and got["x"] == [1, 2, 3] and got["y"] == [3, 3, 3]
    assert model_of(p) == "a*x + c"
    got = served(gradfit.playground(f, x=0, y="1"))
    assert got["x"] == [1, 2, 3] and got["y"] == [1, 2, 4]
    two = served(gradfit.playground(f, x=[0, 1], y=2))
    assert two["inputs"] == ["x1", "x2"] and two["x2"] == [1, 2, 4]


def test_a_column_name_that_cannot_be_an_input_is_renamed_by_inputs():
    got = served(gradfit.playground(pd.DataFrame({"time (s)": T, "y": 3 * T}), inputs=["t"]))
    assert got["inputs"] == ["t"] and got["x"] == pytest.approx(T) and got["y"] == pytest.approx(3 * T)


def test_series_names_are_the_inputs_and_y():
    p = gradfit.playground(FRAME["t"], FRAME["signal"], sigma=FRAME["err"])
    got = served(p)
    assert got["inputs"] == ["t"] and got["yName"] == "signal" and got["sigma"] == [0.1] * 8
    assert model_of(p) == "a*t + c"
    assert served(gradfit.playground(FRAME[["t"]], FRAME["signal"]))["inputs"] == ["t"]
    unnamed = served(gradfit.playground(pd.Series(T), pd.Series(T)))
    assert unnamed["inputs"] == ["x"]


def test_a_frame_serves_the_named_columns():
    p = gradfit.playground(FRAME, x="t", y="signal", sigma="err")
    got = served(p)
    assert got["x"] == pytest.approx(T) and got["y"] == pytest.approx(2 * T + 1)
    assert got["sigma"] == [0.1] * 8 and got["yName"] == "signal" and got["inputs"] == ["t"]


@pytest.mark.parametrize("columns", [["a"], ["c"], ["b"], ["a", "c"], ["c", "a"], ["b", "d"]])
def test_the_default_model_never_takes_an_input_as_a_parameter(columns):
    frame = pd.DataFrame({**{c: T * (i + 1) for i, c in enumerate(columns)}, "y": 2 * T})
    p = gradfit.playground(frame, x=columns, y="y")
    model = model_of(p)
    m = make_model(model, tuple(columns))
    assert set(m.param_names).isdisjoint(columns) and len(m.param_names) == len(columns) + 1
    assert served(p)["inputs"] == columns


def test_the_default_model_reads_as_before_when_nothing_collides():
    assert notebook.default_model(["x"]) == "a*x + c"
    assert notebook.default_model(["u", "v"]) == "a*u + b*v + c"
    assert notebook.default_model(["a"]) == "b*a + c"


# ---------------------------------------------------------------- the cell's HTML

class Parsed(HTMLParser):
    def __init__(self, text):
        super().__init__()
        self.tags, self.text, self.stack = [], [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data):
        self.text.append((self.stack[-1] if self.stack else None, data))


def test_the_html_escapes_every_attribute_allows_the_clipboard_and_says_to_rerun():
    url = 'http://127.0.0.1:1/#model=a"><script>alert(1)</script>&x=<b>'
    html = notebook.Playground(url, 500)._repr_html_()
    doc = Parsed(html)
    assert not doc.stack                                          # well formed
    assert [t for t, _ in doc.tags] == ["iframe", "div"]          # no injected element
    frame = doc.tags[0][1]
    assert frame["src"] == url and frame["height"] == "500" and frame["allow"] == "clipboard-write"
    assert set(frame) == {"class", "src", "width", "height", "allow", "style"}
    hint = " ".join(d for tag, d in doc.text if tag == "div")
    assert "Re-run this cell" in hint and "127.0.0.1:1" in hint


def test_a_playgrounds_cell_output_holds_the_rerun_hint():
    p = gradfit.playground(X5, X5, height=400)
    doc = Parsed(p._repr_html_())
    assert doc.tags[0][1]["height"] == "400" and doc.tags[0][1]["src"] == p.url
    assert any("Re-run this cell" in d for tag, d in doc.text if tag == "div")
    from IPython.lib.pretty import pretty
    assert "re-run the cell" in pretty(p) and p.url in pretty(p)


@pytest.mark.parametrize("height", ['1" onload="alert(1)', -5, 0, 10**6, None, 3.5])
def test_a_playground_refuses_a_bad_height(height):
    with pytest.raises(gradfit.InputError, match="bad height"):
        notebook.Playground("http://127.0.0.1:1/", height)
