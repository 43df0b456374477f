"""Tables for Dask: a Dask or pandas DataFrame, or Parquet or CSV files (a path, a folder or
a glob), read lazily and checked as the single-process reader checks one CSV file.

- ``read_columns``: the table narrowed to the named columns; a column missing from any
  file is refused by name, before a cluster starts. CSV files are read as text (a guess of
  a column's type from its first rows fails on a later row, and labels "1" and "01" would
  be one number), each row tagged with its file (``FILE``) so that a bad cell is named by
  its file and column.
- ``as_numbers``: the value columns as float64 by the CSV reader's own rule
  (``data.parse_cell``: an empty cell is a missing value, anything else not a number is
  refused by file and column); NaN and inf refused by file and column (``finite``), or
  their rows left out (``drop_nan``).
- ``read_errors``: a file that is not text (a binary file among the CSV files), or not
  CSV, refused in one line when the cluster reads it (the reader's own error had reached
  the user as "internal error: UnicodeDecodeError").
"""
from __future__ import annotations

import contextlib
import glob
import os

import numpy as np

from .data import check_not_times
from .errors import DataError, InputError

FILE = "__gradfit_file__"      # the CSV file each row came from (dropped by as_numbers)


def _files(path: str) -> list[str]:
    if os.path.isdir(path):
        pq = sorted(glob.glob(os.path.join(path, "*.parquet")))
        csv = sorted(glob.glob(os.path.join(path, "*.csv")))
        if pq and csv:             # one kind was read and the other left out, silently
            raise InputError("the folder holds both Parquet and CSV files",
                             expected="a folder of one kind, or a glob such as "
                             f"'{os.path.join(path, '*.parquet')}'", given=path)
        found = pq or csv
    else:
        found = sorted(glob.glob(path))
    if not found:
        raise InputError("no data file matches", expected="a Parquet or CSV file, a folder "
                         "of them or a glob such as 'data/*.parquet'", given=path)
    return found


def read_columns(data, cols):
    """``read_table(data)`` narrowed to ``cols``; a missing column is refused by name (in
    every file: the reader takes the first file's columns as the table's)."""
    ddf = read_table(data)
    missing = [c for c in cols if c not in ddf.columns]
    if missing:
        raise InputError(f"no column named {missing[0]!r}",
                         expected="one of " + ", ".join(
                             map(str, [c for c in ddf.columns if c != FILE][:20])))
    if isinstance(data, (str, os.PathLike)):
        for path in _files(os.fspath(data)):
            have = _file_columns(path)
            lacking = [c for c in cols if have is not None and c not in have]
            if lacking:
                raise InputError(f"no column named {lacking[0]!r} in this file",
                                 expected="every file with the columns " + ", ".join(cols),
                                 where=path)
    return ddf[cols + [FILE]] if FILE in ddf.columns else ddf[cols]


def _file_columns(path: str):
    """The column names of one Parquet (its schema) or CSV file (its header), or None."""
    try:
        if path.lower().endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq
            return set(pq.read_schema(path).names)
        import pandas as pd
        return set(pd.read_csv(path, nrows=0, dtype=object).columns)
    except Exception:       # noqa: BLE001 - unreadable here: the reader says why
        return None


def read_table(data):
    """A Dask DataFrame from a Dask or pandas DataFrame, or a path, folder or glob of
    Parquet (``.parquet``, ``.pq``) or CSV files."""
    import dask.dataframe as dd
    import pandas as pd
    if isinstance(data, dd.DataFrame):
        return data
    if isinstance(data, pd.DataFrame):
        return dd.from_pandas(data, npartitions=max(1, min(64, len(data) // 100_000 + 1)))
    if not isinstance(data, (str, os.PathLike)):
        raise InputError("bad data", expected="a Dask or pandas DataFrame, or a path or glob "
                         "of Parquet or CSV files", given=type(data).__name__)
    files = _files(os.fspath(data))
    kinds = {os.path.splitext(f)[1].lower() for f in files}
    try:
        if kinds <= {".parquet", ".pq"}:
            ddf = dd.read_parquet(files)
        elif kinds <= {".csv"}:
            # every cell as text: a guess of each column's type from the first rows fails
            # on a later row, and labels "1" and "01" would be one number (the value
            # columns become numbers by gradfit's own rule, as_numbers)
            ddf = dd.read_csv(files, dtype=object, keep_default_na=False,
                              include_path_column=FILE)
        else:
            ddf = None
    except (ValueError, KeyError, OSError) as exc:
        while exc.__cause__ is not None:     # the reader's own words, not dask's wrapping
            exc = exc.__cause__
        raise InputError("cannot read the data", expected="Parquet or CSV files holding the "
                         "named columns", given=(str(exc) or type(exc).__name__).splitlines()[0],
                         where=files[0]) from None
    if ddf is not None:
        return ddf              # columns are picked later (dask pushes the pick into the reader)
    raise InputError("unknown data format", expected="Parquet (.parquet) or CSV (.csv) files",
                     given=", ".join(sorted(kinds)))


def as_numbers(ddf, group: str | None = None, *, finite: bool = False,
               drop_nan: bool = False):
    """The table with its group labels as they are (a categorical column's categories as
    labels: Dask's placeholder category turned every label into NaN) and its value columns
    as float64, text cells read as the CSV reader reads them (``data.parse_cell``: empty a
    missing value, anything but a number refused by file and column); rows holding NaN or
    inf left out (``drop_nan``) or refused (``finite``: one series, where a point cannot
    fail alone); the file tag dropped."""
    import pandas as pd
    if group is not None and isinstance(ddf[group].dtype, pd.CategoricalDtype):
        ddf = ddf.assign(**{group: ddf[group].astype(object)})
    values = [c for c in ddf.columns if c not in (group, FILE)]
    for c in values:
        check_not_times(ddf._meta[c], f"column {c!r}")
    text = [c for c in values if ddf[c].dtype.kind not in "fiub"]
    meta = ddf._meta.drop(columns=[FILE], errors="ignore").astype({c: "f8" for c in values})
    return ddf.map_partitions(_numbers, values, text, finite, drop_nan, meta=meta)


def _numbers(frame, values, text, finite, drop_nan):
    from .data import parse_cell
    out = frame.drop(columns=[FILE], errors="ignore")

    def where(c, i):
        f = os.path.basename(str(frame[FILE].iloc[i])) if FILE in frame.columns else None
        return f"{f}, column {c!r}" if f else f"column {c!r}"
    for c in values:
        if c not in text:
            out[c] = frame[c].astype("f8")
            continue
        cells = frame[c].astype(object).where(frame[c].notna(), "")
        nums = np.empty(len(cells))
        for i, v in enumerate(cells.tolist()):
            try:
                nums[i] = parse_cell(str(v).strip(), "")
            except DataError as exc:
                raise DataError(exc.problem, expected=exc.expected, given=exc.given,
                                where=where(c, i)) from None
        out[c] = nums
    if not values or not (finite or drop_nan):
        return out
    good = np.isfinite(out[values].to_numpy(dtype=float))
    if drop_nan:
        return out[good.all(1)]
    if not good.all():
        i, j = (int(v[0]) for v in np.nonzero(~good))
        raise DataError("NaN, inf or an empty cell", expected="finite numbers (drop_nan=True, "
                        "or --drop-nan, leaves such rows out)",
                        given=str(frame[values[j]].iloc[i]), where=where(values[j], i))
    return out


@contextlib.contextmanager
def read_errors():
    """A file the cluster cannot read as CSV text, refused in one line."""
    import pandas as pd
    try:
        yield
    except UnicodeDecodeError:
        raise InputError("cannot read the data: a file is not UTF-8 text",
                         expected="CSV files of text (a binary file among them?)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError("cannot read the data", expected="CSV files with a header and one "
                         "row per line", given=str(exc).splitlines()[0][:200]) from None
