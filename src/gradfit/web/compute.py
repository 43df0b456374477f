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
from ..fit_prepare import _check_uses_an_input, prepare
from ..landscape import full_center, loss_grid, loss_slice
from ..models import Model, make_model
from ..problem import Problem
from .limits import (Cost, ServerLimits, landscape_rows, price_eval, price_exact,
                     price_landscape)
from .pool import checkpoint, current_deadline
from . import dataview
from .exact import exact as exact_fit
from .scales import MAX_SLIDERS, scaled_start, slider_scales
from .views import curve
from .schemas import (MAX_PARAMS, MIN_FIT_RESOLUTION, EvalIn, ExactIn, LandscapeIn, ModelIn,
                      ProblemIn)


def check_model(model: Model) -> Model:
    if model.n_params > MAX_PARAMS:
        raise InputError(f"model {model.spec!r} has too many parameters",
                         expected=f"at most {MAX_PARAMS}", given=model.n_params)
    if model.n_params == 0:
        raise InputError(f"model {model.spec!r} has no parameters",
                         expected="at least one name besides x")
    return model


def build_model(spec: str, inputs=("x",)) -> Model:
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
        sizes = [len(inputs)] + hidden + [1]
        count = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
        if hidden and count > MAX_PARAMS:
            raise InputError(f"model {spec!r} has too many parameters",
                             expected=f"at most {MAX_PARAMS}", given=count)
    check_input_constants(spec, inputs)
    model = check_model(make_model(spec, tuple(inputs)))
    _check_uses_an_input(spec, model, tuple(inputs))
    return model


def check_input_constants(spec: str, inputs) -> None:
    """Refuse, before the model's sliders are built, an expression that writes ``e`` or
    ``pi`` where an input (an uploaded column) has that name: there it is the constant,
    never the column. The command line's check and words (``cli.inputs``); the page had
    built the sliders of ``a*e+b`` and then refused it in every plot, saying it "does not
    use its input e"."""
    from types import SimpleNamespace

    from ..cli.inputs import check_model_columns
    check_model_columns(spec, SimpleNamespace(x_names=tuple(inputs), y_name=None, columns=(),
                                              name=None))


def problem(req: ProblemIn, test: bool = False) -> Problem:
    """The request's problem on its training points (``test``: on its held-out points)."""
    d = dataview.of(req)
    x, y, sigma = d.part(test)
    p = prepare(req.model, x, y, sigma, loss=req.loss, delta=req.delta, inputs=d.inputs)
    check_model(p.model)
    return p


def _model(req) -> Model:
    return build_model(req.model, dataview.model_inputs(req.model, req.data.inputs)
                       if req.data else ("x",))


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
    inputs = dataview.model_inputs(req.model, req.data.inputs) if req.data else ("x",)
    model = _model(req)
    data = dataview.page_data(req.data) if req.data else None
    x = torch.tensor(data.x) if data is not None else None
    start = model.initial(x, req.seed)
    scales = {n: None for n in model.param_names}
    if data is not None and model.n_params <= MAX_SLIDERS:
        scales = slider_scales(model, x, data.y, start)
        start = scaled_start(start, scales)
    kind = next((k for k in ("poly", "relu", "mlp") if req.model.strip().startswith(k + ":")),
                "expression")
    return {"model": model.spec, "kind": kind, "param_names": list(model.param_names),
            "initial": start, "n_params": model.n_params, "constants": dict(model.constants),
            "inputs": list(inputs), "flexible": not model.identifiable, "scales": scales}


def eval_cost(req: EvalIn, limits: ServerLimits) -> Cost:
    return price_eval(_model(req), len(req.data.x), req.curve_points, limits)


def evaluate(req: EvalIn, limits: ServerLimits | None = None) -> dict:
    """The training loss and its gradient, the test loss (held-out points), the curve."""
    d = dataview.of(req)
    model = _model(req)
    x, y, sigma = d.part(test=False)
    value, grad = loss_and_grad(req.model, x, y, req.params, sigma=sigma, loss=req.loss,
                                delta=req.delta, inputs=d.inputs)
    test = None
    if d.n_test:
        xt, yt, st = d.part(test=True)
        test, _ = loss_and_grad(req.model, xt, yt, req.params, sigma=st, loss=req.loss,
                                delta=req.delta, inputs=d.inputs)
    return {"loss": value, "loss_name": req.loss,       # NaN, inf: null and a reason in the JSON
            "test_loss": test, "test": d.test.tolist(), "grad": grad,
            "curve": curve(model, req.params, d.x, req.curve_points),
            "distance": distance(req.params, req.optimum)}


def landscape_sets(req: LandscapeIn, resolution: int | None = None) -> int:
    """Parameter sets a landscape evaluates at ``resolution`` (default: the request's): the
    grid's and the slice's."""
    r = req.resolution if resolution is None else resolution
    return ((r ** 2 if req.names is not None else 0)
            + (slice_points(req, r) if req.slice is not None else 0))


def slice_points(req: LandscapeIn, resolution: int) -> int:
    """The slice's points at a landscape's ``resolution``: at least 101; a resolution
    lowered to fit the limits (``fit_resolution``) lowers them too, to twice it."""
    if req.fit_resolution and resolution < req.resolution:
        return max(resolution, min(101, 2 * resolution))
    return max(resolution, 101)


def landscape_resolution(req: LandscapeIn, model: Model, n: int, limits: ServerLimits) -> int:
    """The resolution a landscape is computed at: the request's; with ``fit_resolution``,
    lowered where the limits refuse it to the highest they allow, down to
    ``MIN_FIT_RESOLUTION`` (the page asks so: it has no resolution control, and a CSV of
    25,000 points had no landscape, with the advice of "a lower resolution"). Where even
    that is refused, the refusal names only what the page can change."""
    if not req.fit_resolution:
        return req.resolution
    lo = min(MIN_FIT_RESOLUTION, req.resolution)

    def fits(r: int) -> bool:
        try:
            price_landscape(model, n, landscape_sets(req, r), limits)
            return True
        except InputError:
            return False
    if fits(req.resolution):
        return req.resolution
    if not fits(lo):
        try:
            price_landscape(model, n, landscape_sets(req, lo), limits)
        except InputError as exc:
            raise InputError(str(exc).split(": expected")[0] + f", even at the lowest "
                             f"resolution ({lo} x {lo})",
                             expected="fewer points or a smaller model") from None
    good, bad = lo, req.resolution          # fits(good), not fits(bad)
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def landscape_cost(req: LandscapeIn, limits: ServerLimits) -> Cost:
    model, n = _model(req), len(req.data.x)
    r = landscape_resolution(req, model, n, limits)
    return price_landscape(model, n, landscape_sets(req, r), limits)


def landscape(req: LandscapeIn, limits: ServerLimits | None = None) -> dict:
    limits = limits or ServerLimits()
    prob = problem(req)
    r = landscape_resolution(req, prob.model, prob.n, limits)
    price_landscape(prob.model, prob.n, landscape_sets(req, r), limits)
    chunks = {"rows": landscape_rows(prob.model, prob.n, limits), "check": checkpoint}
    center = full_center(prob, req.params)
    out: dict = {"params": center, "resolution": r}
    if req.names is not None:
        path = None
        if req.path:
            path = np.array(req.path, dtype=float).reshape(-1, 2)
        out["grid"] = loss_grid(prob, req.names, center, span=req.span,
                                resolution=r, path=path, **chunks).to_dict()
    if req.slice is not None:
        out["slice"] = loss_slice(prob, req.slice, center, span=req.span,
                                  resolution=slice_points(req, r), **chunks).to_dict()
    return out


def exact_cost(req: ExactIn, limits: ServerLimits) -> Cost:
    return price_exact(_model(req), len(req.data.x), limits)


def _past_deadline(record) -> bool:
    dl = current_deadline()
    return dl is not None and dl.expired()


def exact(req: ExactIn, limits: ServerLimits | None = None) -> dict:
    """The exact fit on the training points, with its uncertainty (see ``exact.py``)."""
    exact_cost(req, limits or ServerLimits())
    out = exact_fit(req, check_model, callback=_past_deadline)
    checkpoint()                              # stopped by the deadline: say so, no result
    return out
