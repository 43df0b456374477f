"""fit_many against its oracles: gradfit.fit on each problem alone (1e-8 relative, f64) and
scipy's curve_fit on the Gaussian problems."""
import math

import numpy as np
import pytest

import gradfit
from gradfit.errors import InputError

GAUSS = "A*exp(-(x-mu)^2/(2*s^2))+C"
NAMES = ("A", "mu", "s", "C")


def gaussians(B, n=25, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    x = np.linspace(-5, 5, n)
    A, mu = rng.uniform(1, 3, B), rng.uniform(-1, 1, B)
    s, C = rng.uniform(0.5, 1.5, B), rng.uniform(0, 1, B)
    y = (A[:, None] * np.exp(-(x - mu[:, None]) ** 2 / (2 * s[:, None] ** 2)) + C[:, None]
         + noise * rng.standard_normal((B, n)))
    p0 = {"A": y.max(1) - y.min(1), "mu": x[y.argmax(1)], "s": np.ones(B), "C": y.min(1)}
    return x, y, p0


def assert_same(many, i, single, rtol=1e-8, stderr=True, reason=False):
    """Problem ``i`` of ``many`` is ``single``: the same answer and verdict (LM's reasons
    may differ among gtol/ftol/xtol: its damping is not fit's trust region)."""
    assert many.converged[i] == single.converged, (many.message[i], single.message)
    if reason:
        assert many.reason[i] == single.reason, (many.message[i], single.message)
    for k, v in single.params.items():
        assert many.params[k][i] == pytest.approx(v, rel=rtol, abs=1e-12), k
    if stderr and single.stderr is not None:
        for k, v in single.stderr.items():
            assert many.stderr[k][i] == pytest.approx(v, rel=1e-6), k
    assert many.loss[i] == pytest.approx(single.loss, rel=1e-10, abs=1e-300)


def test_lm_gaussians_equal_fit_and_curve_fit():
    from scipy.optimize import curve_fit
    x, y, p0 = gaussians(300)
    res = gradfit.fit_many(GAUSS, x, y, p0=p0)
    assert len(res) == 300 and res.converged.all()
    for i in range(0, 300, 60):
        start = {k: v[i] for k, v in p0.items()}
        assert_same(res, i, gradfit.fit(GAUSS, x, y[i], p0=start))
        popt, pcov = curve_fit(lambda t, A, mu, s, C: A * np.exp(-(t - mu) ** 2 / (2 * s ** 2)) + C,
                               x, y[i], p0=[start[k] for k in NAMES], xtol=1e-14, ftol=1e-14)
        got = np.array([res.params[k][i] for k in NAMES])
        np.testing.assert_allclose(got, popt, rtol=1e-7)
        np.testing.assert_allclose([res.stderr[k][i] for k in NAMES], np.sqrt(np.diag(pcov)),
                                   rtol=1e-5)


def test_ragged_long_table_equals_each_series_alone():
    pd = pytest.importorskip("pandas")
    x, y, p0 = gaussians(5, n=30, seed=3)
    lengths = [30, 21, 25, 20, 27]
    rows = [(g, x[j], y[g, j], 0.05 + 0.01 * j) for g, n in enumerate(lengths) for j in range(n)]
    frame = pd.DataFrame(rows, columns=["well", "t", "v", "err"]).sample(frac=1, random_state=1)
    frame = frame.sort_values("well", kind="stable")          # groups together, points shuffled
    res = gradfit.fit_many(GAUSS, data=frame, x="t", y="v", sigma="err", group="well",
                           p0={"A": 2.0, "mu": 0.0, "s": 1.0, "C": 0.5})
    assert list(res.groups) == [0, 1, 2, 3, 4]
    for i in range(5):
        sub = frame[frame.well == i]
        single = gradfit.fit(GAUSS, sub.t.to_numpy(), sub.v.to_numpy(), sigma=sub.err.to_numpy(),
                             p0={"A": 2.0, "mu": 0.0, "s": 1.0, "C": 0.5})
        assert_same(res, i, single)
        assert res.n_points[i] == lengths[i]


def test_a_table_column_names_the_input_as_the_readme_shows():
    # the README's example: a model in t fitted to a frame's column t; a model in x fitted
    # to a column of another name reads that column as x; both equal fit on each group
    pd = pytest.importorskip("pandas")
    t = np.linspace(0, 4, 30)
    frame = pd.concat([pd.DataFrame({"well": g, "t": t,
                                     "od": (1 + g) * np.exp(-0.7 * t) + 0.2 + 0.01 * np.sin(9 * t)})
                       for g in range(3)])
    for model in ("A*exp(-k*t) + C", "A*exp(-k*x) + C"):
        res = gradfit.fit_many(model, data=frame, x="t", y="od", group="well",
                               p0={"A": 1, "k": 1, "C": 0})
        assert sorted(res.params) == ["A", "C", "k"] and res.converged.all()
        for g in range(3):
            single = gradfit.fit("A*exp(-k*x) + C", t, frame.od[frame.well == g].to_numpy(),
                                 p0={"A": 1, "k": 1, "C": 0})
            np.testing.assert_allclose([res.params[k][g] for k in "AkC"],
                                       [single.params[k] for k in "AkC"], rtol=1e-8)

        table = res.to_pandas()          # the group column keeps its name
        assert table.columns[0] == "well" and table["well"].tolist() == [0, 1, 2]


def test_a_group_column_named_like_a_result_column_is_renamed_group():
    pd = pytest.importorskip("pandas")
    t = np.linspace(0, 4, 20)
    frame = pd.DataFrame({"k": np.repeat(["a", "b"], 20), "t": np.tile(t, 2),
                          "v": np.concatenate([2 * np.exp(-0.5 * t), np.exp(-1.5 * t)])})
    res = gradfit.fit_many("A*exp(-k*t)", data=frame, x="t", y="v", group="k",
                           p0={"A": 1, "k": 1})
    table = res.to_pandas()
    assert list(table.columns[:3]) == ["group", "A", "k"] and table["group"].tolist() == ["a", "b"]
    np.testing.assert_allclose(table["k"], [0.5, 1.5], rtol=1e-10)


def test_a_frame_may_come_second_and_its_column_x_is_x_by_default():
    # fit_many(model, frame, ...) as pandas users write it (before: Python's own TypeError,
    # "got multiple values for argument 'x'", or "bad y: could not convert string to float")
    pd = pytest.importorskip("pandas")
    t = np.linspace(0, 4, 12)
    frame = pd.concat([pd.DataFrame({"g": g, "x": t, "v": (1 + g) * np.exp(-0.7 * t) + 0.1 * g})
                       for g in range(3)])
    named = gradfit.fit_many("A*exp(-k*x) + C", data=frame, x="x", y="v", group="g")
    for args, kw in (((frame,), {}), ((), {"data": frame})):
        res = gradfit.fit_many("A*exp(-k*x) + C", *args, y="v", group="g", **kw)
        assert res.converged.all()
        for k in "AkC":
            np.testing.assert_array_equal(res.params[k], named.params[k])
    np.testing.assert_allclose(named.params["k"], 0.7, rtol=1e-9)
    with pytest.raises(InputError, match="x= unless it has a column named x"):
        gradfit.fit_many("A*exp(-k*x)", frame.rename(columns={"x": "t"}), y="v", group="g")


def test_per_problem_failures_are_isolated():
    x, y, p0 = gaussians(6, seed=4)
    y[2, 5] = np.nan

    def guess(bx, by):
        if by[0] > 1e9:
            raise ValueError("no peak")
        return {"A": by.max() - by.min(), "mu": bx[by.argmax()], "s": 1.0, "C": by.min()}
    y[4, 0] = 2e9
    group = np.repeat(np.arange(6), 25)
    xs, ys = np.tile(x, 6), y.reshape(-1)
    keep = ~((group == 5) & (np.arange(150) % 25 >= 3))      # problem 5: 3 points only
    res = gradfit.fit_many(GAUSS, xs[keep], ys[keep], group=group[keep], guess=guess)
    assert list(res.reason[[2, 4, 5]]) == ["failed"] * 3
    assert "NaN" in res.message[2]
    assert "guess failed" in res.message[4] and "no peak" in res.message[4]
    assert "too few points (3) for 4" in res.message[5]
    assert np.isnan(res.params["A"][2])
    for i in (0, 1, 3):
        start = guess(x, y[i])
        assert_same(res, i, gradfit.fit(GAUSS, x, y[i], p0=start))
    assert res.summary().startswith("3 of 6 converged")
    # a guess that returns something other than a dict is named, not Python's TypeError
    odd = gradfit.fit_many(GAUSS, x, y[:2], guess=lambda bx, by: None if by[0] < 0.5 else [1])
    for text in odd.message:
        assert text.startswith(("guess returned NoneType: expected a dict of parameter name",
                                "guess returned list: expected a dict"))


def test_starts_keep_the_best():
    rng = np.random.default_rng(5)
    x = np.linspace(0, 6, 60)
    w = np.array([1.3, 2.1, 0.7])
    y = np.sin(w[:, None] * x) + 0.01 * rng.standard_normal((3, 60))
    one = gradfit.fit_many("a*sin(w*x)", x, y, p0={"a": 1.0, "w": 3.0})
    # which local minimum a start falls into depends on LM's damping rule: with Moré's trust
    # region 12 starts of seeds 2 to 5 find every w, of seed 1 two of three
    many = gradfit.fit_many("a*sin(w*x)", x, y, p0={"a": 1.0, "w": 3.0}, starts=12, seed=5,
                            steps=200)
    assert (many.loss <= one.loss * (1 + 1e-12)).all()
    np.testing.assert_allclose(np.abs(many.params["w"]), w, rtol=1e-2)
    assert all("best of 12 starts" in m for m in many.message)
    assert many.loss.max() < 1e-3 < one.loss.max()


def test_bounds_and_fixed_shared_and_per_problem():
    x, y, p0 = gaussians(4, seed=6)
    bounds = {"s": (0.1, 5.0), "A": (0, [10, 10, 1.0, 10])}   # problem 2: A held at a bound
    fixed = {"C": [0.5, 0.4, 0.3, 0.2]}
    # problem 2 starts outside its bound: it moves inside, as fit moves it, and says so
    outside = gradfit.fit_many(GAUSS, x, y, p0=p0, bounds=bounds, fixed=fixed)
    alone = gradfit.fit(GAUSS, x, y[2], p0={k: v[2] for k, v in p0.items() if k != "C"},
                        bounds={"s": (0.1, 5.0), "A": (0, 1.0)}, fixed={"C": 0.3})
    note = f"the start A={p0['A'][2]:g} was outside its bounds; it moved inside to 0.99"
    assert outside.message[2].startswith(note) and alone.message.startswith(note)
    assert outside.converged.all() and alone.converged
    for k, v in alone.params.items():
        assert outside.params[k][2] == pytest.approx(v, rel=1e-8), k
    p0["A"][2] = 0.9
    res = gradfit.fit_many(GAUSS, x, y, p0=p0, bounds=bounds, fixed=fixed)
    for i in range(4):
        b = {"s": (0.1, 5.0), "A": (0, bounds["A"][1][i])}
        single = gradfit.fit(GAUSS, x, y[i], p0={k: v[i] for k, v in p0.items() if k != "C"},
                             bounds=b, fixed={"C": fixed["C"][i]})
        tol = 1e-8 if i != 2 else 1e-6     # at a bound, sin(u) = 1 is reached to sqrt(eps)
        for k, v in single.params.items():
            assert res.params[k][i] == pytest.approx(v, rel=tol), (i, k)
        assert res.params["C"][i] == fixed["C"][i]
        assert 0 <= res.params["A"][i] <= bounds["A"][1][i]
    assert "C" not in res.stderr


@pytest.mark.parametrize("optimizer,extra", [
    ("gd", {"lr": 0.1}), ("gd", {"lr": 0.1, "schedule": "cosine"}),
    ("momentum", {"lr": 0.05, "nesterov": True}), ("adam", {"lr": 0.05, "schedule": "onecycle"}),
    ("adamw", {"lr": 0.05}), ("rmsprop", {"lr": 0.01, "momentum": 0.5})])
@pytest.mark.parametrize("loss", ["mse", "mae"])
def test_gradient_methods_follow_fit_step_for_step(optimizer, extra, loss):
    rng = np.random.default_rng(7)
    x = np.linspace(0, 1, 20)
    y = rng.uniform(1, 3, (3, 1)) * x ** 2 - x + 0.05 * rng.standard_normal((3, 20))
    res = gradfit.fit_many("a*x^2+b*x+c", x, y, optimizer=optimizer, loss=loss, steps=60, **extra)
    for i in range(3):
        single = gradfit.fit("a*x^2+b*x+c", x, y[i], optimizer=optimizer, loss=loss, steps=60,
                             **extra)
        assert_same(res, i, single, reason=True)
        assert res.steps[i] == single.steps


def test_per_row_learning_rates_and_divergence():
    x = np.linspace(0, 1, 20)
    y = np.tile(2 * x + 1, (3, 1))
    res = gradfit.fit_many("a*x + b", x, y, optimizer="gd", lr=[0.1, 1.0, 50.0], steps=300)
    for i, lr in enumerate([0.1, 1.0, 50.0]):
        single = gradfit.fit("a*x + b", x, y[i], optimizer="gd", lr=lr, steps=300)
        assert_same(res, i, single, stderr=False, reason=True)
        assert res.steps[i] == single.steps
    assert res.reason[2] == "diverged" and np.isfinite(res.params["a"][2])


@pytest.mark.parametrize("loss", ["mae", "huber"])
def test_irls_equals_fit(loss):
    rng = np.random.default_rng(8)
    x = np.linspace(0, 3, 30)
    y = (rng.uniform(1, 3, (3, 1)) * np.exp(-rng.uniform(0.5, 1.5, (3, 1)) * x) + 0.5
         + 0.05 * rng.standard_normal((3, 30)))
    y[:, ::7] += 1.0
    for spec, steps in (("a*x^2 + b*x + c", 1000), ("a*exp(-b*x)+c", 25)):
        res = gradfit.fit_many(spec, x, y, loss=loss, delta=0.1, steps=steps)
        for i in range(3):
            single = gradfit.fit(spec, x, y[i], loss=loss, delta=0.1, steps=steps)
            assert_same(res, i, single, reason=True)
            assert res.steps[i] == single.steps


def test_chunks_per_problem_x_and_float32():
    x, y, p0 = gaussians(40, seed=9)
    xs = x + np.linspace(0, 0.3, 40)[:, None]              # per-problem x (B, n)
    whole = gradfit.fit_many(GAUSS, xs, y, p0=p0)
    chunked = gradfit.fit_many(GAUSS, xs, y, p0=p0, chunk_size=7)
    for k in NAMES:     # the same steps; only the rounding of batched products differs
        np.testing.assert_allclose(whole.params[k], chunked.params[k], rtol=1e-12)
    single = gradfit.fit(GAUSS, xs[11], y[11], p0={k: v[11] for k, v in p0.items()})
    assert_same(whole, 11, single)
    f32 = gradfit.fit_many(GAUSS, xs, y, p0=p0, dtype="float32")
    assert f32.converged.mean() > 0.9
    np.testing.assert_allclose(f32.params["mu"], whole.params["mu"], rtol=1e-3, atol=1e-3)


def test_callable_model_and_autograd_path():
    x, y, p0 = gaussians(5, seed=10)

    def gauss(x, A, mu, s, C):
        import torch
        return A * torch.exp(-(x - mu) ** 2 / (2 * s ** 2)) + C
    res = gradfit.fit_many(gauss, x, y, p0=p0)
    for i in range(5):
        assert_same(res, i, gradfit.fit(gauss, x, y[i], p0={k: v[i] for k, v in p0.items()}))


def test_lost_rank_is_a_failure():
    x = np.linspace(0, 1, 10)
    res = gradfit.fit_many("a*b*x", x, np.tile(2 * x, (2, 1)) + [[0], [0.1]])
    assert list(res.reason) == ["failed", "failed"]
    assert all("lost rank" in m for m in res.message)


def test_result_table(tmp_path):
    x, y, p0 = gaussians(3, seed=11)
    res = gradfit.fit_many(GAUSS, x, y, p0=p0)
    one = res[1]
    assert isinstance(one, gradfit.FitResult) and one.params["A"] == res.params["A"][1]
    assert one.n_points == 25 and one.stderr is not None and one.converged
    np.testing.assert_allclose(one.predict(x), gradfit.fit(GAUSS, x, y[1], p0={
        k: v[1] for k, v in p0.items()}).predict(x), rtol=1e-8)
    path = tmp_path / "p.csv"
    res.to_csv(path)
    import csv
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 3 and float(rows[2]["mu"]) == res.params["mu"][2]
    assert rows[0]["converged"] == "True"
    pd = pytest.importorskip("pandas")
    frame = res.to_pandas()
    assert list(frame.columns[:4]) == list(NAMES) and len(frame) == 3
    assert res.summary() == f"3 of 3 converged ({res.reason[0]}: 3)" or "3 of 3" in res.summary()
    with pytest.raises(IndexError):
        res[3]


@pytest.mark.parametrize("kwargs,text", [
    ({"starts": 0}, "bad number of starts"), ({"optimizer": "lbfgs"}, "no batched engine"),
    ({"optimizer": "lm", "loss": "mae"}, "cannot minimise"), ({"p0": {"z": 1}}, "unknown"),
    ({"p0": {"A": [1, 2]}}, "a number or 3 numbers"), ({"bounds": {"A": (2, 1)}}, "low < high"),
    ({"dtype": "float16"}, "unknown dtype"), ({"chunk_size": 0}, "bad chunk_size"),
    ({"fixed": {"A": 1, "mu": 0, "s": 1, "C": 0}}, "every parameter is fixed"),
    ({"absolute_sigma": "no"}, "bad absolute_sigma: expected true or false, got 'no'"),
    ({"optimizer": "gd", "lr": 0}, r"bad learning rate: .* got '0'"),
    ({"optimizer": "gd", "lr": [0.1, -1, 0.1]}, r"got '-1 \(problem 1\)'"),
    ({"optimizer": "gd", "lr": "fast"}, "got 'fast'"), ({"ftol": -1}, "bad ftol"),
    ({"divergence": 0}, "bad divergence factor"), ({"schedule": "zz"}, "unknown schedule"),
    ({"loss": "huber", "delta": 0}, "bad huber delta"), ({"device": "tpu"}, "bad device"),
    ({"bounds": [(0, 1)] * 4}, "bad bounds: expected a mapping"),
    ({"fixed": [1.0]}, "bad fixed: expected a mapping"),
    ({"p0": [1.0, 0.0]}, "4 values in the order A, mu, s, C, got '2 values'")])
def test_bad_input_is_one_clear_error(kwargs, text):
    x, y, _ = gaussians(3)
    with pytest.raises(InputError, match=text):
        gradfit.fit_many(GAUSS, x, y, **kwargs)


def test_shape_errors():
    with pytest.raises(InputError, match="x and y do not match"):
        gradfit.fit_many("a*x", np.arange(4.0), np.ones((2, 5)))
    with pytest.raises(InputError, match="sigma does not match"):
        gradfit.fit_many("a*x", np.arange(5.0), np.ones((2, 5)), sigma=np.ones(3))
    with pytest.raises(InputError, match="column names"):
        gradfit.fit_many("a*x", data=object(), y="v")
    assert math.isnan(gradfit.fit_many("a*x", np.arange(5.0), np.ones((2, 5)),
                                       sigma=[[1] * 5, [0] * 5]).loss[1])


def test_a_non_finite_problem_does_not_touch_the_others():
    x = np.linspace(1, 5, 20)
    y = np.stack([2 * np.log(1.5 * x), np.log(3 * x), 0.5 * np.log(x)])
    y += 0.01 * np.random.default_rng(12).standard_normal(y.shape)
    b0 = np.array([1.0, -1.0, 2.0])                       # problem 1 starts at log(-x)
    res = gradfit.fit_many("a*log(b*x)", x, y, p0={"a": 1.0, "b": b0})
    assert res.reason[1] == "failed" and "not finite" in res.message[1]
    for i in (0, 2):
        assert_same(res, i, gradfit.fit("a*log(b*x)", x, y[i], p0={"a": 1.0, "b": b0[i]}))


@pytest.mark.parametrize("kwargs", [{}, {"loss": "mae"},
                                    {"bounds": {"s": (0.6, 1.4)}, "fixed": {"C": 0.5}}])
def test_blocks_of_rows_give_the_one_pass_numbers(monkeypatch, kwargs):
    """The CPU evaluates Jacobians over cache-sized blocks of problems
    (``many_problem.CHUNK``): blocks of 3 rows give the numbers of one pass (to rounding:
    a batched product may order its sums by the batch's size)."""
    import gradfit.many_problem as mp
    x, y, p0 = gaussians(40, seed=7)
    whole = gradfit.fit_many(GAUSS, x, y, p0=p0, **kwargs)
    monkeypatch.setattr(mp, "CHUNK", 3 * len(x) // max(1, __import__("torch").get_num_threads()))
    blocks = gradfit.fit_many(GAUSS, x, y, p0=p0, **kwargs)
    for k in NAMES:
        np.testing.assert_allclose(blocks.params[k], whole.params[k], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(blocks.loss, whole.loss, rtol=1e-12)
    assert list(blocks.reason) == list(whole.reason)


def test_cores_take_whole_chunks_and_give_the_same_numbers():
    """With torch's thread count above one, chunks of problems run one per thread
    (``many_parallel``): the numbers are those of one thread, the caller's own thread count
    is untouched, and progress still reaches every problem."""
    import torch
    x, y, p0 = gaussians(400, seed=11)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gradfit.fit_many(GAUSS, x, y, p0=p0)
        torch.set_num_threads(2)
        seen = []
        two = gradfit.fit_many(GAUSS, x, y, p0=p0, chunk_size=150,
                               progress=lambda done, total: seen.append((done, total)))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen[-1] == (400, 400) and len(seen) >= 2
    for k in NAMES:
        np.testing.assert_allclose(two.params[k], one.params[k], rtol=1e-12, atol=1e-14)
    assert list(two.reason) == list(one.reason)


def test_read_only_arrays_are_never_shared_with_torch():
    """xarray and pandas hand out read-only arrays: no 'not writable' warning, same fits."""
    import warnings
    x = np.linspace(0, 3, 30)
    y = 2.0 * np.exp(-np.array([[0.5], [1.0]]) * x)
    ref = gradfit.fit_many("a*exp(-k*x)", x, y, p0={"a": [1.5, 2.5]})
    x.setflags(write=False)
    y.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = gradfit.fit_many("a*exp(-k*x)", x, y, p0={"a": [1.5, 2.5]})
    np.testing.assert_array_equal(got.params["k"], ref.params["k"])
    with pytest.raises(gradfit.InputError, match="p0 value of 'a' is not finite"):
        gradfit.fit_many("a*exp(-k*x)", x, y, p0={"a": np.nan})
    with pytest.raises(gradfit.InputError, match="bad fixed value for 'a'"):
        gradfit.fit_many("a*exp(-k*x)", x, y, fixed={"a": [1.0, 2.0, 3.0]})


def test_as_many_points_as_parameters_interpolates():
    """n = P: the fit passes through every point (exactly determined, full rank) and is
    converged, as fit's; the standard errors need n > P and are NaN (curve_fit: inf)."""
    x = np.array([0.5, 2.0])
    y = np.array([[1.0, 4.0], [2.0, -1.0]])
    many = gradfit.fit_many("a*x+b", x, y)
    assert many.converged.all(), list(many.message)
    np.testing.assert_allclose(many.params["a"], [2.0, -2.0], rtol=1e-12)
    np.testing.assert_allclose(many.params["b"], [0.0, 3.0], atol=1e-12)
    assert np.isnan(many.stderr["a"]).all()
    for loss in ("mse", "mae"):
        one = gradfit.fit("a*exp(k*x)", x, np.array([1.0, 4.0]), loss=loss)
        assert one.converged, one.message
        assert one.params["k"] == pytest.approx(np.log(4.0) / 1.5, rel=1e-9)


def test_a_function_given_as_p0_points_to_guess():
    x, y, _ = gaussians(3)
    with pytest.raises(InputError, match="guess="):
        gradfit.fit_many(GAUSS, x, y, p0=lambda xx, yy: {"A": 1.0})


def test_the_registry_names_the_batched_engine(monkeypatch):
    """An optimizer is batched when its registry entry names an engine: fit_many, the
    batched lr sweep and the out-of-core fit read that, not lists of their own."""
    import dataclasses
    from gradfit.optimizers import OPTIMIZERS, batched_optimizers
    assert set(batched_optimizers()) == {"lm", "irls", "gd", "momentum", "adam", "adamw", "rmsprop"}
    assert set(batched_optimizers("gradient")) == {"gd", "momentum", "adam", "adamw", "rmsprop"}
    x, y, p0 = gaussians(4)
    with pytest.raises(InputError, match="no batched engine"):
        gradfit.fit_many(GAUSS, x, y, p0=p0, optimizer="lbfgs")
    assert gradfit.fit_many(GAUSS, x, y, p0=p0, optimizer="adam", steps=20).steps.max() == 20
    monkeypatch.setitem(OPTIMIZERS, "adam", dataclasses.replace(OPTIMIZERS["adam"], batched=None))
    with pytest.raises(InputError, match="no batched engine"):
        gradfit.fit_many(GAUSS, x, y, p0=p0, optimizer="adam", steps=20)


def test_p0_in_parameter_order_and_numpy_scalars_are_taken_as_fit_takes_them():
    x, y, p0 = gaussians(4, seed=8)
    start = {"A": 2.0, "mu": 0.0, "s": 1.0, "C": 0.5}
    want = gradfit.fit_many(GAUSS, x, y, p0=start, seed=3)
    got = gradfit.fit_many(GAUSS, x, y, p0=np.array(list(start.values())), seed=np.int64(3),
                           absolute_sigma=np.bool_(False), delta=np.float64(1.0))
    for k in NAMES:
        np.testing.assert_array_equal(got.params[k], want.params[k])


def test_a_linear_model_is_solved_against_the_data_as_fit_solves_it():
    """A quartic in raw x over [1000, 1010] (design condition 1e11): fit_many had solved for
    a step from the start, whose residuals lose digits to cancellation, then stopped LM
    'ROUGH' at 1.000015 times the minimum, failed. Oracle: least squares in the centred
    basis u = (x - 1005) / 5, mapped back to the values of the fit's own curve."""
    rng = np.random.default_rng(20)
    x = np.linspace(1000, 1010, 40)
    u = (x - 1005) / 5
    y = np.stack([2 + 0.5 * u - 0.3 * u ** 2 + 0.2 * u ** 3 + 0.1 * u ** 4
                  + rng.normal(0, 0.05, 40) for _ in range(3)])
    many = gradfit.fit_many("poly:4", x, y)
    assert many.converged.all() and (many.steps == 1).all(), many.message[0]
    V = np.vander(u, 5, increasing=True)
    for b in range(3):
        one = gradfit.fit("poly:4", x, y[b])
        c, *_ = np.linalg.lstsq(V, y[b], rcond=None)
        best = np.mean((V @ c - y[b]) ** 2)
        # (the raw basis rounds each value of the curve by about 1e-4 of 1e12)
        assert many.loss[b] == pytest.approx(best, rel=1e-6)
        np.testing.assert_allclose(many[b].predict(x), V @ c, atol=1e-5)   # (before: 2e-4)
        # the raw coefficients are determined to condition x eps (1e-5) only: both solves
        # agree far within their standard errors, and on those
        for k in one.params:
            assert abs(many.params[k][b] - one.params[k]) <= 1e-4 * one.stderr[k]
        assert many[b].stderr == pytest.approx(one.stderr, rel=1e-4)
    # a quintic there is beyond float64: lost rank, saying it is rounding, not the model
    quintic = gradfit.fit_many("poly:5", x, y[:1])
    assert quintic.reason[0] == "failed" and "not separable in float64" in quintic.message[0]
    assert "centring" in gradfit.fit("poly:5", x, y[0]).message


def test_a_notebook_shows_the_table_and_a_row_knows_its_learning_rate():
    # before: a cell showed only ManyResult('...', summary); result[i].method said lr=nan;
    # a FitResult's repr was the dataclass's, kilobytes of history in a list of results
    import html.parser
    d = gradfit.lesson_data()
    ys = np.stack([d.y, 2 * d.y, 3 * d.y])
    m = gradfit.fit_many("a*x^2 + b*x + c", d.x, ys,
                         optimizer="adam", lr=[0.1, 0.2, 0.3], steps=50)
    assert m[1].method == "adam, lr=0.2"
    page = m._repr_html_(rows=2)

    class Cells(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.cells, self.rows = [], 0

        def handle_starttag(self, tag, attrs):
            self.rows += tag == "tr"

        def handle_data(self, data):
            self.cells.append(data)
    p = Cells()
    p.feed(page)
    assert m.summary() in "".join(p.cells) and p.rows == 3        # header and 2 rows
    assert f"{m.params['a'][0]:.6g}" in p.cells and "1 more row(s)" in page
    one = gradfit.fit("a*x^2 + b*x + c", d.x, d.y)
    assert repr(one) == (f"FitResult('a*x^2 + b*x + c', mse={one.loss:.6g}, converged (xtol), "
                         f"a={one.params['a']:.6g}, b={one.params['b']:.6g}, "
                         f"c={one.params['c']:.6g})")
    assert gradfit.fit_many("a*x^2 + b*x + c", d.x, ys)[0].method == "lm"
