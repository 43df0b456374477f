"""What to say when a fit has no finite loss at its start (no step to blame): the data too
large for the loss in this precision, a model undefined at a data point whatever its
parameters, a model outside its domain at these parameters (NaN), or else an overflow."""
from __future__ import annotations

import math

import torch

from .verdict import too_large_text


def no_finite_loss_advice(prob, point) -> str:
    """The advice for a loss or gradient that is not finite at ``point`` (the start), by its
    cause: a gradient undefined where the loss is finite first (it is no overflow)."""
    return undefined_derivative(prob, point) or too_large(prob, point) \
        or undefined_at(prob, point) or out_of_domain(prob, point) \
        or ("the model overflows near these parameters: try starting values (p0) nearer the "
            "answer, or rescale x or y (e.g. x/1000) so that the model stays finite")


def _points(prob, mask: torch.Tensor) -> str:
    """``point 3 (x = 0.5) and 2 other point(s)``: the first point of ``mask`` and a count."""
    i = int(mask.nonzero()[0, 0])
    x = prob.x[i]
    where = f"x = {float(x):g}" if x.ndim == 0 else \
        "(" + ", ".join(f"{n} = {float(v):g}" for n, v in zip(prob.model.input_names, x)) + ")"
    more = int(mask.sum()) - 1
    return f"point {i + 1} ({where})" + (f" and {more} other point(s)" if more else "")


#: most parameters whose derivatives are taken one by one to find where one is undefined
MAX_DERIVATIVES = 64


def undefined_derivative(prob, point) -> str | None:
    """The advice when the loss and the model are finite at ``point`` but the gradient is
    not: the model has no finite derivative in a parameter at some data point (``x^a`` at
    x <= 0, where its derivative in a, ``x^a*log(x)``, is NaN), which had been called an
    overflow, with "rescale x"; else None. The point and the parameter are named."""
    if point is None or not torch.is_floating_point(point):
        return None
    try:
        with torch.no_grad():
            loss = float(prob.objective(point))
            if not math.isfinite(loss) or \
                    not bool(torch.isfinite(prob.predict(point)).all()):
                return None
        p = point.detach().clone()
        with torch.enable_grad():
            q = p.clone().requires_grad_(True)
            grad = torch.autograd.grad(prob.objective(q), q, allow_unused=True)[0]
        if grad is None or bool(torch.isfinite(grad).all()):
            return None
        names = list(getattr(prob.model, "param_names", ()))
        bad_params = [i for i in range(p.numel()) if not math.isfinite(float(grad[i]))]
        bad = None
        for i in bad_params[:MAX_DERIVATIVES]:
            e = torch.zeros_like(p)
            e[i] = 1.0
            _, column = torch.autograd.functional.jvp(prob.predict, p, e)
            here = ~torch.isfinite(column)
            bad = here if bad is None else bad | here
    except Exception:               # a model autograd cannot take through twice: no advice
        return None
    which = ", ".join(names[i] for i in bad_params if i < len(names)) or "a parameter"
    where = f" at {_points(prob, bad)}" if bad is not None and bool(bad.any()) else ""
    why = "a power with a fitted exponent, x^a, needs x > 0: its derivative x^a*log(x) " \
        "is undefined at x <= 0"
    named = getattr(prob.model, "undefined_slope", None)      # sqrt(x - c) at x = c
    outer = getattr(prob, "transform", None)
    said = named(prob.x, outer.external(p) if outer is not None else p) if named else None
    where = "" if said else where                     # the function's words name the point
    return (f"at these parameters the gradient is undefined though the loss is finite "
            f"({loss:.6g}): the model has no "
            f"finite derivative in {which}{where} ({said or why}); expected data "
            "where the model is differentiable (leave out such points), or a model without "
            "that part there")


def too_large(prob, point) -> str | None:
    """The advice when the model is finite at ``point`` but the loss is not, and the data
    (``y / sigma``) alone, against a zero model, overflow the loss too: they are too large
    for it in this precision (squares overflow past about 1e154 in float64); else None."""
    if point is None:
        return None
    with torch.no_grad():
        finite = bool(torch.isfinite(prob.predict(point)).all())
        if not finite or math.isfinite(float(prob.objective(point))):
            return None
        ys = prob.y if prob.sigma is None else prob.y / prob.sigma
        if math.isfinite(float(prob.loss.reduce(ys, prob.loss.delta))):
            return None            # the data alone (against 0) are fine: the model is large
        top = float(ys.abs().max())
    if not top > 0:
        return None
    return too_large_text(top, prob.y.dtype, prob.sigma is not None)


def out_of_domain(prob, point) -> str | None:
    """The advice when the model is NaN, not infinite, at some data points at ``point``: a
    function outside its domain for these parameters (``sqrt(x - c)`` with ``c`` above
    some x), not an overflow; else None."""
    if point is None:
        return None
    with torch.no_grad():
        f = prob.predict(point)
    nan = torch.isnan(f)
    if not bool(nan.any()) or bool(torch.isinf(f).any()):
        return None
    return (f"at these parameters the model is undefined (NaN) at {_points(prob, nan)}"
            ": a function outside its domain there (the square root or log of a negative "
            "number, 0/0); expected starting values (p0) where the model is defined at every "
            "data point, and bounds that keep it so")


#: x is scaled down by 2**-k for these k to tell an overflow (finite at a smaller x) from
#: a point where the model is undefined (x = 0 stays 0, a negative x negative)
DOWN = tuple(2 ** j for j in range(11)) + (1074,)
#: a relative change of x that a pole (a/(x-1) at x = 1) does not survive and an overflow
#: of a large x does
NUDGE = 2.0 ** -20


def undefined_at(prob, point) -> str | None:
    """The advice when the model is not finite at a data point at ``point`` and at every
    other parameter set tried there (half, double, ones, zeros), by its cause; else None.

    * undefined at that x (a/x at x = 0, log or sqrt of a negative x): no start and no
      rescaling mends it, and x scaled down by any power of two stays so;
    * an overflow of the data's scale (a*x^2 at x = 1e200, exp(x) at x = 1000): x scaled
      down by a power of two (``DOWN``: as far as x*2**-1074, never to 0 or a subnormal)
      makes the model finite, and x nudged by a part in a million does not (a pole at an
      x such as 1 is no overflow: no advice here). It had been called "a division by zero,
      the log or square root of a negative number" on data of 1e200."""
    if point is None:
        return None
    with torch.no_grad():
        tries = [point, 0.5 * point, 2.0 * point, torch.ones_like(point),
                 torch.zeros_like(point)]     # zeros: an exp(b*x) that overflows is finite
        bad = torch.stack([~torch.isfinite(prob.predict(t)) for t in tries]).all(0)
        if not bool(bad.any()):
            return None
        outer = getattr(prob, "transform", None)
        ext = [outer.external(t) if outer is not None else t for t in tries]

        def finite_somewhere(x: torch.Tensor) -> torch.Tensor:
            return torch.stack([torch.isfinite(prob.model(x, t)) for t in ext]).any(0)

        x = prob.x
        tiny = torch.finfo(x.dtype).tiny
        rows = x.reshape(x.shape[0], -1)
        # a scale at which the model is finite, with no input driven to 0 or a subnormal
        down = torch.zeros_like(bad)
        for k in DOWN:
            scaled = x * 2.0 ** -k
            kept = ((scaled.reshape(rows.shape).abs() >= tiny) | (rows == 0)).all(-1)
            down |= finite_somewhere(scaled) & kept & bad
        # a pole at a point such as x = 1: finite a part in a million away from it
        pole = finite_somewhere(x * (1 + NUDGE)) | finite_somewhere(x * (1 - NUDGE))
        over = bad & down & ~pole
        undefined = bad & ~down
    if bool(undefined.any()):
        text = (f"the model is not finite at {_points(prob, undefined)} whatever its "
                "parameters: it is undefined there (a division by zero, the log or square "
                "root of a negative number); expected a model defined at every data point, "
                "or leave such points out")
        if bool(over.any()):
            text += "; " + _overflow_text(prob, over, leading=False)
        return text
    if bool(over.any()):
        return _overflow_text(prob, over)
    return None


def _overflow_text(prob, over: torch.Tensor, leading: bool = True) -> str:
    """``the model overflows float64 at x = 1e+200 (point 1 and 9 other point(s)) ...:
    rescale x`` with a power of ten to divide x by: the size of the x that overflow."""
    i = int(over.nonzero()[0, 0])
    x = prob.x
    where = f"x = {float(x[i]):g}" if x[i].ndim == 0 else \
        "(" + ", ".join(f"{n} = {float(v):g}" for n, v in
                        zip(prob.model.input_names, x[i])) + ")"
    more = int(over.sum()) - 1
    which = f"point {i + 1}" + (f" and {more} other point(s)" if more else "")
    size = float(x.reshape(x.shape[0], -1)[over].abs().max())
    power = max(math.floor(math.log10(size)), 1) if size > 0 and math.isfinite(size) else 3
    dtype = str(x.dtype).replace("torch.", "")
    head = "the model overflows" if leading else "it also overflows"
    return (f"{head} {dtype} at {where} ({which}) whatever its parameters, and is finite "
            f"at smaller x: rescale x (e.g. x/1e{power}, and the parameters with it) so that "
            "the model stays finite in this precision")


FAR_SCALE = 1e3      # a model this many times above or below the data's size is far off


def far_start_text(model_size: float, data_size: float) -> str:
    """What to add to an LM end that took no step from its start (``batch_lm``'s ROUGH):
    where the model's values there are ``FAR_SCALE`` or more off the data's size (rms of
    each), the start is far from the answer in scale (a*x^b at a = 1 on data of 2e20:
    "the model may not be smooth here" had sent the user looking at a smooth model)."""
    text = "; no step was taken from the start"
    if data_size > 0 and math.isfinite(data_size) and math.isfinite(model_size):
        ratio = model_size / data_size
        if ratio > FAR_SCALE or ratio < 1 / FAR_SCALE:
            return (text + f": there the model's values are about {ratio:.0e} times the "
                    "data's, so the start is far from the answer; expected starting values "
                    "(p0) that bring the model near the data's scale")
    return text + ": try other starting values (p0)"


def sizes(f: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """The rms sizes ``(model, data)`` of the model's values ``f`` and the data ``y``
    (weighted alike, or not at all), without squaring to overflow."""
    from .batch_lm import data_norm
    n = max(y.shape[-1], 1)
    return float(data_norm(f)) / math.sqrt(n), float(data_norm(y)) / math.sqrt(n)

