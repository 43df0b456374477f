"""``gradfit fit DATA --group COL``: fit every group of a long CSV, one row per group.

The table has one row per point and a column naming its series (a well, a pixel, a
sensor). Every series is fitted by ``fit_many``; the parameters, standard errors, loss and
verdict of each go to ``--out`` (CSV; stdout without it). A missing value (an empty or nan
cell) makes its series fail (reported in its row), not the run; a cell that is not a number
at all is bad input (exit 2, naming its row and column), as for one fit; ``--drop-nan``
drops the rows holding missing values instead. Exit codes: 0 all converged, 1 some did not
(the count is named on stderr), 2 bad input.
"""
from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..csv_dialect import DecimalMark, _header, _lines, finite_numbers
from ..csv_read import _choose_columns, _column_names, _open, parse_cell
from ..errors import DataError, InputError
from ..many_data import keep_groups, mark_all_dropped
from .dask import write_table
from .inputs import check_model_columns
from .parsing import write_json


def read_long_csv(path: str, x, y, sigma, group):
    """The columns of a long CSV: x ``(N,)`` or ``(N, d)``, y, sigma, group labels, and
    the columns chosen (x names, y and sigma names, the header, the file). Empty and nan
    cells are missing values, NaN (their series then fails); a cell that is not a number
    is bad input, named by row and column."""
    with _open(Path(path)) as fh:        # csv_read's reading: UTF-8 (a BOM allowed), no NUL
        text = "".join(_lines(fh, path))
    numbered = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    comment = None               # comment lines above the header skipped, as data.py does
    while numbered and numbered[0][1].lstrip().startswith("#"):
        comment = numbered.pop(0)[1].lstrip()[1:]     # the last: a header's names perhaps
    if not numbered:
        raise DataError("no data rows", expected="a header and at least one row", where=path)
    delim = max(",;\t", key=numbered[0][1].count)
    # the header as csv_read reads one: stripped names, each once, none empty; a first row
    # of numbers is data (columns c1, c2, ... or named by numpy.savetxt's '# x,y' line)
    decimal = DecimalMark(delim)        # ';' files may write 0,5 (as the one-file reader)
    header, first_data = _header(csv.reader([numbered[0][1]], delimiter=delim,
                                            skipinitialspace=True), path, None, comment, delim,
                                 decimal)
    if first_data is None:
        numbered = numbered[1:]
    if not numbered:
        raise DataError("no data rows", expected="a header and at least one row", where=path)
    numbers = [0] + [i for i, _ in numbered]       # the file's line of each row, for messages
    rows = [[]] + list(csv.reader(io.StringIO("\n".join(ln for _, ln in numbered)),
                                  delimiter=delim))
    if group not in header:
        raise DataError(f"no column named {group!r}", expected="one of the columns "
                        + ", ".join(map(repr, header)), where=path)
    for what, spec in (("x", x), ("y", y), ("sigma", sigma)):
        if group in (_column_names(spec, what, path) or []):
            raise DataError(f"column {group!r} is used as both group and {what}",
                            expected=f"the {what} column to differ from the group column",
                            where=path)
    if len(header) < 3:
        raise DataError(f"only {len(header)} column(s) ({', '.join(map(repr, header))})",
                        expected="a group column, an x column and a y column", where=path)
    # the other columns chosen as for one fit (defaults, x and y apart, one left for each)
    sample = rows[1] if len(rows) > 1 else None
    others = [h for h in header if h != group]
    xs, y, sigma = _choose_columns(others, x, y, sigma, path, None if sample is None else
                                   [c for h, c in zip(header, sample) if h != group], decimal)

    def column(name):
        j = header.index(name)
        if all(j < len(row) for row in rows[1:]):
            text = decimal.cells("\n".join(row[j] for row in rows[1:]))
            fast = None if text is None else finite_numbers(text.split("\n"))
            if fast is not None:
                return fast
        out = np.empty(len(rows) - 1)
        for i, row in enumerate(rows[1:]):
            here = f"{path}, row {numbers[i + 1]}"
            if j >= len(row):
                raise DataError(f"this row has {len(row)} cells but the header has "
                                f"{len(header)} columns", expected="one cell per column",
                                where=here)
            out[i] = parse_cell(row[j].strip(), f"{here}, column {name!r}", decimal, name)
        return out
    gj = header.index(group)
    # labels exactly as written, spaces included ('a' and 'a ' are two series, as on Dask
    # and in a pandas frame: stripped, they had been merged into one fit called converged)
    labels = np.array([row[gj] if gj < len(row) else "" for row in rows[1:]])
    labels = np.where(labels == "", None, labels)      # no label: fails as one group
    xv = np.stack([column(c) for c in xs], 1)
    columns = SimpleNamespace(x_names=tuple(xs), y_name=y, sigma_name=sigma,
                              columns=tuple(h for h in header if h), name=path)
    return (xv[:, 0] if len(xs) == 1 else xv, column(y), column(sigma) if sigma else None,
            labels, columns)


def cmd_fit_many(args, run_kwargs: dict) -> int:
    """Fit every group of ``args.data``; ``run_kwargs``: the run's settings (``fit.run_kwargs``)."""
    from ..fit_many import fit_many
    from ..models import table_inputs
    if args.plot or args.animate:
        raise InputError("--plot and --animate draw one fit", expected="no --group, or no "
                         "pictures")
    x, y, sigma, labels, columns = read_long_csv(args.data, args.x, args.y, args.sigma,
                                                 args.group)
    # a model naming a column that is not an input is refused, as for one fit
    check_model_columns(args.model, columns, columns.sigma_name, group=args.group)
    xnames = columns.x_names
    emptied: list = []
    if args.drop_nan:             # as for one fit: rows holding NaN, inf or empty cells go
        keep = np.isfinite(y) & np.isfinite(x.reshape(len(y), -1)).all(1)
        keep &= True if sigma is None else np.isfinite(sigma)
        dropped = int((~keep).sum())
        # a group left with no row fails in its row (it had vanished without a word)
        keep, emptied = keep_groups(keep, labels)
        x, y, labels = x[keep], y[keep], labels[keep]
        sigma = None if sigma is None else sigma[keep]
        if dropped and args.json != "-":
            print(f"gradfit: dropped {dropped} row(s) holding NaN, inf or empty cells",
                  file=sys.stderr)
    from .fit import note_unused_inputs
    inputs = table_inputs(args.model, list(xnames))
    note_unused_inputs(args, inputs)
    bar = _bar(args)
    try:
        res = fit_many(args.model, x, y, group=labels, sigma=sigma, inputs=inputs,
                       progress=bar, **run_kwargs)
    finally:
        if bar is not None:
            bar.close()
    mark_all_dropped(res, emptied)
    res.group_name = args.group       # the table's own name for its group column
    if args.out:                  # Parquet for .parquet (as on Dask), else CSV
        write_table(args.out, res.to_pandas() if args.out.lower().endswith(".parquet") else None,
                    csv=res.to_csv)
    if args.json:
        write_json(args.json, _records(res))
    elif not args.out:
        sys.stdout.write(res.to_csv())
    if not args.quiet and args.json != "-" and args.out:
        print(f"{res.summary()}; {len(res)} rows written to {args.out}")
    failed = int((~res.converged).sum())
    if failed:
        print(f"gradfit: {failed} of {len(res)} fits did not converge ({res.summary()})",
              file=sys.stderr)
        return 1
    return 0


def _records(res) -> list[dict]:
    cols = res._columns()
    out = []
    for row in zip(*cols.values()):
        rec = {}
        for k, v in zip(cols, row):
            if isinstance(v, (float, np.floating)):
                v = float(v) if math.isfinite(v) else None
            elif isinstance(v, np.integer):
                v = int(v)
            elif isinstance(v, np.bool_):
                v = bool(v)
            rec[k] = v
        out.append(rec)
    return out


#: seconds before the bar shows: a short run leaves the terminal as it was
BAR_DELAY = 0.5


def _bar(args):
    """A progress bar over problems on stderr, when it is a terminal (never on stdout, which
    may hold the table; not with --quiet or --json -), and only if tqdm is installed (the
    [cli] extra)."""
    if args.quiet or args.json == "-" or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bar = tqdm(total=None, file=sys.stderr, unit="fit", leave=False, delay=BAR_DELAY)

    def update(done, total):
        bar.total = total
        bar.update(done - bar.n)          # tqdm's own pacing (its delay, its refresh rate)
    update.close = bar.close
    return update
