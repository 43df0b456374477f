"""``gradfit fit`` on Dask: many series (``--group``) or one series larger than memory.

    gradfit fit 'data/*.parquet' --group id --x t --y signal --model "A*exp(-k*t)" \\
        --p0 A=1,k=0.5 --workers 4 --out fits.parquet
    gradfit fit 'big/*.parquet' --x t --y signal --model "A*exp(-k*t)" \\
        --scheduler tcp://HOST:8786          # no --group: one series, out of core

It is taken when ``--workers`` or ``--scheduler`` is given, or the data is Parquet, a
folder or a glob (one CSV file with ``--group`` is fitted in this process, ``cli/many.py``);
``--out`` writes the table of fits as CSV or Parquet. Exit codes as ``gradfit fit``: 0
every fit converged, 1 some did not (their rows say why), 2 bad input. Dask is imported
only here, when such a command runs.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from .exits import EXIT_FAILED, EXIT_OK
from .parsing import write_json

SHOW_ROWS = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("on Dask (pip install 'gradfit[dask]'), taken for Parquet, a "
                             "folder or glob of files, --workers or --scheduler")
    g.add_argument("--workers", type=int, help="worker processes of the local Dask cluster "
                   "gradfit starts (default: CPUs, at most 4)")
    g.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run on this existing Dask cluster instead (HOST:PORT means tcp://; "
                   "gradfit waits up to a minute for its first worker)")


def write_table(target: str, table=None, csv=None) -> None:
    """The table of fits to ``target``: Parquet for ``.parquet``, else CSV (``csv``: a
    callable writing it without pandas, ``ManyResult.to_csv``); written whole to a
    temporary file and moved over the target (``writing.replace_file``: a failed write
    leaves an earlier table as it was); an error is one line."""
    from .writing import replace_file
    if target.lower().endswith(".parquet"):
        replace_file(target, lambda path: table.to_parquet(path, index=False), "the table")
    elif csv is not None:
        replace_file(target, csv, "the table")
    else:
        replace_file(target, lambda path: table.to_csv(path, index=False), "the table")


def _records(table) -> list[dict]:
    """The table's rows as JSON records: floats in full, NaN and inf as null."""
    import math
    import numpy as np
    out = []
    for rec in table.to_dict(orient="records"):
        for k, v in rec.items():
            if isinstance(v, (float, np.floating)):
                rec[k] = float(v) if math.isfinite(v) else None
            elif isinstance(v, np.integer):
                rec[k] = int(v)
            elif isinstance(v, np.bool_):
                rec[k] = bool(v)
        out.append(rec)
    return out


def _summary(table) -> str:
    """``ManyResult.summary``'s line for the table of fits: '98 of 100 converged (xtol: 90,
    gtol: 8, failed: 2)'."""
    from collections import Counter
    counts = Counter(table["reason"].tolist())
    parts = ", ".join(f"{k}: {v}" for k, v in counts.most_common())
    return f"{int(table['converged'].sum())} of {len(table)} converged ({parts})"


def wants_dask(args) -> bool:
    import os
    from ..dask_files import PARQUET
    data = str(args.data)
    return bool(args.workers is not None or args.scheduler or data.lower().endswith(PARQUET)
                or os.path.isdir(data) or any(c in data for c in "*?["))


def _kwargs(args) -> tuple[dict, dict | None, dict | None]:
    """The run's settings as for a fit in this process (``fit.run_kwargs``: --ftol,
    --schedule, --momentum ... had been left out on Dask without a word), and its bounds
    and fixed values apart."""
    from .fit import run_kwargs
    kw = run_kwargs(args)
    return kw, kw.pop("bounds"), kw.pop("fixed")


#: settings of a fit in this process that the out-of-core fit has no use for: refused
#: when given (not ignored), with their defaults
NOT_OUT_OF_CORE = {"dtype": "float64", "device": "cpu", "starts": None}


def _param_note(r, name: str) -> str:
    """`` +/- error``, `` (fixed)``, `` (at lower bound)`` or nothing (as ``fit``'s report:
    a fixed parameter or one held on a bound has no standard error of its own)."""
    if r.stderr and name in r.stderr:
        return f" +/- {r.stderr[name]:.6g}"
    if name in r.fixed:
        return " (fixed)"
    if name in r.at_bound:
        return f" (at {r.at_bound[name]} bound)"
    return ""


def cmd_fit_dask(args) -> int:
    """The ``fit`` command on Dask; returns the exit code."""
    x = (args.x or "x").split(",")
    y = args.y or "y"
    if getattr(args, "plot", None) or getattr(args, "animate", None):
        # they had been ignored without a word here (as one process refuses them with --group)
        raise InputError("--plot and --animate draw one fit held in this process, not a fit "
                         "on Dask", expected="no --plot or --animate with Parquet, a folder "
                         "or glob of files, --workers or --scheduler")
    kw, bounds, fixed = _kwargs(args)
    show = not args.quiet and args.json != "-" and sys.stderr.isatty()
    if args.group:
        from ..dask_fit import fit_table
        table = fit_table(args.model, args.data, x=x if len(x) > 1 else x[0], y=y,
                          group=args.group, sigma=args.sigma, scheduler=args.scheduler,
                          workers=args.workers, progress=show, bounds=bounds, fixed=fixed,
                          drop_nan=args.drop_nan, **kw)
        ok = int(table["converged"].sum())
        summary = _summary(table)
        if args.out:
            write_table(args.out, table)
        elif not args.json:        # the result is in the JSON: not also on the screen
            print(table.head(SHOW_ROWS).to_string(index=False))
            if len(table) > SHOW_ROWS:
                print(f"... {len(table)} rows (--out PATH writes them all)")
        if args.json:         # every digit (pandas' to_json keeps 10 decimals: 6 of 3.3e-5)
            write_json(args.json, _records(table))
        if not args.quiet and args.json != "-" and args.out:     # as in one process
            print(f"{summary}; {len(table)} rows written to {args.out}")
        if ok < len(table):
            print(f"gradfit: {len(table) - ok} of {len(table)} fits did not converge "
                  f"({summary})", file=sys.stderr)
        return EXIT_OK if ok == len(table) else EXIT_FAILED
    from ..out_of_core import fit_out_of_core
    for name, default in NOT_OUT_OF_CORE.items():
        value = kw.pop(name, default)
        if value != default:
            raise InputError(f"--{name} is not taken by a fit out of core (one series on "
                             "Dask, no --group)", expected=f"no --{name} here",
                             given=value)
    r = fit_out_of_core(args.model, args.data, x=x if len(x) > 1 else x[0], y=y,
                        sigma=args.sigma, scheduler=args.scheduler, workers=args.workers,
                        drop_nan=args.drop_nan, bounds=bounds, fixed=fixed, **kw)
    payload = {k: v for k, v in vars(r).items() if k != "covariance"}
    if args.json:
        write_json(args.json, payload)
    if args.json != "-" and not args.quiet:
        for name, v in r.params.items():
            print(f"{name} = {v:.12g}{_param_note(r, name)}")
        print(f"{r.loss_name} = {r.loss:.6g} over {r.n_points} points; {r.reason}: {r.message} "
              f"({r.steps} steps, {r.passes} passes over the data)")
    return EXIT_OK if r.converged else EXIT_FAILED
