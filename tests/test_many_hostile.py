"""fit_many under hostile and odd real data: every bad problem fails alone with its reason,
every bad argument is one InputError saying what was expected, and nothing wrong is
called converged."""
import re

import numpy as np
import pytest

import gradfit
from gradfit.errors import InputError

X = np.linspace(0, 3, 20)
EXP = "a*exp(-k*x)"


def decays(scale=1.0):
    """Two decays; the first scaled by ``scale``, with a wiggle so no start is the optimum."""
    y = 2 * np.exp(-X) * (1 + 0.01 * np.sin(9 * X))
    return np.vstack([scale * y, 2 * np.exp(-0.5 * X)])


@pytest.mark.parametrize("scale", [1e-160, 1e-200, 1e-300])
@pytest.mark.parametrize("optimizer", ["lm", "gd", "adam"])
def test_data_whose_squares_underflow_are_never_called_converged(scale, optimizer):
    # before: LM called 'a*x+b' on 1e-300 data "a perfect fit" at a = -1.2e-165 (the sum
    # of squares underflowed to 0), and 1e-160 data converged 6e-6 off; gd "converged"
    y = decays(scale)
    p0 = {"a": [2 * scale, 2.0], "k": 1.0}
    res = gradfit.fit_many(EXP, X, y, p0=p0, optimizer=optimizer, lr=0.1, steps=3000)
    assert not res.converged[0], res.message[0]
    alone = gradfit.fit_many(EXP, X, y[1:], p0={"a": 2.0, "k": 1.0}, optimizer=optimizer,
                             lr=0.1, steps=3000)
    assert res.params["k"][1] == alone.params["k"][0] and res.reason[1] == alone.reason[0]


def test_an_underflowing_sum_of_squares_says_so_in_fit_and_fit_many():
    y = decays(1e-300)
    res = gradfit.fit_many("a*x + b", X, y)
    assert res.reason[0] == "failed" and "underflow" in res.message[0]
    assert "rescale y" in res.message[0] and res.converged[1]
    one = gradfit.fit(EXP, X, decays(1e-160)[0], p0={"a": 2e-160, "k": 1.0})
    assert not one.converged and "underflow" in one.message
    one = gradfit.fit(EXP, X, decays(1e-160)[0], p0={"a": 2e-160, "k": 1.0}, optimizer="gd")
    assert not one.converged and "underflow" in one.message


@pytest.mark.parametrize("y_scale, sigma", [(1e-200, None), (1e-170, None), (1.0, 1e200)])
def test_a_line_whose_squares_underflow_is_refused_by_fit_and_fit_many(y_scale, sigma):
    # before: fit solved the line directly and called it converged with standard errors
    # 0 (or NaN); fit_many called y / sigma ~ 1e-200 "a perfect fit" (S and J^T r were 0)
    x = np.linspace(0, 1, 20)
    y = (2 * x + 1 + 0.01 * np.sin(7 * x)) * y_scale
    s = None if sigma is None else np.full(20, sigma)
    one = gradfit.fit("a*x+b", x, y, sigma=s)
    many = gradfit.fit_many("a*x+b", x, y[None], sigma=None if s is None else s[None])
    for reason, text in ((one.reason, one.message), (many.reason[0], many.message[0])):
        assert reason == "failed" and "too small to square" in text


def test_standard_errors_whose_squares_overflow_are_still_given():
    # x / sigma of scale 1e-198: the covariance (1e396) overflows, the standard errors
    # (1e198) do not; they came out inf. Oracle: the same fit in units of 1e200 (curve_fit's)
    x = np.linspace(0, 1, 20)
    y = 2 * x + 1 + 0.01 * np.sin(7 * x)
    big = gradfit.fit("a*x+b", x, y * 1e200, sigma=np.full(20, 1e198))
    unit = gradfit.fit("a*x+b", x, y, sigma=np.full(20, 1e-2))
    assert big.converged and unit.converged
    for k in "ab":
        assert big.stderr[k] == pytest.approx(1e200 * unit.stderr[k], rel=1e-12)
        assert big.params[k] == pytest.approx(1e200 * unit.params[k], rel=1e-12)


@pytest.mark.parametrize("scale", [1e-100, 1e-150])
def test_small_data_that_square_fine_still_converge_to_the_scaled_answer(scale):
    y = decays(scale)
    res = gradfit.fit_many(EXP, X, y, p0={"a": [2 * scale, 2.0], "k": 1.0})
    ref = gradfit.fit_many(EXP, X, y / [[scale], [1.0]], p0={"a": 2.0, "k": 1.0})
    assert res.converged.all(), res.message
    assert res.params["k"] == pytest.approx(ref.params["k"], rel=1e-8)
    assert res.params["a"][0] == pytest.approx(scale * ref.params["a"][0], rel=1e-8)


@pytest.mark.parametrize("kwargs,text", [
    ({"starts": 10 ** 9}, "bad number of starts: expected a whole number 1..1000, got 1000000000"),
    ({"starts": True}, "bad number of starts: .* got True"),
    ({"steps": True}, "bad number of steps: .* got True"),
    ({"steps": -1}, "bad number of steps: expected a whole number 0..10000000, got -1"),
    ({"chunk_size": True}, "bad chunk_size: expected a whole number >= 1, got True"),
    ({"dtype": "int"}, "unknown dtype 'int': expected one of float64, float32"),
    ({"guess": 3}, "bad guess: expected a function, or None, got 'int'"),
    ({"progress": "yes"}, "bad progress: expected a function, or None, got 'str'"),
])
def test_bad_arguments_are_refused_before_any_work_by_fits_own_rows(kwargs, text):
    # before: starts=1e9 was a MemoryError, True counted as 1, guess=3 failed every problem
    # with a TypeError in its row, and progress=3 raised TypeError after the first chunk
    with pytest.raises(InputError, match=text):
        gradfit.fit_many(EXP, X, decays(), **kwargs)


def long_table(labels):
    """Three decays of 10 points in long form, their group column ``labels``."""
    import pandas as pd
    t = np.tile(np.linspace(0, 3, 10), 3)
    k = np.repeat([0.5, 1.0, 2.0], 10)
    return pd.DataFrame({"t": t, "v": 2 * np.exp(-k * t), "g": labels})


def fit_table(frame, **kw):
    return gradfit.fit_many("A*exp(-k*t)", data=frame, x="t", y="v", group="g",
                            p0={"A": 1.0, "k": 1.0}, **kw)


@pytest.mark.parametrize("labels", [
    ["a"] * 10 + [None] * 10 + ["c"] * 10,
    ["a"] * 10 + [np.nan] * 10 + ["c"] * 10,
    [0.1] * 10 + [np.nan] * 10 + [0.3] * 10,
    "string-with-NA",
])
def test_rows_without_a_group_label_fail_as_one_group_and_the_others_fit(labels):
    # before: a None or NaN label among texts raised TypeError ('<' not supported between
    # 'str' and 'float'), pandas' NA 'boolean value of NA is ambiguous'
    import pandas as pd
    if labels == "string-with-NA":
        labels = pd.array(["a"] * 10 + [None] * 10 + ["c"] * 10, dtype="string")
    res = fit_table(long_table(labels))
    assert res.reason[1] == "failed" and res.message[1] == (
        "10 row(s) have no group label (empty, NaN or None): expected a label on every row")
    alone = fit_table(long_table(["a"] * 10 + ["b"] * 10 + ["c"] * 10))
    for i in (0, 2):
        assert res.converged[i] and res.params["k"][i] == alone.params["k"][i]
    assert len(res.to_pandas()) == 3 and res.to_csv().count("\n") == 4


def test_labels_of_mixed_types_are_groups_in_order_of_appearance():
    res = fit_table(long_table([1] * 10 + ["b"] * 10 + [2.5] * 10))
    assert list(res.groups) == [1, "b", 2.5] and res.converged.all()
    assert res.params["k"] == pytest.approx([0.5, 1.0, 2.0], rel=1e-10)


def test_a_table_with_one_row_groups_fails_those_alone():
    frame = long_table(["a"] * 10 + ["b"] * 10 + ["c"] * 9 + ["z"])
    res = fit_table(frame)
    assert res.message[3] == "too few points (1) for 2 free parameters"
    assert res.converged[:2].all() and res.n_points.tolist() == [10, 10, 9, 1]


@pytest.mark.parametrize("change,text", [
    (lambda f: f.astype({"v": object}).assign(v=lambda d: d.v.where(d.index != 13, "oops")),
     "row 13, column 'v': not a number: expected a number (a missing value as NaN or None), "
     "got 'oops'"),
    (lambda f: f.assign(u=f.t).set_axis(["t", "v", "g", "t"], axis=1),
     "duplicate column name 't'"),
    (lambda f: f.set_axis([0, 1, 2], axis=1), "bad x column name: expected a column name"),
])
def test_bad_tables_are_one_line_naming_the_cell_or_column(change, text):
    # before: 'a column is not numeric ... could not convert string to float' (no row, no
    # column); a repeated x column was fitted silently as two inputs; an int column name
    # raised TypeError: 'int' object is not iterable
    frame = change(long_table(["a"] * 10 + ["b"] * 10 + ["c"] * 10))
    x = 0 if 0 in frame.columns else "t"
    with pytest.raises(InputError, match=re.escape(text)):
        gradfit.fit_many("A*exp(-k*t)", data=frame, x=x, y="v" if x == "t" else 1,
                         group="g" if x == "t" else 2)


@pytest.mark.parametrize("where,text", [
    ("y", "y holds NaN at index 3 (of 20 points, from 0): expected finite numbers"),
    ("x", "x holds inf at index 3 (of 20 points, from 0): expected finite numbers"),
    ("sigma", "sigma holds 0 at index 3 (of 20 points, from 0): expected positive finite numbers"),
])
def test_a_bad_value_fails_its_problem_saying_which_value_where(where, text):
    # before: 'the data hold NaN or inf' (which array, where, what was expected: unsaid)
    y, x, sigma = decays(), np.tile(X, (2, 1)), np.ones((2, 20))
    {"y": y, "x": x, "sigma": sigma}[where][0, 3] = {"y": np.nan, "x": np.inf, "sigma": 0}[where]
    res = gradfit.fit_many(EXP, x, y, sigma=sigma)
    assert res.message[0] == text and res.reason[0] == "failed" and res.converged[1]


def test_a_result_is_indexed_by_position_or_group_label_and_says_what_it_takes():
    # before: res["b"] raised TypeError ("'<=' not supported between 'int' and 'str'")
    res = fit_table(long_table(["a"] * 10 + ["b"] * 10 + ["c"] * 10))
    assert res["b"].params == res[1].params == res[np.int64(-2)].params
    with pytest.raises(IndexError, match="no problem 3: expected a whole number from -3 to 2"):
        res[3]
    with pytest.raises(KeyError, match="no problem 'z': .* or one of the group labels"):
        res["z"]
    with pytest.raises(KeyError, match="no problem True"):
        res[True]


@pytest.mark.parametrize("kwargs, text", [
    ({"p0": {"a": [2.0, np.nan]}}, "p0 value of 'a' is not finite for this problem (nan): "
                                   "expected a finite number"),
    ({"fixed": {"a": [np.inf, 2.0]}}, "bad fixed value for 'a' for this problem (inf): "
                                      "expected a finite number"),
    ({"bounds": {"k": ([0.0, 5.0], [5.0, 1.0])}}, "bad bounds for 'k' for this problem: "
                                                  "expected low < high, got (5, 1)"),
    ({"bounds": {"k": (0.0, [5.0, np.nan])}}, "bad bounds for 'k' for this problem: "
                                              "expected low < high, got (0, nan)"),
])
def test_a_bad_per_problem_setting_fails_that_problem_alone(kwargs, text):
    # before: one problem's NaN start or crossed bounds refused the whole batch
    bad = 1 if "p0" in kwargs or "bounds" in kwargs else 0
    y = decays()[::-1] if bad == 0 else decays()
    res = gradfit.fit_many(EXP, X, y, **kwargs)
    assert res.reason[bad] == "failed" and res.message[bad] == text
    good = 1 - bad
    one = {k: {n: (v[good] if np.ndim(v) else v) if not isinstance(v, tuple) else
               tuple(s[good] if np.ndim(s) else s for s in v) for n, v in kw.items()}
           for k, kw in kwargs.items()}
    alone = gradfit.fit_many(EXP, X, y[good:good + 1], **one)
    assert res.params["k"][good] == alone.params["k"][0] and res.converged[good]


@pytest.mark.parametrize("kwargs, text", [
    ({"p0": {"a": np.nan}}, "p0 value of 'a' is not finite: expected finite numbers"),
    ({"bounds": {"k": (5.0, 1.0)}}, "bad bounds for 'k': expected low < high, got '(5, 1)'"),
])
def test_a_bad_setting_shared_by_every_problem_is_refused(kwargs, text):
    with pytest.raises(InputError, match=re.escape(text)):
        gradfit.fit_many(EXP, X, decays(), **kwargs)


def test_rows_of_different_lengths_point_to_the_long_form():
    # before: "bad y: ... setting an array element with a sequence. The requested array has
    # an inhomogeneous shape after 1 dimensions ..." (numpy's words)
    with pytest.raises(InputError, match=re.escape(
            "the rows of y differ in length (19, 20): expected rows of one length, or long "
            "columns with group= (series of any lengths)")):
        gradfit.fit_many(EXP, X, [list(decays()[0]), list(decays()[1][:19])])


@pytest.mark.parametrize("optimizer", ["lm", "gd", "adam"])
def test_all_zero_data_are_an_exact_fit_as_fit_calls_it(optimizer):
    # the underflow rule must not fail all-zero data (LM ends at a ~ 1e-170: as perfect as
    # float64 can say); and the gradient methods' exact-fit rule scales the loss by its
    # start, as fit's does (fit_many called gd's exact fit a plateau: the loss at all-zero
    # parameters, its only scale, is 0 here)
    kw = dict(optimizer=optimizer, lr=0.05, steps=3000)
    res = gradfit.fit_many("a*x + b", X, np.zeros((2, 20)), **kw)
    one = gradfit.fit("a*x + b", X, np.zeros(20), **kw)
    assert res.converged.all() and one.converged, (res.message[0], one.message)


@pytest.mark.parametrize("cols, text", [
    (dict(x="v", y="v", group="g"), "column 'v' is used as both x and y"),
    (dict(x="g", y="v", group="g"), "column 'g' is used as both x and group"),
    (dict(x="t", y="v", group="g", sigma="v"), "column 'v' is used as both y and sigma"),
    (dict(x=["t", "t"], y="v", group="g"), "column 't' is listed twice in x"),
])
def test_a_column_named_in_two_roles_is_refused_by_its_roles(cols, text):
    # before: "duplicate column name 'v'" (the table has none), or on Dask an
    # AttributeError ('DataFrame' object has no attribute 'dtype') for x naming the group
    from gradfit.dask_fit import fit_table
    frame = long_table(["a"] * 10 + ["b"] * 10 + ["c"] * 10)
    for run in (lambda: gradfit.fit_many("A*exp(-k*t)", data=frame, **cols),
                lambda: fit_table("A*exp(-k*t)", frame, compute=False, **cols)):
        with pytest.raises(InputError, match=re.escape(text + ": expected each column in one "
                                                              "role, once")):
            run()


@pytest.mark.parametrize("optimizer", ["lm", "adam"])
def test_data_whose_squares_overflow_say_so_in_fit_many_as_in_fit(optimizer):
    # fit_many had said only "the residuals or their derivatives are not finite here"
    x = np.linspace(0, 1, 10)
    big = (2 * x + 1) * 1e170
    res = gradfit.fit_many("a*x+b", x, np.vstack([big, 2 * x + 1]), optimizer=optimizer,
                           lr=0.1, steps=3000)
    assert not res.converged[0] and res.converged[1]
    assert "data are too large for the loss" in res.message[0] and "y/1e170" in res.message[0]
    one = gradfit.fit("a*x+b", x, big)
    assert not one.converged and "y/1e170" in one.message
    mae = gradfit.fit_many("a*x+b", x, big[None], loss="mae")     # no squares: fitted
    assert mae.converged[0] and mae.params["a"][0] == pytest.approx(2e170, rel=1e-12)


def test_tuple_labels_of_a_frame_are_labels():
    """A frame's group column of tuples (a well as (plate, row)): each tuple one group
    (was refused as 'got ndarray': the tuples had become rows of a 2-D array)."""
    import pandas as pd
    df = pd.DataFrame({"g": [("p1", 1)] * 5 + [("p1", 2)] * 5,
                       "x": np.tile(np.arange(5.0), 2),
                       "y": np.r_[np.arange(5.0) + 1, 2 * np.arange(5.0) + 1]})
    r = gradfit.fit_many("a*x+b", data=df, x="x", y="y", group="g")
    assert r.groups.tolist() == [("p1", 1), ("p1", 2)]
    assert r.params["a"].tolist() == pytest.approx([1.0, 2.0], rel=1e-12)
    assert r[("p1", 2)].params["a"] == pytest.approx(2.0, rel=1e-12)


def test_ctrl_c_stops_fit_many_on_several_threads_at_once(tmp_path):
    # before: the worker threads ran every chunk to its end (leaving the pool waits for
    # them): a notebook's interrupt of a minute of adam took a minute
    import subprocess
    import sys
    import time
    script = tmp_path / "long.py"
    script.write_text(
        "import sys, time, numpy as np, torch, gradfit\n"
        "torch.set_num_threads(2)\n"
        "x = np.linspace(0, 1, 50); y = np.random.default_rng(0).random((2000, 50))\n"
        "print('start', flush=True)\n"
        "t0 = time.perf_counter()\n"
        "try:\n"
        "    gradfit.fit_many('A*exp(-k*x)+C', x, y, optimizer='adam', steps=10**6, ftol=0,"
        " gtol=0)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "start"
        time.sleep(2.0)                            # well inside the fit
        import signal
        proc.send_signal(signal.SIGINT)
        t0 = time.perf_counter()
        out, _ = proc.communicate(timeout=60)
        assert "interrupted" in out and time.perf_counter() - t0 < 10
    finally:
        proc.kill()
