"""The files behind a path, folder or glob of Parquet or CSV data, read as Dask partitions.

- ``data_files(path)``: the files and their kind. A folder is read whole, its subfolders
  included (a hive-partitioned dataset, ``data/year=2020/part.parquet``, whose ``year`` is
  then a column); names starting with ``.`` or ``_`` are not data (``_SUCCESS``,
  ``_metadata``, ``.part.crc``: Spark's, Arrow's and Dask's rule), in a folder or among a
  glob's matches. A glob's ``**`` matches any depth. Parquet is ``.parquet``, ``.pq`` or
  ``.parq``, CSV ``.csv`` or ``.tsv`` (a file, or a glob's files, of another name read
  as CSV, as the one-file reader reads any file); other files, or Parquet and CSV
  together, are refused by name, never left out.
- ``read_parquet(files, cols)``: each file's schema read first (its footer only): a column
  missing from a file, or of a type that cannot share a column with the other files' (an
  integer id in one file, text in another), is refused by file and column; numbers of
  several kinds (int64 here, float64 there) are read as one (as pandas' concat would):
  values as float64, group labels as their files' common type where it holds every label
  exactly (by the files' statistics), else refused by file and type (an int64 id above
  2^53 beside float ids, a uint64 id above 2^63 beside int64 ids: changed, or merged).
- ``read_csv(files, cols)``: each file read by the one-file reader's rules
  (``csv_dialect.begin``, each file by itself): comment (``#``) and blank lines above the
  header skipped, the delimiter (``,``, ``;`` or tab) read off the header or a ``sep=;``
  line, UTF-8 or UTF-16 after its BOM, a first row of numbers read as data
  (columns ``c1``, ``c2``, ... or named by a ``# x,y`` comment line); every cell as text,
  each row tagged with its file (``FILE``).
- ``csv_decimal(path, values)``: a ';' file's decimal mark, read once for the whole file
  (its first number written with a mark, as the one-file reader fixes it), so that the
  partitions of one file are held to one mark throughout (each had fixed its own).
- ``bad_value(files, ...)``, ``csv_problem(files)``: where the first bad value (NaN, inf,
  sigma <= 0) or bad line lies (file, row, column), looked for only once the cluster has
  met one (a Parquet partition does not know its file, pandas' errors do not name it).
"""
from __future__ import annotations

import contextlib
import csv
import glob
import os
import re
from dataclasses import dataclass

from .errors import DataError, InputError

PARQUET = (".parquet", ".pq", ".parq")
CSV = (".csv", ".tsv")
FILE = "__gradfit_file__"      # the CSV file each row came from (dropped by as_numbers)
#: the bytes of a CSV file one partition reads (dask's own default: 64 MB)
BLOCKSIZE: int | str = "default"


@dataclass(frozen=True)
class Files:
    """The files of a path (``paths`` sorted), their ``kind`` (parquet or csv), and the
    folder they were listed from (the root of a hive-partitioned dataset)."""

    paths: tuple
    kind: str
    root: str | None = None


def _kind(path: str) -> str | None:
    low = path.lower()
    return "parquet" if low.endswith(PARQUET) else "csv" if low.endswith(CSV) else None


def _walk(folder: str) -> list[str]:
    """Every file under ``folder``, names starting with '.' or '_' left out (not data)."""
    found = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        found += [os.path.join(top, n) for n in names if not n.startswith((".", "_"))]
    return sorted(found)


def data_files(path: str) -> Files:
    """The files of ``path`` (see the module's docstring)."""
    root = path if os.path.isdir(path) else None
    if root is not None:
        found, how = _walk(path), "the folder"
    else:
        how = "the glob" if glob.has_magic(path) else None
        found = []
        for p in sorted(glob.glob(path, recursive=True)):
            if how and os.path.basename(p).startswith(("_", ".")):
                continue                 # 'out/*' of a Spark job: its _SUCCESS is no data
            found += _walk(p) if os.path.isdir(p) else [p]
    if not found:
        raise InputError("no data file matches", expected="a Parquet or CSV file, a folder "
                         "of them or a glob such as 'data/*.parquet'", given=path)
    kinds = {f: _kind(f) for f in found}
    if how is None or (how == "the glob" and not any(kinds.values())):
        # a file named by the user (or a glob of such names) is CSV unless it says Parquet
        kinds = {f: k or "csv" for f, k in kinds.items()}
    base = path if root else os.path.dirname(path) or "."
    pick = f"a glob that picks one kind, such as '{os.path.join(base, '**', '*.parquet')}'"
    other = [f for f, k in kinds.items() if k is None]
    if other:
        raise InputError(f"{how} holds files that are neither Parquet nor CSV: "
                         f"{_some(other, root)}", expected="Parquet (.parquet, .pq) or CSV "
                         f"(.csv) files only, or {pick}", given=path)
    if len(set(kinds.values())) > 1:
        parquet = [f for f, k in kinds.items() if k == "parquet"]
        csv_files = [f for f, k in kinds.items() if k == "csv"]
        raise InputError(f"{how} holds both Parquet and CSV files ({_some(parquet, root)}; "
                         f"{_some(csv_files, root)}), which are not read together",
                         expected=f"files of one kind, or {pick}", given=path)
    return Files(tuple(found), next(iter(kinds.values())), root)


def _some(files, root=None, k: int = 3) -> str:
    """A few of ``files`` (relative to ``root``) and how many more."""
    shown = ", ".join(os.path.relpath(f, root) if root else f for f in files[:k])
    return shown + (f" and {len(files) - k} more" if len(files) > k else "")


def _hive_keys(path: str, root: str | None) -> set:
    """The columns a hive-partitioned path gives (``year`` of ``year=2020/``)."""
    rel = os.path.relpath(path, root) if root else path
    return {seg.split("=", 1)[0] for seg in rel.replace("\\", "/").split("/")[:-1]
            if "=" in seg}


def _hive_values(path: str, root: str | None) -> dict:
    """``{key: value}`` of a hive-partitioned path (``{"year": "2020"}`` of ``year=2020/``)."""
    rel = os.path.relpath(path, root) if root else path
    return dict(seg.split("=", 1) for seg in rel.replace("\\", "/").split("/")[:-1]
                if "=" in seg)


def _check_hive_spellings(files: Files) -> None:
    """Refuse a hive key whose folders spell one number twice (``well=1/``, ``well=01/``):
    the reader reads the key as numbers, where they clash (pyarrow's words had been
    'Categorical categories must be unique', naming neither key nor folders)."""
    seen: dict = {}                            # key -> number -> its spellings
    for path in files.paths:
        for key, value in _hive_values(path, files.root).items():
            if not re.fullmatch(r"[+-]?[0-9]+(?:\.[0-9]*)?", value):
                continue                       # text: read as text, each spelling apart
            number = float(value)
            seen.setdefault(key, {}).setdefault(number, set()).add(value)
    for key, numbers in seen.items():
        for spellings in numbers.values():
            if len(spellings) > 1:
                a, b = sorted(spellings)[:2]
                raise InputError(f"the folders {key}={a}/ and {key}={b}/ give the "
                                 f"partition column {key!r} one number twice",
                                 expected="one spelling of each value in the folders' "
                                 f"names (rename {key}={b}/ to {key}={a}/, or the other "
                                 "way), or labels that are not numbers",
                                 given=files.root or None)


def _schemas(paths) -> list:
    import pyarrow.parquet as pq

    def read(p):
        try:
            return pq.read_schema(p)
        except Exception as exc:           # noqa: BLE001 - the reader's own words, named
            raise InputError("cannot read the data", expected="Parquet files holding the "
                             "named columns", given=(str(exc) or type(exc).__name__)
                             .splitlines()[0][:200], where=p) from None
    if len(paths) < 16:
        return [read(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:           # footers of many files: I/O, not CPU
        return list(pool.map(read, paths))


def _plain(t):
    import pyarrow as pa
    return t.value_type if pa.types.is_dictionary(t) else t


def _int_range(t):
    """``(low, high)`` of integer type ``t``."""
    import pyarrow as pa
    bits = t.bit_width
    return (0, 2 ** bits - 1) if pa.types.is_unsigned_integer(t) else \
        (-2 ** (bits - 1), 2 ** (bits - 1) - 1)


def _held_range(t):
    """The integers type ``t`` holds exactly, as ``(low, high)``; None for other types."""
    import pyarrow as pa
    if pa.types.is_integer(t):
        return _int_range(t)
    if pa.types.is_floating(t):          # every integer up to 2^(mantissa + 1)
        top = 2 ** {16: 11, 32: 24, 64: 53}[t.bit_width]
        return -top, top
    return None


def _min_max(path: str, column: str):
    """The smallest and largest value of ``column`` in the Parquet file by its footer's
    statistics; None where a row group has none."""
    import pyarrow.parquet as pq
    meta = pq.read_metadata(path)
    j = next((i for i in range(meta.num_columns)
              if meta.schema.column(i).path == column), None)
    low = high = None
    for r in range(meta.num_row_groups):
        col = meta.row_group(r).column(j) if j is not None else None
        stats = col.statistics if col is not None else None
        if stats is None or not stats.has_min_max:
            if col is not None and col.num_values == 0:
                continue
            return None
        low = stats.min if low is None else min(low, stats.min)
        high = stats.max if high is None else max(high, stats.max)
    return (0, 0) if low is None else (low, high)


def _not_exact(column: str, seen: dict, to) -> list:
    """The ``(type, files)`` of ``seen`` whose integers the unified type ``to`` does not hold
    exactly (int64 ids above 2^53 as float64 had become one id; uint64 above 2^63 as int64
    had wrapped negative), judged by each file's statistics where its type alone cannot
    tell; [] when every value is kept."""
    import pyarrow as pa
    held = _held_range(to)
    bad = []
    for t, paths in seen.items():
        if not pa.types.is_integer(t) or held is None:
            continue
        low, high = _int_range(t)
        if held[0] <= low and high <= held[1]:
            continue
        for p in paths:
            found = _min_max(p, column)
            if found is None or not (held[0] <= found[0] and found[1] <= held[1]):
                bad.append((t, p))
    return bad


def read_parquet(files: Files, cols: list, group: str | None = None):
    """A Dask DataFrame of ``cols`` from the Parquet ``files`` (see the module's docstring);
    ``group``: the column of labels, whose values must survive the files' one type."""
    import dask.dataframe as dd
    import pyarrow as pa
    _check_hive_spellings(files)
    schemas = _schemas(files.paths)
    types: dict = {c: {} for c in cols}            # column -> type -> its files
    for path, schema in zip(files.paths, schemas):
        hive = _hive_keys(path, files.root)
        for c in cols:
            if c in schema.names:
                types[c].setdefault(_plain(schema.field(c).type), []).append(path)
            elif c not in hive:
                raise InputError(f"no column named {c!r} in this file",
                                 expected="every file with the columns " + ", ".join(cols),
                                 where=path)
    fields = []
    for c, seen in types.items():
        if len(seen) < 2:
            continue
        try:
            field = pa.unify_schemas([pa.schema([pa.field(c, t)]) for t in seen],
                                     promote_options="permissive").field(c)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            shown = " but ".join(f"{t} in {_some(p, k=2)}" for t, p in seen.items())
            raise InputError(f"column {c!r} has different types in the files: {shown}",
                             expected="one type in every file (write it as text, or as "
                             "numbers, in all of them)") from None
        numeric = all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in seen)
        if numeric and c != group:
            field = pa.field(c, pa.float64())   # values: float64 anyway (as_numbers), never
            #                                     uint64 as int64, wrapped negative
        elif c == group:
            lost = _not_exact(c, seen, field.type)
            if lost:
                shown = " but ".join(f"{t} in {_some(p, k=2)}" for t, p in seen.items())
                t, p = lost[0]
                how = ("rounded: two ids may become one" if pa.types.is_floating(field.type)
                       else "out of its range: they would change")
                raise InputError(f"column {c!r} has different types in the files: {shown}; "
                                 f"as one type, {field.type}, the {t} labels of {p} are {how}",
                                 expected="one type in every file (the labels as text, or "
                                 "as one integer type, in all of them)") from None
        fields.append(field)
    kw = {}
    if fields:          # each file's column read as the one type (the first file's had won)
        first = schemas[0]
        unified = {f.name: f for f in fields}
        kw["dataset"] = {"schema": pa.schema([unified.get(f.name, f) for f in first])}
    return dd.read_parquet(list(files.paths), columns=list(cols), **kw)


@dataclass(frozen=True)
class CsvFormat:
    """What ``csv_dialect.begin`` reads off a CSV file's first lines: ``skip`` lines above the
    first row of cells (header or data), the ``delimiter``, the column ``names``, whether
    the first row is a ``header``, and the file's ``encoding``."""

    skip: int
    delimiter: str
    names: tuple
    header: bool
    encoding: str = "utf-8-sig"


def csv_format(path: str) -> CsvFormat | None:
    """``path``'s format, by the one-file reader's rules; None for a file without a row."""
    from pathlib import Path
    from .csv_dialect import begin, encoding_of
    from .csv_read import _open
    with _open(Path(path)) as fh:
        encoding = encoding_of(fh.read(2))
        fh.seek(0)
        try:
            start = begin(fh, path)
        except DataError as exc:
            if exc.problem.startswith("empty file"):
                return None
            raise
    # unnamed columns (pandas' index, a trailing delimiter: never chosen) named apart
    names = tuple(n or f"__unnamed_{i}" for i, n in enumerate(start.header))
    return CsvFormat(start.skip, start.delimiter, names, start.first_data is None, encoding)


def read_csv(files: Files, cols: list):
    """A Dask DataFrame of ``cols`` (text) and ``FILE`` from the CSV ``files`` (see the
    module's docstring): runs of files of one format read together, in the files' order."""
    import dask.dataframe as dd
    formats = [(p, csv_format(p)) for p in files.paths]
    formats = [(p, f) for p, f in formats if f is not None]     # no row: nothing to read
    if not formats:
        raise DataError("empty file" if len(files.paths) == 1 else "every file is empty",
                        expected="a header row and at least one data row",
                        where=files.paths[0] if len(files.paths) == 1 else None)
    for path, f in formats:
        lacking = [c for c in cols if c not in f.names]
        if lacking:
            raise InputError(f"no column named {lacking[0]!r} in this file",
                             expected="every file with the columns " + ", ".join(cols) +
                             " (it has " + ", ".join(n for n in f.names
                                                    if not n.startswith("__unnamed_")) + ")",
                             where=path)
    runs: list = []
    for path, f in formats:
        if runs and runs[-1][1] == f:
            runs[-1][0].append(path)
        else:
            runs.append(([path], f))
    # UTF-16 files whole (a block's bytes would split a character); a row's cells past the
    # header's are read and left out (a delimiter at the end of each row: empty cells)
    parts = [dd.read_csv(paths, sep=f.delimiter, skiprows=f.skip + f.header, header=None,
                         names=list(f.names), usecols=list(cols), dtype=object,
                         keep_default_na=False, skipinitialspace=False, index_col=False,
                         encoding=f.encoding, include_path_column=FILE,
                         blocksize=None if f.encoding == "utf-16" else BLOCKSIZE
                         )[list(cols) + [FILE]]
             for paths, f in runs]
    return parts[0] if len(parts) == 1 else dd.concat(parts)


def csv_decimal(path: str, values) -> str | None:
    """The decimal mark of CSV file ``path`` in its columns ``values`` as the one-file reader
    fixes it (``csv_dialect.DecimalMark``): '.' but in a ';' file, where its first number
    written with a mark decides it; None where none does (whole numbers only), or where the
    file is read whole by one partition (UTF-16), which then fixes it as the reader does.
    Only the lines holding a ',' or a '.' are split (``_marked_lines``)."""
    from pathlib import Path
    from .csv_dialect import DecimalMark
    from .csv_read import _open
    f = csv_format(path)
    if f is None or f.delimiter != ";":
        return "."
    if f.encoding == "utf-16":
        return None
    index = [f.names.index(c) for c in values if c in f.names]
    decimal = DecimalMark(";")
    with _open(Path(path)) as fh:
        for _ in range(f.skip + f.header):
            fh.readline()
        lines = (line.decode("utf-8", "replace").lstrip("\ufeff") for line in _marked_lines(fh))
        try:
            for cells in csv.reader(lines, delimiter=";"):
                for cell in (cells[i].strip() for i in index if i < len(cells)):
                    with contextlib.suppress(ValueError):   # not a number: refused when read
                        decimal.number(cell)
                    if decimal.mark is not None:
                        return decimal.mark
        except csv.Error:
            return None                         # the partitions' reading says what is wrong
    return None


def _marked_lines(fh, size: int = 1 << 20):
    """The lines of the binary file ``fh``, from where it stands, that hold a ',' or a '.'
    (a number written with a mark is on one), found by ``bytes.find`` in chunks of ``size``
    bytes: a file of whole numbers is not split into lines at all. Stops at a line longer
    than ``MAX_LINE_BYTES`` (the reading refuses it)."""
    from .csv_dialect import MAX_LINE_BYTES
    rest = b""
    while True:
        chunk = fh.read(size)
        buf = rest + chunk
        end = buf.rfind(b"\n") + 1 if chunk else len(buf)
        if not end and len(buf) > MAX_LINE_BYTES:
            return
        at, rest, next_at = 0, buf[end:], {b",": -1, b".": -1}
        while True:
            for mark, i in next_at.items():     # each mark's next place (end: none left)
                if i < at:
                    i = buf.find(mark, at, end)
                    next_at[mark] = end if i < 0 else i
            first = min(next_at.values())
            if first >= end:
                break
            start = buf.rfind(b"\n", 0, first) + 1
            at = buf.find(b"\n", first, end) + 1 or end
            yield buf[start:at]
        if not chunk:
            return


def csv_problem(files: Files):
    """The first file of ``files`` that is not CSV text of rows of its header's length,
    as a DataError naming it and the row (the one-file reader's words), or None: what a
    cluster's reader met, said where (pandas' ParserError and UnicodeDecodeError do not
    name the file)."""
    from pathlib import Path
    from .csv_dialect import _lines, csv_words
    from .csv_read import _no_trailing, _open
    for path in files.paths:
        f = csv_format(path)
        if f is None:
            continue
        with _open(Path(path)) as fh:
            reader = csv.reader(_lines(fh, path), delimiter=f.delimiter)
            try:
                for cells in reader:
                    if reader.line_num <= f.skip + f.header or not cells or \
                            (len(cells) == 1 and not cells[0].strip()):
                        continue
                    if len(_no_trailing(cells, f.names)) != len(f.names):
                        k = len(cells)
                        return DataError(f"this row has {k} cell{'s' * (k != 1)} but the "
                                         f"header has {len(f.names)} columns",
                                         expected=f"{len(f.names)} cells, one per column",
                                         where=f"{path}, row {reader.line_num}")
            except csv.Error as exc:
                return DataError(f"cannot parse the CSV ({csv_words(exc)})",
                                 expected="well-formed CSV",
                                 where=f"{path}, row {reader.line_num}")
            except DataError as exc:            # not UTF-8 text, NUL bytes, endless line
                return exc
    return None


def bad_value(files: Files, x_cols, y, sigma, drop_nan: bool, file: str | None = None):
    """The first bad value of the files (of ``file`` alone, where the pass named it): a
    cell that is not a number, NaN or inf (unless ``drop_nan``) or a sigma <= 0, as a
    DataError naming its file, row and column (a CSV file by the one-file reader, rows as
    lines in an editor; a Parquet file's rows counted from 1); None where none is found."""
    paths = list(files.paths)
    if file is not None and os.path.exists(file):
        paths = [p for p in paths if os.path.samefile(p, file)] or paths
    for path in paths:
        found = _bad_csv(path, x_cols, y, sigma, drop_nan) if files.kind == "csv" else \
            _bad_parquet(path, list(x_cols) + [y], sigma, drop_nan)
        if found is not None:
            return found
    return None


def _bad_csv(path, x_cols, y, sigma, drop_nan):
    from .csv_read import load_csv
    try:
        load_csv(path, x=list(x_cols), y=y, sigma=sigma, drop_nan=drop_nan)
    except DataError as exc:
        if "no rows left" in exc.problem or "no data rows" in exc.problem:
            return None              # one file of many may hold no row (or none kept)
        return exc
    return None


def _bad_parquet(path, values, sigma, drop_nan):
    """The partitions' own check (``dask_tables._numbers``) over the file's batches."""
    import pyarrow.parquet as pq
    from .dask_tables import BadValue, _numbers
    cols = [c for c in values + ([sigma] if sigma else []) if c in pq.read_schema(path).names]
    start = 0
    for batch in pq.ParquetFile(path).iter_batches(columns=cols, batch_size=1 << 16):
        frame = batch.to_pandas()
        text = [c for c in cols if frame[c].dtype.kind not in "fiub"]
        try:
            _numbers(frame, cols, text, True, drop_nan, sigma if sigma in cols else None)
        except BadValue as exc:
            return DataError(exc.problem, expected=exc.expected, given=exc.given,
                             where=f"{path}, row {start + exc.row + 1}, column {exc.column!r}")
        start += batch.num_rows
    return None
