"""Tables for Dask: a Dask or pandas DataFrame, or Parquet or CSV files (a path, a folder or
a glob, ``dask_files``), read lazily and checked as the single-process reader checks one
CSV file.

- ``read_columns``: the table narrowed to the named columns, and its files; a column
  missing from any file, or of another type in one file, is refused by name before a
  cluster starts. CSV files are read as text by the one-file reader's rules (a guess of a
  column's type from its first rows fails on a later row, and labels "1" and "01" would
  be one number), each row tagged with its file (``FILE``) so that a bad cell is named by
  its file and column. A pandas frame keeps its rows' order. Group labels of several
  types in one column (1 and "1": two groups in one process) are refused: Dask turns such
  a column into text, where they became one group.
- ``as_numbers``: the value columns as float64 by the CSV reader's own rule
  (``csv_read.parse_cell``: an empty cell is a missing value, a ';' file's decimal commas
  read as its ``DecimalMark`` says, one mark for the whole file, read once for all its
  partitions: ``dask_files.csv_decimal``; anything else not a number refused by file and
  column); NaN and inf refused by file and column (``finite``), or their rows left out
  (``drop_nan``); a sigma <= 0 refused (``positive``).
- ``read_errors``: a file that is not text (a binary file among the CSV files), or not
  CSV, refused in one line when the cluster reads it (the reader's own error had reached
  the user as "internal error: UnicodeDecodeError").
"""
from __future__ import annotations

import contextlib
import numbers
import os

import numpy as np

from .dask_files import FILE, data_files, read_csv, read_parquet
from .data import check_not_times
from .errors import DataError, InputError


def read_columns(data, cols, group: str | None = None):
    """``(table, files)``: ``data`` as a Dask DataFrame of ``cols`` (and ``FILE`` for CSV
    files), and its ``dask_files.Files`` (None for a frame); a missing column is refused
    by name (in every file); ``group``: its labels checked (``check_labels``)."""
    import dask.dataframe as dd
    import pandas as pd
    files = None
    if isinstance(data, pd.DataFrame):
        _check_columns(data.columns, cols)
        data = data[cols]
        if group is not None and data[group].dtype == object:
            # ints held as objects stay ints (Dask would turn them into text)
            data = data.assign(**{group: _as_labels(data[group], group)})
        ddf = dd.from_pandas(data, sort=False,     # its rows' order: first appearance
                             npartitions=max(1, min(64, len(data) // 100_000 + 1)))
    elif isinstance(data, dd.DataFrame):
        _check_columns(data.columns, cols)
        if group is not None:
            for frame in _pandas_sources(data):
                if group in frame.columns and frame[group].dtype == object:
                    _as_labels(frame[group], group)
        ddf = data[cols]
    elif isinstance(data, (str, os.PathLike)):
        files = data_files(os.fspath(data))
        try:
            ddf = read_parquet(files, cols, group) if files.kind == "parquet" else \
                read_csv(files, cols)
        except (ValueError, KeyError, OSError) as exc:
            if isinstance(exc, InputError):
                raise
            while exc.__cause__ is not None:     # the reader's own words, not dask's wrapping
                exc = exc.__cause__
            raise InputError("cannot read the data", expected="Parquet or CSV files holding "
                             "the named columns", given=(str(exc) or type(exc).__name__)
                             .splitlines()[0], where=files.paths[0]) from None
    else:
        raise InputError("bad data", expected="a Dask or pandas DataFrame, or a path or glob "
                         "of Parquet or CSV files", given=type(data).__name__)
    return ddf, files


def _check_columns(have, cols) -> None:
    missing = [c for c in cols if c not in have]
    if missing:
        raise InputError(f"no column named {missing[0]!r}",
                         expected="one of " + ", ".join(
                             map(str, [c for c in have if c != FILE][:20])))


def _pandas_sources(ddf) -> list:
    """The pandas frames a Dask DataFrame was made of by ``dd.from_pandas`` (as far as
    Dask's expression says; none when it cannot be told)."""
    try:
        from dask.dataframe.dask_expr.io.io import FromPandas
        return [op.frame._data for op in ddf.expr.find_operations(FromPandas)]
    except Exception:        # noqa: BLE001 - another Dask: the labels are checked as read
        return []


def label_kinds(values) -> set:
    """The kinds of the labels ``values``: text, number, or another type's name."""
    from .many_data import _missing
    kinds = set()
    for v in values:
        if not _missing(v):
            kinds.add("text" if isinstance(v, (str, bytes)) else
                      "number" if isinstance(v, numbers.Number) else type(v).__name__)
    return kinds


def check_labels(values, group: str) -> None:
    """Labels Dask keeps apart as one process does: text only, or no text. Dask turns a
    column of objects into text, so 1 and "1" became one group (fitted as one, called
    converged), where ``fit_many`` in one process fits two."""
    from .many_data import check_bool_labels
    check_bool_labels(values, group)        # True and 1: one group in one process
    kinds = label_kinds(values)
    if len(kinds) > 1 and "text" in kinds or kinds - {"text", "number"}:
        raise InputError(f"group labels of several types in column {group!r} "
                         f"({', '.join(sorted(kinds))})" if len(kinds) > 1 else
                         f"group labels that are neither text nor numbers in column "
                         f"{group!r} ({', '.join(sorted(kinds))})",
                         expected="labels of one type on Dask, which would turn them all "
                         f"into text (1 and '1' one group): convert them first, as "
                         f"frame[{group!r}] = frame[{group!r}].astype(str) (1 and '1' then "
                         "one group) or by a map to distinct labels")


def _as_labels(column, group: str):
    """An object column of labels checked (``check_labels``); numbers as numbers (whole
    ones with a missing label as Int64, never float64, whose rounding above 2^53 would
    merge two ids), as ``fit_many`` in one process keeps them."""
    import pandas as pd
    from .many_data import _missing, check_bool_labels
    check_bool_labels(column.tolist(), group)     # before pd.unique, which merges 1 and True
    values = pd.unique(column)
    check_labels(values, group)
    if label_kinds(values) != {"number"}:
        return column
    given = [v for v in values if not _missing(v)]
    if len(given) < len(values) and all(isinstance(v, (int, np.integer)) and
                                        not isinstance(v, (bool, np.bool_)) for v in given):
        return column.astype("Int64")
    return column.infer_objects()


def as_numbers(ddf, group: str | None = None, *, finite: bool = False,
               drop_nan: bool = False, positive: str | None = None):
    """The table with its group labels as they are (a categorical column's categories as
    labels: Dask's placeholder category turned every label into NaN) and its value columns
    as float64, text cells read as the CSV reader reads them (``csv_read.parse_cell``: empty a
    missing value, anything but a number refused by file and column); rows holding NaN or
    inf left out (``drop_nan``) or refused (``finite``: one series, where a point cannot
    fail alone); a value <= 0 in column ``positive`` (sigma) refused; the file tag
    dropped. A refusal names the CSV file of the value (``BadValue.file``)."""
    import pandas as pd
    if group is not None and isinstance(ddf[group].dtype, pd.CategoricalDtype):
        ddf = ddf.assign(**{group: ddf[group].astype(object)})
    values = [c for c in ddf.columns if c not in (group, FILE)]
    for c in values:
        check_not_times(ddf._meta[c], f"column {c!r}")
    text = [c for c in values if ddf[c].dtype.kind not in "fiub"]
    meta = ddf._meta.drop(columns=[FILE], errors="ignore").astype({c: "f8" for c in values})
    marks = _marks(ddf, values) if text else {}
    return ddf.map_partitions(_numbers, values, text, finite, drop_nan, positive, marks,
                              meta=meta)


def _marks(ddf, values) -> dict:
    """``{path: decimal mark}`` of the CSV files behind ``ddf`` (its ``FILE`` column's
    categories), each read once here (``dask_files.csv_decimal``) for all its partitions."""
    import pandas as pd
    from .dask_files import csv_decimal
    dtype = ddf._meta[FILE].dtype if FILE in ddf.columns else None
    if not isinstance(dtype, pd.CategoricalDtype) or dtype.categories is None:
        return {}                       # each partition reads its files' marks (_numbers)
    return {str(p): csv_decimal(str(p), values) for p in dtype.categories}


class BadValue(DataError):
    """A bad value met in a partition: ``column``, ``row`` (its position in the
    partition), ``file`` (its CSV file, where known: a Parquet partition does not say, and
    ``dask_files.bad_value`` finds the file and row)."""

    file: str | None = None
    column: str | None = None
    row: int | None = None


def _numbers(frame, values, text, finite, drop_nan, positive=None, marks=None):
    from .csv_dialect import DecimalMark
    from .csv_read import parse_cell
    out = frame.drop(columns=[FILE], errors="ignore")
    at = np.arange(len(frame))              # each row's position in the partition
    # a CSV file's decimal mark as the one-file reader reads it (csv_dialect.DecimalMark: a
    # ';' file may write 0,5): the whole file's (``marks``: read once, else read here), one
    # a file of the partition, shared by its columns
    files = frame[FILE].astype(str).tolist() if FILE in frame.columns else None
    known, seen = marks or {}, {}

    def decimal(path):
        if path not in seen:
            from .dask_files import csv_decimal
            seen[path] = DecimalMark.known(known[path] if path in known else
                                           csv_decimal(path, values))
        return seen[path]

    def bad(problem, expected, given, c, i):
        f = str(frame[FILE].iloc[i]) if FILE in frame.columns else None
        exc = BadValue(problem, expected=expected, given=given,
                       where=f"{f}, column {c!r}" if f else f"column {c!r}")
        exc.file, exc.column, exc.row = f, c, int(at[i])
        return exc
    for c in values:
        if c not in text:
            out[c] = frame[c].astype("f8")
            continue
        cells = frame[c].astype(object).where(frame[c].notna(), "")
        nums = np.empty(len(cells))
        for i, v in enumerate(cells.tolist()):
            try:
                nums[i] = parse_cell(str(v).strip(), "",
                                     None if files is None else decimal(files[i]))
            except DataError as exc:
                raise bad(exc.problem, exc.expected, exc.given, c, i) from None
        out[c] = nums
    if values and (finite or drop_nan):
        good = np.isfinite(out[values].to_numpy(dtype=float))
        if drop_nan:
            keep = good.all(1)
            out, frame, at = out[keep], frame[keep], at[keep]
        elif not good.all():
            i, j = (int(v[0]) for v in np.nonzero(~good))
            raise bad("NaN, inf or an empty cell", "finite numbers (drop_nan=True, or "
                      "--drop-nan, leaves such rows out)", str(frame[values[j]].iloc[i]),
                      values[j], i)
    if positive is not None:
        low = np.flatnonzero(~(out[positive].to_numpy() > 0) &
                             np.isfinite(out[positive].to_numpy()))
        if len(low):
            raise bad("uncertainty must be positive", "a number > 0",
                      str(frame[positive].iloc[low[0]]), positive, int(low[0]))
    return out


@contextlib.contextmanager
def read_errors(files=None):
    """A file the cluster cannot read as CSV text, refused in one line: named by its file
    and row where ``files`` (``dask_files.Files``) are CSV files (pandas' words do not say
    which file)."""
    import pandas as pd
    try:
        yield
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        if files is not None and files.kind == "csv":
            from .dask_files import csv_problem
            found = csv_problem(files)
            if found is not None:
                raise found from None
        if isinstance(exc, UnicodeDecodeError):
            raise InputError("cannot read the data: a file is not UTF-8 text",
                             expected="CSV files of text (a binary file among them?)") from None
        raise InputError("cannot read the data", expected="CSV files with a header and one "
                         "row per line", given=str(exc).splitlines()[0][:200]) from None
