"""CSV files for gradfit: one reader for the command line, the page, ``load_csv`` and
``fit_many``'s ``--group`` tables.

Every cell is a number, an empty cell (a missing value) or a refusal that names the file,
row and column: text, dates (with the conversion to use), a units row under the header,
decimal commas outside a ';' file (``DecimalMark``: a ';' file written by a European Excel
is read as its '.' twin), digits grouped by a thousands separator (``1,234.5``). How the
file is written is read by ``csv_dialect``: its text (UTF-8, a BOM allowed, or UTF-16
after its BOM: Excel's "Unicode text"), its numbers and decimal mark, its delimiter and its
first lines (``begin``: comments, Excel's ``sep=;``, the header or a first row of numbers),
by one rule for every face. Rows are converted in batches (``BATCH_ROWS``).
"""
from __future__ import annotations

import csv
import math
import re
import sys
from array import array
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from gradfit.errors import DataError

from .csv_dialect import (COMMA_NUMBER, NUMBER, DecimalMark, begin, csv_words, finite_numbers,
                          parse_number)
from .data import _DROP_HINT, Dataset


#: column names that mean an uncertainty (compared in lower case): with no y or sigma named,
#: the last such column that is not an x column is sigma (``sigma_column``), on the page
#: and on the command line alike
SIGMA_NAMES = ("sigma", "err", "error", "errors", "dy", "yerr", "y_err", "unc",
               "uncertainty", "std", "sd", "stderr", "\u03c3")


def sigma_column(names: list[str], x: str | None) -> str | None:
    """The last of the header's ``names`` named like an uncertainty (``SIGMA_NAMES``) that
    is not an x column (``x``: comma-separated, as --x gives them, else the first column);
    None when there is none or only two columns.

        >>> sigma_column(["t", "signal", "err"], None), sigma_column(["t", "err"], None)
        ('err', None)
    """
    xs = {c.strip() for c in x.split(",")} if x else set(names[:1])
    hits = [c for c in names if c.lower() in SIGMA_NAMES and c not in xs]
    return hits[-1] if hits and len(names) >= 3 else None


STDIN = "-"     # the data's name for standard input (``cat data.csv | gradfit fit -``)


def _where(path) -> str:
    return "standard input" if str(path) == STDIN else str(path)


def _open(path: Path):
    where, expected = str(path), "a CSV text file with a header row"
    if where == STDIN:                  # read once, as a file; closing it ends the input
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise DataError("standard input is closed", expected=expected,
                            where="standard input")
        return stream
    if not path.exists():
        raise DataError("file not found", expected=expected, where=where)
    if path.is_dir():
        raise DataError("this is a directory, not a file", expected=expected, where=where)
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read the file ({e.strerror or e})", expected=expected,
                        where=where) from None


def _column_names(spec, what: str, where: str) -> list[str] | None:
    """Column names from ``"a"``, ``"a,b"`` (x only) or a list of names (x only)."""
    if spec is None:
        return None
    many = what == "x"
    if isinstance(spec, str):
        names = [s.strip() for s in (spec.split(",") if many else [spec])]
    elif many and isinstance(spec, Sequence) and all(isinstance(s, str) for s in spec):
        names = [s.strip() for s in spec]
    else:
        raise DataError(f"bad {what} column", given=spec, where=where,
                        expected="a column name" + (", 'a,b' or a list of names" if many else ""))
    if not names or "" in names:
        raise DataError(f"empty column name in {what}", expected="column names",
                        given=spec, where=where)
    for i, s in enumerate(names):
        if s in names[:i]:
            raise DataError(f"column {s!r} is listed twice in {what}",
                            expected="each column once", where=where)
    return names


def _choose_columns(header, x, y, sigma, where, sample=None, decimal: DecimalMark | None = None):
    """The x, y and sigma columns: those named, else by default the first column and the
    last, among the columns whose cell in the first data row ``sample`` is a number (a
    first column of names or dates had been x, refused on row 2); ``decimal``: the file's
    decimal mark, where a comma may be one."""
    xs = _column_names(x, "x", where)
    y, sigma = [(_column_names(c, w, where) or [None])[0] for c, w in ((y, "y"), (sigma, "sigma"))]
    words = (sample or header)[0].split() if len(header) == 1 else []
    if len(words) > 1 and all(NUMBER.fullmatch(w) for w in words):
        raise DataError("one column whose cells are numbers separated by spaces (numpy."
                        "savetxt's default)", expected="cells separated by ',', ';' or a tab "
                        "(np.savetxt(path, a, delimiter=','))", where=where)
    named = [c for c in header if c]         # unnamed columns (an index) are never chosen
    for name in (xs or []) + [c for c in (y, sigma) if c is not None]:
        if name not in named:
            raise DataError(f"no column named {name!r}", expected="one of the columns "
                            + ", ".join(map(repr, named)), where=where)
    if len(named) < 2:
        what = "column" if len(header) == 1 else "named column"
        raise DataError(f"only one {what} ({named[0]!r})" if named else "no named column",
                        expected="at least two columns, one for x and one for y", where=where)
    def number(c) -> bool:
        i = header.index(c)
        if sample is None or i >= len(sample):
            return True
        if decimal is not None:
            return decimal.could_be(sample[i].strip())
        try:
            parse_number(sample[i].strip())
            return True
        except ValueError:
            return False
    if sample is not None and (xs is None or y is None):
        given = (xs or []) + [c for c in (y, sigma) if c is not None]
        numeric = [c for c in named if c in given or number(c)]
        if len([c for c in numeric if c not in given]) >= (xs is None) + (y is None):
            named = numeric
    if xs is None:
        xs = [c for c in named if c not in (y, sigma)][:1]
    if y is None:
        free = [c for c in named if c not in xs and c != sigma]
        if not free:
            raise DataError("no column left for y", expected="a y column that is not an x "
                            "or sigma column (name it with y=...)", where=where)
        y = free[-1]
    if not xs:
        raise DataError("no column left for x", expected="an x column that is not the y "
                        "or sigma column", where=where)
    if y in xs:
        raise DataError(f"column {y!r} is used as both x and y",
                        expected="a y column that is not one of the x columns", where=where)
    if sigma is not None and (sigma in xs or sigma == y):
        role = "y" if sigma == y else "x"
        raise DataError(f"column {sigma!r} is used as both {role} and sigma",
                        expected="a sigma column of its own", where=where)
    return xs, y, sigma


def load_csv(path: str | Path, *, x: str | Sequence[str] | None = None, y: str | None = None,
             sigma: str | None = None, drop_nan: bool = False, max_points: int | None = None,
             max_columns: int | None = None) -> Dataset:
    """Load a CSV file with a header row into a :class:`Dataset` (see ``read_csv``).

    Defaults: ``x`` is the first column (not ``y``/``sigma``), ``y`` the last column not
    among ``x`` and ``sigma``. ``x`` may be ``"x1,x2"`` or a list (then ``x`` has shape
    (n, d)). ``sigma`` names a column of per-point uncertainties (finite, > 0). The
    delimiter (``,`` ``;`` or tab) is read off the header (``delimiter_of``) or Excel's
    ``sep=;`` first line; names and cells are stripped; UTF-8 (a BOM allowed) or UTF-16
    after its BOM; blank lines are skipped, and so are comment lines (``#``) above the
    header, and empty cells past the header's columns (a delimiter ending each row). A first row of numbers only is data, not a header: the columns are
    then named by the comment line just above (``numpy.savetxt``'s ``# x,y``) or ``c1``,
    ``c2``, ... A first column without a name (pandas' index) and last columns without
    one (a trailing delimiter) are never chosen. Cells are numbers as a spreadsheet
    writes them (``parse_number``). Empty cells are missing values:
    like NaN and inf in a used column they are an error, or with ``drop_nan=True`` their
    rows are dropped and counted in ``dropped``. Rows are numbered as lines in an editor
    (the header is row 1). Unused columns may hold anything.
    """
    path = Path(path)
    with _open(path) as fh:
        return read_csv(fh, _where(path), x=x, y=y, sigma=sigma, drop_nan=drop_nan,
                        max_points=max_points, max_columns=max_columns)


def read_csv(stream, where: str, *, x=None, y=None, sigma=None, drop_nan: bool = False,
             max_points: int | None = None, max_columns: int | None = None,
             check: Callable[[], None] | None = None) -> Dataset:
    """A CSV from a binary ``stream`` (lines of bytes), named ``where`` in messages.

    One pass, in time linear in the bytes: the header's names are checked through a dict,
    ``max_columns`` is enforced on the header and ``max_points`` while the rows stream in
    (a file over either stops there, with its row), and only the used columns are kept.
    ``check()`` runs every 4096 rows (a server's deadline: it raises to stop).
    """
    start = begin(stream, where, max_points, max_columns, check)
    reader, header, first_data, decimal = start.reader, start.header, start.first_data, \
        start.decimal
    batch: list = []                # rows read but not yet converted (see _add_rows)
    try:
        sample = first_data
        if sample is None:                    # the first data row, to choose columns by
            for cells in reader:
                if cells and not (len(cells) == 1 and not cells[0].strip()):
                    sample = (reader.line_num, _no_trailing(cells, header))
                    break
        xs, y, sigma = _choose_columns(header, x, y, sigma, where,
                                       None if sample is None else sample[1], decimal)
        used = xs + [y] + ([sigma] if sigma is not None else [])
        index = [header.index(c) for c in used]
        columns, dropped, seen = [array("d") for _ in used], 0, 0
        if sample is not None:               # the first data row (row 1 without a header)
            batch.append(sample)
            seen = 1
        # a first data row of text under a header: a second header (units) perhaps
        first_row = sample[0] if sample is not None and first_data is None else None

        def flush():
            nonlocal dropped
            dropped += _add_rows(batch, columns, header, used, index, sigma, where, drop_nan,
                                 decimal, first_row)
            batch.clear()
        for cells in reader:
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            seen += 1
            if check is not None and not seen % 4096:
                check()
            row = reader.line_num
            if max_points is not None and seen > max_points:
                flush()                     # a bad row before this one is the first error
                raise DataError("too many points", expected=f"at most {max_points:,} rows",
                                where=f"{where}, row {row}")
            if len(cells) > len(header):
                cells = _no_trailing(cells, header)
            batch.append((row, cells))
            if len(cells) != len(header) or len(batch) >= BATCH_ROWS:
                flush()
        flush()
    except csv.Error as e:
        if batch:
            flush()                 # a bad row before this one is the first error
        raise DataError(f"cannot parse the CSV ({csv_words(e)})", expected="well-formed CSV",
                        where=f"{where}, row {reader.line_num}") from None
    if not seen:
        raise DataError("no data rows under the header",
                        expected="at least one row of numbers after the header", where=where)
    if not columns[0]:
        raise DataError(f"no rows left after dropping {dropped} with missing or non-finite "
                        "values", expected="at least one row with finite values in columns "
                        + ", ".join(map(repr, used)), where=where)
    a = [np.frombuffer(c, dtype=np.float64) for c in columns]
    d = len(xs)
    return Dataset(x=a[0] if d == 1 else np.stack(a[:d], axis=1), y=a[d],
                   sigma=a[d + 1] if sigma is not None else None, x_names=tuple(xs),
                   y_name=y, name=where, dropped=dropped,
                   columns=tuple(c for c in header if c))


def _no_trailing(cells: list[str], header: list[str]) -> list[str]:
    """A row's cells without the empty ones past the header's columns (a delimiter at the
    end of every data row but not of the header, as some loggers write)."""
    n = len(header)
    return cells[:n] if len(cells) > n and not any(c.strip() for c in cells[n:]) else cells


#: the rows converted at once (``_add_rows``: one match and one conversion a column)
BATCH_ROWS = 4096


def _add_rows(batch, columns, header, used, index, sigma, where, drop_nan,
              decimal: DecimalMark | None = None, first_row: int | None = None) -> int:
    """Append the used cells of ``batch`` (``(row, cells)`` pairs) to ``columns``; returns
    how many rows were dropped. A batch whose used cells are all finite numbers (one
    regular-expression match and one conversion a column) goes in at once; any other goes
    row by row through ``_row_numbers``, which says what is wrong and where. ``decimal``:
    the file's decimal mark; ``first_row``: the row under the header, where a row of text
    is said to be a second header."""
    if not batch:
        return 0
    decimal = decimal or DecimalMark()
    fast = all(len(cells) == len(header) for _, cells in batch)
    values = []
    for i in index if fast else ():
        text = decimal.cells("\n".join(c[i] for _, c in batch))
        v = None if text is None else finite_numbers(text.split("\n"))
        if v is None:
            fast = False
            break
        values.append(v)
    if fast and (sigma is None or bool((values[-1] > 0).all())):
        for col, v in zip(columns, values):
            col.frombytes(v.tobytes())
        return 0
    dropped = 0
    for k, (row, cells) in enumerate(batch):
        if row == first_row:
            _check_not_a_second_header(batch[k:k + 2], header, index, decimal, where)
        nums = _row_numbers(cells, header, used, index, sigma, f"{where}, row {row}", drop_nan,
                            decimal)
        if nums is None:
            dropped += 1
            continue
        for col, v in zip(columns, nums):
            col.append(v)
    return dropped


# a date or a time of day as a spreadsheet or a logger writes it: 2024-01-01, 2024-01-01T00:00:00Z,
# 01/02/2024 13:00, 12:30:05
DATE_OR_TIME = re.compile(r"(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4})"
                          r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
                          r"|\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?", re.ASCII)
# digits grouped in thousands (1,234.5; 1.234,5; 1'234), then perhaps a fraction
GROUPED = re.compile(r"[+-]?[0-9]{1,3}(?:([,.' ])[0-9]{3})(?:\1[0-9]{3})*((?!\1)[.,][0-9]+)?",
                     re.ASCII)
TIME_CSV_ADVICE = ("numbers: a time as the seconds (or days) since a start; convert the column "
                   "first, e.g. with pandas: t = pd.to_datetime(df[{name!r}]); "
                   "df[{name!r}] = (t - t.iloc[0]) / pd.Timedelta(1, 's')")


def parse_cell(cell: str, where: str, decimal: DecimalMark | None = None,
               column: str | None = None) -> float:
    """A stripped CSV cell as a number (``parse_number``, or ``decimal.number`` in a file
    whose decimal mark may be a comma; empty: NaN, a missing value); a cell that is not a
    number is refused, ``where`` naming its row and column (``column``: its name)."""
    try:
        if not cell:
            return math.nan
        return parse_number(cell) if decimal is None else decimal.number(cell)
    except ValueError:
        if DATE_OR_TIME.fullmatch(cell):
            raise DataError("not a number: a date or time", given=cell, where=where,
                            expected=TIME_CSV_ADVICE.format(name=column or "time")) from None
        grouped = GROUPED.fullmatch(cell)
        if grouped and (grouped.group(2) or cell.count(grouped.group(1)) > 1):
            raise DataError(f"not a number: digits grouped by a thousands separator "
                            f"({grouped.group(1)!r})", expected="numbers written without "
                            "one, as 1234.5", given=cell, where=where) from None
        commas = decimal is not None and decimal.mark == ","
        if commas and "." in cell:
            raise DataError("a decimal point in a file whose numbers have decimal commas",
                            expected="one decimal mark throughout: numbers as 0,5 (or all as "
                            "0.5)", given=cell, where=where) from None
        mark = "',' as the decimal mark" if commas else "'.' as the decimal point"
        hint = f" with {mark} and no thousands separator" if grouped \
            else f" with {mark}" if "," in cell or commas else ""
        raise DataError("not a number", expected=f"a number{hint}, as 1, -2.5 or 1e-3 "
                        "(an empty cell is a missing value)", given=cell, where=where) from None


def _check_not_a_second_header(rows, header, index, decimal, where) -> None:
    """Refuse the row under the header when it is text in every used column and the row
    after it is not (a units row: "s;mV"), saying so; its first bad cell had been the
    whole message."""
    def word(cell):             # not a number in any spelling, nor a date
        return cell and not (decimal.could_be(cell) or COMMA_NUMBER.fullmatch(cell)
                             or DATE_OR_TIME.fullmatch(cell))

    def text(cells):
        return len(cells) == len(header) and all(word(cells[i].strip()) for i in index)
    (row, cells), after = rows[0], rows[1:]
    if text(cells) and after and not text(after[0][1]):
        raise DataError(f"row {row} looks like a second header (units?): remove it",
                        expected="numbers from the row under the header on",
                        given=", ".join(cells[i].strip() for i in index), where=where)


def _row_numbers(cells, header, used, index, sigma, here, drop_nan,
                 decimal: DecimalMark | None = None) -> list[float] | None:
    """The used cells of one row as floats; None when the row is dropped (``drop_nan``)."""
    if len(cells) != len(header) and cells and cells[0].lstrip().startswith("#"):
        raise DataError("a comment line (#) among the data rows", expected="comment lines "
                        "only above the header (remove this one)", where=here)
    if len(cells) != len(header):
        k = len(cells)
        raise DataError(f"this row has {k} cell{'s' * (k != 1)} but the header has "
                        f"{len(header)} columns", expected=f"{len(header)} cells, one per "
                        "column", where=here)
    nums, bad = [], None
    for name, i in zip(used, index):
        cell = cells[i].strip()
        v = parse_cell(cell, f"{here}, column {name!r}", decimal, name)
        if bad is None and not math.isfinite(v):
            bad = (name, cell)
        nums.append(v)
    if bad is not None:
        if drop_nan:
            return None
        name, cell = bad
        raise DataError("missing value" if not cell else "not a finite number",
                        expected=_DROP_HINT, given=cell or None,
                        where=f"{here}, column {name!r}")
    if sigma is not None and not nums[-1] > 0:
        raise DataError("uncertainty must be positive", expected="a number > 0",
                        given=cells[index[-1]].strip(), where=f"{here}, column {sigma!r}")
    return nums
