"""Sums of ReLUs: each unit's ``max(0, m*x + b)`` as a thin line and their sum as the
curve, so that "more ReLUs approximate any function" can be seen."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..models import make_model
from .common import FIT_COLOR, as_data, data_points, dense, model_values, new_figure, relu_parts
from .curves import draw_parts


def relus(model, params=None, *, x=None, y=None, sigma=None, x_range=(-2.1, 2.1), ax=None,
          title: str | None = None):
    """Draw a one-input ReLU sum; returns the Figure.

    ``model``: ``"relu:K"``, a ReLU-sum ``Model``, or a ``FitResult`` of one (then
    ``params`` and the name "fit" come from it). ``params``: values by name
    (``m1, b1, ..., c``). ``x``, ``y``: data to draw (``x`` may be a ``Dataset``); the
    curves span the data, else ``x_range``.
    """
    result = model if hasattr(model, "model_object") else None
    if result is not None:
        model, params = result.model_object, result.params if params is None else params
    model = make_model(model)
    if not hasattr(model, "parts") or len(model.input_names) != 1:
        raise InputError("not a sum of ReLUs", expected="relu:K with one input",
                         given=getattr(model, "spec", model))
    if params is None:
        raise InputError("no parameter values", expected="values for " + ", ".join(model.param_names))
    params = {n: float(params[n]) for n in model.param_names} if isinstance(params, dict) \
        else dict(zip(model.param_names, np.asarray(params, dtype=float).tolist()))
    fig, ax = new_figure(ax, (7, 4.6))
    data = None
    if x is not None:
        data = as_data(None, x, y, sigma)
        data_points(ax, *data)
    xs = dense(data[0]) if data is not None else np.linspace(*x_range, 400)
    units = relu_parts(model, params, xs)
    k = len(units)
    if k > 1:
        draw_parts(ax, xs, units, [f"ReLU {i}: {_formula(params, i)}" for i in range(1, k + 1)])
    total = model_values(model, params, xs)
    c = params.get("c", 0.0)
    plus_c = f" + c, c={c:.3g}" if c else ""
    if k == 1:
        label = "fit" if result is not None else _formula(params, 1)
    else:
        label = (f"fit (the {k} ReLUs added{plus_c})" if result is not None
                 else f"sum of the {k} ReLUs{plus_c}")
    (ln,) = ax.plot(xs, total, color=FIT_COLOR, lw=3.2, alpha=0.75 if k > 1 else 1.0,
                    label=label)
    ln.set_gid("sum")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if title is None:
        if k == 1:
            title = f"a ReLU: {_formula(params, 1)}" + (
                f" {'+' if c >= 0 else '−'} {abs(c):.3g}" if c else "")
        else:
            title = f"{k} ReLUs added: y = " + (
                "max(0, m1·x + b1) + max(0, m2·x + b2)" if k == 2 else "Σ max(0, mᵢ·x + bᵢ)") \
                + (" + c" if c else "")
        if result is not None:
            title += f"\n{result.loss_name} = {result.loss:.4g}"
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8, loc="best")
    ax.grid(True, alpha=0.3)
    return fig


def _formula(params, i) -> str:
    m, b = params[f"m{i}"], params[f"b{i}"]
    return f"max(0, {m:.3g}·x {'+' if b >= 0 else '−'} {abs(b):.3g})"
