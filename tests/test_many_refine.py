"""fit_many finishes LM ends on bounds by fit's active set, the rows' inner fits batched."""
import sys

import numpy as np
import pytest

import gradfit
import gradfit.many_refine as many_refine

MODEL = "bottom + (top-bottom)/(1+(ec50/x)^hill)"
KW = dict(p0={"bottom": 45, "top": 55, "ec50": 0.3, "hill": 1.0},
          bounds={"ec50": (1e-6, 1e4), "hill": (0.1, 10)}, steps=150)


def _plate(seed=1, flat=6, responsive=2):
    rng = np.random.default_rng(seed)
    dose = np.repeat(np.logspace(-3, 2, 10), 3)
    y = 50.0 + rng.normal(0, 3, (flat, dose.size))          # no response: a flat well
    curve = 20 + 60 / (1 + (0.5 / dose) ** 1.2)
    y = np.vstack([y, curve + rng.normal(0, 2, (responsive, dose.size))])
    return dose, y


def _loss(p, dose, y):
    f = p["bottom"] + (p["top"] - p["bottom"]) / (1 + (p["ec50"] / dose) ** p["hill"])
    return float(np.mean((f - y) ** 2))


def test_flat_wells_end_as_fit_ends_them_their_inner_fits_batched(monkeypatch):
    monkeypatch.setattr(sys.modules["gradfit.fit_ends"], "FINISH_STEPS", 300)
    sizes = []
    solve = many_refine._solve

    def counted(prob, names, held, bounded, group, jobs, cfg):
        sizes.append(len(group))
        return solve(prob, names, held, bounded, group, jobs, cfg)
    monkeypatch.setattr(many_refine, "_solve", counted)
    dose, y = _plate()
    m = gradfit.fit_many(MODEL, dose, y, **KW)
    assert max(sizes) > 1                     # rows finished together, not one by one
    finished = 0
    for i in range(len(y)):
        r = gradfit.fit(MODEL, dose, y[i], **KW)
        assert m.converged[i] == r.converged, (i, m.message[i], r.message)
        assert m.steps[i] <= KW["steps"] + 300
        if not r.converged:
            continue
        # the same minimum (the losses agree; a flat well's parameters are ill-determined)
        assert m.loss[i] == pytest.approx(r.loss, rel=1e-9)
        p = {k: float(v[i]) for k, v in m.params.items()}
        assert m.loss[i] == pytest.approx(_loss(p, dose, y[i]), rel=1e-12)
        # a parameter on its bound is held there: the loss rises inwards (finite differences)
        for name, (lo, hi) in KW["bounds"].items():
            for b, inward in ((lo, 1.0), (hi, -1.0)):
                if abs(p[name] - b) <= 1e-9 * max(abs(b), 1.0):
                    finished += 1
                    h = 1e-6 * max(abs(b), 1.0) * inward
                    assert _loss({**p, name: p[name] + h}, dose, y[i]) >= \
                        _loss(p, dose, y[i]) * (1 - 1e-12)
    assert finished >= 2                      # the plate has optima on their bounds


def test_a_row_whose_finish_breaks_down_keeps_the_batchs_verdict(monkeypatch):
    # an inner fit that raises leaves its rows as the batch ended them; nothing escapes
    import torch
    import gradfit.many_engines as engines
    monkeypatch.setattr(sys.modules["gradfit.fit_ends"], "FINISH_STEPS", 300)
    dose, y = _plate()
    good = gradfit.fit_many(MODEL, dose, y, **KW)
    real, broke = engines._lm, []

    def lm(prob, tr, u0, rates, cfg):
        if isinstance(cfg["steps"], torch.Tensor):          # the finish's inner fits
            broke.append(u0.shape[0])
            raise RuntimeError("the inner fit broke down")
        return real(prob, tr, u0, rates, cfg)
    monkeypatch.setattr(engines, "_lm", lm)
    bad = gradfit.fit_many(MODEL, dose, y, **KW)
    assert broke
    finished = [i for i in range(len(y)) if good.message[i] != bad.message[i]]
    assert finished and all("the optimum within the bounds" in good.message[i]
                            or good.converged[i] for i in finished)
    for i in finished:                        # the batch's own verdict, never a claim
        assert not bad.converged[i] or "KKT" in bad.message[i]
    for i in set(range(len(y))) - set(finished):
        assert bad.loss[i] == good.loss[i]


def _bench_plate(flat=16, seed=0):
    # benchmarks/bench_plate.py's plate
    rng = np.random.default_rng(seed)
    dose = np.repeat(np.logspace(-3, 2, 10), 3)
    bottom, top = rng.uniform(5, 20, 96), rng.uniform(80, 100, 96)
    ec50, hill = 10 ** rng.uniform(-2, 1, 96), rng.uniform(0.7, 2.0, 96)
    y = bottom[:, None] + (top - bottom)[:, None] / (1 + (ec50[:, None] / dose) ** hill[:, None])
    y[:flat] = rng.uniform(40, 60, (flat, 1))
    return dose, y + rng.normal(0, 3, y.shape)


def test_parameters_running_off_beside_one_on_its_bound_are_not_an_optimum():
    # a flat well: hill on its upper bound, top and ec50 running off together beyond the
    # doses (the loss keeps falling as they grow: fit's end lies lower, top 696, ec50 179).
    # fit_many called it "an optimum on its bounds" (top 177 +/- 2e9): the test of
    # parameters the data do not determine left out every row with a bound held
    dose, y = _bench_plate()
    kw = dict(p0={"bottom": 10.0, "top": 90.0, "ec50": 0.3, "hill": 1.0},
              bounds={"ec50": (1e-6, 1e4), "hill": (0.1, 10)})
    m = gradfit.fit_many(MODEL, dose, y[13:14], **kw)
    r = gradfit.fit(MODEL, dose, y[13], **kw)
    assert not r.converged
    assert not m.converged[0]
    assert m.message[0].startswith("the data do not determine top, ec50")
    # a determined row with a bound held keeps its verdict (the others of the plate)
    ok = gradfit.fit_many(MODEL, dose, y[16:40], **kw)
    assert ok.converged.all()
