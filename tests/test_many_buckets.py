"""A long table of very unequal series is fitted a length class at a time: the same answers
as one padded call, in the table's order, at the cost of the points there are."""
import numpy as np
import pandas as pd
import pytest

import gradfit
import gradfit.many_buckets as mb


def table(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(60):
        n = int(rng.choice([4, 6, 9, 30, 200]))
        t = np.sort(rng.uniform(0, 3, n))
        k = 0.5 + i / 30
        rows.append(pd.DataFrame({"g": f"s{i:02d}", "t": t,
                                  "v": 2 * np.exp(-k * t) + 0.01 * rng.standard_normal(n),
                                  "e": 0.01 + 0.0 * t}))
    long = np.linspace(0, 3, 20000)
    rows.append(pd.DataFrame({"g": "long", "t": long, "v": 2 * np.exp(-0.7 * long),
                              "e": 0.01 + 0.0 * long}))
    rows.append(pd.DataFrame({"g": "tiny", "t": [0.0], "v": [2.0], "e": [0.01]}))
    rows.append(pd.DataFrame({"g": None, "t": [0.0, 1.0, 2.0], "v": [2.0, 1.0, 0.5],
                              "e": [0.01] * 3}))
    return pd.concat(rows, ignore_index=True).sample(frac=1, random_state=seed)


def test_classes_give_one_calls_answers_in_its_order(monkeypatch):
    import sys
    frame = table()
    kw = dict(data=frame, x="t", y="v", group="g", sigma="e", p0={"A": 1.0, "k": 1.0})
    fm = sys.modules["gradfit.fit_many"]
    calls = []

    def spy(*a, **k):
        out = mb.fit_by_lengths(*a, **k)
        calls.append(out[0] is not None)
        return out
    monkeypatch.setattr(fm, "fit_by_lengths", spy)
    monkeypatch.setattr(mb, "PAD_MIN", 1000)      # this small table split as a big one is
    split = gradfit.fit_many("A*exp(-k*t)", **kw)
    assert calls[-1] is True                      # the table was split by lengths
    monkeypatch.setattr(mb, "PAD_FACTOR", 10 ** 9)
    one = gradfit.fit_many("A*exp(-k*t)", **kw)
    assert list(split.groups) == list(one.groups)
    for name in ("A", "k"):
        np.testing.assert_allclose(split.params[name], one.params[name], rtol=1e-9)
        np.testing.assert_allclose(split.stderr[name], one.stderr[name], rtol=1e-7)
    assert split.reason.tolist() == one.reason.tolist()
    assert split.n_points.tolist() == one.n_points.tolist()
    assert split.message[list(split.groups).index("tiny")] == \
        one.message[list(one.groups).index("tiny")]
    # one problem out of the table: its own points
    r = split["long"]
    assert len(r.x) == 20000 and r.params["k"] == pytest.approx(0.7, rel=1e-9)
    assert split.to_pandas().equals(one.to_pandas()) or \
        split.to_pandas()["g"].tolist() == one.to_pandas()["g"].tolist()


def test_per_problem_settings_keep_one_call():
    assert not mb.scalar_settings({"k": np.ones(3)}, None, None, None)
    assert not mb.scalar_settings(None, {"k": (np.zeros(3), None)}, None, None)
    assert mb.scalar_settings({"k": 1.0}, {"k": (0, None)}, {"A": 2.0}, 0.1)
    assert mb.length_classes(np.full(1000, 25)) is None
    classes = mb.length_classes(np.r_[np.full(20000, 5), 50000])
    assert [len(c) for c in classes] == [20000, 1]
