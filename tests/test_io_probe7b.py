"""A ';' CSV file read in parts on Dask is held to one decimal mark throughout, as the
one-file reader holds it: the mark is read once for the whole file
(``dask_files.csv_decimal``), not fixed by each partition on its own."""
import numpy as np
import pandas as pd
import pytest

import gradfit
import gradfit.dask_files as dask_files
from gradfit.dask_tables import BadValue, as_numbers, read_columns
from gradfit.errors import InputError

BLOCK = 1 << 18           # dask's sample size: a smaller block warns with skiprows


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(dask_files, "BLOCKSIZE", BLOCK)


def semicolon_file(path, whole: int, commas: int, points: int = 0, seed: int = 0) -> None:
    """``t;v;err`` rows: ``whole`` rows of whole numbers, then ``commas`` rows written with
    decimal commas, then ``points`` rows with decimal points."""
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1e3, whole + commas + points)
    err = rng.uniform(0.5, 2, len(v))
    rows = ["t;v;err"]
    for i, (a, s) in enumerate(zip(v, err)):
        if i < whole:
            rows.append(f"{i};{int(a)};1")
        else:
            text = f"{i};{float(a)!r};{float(s)!r}"
            rows.append(text.replace(".", ",") if i < whole + commas else text)
    path.write_text("\n".join(rows) + "\n")


def on_dask(path, **kw):
    table, _ = read_columns(str(path), ["t", "v", "err"])
    assert table.npartitions >= 4, table.npartitions
    return as_numbers(table, **kw).compute(scheduler="sync")


def test_a_big_semicolon_file_in_parts_reads_as_pandas_reads_it(tmp_path, small_blocks):
    # the first partition holds whole numbers only: the mark is fixed by a later one
    path = tmp_path / "big.csv"
    semicolon_file(path, whole=30_000, commas=60_000)
    assert path.stat().st_size > 5 * BLOCK
    got = on_dask(path, finite=True, positive="err")
    want = pd.read_csv(path, sep=";", decimal=",", float_precision="round_trip")
    assert len(got) == len(want) == 90_000
    for c in ("t", "v", "err"):
        np.testing.assert_array_equal(got[c].to_numpy(), want[c].to_numpy(dtype=float))


def test_a_semicolon_file_whose_parts_disagree_on_the_mark_is_refused(tmp_path, small_blocks):
    # before: decimal commas in the first partitions and points in the last ones, whole
    # numbers between (no partition saw both marks), were read without a word, each part
    # by its own mark; the one-file reader refuses the file
    path = tmp_path / "parts.csv"
    semicolon_file(path, whole=0, commas=8_000, points=8_000)
    text = path.read_text().splitlines()
    rows = text[:8_001] + [f"{i};{i % 97};1" for i in range(8_000, 48_000)] + text[8_001:]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError) as one_file:
        gradfit.load_csv(path, x="t", y="v", sigma="err")
    assert "a decimal point in a file whose numbers have decimal commas" in str(one_file.value)
    with pytest.raises(BadValue) as dask:
        on_dask(path, finite=True, positive="err")
    assert dask.value.file == str(path) and dask.value.problem == one_file.value.problem
    assert str(path) in str(dask.value)


def test_a_file_in_parts_whose_first_mark_is_a_point_refuses_its_commas(tmp_path,
                                                                         small_blocks):
    path = tmp_path / "points_first.csv"
    semicolon_file(path, whole=0, commas=0, points=100)
    rows = path.read_text().splitlines() + [f"{i};{i % 97};1" for i in range(100, 150_100)] \
        + ["150100;0,5;1"]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match="not a number") as one_file:
        gradfit.load_csv(path, x="t", y="v", sigma="err")
    with pytest.raises(BadValue) as dask:
        on_dask(path, finite=True, positive="err")
    assert dask.value.file == str(path) and dask.value.given == "0,5"
    assert dask.value.problem == one_file.value.problem


def test_the_mark_is_the_used_columns_first_and_read_once(tmp_path, monkeypatch):
    # a column not read (u: points) does not fix the mark of the columns read (commas)
    path = tmp_path / "a.csv"
    path.write_text("t;u;v\n0;1.5;2\n1;2.5;0,5\n2;3.5;1,25\n")
    assert dask_files.csv_decimal(str(path), ["t", "v"]) == ","
    assert dask_files.csv_decimal(str(path), ["t", "u", "v"]) == "."
    assert dask_files.csv_decimal(str(path), ["t"]) is None
    comma = tmp_path / "b.csv"
    comma.write_text("t,v\n0,0.5\n")
    assert dask_files.csv_decimal(str(comma), ["t", "v"]) == "."
    calls = []
    real = dask_files.csv_decimal
    monkeypatch.setattr(dask_files, "csv_decimal", lambda p, v: calls.append(p) or real(p, v))
    monkeypatch.setattr(dask_files, "BLOCKSIZE", BLOCK)
    big = tmp_path / "big.csv"
    semicolon_file(big, whole=0, commas=60_000)
    table, _ = read_columns(str(big), ["t", "v"])
    got = as_numbers(table).compute(scheduler="sync")
    assert table.npartitions >= 4 and calls == [str(big)]
    want = pd.read_csv(big, sep=";", decimal=",", float_precision="round_trip")
    np.testing.assert_array_equal(got["v"].to_numpy(), want["v"].to_numpy())


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 64, 1 << 20])
def test_the_lines_holding_a_mark_are_found_across_chunks(size):
    import io
    data = b"1;2\n3;4,5\n\n6;7\n8.5;9\r\n10;11\n12;1,3\n14;15"
    data += b"\n16;.5"                     # a last line without its line end
    want = [line for line in data.splitlines(keepends=True) if b"," in line or b"." in line]
    assert list(dask_files._marked_lines(io.BytesIO(data), size)) == want


def test_a_bad_cell_in_a_decimal_comma_file_is_told_as_what_it_is():
    """Any bad cell of a ';' file with decimal commas had been called "a decimal point in
    a file whose numbers have decimal commas", and the hint said "'.' as the decimal
    point": only a cell with a point is that; 'abc' is not a number, told with ','."""
    from gradfit.csv_dialect import DecimalMark
    from gradfit.csv_read import parse_cell
    from gradfit.errors import DataError
    mark = DecimalMark(";")
    assert mark.number("0,5") == 0.5
    for cell, words in (("abc", "not a number"), ("1,2,3", "not a number"),
                        ("1.5", "a decimal point in a file whose numbers have decimal commas")):
        with pytest.raises(DataError) as e:
            parse_cell(cell, "f.csv, row 3", mark)
        assert words in str(e.value) and "'.' as the decimal point" not in str(e.value)
    with pytest.raises(DataError, match="',' as the decimal mark"):
        parse_cell("abc", "f.csv, row 3", mark)
