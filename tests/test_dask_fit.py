"""fit_table on a real LocalCluster against the single-process engine (fit_many on the
whole table), from pandas, Parquet globs and CSV folders; a worker killed mid-fit; the CLI."""
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

import gradfit
from gradfit.cli import main
from gradfit.dask_fit import fit_table, split_labels
from gradfit.errors import InputError

MODEL = "A*exp(-k*t) + C"
P0 = {"A": 2.0, "k": 1.0, "C": 0.0}


def long_table(B, seed=0, n=25):
    """B ragged decays in long form, rows shuffled (a group's points in many partitions)."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(B):
        m = n - b % 4
        t = np.sort(rng.uniform(0, 4, m))
        v = rng.uniform(1, 3) * np.exp(-rng.uniform(0.4, 2) * t) + rng.uniform(0, .5)
        rows.append(pd.DataFrame({"id": f"g{b:04d}", "t": t,
                                  "v": v + 0.02 * rng.standard_normal(m)}))
    df = pd.concat(rows, ignore_index=True)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def split(df, k):
    edges = np.linspace(0, len(df), k + 1).astype(int)
    return [df.iloc[a:b] for a, b in zip(edges[:-1], edges[1:])]


def reference(df, **kw):
    """The single-process engine on the whole table: its groups in order of first
    appearance, as fit_table gives them."""
    r = gradfit.fit_many(MODEL, data=df, x="t", y="v", group="id", inputs=("t",), **kw)
    return r.to_pandas()


def by_id(frame):
    return frame.sort_values("id").reset_index(drop=True)


def assert_same_table(got, want):
    assert list(got["id"]) == list(want["id"])
    # the verdict; its name (gtol or xtol) can differ at the margin with the make-up of
    # the engine's batch, and fit_table's batches are partitions
    assert (got["reason"] == "failed").tolist() == (want["reason"] == "failed").tolist()
    assert (got["converged"].to_numpy() == want["converged"].to_numpy()).all()
    for c in ("A", "k", "C", "A_stderr", "k_stderr", "C_stderr", "loss", "r2"):
        np.testing.assert_allclose(got[c], want[c], rtol=1e-10, atol=1e-14, equal_nan=True,
                                   err_msg=c)
    assert (got["n_points"].to_numpy() == want["n_points"].to_numpy()).all()


def test_pandas_table_with_a_failing_group_equals_the_engine(dask_client):
    df = long_table(60)
    df.loc[df.index[df["id"] == "g0007"][0], "v"] = np.nan       # one bad group
    got = fit_table(MODEL, df, x="t", y="v", group="id", p0=P0, npartitions=3,
                    scheduler=dask_client)
    want = reference(df, p0=P0)
    assert_same_table(got, want)
    bad = got.set_index("id").loc["g0007"]
    assert bad["reason"] == "failed" and "NaN" in bad["message"]
    assert got["converged"].sum() == 59


def test_parquet_glob_and_csv_folder_bring_split_groups_together(dask_client, tmp_path,
                                                                 capsys):
    df = long_table(40, seed=1)
    for i, part in enumerate(split(df, 3)):       # every group spread over 3 files
        part.to_parquet(tmp_path / f"part{i}.parquet")
        (tmp_path / "csv").mkdir(exist_ok=True)
        part.to_csv(tmp_path / "csv" / f"part{i}.csv", index=False)
    want = reference(df, p0=P0)
    got = fit_table(MODEL, str(tmp_path / "*.parquet"), x="t", y="v", group="id", p0=P0,
                    scheduler=dask_client, progress=True)
    assert_same_table(got, want)
    assert "100% Completed" in capsys.readouterr().out          # the tasks' progress bar
    got = fit_table(MODEL, str(tmp_path / "csv"), x="t", y="v", group="id", p0=P0,
                    scheduler=dask_client)
    assert_same_table(got, want)


def test_a_table_written_a_series_at_a_time_moves_only_the_groups_split_by_files(
        dask_client, tmp_path):
    df = long_table(30, seed=4).sort_values(["id", "t"], kind="stable")
    files = split(df, 3)                      # file edges cut through two groups
    edges = {files[0]["id"].iloc[-1], files[1]["id"].iloc[-1]}
    assert edges == {files[1]["id"].iloc[0], files[2]["id"].iloc[0]}
    for i, part in enumerate(files):
        part.to_parquet(tmp_path / f"part{i}.parquet")
    assert set(split_labels([f["id"].unique() for f in files])) == edges
    got = fit_table(MODEL, str(tmp_path / "*.parquet"), x="t", y="v", group="id", p0=P0,
                    scheduler=dask_client)
    assert_same_table(got, reference(df, p0=P0))


def test_workers_start_with_malloc_keeping_its_memory():
    # distributed's MALLOC_TRIM_THRESHOLD_=65536 alone pins glibc's mmap threshold, and a
    # worker's fits ran 3-4x slower than in the process that started it
    from gradfit.cluster import PRE_SPAWN_ENV, client_for
    with client_for(workers=1) as client:
        env = list(client.run(lambda: {k: os.environ.get(k) for k in PRE_SPAWN_ENV}).values())
    assert env == [PRE_SPAWN_ENV]


def test_lazy_result_is_a_dask_dataframe(dask_client):
    import dask.dataframe as dd
    df = long_table(12, seed=2)
    lazy = fit_table(MODEL, df, x="t", y="v", group="id", p0=P0, compute=False)
    assert isinstance(lazy, dd.DataFrame)
    got = by_id(dask_client.compute(lazy).result())
    assert_same_table(got, by_id(reference(df, p0=P0)))


def test_bad_input_gets_one_clear_line(dask_client, tmp_path):
    df = long_table(3)
    with pytest.raises(InputError, match="no column named 'w'"):
        fit_table(MODEL, df, x="t", y="w", group="id", scheduler=dask_client)
    with pytest.raises(InputError, match="no data file matches"):
        fit_table(MODEL, str(tmp_path / "*.parquet"), x="t", y="v", group="id")
    with pytest.raises(InputError, match="bad scheduler address"):
        fit_table(MODEL, df, x="t", y="v", group="id", scheduler="localhost")


def test_cli_group_on_an_existing_scheduler(dask_client, tmp_path, capsys):
    df = long_table(20, seed=3)
    for i, part in enumerate(split(df, 2)):
        part.to_parquet(tmp_path / f"p{i}.parquet")
    out = tmp_path / "fits.csv"
    code = main(["fit", str(tmp_path / "*.parquet"), "--group", "id", "--x", "t", "--y", "v",
                 "--model", MODEL, "--p0", "A=2,k=1,C=0", "--out", str(out),
                 "--scheduler", dask_client.scheduler.address])
    assert code == 0, capsys.readouterr().err
    got = pd.read_csv(out)
    assert_same_table(got, reference(df, p0=P0))
    printed = capsys.readouterr()        # the lines of the same command in one process
    assert printed.out.startswith("20 of 20 converged (") and printed.err == ""
    assert printed.out.endswith(f"; 20 rows written to {out}\n")
    code = main(["fit", str(tmp_path / "*.parquet"), "--group", "nope", "--x", "t", "--y", "v",
                 "--model", MODEL, "--scheduler", dask_client.scheduler.address])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no column named 'nope'" in err


def test_a_worker_killed_mid_fit_loses_nothing(dask_client):
    """Kill the process of a worker while it runs a fit: Dask reruns its tasks elsewhere
    and every group's row is identical to the single-process engine's."""
    df = long_table(400, seed=4)
    want = by_id(reference(df, p0=P0))
    lazy = fit_table(MODEL, df, x="t", y="v", group="id", p0=P0, npartitions=8,
                     compute=False)
    future = dask_client.compute(lazy)
    pids = dask_client.run(os.getpid)
    victim = None
    deadline = time.time() + 60
    while victim is None and time.time() < deadline:
        busy = [w for w, tasks in dask_client.processing().items()
                if any("fit_partition" in str(t) for t in tasks)]
        victim = busy[0] if busy else None
        time.sleep(0.05)
    assert victim is not None, "no worker ever ran a fit"
    os.kill(pids[victim], signal.SIGKILL)
    got = by_id(future.result())
    assert_same_table(got, want)
    clean = by_id(dask_client.compute(lazy).result())
    pd.testing.assert_frame_equal(got, clean)            # identical to the last bit


def test_fit_many_takes_a_dask_dataframe(dask_client):
    import dask.dataframe as dd
    df = long_table(16, seed=3)
    got = gradfit.fit_many(MODEL, data=dd.from_pandas(df, npartitions=3), x="t", y="v",
                           group="id", p0=P0, scheduler=dask_client)
    assert_same_table(got, reference(df, p0=P0))
