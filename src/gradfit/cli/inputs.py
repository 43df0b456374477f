"""The data options every command shares (a CSV or a built-in dataset, its columns, the
loss measured on it, the JSON answer) and loading the data they name."""
from __future__ import annotations

import argparse

from ..datasets import DATASETS
from .options import add_setting


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a CSV file with a header, or a built-in dataset: "
                   + ", ".join(DATASETS))
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
        return load_data(args.data)
    return load_data(args.data, x=args.x, y=args.y, sigma=args.sigma, drop_nan=args.drop_nan)
