"""CSV files as they come from numpy, Excel and loggers, on every face that reads them
(``load_csv``, the command line, the page's upload, Dask's files), each against pandas'
``read_csv`` told the file's dialect: numpy.savetxt's ``# t,signal,err`` header, Excel's
``sep=;`` line, UTF-16 with its BOM, decimal commas with no header row, trailing
delimiters; and the dialects that cannot be read right refused, saying what was found."""
import io
import json

import numpy as np
import pandas as pd
import pytest

from gradfit.cli import main
from gradfit.csv_read import load_csv
from gradfit.errors import DataError

pytest.importorskip("fastapi")

X = [0.5, 1.5, 2.5, 3.25, 4.0]
Y = [1.25, 2.5, 4.75, 5.5, 7.125]
FRAME = pd.DataFrame({"x": X, "y": Y})


def excel_hint(f):
    return b"sep=;\r\n" + f.to_csv(sep=";", decimal=",", index=False,
                                   lineterminator="\r\n").encode()


def utf16(f, bom_order="utf-16"):
    return f.to_csv(sep="\t", index=False, lineterminator="\r\n").encode(bom_order)


def utf16_be(f):
    return b"\xfe\xff" + f.to_csv(sep="\t", index=False).encode("utf-16-be")


def comment_header_decimal_commas(f):
    return b"# x;y\n" + f.to_csv(sep=";", decimal=",", index=False, header=False).encode()


def trailing_delimiters(f):
    return f.to_csv(index=False).replace("\n", ",\n").replace("x,y,", "x,y", 1).encode()


def utf8_bom_crlf(f):
    return f.to_csv(index=False, lineterminator="\r\n").encode("utf-8-sig")


#: a dialect -> (the file's bytes from a frame, pandas' options that read it right)
READ_RIGHT = {
    "excel sep= line, decimal commas": (excel_hint, dict(sep=";", decimal=",", skiprows=1)),
    "UTF-16 LE with BOM, tabs, CRLF": (utf16, dict(sep="\t", encoding="utf-16")),
    "UTF-16 BE with BOM, tabs": (utf16_be, dict(sep="\t", encoding="utf-16")),
    "no header, '# x;y' comment, decimal commas": (comment_header_decimal_commas,
                                                   dict(sep=";", decimal=",", skiprows=1,
                                                        names=["x", "y"])),
    "a delimiter ending each data row": (trailing_delimiters, dict(index_col=False)),
    "UTF-8 BOM and CRLF": (utf8_bom_crlf, dict(encoding="utf-8-sig")),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dialects")
    out = {}
    for i, (name, (write, options)) in enumerate(READ_RIGHT.items()):
        path = folder / f"d{i}.csv"
        path.write_bytes(write(FRAME))
        oracle = pd.read_csv(path, **options)
        assert oracle.columns.tolist() == ["x", "y"]
        out[name] = (path, oracle)
    return out


def upload(client, raw, name="d.csv", **form):
    return client.post("/api/csv", files={"file": (name, raw, "text/csv")}, data=form)


@pytest.mark.parametrize("dialect", list(READ_RIGHT))
def test_each_dialect_reads_as_pandas_reads_it_told_the_dialect(files, client, dialect):
    """Before: the sep= line was a column 'sep=', UTF-16 'not UTF-8' (the page: 'a carriage
    return inside a line'), '1,5;2,25' under a comment split at its commas (2 of 5 points,
    wrong ones, no error), a trailing delimiter 'this row has 3 cells'."""
    path, oracle = files[dialect]
    d = load_csv(path)
    np.testing.assert_array_equal(d.x, oracle["x"].to_numpy(float))
    np.testing.assert_array_equal(d.y, oracle["y"].to_numpy(float))
    r = upload(client, path.read_bytes())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["x"] == oracle["x"].tolist() and body["y"] == oracle["y"].tolist()


@pytest.mark.parametrize("dialect", list(READ_RIGHT)[:3])
def test_the_command_line_fits_each_dialect_as_its_pandas_reading(files, capsys, dialect):
    path, oracle = files[dialect]
    assert main(["fit", str(path), "--model", "a*x+b", "--json", "-"]) == 0
    got = json.loads(capsys.readouterr().out)["params"]
    a, b = np.polyfit(oracle["x"], oracle["y"], 1)
    assert got["a"] == pytest.approx(a, rel=1e-10) and got["b"] == pytest.approx(b, rel=1e-10)


#: dialects gradfit cannot read right -> (bytes, words the refusal says)
REFUSED = {
    "thousands separators": (b'x,y\n"1,234.5",2\n"2,000.5",3\n',
                             ["thousands separator (',')", "without one"]),
    "European thousands": (b"x;y\n1.234,5;2\n2.000,5;3\n",
                           ["thousands separator ('.')", "without one"]),
    "UTF-16 without a BOM": ("x\ty\r\n1.5\t2\r\n2.5\t3\r\n".encode("utf-16-le"),
                             ["UTF-16 text without a byte-order mark", "UTF-8"]),
    "savetxt's default spaces": (b"# x y\n1.0 2.0\n2.0 3.0\n",
                                 ["separated by spaces", "delimiter=','"]),
}


@pytest.mark.parametrize("dialect", list(REFUSED))
def test_a_dialect_not_read_is_refused_saying_what_was_found(client, tmp_path, dialect):
    """Before: '1,234.5' was refused as 'expected a number with '.' as the decimal
    point' (it has one), UTF-16 without a BOM 'contains NUL bytes' (the page: 'a carriage
    return'), savetxt's spaces 'no column' or 'only one column ('1.0 2.0')'."""
    raw, words = REFUSED[dialect]
    path = tmp_path / "bad.csv"
    path.write_bytes(raw)
    with pytest.raises(DataError) as err:
        load_csv(path)
    r = upload(client, raw)
    assert r.status_code == 422
    for text in (str(err.value), r.json()["detail"]):
        assert all(w in text for w in words), text


# ---- numpy.savetxt's header: the names, and sigma by its name, on every face -------------

def savetxt(tmp_path, first_missing=False):
    rng = np.random.default_rng(3)
    t = np.linspace(0, 5, 20)
    err = 0.05 + 0.1 * rng.random(20)
    signal = 2 * t + 1 + err * rng.standard_normal(20)
    table = np.c_[t, signal, err]
    if first_missing:
        table[0, 1] = np.nan
    path = tmp_path / "sv.csv"
    np.savetxt(path, table, header="t,signal,err", delimiter=",")
    if first_missing:
        path.write_text(path.read_text().replace("nan", "", 1))
    return path, t, signal, err


def weighted_line(t, y, err):
    return np.polyfit(t, y, 1, w=1 / err)


def test_a_savetxt_header_names_sigma_on_the_command_line(tmp_path, capsys):
    """Before: the command line took the first row of numbers for the header, found no
    'err' column, and fitted err as y (R^2 nan, a = 0, exit 0)."""
    path, t, signal, err = savetxt(tmp_path)
    assert main(["fit", str(path), "--model", "a*t+b", "--json", "-"]) == 0
    got = json.loads(capsys.readouterr().out)["params"]
    a, b = weighted_line(t, signal, err)
    assert got["a"] == pytest.approx(a, rel=1e-9) and got["b"] == pytest.approx(b, rel=1e-9)


def test_a_savetxt_header_names_sigma_on_the_page(tmp_path, client):
    path, t, signal, err = savetxt(tmp_path)
    body = upload(client, path.read_bytes()).json()
    assert (body["y_name"], body["sigma_name"]) == ("signal", "err")
    np.testing.assert_allclose(body["sigma"], err, rtol=1e-12)


def test_a_savetxt_header_over_a_first_row_with_a_missing_value(tmp_path):
    """Before: a first row with an empty cell was the header ('no column named t')."""
    path, t, signal, err = savetxt(tmp_path, first_missing=True)
    d = load_csv(path, x="t", y="signal", sigma="err", drop_nan=True)
    oracle = pd.read_csv(path, comment="#", names=["t", "signal", "err"]).dropna()
    assert d.dropped == 1 and d.columns == ("t", "signal", "err")
    np.testing.assert_array_equal(d.y, oracle["signal"].to_numpy())


def test_a_savetxt_header_names_sigma_for_a_group_fit(tmp_path):
    from argparse import Namespace

    from gradfit.cli.inputs import guess_group_sigma
    path = tmp_path / "g.csv"
    np.savetxt(path, [[1, 0, 1, 0.1], [1, 1, 2, 0.1]], header="id,t,v,dy", delimiter=",")
    args = Namespace(y=None, sigma=None, data=str(path), group="id", x="t", json="-")
    guess_group_sigma(args)
    assert args.sigma == "dy"                   # before: None (no names read)


def test_standard_input_with_a_savetxt_header(tmp_path, monkeypatch, capsys):
    path, t, signal, err = savetxt(tmp_path)

    class Stdin:
        buffer = io.BytesIO(path.read_bytes())
    monkeypatch.setattr("sys.stdin", Stdin)
    assert main(["fit", "-", "--model", "a*t+b", "--json", "-"]) == 0
    got = json.loads(capsys.readouterr().out)["params"]
    assert got["a"] == pytest.approx(weighted_line(t, signal, err)[0], rel=1e-9)


# ---- Dask: parts of other dialects in one glob ------------------------------------------

def decays(ids):
    t = np.linspace(0, 4, 9)
    return pd.concat([pd.DataFrame({"id": g, "t": t, "v": (1 + g) * np.exp(-0.25 * g * t)})
                      for g in ids], ignore_index=True)


def savetxt_semicolons(f):
    return b"# id;t;v\n" + f.to_csv(sep=";", decimal=",", index=False, header=False).encode()


PARTS = [(savetxt_semicolons, dict(sep=";", decimal=",", skiprows=1, names=["id", "t", "v"])),
         (lambda f: f.to_csv(index=False).encode(), {}),
         (excel_hint, dict(sep=";", decimal=",", skiprows=1)),
         (utf16, dict(sep="\t", encoding="utf-16")),
         (trailing_delimiters, dict(index_col=False))]


def test_a_glob_of_parts_in_several_dialects_is_read_part_by_part(tmp_path):
    """Before: a part of decimal commas under a '# id;t;v' comment was split at its
    commas and refused ('no column named t': its columns '1;0', '0;2', '0')."""
    import gradfit
    from gradfit.dask_fit import fit_table
    frames = []
    for i, (write, options) in enumerate(PARTS):
        (tmp_path / f"p{i}.csv").write_bytes(write(decays([2 * i + 1, 2 * i + 2])))
        frames.append(pd.read_csv(tmp_path / f"p{i}.csv", **options))
    kw = dict(x="t", y="v", group="id", p0={"A": 1.0, "k": 1.0})
    import dask
    # computed in this process: a task shuffle (a distributed client left as the default by
    # another test would make it a P2P shuffle, which needs that cluster)
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):
        lazy = fit_table("A*exp(-k*t)", str(tmp_path / "*.csv"), compute=False, **kw)
        got = lazy.compute(scheduler="synchronous")
    want = gradfit.fit_many("A*exp(-k*t)", data=pd.concat(frames), **kw).to_pandas()
    got = got.assign(id=got["id"].astype(int)).sort_values("id")
    assert got["id"].tolist() == want["id"].tolist() == list(range(1, 11))
    np.testing.assert_allclose(got["k"], want["k"], rtol=1e-9)
    np.testing.assert_allclose(got["k"], 0.25 * np.arange(1, 11), rtol=1e-6)


def test_a_comment_line_among_the_data_rows_is_named(tmp_path):
    """Before: 'this row has 1 cell but the header has 2 columns'."""
    path = tmp_path / "c.csv"
    path.write_text("x,y\n1,2\n# the pump stopped\n2,3\n")
    with pytest.raises(DataError, match=r"row 3: a comment line \(#\) among the data rows"):
        load_csv(path)
