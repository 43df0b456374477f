"""fit_table and ``gradfit fit`` on Dask against the same fit in one process: every file of
a folder or ``**`` glob read (``.pq`` and hive subfolders too, nothing left out unsaid),
columns of other types across Parquet files, CSV files as the one-file reader reads them
(``;``, tab, ``#`` comments, no header), group labels of mixed types, the rows' order and
label dtypes of fit_many's table, and schedulers without workers or without a scheme."""

import numpy as np
import pandas as pd
import pytest

import gradfit
from gradfit.cli import main
from gradfit.dask_fit import fit_table
from gradfit.errors import InputError

MODEL = "A*exp(-k*t)"
P0 = {"A": 2.0, "k": 1.0}
KW = dict(x="t", y="v", group="id", p0=P0)


def decays(ids, seed=0, n=7):
    """A long table: a noisy decay of its own rate per id, n points each."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 4, n)
    frames = [pd.DataFrame({"id": [g] * n, "t": t,
                            "v": rng.uniform(1, 3) * np.exp(-rng.uniform(0.3, 2) * t)
                            + 0.01 * rng.standard_normal(n)}) for g in ids]
    return pd.concat(frames, ignore_index=True)


def in_memory(frames, group="id", **kw):
    """fit_many in one process on the files' rows in the order fit_table reads them."""
    table = pd.concat(frames, ignore_index=True)
    return gradfit.fit_many(MODEL, data=table, x="t", y="v", group=group,
                            **{"p0": P0, **kw}).to_pandas()


def assert_same(got, want, rtol=1e-9):
    """The same table: columns, dtypes, row order, labels; numbers to rounding (a group's
    last digits depend on the batch it ran in: README, 'the same answers')."""
    assert list(got.columns) == list(want.columns)
    assert got.dtypes.to_dict() == want.dtypes.to_dict()
    for c in got.columns:
        if got[c].dtype.kind == "f":
            np.testing.assert_allclose(got[c], want[c], rtol=rtol, atol=1e-12,
                                       equal_nan=True, err_msg=c)
        elif c not in ("message", "reason"):
            assert got[c].tolist() == want[c].tolist(), c


# ---- 1. every file of a folder, subfolders, .pq, ** -------------------------------------

def test_a_folder_reads_pq_and_subfolders_and_a_glob_star_star_recurses(tmp_path, dask_client):
    """Before: a folder's .pq files and its subfolders were skipped without a word (3 of
    5 groups, exit 0), and '**' matched one level only."""
    a, b, c = decays([1, 2, 3]), decays([4, 5], seed=1), decays([6], seed=2)
    a.to_parquet(tmp_path / "a.parquet")
    b.to_parquet(tmp_path / "b.pq")
    (tmp_path / "sub").mkdir()
    c.to_parquet(tmp_path / "sub" / "c.parquet")
    (tmp_path / "_SUCCESS").write_text("")         # a dataset's marker: not data
    want = in_memory([a, b, c])
    got = fit_table(MODEL, str(tmp_path), scheduler=dask_client, **KW)
    assert got["id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert_same(got, want)
    got = fit_table(MODEL, str(tmp_path / "**" / "*.parquet"), scheduler=dask_client, **KW)
    assert_same(got, in_memory([a, c]))


def test_a_hive_partitioned_folder_gives_its_key_as_a_column(tmp_path, dask_client):
    for sensor, seed in (("s1", 0), ("s2", 1)):
        (tmp_path / f"sensor={sensor}").mkdir()
        decays([1, 2], seed=seed).to_parquet(tmp_path / f"sensor={sensor}" / "part.parquet")
    got = fit_table(MODEL, str(tmp_path), x="t", y="v", group="sensor", p0=P0,
                    scheduler=dask_client)
    want = pd.read_parquet(tmp_path)                  # pyarrow's own reading of the dataset
    ref = gradfit.fit_many(MODEL, data=want.assign(sensor=want["sensor"].astype(str)),
                           x="t", y="v", group="sensor", p0=P0).to_pandas()
    assert got["sensor"].tolist() == ["s1", "s2"] and got["n_points"].tolist() == [14, 14]
    np.testing.assert_allclose(got["k"], ref["k"], rtol=1e-9)


def test_files_of_another_kind_in_a_folder_are_named_not_skipped(tmp_path):
    decays([1]).to_parquet(tmp_path / "a.parquet")
    (tmp_path / "notes.md").write_text("# notes\n")
    with pytest.raises(InputError, match=r"the folder holds files that are neither Parquet "
                                         r"nor CSV: notes\.md: expected .* or a glob"):
        fit_table(MODEL, str(tmp_path), **KW)
    (tmp_path / "notes.md").unlink()
    (tmp_path / "sub").mkdir()
    decays([2]).to_csv(tmp_path / "sub" / "b.csv", index=False)
    with pytest.raises(InputError, match=r"both Parquet and CSV files \(a\.parquet; "
                                         r"sub/b\.csv\), which are not read together"):
        fit_table(MODEL, str(tmp_path), **KW)


# ---- 2. a column of other types across Parquet files -------------------------------------

def test_a_column_of_other_types_across_files_is_named_with_its_files(tmp_path, capsys):
    """Before: 'internal error: ValueError: invalid literal for int()' (exit 70)."""
    decays([1, 2]).to_parquet(tmp_path / "a.parquet")
    decays(["x", "y"]).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(InputError, match=r"column 'id' has different types in the files: "
                                         r"int64 in .*a\.parquet but \w*string in .*b\.parquet"):
        fit_table(MODEL, str(tmp_path), **KW)
    code = main(["fit", str(tmp_path), "--group", "id", "--x", "t", "--y", "v", "--model",
                 MODEL, "--p0", "A=2,k=1", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "column 'id' has different types" in err


def test_numbers_of_other_kinds_across_files_are_read_as_one(tmp_path, dask_client):
    """Whole seconds in one file and fractions in another (int64 and float64 columns),
    ids with a missing one (float64) beside whole ones: read as pandas' concat reads them."""
    a, b = decays([1, 2]), decays([3, 4], seed=1)
    a["t"] = np.round(a["t"] * 10).astype("int64")
    b["t"] = b["t"] * 10
    b["id"] = b["id"].astype("float64")
    b.loc[3, "id"] = np.nan                       # a row without a label: fails alone
    a.to_parquet(tmp_path / "a.parquet")
    b.to_parquet(tmp_path / "b.parquet")
    got = fit_table(MODEL, str(tmp_path), scheduler=dask_client, **KW)
    assert_same(got, in_memory([a, b]))
    assert got["message"].iloc[3].startswith("1 row(s) have no group label")


# ---- 6. CSV as the one-file reader reads it ----------------------------------------------

CSV_FORMS = {
    "semicolon": lambda f: f.to_csv(sep=";", index=False),
    "tab": lambda f: f.to_csv(sep="\t", index=False),
    "comments and BOM": lambda f: "\ufeff# made by a logger\n\n# second note\n"
                                  + f.to_csv(index=False),
    "no header, savetxt names": lambda f: "# id,t,v\n" + f.to_csv(index=False, header=False),
}


@pytest.mark.parametrize("form", list(CSV_FORMS))
def test_a_csv_file_gives_the_same_table_on_dask_as_in_one_process(tmp_path, capsys, form,
                                                                     dask_client):
    """Before: 'no column named 't': expected one of id;t;v' (and '# comment line') on
    Dask, where the one-process reader read the file."""
    table = decays([3, 1, 2, 10], seed=3)
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "d.csv"
    path.write_text(CSV_FORMS[form](table), encoding="utf-8")
    args = ["fit", str(path), "--group", "id", "--x", "t", "--y", "v", "--model", MODEL,
            "--p0", "A=2,k=1", "-q"]
    assert main(args + ["--out", str(tmp_path / "one.csv")]) == 0, capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "dask.csv"), "--scheduler",
                        dask_client.scheduler.address]) == 0, capsys.readouterr().err
    one, on_dask = pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "dask.csv")
    assert on_dask["id"].tolist() == one["id"].tolist() == [3, 1, 2, 10]   # file order
    assert one["n_points"].tolist() == [7] * 4            # no row lost (nor a header read)
    assert_same(on_dask, one)
    got = fit_table(MODEL, str(tmp_path / "in"), scheduler=dask_client, **KW)   # a folder
    assert got["id"].tolist() == ["3", "1", "2", "10"]        # CSV labels are text
    np.testing.assert_allclose(got["k"], one["k"], rtol=1e-9)


def test_csv_files_of_several_forms_in_one_folder_are_read_in_their_order(tmp_path,
                                                                         dask_client):
    a, b = decays(["a", "b"]), decays(["b", "c"], seed=1)   # 'b' split across the files
    (tmp_path / "1.csv").write_text(a.to_csv(sep=";", index=False))
    (tmp_path / "2.csv").write_text("# c\n" + b.to_csv(sep="\t", index=False))
    got = fit_table(MODEL, str(tmp_path), scheduler=dask_client, **KW)
    assert_same(got, in_memory([a, b]))


# ---- 4. labels of mixed types; 9. the rows' order and label dtypes -----------------------

def mixed():
    t = np.linspace(0, 4, 8)
    return pd.concat([pd.DataFrame({"id": [g] * 8, "t": t, "v": 2 * np.exp(-k * t)})
                      for g, k in ((1, 1.0), ("1", 0.5))], ignore_index=True).astype(
                          {"id": object})


def test_labels_of_mixed_types_are_refused_with_the_conversion(dask_client):
    """Before: 1 and '1' were fitted as one group of 16 points, called converged (in one
    process: two groups, k=1 and k=0.5)."""
    import dask
    import dask.dataframe as dd
    frame = mixed()
    assert len(gradfit.fit_many(MODEL, data=frame, x="t", y="v", group="id", p0=P0)) == 2
    text = (r"group labels of several types in column 'id' \(number, text\): expected labels "
            r"of one type on Dask.*frame\['id'\] = frame\['id'\]\.astype\(str\)")
    with pytest.raises(InputError, match=text):
        fit_table(MODEL, frame, scheduler=dask_client, **KW)
    with pytest.raises(InputError, match=text):          # Dask had made them text already
        gradfit.fit_many(MODEL, data=dd.from_pandas(frame, npartitions=1), x="t", y="v",
                         group="id", p0=P0, scheduler=dask_client)
    with dask.config.set({"dataframe.convert-string": False}):   # objects kept: seen by the
        kept = dd.from_pandas(frame, npartitions=2).map_partitions(lambda f: f)  # workers
    with pytest.raises(InputError, match=text):
        fit_table(MODEL, kept, scheduler=dask_client, **KW)
    one = fit_table(MODEL, frame.astype({"id": str}), scheduler=dask_client, **KW)
    assert one["id"].tolist() == ["1"] and one["n_points"].tolist() == [16]   # as advised


LABELS = {
    "ints in first-appearance order": [5, 3, 9, 7],
    "ints held as objects": pd.Series([5, 3, 9, 7], dtype=object),
    "text": ["w0", "w1", "w10", "w2"],
    "categorical ints": pd.Categorical([12, 3, 7, 5]),
    "categorical text": pd.Categorical(["b", "a", "d", "c"]),
    "bools": [True, False],
    "ints with a missing label": pd.array([4, None, 2, 8], dtype="Int64"),
}


@pytest.mark.parametrize("kind", list(LABELS))
def test_the_dask_table_is_fit_manys_table(kind, dask_client):
    """Before: Dask sorted the rows (w0, w1, w10, ...; False before True) and typed labels
    object or string where fit_many's table has int64 or str."""
    labels = pd.Series(LABELS[kind])
    frame = decays(range(len(labels)), seed=5)
    frame["id"] = pd.Series(labels).take(frame["id"].to_numpy()).reset_index(drop=True)
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)   # interleaved
    want = gradfit.fit_many(MODEL, data=frame, x="t", y="v", group="id", p0=P0).to_pandas()
    got = fit_table(MODEL, frame, scheduler=dask_client, npartitions=2, **KW)
    assert_same(got, want)


def test_csv_labels_come_in_file_order_on_dask_as_in_one_process(tmp_path, capsys,
                                                                  dask_client):
    """Before: --scheduler wrote ids 0, 1, 10, 100, ... (text, sorted) where one process
    wrote 0, 1, 2, ..., and its stderr line had another form."""
    path = tmp_path / "d.csv"
    table = decays(range(12), seed=6)
    table.loc[table["id"] == 11, "v"] = np.nan                # one group fails: exit 1
    table.to_csv(path, index=False)
    args = ["fit", str(path), "--group", "id", "--x", "t", "--y", "v", "--model", MODEL,
            "--p0", "A=2,k=1"]
    assert main(args + ["--out", str(tmp_path / "one.csv")]) == 1
    one = capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "dask.csv"), "--scheduler",
                        dask_client.scheduler.address]) == 1
    on_dask = capsys.readouterr()
    assert pd.read_csv(tmp_path / "dask.csv")["id"].tolist() == list(range(12))
    assert on_dask.err == one.err == ("gradfit: 1 of 12 fits did not converge "
                                      + one.err.split("converge ", 1)[1])
    assert on_dask.out.replace("dask.csv", "one.csv") == one.out


# ---- 3. schedulers: no workers, no scheme -------------------------------------------------

@pytest.fixture(scope="module")
def empty_scheduler():
    """A scheduler that no worker has joined (as one whose workers are still starting)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0",
                                  scheduler_kwargs={"dashboard": False}) as cluster:
        yield cluster.scheduler_address


def test_a_scheduler_without_workers_is_waited_for_then_refused(empty_scheduler, capsys,
                                                               monkeypatch, tmp_path):
    """Before: the fit hung for ever and said nothing."""
    import time
    import gradfit.cluster as cluster
    monkeypatch.setattr(cluster, "WORKER_WAIT_SECONDS", 2.0)
    monkeypatch.setattr(cluster, "WORKER_NOTE_SECONDS", 0.5)
    decays([1, 2]).to_parquet(tmp_path / "a.parquet")
    start = time.monotonic()
    code = main(["fit", str(tmp_path / "a.parquet"), "--group", "id", "--x", "t", "--y", "v",
                 "--model", MODEL, "--scheduler", empty_scheduler])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and time.monotonic() - start < 30
    assert err[0] == (f"gradfit: waiting for a worker to join the Dask scheduler at "
                      f"{empty_scheduler} (none yet; up to 2 s)")
    assert err[1] == (f"gradfit: error: the Dask scheduler at {empty_scheduler} has no "
                      f"workers: expected a cluster with at least one worker (dask worker "
                      f"{empty_scheduler}), or --workers N / workers=N for a local one, got "
                      "'none joined within 2 s'") and len(err) == 2


def test_an_address_without_a_scheme_is_taken_as_tcp(dask_client):
    frame = decays([1, 2])
    address = dask_client.scheduler.address
    assert address.startswith("tcp://")
    got = fit_table(MODEL, frame, scheduler=address[len("tcp://"):], **KW)
    assert_same(got, in_memory([frame]))
    with pytest.raises(InputError, match="bad scheduler address: expected an address such "
                                         r"as tcp://HOST:8786 \(or HOST:8786\)"):
        fit_table(MODEL, frame, scheduler="localhost", **KW)
