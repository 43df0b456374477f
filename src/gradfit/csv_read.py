"""CSV files for gradfit: one reader for the command line, the page, ``load_csv`` and
``fit_many``'s ``--group`` tables.

Every cell is a number, an empty cell (a missing value) or a refusal that names the file,
row and column: text, dates (with the conversion to use), a units row under the header,
decimal commas outside a ';' file (``DecimalMark``: a ';' file written by a European Excel
is read as its '.' twin). Lines are read in batches (``BATCH_ROWS``), a line longer than
``MAX_LINE_BYTES`` is no CSV row.
"""
from __future__ import annotations

import csv
import itertools
import math
import re
import sys
from array import array
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from gradfit.errors import DataError

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


# the number forms a spreadsheet writes: sign, digits, a decimal point, an exponent (ASCII
# only: no 1_000, no fullwidth or Arabic-Indic digits), and nan / inf words
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                    r"|[+-]?(?:nan|inf|infinity)", re.IGNORECASE | re.ASCII)


def parse_number(cell: str) -> float:
    """A CSV cell as a float, in the forms a spreadsheet writes; ValueError for others.

    >>> [parse_number(c) for c in ("1", "-2.5", "+.5", "1e3", "3.", "1E-2")]
    [1.0, -2.5, 0.5, 1000.0, 3.0, 0.01]
    >>> for bad in ("1_000", "\uff11\uff12", "\u0663", "0x10", "1e", "--1"):
    ...     try:
    ...         parse_number(bad)
    ...     except ValueError:
    ...         print("refused", ascii(bad))
    refused '1_000'
    refused '\uff11\uff12'
    refused '\u0663'
    refused '0x10'
    refused '1e'
    refused '--1'
    """
    if not NUMBER.fullmatch(cell):
        raise ValueError(cell)
    return float(cell)


# a number with a decimal comma, as a spreadsheet writes it where ',' is the decimal mark
# (a European Excel's export: "0,5;1,25"); read only from files whose cells ';' separates
# (see DecimalMark)
COMMA_NUMBER = re.compile(r"[+-]?(?:[0-9]+,?[0-9]*|,[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


class DecimalMark:
    """The decimal mark of a file's numbers. Where ';' separates the cells (a spreadsheet's
    export where ',' is the decimal mark), the first number written with a mark decides it: a
    comma (``0,5``) makes it ',' and from then on every number must be written so (a
    '.' is refused, saying so); a point makes it '.'. Elsewhere it is '.', never guessed:
    in a ',' file a comma separates cells, and in a tab-separated file ``1,234`` may be a
    thousand written with a separator (refused, as not a number).

    >>> d = DecimalMark(";")
    >>> d.number("3"), d.mark, d.number("0,5"), d.mark, d.number("-1,5e3")
    (3.0, None, 0.5, ',', -1500.0)
    >>> d.number("1.5")
    Traceback (most recent call last):
    ...
    ValueError: 1.5
    >>> DecimalMark(",").number("2.5"), DecimalMark(";").could_be("0,5")
    (2.5, True)
    >>> DecimalMark(",").could_be("0,5"), DecimalMark("\t").could_be("1,234")
    (False, False)
    """

    def __init__(self, delimiter: str = ","):
        self.mark = None if delimiter == ";" else "."

    def could_be(self, cell: str) -> bool:
        """Whether ``cell`` is a number in this file, the mark not yet fixed by it."""
        if self.mark != "." and "," in cell and COMMA_NUMBER.fullmatch(cell):
            return True
        return bool(NUMBER.fullmatch(cell)) and not (self.mark == "," and "." in cell)

    def number(self, cell: str) -> float:
        """``cell`` as a float (ValueError when it is none); a first mark fixes this file's."""
        if self.mark != "." and "," in cell and COMMA_NUMBER.fullmatch(cell):
            self.mark = ","
            return float(cell.replace(",", "."))
        if "." in cell and self.mark == ",":
            raise ValueError(cell)
        v = parse_number(cell)
        if "." in cell and self.mark is None:
            self.mark = "."
        return v

    def cells(self, text: str) -> str | None:
        """A batch of cells joined by newlines as ``finite_numbers`` reads them at once, or
        None where they must be read one by one (a mark not yet fixed, a mark refused)."""
        if self.mark == ".":
            return text
        if self.mark == ",":
            return None if "." in text else text.replace(",", ".")
        if "," in text:
            return None
        if "." in text:
            self.mark = "."
        return text


MAX_LINE_BYTES = 1 << 24   # a longer line is no CSV row (/dev/zero: one endless line)


def _lines(stream, where: str):
    """Text lines of a binary stream, one at a time (UTF-8, a BOM allowed at the start); a
    line is read at most ``MAX_LINE_BYTES`` at a time, so that a stream without line ends
    (/dev/zero, a binary file) is refused at once rather than read whole into memory."""
    row = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        row += 1
        if len(raw) > MAX_LINE_BYTES:
            if b"\x00" in raw:
                raise DataError("not a text file (it contains NUL bytes)",
                                expected="a CSV text file with a header row", where=where)
            raise DataError(f"row {row} is longer than {MAX_LINE_BYTES >> 20} MiB",
                            expected="a CSV text file, one row per line", where=where)
        try:
            line = raw.decode("utf-8-sig" if row == 1 else "utf-8")
        except UnicodeDecodeError:
            raise DataError(f"not UTF-8 text (bad byte at row {row})",
                            expected="a CSV text file encoded as UTF-8", where=where) from None
        if "\x00" in line:
            raise DataError("not a text file (it contains NUL bytes)",
                            expected="a CSV text file with a header row", where=where)
        yield line


def csv_words(error: Exception) -> str:
    """The csv module's complaint in the user's terms (it speaks of its own options)."""
    text = str(error)
    if "new-line character seen in unquoted field" in text:
        return ("a carriage return (CR) inside a line: lines must end in LF or CRLF, not CR "
                "alone (old Mac text), and the file must be text")
    if "field larger than field limit" in text:
        return f"a cell longer than {csv.field_size_limit():,} characters"
    return text


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
    delimiter (``,`` ``;`` or tab) is read off the header; names and cells are stripped;
    a UTF-8 BOM is allowed; blank lines are skipped, and so are comment lines (``#``)
    above the header. A first row of numbers only is data, not a header: the columns are
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
    lines, skipped, comment = _lines(stream, where), 0, None
    first = next(lines, None)
    # blank and comment lines above the header count toward max_points, and check() runs
    # among them: 20 MB of them had run a server's upload to its deadline
    while first is not None and (not first.strip() or first.lstrip().startswith("#")):
        if first.strip():
            comment = first.lstrip()[1:]      # the last comment line: a header perhaps
        skipped += 1                          # the reader still counts the line (below)
        if max_points is not None and skipped > max_points:
            raise DataError(f"more than {max_points:,} blank or comment lines above the "
                            "header", expected=f"a header row within the first {max_points:,} "
                            "lines", where=where)
        if check is not None and not skipped % 4096:
            check()
        first = next(lines, None)
    if first is None:
        raise DataError("empty file", expected="a header row and at least one data row",
                        where=where)
    delimiter = max(",;\t", key=first.count) if any(d in first for d in ",;\t") else ","
    # the header's columns counted before it is split (a cell is a ~60-byte str: a 16 MB
    # header of 5.6 million cells had held 470 MB); quoted cells may hold the delimiter,
    # so a quoted header is split when it is short (at most 1 MiB: tens of MB at most)
    cells, quoted = first.count(delimiter) + 1, '"' in first
    if max_columns is not None and cells > max_columns and (not quoted or len(first) > 1 << 20):
        raise DataError(f"too many columns ({'up to ' * quoted}{cells:,})",
                        expected=f"at most {max_columns:,}", where=f"{where}, row {skipped + 1}")
    reader = csv.reader(itertools.chain(itertools.repeat("\n", skipped), [first], lines),
                        delimiter=delimiter, skipinitialspace=True)
    batch: list = []                # rows read but not yet converted (see _add_rows)
    decimal = DecimalMark(delimiter)
    try:
        header, first_data = _header(reader, where, max_columns, comment, delimiter, decimal)
        sample = first_data
        if sample is None:                    # the first data row, to choose columns by
            for cells in reader:
                if cells and not (len(cells) == 1 and not cells[0].strip()):
                    sample = (reader.line_num, cells)
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


def _header(reader, where: str, max_columns: int | None, comment: str | None = None,
            delimiter: str = ",", decimal: DecimalMark | None = None
            ) -> tuple[list[str], tuple[int, list[str]] | None]:
    """The column names, and the first row as ``(row, cells)`` when it is data: a first
    row of numbers only (``decimal``: in the file's decimal mark) is not a header. Its
    columns are then named by the last comment line above it when that has one name a
    column (``numpy.savetxt``'s ``# x,y``), else ``c1``, ``c2``, ... by position."""
    cells = next(reader, None)
    while cells is not None and (not cells or (len(cells) == 1 and not cells[0].strip())):
        cells = next(reader, None)
    if cells is None:               # only empty cells ('""'): StopIteration had escaped
        raise DataError("empty file (only blank lines and empty cells)",
                        expected="a header row and at least one data row", where=where)
    row = reader.line_num
    if max_columns is not None and len(cells) > max_columns:
        raise DataError(f"too many columns ({len(cells):,})",
                        expected=f"at most {max_columns:,}", where=f"{where}, row {row}")
    first_data = None
    numbers = finite_numbers([c.strip() for c in cells]) is not None or decimal is not None \
        and all(decimal.could_be(c.strip()) for c in cells)
    if len(cells) > 1 and numbers:
        first_data = (row, cells)
        # the comment names the columns only with as many cells: one with more delimiters
        # (and no quotes) is not split
        names = next(csv.reader([comment], delimiter=delimiter, skipinitialspace=True), []) \
            if comment is not None and (comment.count(delimiter) < len(cells)
                                        or '"' in comment and len(comment) <= 1 << 20) else []
        names = [c.strip() for c in names]
        if len(names) == len(cells) and all(names) and len(set(names)) == len(names):
            cells = names
        else:
            cells = [f"c{i + 1}" for i in range(len(cells))]
    header = [c.strip() for c in cells]
    first_at: dict[str, int] = {}
    for i, name in enumerate(header):
        # pandas' to_csv writes its index as a first column without a name, and a trailing
        # delimiter on every line (spreadsheets) makes last columns without one: both are
        # kept unnamed (""), never chosen; an unnamed column between two named is an error
        if not name and (i == 0 or not any(header[i:])):
            continue
        if not name:
            raise DataError(f"column {i + 1} has no name", expected="a name for every column",
                            where=f"{where}, row {row}")
        if name in first_at:
            raise DataError(f"duplicate column name {name!r} (columns {first_at[name] + 1} "
                            f"and {i + 1})", expected="distinct column names",
                            where=f"{where}, row {row}")
        first_at[name] = i
    return header, first_data


BATCH_ROWS = 4096
#: a character no number cell holds: with only digits, signs, '.', 'e' and spaces, the cells
#: that float() reads are exactly the forms parse_number reads (no '_', 'inf', 'nan', hex or
#: non-ASCII digits), so one scan of the batch replaces a match a cell
NOT_IN_A_NUMBER = re.compile(r"[^0-9eE+\-. \t\n]")


def finite_numbers(cells: list[str]) -> np.ndarray | None:
    """The cells as float64 when every one is a finite number as ``parse_number`` reads
    it (spaces around allowed), at once; else None (then read them one by one, for the
    message or the missing values)."""
    try:
        v = None if NOT_IN_A_NUMBER.search("\n".join(cells)) else \
            np.array(cells, dtype=np.float64)
    except ValueError:
        return None
    return v if v is not None and bool(np.isfinite(v).all()) else None


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
        if decimal is not None and decimal.mark == ",":
            raise DataError("a decimal point in a file whose numbers have decimal commas",
                            expected="one decimal mark throughout: numbers as 0,5 (or all as "
                            "0.5)", given=cell, where=where) from None
        hint = " with '.' as the decimal point" if "," in cell else ""
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
