"""Loss landscapes and learning-rate experiments (gradfit.landscape), checked against
direct computations of the losses and against the labelling rule written out."""
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from gradfit import landscape as L
from gradfit import learning_rates as R
from gradfit.errors import InputError
from gradfit.fit import loss_and_grad

QUAD = "a*x^2 + b*x + c"
GUESS = {"a": 1.1, "b": 1.1, "c": 1.1}


def numpy_loss(name, pred, y, delta=1.0):
    r = pred - y
    if name == "mae":
        return np.abs(r).mean(-1)
    if name == "mse":
        return (r ** 2).mean(-1)
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r ** 2, delta * (a - 0.5 * delta)).mean(-1)


@pytest.fixture(scope="module")
def data():
    from gradfit.data import lesson_data
    return lesson_data()


def test_landscape_is_core_it_imports_with_matplotlib_blocked():
    code = ("import sys\nsys.modules['matplotlib'] = None\n"
            "import gradfit.landscape as L\nfrom gradfit.data import lesson_data\n"
            "d = lesson_data()\np = L.as_problem('a*x+b', d.x, d.y)\n"
            "print(L.loss_grid(p, ('a', 'b'), {'a': 1, 'b': 1}, resolution=3).loss.shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(3, 3)"


@pytest.mark.parametrize("loss", ["mae", "mse", "huber"])
def test_grid_equals_the_loss_computed_point_by_point(data, loss):
    p = L.as_problem(QUAD, data.x, data.y, loss=loss, delta=1.5)
    g = L.loss_grid(p, ("a", "c"), GUESS, span={"a": (0, 4), "c": 2.0}, resolution=(7, 5))
    assert g.loss.shape == (5, 7)                        # rows follow the second name
    assert g.x.tolist() == pytest.approx(np.linspace(0, 4, 7).tolist())
    assert g.y.tolist() == pytest.approx(np.linspace(-0.9, 3.1, 5).tolist())
    A, C = np.meshgrid(g.x, g.y)
    pred = A[..., None] * data.x ** 2 + 1.1 * data.x + C[..., None]
    np.testing.assert_allclose(g.loss, numpy_loss(loss, pred, data.y, 1.5), rtol=1e-12)
    assert g.names == ("a", "c") and g.center == GUESS and g.loss_name == loss


def test_slice_and_points_match_loss_and_grad(data):
    p = L.as_problem(QUAD, data.x, data.y, loss="mae")
    s = L.loss_slice(p, "b", GUESS, span=(-1, 3), resolution=9)
    for v, got in zip(s.values, s.loss):
        want, _ = loss_and_grad(QUAD, data.x, data.y, {**GUESS, "b": v}, loss="mae")
        assert got == pytest.approx(want, rel=1e-12)
    pts = np.array([[1.1, 1.1], [3.0, 2.0]])
    along = L.loss_along(p, ("a", "b"), pts, GUESS)
    assert along[0] == pytest.approx(2.4219, abs=5e-5)   # the lesson's printed MAE
    want, _ = loss_and_grad(QUAD, data.x, data.y, {"a": 3.0, "b": 2.0, "c": 1.1}, loss="mae")
    assert along[1] == pytest.approx(want)


def test_chunked_evaluation_gives_the_same_grid(data, monkeypatch):
    p = L.as_problem("relu:3", data.x, data.y)
    center = {n: 0.3 for n in p.model.param_names}
    whole = L.loss_grid(p, ("m1", "b2"), center, resolution=9).loss
    monkeypatch.setattr(L, "CHUNK_ELEMENTS", 50)        # two rows of 20 points per call
    np.testing.assert_array_equal(L.loss_grid(p, ("m1", "b2"), center, resolution=9).loss, whole)


def test_axis_range_forms():
    assert L.axis_range("a", 3.0, 2.0) == (1.0, 5.0)
    assert L.axis_range("a", 3.0, {"a": (0, 10)}) == (0.0, 10.0)
    assert L.axis_range("a", 3.0, {"b": 1}) == (1.5, 4.5)            # default: |c|/2 either side
    assert L.axis_range("a", 0.0, None) == (-1.0, 1.0)                 # at least 1
    lo, hi = L.axis_range("a", 0.0, None, np.array([-3.0, np.nan, 0.5]))
    assert lo < -3.0 and hi > 1.0                                       # the path stays in view
    for bad in (0.0, -1.0, (2, 1), (0, np.inf), (1, 2, 3)):
        with pytest.raises(InputError):
            L.axis_range("a", 0.0, bad)


def test_bad_choices_are_refused(data):
    p = L.as_problem(QUAD, data.x, data.y)
    for names in (("z",), ("a", "a"), ("a", "b", "c"), ()):
        with pytest.raises(InputError):
            L.loss_grid(p, names, GUESS) if len(names) != 1 else L.loss_slice(p, names[0], GUESS)
    with pytest.raises(InputError, match="missing c"):
        L.loss_grid(p, ("a", "b"), {"a": 1, "b": 1})
    with pytest.raises(InputError, match="unknown q"):
        L.loss_grid(p, ("a", "b"), {**GUESS, "q": 1})
    with pytest.raises(InputError, match="resolution"):
        L.loss_grid(p, ("a", "b"), GUESS, resolution=1)
    with pytest.raises(InputError):
        L.as_problem(QUAD)


def test_to_dict_is_json_with_nan_as_null(data):
    p = L.as_problem("log(a)*x + b", data.x, data.y)
    g = L.loss_grid(p, ("a", "b"), {"a": 0.5, "b": 0.0}, span={"a": (-1, 1), "b": 1}, resolution=4)
    d = json.loads(json.dumps(g.to_dict()))
    assert d["loss"][0][0] is None and d["loss"][0][-1] is not None   # log of a negative a


# ---------------------------------------------------------------- the labelling rule

@pytest.mark.parametrize("history, best, diverged, label", [
    ([4, 3, 2, 1], 3, False, "good"),
    ([4, 3, 2, 2.5, 2, 1.5], 3, False, "good"),      # rose once in 5 steps: not over a quarter
    ([4, 3, 2, 2.5], 1.4, False, "bouncing"),        # rose once in 3 steps: over a quarter
    ([4, 3.9, 3.8], 3, False, "too slow"),           # fell 0.2 < 3 / 2
    ([4, 2.6, 2.5], 3, False, "good"),               # fell exactly half the best: not under it
    ([4, 2.6, 2.51], 3, False, "too slow"),          # fell just under half the best
    ([4, 4], 0.0, False, "too slow"),                # did not fall at all
    ([4, 2, 3, 1, 2, 0.5], 3.5, False, "bouncing"),  # rose in 2 of 5 steps
    ([4, 5], 3, False, "diverged"),                  # ended above its start, still growing
    ([4, 1, float("nan")], 3, False, "diverged"),
    ([4, 1, float("inf")], 3, False, "diverged"),
    ([4, 3, 2, 1], 3, True, "diverged"),             # the fit stopped as diverged
    ([4, 6, 8, 3], 1, False, "bouncing"),            # diverged is checked first, bouncing next
    ([4, 9, 5, 9, 5, 9, 5], 1, False, "bouncing"),   # above its start, but bounded
    ([4, 9, 5, 9, 5, 9, 5, 9, 5, 5, 5, 5.5], 1, False, "bouncing"),  # above it: an overshoot
])
def test_classify_run_follows_the_rule(history, best, diverged, label):
    want = label
    h = np.asarray(history, float)
    # the rule, written out once more, independently of the implementation
    rng = (h.max() - h.min()) if np.isfinite(h).all() else 0
    rises = int(np.sum(np.diff(h) > 0.01 * rng)) if np.isfinite(h).all() else 0
    half = len(h) // 2
    growing = h[-1] > h[0] and h[half:].max() > 1.1 * h[:len(h) - half].max()
    if diverged or not np.isfinite(h).all() or growing:
        rule = "diverged"
    elif h[-1] > h[0] or rises > (len(h) - 1) / 4:
        rule = "bouncing"
    elif h[0] - h[-1] <= 0 or h[0] - h[-1] < best / 2:
        rule = "too slow"
    else:
        rule = "good"
    assert rule == want
    assert R.classify_run(history, best, diverged) == want


def test_rounding_is_not_a_bounce():
    h = [4.0, 1.0] + [1.0 + (1e-15 if k % 2 else 0.0) for k in range(20)]
    assert R.classify_run(h, 3.0) == "good"


def test_the_jitter_of_a_converged_run_is_not_a_bounce():
    h = [4.0, 2.0, 1.0] + [1.0 + (0.02 if k % 2 else 0.0) for k in range(40)]
    assert R.classify_run(h, 3.0) == "good"
    h = [4.0, 2.0, 1.0] + [1.0 + (0.5 if k % 2 else 0.0) for k in range(40)]
    assert R.classify_run(h, 3.0) == "bouncing"


def test_the_rule_text_names_every_label():
    for label in R.LR_LABELS:
        assert label + ":" in R.LR_RULE


def test_label_runs_on_constructed_runs():
    def run(history, reason="max_steps"):
        return SimpleNamespace(history=np.array(history, float), reason=reason)
    results = [run([10, 9.5, 9]),                     # fell 1
               run([10, 6, 4, 2]),                    # fell 8: the best
               run([10, 4, 7, 3, 6, 2.5]),            # fell 7.5, rose twice in 5 steps
               run([10, 50], "diverged"),             # ran away: not the best fall
               run([10, 30, 90, 1e4, 5], "diverged")]  # the fit said diverged, whatever the end
    sweep = R.label_runs(results, [0.001, 0.01, 0.1, 1, 3])
    assert sweep.best_drop == 8
    assert [r.label for r in sweep.runs] == ["too slow", "good", "bouncing", "diverged", "diverged"]
    assert sweep.labels == {0.001: "too slow", 0.01: "good", 0.1: "bouncing", 1: "diverged",
                            3: "diverged"}


def test_lr_sweep_on_the_lesson(data):
    sweep = R.lr_sweep(QUAD, data.x, data.y, [0.001, 0.05, 0.5], steps=25, loss="mse")
    assert [r.lr for r in sweep.runs] == [0.001, 0.05, 0.5]
    assert [r.label for r in sweep.runs] == ["too slow", "good", "diverged"]
    for r in sweep.runs:
        assert r.result.optimizer == "gd" and r.result.lr == r.lr
        diverged = r.result.reason == "diverged"
        assert r.label == R.classify_run(r.result.history, sweep.best_drop, diverged)
    json.dumps(sweep.to_dict())
    for bad in ([], [0.1, -1], [float("nan")], ["x"]):
        with pytest.raises(InputError):
            R.lr_sweep(QUAD, data.x, data.y, bad, steps=2)


# ---------------------------------------------------------------- the finder

def test_valley_and_steepest_on_constructed_curves():
    lrs = np.geomspace(1e-4, 1, 11)
    losses = np.array([10.0, 9, 8, 7, 6, 5, 4, 3, 2, 1, 50])
    assert R.valley(lrs, losses) == 3                   # fastai: start + third + third / 2
    flat = [10 - k * 1e-6 for k in range(10)]             # a full-batch run's flat start
    curve = np.array(flat + [8, 5, 3, 2, 1.5, 1.0, 30, 90])
    lrs = np.geomspace(1e-6, 1, len(curve))
    assert 10 <= R.valley(lrs, curve) <= 15               # on the descent
    assert R.valley(lrs, curve, flat=0.0) < 10            # fastai's own: in the flat start
    assert R.steepest(lrs, curve) == 10                   # 8 -> 5 is the steepest fall


def test_lr_find_grows_the_rate_and_stops_at_divergence(data):
    f = R.lr_find(QUAD, data.x, data.y, start_lr=1e-6, end_lr=10, num_it=80)
    ratios = f.lrs[1:] / f.lrs[:-1]
    np.testing.assert_allclose(ratios, (10 / 1e-6) ** (1 / 79))
    assert f.lrs[0] == pytest.approx(1e-6)
    assert f.stopped == "diverged" and len(f.lrs) < 80
    assert f.losses[-1] > 4 * f.losses.min()
    assert f.lrs[0] <= f.suggestion <= f.lrs[-1]
    # the suggestion trains: 100 steps at that rate fall well below the start
    sweep = R.lr_sweep(QUAD, data.x, data.y, [f.suggestion], steps=100)
    assert sweep.runs[0].label != "diverged"
    assert sweep.runs[0].result.history[-1] < 0.5 * sweep.runs[0].result.history[0]
    assert json.loads(json.dumps(f.to_dict()))["suggestion"] == f.suggestion


def test_lr_find_refuses_what_it_cannot_drive(data):
    for name in ("lbfgs", "lm", "irls", "auto"):
        with pytest.raises(InputError, match="lr_find cannot drive"):
            R.lr_find(QUAD, data.x, data.y, optimizer=name, num_it=5)
    assert {"gd", "adam", "momentum"} <= set(R.finder_optimizers())
    with pytest.raises(InputError):
        R.lr_find(QUAD, data.x, data.y, start_lr=1, end_lr=0.1)
    with pytest.raises(InputError):
        R.lr_find(QUAD, data.x, data.y, num_it=1)


def test_lr_find_drives_adam(data):
    f = R.lr_find("relu:3", data.x, data.y, optimizer="adam", num_it=30, end_lr=1.0)
    assert len(f.lrs) == len(f.losses) and np.isfinite(f.losses).all()
    assert f.details["optimizer"] == "adam"


def test_a_large_grid_on_many_points_keeps_memory_bounded():
    # 1,681 parameter sets x 100,000 points: the predictions alone would be 1.3 GB at once
    import subprocess
    import sys
    code = ("import numpy as np, resource, gradfit.landscape as L\n"
            "x = np.linspace(-2, 2, 100000); y = x**2\n"
            "p = L.as_problem('a*sin(x) + b*x + c', x, y, loss='mae')\n"
            "g = L.loss_grid(p, ('a', 'b'), {'a': 1, 'b': 1, 'c': 1}, resolution=41)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) < 900          # MB: chunks, not the whole grid


def test_a_span_whose_width_overflows_is_refused():
    # span 1e308 either side: the grid's steps were inf, the grid all NaN (the CLI's
    # picture crashed: "Axis limits cannot be NaN or Inf"; the page got a null grid)
    from gradfit.errors import InputError
    with pytest.raises(InputError, match="a range whose width is a finite number"):
        L.axis_range("a", 0.0, 1e308)
    with pytest.raises(InputError, match="width is a finite number"):
        L.axis_range("a", 0.0, (-1e308, 1e308))
    assert L.axis_range("a", 0.0, 1e307) == (-1e307, 1e307)
