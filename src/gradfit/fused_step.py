"""A fused full-batch gradient: the loss and its gradient in one pass over the data.

An unfused gradient step runs the model, the loss and autograd's backward pass as a chain
of separate kernels, each of which reads and writes ``n``-long temporaries: on big data
that costs some 25 reads of ``x`` and ``y``. Here the step's work,

    L(theta) = rho(r),   r_i = (f(x_i, theta) - y_i) / sigma_i,
    g_j      = dL/dtheta_j = sum_i (drho/dr_i) (df(x_i)/dtheta_j) / sigma_i,

(``rho`` the loss's reduction: mean |r|, mean r^2, sqrt(mean r^2), mean huber(r)) is
written as one function of ``(theta, x, y, sigma)`` by ``torch.func.grad_and_value`` and
compiled by ``torch.compile`` (inductor): the per-point work and every reduction over
points become one loop, so a step reads ``x`` and ``y`` about once. The model is evaluated
from ``x`` itself (an expression through its own compiled tree, not through a cached
design matrix, which would be read from memory instead of computed in cache).

Compiling costs seconds (some 10-25 s on a small CPU), so it is used only when the run
repays it: ``n * steps >= COMPILE_MIN_WORK`` point-steps (and ``n >= MIN_POINTS``), where
an unfused step costs roughly 40 ns a point and a fused one a tenth of that. A compiled
function is kept per model, loss, dtype, device and shape, and reused by later fits of the
same size in the process. Any failure to compile or to run compiled code (no C compiler,
an operation inductor lacks, a model on numpy) falls back to the unfused step, silently:
the result is the same to rounding either way.

Only the plain full-batch case is fused: gd, momentum, adam, adamw, rmsprop on a
``Problem`` with no bounds or fixed parameters (those go through a change of variables).
"""
from __future__ import annotations

import threading
from typing import Callable

import torch

from .models import (CallableModel, ExpressionModel, MLPModel, Model, PolynomialModel,
                     ReLUSumModel)
from .problem import Problem

COMPILE_MIN_WORK = 1e9      # n * steps at which ~20 s of compiling pays for itself
MIN_POINTS = 2 ** 17        # below this a step is dominated by Python, not by the data

_cache: dict[tuple, Callable | None] = {}
_lock = threading.Lock()


def worth_compiling(n: int, steps: int) -> bool:
    """Whether a run of ``steps`` full-batch steps over ``n`` points repays a compile.

        >>> worth_compiling(10_000_000, 200), worth_compiling(10_000_000, 20)
        (True, False)
        >>> worth_compiling(1000, 10 ** 9)
        False
    """
    return n >= MIN_POINTS and n * steps >= COMPILE_MIN_WORK


def pure_model(model: Model) -> Callable | None:
    """``f(x, theta)`` computed from ``x`` alone (no cached design matrix or hoisted
    columns), or None for a model that should not be compiled (one run on numpy)."""
    if isinstance(model, ExpressionModel):
        expression, inputs, params = model.expression, model.input_names, model.param_names

        def f(x, theta):
            cols = (x,) if x.ndim == 1 else x.unbind(-1)
            env = dict(zip(inputs, cols))
            env.update(zip(params, theta.unbind(-1)))
            return expression(env).expand(x.shape[0])
        return f
    if isinstance(model, CallableModel) and model.jacobian_kind != "autograd":
        return None
    return model.__call__


def objective_fn(problem: Problem) -> Callable | None:
    """``loss(theta, x, y, sigma)``, the problem's objective as a function of its data."""
    if isinstance(problem.model, CallableModel):      # its first call tells torch from numpy
        with torch.no_grad():
            problem.model(problem.x[:2], torch.ones(problem.model.n_params, dtype=problem.y.dtype,
                                                    device=problem.y.device))
    f = pure_model(problem.model)
    if f is None:
        return None
    reduce, delta = problem.loss.reduce, problem.loss.delta

    def objective(theta, x, y, sigma):
        r = f(x, theta) - y
        if sigma is not None:
            r = r / sigma
        return reduce(r, delta)
    return objective


def fused_gradient(problem: Problem, steps: int) -> Callable | None:
    """``theta -> (grad, loss)`` by one compiled pass, or None when it does not pay (see
    ``worth_compiling``) or the model cannot be compiled. The returned function gives None
    when compiling or running it fails; the caller then takes the unfused step."""
    if type(problem) is not Problem:       # bounds or fixed values: a transformed problem
        return None
    x, y, sigma = problem.x, problem.y, problem.sigma
    key = (_model_key(problem.model), problem.model.input_names, problem.loss.name,
           problem.loss.delta, sigma is None, x.dtype, str(x.device), tuple(x.shape))
    cached = key in _cache
    if not cached and not worth_compiling(problem.n, steps):
        return None
    if cached and (_cache[key] is None or problem.n < MIN_POINTS):
        return None
    if not cached:
        obj = objective_fn(problem)
        if obj is None:
            return None
        try:
            _cache[key] = torch.compile(torch.func.grad_and_value(obj), dynamic=False)
        except Exception:     # noqa: BLE001 - no compiler here: the unfused step
            _cache[key] = None
            return None
    compiled = _cache[key]

    def step(theta: torch.Tensor):
        fn = _cache.get(key)
        if fn is None:
            return None
        try:
            with _lock, torch.no_grad():
                return fn(theta, x, y, sigma)
        except Exception:     # noqa: BLE001 - compile or run failure: the unfused step
            _cache[key] = None
            return None
    return step if compiled is not None else None


def _model_key(model: Model):
    """What fixes a model's math: the text of an expression or the spec of a built-in
    model (``poly:3``, ``mlp:8,8:tanh``); for a Python function or any other model, the
    object itself (two functions may share a name)."""
    if type(model) in (ExpressionModel, PolynomialModel, ReLUSumModel, MLPModel):
        return (type(model).__name__, model.spec)
    return model.fn if isinstance(model, CallableModel) else model


def clear_cache() -> None:
    """Forget the compiled functions (tests; memory)."""
    _cache.clear()
