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
    ("empty.csv", "", "No columns to parse from file"),
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
