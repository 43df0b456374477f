"""``/api/csv``: an uploaded CSV file's columns and points, bounded while it streams.

The body is capped by ``guard.Guard`` (``MAX_CSV_BYTES``) as it arrives; Starlette spools
the file part to disk past 1 MB. The parse runs in a heavy worker, one pass over the lines
(``csv_read.read_csv``): the header at most ``MAX_CSV_COLUMNS`` columns, at most ``MAX_POINTS``
rows (stopped at the first row past it), names checked through a dict. Messages name the
file as the client named it (cleaned, never a server path), its row and column.
"""
from __future__ import annotations

from typing import Optional

from fastapi import Request
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from ..csv_dialect import column_names, delimiter_of
from ..csv_read import read_csv, sigma_column
from ..data import DROP_HINT
from ..errors import InputError
from .datasets import points
from .limits import MAX_CSV_COLUMNS
from .pool import WorkerPool, checkpoint, unless_gone
from .schemas import MAX_POINTS

MAX_NAME = 100


class CsvForm(BaseModel):
    """The upload form: the file, and optionally the x and y columns."""

    file: bytes = Field(json_schema_extra={"format": "binary"})
    x: Optional[str] = None
    y: Optional[str] = None
    sigma: Optional[str] = None
    drop_nan: bool = False


def clean_name(name: str | None) -> str:
    """The file name to show: its last part, printable, at most ``MAX_NAME`` characters.

    >>> clean_name("../../etc/passwd"), clean_name(".."), clean_name("a\\nb.csv"), clean_name(None)
    ('passwd', 'upload.csv', 'ab.csv', 'upload.csv')
    """
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)
    base = base.strip()[:MAX_NAME]
    return base if base.strip(".") else "upload.csv"


def _flag(value) -> bool:
    if value in (None, "", "false", "False", "0", "off"):
        return False
    if value in ("true", "True", "1", "on"):
        return True
    raise InputError("bad drop_nan", expected="true or false", given=str(value)[:40])


async def read_upload(request: Request, pool: WorkerPool, response):
    """Read the form (file, x, y, drop_nan), parse the file in a worker, answer."""
    given = request.headers.get("content-type") or ""
    if given.split(";", 1)[0].strip().lower() != "multipart/form-data":
        return response({"detail": "the upload must be sent as a form: expected the "
                         "Content-Type multipart/form-data with the CSV file in the field "
                         "'file'" + (f", got {given[:60]!r}" if given else ", got none")},
                        status_code=415)
    try:
        form = await request.form(max_files=1, max_fields=8)
    except ClientDisconnect:            # the client went away mid-upload: not our error
        return response({"detail": "the client closed the connection before its upload "
                         "arrived"}, status_code=400)
    except (ValueError, KeyError, AssertionError, HTTPException) as exc:   # a broken form
        raise InputError("cannot read the upload", expected="a multipart form with a CSV file "
                         "in 'file'", given=str(getattr(exc, "detail", exc))[:80] or None) from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InputError("no file in the upload", expected="a CSV file in the form field 'file'")
    x, y, sigma = (form.get(k) for k in ("x", "y", "sigma"))
    if not all(v is None or isinstance(v, str) for v in (x, y, sigma)):
        raise InputError("bad column choice", expected="column names as text")
    if x is not None and x.count(",") > 1:
        raise InputError("the playground plots one or two input columns",
                         expected="one or two x columns", given=x[:80])
    drop_nan = _flag(form.get("drop_nan"))
    name = clean_name(upload.filename)

    def parse():
        scan(upload.file, name)
        s = sigma
        if s is None and not y:                # not chosen: a column named like one
            upload.file.seek(0)
            s = sigma_column(column_names(upload.file, name, max_columns=MAX_CSV_COLUMNS), x)
        upload.file.seek(0)
        try:
            d = read_csv(upload.file, name, x=x or None, y=y or None, sigma=s or None,
                         drop_nan=drop_nan, max_points=MAX_POINTS, max_columns=MAX_CSV_COLUMNS,
                         check=checkpoint)
        except InputError as exc:       # the page's words for the command line's option
            text = str(exc).replace(DROP_HINT, PAGE_DROP_HINT)
            if text == str(exc):
                raise
            raise InputError(text) from None
        # the columns as read: unnamed ones (an index) left out, a file without a header
        # row named c1, c2, ...
        return response({"name": name, "columns": list(d.columns), "x_name": d.x_names[0],
                         "x_names": list(d.x_names), "y_name": d.y_name,
                         "sigma_name": s or None, "dropped": d.dropped, **points(d)})

    try:
        return await unless_gone(request.receive, pool.run(parse))
    finally:
        await form.close()


PAGE_DROP_HINT = "(or leave such rows out)"      # the page offers it beside the message
MAX_BLANK_LINES = MAX_POINTS    # blank lines in an upload, with the comment lines over its header
WIDE_LINE = 1 << 20             # a line with quotes and this long is split only with few cells


def _delimiter(line):
    """The delimiter ``read_csv`` reads a header line by (bytes or text)."""
    if isinstance(line, bytes):
        return delimiter_of(line.decode("utf-8", "replace")).encode()
    return delimiter_of(line)


def _check_width(raw: bytes, delim: bytes, row: int, name: str) -> None:
    """Refuse a line with more than ``MAX_CSV_COLUMNS`` cells before it is split: a cell
    is a ~60-byte str, and a 16 MB line of 2-character cells had held 470 MB. A quoted
    cell may hold the delimiter, so a line with quotes is refused by its delimiters only
    past ``WIDE_LINE`` bytes (shorter, the parser splits it and counts its cells)."""
    cells = raw.count(delim) + 1
    if cells > MAX_CSV_COLUMNS and (b'"' not in raw or len(raw) > WIDE_LINE):
        up_to = "up to " if b'"' in raw else ""
        raise InputError(f"too many columns ({up_to}{cells:,} cells)",
                         expected=f"at most {MAX_CSV_COLUMNS:,}", where=f"{name}, row {row}")


def scan(f, name: str) -> str:
    """Check an uploaded file's lines before a cell of it is split, in one pass that stops
    past ``MAX_POINTS`` rows (``read_csv`` then refuses at its row): no line with more than
    ``MAX_CSV_COLUMNS`` cells, at most ``MAX_BLANK_LINES`` blank lines (and comment lines
    over the header), which ``read_csv`` skips without counting them as rows (20 MB of them
    had held a worker to the deadline). Returns the first line that is not blank, decoded
    (a comment over the header perhaps)."""
    f.seek(0)
    first, delim, blank, rows = None, None, 0, 0
    for row, raw in enumerate(f, 1):
        if not row % 4096:
            checkpoint()
        if delim is None:                   # above the header: read as read_csv reads it
            text = raw.decode("utf-8-sig" if row == 1 else "utf-8", "replace")
            if first is None and text.strip():
                first = text
                _check_width(raw, _delimiter(raw), row, name)
            skip = not text.strip() or text.lstrip().startswith("#")
            if not skip:
                delim = _delimiter(text).encode()
        else:
            skip = not raw.strip()
        if skip:
            blank += 1
            if blank > MAX_BLANK_LINES:
                raise InputError(f"more than {MAX_BLANK_LINES:,} blank or comment lines",
                                 expected=f"at most {MAX_POINTS:,} rows of data and at most as "
                                 "many blank lines (and comment lines above the header)",
                                 where=name)
            continue
        if len(raw) > MAX_CSV_COLUMNS:      # shorter, it cannot hold that many delimiters
            _check_width(raw, delim, row, name)
        rows += 1
        if rows > MAX_POINTS + 1:           # the header and MAX_POINTS rows: read_csv says so
            break
    return first or ""


__all__ = ["read_upload", "clean_name", "scan", "CsvForm"]
