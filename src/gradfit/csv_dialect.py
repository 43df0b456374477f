"""How a CSV file is written, read off its first lines by one rule for every face (the
reader ``csv_read``, the command line's and the page's column guesses, the Dask reader):

- its text: UTF-8 (a BOM allowed) or UTF-16 after its BOM (``encoding_of``, ``_lines``, a
  line longer than ``MAX_LINE_BYTES`` no CSV row, NUL bytes no text);
- its numbers: the forms a spreadsheet writes (``parse_number``, ``finite_numbers`` for a
  batch at once) and the decimal mark (``DecimalMark``: a ';' file may write ``0,5``);
- its delimiter (``delimiter_of``, Excel's ``sep=;`` line: ``SEP_HINT``);
- its start (``begin``): comment and blank lines above the first row, the header or a first
  row of numbers (``_header``: columns named by a ``# x,y`` comment or ``c1``, ``c2``, ...).
"""
from __future__ import annotations

import codecs
import csv
import itertools
import re
from typing import Callable, NamedTuple

import numpy as np

from gradfit.errors import DataError


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

    @classmethod
    def known(cls, mark: str | None) -> DecimalMark:
        """A file's mark read beforehand (``dask_files.csv_decimal``: '.', ',' or None where
        no number fixed it), for a part of the file held to the whole file's mark.

        >>> DecimalMark.known(",").number("1.5")
        Traceback (most recent call last):
        ...
        ValueError: 1.5
        """
        decimal = cls(";")
        decimal.mark = mark
        return decimal

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


MAX_LINE_BYTES = 1 << 24   # a longer line is no CSV row (/dev/zero: one endless line)


def _too_long(raw, row: int, where: str) -> DataError:
    if b"\x00" in raw:
        return DataError("not a text file (it contains NUL bytes)",
                         expected="a CSV text file with a header row", where=where)
    return DataError(f"row {row} is longer than {MAX_LINE_BYTES >> 20} MiB",
                     expected="a CSV text file, one row per line", where=where)


def _checked(line: str, where: str) -> str:
    if "\x00" in line:
        raise DataError("not a text file (it contains NUL bytes)",
                        expected="a CSV text file with a header row", where=where)
    return line


UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def encoding_of(head: bytes) -> str:
    """The encoding a file starting with ``head`` is read in: UTF-16 after its byte-order
    mark (Excel's "Unicode text" export), else UTF-8 (a BOM allowed)."""
    return "utf-16" if head.startswith(UTF16_BOMS) else "utf-8-sig"


def _lines(stream, where: str):
    """Text lines of a binary stream, one at a time (UTF-8, a BOM allowed at the start, or
    UTF-16 after its BOM); a line is read at most ``MAX_LINE_BYTES`` at a time, so that a
    stream without line ends (/dev/zero, a binary file) is refused at once rather than
    read whole into memory."""
    raw = stream.readline(MAX_LINE_BYTES + 1)
    if encoding_of(raw) == "utf-16":
        yield from _utf16_lines(raw, stream, where)
        return
    row = 0
    while raw:
        row += 1
        if len(raw) > MAX_LINE_BYTES:
            raise _too_long(raw, row, where)
        try:
            line = raw.decode("utf-8-sig" if row == 1 else "utf-8")
        except UnicodeDecodeError:
            raise DataError(f"not UTF-8 text (bad byte at row {row})", expected="a CSV text "
                            "file encoded as UTF-8, or as UTF-16 with its byte-order mark",
                            where=where) from None
        if "\x00" in line:
            if row == 1 and max(line[::2].count("\x00"), line[1::2].count("\x00")) * 2 \
                    >= len(line) - 2:
                raise DataError("UTF-16 text without a byte-order mark (every other byte is "
                                "NUL)", expected="a CSV text file encoded as UTF-8, or as "
                                "UTF-16 starting with its byte-order mark", where=where)
            _checked(line, where)
        yield line
        raw = stream.readline(MAX_LINE_BYTES + 1)


def _utf16_lines(raw: bytes, stream, where: str):
    """``_lines`` of a UTF-16 stream whose first bytes, BOM included, are ``raw``: the bytes
    decoded as they come (a '\\n' byte of ``readline`` may be half of a character)."""
    decoder, pending, row = codecs.getincrementaldecoder("utf-16")(), "", 0
    while raw:
        try:
            pending += decoder.decode(raw)
        except UnicodeDecodeError:
            raise DataError(f"not UTF-16 text (bad bytes at row {row + 1})",
                            expected="a CSV text file in one encoding", where=where) from None
        *done, pending = pending.split("\n")
        for line in done:
            row += 1
            yield _checked(line + "\n", where)
        if len(pending) > MAX_LINE_BYTES:
            raise _too_long(b"", row + 1, where)
        raw = stream.readline(MAX_LINE_BYTES + 1)
    if pending:
        yield _checked(pending, where)


def csv_words(error: Exception) -> str:
    """The csv module's complaint in the user's terms (it speaks of its own options)."""
    text = str(error)
    if "new-line character seen in unquoted field" in text:
        return ("a carriage return (CR) inside a line: lines must end in LF or CRLF, not CR "
                "alone (old Mac text), and the file must be text")
    if "field larger than field limit" in text:
        return f"a cell longer than {csv.field_size_limit():,} characters"
    return text


#: Excel's first line naming the delimiter (``sep=;``)
SEP_HINT = re.compile(r"sep=([^\w\s\"']|\t)", re.ASCII)


def delimiter_of(line: str) -> str:
    """The delimiter of a CSV whose first row of cells is ``line``: the most frequent of
    ',', ';' and tab (',' when none), except that a row of numbers with decimal commas
    separated by ';' (``0,5;1,25``, a European spreadsheet's, its commas as many as its
    semicolons or more) is ';'.

        >>> delimiter_of("t;signal"), delimiter_of("0,5;1,25"), delimiter_of("1,2")
        (';', ';', ',')
    """
    if ";" in line and "," in line:
        d = DecimalMark(";")
        if all(d.could_be(c.strip()) for c in line.strip("\r\n").split(";")):
            return ";"
    return max(",;\t", key=line.count) if any(d in line for d in ",;\t") else ","


class Start(NamedTuple):
    """A CSV read up to its first row of cells (``begin``): the ``reader`` of the rest, the
    column names (``header``), the first row as ``(row, cells)`` when it is data, the
    file's ``decimal`` mark, its ``delimiter`` and the lines above that row (``skip``:
    blank, comment and ``sep=`` lines)."""

    reader: object
    header: list
    first_data: tuple | None
    decimal: "DecimalMark"
    delimiter: str
    skip: int


def begin(stream, where: str, max_points: int | None = None, max_columns: int | None = None,
          check: Callable[[], None] | None = None) -> Start:
    """Read a CSV's first lines (the one rule of ``read_csv``, the command line's and the
    page's column guesses and the Dask reader): blank lines and comment lines (``#``)
    skipped, the last comment kept (a header perhaps: ``numpy.savetxt``'s ``# t,y``),
    Excel's ``sep=;`` line read as the delimiter, else the delimiter read off the first
    row (``delimiter_of``), and the header (``_header``)."""
    lines, skipped, comment, delimiter = _lines(stream, where), 0, None, None
    first = next(lines, None)
    # blank and comment lines above the header count toward max_points, and check() runs
    # among them: 20 MB of them had run a server's upload to its deadline
    while first is not None:
        hint = SEP_HINT.fullmatch(first.rstrip("\r\n")) if skipped == 0 else None
        if hint:
            delimiter = hint.group(1)
        elif first.strip() and not first.lstrip().startswith("#"):
            break
        elif first.strip():
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
    delimiter = delimiter or delimiter_of(first)
    # the header's columns counted before it is split (a cell is a ~60-byte str: a 16 MB
    # header of 5.6 million cells had held 470 MB); quoted cells may hold the delimiter,
    # so a quoted header is split when it is short (at most 1 MiB: tens of MB at most)
    cells, quoted = first.count(delimiter) + 1, '"' in first
    if max_columns is not None and cells > max_columns and (not quoted or len(first) > 1 << 20):
        raise DataError(f"too many columns ({'up to ' * quoted}{cells:,})",
                        expected=f"at most {max_columns:,}", where=f"{where}, row {skipped + 1}")
    reader = csv.reader(itertools.chain(itertools.repeat("\n", skipped), [first], lines),
                        delimiter=delimiter, skipinitialspace=True)
    decimal = DecimalMark(delimiter)
    try:
        header, first_data = _header(reader, where, max_columns, comment, delimiter, decimal)
    except csv.Error as e:
        raise DataError(f"cannot read the header row ({csv_words(e)})", expected="a header "
                        "row of column names", where=f"{where}, row {reader.line_num}") from None
    return Start(reader, header, first_data, decimal, delimiter, skipped)


def column_names(stream, where: str, max_lines: int = 1000,
                 max_columns: int | None = None) -> list[str]:
    """The named columns of a CSV as ``read_csv`` names them (``begin``), for a guess of
    the columns to use; [] when there is no header within ``max_lines`` lines, or a bad one
    (``read_csv`` then says what is wrong)."""
    try:
        return [c for c in begin(stream, where, max_lines, max_columns).header if c]
    except DataError:
        return []


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
    first_data, names = None, _comment_names(comment, delimiter, len(cells))
    numbers = finite_numbers([c.strip() for c in cells]) is not None or decimal is not None \
        and all(decimal.could_be(c.strip()) for c in cells)
    if names and decimal is not None and any(c.strip() for c in cells):
        # under a comment that names every column, a first row of numbers may miss some
        numbers = numbers or all(not c.strip() or decimal.could_be(c.strip()) for c in cells)
    if len(cells) > 1 and numbers:
        first_data = (row, cells)
        cells = names or [f"c{i + 1}" for i in range(len(cells))]
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


def _comment_names(comment: str | None, delimiter: str, n: int) -> list[str]:
    """The names of a comment line over a first row of ``n`` cells (``numpy.savetxt``'s
    ``# t,y``), when it names each of them once; else []. A comment with more delimiters
    (and no quotes) is not split."""
    if comment is None or not (comment.count(delimiter) < n
                               or '"' in comment and len(comment) <= 1 << 20):
        return []
    try:
        names = next(csv.reader([comment], delimiter=delimiter, skipinitialspace=True), [])
    except csv.Error:
        return []
    names = [c.strip() for c in names]
    return names if len(names) == n and all(names) and len(set(names)) == n else []
