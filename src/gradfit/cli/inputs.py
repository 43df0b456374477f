"""The data options every command shares (a CSV or a built-in dataset, its columns, the
loss measured on it, the JSON answer) and loading the data they name."""
from __future__ import annotations

import argparse

from ..datasets import DATASETS
from .options import add_setting


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a CSV file with a header ('-': standard input), or a "
                   "built-in dataset: " + ", ".join(DATASETS))
    add_setting(p, "model", required=True)
    p.add_argument("--x", help="input column(s) of the CSV, comma-separated (default: the first)")
    p.add_argument("--y", help="output column of the CSV (default: the last)")
    p.add_argument("--sigma", help="column of per-point uncertainties, used as weights")
    p.add_argument("--drop-nan", action="store_true",
                   help="drop rows holding NaN, inf or empty cells (default: refuse them)")
    add_setting(p, "loss")
    add_setting(p, "delta")
    p.add_argument("--json", metavar="PATH|-", help="write the result as JSON ('-': stdout only)")


def load(args):
    """The data named by ``args.data``: a built-in dataset, else a CSV and its columns."""
    from ..data import load_data
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
        data = load_data(args.data)
    else:
        data = load_data(args.data, x=args.x, y=args.y, sigma=args.sigma, drop_nan=args.drop_nan)
    _not_the_output(getattr(args, "model", None), data)
    return data


def _not_the_output(model, data) -> None:
    """Refuse a model that names the column being fitted (or its sigma): ``a*y+b`` on a
    column y had fitted y as a free parameter and failed, exit 1."""
    from ..errors import InputError
    from ..models import _mentions
    if not isinstance(model, str) or ":" in model:
        return
    names = _mentions(model) - set(data.x_names)
    for role, column in (("the column being fitted", data.y_name),
                         ("the uncertainties' column", getattr(data, "sigma_name", None))):
        if column and column in names:
            raise InputError(f"the model names {column!r}, {role}",
                             expected="a model of the input column(s) "
                             f"{', '.join(data.x_names)} and its parameters")
