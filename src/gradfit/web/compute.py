"""What each request computes, by calls into the core; the page only draws the answers.

Functions here take validated requests (``schemas``) and the server's ``ServerLimits``, price
the request (``limits``: a 422 past a limit) and return JSON-ready dicts. Bad input the
schemas cannot see (an expression, a parameter name) raises ``InputError``. Long work calls
``pool.checkpoint()`` between chunks, so that a deadline stops it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import fit, loss_and_grad
from ..errors import InputError
from ..fit import prepare
from ..landscape import full_center, loss_grid, loss_slice
from ..models import Model, make_model
from ..problem import Problem
from .limits import (Cost, ServerLimits, landscape_rows, price_eval, price_exact,
                     price_landscape)
from .pool import checkpoint, current_deadline
from .schemas import MAX_PARAMS, EvalIn, ExactIn, LandscapeIn, ModelIn, ProblemIn


def check_model(model: Model) -> Model:
    if model.n_params > MAX_PARAMS:
        raise InputError(f"model {model.spec!r} has too many parameters",
                         expected=f"at most {MAX_PARAMS}", given=model.n_params)
    if model.n_params == 0:
        raise InputError(f"model {model.spec!r} has no parameters",
                         expected="at least one name besides x")
    return model


def build_model(spec: str) -> Model:
    """``make_model``, with a network's parameters counted before they are named: the web's
    limit is ``MAX_PARAMS``, far below the core's (naming a million costs a second and 80 MB).

    >>> build_model("mlp:1000,1000")
    Traceback (most recent call last):
    ...
    gradfit.errors.InputError: model 'mlp:1000,1000' has too many parameters: expected at most 2000, got 1004001
    """
    head, _, arg = spec.strip().partition(":")
    if head.strip() == "mlp":
        try:
            hidden = [int(h) for h in arg.partition(":")[0].split(",")]
        except ValueError:
            hidden = []
        sizes = [1] + hidden + [1]
        count = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
        if hidden and count > MAX_PARAMS:
            raise InputError(f"model {spec!r} has too many parameters",
                             expected=f"at most {MAX_PARAMS}", given=count)
    return check_model(make_model(spec))


def problem(req: ProblemIn) -> Problem:
    p = prepare(req.model, req.data.x, req.data.y, loss=req.loss, delta=req.delta)
    check_model(p.model)
    return p


def curve_x(x: list[float], k: int) -> np.ndarray:
    """Where a curve is drawn: ``k`` points over the data's range, 5% to spare each side
    (less where that would pass the largest float).

    >>> curve_x([-1.7e308, 1.7e308], 3).tolist()
    [-1.7e+308, 0.0, 1.7e+308]
    """
    lo, hi = min(x), max(x)
    with np.errstate(over="ignore"):
        pad = 0.05 * (np.float64(hi) - np.float64(lo)) if hi > lo else 1.0
        a, b = np.float64(lo) - pad, np.float64(hi) + pad
        if not (np.isfinite(a) and np.isfinite(b)):
            a, b = np.float64(lo), np.float64(hi)
        if not np.isfinite(b - a):                 # a range wider than the largest float
            return 2 * np.linspace(a / 2, b / 2, k)
    return np.linspace(a, b, k)


def curve(model: Model, params: dict[str, float], x_data: list[float], k: int) -> dict:
    """The model's curve at ``params`` (and each ReLU unit's, for ``relu:K``)."""
    xs = curve_x(x_data, k)
    xt = torch.tensor(xs, dtype=torch.float64)
    theta = torch.tensor([params[n] for n in model.param_names], dtype=torch.float64)
    with torch.no_grad():
        out = {"x": xs.tolist(), "y": _finite(model(xt, theta).numpy())}
        if hasattr(model, "parts"):
            out["parts"] = [_finite(row) for row in model.parts(xt, theta).numpy()]
    return out


def _finite(a: np.ndarray) -> list:
    return np.where(np.isfinite(a), a, None).tolist()


def distance(params: dict[str, float], optimum: dict[str, float] | None) -> float | None:
    """Euclidean distance between two parameter sets over the names they share."""
    if not optimum:
        return None
    common = [n for n in params if n in optimum]
    if not common:
        return None
    d = math.hypot(*(params[n] - optimum[n] for n in common))    # no overflow in the squares
    return d if math.isfinite(d) else None


def model_info(req: ModelIn, limits: ServerLimits | None = None) -> dict:
    model = build_model(req.model)
    x = torch.tensor(req.data.x, dtype=torch.float64) if req.data else None
    start = model.initial(x, req.seed)
    kind = next((k for k in ("poly", "relu", "mlp") if req.model.strip().startswith(k + ":")),
                "expression")
    return {"model": model.spec, "kind": kind, "param_names": list(model.param_names),
            "initial": start, "n_params": model.n_params, "constants": dict(model.constants)}


def eval_cost(req: EvalIn, limits: ServerLimits) -> Cost:
    return price_eval(build_model(req.model), len(req.data.x), req.curve_points,
                      limits)


def evaluate(req: EvalIn, limits: ServerLimits | None = None) -> dict:
    model = build_model(req.model)
    value, grad = loss_and_grad(req.model, req.data.x, req.data.y, req.params, loss=req.loss,
                                delta=req.delta)
    return {"loss": value, "loss_name": req.loss,       # NaN, inf: null and a reason in the JSON
            "grad": grad,
            "curve": curve(model, req.params, req.data.x, req.curve_points),
            "distance": distance(req.params, req.optimum)}


def landscape_sets(req: LandscapeIn) -> int:
    """Parameter sets a landscape evaluates: the grid's and the slice's."""
    return ((req.resolution ** 2 if req.names is not None else 0)
            + (max(req.resolution, 101) if req.slice is not None else 0))


def landscape_cost(req: LandscapeIn, limits: ServerLimits) -> Cost:
    return price_landscape(build_model(req.model), len(req.data.x),
                           landscape_sets(req), limits)


def landscape(req: LandscapeIn, limits: ServerLimits | None = None) -> dict:
    limits = limits or ServerLimits()
    prob = problem(req)
    price_landscape(prob.model, prob.n, landscape_sets(req), limits)
    chunks = {"rows": landscape_rows(prob.model, prob.n, limits), "check": checkpoint}
    center = full_center(prob, req.params)
    out: dict = {"params": center}
    if req.names is not None:
        path = None
        if req.path:
            path = np.array([p[:2] for p in req.path if len(p) >= 2], dtype=float).reshape(-1, 2)
        out["grid"] = loss_grid(prob, req.names, center, span=req.span,
                                resolution=req.resolution, path=path, **chunks).to_dict()
    if req.slice is not None:
        out["slice"] = loss_slice(prob, req.slice, center, span=req.span,
                                  resolution=max(req.resolution, 101), **chunks).to_dict()
    return out


def exact_cost(req: ExactIn, limits: ServerLimits) -> Cost:
    return price_exact(build_model(req.model), len(req.data.x), limits)


def _past_deadline(record) -> bool:
    dl = current_deadline()
    return dl is not None and dl.expired()


def exact(req: ExactIn, limits: ServerLimits | None = None) -> dict:
    exact_cost(req, limits or ServerLimits())
    r = fit(req.model, req.data.x, req.data.y, loss=req.loss, delta=req.delta,
            optimizer="auto", steps=req.steps, p0=req.p0, seed=req.seed, callback=_past_deadline)
    checkpoint()                              # stopped by the deadline: say so, no result
    d = r.to_dict(history=False)
    return {"params": r.params, "loss": d["loss"], "optimizer": r.optimizer,
            "reason": r.reason, "message": r.message, "steps": r.steps,
            "converged": r.converged}
