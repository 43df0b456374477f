"""What each request computes, by calls into the core; the page only draws the answers.

Functions here take validated requests (``schemas``) and return JSON-ready dicts. Bad
input the schemas cannot see (an expression, a parameter name) raises ``InputError``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import loss_and_grad
from ..errors import InputError
from ..fit import prepare
from ..landscape import full_center, loss_grid, loss_slice
from ..models import Model, make_model
from ..problem import Problem
from . import dataview
from .exact import exact as exact_fit
from .views import curve
from .schemas import MAX_LANDSCAPE_WORK, MAX_PARAMS, EvalIn, ExactIn, LandscapeIn, ModelIn, ProblemIn


def check_model(model: Model) -> Model:
    if model.n_params > MAX_PARAMS:
        raise InputError(f"model {model.spec!r} has too many parameters",
                         expected=f"at most {MAX_PARAMS}", given=model.n_params)
    if model.n_params == 0:
        raise InputError(f"model {model.spec!r} has no parameters",
                         expected="at least one name besides x")
    return model


def problem(req: ProblemIn, test: bool = False) -> Problem:
    """The request's problem on its training points (``test``: on its held-out points)."""
    d = dataview.of(req)
    x, y, sigma = d.part(test)
    p = prepare(req.model, x, y, sigma, loss=req.loss, delta=req.delta, inputs=d.inputs)
    check_model(p.model)
    return p


def distance(params: dict[str, float], optimum: dict[str, float] | None) -> float | None:
    """Euclidean distance between two parameter sets over the names they share."""
    if not optimum:
        return None
    common = [n for n in params if n in optimum]
    if not common:
        return None
    d = math.hypot(*(params[n] - optimum[n] for n in common))     # scaled: no overflow
    return d if math.isfinite(d) else None


def model_info(req: ModelIn) -> dict:
    inputs = tuple(req.data.inputs) if req.data else ("x",)
    model = check_model(make_model(req.model, inputs))
    x = torch.tensor(dataview.page_data(req.data).x) if req.data else None
    start = model.initial(x, req.seed)
    kind = next((k for k in ("poly", "relu", "mlp") if req.model.strip().startswith(k + ":")),
                "expression")
    return {"model": model.spec, "kind": kind, "param_names": list(model.param_names),
            "initial": start, "n_params": model.n_params, "inputs": list(inputs),
            "flexible": not getattr(model, "identifiable", True)}


def evaluate(req: EvalIn) -> dict:
    """The training loss and its gradient, the test loss (held-out points), the curve."""
    d = dataview.of(req)
    model = check_model(make_model(req.model, d.inputs))
    x, y, sigma = d.part(test=False)
    value, grad = loss_and_grad(req.model, x, y, req.params, sigma=sigma, loss=req.loss,
                                delta=req.delta, inputs=d.inputs)
    test = None
    if d.n_test:
        xt, yt, st = d.part(test=True)
        test, _ = loss_and_grad(req.model, xt, yt, req.params, sigma=st, loss=req.loss,
                                delta=req.delta, inputs=d.inputs)
    return {"loss": value if math.isfinite(value) else None, "loss_name": req.loss,
            "test_loss": test if test is not None and math.isfinite(test) else None,
            "test": d.test.tolist(),
            "grad": {k: (g if math.isfinite(g) else None) for k, g in grad.items()},
            "curve": curve(model, req.params, d.x, req.curve_points),
            "distance": distance(req.params, req.optimum)}


def landscape(req: LandscapeIn) -> dict:
    prob = problem(req)
    work = (req.resolution ** 2 if req.names is not None else 0) * prob.n
    if work > MAX_LANDSCAPE_WORK:
        raise InputError(f"a landscape of {req.resolution} x {req.resolution} over {prob.n:,} "
                         f"points is too much work ({work:.2g} evaluations)",
                         expected=f"at most {MAX_LANDSCAPE_WORK:.0e}: a lower resolution or "
                                  "fewer points")
    center = full_center(prob, req.params)
    out: dict = {"params": center}
    if req.names is not None:
        path = None
        if req.path:
            path = np.array([p[:2] for p in req.path if len(p) >= 2], dtype=float).reshape(-1, 2)
        out["grid"] = loss_grid(prob, req.names, center, span=req.span,
                                resolution=req.resolution, path=path).to_dict()
    if req.slice is not None:
        out["slice"] = loss_slice(prob, req.slice, center, span=req.span,
                                  resolution=max(req.resolution, 101)).to_dict()
    return out


def exact(req: ExactIn) -> dict:
    """The exact fit on the training points, with its uncertainty (see ``exact.py``)."""
    return exact_fit(req, check_model)
