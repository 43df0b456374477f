"""fit_table and ``gradfit fit ... --group`` on Dask under hostile input: unreadable files
named in the reader's own words, no rows refused, rows without a label one failed group
however the partitions split them, an unwritable --out refused before the fit."""
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from gradfit.cli import main
from gradfit.dask_fit import fit_table
from gradfit.errors import InputError

MODEL = "A*exp(-k*t)"
KW = dict(x="t", y="v", group="g", p0={"A": 1.0, "k": 1.0})


def decays(labels):
    t = np.tile(np.linspace(0, 3, 10), 4)
    k = np.repeat([0.5, 1.0, 2.0, 3.0], 10)
    return pd.DataFrame({"g": labels, "t": t, "v": 2 * np.exp(-k * t)})


def test_rows_without_a_label_split_over_partitions_are_one_failed_group(dask_client):
    # before: the None rows of each partition were fitted there, two rows for one group
    labels = np.repeat(np.array(["a", None, "c", "d"], dtype=object), 10)
    labels[15] = np.nan
    out = fit_table(MODEL, dd.from_pandas(decays(labels), npartitions=3),
                    scheduler=dask_client, **KW).sort_values("k", na_position="last")
    assert len(out) == 4 and out["k"].iloc[:3].tolist() == pytest.approx([0.5, 2.0, 3.0])
    assert out["message"].iloc[3] == ("10 row(s) have no group label (empty, NaN or None): "
                                      "expected a label on every row")


@pytest.mark.parametrize("name, content, text", [
    ("empty.csv", "", "empty.csv: empty file"),
    ("bad.parquet", "not parquet", "Parquet magic bytes not found"),
])
def test_an_unreadable_file_is_named_in_the_readers_own_words(tmp_path, name, content, text):
    # before: "An error occurred while calling the read_csv method registered to the pandas
    # backend." (dask's wrapping, not what was wrong)
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=text):
        fit_table(MODEL, str(path), **KW)


def test_a_table_with_a_header_and_no_rows_is_refused(tmp_path, dask_client):
    # before: an empty result, "0 of 0 groups converged" and exit 0
    path = tmp_path / "t.csv"
    path.write_text("g,t,v\n")
    with pytest.raises(InputError, match="no data rows"):
        fit_table(MODEL, str(path), scheduler=dask_client, **KW)


@pytest.mark.parametrize("out, text", [("{tmp}/no/such/dir/fits.parquet", "the folder"),
                                       ("{tmp}", "it is a directory")])
def test_an_unwritable_out_is_refused_before_the_fit(tmp_path, capsys, out, text):
    # before: the fit ran, then 'internal error: OSError: Cannot save file into a
    # non-existent directory' (exit 70), the fits lost
    decays(np.repeat(list("abcd"), 10)).to_parquet(tmp_path / "d.parquet")
    code = main(["fit", str(tmp_path / "d.parquet"), "--group", "g", "--x", "t", "--y", "v",
                 "--model", MODEL, "-q", "--out", out.format(tmp=tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and f"bad --out: {text}" in err and len(err.strip().splitlines()) == 1
    assert "expected a path to a file that can be written" in err


def test_drop_nan_leaves_out_rows_not_groups(dask_client):
    # before: fit_table had no drop_nan, and gradfit fit --drop-nan on Dask ignored it
    table = decays(np.repeat(list("abcd"), 10))
    table.loc[3, "v"], table.loc[4, "t"] = np.nan, np.inf
    out = fit_table(MODEL, dd.from_pandas(table, npartitions=2), scheduler=dask_client,
                    drop_nan=True, **KW)
    assert out["converged"].all() and out["n_points"].tolist() == [8, 10, 10, 10]
    assert out["k"].tolist() == pytest.approx([0.5, 1.0, 2.0, 3.0], rel=1e-9)


def test_categorical_labels_survive(tmp_path, dask_client):
    # before: Dask's placeholder category turned every label into NaN (exit 0)
    table = decays(np.repeat(["w1", "w2", "w3", "w4"], 10))
    table["g"] = table["g"].astype("category")
    table.to_parquet(tmp_path / "cat.parquet", index=False)
    for data in (str(tmp_path / "cat.parquet"), dd.from_pandas(table, npartitions=2)):
        out = fit_table(MODEL, data, scheduler=dask_client, **KW)
        assert out["g"].tolist() == ["w1", "w2", "w3", "w4"]
        assert out["k"].tolist() == pytest.approx([0.5, 1.0, 2.0, 3.0], rel=1e-9)


def test_csv_labels_are_text_and_types_are_not_guessed(tmp_path, dask_client):
    """Labels '1' and '01' are two groups (Dask's guess read both as the number 1, and
    merged them); times that are whole numbers in the first rows and fractions later (a
    guess of int64 failed on the later rows: exit 70)."""
    table = decays(np.repeat(["1", "01", "NA", "b"], 10))
    table["t"] = np.where(np.arange(40) < 10, np.round(table["t"]), table["t"])
    table["v"] = 2 * np.exp(-np.repeat([0.5, 1.0, 2.0, 3.0], 10) * table["t"])
    table.iloc[:20].to_csv(tmp_path / "a.csv", index=False)
    table.iloc[20:].to_csv(tmp_path / "b.csv", index=False)
    out = fit_table(MODEL, str(tmp_path / "*.csv"), scheduler=dask_client, **KW)
    assert sorted(out["g"]) == ["01", "1", "NA", "b"]
    k = dict(zip(out["g"], out["k"]))
    assert [k["1"], k["01"], k["NA"], k["b"]] == pytest.approx([0.5, 1.0, 2.0, 3.0], rel=1e-9)


def test_a_cell_that_is_not_a_number_is_named_as_the_csv_reader_names_it(tmp_path, dask_client):
    (tmp_path / "d.csv").write_text("g,t,v\na,0,1\na,1,n/a\na,2,0.5\n")
    with pytest.raises(InputError, match="column 'v': not a number.*got 'n/a'"):
        fit_table(MODEL, str(tmp_path / "d.csv"), scheduler=dask_client, **KW)


def test_files_and_folders_that_would_lose_groups_are_refused(tmp_path):
    decays(np.repeat(list("abcd"), 10)).to_parquet(tmp_path / "a.parquet", index=False)
    decays(np.repeat(list("efgh"), 10)).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(InputError, match="both Parquet and CSV"):
        fit_table(MODEL, str(tmp_path), **KW)     # the CSV groups were left out, exit 0
    decays(np.repeat(list("ijkl"), 10)).drop(columns="v").assign(w=1.0).to_parquet(
        tmp_path / "c.parquet", index=False)
    with pytest.raises(InputError, match="c.parquet: no column named 'v' in this file"):
        fit_table(MODEL, str(tmp_path / "*.parquet"), **KW)    # a KeyError, exit 70


def test_names_and_per_group_arrays_are_checked_before_any_cluster(tmp_path):
    decays(np.repeat(list("abcd"), 10)).to_parquet(tmp_path / "a.parquet", index=False)
    with pytest.raises(InputError, match="unknown parameter 'kk'"):
        fit_table(MODEL, str(tmp_path / "a.parquet"), x="t", y="v", group="g", p0={"kk": 1})
    with pytest.raises(InputError, match="per-group p0 values for 'k'"):
        fit_table(MODEL, str(tmp_path / "a.parquet"), x="t", y="v", group="g",
                  p0={"k": np.ones(4)})


def test_an_address_that_is_no_dask_scheduler_is_refused_in_bounded_time(monkeypatch):
    """A port that accepts and never answers held the client for ever."""
    import socket
    import time
    import gradfit.cluster as cluster
    monkeypatch.setattr(cluster, "HANDSHAKE_SECONDS", 3.0)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    try:
        t = time.monotonic()
        with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
            with cluster.client_for(f"tcp://127.0.0.1:{server.getsockname()[1]}"):
                pass
        assert time.monotonic() - t < 15
    finally:
        server.close()


def test_json_on_dask_keeps_every_digit(tmp_path, capsys, dask_client):
    import json
    table = decays(np.repeat(list("abcd"), 10))
    table["v"] += 0.003 * np.sin(17 * np.arange(40))          # losses of order 1e-6
    table.to_parquet(tmp_path / "d.parquet", index=False)
    want = fit_table(MODEL, str(tmp_path / "d.parquet"), scheduler=dask_client, **KW)
    target = tmp_path / "fits.json"
    code = main(["fit", str(tmp_path / "d.parquet"), "--group", "g", "--x", "t", "--y", "v",
                 "--model", MODEL, "--p0", "A=1,k=1", "-q", "--json", str(target),
                 "--workers", "1"])
    assert code == 0 and capsys.readouterr().out == ""
    rows = json.loads(target.read_text())
    # pandas' to_json kept 10 decimals: a loss of 3.3e-5 had 6 digits left
    assert [r["loss"] for r in rows] == want["loss"].tolist()
    assert [r["k"] for r in rows] == want["k"].tolist()


def test_a_group_column_named_like_a_parameter_becomes_group_as_in_one_process():
    """A group column ``k`` beside the parameter ``k``: the rows name it ``group`` (as
    fit_many's table does), and one partition's rows equal fit_many's."""
    from gradfit.dask_fit import fit_partition, result_meta
    import gradfit
    t = np.linspace(0, 4, 20)
    frame = pd.DataFrame({"k": np.repeat(["a", "b"], 20), "t": np.tile(t, 2),
                          "v": np.concatenate([2 * np.exp(-0.5 * t), np.exp(-1.5 * t)])})
    meta = result_meta(MODEL, ["t"], frame["k"].dtype, "k")
    assert list(meta.columns[:3]) == ["group", "A", "k"]
    kw = {"p0": {"A": 1, "k": 1}}
    rows = fit_partition(frame, MODEL, ["t"], "v", "k", None, meta, kw, shuffled=False)
    one = gradfit.fit_many(MODEL, data=frame, x="t", y="v", group="k", **kw).to_pandas()
    assert list(rows.columns) == list(one.columns)
    np.testing.assert_array_equal(rows["k"], one["k"])
    np.testing.assert_allclose(rows["k"], [0.5, 1.5], rtol=1e-10)


def _folder(tmp_path, bad: bytes):
    """A folder of two CSV files of a line: a.csv good, b.csv with ``bad`` as its rows."""
    d = tmp_path / "series"
    d.mkdir()
    (d / "a.csv").write_text("x,y\n1,2.1\n2,3.9\n3,6.2\n4,8.1\n")
    (d / "b.csv").write_bytes(b"x,y\n" + bad)
    return str(d)


@pytest.mark.parametrize("bad, text", [
    # the one-file reader's words for that file, its row (as lines in an editor) included
    (b"5,9.8\n6,abc\n", "b.csv, row 3, column 'y': not a number: expected a number"),
    (b"5,9.8\n6,\n", "b.csv, row 3, column 'y': missing value"),
    (b"5,9.8\n6,nan\n", "b.csv, row 3, column 'y': not a finite number"),
    (b"\xff\xfe\x00\x81\x92\x00\xc3\x28\n" * 3, r"b.csv: not UTF-8 text \(bad byte at row 2\)"),
])
def test_one_series_in_a_folder_names_the_file_of_a_bad_cell(tmp_path, capsys, bad, text,
                                                             dask_client):
    # before: 'internal error: ValueError: could not convert string to float' (exit 70), or
    # 'UnicodeDecodeError: ' with no words, or 'the data hold NaN or inf' with no place
    from gradfit.out_of_core import fit_out_of_core
    with pytest.raises(InputError, match=text):
        fit_out_of_core("a*x+b", _folder(tmp_path, bad), x="x", y="y", scheduler=dask_client)


def test_drop_nan_leaves_out_a_folders_rows_as_one_files(tmp_path, capsys):
    # before: --drop-nan was ignored on a folder (exit 2 'the data hold NaN or inf')
    folder = _folder(tmp_path, b"5,9.8\n6,\n7,nan\n8,16.1\n")
    code = main(["fit", folder, "--model", "a*x+b", "--drop-nan", "--workers", "1",
                 "--json", "-"])
    out = capsys.readouterr().out
    import json
    got = json.loads(out)
    x = np.array([1, 2, 3, 4, 5, 8.0])
    ref = np.polyfit(x, [2.1, 3.9, 6.2, 8.1, 9.8, 16.1], 1)
    assert code == 0 and got["n_points"] == 6
    assert [got["params"]["a"], got["params"]["b"]] == pytest.approx(list(ref), rel=1e-10)
