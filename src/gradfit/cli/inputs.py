"""The data options every command shares (a CSV or a built-in dataset, its columns, the
loss measured on it, the JSON answer) and loading the data they name."""
from __future__ import annotations

import argparse

from ..csv_read import sigma_column
from ..datasets import DATASETS
from .options import add_setting


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a CSV file with a header ('-': standard input), or a "
                   "built-in dataset: " + ", ".join(DATASETS))
    add_setting(p, "model", required=True)
    p.add_argument("--x", help="input column(s) of the CSV, comma-separated (default: the first)")
    p.add_argument("--y", help="output column of the CSV (default: the last that is not x "
                   "or sigma)")
    p.add_argument("--sigma", help="column of per-point uncertainties, used as weights "
                   "(default: with neither --y nor --sigma, a column named like one: err, "
                   "sigma, dy, ..., as the page takes it)")
    p.add_argument("--drop-nan", action="store_true",
                   help="drop rows holding NaN, inf or empty cells (default: refuse them)")
    add_setting(p, "loss")
    add_setting(p, "delta")
    p.add_argument("--json", metavar="PATH|-", help="write the result as JSON ('-': stdout only)")


def load(args):
    """The data named by ``args.data``: a built-in dataset, else a CSV and its columns. No
    output path may be the data file (``parsing.check_not_input``), and the model must name
    no column of the file that is not one of its inputs (``check_model_columns``)."""
    from ..data import load_data
    from .parsing import check_not_input
    check_not_input(args)
    if args.data in DATASETS:
        import os
        import sys
        if os.path.exists(args.data) and getattr(args, "json", None) != "-":
            print(f"gradfit: note: {args.data!r} is the built-in dataset; write "
                  f"./{args.data} for the file of that name here", file=sys.stderr)
        chosen = [f"--{k}" for k in ("x", "y", "sigma") if getattr(args, k, None)]
        if chosen:                      # ignored before, without a word
            from ..errors import InputError
            raise InputError(f"{args.data!r} is a built-in dataset: its columns are fixed",
                             expected=f"no {', '.join(chosen)}, or a CSV file")
        data, sigma = load_data(args.data), None
    else:
        data, sigma = _command_line_words(_load_csv, args)
    check_model_columns(getattr(args, "model", None), data, sigma)
    return data


class _Peeked:
    """A binary stream whose first lines are read ahead (the header, to choose columns
    by): ``readline`` gives them again, then the rest of the stream."""

    def __init__(self, stream):
        from collections import deque
        self.stream, self.ahead, self.recording = stream, deque(), True

    def names(self, where: str) -> list[str]:
        """The named columns as the reader names them (``csv_dialect.column_names``: a
        ``numpy.savetxt`` comment over a first row of numbers names them too)."""
        from ..csv_dialect import column_names
        names = column_names(self, where)
        self.recording = False
        return names

    def readline(self, size: int = -1) -> bytes:
        if self.recording:
            self.ahead.append(self.stream.readline(size))
            return self.ahead[-1]
        return self.ahead.popleft() if self.ahead else self.stream.readline(size)


def _load_csv(args):
    """A CSV file (or standard input) with --x, --y, --sigma. Neither --y nor --sigma
    given: a column named like an uncertainty (``sigma_column``) is sigma, as on the page
    (it had been fitted as y when last), said in a note on stderr. Returns the data and the
    name of its sigma column (None without one)."""
    from pathlib import Path

    from ..csv_read import STDIN, _open, _where, read_csv
    from ..data import load_data
    spec = args.data
    if args.y or args.sigma or (spec != STDIN and not Path(spec).is_file()):
        return load_data(spec, x=args.x, y=args.y, sigma=args.sigma,
                         drop_nan=args.drop_nan), args.sigma
    stream = _open(Path(spec))
    try:
        peeked = _Peeked(stream)
        sigma = sigma_column(peeked.names(_where(spec)), args.x)
        data = read_csv(peeked, _where(spec), x=args.x, sigma=sigma, drop_nan=args.drop_nan)
    finally:
        if spec != STDIN:
            stream.close()
    if sigma is not None:
        note_sigma(args, sigma)
    return data, sigma


def note_sigma(args, sigma: str) -> None:
    """The note that column ``sigma`` was taken as sigma by its name (not with --json -)."""
    import sys
    if getattr(args, "json", None) != "-":
        print(f"gradfit: note: column {sigma!r} is taken as sigma, the points' "
              "uncertainties (weights), as its name says; --y or --sigma chooses the "
              "columns yourself", file=sys.stderr)


def guess_group_sigma(args) -> None:
    """``args.sigma`` for a --group fit of a CSV file given neither --y nor --sigma: a
    column named like an uncertainty (``sigma_column``, the group column left out), as
    for one fit; said in a note."""
    from pathlib import Path

    from ..csv_dialect import column_names
    if args.y or args.sigma or not Path(args.data).is_file():   # not stdin: read once
        return
    try:
        with open(args.data, "rb") as fh:
            names = column_names(fh, args.data)
    except OSError:
        return                          # the reader says what is wrong with the file
    names = [n for n in names if n != args.group]
    sigma = sigma_column(names, args.x)
    if sigma is not None:
        args.sigma = sigma
        note_sigma(args, sigma)


#: the Python API's words in a message from the reader, and the command line's for them
_API_WORDS = {"(name it with y=...)": "(name it with --y)"}


def _command_line_words(load, args):
    """``load(args)``, an error from it said with the command line's options."""
    from ..errors import InputError
    try:
        return load(args)
    except InputError as exc:
        text = str(exc)
        for api, cli in _API_WORDS.items():
            text = text.replace(api, cli)
        if text == str(exc):
            raise
        raise InputError(text) from None


def check_model_columns(model, data, sigma: str | None = None,
                        group: str | None = None) -> None:
    """Refuse a model that names a column of the file which is not one of its inputs: the
    column being fitted (``a*y+b``), its sigma, the --group column, or another column
    (``a*x1 + x2`` on columns x1, x2, y without --x): each had been fitted as a constant
    parameter of that name, exit 0. Also an input column named like a constant (``e``,
    ``pi``) that the model writes: there it is the constant, never the column."""
    from ..errors import InputError
    from ..expr import CONSTANTS
    from ..models import CONSTANT_MEANING, _mentions, make_model
    if not isinstance(model, str) or ":" in model:
        return
    x_names = list(data.x_names)
    names = _mentions(model) - set(x_names)
    inputs = ", ".join(x_names)
    roles = [(data.y_name, "the column being fitted"),
             (sigma, "the uncertainties' column (sigma)"),
             (group, "the --group column, which names each series")]
    for column, role in roles:
        if column and column in names:
            raise InputError(f"the model names {column!r}, {role}",
                             expected=f"a model of the input column(s) {inputs} and its "
                             "parameters")
    taken = {c for c, _ in roles if c} | set(x_names)
    others = [c for c in getattr(data, "columns", ()) if c in names and c not in taken]
    if others:
        where = data.name or "the file"
        raise InputError(f"the model names {others[0]!r}, a column of {where} that is not an "
                         "input, so it would be fitted as a constant parameter",
                         expected=f"--x {others[0]} (or --x {','.join(x_names + others)}) to "
                         "read it as an input, or another name for a parameter")
    try:
        written = make_model(model, ("_no_input_",)).constants
    except InputError:
        return                  # the fit says what is wrong with the model
    for c in x_names:
        if c in CONSTANTS and c in written and not (len(x_names) == 1 and "x" in names):
            raise InputError(f"the input column {c!r} has the name of a constant: {c} in a "
                             f"model is {CONSTANT_MEANING[c]}, never the column",
                             expected=f"the column renamed (e.g. to {c}1) and the model "
                             "written with that name" + (", or x for it in the model"
                                                         if len(x_names) == 1 else ""))


def check_uses_an_input(model, inputs, data) -> None:
    """The command line's words for an expression that names none of its input columns
    (``a*t + c`` on a column x): every other name would be a constant parameter."""
    from ..errors import InputError
    from ..models import make_model, unused_inputs
    if not isinstance(model, str) or ":" in model:
        return
    params = make_model(model, tuple(inputs)).param_names
    if len(params) >= 2 and list(unused_inputs(model, inputs)) == list(inputs):
        columns = ", ".join(getattr(data, "columns", ()) or ())
        raise InputError(f"the model {model!r} does not use its input column "
                         f"{', '.join(inputs)}: every other name in it ({', '.join(params)}) "
                         "would be a constant parameter",
                         expected=f"a model of {', '.join(inputs)}, or --x naming the "
                         "column(s) the model uses" + (f" (columns: {columns})" if columns
                                                         else ""))


def check_group_column(model, group: str) -> None:
    """Refuse a model that names the --group column: it names each series (the same in
    all of a series' rows), and had been fitted as a parameter of that name."""
    from ..errors import InputError
    from ..models import _mentions
    if isinstance(model, str) and ":" not in model and group in _mentions(model):
        raise InputError(f"the model names {group!r}, the --group column, which names each "
                         "series", expected="a model of the input column(s) (--x) and its "
                         "parameters")
