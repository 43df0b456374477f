"""fit_many's third probe (/tmp/probes/many.md): standard errors where the rank is lost,
per-problem settings with length classes, empty tables, the step limit of the finish alone,
empty labels, plate-shaped settings, a guess's arrays, --out - and the progress bar. Each
against its oracle: ``gradfit.fit`` on the problem alone, or one padded call."""
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gradfit
import gradfit.many_buckets as mb
from gradfit.cli import main
from gradfit.errors import InputError

FM = sys.modules["gradfit.fit_many"]
EXP = "a*exp(-k*t)"


# finding 1: a lost rank gives no standard errors, as fit gives none

def _params_table(report: str) -> list[str]:
    lines = report.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.strip().startswith("param"))
    return lines[at:at + 1]


@pytest.mark.parametrize("model, x, y", [
    ("a*b*exp(-k*x)", np.linspace(0, 3, 8),
     2 * np.exp(-1.2 * np.linspace(0, 3, 8)) + 0.01 * np.random.default_rng(0).normal(size=(3, 8))),
    # the linear path: a quadratic on two distinct x values
    ("poly:2", np.array([1.0, 1, 1, 2, 2, 2]),
     np.array([1.0, 1, 1, 2, 2, 2]) * 2 + 1 + 0.01 * np.random.default_rng(1).normal(size=(2, 6))),
])
def test_a_lost_rank_gives_nan_errors_as_fit_gives_none(model, x, y):
    res = gradfit.fit_many(model, x, y)
    for i in range(len(y)):
        one = gradfit.fit(model, x, y[i])
        assert one.reason == res.reason[i] == "failed" and "lost rank" in one.message
        assert one.stderr is None and one.covariance is None           # the oracle
        assert all(np.isnan(v[i]) for v in res.stderr.values())
        assert np.isnan(res.covariance[i]).all()
        row = res[i]
        assert row.stderr is None and row.covariance is None
        assert "std error" not in row.report() and "+/-" not in row.report()
        assert _params_table(row.report()) == _params_table(one.report())
    table = res.to_pandas()
    assert table[[c for c in table if c.endswith("_stderr")]].isna().all().all()


def test_a_full_rank_row_beside_a_lost_one_keeps_its_errors():
    # per row: x all at one value (a and k not each determined) is NaN; its neighbour's
    # errors are fit's
    t = np.linspace(0, 3, 8)
    x = np.vstack([np.full(8, 1.5), t])
    y = 2 * np.exp(-1.2 * x) + 0.01 * np.random.default_rng(2).normal(size=(2, 8))
    res = gradfit.fit_many("a*exp(-k*x)", x, y)
    lost = gradfit.fit("a*exp(-k*x)", x[0], y[0])
    assert lost.stderr is None and res.reason[0] == lost.reason == "failed"
    assert np.isnan(res.stderr["a"][0]) and np.isnan(res.stderr["k"][0])
    one = gradfit.fit("a*exp(-k*x)", t, y[1])
    assert res.converged[1] and one.converged
    for name in ("a", "k"):
        assert res.stderr[name][1] == pytest.approx(one.stderr[name], rel=1e-6)


# finding 2: per-problem settings keep the length classes

def _ragged(n_short=40, n_long=3000, seed=0):
    rng = np.random.default_rng(seed)
    ts = np.array([0.0, 1, 2, 3])
    parts = [pd.DataFrame({"g": f"s{i:02d}", "t": ts,
                           "y": 2 * np.exp(-(0.5 + i / 40) * ts) + 0.01 * rng.normal(size=4)})
             for i in range(n_short)]
    tb = np.linspace(0, 5, n_long)
    parts.insert(n_short // 2, pd.DataFrame({"g": "BIG", "t": tb, "y": 2 * np.exp(-0.7 * tb)
                                             + 0.01 * rng.normal(size=n_long)}))
    return pd.concat(parts, ignore_index=True)


def _padded_sizes(monkeypatch):
    sizes = []
    real = FM.from_long

    def spy(*a, **k):
        d = real(*a, **k)
        sizes.append(d.y.size)
        return d
    monkeypatch.setattr(FM, "from_long", spy)
    return sizes


def test_per_problem_settings_are_cut_to_each_length_class(monkeypatch):
    frame = _ragged()
    B = 41
    p0 = {"a": np.linspace(1.5, 2.5, B), "k": 1.0}
    bounds = {"k": (np.full(B, 0.01), 5.0)}
    kw = dict(data=frame, x="t", y="y", group="g", p0=p0, bounds=bounds, lr=np.full(B, 0.1))
    sizes = _padded_sizes(monkeypatch)
    monkeypatch.setattr(mb, "PAD_MIN", 1000)          # this small table split as a big one
    split = gradfit.fit_many(EXP, **kw)
    assert len(sizes) == 2 and max(sizes) <= 3000    # classes: 40 x 4 and 1 x 3000
    sizes.clear()
    monkeypatch.setattr(mb, "PAD_FACTOR", 10 ** 9)   # the oracle: one padded call
    one = gradfit.fit_many(EXP, **kw)
    assert sizes == [B * 3000]
    assert split.groups.tolist() == one.groups.tolist()
    for name in ("a", "k"):
        np.testing.assert_allclose(split.params[name], one.params[name], rtol=1e-9)
        np.testing.assert_allclose(split.stderr[name], one.stderr[name], rtol=1e-7)
    assert split.reason.tolist() == one.reason.tolist()
    np.testing.assert_array_equal(split.settings.start, one.settings.start)
    np.testing.assert_array_equal(split.settings.lo, one.settings.lo)
    big = list(split.groups).index("BIG")
    alone = gradfit.fit(EXP, frame.t[frame.g == "BIG"], frame.y[frame.g == "BIG"],
                        p0={"a": p0["a"][big], "k": 1.0}, bounds={"k": (0.01, 5.0)})
    assert split.params["k"][big] == pytest.approx(alone.params["k"], rel=1e-8)


def test_a_bad_value_in_a_class_of_one_fails_that_problem_alone(monkeypatch):
    frame = _ragged()
    a = np.full(41, 2.0)
    a[20] = np.nan                                    # BIG's, alone in its class
    monkeypatch.setattr(mb, "PAD_MIN", 1000)
    res = gradfit.fit_many(EXP, data=frame, x="t", y="y", group="g", p0={"a": a, "k": 1.0})
    big = list(res.groups).index("BIG")
    assert big == 20 and res.reason[big] == "failed" and "not finite" in res.message[big]
    assert res.converged.sum() == 40
    # a wrong length is refused naming the table's B, as one call says it
    with pytest.raises(InputError, match="a number or 41 numbers.*got '40 numbers'"):
        gradfit.fit_many(EXP, data=frame, x="t", y="y", group="g", p0={"a": a[:40]})
    with pytest.raises(InputError, match=r"learning rate.*\(problem 3\)"):
        gradfit.fit_many(EXP, data=frame, x="t", y="y", group="g", optimizer="adam",
                         lr=np.r_[np.full(3, 0.1), -1.0, np.full(37, 0.1)])


# finding 3: an empty long table

@pytest.mark.parametrize("kw", [
    dict(data=pd.DataFrame({"g": [], "t": [], "y": []}), x="t", y="y", group="g"),
    dict(x=np.array([]), y=np.array([]), group=np.array([])),
    dict(x=np.array([]), y=np.array([]), group=np.array([]), p0={"a": np.ones(3)}),
])
def test_an_empty_long_table_is_no_data(kw):
    with pytest.raises(InputError, match="no data: expected at least one row"):
        gradfit.fit_many(EXP if "data" in kw else "a*exp(-k*x)", **kw)


# finding 4: the finish alone is fit's, within fit's budget for its active set

def _runaway():
    d = json.loads((Path(__file__).parent / "data" / "mm_runaway_to_bound.json").read_text())
    x, y, s = (np.asarray(d[k], float) for k in ("x", "y", "sigma"))
    return d["model"], x, y, s, d["p0"], {k: tuple(v) for k, v in d["bounds"].items()}


@pytest.mark.parametrize("steps", [100, 300])
def test_the_finish_alone_is_fits_answer_steps_included(steps):
    # the batch stops this problem as a runaway held by a bound; it is finished as fit
    # finishes it (the active set from LM's end, within fit's budget): the row is fit's
    # answer, its steps LM's and the finish's (they had been the batch's plus a whole fit's:
    # 2,058 for a limit of 1,000). LM's steps are counted as the batch counts them (accepted
    # ones), fit's as its records: they may differ by a few
    model, x, y, s, p0, bounds = _runaway()
    m = gradfit.fit_many(model, x, y[None], sigma=s[None], p0=p0, bounds=bounds, steps=steps)
    r = gradfit.fit(model, x, y, sigma=s, p0=p0, bounds=bounds, steps=steps)
    assert m.converged[0] and r.converged and m.message[0] == r.message
    assert m.steps[0] <= steps + max(steps, 1000) and r.steps <= steps + max(steps, 1000)
    assert abs(int(m.steps[0]) - r.steps) <= 10
    for k, v in r.params.items():
        assert m.params[k][0] == pytest.approx(v, rel=1e-8)


def test_fits_active_set_has_one_budget_for_all_its_inner_fits(monkeypatch):
    # each inner fit of the active set had max(steps, 1000) steps of its own: a flat 4PL
    # well took 10,000 steps (seconds a well, for well after well); now they share one
    import sys
    monkeypatch.setattr(sys.modules["gradfit.fit_ends"], "FINISH_STEPS", 50)
    rng = np.random.default_rng(1)
    dose = np.repeat(np.logspace(-3, 2, 10), 3)
    y = 50.0 + rng.normal(0, 3, (2, dose.size))
    kw = dict(p0={"bottom": 45, "top": 55, "ec50": 0.3, "hill": 1.0}, steps=40,
              bounds={"ec50": (1e-6, 1e4), "hill": (0.1, 10)})
    model = "bottom + (top-bottom)/(1+(ec50/x)^hill)"
    res = gradfit.fit_many(model, dose, y, **kw)
    for i in range(2):
        r = gradfit.fit(model, dose, y[i], **kw)
        assert r.steps <= 40 + 50 and res.steps[i] <= 40 + 50
        assert not r.converged or r.reason != "max_steps"
        assert r.converged == res.converged[i]


# finding 5: the empty label is a missing one

def test_an_empty_text_label_is_missing_as_an_empty_csv_cell(tmp_path, capsys):
    t = np.linspace(0, 3, 8)
    df = pd.DataFrame({"g": [""] * 8 + [None] * 8 + ["w"] * 8, "t": np.r_[t, t, t],
                       "y": np.r_[2 * np.exp(-t), 2 * np.exp(-2 * t), np.exp(-0.5 * t)]})
    res = gradfit.fit_many(EXP, data=df, x="t", y="y", group="g")
    assert len(res) == 2 and res.groups[0] is None and res.reason[0] == "failed"
    assert res.message[0].startswith("16 row(s) have no group label (empty, NaN or None)")
    arrays = gradfit.fit_many(EXP, df.t.to_numpy(), df.y.to_numpy(), inputs=("t",),
                              group=df.g.fillna("").to_numpy(dtype=str))   # numpy text
    assert arrays.groups.tolist() == [None, "w"] and arrays.message[0] == res.message[0]
    # the command line's reading of empty cells gives the same table
    path = tmp_path / "t.csv"
    df.fillna("").to_csv(path, index=False)
    assert main(["fit", str(path), "--group", "g", "--x", "t", "--y", "y", "--model", EXP]) == 1
    assert capsys.readouterr().out == res.to_csv()
    # read back, the missing label is the only empty cell of its column
    rows = list(csv.reader(io.StringIO(res.to_csv())))[1:]
    assert [r[0] for r in rows] == ["", "w"]


# findings 7 and 8: plate-shaped settings, a guess's arrays

@pytest.mark.parametrize("kw, what", [
    (dict(p0={"a": np.ones((8, 12))}), "p0 for 'a'"),
    (dict(fixed={"a": np.ones((8, 12))}), "fixed value for 'a'"),
    (dict(bounds={"k": (np.zeros((8, 12)), 5.0)}), "bounds for 'k'"),
    (dict(optimizer="adam", lr=np.full((8, 12), 0.1)), "learning rate"),
])
def test_a_plate_shaped_setting_is_refused_with_its_shape(kw, what):
    x = np.linspace(0, 1, 5)
    with pytest.raises(InputError) as e:
        gradfit.fit_many("a*exp(-k*x)", x, np.ones((96, 5)), **kw)
    text = str(e.value)
    assert text.startswith(f"bad {what}") and "shape (96,)" in text
    assert "got 'an array of shape (8, 12)'" in text


@pytest.mark.parametrize("value, kind", [(np.array([2.0, 3.0]), "an array"),
                                         ([2.0, 3.0], "a list")])
def test_a_guess_giving_several_values_names_the_parameter(value, kind):
    x = np.linspace(0, 1, 5)
    y = np.vstack([2 * np.exp(-x), 3 * np.exp(-x)])
    res = gradfit.fit_many("a*exp(-k*x)", x, y, guess=lambda x, y: {"a": value, "k": 1})
    assert res.message.tolist() == [f"guess gave a = {kind} of 2 values: expected one "
                                    "number"] * 2
    one = gradfit.fit_many("a*exp(-k*x)", x, y, guess=lambda x, y: {"a": np.array([2.0])})
    assert one.converged.all()                       # one value in an array is one number


# finding 9: --out -

def _plate(path, groups=3):
    t = np.linspace(0, 4, 10)
    rows = [[f"w{g}", repr(float(ti)), repr(float((1 + g) * np.exp(-0.7 * ti)))]
            for g in range(groups) for ti in t]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["well", "t", "od"]] + rows)
    return path


def test_out_dash_says_that_without_out_the_table_goes_to_stdout(tmp_path, capsys):
    path = _plate(tmp_path / "p.csv")
    code = main(["fit", str(path), "--group", "well", "--model", EXP, "--out", "-"])
    err = capsys.readouterr().err
    assert code == 2 and "bad --out" in err and "leave out --out to write the table as " \
        "CSV to standard output" in err and err.strip().endswith("got '-'")


# finding 10: the progress bar

class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_progress_bar_moves_on_a_terminal_and_only_there(tmp_path, capsys, monkeypatch):
    import gradfit.cli.many as cli_many
    tqdm = pytest.importorskip("tqdm")

    class Eager(tqdm.tqdm):                          # every update drawn (not 10 a second)
        def __init__(self, *a, **k):
            super().__init__(*a, mininterval=0, **k)
    monkeypatch.setattr(tqdm, "tqdm", Eager)
    path = _plate(tmp_path / "p.csv", groups=60)
    monkeypatch.setattr(cli_many, "BAR_DELAY", 0)
    monkeypatch.setattr(FM, "PROGRESS_MIN", 1)       # 60 groups: chunks as of a long run
    ticks = []
    real = FM.fit_many

    def spy(*a, progress=None, **k):
        def tick(d, t):
            ticks.append(d)
            progress(d, t)
        return real(*a, progress=tick, **k)
    monkeypatch.setattr(FM, "fit_many", spy)
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["fit", str(path), "--group", "well", "--model", EXP]) == 0
    table = capsys.readouterr().out
    assert table.startswith("well,a,k,") and len(table.splitlines()) == 61   # stdout: CSV only
    assert len(ticks) >= 5 and ticks == sorted(ticks) and ticks[-1] == 60
    assert "/60" in term.getvalue() and "fit" in term.getvalue()
    monkeypatch.undo()
    assert main(["fit", str(path), "--group", "well", "--model", EXP]) == 0
    assert capsys.readouterr().err == ""          # not a terminal: no bar
