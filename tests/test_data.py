"""Tests of gradfit.data against oracles: the lesson's own code, hand-written files."""
import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from gradfit.datasets import DATASETS
from gradfit.csv_read import load_csv
from gradfit.data import (Dataset, as_tensors, check_enough_points, lesson_data, load_data,
                          synthetic)
from gradfit.errors import DataError

# the lesson's own noise code multiplies a tensor by an array, which numpy 2 warns about
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")

LESSON_FILE = Path("/work/shared/lesson/lesson_loop.py")
HAVE_EXPR = importlib.util.find_spec("gradfit.expr") is not None


def lesson_recipe(n=20, seed=42, f=lambda x: 3*x**2 + 2*x + 1, lo=-2, hi=2, mult=0.15, add=1.5):
    """The lesson's four lines, as written in the lesson (global numpy state, torch x)."""
    from numpy.random import normal

    def noise(x, scale): return normal(scale=scale, size=x.shape)
    def add_noise(x, mult, add): return x * (1+noise(x, mult)) + noise(x, add)
    np.random.seed(seed)
    x = torch.linspace(lo, hi, steps=n)[:, None]
    y = add_noise(f(x), mult, add)
    return x, y


@pytest.fixture(scope="module")
def lesson_module():
    if not LESSON_FILE.exists():
        pytest.skip(f"the lesson's code is not at {LESSON_FILE}")
    spec = importlib.util.spec_from_file_location("lesson_loop", LESSON_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flat64(t):
    return np.asarray(t, dtype=np.float64).reshape(-1)


# ---------------------------------------------------------------- the lesson's data

@pytest.mark.parametrize("n", [1, 2, 7, 20, 101])
def test_lesson_data_is_the_lesson_files_data_bit_for_bit(lesson_module, n):
    x, y = lesson_module.lesson_data(n)
    assert x.dtype == torch.float32 and y.dtype == torch.float64
    d = lesson_data(n)
    assert d.x.dtype == np.float64 and d.y.dtype == np.float64
    assert d.x.shape == (n,) and d.y.shape == (n,)
    assert np.array_equal(d.x, flat64(x.numpy())) and np.array_equal(d.y, y.numpy().reshape(-1))


def test_lesson_data_is_the_lessons_recipe_bit_for_bit():
    x, y = lesson_recipe()
    d = lesson_data()
    assert np.array_equal(d.x, flat64(x.numpy())) and np.array_equal(d.y, flat64(y))
    assert d.sigma is None and d.x_names == ("x",) and d.y_name == "y" and d.name == "lesson"
    assert d.n == 20 and d.n_inputs == 1 and d.dropped == 0


def test_lesson_mae_is_the_lessons_printed_number(lesson_module):
    # in the lesson's own dtypes, on the lesson's own data ...
    x, y = lesson_module.lesson_data()
    lesson_mae = lesson_module.mae(lesson_module.quad(1.1, 1.1, 1.1, x), y)
    assert round(float(lesson_mae), 4) == 2.4219
    # ... on ours, in the lesson's dtypes (x float32 column, y float64) and in float64
    d = lesson_data()
    x32, y64 = torch.tensor(d.x, dtype=torch.float32)[:, None], torch.tensor(d.y)[:, None]
    assert round(float(torch.abs(1.1*x32**2 + 1.1*x32 + 1.1 - y64).mean()), 4) == 2.4219
    assert round(float(np.abs(1.1*d.x**2 + 1.1*d.x + 1.1 - d.y).mean()), 4) == 2.4219


def test_lesson_data_leaves_global_numpy_random_state_alone():
    np.random.seed(0)
    expected = np.random.rand(3)
    np.random.seed(0)
    lesson_data()
    synthetic(lambda x: x, seed=5)
    assert np.array_equal(np.random.rand(3), expected)


def test_lesson_is_the_registered_builtin():
    assert np.array_equal(DATASETS["lesson"]().y, lesson_data().y)
    assert np.array_equal(DATASETS["lesson"]().x, lesson_data().x)
    d = load_data("lesson")
    assert d.name == "lesson" and np.array_equal(d.y, lesson_data().y)


# ---------------------------------------------------------------- synthetic

def test_synthetic_with_the_lessons_f_and_seed_is_the_lesson_data():
    d = synthetic(lambda x: 3*x**2 + 2*x + 1, n=20, seed=42)
    ref = lesson_data()
    assert np.array_equal(d.x, ref.x) and np.array_equal(d.y, ref.y)
    assert d.name == "synthetic: <lambda>"


def test_synthetic_follows_the_lessons_recipe_for_other_settings():
    f = lambda x: torch.sin(x) * 4  # noqa: E731
    d = synthetic(f, n=33, x_range=(0.5, 7.0), mult=0.3, add=0.2, seed=7)
    x, y = lesson_recipe(n=33, seed=7, f=f, lo=0.5, hi=7.0, mult=0.3, add=0.2)
    assert np.array_equal(d.x, flat64(x.numpy())) and np.array_equal(d.y, flat64(y))


@pytest.mark.skipif(not HAVE_EXPR, reason="gradfit.expr (parse_expression) is not written yet")
def test_synthetic_from_an_expression_is_the_lesson_data():
    d = synthetic("3*x^2+2*x+1", n=20, seed=42)
    assert np.array_equal(d.x, lesson_data().x) and np.array_equal(d.y, lesson_data().y)
    assert d.name == "synthetic: 3*x^2+2*x+1"


@pytest.mark.skipif(not HAVE_EXPR, reason="gradfit.expr (parse_expression) is not written yet")
def test_synthetic_expression_with_free_parameters_is_refused_by_name():
    with pytest.raises(DataError) as e:
        synthetic("a*x^2 + b")
    assert "free parameters" in str(e.value) and "a" in e.value.problem and "b" in e.value.problem


def test_synthetic_seeds_differ_and_repeat():
    f = lambda x: 3*x**2 + 2*x + 1  # noqa: E731
    assert not np.array_equal(synthetic(f, seed=1).y, synthetic(f, seed=2).y)
    assert np.array_equal(synthetic(f, seed=3).y, synthetic(f, seed=3).y)


def test_synthetic_respects_n_and_x_range():
    d = synthetic(lambda x: x, n=11, x_range=(1.0, 6.0))
    assert d.n == 11 and d.x.shape == (11,)
    assert d.x[0] == 1.0 and d.x[-1] == 6.0 and np.all(np.diff(d.x) > 0)
    assert np.array_equal(d.x, np.linspace(1, 6, 11, dtype=np.float32).astype(np.float64))
    assert synthetic(lambda x: x, n=1).x.tolist() == [-2.0]


def test_synthetic_without_noise_is_f_exactly():
    d = synthetic(lambda x: 2*x + 1, n=5, x_range=(0.0, 1.0), mult=0, add=0)
    assert d.y.tolist() == [1.0, 1.5, 2.0, 2.5, 3.0]
    quad = synthetic(lambda x: 3*x**2 + 2*x + 1, n=5, mult=0.0, add=0.0)
    assert quad.y.tolist() == [9.0, 2.0, 1.0, 6.0, 17.0]


def test_synthetic_accepts_column_and_constant_results():
    col = synthetic(lambda x: (x * 2)[:, None], n=4, mult=0, add=0)
    assert col.y.shape == (4,) and np.array_equal(col.y, 2 * col.x)
    assert synthetic(lambda x: 5.0, n=3, mult=0, add=0).y.tolist() == [5.0, 5.0, 5.0]


@pytest.mark.parametrize("kwargs, words", [
    (dict(n=0), ["n", "integer >= 1", "0"]),
    (dict(n=2.5), ["n", "integer >= 1"]),
    (dict(n=True), ["n", "integer >= 1"]),
    (dict(x_range=(1.0, 1.0)), ["x_range", "lo < hi"]),
    (dict(x_range=(0.0, float("inf"))), ["x_range", "finite"]),
    (dict(x_range=3), ["x_range", "two numbers"]),
    (dict(mult=-0.1), ["mult", ">= 0", "-0.1"]),
    (dict(add=float("nan")), ["add", "finite"]),
    (dict(seed=-1), ["seed", "integer"]),
])
def test_synthetic_refuses_bad_settings(kwargs, words):
    with pytest.raises(DataError) as e:
        synthetic(lambda x: x, **kwargs)
    for w in words:
        assert w in str(e.value)


def test_synthetic_refuses_bad_functions():
    with pytest.raises(DataError, match="not finite at x = 0"):
        synthetic(lambda x: 1 / x, n=5)
    with pytest.raises(DataError, match="wrong shape.*expected 5 values"):
        synthetic(lambda x: torch.zeros(3), n=5)
    with pytest.raises(DataError, match="callable or a text expression"):
        synthetic(42)


# ---------------------------------------------------------------- load_csv: good files

def write(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return p


def test_load_csv_one_x_column(tmp_path):
    p = write(tmp_path, "x,y\n1,2\n3.5,-4e-1\n")
    d = load_csv(p)
    assert d.x.tolist() == [1.0, 3.5] and d.y.tolist() == [2.0, -0.4]
    assert d.x.shape == (2,) and d.sigma is None and d.dropped == 0
    assert d.x_names == ("x",) and d.y_name == "y" and d.name == str(p)
    assert load_csv(str(p)).name == str(p)


def test_load_csv_defaults_first_and_last_columns(tmp_path):
    p = write(tmp_path, "a,b,c\n1,2,3\n4,5,6\n")
    d = load_csv(p)
    assert d.x_names == ("a",) and d.y_name == "c" and d.y.tolist() == [3.0, 6.0]
    d = load_csv(p, x="c")                      # y: the last column not among x
    assert d.y_name == "b" and d.x.tolist() == [3.0, 6.0]
    d = load_csv(p, y="a")                      # x: the first column that is not y
    assert d.x_names == ("b",) and d.y.tolist() == [1.0, 4.0]
    d = load_csv(p, x="b", y="a")
    assert d.x.tolist() == [2.0, 5.0] and d.y.tolist() == [1.0, 4.0]


@pytest.mark.parametrize("xs", ["x1,x2", " x1 , x2 ", ["x1", "x2"], ("x1", "x2")])
def test_load_csv_several_x_columns(tmp_path, xs):
    p = write(tmp_path, "x1,x2,y\n1,2,3\n4,5,6\n7,8,9\n")
    d = load_csv(p, x=xs)
    assert d.x.shape == (3, 2) and d.n == 3 and d.n_inputs == 2
    assert d.x.tolist() == [[1, 2], [4, 5], [7, 8]] and d.y.tolist() == [3, 6, 9]
    assert d.x_names == ("x1", "x2")
    assert load_csv(p, x="x2,x1").x.tolist() == [[2, 1], [5, 4], [8, 7]]


def test_load_csv_sigma_column(tmp_path):
    p = write(tmp_path, "x,y,err\n1,2,0.5\n3,4,1e-3\n")
    d = load_csv(p, x="x", sigma="err")         # y defaults past the sigma column
    assert d.y_name == "y" and d.sigma.tolist() == [0.5, 0.001] and d.sigma.dtype == np.float64
    assert load_csv(p, sigma="err").y_name == "y"


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_load_csv_other_delimiters(tmp_path, delimiter):
    p = write(tmp_path, delimiter.join(["x", "y"]) + "\n" + delimiter.join(["1.5", "2"]) + "\n")
    d = load_csv(p)
    assert d.x.tolist() == [1.5] and d.y.tolist() == [2.0]


def test_load_csv_bom_whitespace_crlf_quotes_blank_lines(tmp_path):
    text = '\ufeff x , "y" \r\n 1 , " 2 " \r\n\r\n3,4\r\n'
    d = load_csv(write(tmp_path, text))
    assert d.x_names == ("x",) and d.y_name == "y"
    assert d.x.tolist() == [1.0, 3.0] and d.y.tolist() == [2.0, 4.0]


def test_load_csv_ignores_unused_text_columns(tmp_path):
    p = write(tmp_path, "label,x,y\nfirst,1,2\n,3,\t4\n")
    d = load_csv(p, x="x")
    assert d.x.tolist() == [1.0, 3.0] and d.y.tolist() == [2.0, 4.0]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(allow_nan=False, allow_infinity=False),
                          st.floats(allow_nan=False, allow_infinity=False)),
                min_size=1, max_size=20))
def test_load_csv_reads_back_what_was_written_exactly(tmp_path_factory, rows):
    p = tmp_path_factory.mktemp("prop") / "points.csv"
    p.write_text("x,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in rows), encoding="utf-8")
    d = load_csv(p)
    assert d.x.tolist() == [a for a, _ in rows] and d.y.tolist() == [b for _, b in rows]


# ---------------------------------------------------------------- load_csv: bad files

def error_of(path, **kwargs):
    with pytest.raises(DataError) as e:
        load_csv(path, **kwargs)
    return str(e.value)


def test_missing_file_directory_and_not_utf8(tmp_path):
    m = error_of(tmp_path / "nope.csv")
    assert "nope.csv" in m and "file not found" in m and "expected a CSV" in m
    m = error_of(tmp_path)
    assert str(tmp_path) in m and "directory" in m
    m = error_of(write(tmp_path, b"x,y\n1,2\n3,\xff\n", "latin.csv"))
    assert "latin.csv" in m and "not UTF-8" in m and "row 3" in m and "expected" in m
    m = error_of(write(tmp_path, b"x,y\n1,\x002\n", "binary.csv"))
    assert "binary.csv" in m and "NUL" in m


@pytest.mark.parametrize("text", ["", "  \n\n"])
def test_empty_file(tmp_path, text):
    p = write(tmp_path, text, "empty.csv")
    assert error_of(p) == f"{p}: empty file: expected a header row and at least one data row"


def test_header_only(tmp_path):
    m = error_of(write(tmp_path, "x,y\n\n", "head.csv"))
    assert "head.csv" in m and "no data rows" in m and "expected at least one row" in m


def test_file_without_header_keeps_its_first_row(tmp_path):
    """A first row of numbers is data: all rows kept, columns named c1, c2, ..."""
    rows = np.array([[1.0, 2.1, 0.5], [2.0, 3.9, 0.5], [3.0, 6.2, 0.5], [4.0, 8.1, 0.5]])
    p = write(tmp_path, "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    d = load_csv(p)
    assert d.x_names == ("c1",) and d.y_name == "c3"
    np.testing.assert_array_equal(d.y, rows[:, 2])
    d = load_csv(p, x="c1", y="c2", sigma="c3")
    np.testing.assert_array_equal(d.x, rows[:, 0])
    np.testing.assert_array_equal(d.y, rows[:, 1])
    np.testing.assert_array_equal(d.sigma, rows[:, 2])
    assert "row 2, column 'c2'" in error_of(write(tmp_path, "1,2\n2,\n", "gap.csv"), y="c2")


def test_numpy_savetxt_header_and_comment_lines(tmp_path):
    """numpy.savetxt's '# x,y' names the columns; comment lines above the header are
    skipped, and rows keep their line numbers."""
    rows = np.array([[0.0, 1.0], [1.0, 3.25], [2.0, 4.5]])
    p = tmp_path / "saved.csv"
    np.savetxt(p, rows, delimiter=",", header="t,v")
    d = load_csv(p, x="t", y="v")
    np.testing.assert_array_equal(np.c_[d.x, d.y], rows)
    p = write(tmp_path, "# instrument 7\n\n# units: s, V\nt,v\n1,2\n2,x\n", "notes.csv")
    assert "notes.csv, row 6, column 'v'" in error_of(p)
    d = load_csv(write(tmp_path, "# made by hand\nt,v\n1,2\n2,3\n", "ok.csv"))
    assert d.x_names == ("t",) and d.y.tolist() == [2.0, 3.0]


def test_pandas_index_and_trailing_delimiters_are_unnamed_columns_never_chosen(tmp_path):
    """pandas' to_csv writes its index as an unnamed first column, spreadsheets a trailing
    delimiter on every line: x and y default to the named columns, as pandas reads them."""
    pd = pytest.importorskip("pandas")
    t = np.linspace(0, 2, 5)
    p = tmp_path / "frame.csv"
    pd.DataFrame({"t": t, "v": 3 * t + 1}).to_csv(p)
    d = load_csv(p)
    assert (d.x_names, d.y_name, d.columns) == (("t",), "v", ("t", "v"))
    np.testing.assert_array_equal(d.x, pd.read_csv(p)["t"].to_numpy())
    np.testing.assert_array_equal(d.y, 3 * t + 1)
    d = load_csv(write(tmp_path, "t,v,\n1,2,\n2,3,\n", "trail.csv"))
    assert (d.x_names, d.y_name, d.y.tolist()) == (("t",), "v", [2.0, 3.0])
    assert "only one named column ('v')" in error_of(write(tmp_path, ",v\n1,2\n", "one.csv"))
    m = error_of(write(tmp_path, "t,v,\n1,2,\n", "t.csv"), y="")
    assert "empty column name in y" in m


def test_missing_column_lists_the_columns(tmp_path):
    p = write(tmp_path, "x,y,w\n1,2,3\n")
    for kwargs in (dict(x="z"), dict(y="z"), dict(sigma="z"), dict(x=["x", "z"])):
        m = error_of(p, **kwargs)
        assert m == f"{p}: no column named 'z': expected one of the columns 'x', 'y', 'w'"


def test_duplicate_and_empty_header_names(tmp_path):
    m = error_of(write(tmp_path, "x,y,x\n1,2,3\n", "dup.csv"))
    assert "dup.csv, row 1" in m and "duplicate column name 'x' (columns 1 and 3)" in m
    assert "expected distinct column names" in m
    m = error_of(write(tmp_path, "x,,y\n1,2,3\n", "noname.csv"))
    assert "noname.csv, row 1" in m and "column 2 has no name" in m


def test_same_column_in_two_roles(tmp_path):
    p = write(tmp_path, "x,y,s\n1,2,3\n")
    m = error_of(p, x="x", y="x")
    assert m == (f"{p}: column 'x' is used as both x and y: "
                 "expected a y column that is not one of the x columns")
    assert "'s' is used as both y and sigma" in error_of(p, y="s", sigma="s")
    assert "'x' is used as both x and sigma" in error_of(p, x="x", sigma="x")
    assert load_csv(p, sigma="x").x_names == ("y",)    # defaults step around sigma
    assert "listed twice in x" in error_of(p, x="x,x")
    assert "no column left for y" in error_of(p, x="x,y", sigma="s")


def test_single_column_file(tmp_path):
    m = error_of(write(tmp_path, "x\n1\n2\n", "one.csv"))
    assert "one.csv" in m and "only one column ('x')" in m and "at least two columns" in m


def test_row_with_wrong_number_of_cells_names_the_editor_line(tmp_path):
    p = write(tmp_path, "x,y\n1,2\n\n3\n", "short.csv")   # the short row is line 4
    m = error_of(p)
    assert m == (f"{p}, row 4: this row has 1 cell but the header has 2 columns: "
                 "expected 2 cells, one per column")
    assert "row 2: this row has 3 cells" in error_of(write(tmp_path, "x,y\n1,2,3\n"))


def test_non_numeric_cell(tmp_path):
    p = write(tmp_path, "x,y\n1,2\n3,abc\n", "words.csv")
    m = error_of(p)
    assert m.startswith(f"{p}, row 3, column 'y': not a number: expected a number")
    assert m.endswith("got 'abc'")
    # a ';' file whose numbers have decimal points: a decimal comma after them is refused
    # (a file of decimal commas throughout is read: test_web_page4)
    m = error_of(write(tmp_path, "x;y\n0.5;2\n1,5;2\n", "comma.csv"))
    assert "row 3, column 'x'" in m and "'.' as the decimal point" in m and "'1,5'" in m


def test_missing_and_non_finite_values_are_errors_by_default(tmp_path):
    p = write(tmp_path, "x,y\n1,2\n3,\n", "gap.csv")
    m = error_of(p)
    assert m.startswith(f"{p}, row 3, column 'y': missing value: expected a finite number")
    assert "--drop-nan" in m
    for cell in ("nan", "NaN", "inf", "-Infinity"):
        m = error_of(write(tmp_path, f"x,y\n{cell},2\n", "nonfinite.csv"))
        assert "row 2, column 'x': not a finite number" in m and f"got '{cell}'" in m
        assert "--drop-nan" in m


def test_drop_nan_drops_and_counts_rows_with_used_missing_values(tmp_path):
    text = "x,y,note,s\n1,2,,1\n,3,a,1\n4,nan,b,1\n5,6,,inf\n7,8,c,2\n"
    p = write(tmp_path, text)
    d = load_csv(p, x="x", y="y", drop_nan=True)          # s unused: only x, y count
    assert d.x.tolist() == [1.0, 5.0, 7.0] and d.y.tolist() == [2.0, 6.0, 8.0] and d.dropped == 2
    d = load_csv(p, x="x", y="y", sigma="s", drop_nan=True)
    assert d.x.tolist() == [1.0, 7.0] and d.sigma.tolist() == [1.0, 2.0] and d.dropped == 3
    assert load_csv(write(tmp_path, "x,y\n1,2\n", "clean.csv"), drop_nan=True).dropped == 0


def test_drop_nan_with_nothing_left(tmp_path):
    m = error_of(write(tmp_path, "x,y\n,1\n2,nan\n", "allbad.csv"), drop_nan=True)
    assert "allbad.csv" in m and "no rows left after dropping 2" in m and "'x', 'y'" in m


@pytest.mark.parametrize("cell", ["0", "-1.5"])
def test_sigma_must_be_positive(tmp_path, cell):
    p = write(tmp_path, f"x,y,s\n1,2,1\n3,4,{cell}\n", "sig.csv")
    for drop in (False, True):
        m = error_of(p, sigma="s", drop_nan=drop)
        assert m == f"{p}, row 3, column 's': uncertainty must be positive: " \
                    f"expected a number > 0, got '{cell}'"


# ---------------------------------------------------------------- the rest of the API

def test_check_enough_points():
    check_enough_points(lesson_data(3), 3)
    with pytest.raises(DataError) as e:
        check_enough_points(lesson_data(2), 3)
    assert str(e.value) == "lesson: 2 points but 3 parameters: need at least 3 points"
    with pytest.raises(DataError, match="1 point but 2 parameters"):
        check_enough_points(lesson_data(1), 2)


def test_load_data_reads_csv_paths_with_options(tmp_path):
    p = write(tmp_path, "a,b,c\n1,2,3\n")
    d = load_data(str(p), x="b", y="a")
    assert d.x.tolist() == [2.0] and d.y.tolist() == [1.0] and d.name == str(p)
    assert load_data("lesson", x=None, y=None, sigma=None, drop_nan=False).name == "lesson"


def test_load_data_refuses_unknown_names_and_csv_options_for_builtins(tmp_path):
    with pytest.raises(DataError) as e:
        load_data("lessn")
    m = str(e.value)
    assert "'lessn'" in m and "lesson" in m and "CSV file" in m
    with pytest.raises(DataError, match="x apply only to CSV files"):
        load_data("lesson", x="x")


def test_as_tensors(tmp_path):
    x, y, s = as_tensors(lesson_data())
    assert x.dtype == y.dtype == torch.float64 and s is None and x.shape == (20,)
    assert np.array_equal(y.numpy(), lesson_data().y)
    d = load_csv(write(tmp_path, "a,b,y,s\n1,2,3,4\n5,6,7,8\n"), x="a,b", sigma="s")
    x, y, s = as_tensors(d, dtype=torch.float32, device="cpu")
    assert x.shape == (2, 2) and x.dtype == torch.float32 and s.tolist() == [4.0, 8.0]
    x[0, 0] = 99.0                                   # a copy: the dataset is unchanged
    assert d.x[0, 0] == 1.0


def test_dataset_is_frozen_and_serialisable(tmp_path):
    d = load_csv(write(tmp_path, "a,b,y,s\n1,2,3,4\n"), x="a,b", sigma="s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.y = np.zeros(1)
    with pytest.raises(ValueError):
        d.y[0] = 0.0
    back = json.loads(json.dumps(d.to_dict()))
    assert back["x"] == [[1.0, 2.0]] and back["y"] == [3.0] and back["sigma"] == [4.0]
    assert back["x_names"] == ["a", "b"] and back["y_name"] == "y" and back["n"] == 1
    assert json.loads(json.dumps(lesson_data().to_dict()))["y"] == lesson_data().y.tolist()


def test_dataset_checks_its_fields():
    Dataset(x=[1, 2], y=[3, 4], sigma=[1, 1], x_names=("x",))
    with pytest.raises(DataError, match="x and y do not match"):
        Dataset(x=[1, 2, 3], y=[3, 4], sigma=None, x_names=("x",))
    with pytest.raises(DataError, match="x_names does not match"):
        Dataset(x=[[1, 2]], y=[3], sigma=None, x_names=("x",))
    with pytest.raises(DataError, match="sigma has values <= 0"):
        Dataset(x=[1], y=[3], sigma=[0], x_names=("x",))
    with pytest.raises(DataError, match="non-finite"):
        Dataset(x=[1], y=[np.nan], sigma=None, x_names=("x",))


def test_complex_data_is_refused_not_cut_to_its_real_part():
    import gradfit
    import torch
    x = np.linspace(0, 1, 10)
    for call in (lambda: gradfit.fit("a*x+b", x, x + 1j),
                 lambda: gradfit.fit("a*x+b", torch.tensor(x) + 0j, x),
                 lambda: gradfit.fit_many("a*x+b", x, np.vstack([x, x]) + 1j)):
        with pytest.raises(gradfit.InputError, match="complex numbers"):
            call()


def test_a_csv_of_many_batches_reads_every_cell_as_float_reads_it():
    # the fast path converts a batch of rows at once; the oracle is Python's float per cell
    import io
    from gradfit.csv_read import BATCH_ROWS, read_csv
    rng = np.random.default_rng(0)
    n = 2 * BATCH_ROWS + 123
    x = [repr(float(v)) for v in rng.uniform(-1e6, 1e6, n)]
    y = ["%.17g" % v for v in rng.standard_normal(n)]
    y[5] = " +.5 "
    text = "x,y\n" + "".join(f"{a},{b}\n" for a, b in zip(x, y))
    d = read_csv(io.BytesIO(text.encode()), "f.csv")
    assert d.x.tolist() == [float(v) for v in x] and d.y.tolist() == [float(v) for v in y]


@pytest.mark.parametrize("bad, message", [("1_000", "not a number"), ("inf", "not a finite"),
                                          ("", "missing value")])
def test_the_first_bad_cell_of_a_later_batch_is_named_by_its_row(bad, message):
    import io
    from gradfit.csv_read import BATCH_ROWS, read_csv
    rows = [f"{i},{2 * i}" for i in range(2 * BATCH_ROWS)]
    rows[BATCH_ROWS + 7] = f"{BATCH_ROWS + 7},{bad}"
    rows[BATCH_ROWS + 9] = "oops,1"
    text = "x,y\n" + "\n".join(rows) + "\n"
    with pytest.raises(DataError, match=message) as e:
        read_csv(io.BytesIO(text.encode()), "f.csv", max_points=BATCH_ROWS + 20)
    assert f"row {BATCH_ROWS + 9}, column 'y'" in str(e.value)      # header is row 1


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet="0123456789eE+-. \t_ni\n,", min_size=0, max_size=7),
                min_size=1, max_size=5))
def test_numbers_read_at_once_are_exactly_those_parse_number_reads(cells):
    import math
    from gradfit.csv_read import finite_numbers, parse_number

    def one(c):
        try:
            v = parse_number(c.strip()) if c.strip() else math.nan
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    ref = [one(c) for c in cells]
    got = finite_numbers(cells)
    if any(v is None for v in ref):
        assert got is None
    else:
        assert got is not None and got.tolist() == ref
