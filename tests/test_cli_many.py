"""`gradfit fit DATA --group COL`: every series of a long CSV, one row each."""
import csv
import json

import numpy as np

import gradfit
from gradfit.cli import main

MODEL = "a*exp(-k*t) + c"


def write_table(path, broken=None):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4, 15)
    rows = []
    for g, (a, k) in enumerate([(2.0, 0.5), (1.0, 1.5), (3.0, 0.9)]):
        for i, ti in enumerate(t):
            v = a * np.exp(-k * ti) + 0.3 + 0.01 * rng.standard_normal()
            cell = "" if (broken == g and i == 4) else repr(float(v))   # a missing value
            rows.append([f"w{g}", repr(float(ti)), cell])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["well", "t", "od"])
        w.writerows(rows)
    return t, rows


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_group_fits_every_series_and_writes_one_row_each(tmp_path, capsys):
    t, rows = write_table(tmp_path / "plate.csv")
    out = tmp_path / "fits.csv"
    code, text, err = run(capsys, "fit", str(tmp_path / "plate.csv"), "--group", "well",
                          "--x", "t", "--y", "od", "--model", MODEL, "--out", str(out))
    assert code == 0, err
    table = list(csv.DictReader(open(out)))
    assert [r["well"] for r in table] == ["w0", "w1", "w2"]   # the column keeps its name
    assert "3 of 3 converged" in text
    for g, r in enumerate(table):
        y = np.array([float(row[2]) for row in rows if row[0] == f"w{g}"])
        one = gradfit.fit(MODEL, t, y, inputs=("t",))
        for k in ("a", "k", "c"):
            assert float(r[k]) == np.float64(one.params[k]) or \
                abs(float(r[k]) - one.params[k]) <= 1e-8 * abs(one.params[k])
        assert r["converged"] == "True" and float(r["k_stderr"]) > 0


def test_a_broken_series_fails_alone_and_exit_1_names_the_count(tmp_path, capsys):
    write_table(tmp_path / "plate.csv", broken=1)
    code, text, err = run(capsys, "fit", str(tmp_path / "plate.csv"), "--group", "well",
                          "--x", "t", "--model", MODEL, "--json", "-")
    assert code == 1
    assert "1 of 3 fits did not converge" in err and len(err.strip().splitlines()) == 1
    records = json.loads(text)
    assert [r["converged"] for r in records] == [True, False, True]
    assert records[1]["a"] is None and "NaN" in records[1]["message"]


def test_bad_column_is_one_line_and_exit_2(tmp_path, capsys):
    write_table(tmp_path / "plate.csv")
    code, _, err = run(capsys, "fit", str(tmp_path / "plate.csv"), "--group", "plate",
                       "--model", MODEL)
    assert code == 2 and "no column named 'plate'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "fit", str(tmp_path / "plate.csv"), "--group", "well",
                       "--model", MODEL, "--optimizer", "lbfgs")
    assert code == 2 and "no batched engine" in err


def test_a_pandas_frame_saved_with_its_index_fits_as_without(tmp_path, capsys):
    """pandas' to_csv writes the index as a first column without a name: x and y default
    to the named columns after the group, as for the same table without the index."""
    pd = __import__("pytest").importorskip("pandas")
    write_table(tmp_path / "plate.csv")
    pd.read_csv(tmp_path / "plate.csv").to_csv(tmp_path / "indexed.csv")
    fits = {}
    for name in ("plate", "indexed"):
        out = tmp_path / f"{name}-fits.csv"
        code, _, err = run(capsys, "fit", str(tmp_path / f"{name}.csv"), "--group", "well",
                           "--model", MODEL, "--out", str(out))
        assert code == 0, err
        fits[name] = pd.read_csv(out)
    pd.testing.assert_frame_equal(fits["indexed"], fits["plate"])
    assert list(fits["plate"]["well"]) == ["w0", "w1", "w2"]
