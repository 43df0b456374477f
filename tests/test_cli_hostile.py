"""Hostile command lines: every usage or input error is one line on stderr and exit 2."""
import pytest

from gradfit.cli import main

MODEL = "a*x + b"


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:           # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_exit_2(capsys, *argv) -> str:
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.fixture
def table(tmp_path):
    def write(rows, header="x,y,g"):
        path = tmp_path / "t.csv"
        path.write_text(header + "\n" + "\n".join(rows) + "\n")
        return str(path)
    return write


GOOD = ["1,2,a", "2,3,a", "3,5,a", "1,2,b", "2,3.1,b", "3,4,b"]


@pytest.mark.parametrize("flag, text", [("--p0", "a=1,a=2"), ("--fix", "b=1,b=2"),
                                        ("--bounds", "a=0:1,a=2:3")])
def test_a_name_given_twice_is_refused(capsys, table, flag, text):
    err = one_line_exit_2(capsys, "fit", table(GOOD[:3]), "--x", "x", "--y", "y",
                          "--model", MODEL, flag, text)
    assert "given twice" in err and flag in err


@pytest.mark.parametrize("bad_row, column", [("2,x,b", "y"), ("two,3,b", "x")])
def test_group_with_a_cell_that_is_not_a_number_names_row_and_column(capsys, table, bad_row,
                                                                     column):
    rows = GOOD[:4] + [bad_row] + GOOD[5:]
    err = one_line_exit_2(capsys, "fit", table(rows), "--model", MODEL, "--group", "g")
    assert "row 6" in err and f"column {column!r}" in err and "not a number" in err


def test_group_with_a_short_row_names_the_row(capsys, table):
    rows = ["1,a,2", "2,a,3", "3,a,5", "1,b,2", "2,b", "3,b,4"]
    err = one_line_exit_2(capsys, "fit", table(rows, "x,g,y"), "--model", MODEL,
                          "--group", "g", "--y", "y")
    assert "row 6" in err and "cells" in err


@pytest.mark.parametrize("missing", ["--group", "--x", "--y"])
def test_group_with_a_missing_column_names_it(capsys, table, missing):
    args = {"--group": "g", "--x": "x", "--y": "y", missing: "nope"}
    err = one_line_exit_2(capsys, "fit", table(GOOD), "--model", MODEL,
                          *[v for kv in args.items() for v in kv])
    assert "no column named 'nope'" in err


@pytest.mark.parametrize("argv", [["fit", "lesson", "--model", MODEL, "--steps", "abc"],
                                  ["fit", "lesson"],
                                  ["fit", "lesson", "--model", MODEL, "--lorss", "mae"],
                                  ["fitt"], [],
                                  ["fit", "lesson", "--model", MODEL, "--loss", "m" * 5000]])
def test_argparse_usage_errors_are_one_short_line(capsys, argv):
    err = one_line_exit_2(capsys, *argv)
    assert err.startswith("gradfit") and "error:" in err and "--help" in err
    assert len(err) < 1200


@pytest.mark.parametrize("extra", [["--device", "tpu"], ["--lr", "0", "--optimizer", "gd"],
                                   ["--p0", "z" * 5000 + "=1"], ["--model", "a*x+(b"]])
def test_bad_settings_are_one_line(capsys, extra):
    err = one_line_exit_2(capsys, "fit", "lesson", "--model", MODEL, *extra)
    assert len(err) < 1200


def test_lr_zero_names_the_value(capsys):
    err = one_line_exit_2(capsys, "fit", "lesson", "--model", MODEL, "--optimizer", "gd",
                          "--lr", "0")
    assert "got 0" in err


@pytest.mark.parametrize("content, text", [
    (b"x,y,g\n1,2,\xe9\n", "not UTF-8 text (bad byte at row 2)"),
    (b"\x00\xff\xfe\x89PNG\r\n", "not UTF-8 text"),
    (b"x,y,g\n1,2,a\x00\n", "not a text file (it contains NUL bytes)"),
    (b"x,y,x\n1,2,a\n", "duplicate column name 'x' (columns 1 and 3)"),
    (b"x,,g\n1,2,a\n", "column 2 has no name"),
])
def test_group_reads_the_file_as_one_fit_does(capsys, tmp_path, content, text):
    # before: a Latin-1 or binary file was 'internal error: UnicodeDecodeError' (exit 70),
    # and a repeated column name read the first of them silently
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    err = one_line_exit_2(capsys, "fit", str(path), "--model", MODEL, "--group", "g")
    assert text in err


def test_group_rows_without_a_label_fail_as_one_group_and_exit_1(capsys, table):
    # before: the rows with an empty group cell were fitted together as a series named ''
    code, out, err = run(capsys, "fit", table(GOOD + ["1,2,", "2,3,", "3,4,"]), "--model",
                         MODEL, "--group", "g")
    rows = out.strip().splitlines()
    assert code == 1 and "1 of 3 fits did not converge" in err and len(rows) == 4
    assert rows[3].startswith(",") and "3 row(s) have no group label" in rows[3]
    assert ",True," in rows[1] and ",True," in rows[2]


@pytest.mark.parametrize("flag, target, text", [
    ("--out", "{tmp}", "bad --out: it is a directory"),
    ("--out", "{tmp}/no/dir/fits.csv", "bad --out: the folder"),
    ("--json", "{tmp}/no/dir/fits.json", "bad --json: the folder"),
])
def test_group_refuses_an_unwritable_output_before_fitting(capsys, table, tmp_path, flag,
                                                          target, text):
    # before: --json to a missing folder was refused only after every fit had run
    err = one_line_exit_2(capsys, "fit", table(GOOD), "--model", MODEL, "--group", "g",
                          flag, target.format(tmp=tmp_path))
    assert text in err and "expected a path to a file that can be written" in err


@pytest.mark.parametrize("extra", [[], ["--workers", "1"]])
def test_out_names_its_format_the_same_in_one_process_and_on_dask(capsys, table, tmp_path,
                                                                  extra):
    # before: fits.txt was written as CSV in one process and refused on Dask, and --out
    # without --group on Dask (one series out of core) was ignored without a word
    err = one_line_exit_2(capsys, "fit", table(GOOD), "--model", MODEL, "--group", "g",
                          "--out", str(tmp_path / "fits.txt"), *extra)
    assert "bad --out" in err and "expected a .csv or .parquet path" in err
    assert not (tmp_path / "fits.txt").exists()
    err = one_line_exit_2(capsys, "fit", table(GOOD), "--model", MODEL,
                          "--out", str(tmp_path / "fits.csv"), *extra)
    assert "--out writes the table of a --group fit" in err

def test_group_with_drop_nan_drops_rows_not_series(capsys, table):
    # before: --drop-nan was ignored with --group: the series with a gap failed (exit 1)
    rows = GOOD[:4] + ["2,,b", "2.5,nan,b"] + GOOD[4:]
    code, out, err = run(capsys, "fit", table(rows), "--model", MODEL, "--group", "g",
                         "--drop-nan")
    assert code == 0 and "dropped 2 row(s)" in err
    _, clean, _ = run(capsys, "fit", table(GOOD), "--model", MODEL, "--group", "g")
    assert out == clean


def test_group_out_parquet_is_parquet(capsys, table, tmp_path):
    # before: the table was written as CSV text into fits.parquet
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    out = tmp_path / "fits.parquet"
    code, _, _ = run(capsys, "fit", table(GOOD), "--model", MODEL, "--group", "g", "-q",
                     "--out", str(out))
    fits = pd.read_parquet(out)
    assert code == 0 and fits["g"].tolist() == ["a", "b"] and fits["converged"].all()


@pytest.mark.parametrize("header, rows, argv, text", [
    ("g", ["a", "b"], [], "only 1 column(s) ('g'): expected a group column, an x column and "
                          "a y column"),
    ("g,y", ["a,1", "b,2"], [], "only 2 column(s)"),
    ("x,y,g", GOOD, ["--sigma", "y"], "no column left for y"),
    ("x,y,g", GOOD, ["--x", "y", "--y", "y"], "column 'y' is used as both x and y"),
    ("x,y,g", GOOD, ["--x", "g"], "column 'g' is used as both group and x: expected the x "
                                  "column to differ from the group column"),
    ("x,y,g", GOOD, ["--x", "x,x"], "column 'x' is listed twice in x"),
])
def test_group_chooses_columns_as_one_fit_does(capsys, table, header, rows, argv, text):
    # before: a table of two columns or --sigma naming the last one was 'internal error:
    # IndexError' (exit 70); --x y --y y fitted y against itself; --x g read labels as x
    err = one_line_exit_2(capsys, "fit", table(rows, header), "--model", MODEL,
                          "--group", "g", *argv)
    assert text in err


def test_group_cell_with_a_decimal_comma_gets_one_fits_hint(capsys, tmp_path):
    # before: --group had its own copy of the cell parser, without the hint; a tab file
    # is not read with decimal commas (1,234 may be a thousand), a ';' file is
    path = tmp_path / "t.tsv"
    path.write_text("x\ty\tg\n1\t2,5\ta\n2\t3\ta\n")
    err = one_line_exit_2(capsys, "fit", str(path), "--model", MODEL, "--group", "g")
    assert "row 2, column 'y': not a number: expected a number with '.' as the decimal" in err


def test_group_reads_a_semicolon_file_with_decimal_commas_as_one_fit_does(capsys, tmp_path):
    rows = [(g, t, round(2.0 * (1 + i) * 2.718281828 ** (-0.5 * t) + 0.01 * (t % 3), 6))
            for i, g in enumerate("ab") for t in range(8)]
    euro, plain = tmp_path / "euro.csv", tmp_path / "plain.csv"
    euro.write_text("g;t;v\n" + "".join(f"{g};{t};{str(v).replace('.', ',')}\n"
                                        for g, t, v in rows))
    plain.write_text("g,t,v\n" + "".join(f"{g},{t},{v}\n" for g, t, v in rows))
    out = []
    for path in (euro, plain):
        assert main(["fit", str(path), "--model", "A*exp(-k*t)", "--group", "g",
                     "--p0", "A=1,k=1"]) == 0
        out.append(capsys.readouterr().out)
    assert out[0] == out[1] and out[0].count("\n") == 3


def test_group_with_a_time_limit_is_refused_not_ignored(capsys, table):
    # --time-limit stops one fit; with --group it was silently ignored
    err = one_line_exit_2(capsys, "fit", table(GOOD), "--model", MODEL, "--group", "g",
                          "--time-limit", "5")
    assert "--time-limit" in err and "--steps" in err


def test_a_file_named_like_a_built_in_dataset_gets_a_note(capsys, tmp_path, monkeypatch):
    # before: 'gradfit fit lesson' beside a file named lesson fitted the built-in data
    # without a word; ./lesson reads the file
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lesson").write_text("x,y\n1,3\n2,5\n3,7\n4,9\n")
    code, out, err = run(capsys, "fit", "lesson", "--model", MODEL, "-q")
    assert code == 0 and "'lesson' is the built-in dataset; write ./lesson" in err
    code, out, err = run(capsys, "fit", "./lesson", "--model", MODEL, "-q", "--json", "-")
    import json
    got = json.loads(out)
    assert code == 0 and got["n_points"] == 4 and err == ""
    assert got["params"]["a"] == __import__("pytest").approx(2.0)


def test_an_endless_line_is_refused_without_reading_it_whole(capsys, tmp_path, monkeypatch):
    # before: /dev/zero was read into memory until the process was killed
    import gradfit.csv_dialect as data
    monkeypatch.setattr(data, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "zeros.csv"
    path.write_bytes(b"\x00" * 5000)
    assert "not a text file (it contains NUL bytes)" in one_line_exit_2(
        capsys, "fit", str(path), "--model", MODEL)
    path.write_bytes(b"x,y\n" + b"1" * 5000 + b",2\n")
    assert "row 2 is longer than" in one_line_exit_2(capsys, "fit", str(path), "--model", MODEL)
    path.write_bytes(b"x,y\n1,2\n2,4\n3,6.5\n" + b"4,8." + b"0" * 900 + b"\n")
    code, _, err = run(capsys, "fit", str(path), "--model", MODEL, "-q")
    assert code == 0, err                                   # a long line within the limit


def test_chosen_inputs_the_model_ignores_are_said(capsys, tmp_path):
    # before: --x t,u with 'a*x+c' fitted x as a parameter and failed 'lost rank' (exit 1);
    # with 'a*t+c' the column u was never used, without a word
    path = tmp_path / "tu.csv"
    path.write_text("t,u,y\n1,1,2.1\n2,4,3.9\n3,9,6.2\n4,16,7.9\n")
    err = one_line_exit_2(capsys, "fit", str(path), "--x", "t,u", "--model", "a*x+c")
    assert "the input columns are t, u, but the model 'a*x+c' names x" in err
    code, out, err = run(capsys, "fit", str(path), "--x", "t,u", "--model", "a*t+c", "-q")
    assert code == 0 and "the model does not use the input column(s) u" in err
    code, out, err = run(capsys, "fit", str(path), "--x", "t,u", "--model", "a*t+b*u+c", "-q")
    assert code == 0 and err == ""


@pytest.mark.parametrize("content, text", [
    (b"x,y\r1,2\r2,4\r3,6\r", "lines must end in LF or CRLF, not CR alone"),
    (b"x,y\n1,2\n2," + b"4" * 140_000 + b"\n", "a cell longer than 131,072 characters"),
])
def test_the_csv_readers_complaints_are_in_the_users_terms(capsys, tmp_path, content, text):
    # before: "do you need to open the file in universal-newline mode?", "field larger
    # than field limit (131072)": the csv module's own options
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    err = one_line_exit_2(capsys, "fit", str(path), "--model", MODEL)
    assert text in err and "universal-newline" not in err


def test_a_sweep_of_too_many_rates_is_refused_at_once(capsys):
    # before: 500 rates ran for minutes without a word (0.35 s a rate)
    rates = ",".join(f"{0.001 * (i + 1):g}" for i in range(101))
    err = one_line_exit_2(capsys, "lr-sweep", "lesson", "--model", MODEL, "--lrs", rates)
    assert "too many learning rates: expected at most 100 rates, got 101" in err


def test_delta_for_a_loss_other_than_huber_is_noted(capsys):
    # before: taken without a word (it changes nothing outside huber)
    code, _, err = run(capsys, "fit", "lesson", "--model", MODEL, "--delta", "2", "-q")
    assert code == 0 and "--delta not used: it is huber's, and the loss is mse" in err
    code, _, err = run(capsys, "fit", "lesson", "--model", MODEL, "--delta", "2", "--loss",
                       "huber", "-q")
    assert code == 0 and err == ""


def test_frames_without_animate_and_a_batch_of_all_the_data_are_noted(capsys):
    # before: both taken without a word, though neither changes anything
    code, _, err = run(capsys, "fit", "lesson", "--model", MODEL, "--frames", "5", "-q")
    assert code == 0 and "--frames not used" in err and "--animate" in err
    code, _, err = run(capsys, "fit", "lesson", "--model", MODEL, "--optimizer", "sgd",
                       "--batch-size", "1000", "--steps", "3000", "--lr", "0.01", "-q")
    assert "--batch-size 1000 is not a mini-batch: the data have 20 points" in err
    code, _, err = run(capsys, "fit", "lesson", "--model", MODEL, "--optimizer", "sgd",
                       "--batch-size", "5", "--steps", "10", "--lr", "0.01", "-q")
    assert "--batch-size" not in err


@pytest.mark.parametrize("origin", ["not a url", "http://localhost:3000/app", "ftp://host",
                                    "http://host:99999", "http://user@host:3000", ""])
def test_an_allow_origin_that_could_never_match_is_refused(capsys, origin):
    # before: the server started and the origin matched nothing, without a word
    err = one_line_exit_2(capsys, "serve", "--port", "1", "--allow-origin", origin)
    assert "bad --allow-origin: expected an origin such as http://localhost:3000" in err


@pytest.mark.parametrize("seconds", ["nan", "-1", "0", "4000"])
def test_a_bad_max_seconds_is_named_as_the_option(capsys, seconds):
    err = one_line_exit_2(capsys, "serve", "--port", "1", "--max-seconds", seconds)
    assert "bad --max-seconds: expected seconds in (0, 3600]" in err
