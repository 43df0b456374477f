"""Findings of the fifth probe of the Dask / big-data paths, each against the one-process
path or a hand-computed oracle: the out-of-core command line with fixed or bound parameters,
fit's refusals out of core, CSV labels with spaces, Parquet ids one type cannot hold, labels
True beside 1, --drop-nan's emptied groups, decimal commas on Dask, and the small ones."""
import json
import math

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import gradfit
from gradfit.cli import main
from gradfit.dask_fit import fit_table
from gradfit.errors import InputError
from gradfit.many_data import ALL_DROPPED
from gradfit.out_of_core import fit_out_of_core

MODEL = "A*exp(-k*t)"
KW = dict(x="t", y="v", group="id", p0={"A": 1.0, "k": 1.0})


def decays(labels, ks, n=10):
    t = np.linspace(0, 3, n)
    return pd.DataFrame([(g, tt, 2 * np.exp(-k * tt)) for g, k in zip(labels, ks)
                         for tt in t], columns=["id", "t", "v"])


def one_series(n=400):
    t = np.linspace(0, 5, n)
    v = 2 * np.exp(-0.7 * t) + 0.3 + 0.01 * np.sin(37 * t)
    return t, v


@pytest.fixture
def big(tmp_path):
    """One series in two Parquet files."""
    t, v = one_series()
    folder = tmp_path / "big"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(t)), 2)):
        pd.DataFrame({"t": t[part], "v": v[part]}).to_parquet(folder / f"{i}.parquet",
                                                              index=False)
    return str(folder / "*.parquet")


# --- 1. the out-of-core command line prints every parameter ------------------------------

@pytest.mark.parametrize("extra, notes", [
    (["--bounds", "k=0:5", "--fix", "C=0"], {"C": " (fixed)"}),     # the README's example
    (["--bounds", "k=0:0.5"], {"k": " (at upper bound)"}),          # k ends on its bound
])
def test_out_of_core_cli_prints_fixed_and_bound_parameters(big, capsys, dask_client, extra,
                                                           notes):
    # before: 'A = ... +/- ...', then 'internal error: KeyError: 'C'' (exit 70), the summary
    # line lost
    code = main(["fit", big, "--x", "t", "--y", "v", "--model", "A*exp(-k*t) + C",
                 "--p0", "A=2,k=1", "--scheduler", dask_client.scheduler.address] + extra)
    captured = capsys.readouterr()
    assert code == 0 and "internal error" not in captured.err
    lines = {ln.split(" = ")[0]: ln.split(" = ")[1] for ln in captured.out.splitlines()[:3]}
    assert list(lines) == ["A", "k", "C"]
    # the oracle: fit in memory, with the same bounds and fixed values
    t, v = one_series()
    bounds = {"k": (0, 5)} if "k=0:5" in extra else {"k": (0, 0.5)}
    fixed = {"C": 0.0} if "C=0" in extra else None
    ref = gradfit.fit("A*exp(-k*t) + C", t, v, inputs=("t",), p0={"A": 2, "k": 1},
                      bounds=bounds, fixed=fixed)
    from gradfit.report import bound_note
    for name, text in lines.items():
        value = float(text.split()[0])
        assert value == pytest.approx(ref.params[name], rel=1e-8, abs=1e-12)
        if name in notes:
            assert text.endswith(notes[name]) and notes[name].strip() == bound_note(ref, name)
        else:
            err = float(text.split("+/- ")[1])
            assert err == pytest.approx(ref.stderr[name], rel=1e-5)     # 6 digits shown
    assert captured.out.splitlines()[3].startswith("mse = ")


# --- 2. fit's refusals, out of core ---------------------------------------------------------

@pytest.mark.parametrize("kw", [
    dict(bounds={"C": (0, 1)}, fixed={"C": 5}),          # before: converged with C = 5
    dict(optimizer="lm", xtoll=1e-3),                     # before: ignored without a word
    dict(optimizer="adam", ftol=-1),
    dict(optimizer="adam", lr=-1.0),                      # before: torch's raw ValueError
    dict(optimizer="gd", lr=math.nan),
    dict(optimizer="adam", momentum=0.5),
])
def test_out_of_core_refuses_what_fit_refuses_in_its_words(kw):
    t, v = one_series(50)
    with pytest.raises(InputError) as ours:
        fit_out_of_core("A*exp(-k*t)+C", pd.DataFrame({"t": t, "v": v}), x="t", y="v",
                        p0={"A": 1, "k": 1, "C": 0}, **kw)
    with pytest.raises(InputError) as theirs:
        gradfit.fit("A*exp(-k*t)+C", t, v, inputs=("t",), p0={"A": 1, "k": 1, "C": 0}, **kw)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("args, text", [
    (["--optimizer", "adam", "--lr", "-1"], "bad learning rate"),   # before: exit 70
    (["--optimizer", "adam", "--momentum", "0.5"], "optimizer 'adam' does not take momentum"),
    (["--starts", "3"], "--starts is not taken by a fit out of core"),
    (["--plot", "fit.png"], "--plot and --animate draw one fit held in this process"),
])
def test_out_of_core_cli_refuses_in_one_line(big, capsys, tmp_path, args, text):
    code = main(["fit", big, "--x", "t", "--y", "v", "--model", "A*exp(-k*t)+C"] +
                [a.replace("fit.png", str(tmp_path / "fit.png")) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and text in err and len(err.strip().splitlines()) == 1


# --- 3. CSV labels that differ by spaces -------------------------------------------------

def test_labels_with_spaces_are_three_series_in_one_process_and_on_dask(tmp_path, dask_client):
    # before: one process merged 'a', 'a ' and ' a' into one converged fit (k=0.9), Dask
    # into two
    folder = tmp_path / "ws"
    folder.mkdir()
    lines = ["id,t,v"] + [f"{lab},{t!r},{2 * math.exp(-k * t)!r}"
                          for lab, k in (("a", 0.5), ("a ", 1.0), (" a", 2.0))
                          for t in range(8)]
    (folder / "a.csv").write_text("\n".join(lines) + "\n")
    assert main(["fit", str(folder / "a.csv"), "--group", "id", "--x", "t", "--y", "v",
                 "--model", MODEL, "--p0", "A=1,k=1", "-q", "--out",
                 str(tmp_path / "one.csv")]) == 0
    one = pd.read_csv(tmp_path / "one.csv", keep_default_na=False)
    on_dask = fit_table(MODEL, str(folder / "*.csv"), scheduler=dask_client, **KW)
    assert one["id"].tolist() == on_dask["id"].tolist() == ["a", "a ", " a"]
    np.testing.assert_allclose(on_dask["k"], [0.5, 1.0, 2.0], rtol=1e-9)
    np.testing.assert_allclose(one["k"], on_dask["k"], rtol=1e-12)


# --- 4. Parquet ids of different types ---------------------------------------------------

@pytest.mark.parametrize("first, second, text", [
    # 2^53 and 2^53 + 1 beside a float id: one float label for two series
    ((decays([2**53, 2**53 + 1], [0.5, 1.5]), None), (decays([2.5], [1.0]), None),
     "int64 labels of .* are rounded: two ids may become one"),
    # a uint64 id above 2^63 beside int64 ids: wrapped negative
    ((decays([2**63 + 5], [0.5]), "uint64"), (decays([-1], [1.0]), None),
     "uint64 labels of .* are out of its range"),
])
def test_parquet_ids_one_type_cannot_hold_are_refused(tmp_path, first, second, text):
    for i, (frame, dtype) in enumerate((first, second)):
        (frame.astype({"id": dtype}) if dtype else frame).to_parquet(
            tmp_path / f"{i}.parquet", index=False)
    with pytest.raises(InputError, match="column 'id' has different types in the files: "
                       ".*" + text):
        fit_table(MODEL, str(tmp_path / "*.parquet"), **KW)


def test_parquet_ids_one_type_holds_keep_their_values(tmp_path, dask_client):
    decays([2**53, 7], [0.5, 1.5]).to_parquet(tmp_path / "0.parquet", index=False)
    decays([2.5], [1.0]).to_parquet(tmp_path / "1.parquet", index=False)
    out = fit_table(MODEL, str(tmp_path / "*.parquet"), scheduler=dask_client, **KW)
    assert out["id"].tolist() == [2.0**53, 7.0, 2.5]
    np.testing.assert_allclose(out["k"], [0.5, 1.5, 1.0], rtol=1e-9)


# --- 5. labels True beside 1 -------------------------------------------------------------

def test_booleans_beside_numbers_are_refused_on_both_paths():
    # before: one process fitted 1 and True as one series (k=0.80, converged); Dask two
    frame = decays([1, True, 2], [0.5, 1.5, 1.0])
    text = r"group labels in column 'id' mix booleans \(True\) with numbers \(1, 2\)"
    with pytest.raises(InputError, match=text):
        gradfit.fit_many(MODEL, data=frame, **KW)
    for data in (frame, dd.from_pandas(frame, npartitions=2, sort=False)):
        with pytest.raises(InputError, match=text):
            fit_table(MODEL, data, **KW)


# --- 6. --drop-nan and a group with no row left ------------------------------------------

def _nan_table(tmp_path):
    t = np.linspace(0, 3, 12)
    lines = ["id,t,v"] + [f"{g},{float(tt)!r},{'' if g == 'b' else repr(2 * math.exp(-k * tt))}"
                          for g, k in (("a", 0.5), ("b", 1.0), ("c", 1.5)) for tt in t]
    folder = tmp_path / "nan"
    folder.mkdir()
    (folder / "a.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_drop_nan_keeps_an_emptied_group_as_a_failed_row_on_both_paths(tmp_path, capsys,
                                                                      dask_client):
    # before: group b vanished on Dask (no row, no word, exit 0) and in one process
    folder = _nan_table(tmp_path)
    code = main(["fit", str(folder / "a.csv"), "--group", "id", "--x", "t", "--y", "v",
                 "--model", MODEL, "--p0", "A=1,k=1", "--drop-nan", "--out",
                 str(tmp_path / "one.csv")])
    assert code == 1 and "dropped 12 row(s)" in capsys.readouterr().err
    one = pd.read_csv(tmp_path / "one.csv")
    on_dask = fit_table(MODEL, str(folder / "*.csv"), scheduler=dask_client, drop_nan=True,
                        **KW)
    for table in (one, on_dask):
        assert table["id"].tolist() == ["a", "b", "c"]
        b = table.iloc[1]
        assert (b["converged"], b["reason"], b["n_points"], b["message"]) == \
            (False, "failed", 0, ALL_DROPPED)
        assert math.isnan(b["k"])
    np.testing.assert_allclose(on_dask["k"], one["k"], rtol=1e-12)
    # b's rows split over partitions (fitted after the shuffle), a missing label beside it
    frame = pd.read_csv(folder / "a.csv").sample(frac=1, random_state=3)
    out = fit_table(MODEL, dd.from_pandas(frame, npartitions=3, sort=False),
                    scheduler=dask_client, drop_nan=True, **KW)
    assert sorted(out["id"]) == ["a", "b", "c"]
    assert out.set_index("id").loc["b", "message"] == ALL_DROPPED


def test_drop_nan_on_the_dask_command_line_exits_1_naming_the_group(tmp_path, capsys,
                                                                    dask_client):
    folder = _nan_table(tmp_path)
    code = main(["fit", str(folder / "*.csv"), "--group", "id", "--x", "t", "--y", "v",
                 "--model", MODEL, "--p0", "A=1,k=1", "--drop-nan", "--json", "-",
                 "--scheduler", dask_client.scheduler.address])
    rows = json.loads(capsys.readouterr().out)
    assert code == 1 and [r["id"] for r in rows] == ["a", "b", "c"]
    assert rows[1]["message"] == ALL_DROPPED


# --- 7. decimal commas on Dask -----------------------------------------------------------

DECIMAL_COMMAS = ("id;t;v\na;0;2,0\na;1;1,2\na;2;0,74\na;3;0,45\n"
                  "b;0;3,0\nb;1;1,1\nb;2;0,41\nb;3;0,15\n")


def test_a_semicolon_file_with_decimal_commas_reads_the_same_on_dask(tmp_path, dask_client):
    # before: the Dask path refused '2,0' ("expected a number with '.' as the decimal point")
    folder = tmp_path / "dc"
    folder.mkdir()
    (folder / "a.csv").write_text(DECIMAL_COMMAS)
    assert main(["fit", str(folder / "a.csv"), "--group", "id", "--x", "t", "--y", "v",
                 "--model", MODEL, "--p0", "A=1,k=1", "-q", "--out",
                 str(tmp_path / "one.csv")]) == 0
    one = pd.read_csv(tmp_path / "one.csv")
    on_dask = fit_table(MODEL, str(folder / "*.csv"), scheduler=dask_client, **KW)
    assert on_dask["id"].tolist() == ["a", "b"] and on_dask["n_points"].tolist() == [4, 4]
    np.testing.assert_allclose(on_dask[["A", "k"]], one[["A", "k"]], rtol=1e-12)
    # one series in a folder, out of core, against fit on the one-file reader's data
    single = tmp_path / "single"
    single.mkdir()
    (single / "a.csv").write_text("t;v\n0;2,0\n1;1,2\n2;0,74\n3;0,45\n")
    r = fit_out_of_core(MODEL, str(single), x="t", y="v", p0={"A": 1, "k": 1},
                        scheduler=dask_client)
    d = gradfit.load_csv(single / "a.csv", x="t", y="v")
    np.testing.assert_array_equal(d.y, [2.0, 1.2, 0.74, 0.45])
    ref = gradfit.fit(MODEL, d.x, d.y, inputs=("t",), p0={"A": 1, "k": 1})
    assert [r.params["A"], r.params["k"]] == pytest.approx([ref.params["A"], ref.params["k"]],
                                                           rel=1e-10)


def test_a_semicolon_file_mixing_decimal_marks_is_refused_on_dask(tmp_path, dask_client):
    (tmp_path / "a.csv").write_text("id;t;v\na;0;2,0\na;1;1.2\na;2;0,74\n")
    with pytest.raises(InputError, match="a decimal point in a file whose numbers have "
                       "decimal commas"):
        fit_table(MODEL, str(tmp_path / "*.csv"), scheduler=dask_client, **KW)


# --- the lower ones ------------------------------------------------------------------------

@pytest.mark.parametrize("chunked", [False, True])
def test_fit_along_with_another_dimension_of_length_0_gives_an_empty_dataset(chunked):
    import xarray as xr
    from gradfit.xarray_fit import fit_along
    t = np.linspace(0, 3, 12)
    full = xr.DataArray(2 * np.exp(-np.outer(np.ones(2), t)), dims=("x", "time"),
                        coords={"time": t})
    empty = full.isel(x=slice(0, 0))
    if chunked:
        empty = empty.chunk()
    # before: ValueError: cannot reshape array of size 0 into shape (0,newaxis)
    got = fit_along(MODEL.replace("t)", "time)"), empty, "time", p0={"A": 1, "k": 1})
    want = fit_along(MODEL.replace("t)", "time)"), full, "time", p0={"A": 1, "k": 1})
    assert dict(got.sizes) == {"x": 0} and list(got.data_vars) == list(want.data_vars)
    assert all(got[v].dtype == want[v].dtype for v in want.data_vars)


def test_a_missing_label_keeps_its_place_on_dask(dask_client):
    # before: one process [nan, 'a', 'b'], Dask ['a', 'b', nan]
    frame = decays(["", "a", "b"], [0.5, 1.5, 1.0])
    one = gradfit.fit_many(MODEL, data=frame, **KW).to_pandas()
    on_dask = fit_table(MODEL, dd.from_pandas(frame, npartitions=2, sort=False),
                        scheduler=dask_client, **KW)
    assert on_dask["id"].isna().tolist() == one["id"].isna().tolist() == [True, False, False]
    assert on_dask["id"].tolist()[1:] == one["id"].tolist()[1:] == ["a", "b"]


def test_hive_keys_that_spell_one_number_twice_are_named(tmp_path):
    # before: "got 'Categorical categories must be unique'", naming neither key nor folders
    for k in ("1", "01"):
        (tmp_path / f"well={k}").mkdir()
        decays([0], [0.5]).drop(columns="id").to_parquet(tmp_path / f"well={k}" / "p.parquet",
                                                         index=False)
    with pytest.raises(InputError, match=r"the folders well=01/ and well=1/ give the "
                       r"partition column 'well' one number twice"):
        fit_table(MODEL, str(tmp_path), x="t", y="v", group="well", p0={"A": 1, "k": 1})
