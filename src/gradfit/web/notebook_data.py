"""The data of ``gradfit.playground`` (``notebook.py``): arrays, Series or a DataFrame's
columns read as x, y and sigma, the input names (a Series' name, a column's, or ``inputs``),
and the default model, its parameters named apart from the inputs. Every refusal is an
``InputError`` in ``gradfit.fit``'s voice."""
from __future__ import annotations

import numbers

import numpy as np

from ..csv_read import sigma_column
from ..data import check_not_times, unmasked
from ..errors import InputError
from ..expr import CONSTANTS, FUNCTIONS
from .schemas import MAX_INPUT_NAME, usable_input_name

#: the default model's parameter names, the first ones not among the inputs ('e' is a constant)
PARAM_NAMES = "abcdfghkmnpqrsuvw"


def _is_label(v) -> bool:
    return isinstance(v, (str, numbers.Integral)) and not isinstance(v, bool)


def _frame_labels(frame) -> list:
    columns = frame.columns
    if getattr(columns, "nlevels", 1) > 1:
        raise InputError("the DataFrame's columns have several levels (a MultiIndex)",
                         expected="one level of column names: flatten them first, e.g. "
                         "df.columns = ['_'.join(map(str, c)) for c in df.columns]")
    labels = list(columns)
    if not labels:
        raise InputError("the DataFrame has no columns", expected="columns of numbers")
    seen = set()
    for c in labels:
        if str(c) in seen:
            raise InputError(f"two columns are named {str(c)!r}", expected="distinct column names")
        seen.add(str(c))
    return labels


def _same(label, want) -> bool:
    if isinstance(want, str):
        return str(label) == want           # "0" names pandas' column 0, too
    return _is_label(label) and not isinstance(label, str) and label == want


def _find(labels: list, want, role: str):
    """The column ``want`` names: its label, or the text of a label (``"0"`` for column 0)."""
    for c in labels:
        if _same(c, want):
            return c
    raise InputError(f"no column named {str(want)!r} for {role}",
                     expected="one of " + ", ".join(map(str, labels[:20])))


def _column(frame, label) -> np.ndarray:
    """One column as float64 (missing values NaN, as ``fit`` reads them); text and times
    refused, naming the column."""
    col = frame[label]
    what = f"column {str(label)!r}"
    check_not_times(col, what)
    values = unmasked(col)
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        cells = np.asarray(values, dtype=object).reshape(-1)
        bad = next((c for c in cells if not _number(c)), None)
        raise InputError(f"{what} holds text, not numbers", expected="columns of numbers "
                         "(choose them with x=, y= and sigma=)", given=bad) from None


def _number(cell) -> bool:
    try:
        float(cell)
        return True
    except (TypeError, ValueError):
        return False


def _from_frame(frame, x, y, sigma):
    """``(x, y, sigma, x labels, y label)`` of a DataFrame (anything with ``columns`` and
    ``[label]``): ``x``/``y``/``sigma`` name columns. ``y`` given as values (an array, a
    Series) makes the frame x, as ``fit(model, df[["t"]], y)`` reads it."""
    labels = _frame_labels(frame)
    if x is not None and not _is_label(x) and not isinstance(x, (list, tuple)):
        raise InputError("x= names the DataFrame's input columns", expected="a column name "
                         "or a list of one or two (x='t'); for arrays call playground(x, y)",
                         given=type(x).__name__)
    if sigma is None and y is None:
        sigma = _guess_sigma(labels, x)     # a column named err, sigma, dy ...: sigma
    if sigma is not None and _is_label(sigma) and not _number_not_label(sigma, labels):
        sigma = _find(labels, sigma, "sigma")
        s_label = sigma
    else:
        s_label = None                      # None, or values (a number, an array): fit's checks
    xs = None if x is None else [_find(labels, c, "x") for c in ([x] if _is_label(x) else x)]
    if y is not None and not _is_label(y):      # y as values: the frame (or x=) is x
        xs = xs or [c for c in labels if c != s_label]
        if len(xs) > 2:
            raise InputError(f"y is given as values, so the DataFrame is x, and its {len(xs)} "
                             f"columns would all be inputs ({', '.join(map(str, xs[:5]))})",
                             expected="y naming a column (y='signal'), or x= naming one or two")
        y_label, yv = getattr(y, "name", None), y
    else:
        y_label = None if y is None else _find(labels, y, "y")
        if xs is None:
            xs = [c for c in labels if c not in (y_label, s_label)][:1]
        if y_label is None:
            rest = [c for c in labels if c not in xs and c != s_label]
            if not rest:
                raise InputError("no column left for y", expected="a y column besides x and sigma")
            y_label = rest[-1]
        yv = _column(frame, y_label)
    if not xs:
        raise InputError("no column left for x", expected="an x column besides y and sigma")
    roles = [("x", c) for c in xs] + ([("y", y_label)] if yv is not y else []) + \
        ([("sigma", s_label)] if s_label is not None else [])
    for i, (role, c) in enumerate(roles):
        for other, d in roles[:i]:
            if str(c) == str(d):            # labels are distinct as text (_frame_labels)
                raise InputError(f"{other} and {role} name the same column {str(c)!r}",
                                 expected="a column for each")
    xv = np.stack([_column(frame, c) for c in xs], 1) if len(xs) > 1 else _column(frame, xs[0])
    sv = _column(frame, s_label) if s_label is not None else sigma
    return xv, yv, sv, xs, y_label


def _guess_sigma(labels: list, x):
    """The column taken as sigma when neither y nor sigma is given: the page's and the
    command line's rule (``csv_read.sigma_column``: the last column named like an
    uncertainty, err, sigma, dy ..., that is not an x column, with three columns or more);
    None when there is none. (``playground(df)`` of t, signal, err had fitted err as y.)"""
    if x is None:
        xs = None
    else:
        xs = ",".join(str(c) for c in ([x] if _is_label(x) else x))
    name = sigma_column([str(c) for c in labels], xs)
    return next((c for c in labels if isinstance(c, str) and c == name), None)


def _number_not_label(v, labels) -> bool:
    """A number given as sigma that is no column's label: one sigma for every point."""
    return not isinstance(v, str) and not any(_same(c, v) for c in labels)


def _input_names(labels: list, inputs) -> tuple[str, ...]:
    """The model's input names: ``inputs`` when given, else the columns' (a Series' name,
    a DataFrame's column names). Labels that are no text (pandas' default 0, 1 ... of
    ``pd.DataFrame(array)``, a Series without a name) were never chosen as names: they get
    ``x`` (or ``x1``, ``x2``); a text label is the user's name and is kept, or refused when
    an expression cannot write it (then ``inputs=`` renames it)."""
    d = len(labels)
    if inputs is not None:
        names = [n.strip() for n in inputs.split(",")] if isinstance(inputs, str) else list(inputs)
        if len(names) != d or not all(isinstance(n, str) for n in names):
            raise InputError("bad inputs", expected=f"{d} name{'s' * (d > 1)} (one per input "
                             "column), as text", given=repr(inputs))
    else:
        names = [c if isinstance(c, str) else ("x" if d == 1 else f"x{i + 1}")
                 for i, c in enumerate(labels)]
    for n in names:
        fix = f"pass inputs=['t'] (or rename {n[:60]!r})" if inputs is None else "choose another in inputs="
        if n in FUNCTIONS or n in CONSTANTS:
            what = "a function" if n in FUNCTIONS else "a constant"
            raise InputError(f"the input name {n!r} is {what} in an expression",
                             expected=f"another name: {fix}")
        if not usable_input_name(n):
            raise InputError(f"the input name {n[:60]!r} cannot be written in an expression",
                             expected=f"a name such as t or x1 (letters, digits, _; at most "
                             f"{MAX_INPUT_NAME} characters): {fix}")
    if len(set(names)) != len(names):
        raise InputError("the input names repeat", expected="two different names", given=repr(names))
    return tuple(names)


def default_model(inputs) -> str:
    """A line in the inputs: ``a*t + c``, ``a*u + b*v + c``, each parameter whose name is an
    input's renamed to the next free letter (an input ``a`` had made ``a*a + c``, a parabola
    with one parameter).

    >>> default_model(["t"]), default_model(["a"]), default_model(["c"]), default_model(["u", "c"])
    ('a*t + c', 'b*a + c', 'a*c + b', 'a*u + b*c + d')
    """
    params = [p if p not in inputs else None for p in ["a", "b"][:len(inputs)] + ["c"]]
    taken = set(params)
    for i, p in enumerate(params):
        if p is None:
            p = next(q for q in PARAM_NAMES if q not in inputs and q not in taken)
            params[i] = p
            taken.add(p)
    *slopes, intercept = params
    return " + ".join(f"{p}*{n}" for p, n in zip(slopes, inputs)) + f" + {intercept}"


def _points(xv: np.ndarray, yv: np.ndarray, sv, names) -> dict:
    points = {"x": (xv if xv.ndim == 1 else xv[:, 0]).tolist(), "y": yv.tolist(),
              "inputs": list(names)}
    if xv.ndim == 2:
        points["x2"] = xv[:, 1].tolist()
    if sv is not None:
        points["sigma"] = sv.tolist()
    return points


