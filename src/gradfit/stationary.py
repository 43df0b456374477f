"""Whether a gradient method's stop is at a stationary point, or on a plateau.

gd, momentum, adam, rmsprop and L-BFGS stop by rules on the loss's change (``ftol``) or the
gradient's norm (``gtol``). Both also fire where the loss is nearly flat without being at
a minimum: ``a*exp(b*x)`` over x up to 1000 from ``b = 0.1`` drifts to ``b < 0``, where the
model is zero at every point but one and the loss hardly moves (adam stopped there "by
ftol" at 279, the minimum being 0). What tells them apart is the gradient relative to its
own scale, as LM's ``gtol`` and IRLS's Huber test measure it: the largest cosine between
the loss's residual weights ``psi(r)`` (``r`` for mse and rmse, ``clip(r, -delta,
delta)`` for huber) and a column of the Jacobian over the free parameters. Measured on
this project's examples, stops at a minimum give at most 5e-6; plateaus 2e-2 to 1, and so
does rmsprop bouncing across a huber minimum with its loss 14% above it. ``PLATEAU`` lies
between. The mae loss has no gradient at its minimum and is not judged, nor are models
with kinks (``smooth``): ReLU sums and networks stop on kinks with one-sided slopes (the
playground's relu:8 by gd at a cosine of 0.04).

    >>> import numpy as np, gradfit
    >>> x = np.linspace(0, 1000, 50)
    >>> r = gradfit.fit("a*exp(b*x)", x, 2 * np.exp(0.003 * x), p0={"a": 1, "b": 0.1},
    ...                 optimizer="adam", steps=3000)
    >>> r.converged, r.message.startswith("the loss stopped changing, but not at a minimum")
    (False, True)
"""
from __future__ import annotations

import math
import re

import torch

from .batch_lm import UNDERFLOW, data_norm, message, too_small
from .irls_check import huber_certificate
from .lm import free_residuals_and_jacobian

PLATEAU = 1e-3        # a largest cosine above this is not a stationary point
EXACT = 1e-14         # a final loss this small against the start's: an exact fit, a minimum


def plateau_message(problem, final: torch.Tensor, free: tuple[str, ...],
                    first_loss: float | None = None, final_loss: float | None = None
                    ) -> str | None:
    """A message when the point ``final`` is not stationary in the ``free`` parameters
    (see the module's docstring), else None; None too for the mae loss, and for a loss
    fallen to ``EXACT`` times its scale (``_loss_scale``): a loss that cannot be negative,
    at zero, whose residuals left are rounding and their direction means nothing."""
    loss = problem.loss
    if loss.name not in ("mse", "rmse", "huber") or not free or not smooth(problem.model):
        return None
    names = problem.model.param_names
    idx = torch.tensor([names.index(k) for k in free], device=final.device)
    r, jac = free_residuals_and_jacobian(problem, final, idx)
    ys = problem.y if problem.sigma is None else problem.y / problem.sigma
    if final_loss is not None and bool(underflowed(torch.tensor([final_loss]), r[None],
                                                   ys[None])):
        return UNDERFLOW_TEXT
    if final_loss is not None and final_loss <= EXACT * _loss_scale(problem, final, first_loss):
        return None
    delta = loss.delta if loss.name == "huber" else float("inf")
    _, cos = huber_certificate(r[None], jac[None], delta)
    worst = float(cos[0])
    if worst <= PLATEAU:
        return None
    with torch.no_grad():
        col = (jac * r.clamp(-delta, delta).unsqueeze(-1)).sum(0).abs() / \
            torch.linalg.vector_norm(jac, dim=0).clamp_min(1e-300)
    return plateau_text(worst, free[int(col.argmax())])


UNDERFLOW_TEXT = message(UNDERFLOW, {})


def underflowed(loss: torch.Tensor, r: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(k,)`` True where a squared loss ``loss`` ``(k,)`` of residuals ``r`` ``(k, n)`` on
    data ``y`` ``(k, n)`` has underflowed (``batch_lm.too_small``, LM's ``UNDERFLOW``): no
    test on the loss (an exact fit, ftol) means anything there."""
    return too_small(loss.to(r.dtype), (r != 0).any(-1), data_norm(y.to(r.dtype)))


KINKS = re.compile(r"\b(abs|relu|min|max)\s*\(")


def smooth(model) -> bool:
    """Whether the model is smooth in its parameters, so that a minimum has no gradient:
    not a flexible model (sums of ReLUs, a ReLU network) nor an expression with ``abs``,
    ``relu``, ``min`` or ``max``, whose minima can sit on a kink with one-sided slopes (as
    mae's do)."""
    if not model.identifiable:
        return False
    source = getattr(getattr(model, "expression", None), "source", None)
    return source is None or KINKS.search(source) is None


def plateau_text(worst: float, name: str) -> str:
    """The message of a stop that is not stationary (``fit`` and ``fit_many`` alike)."""
    return (f"the loss stopped changing, but not at a minimum: its gradient is still "
            f"{worst:.2g} of its scale (along {name}), where a minimum has none (a plateau "
            "where the model's derivatives nearly vanish, or steps bouncing across the "
            "minimum); try optimizer='auto' (the exact method), a smaller learning rate, other "
            "starting values, or rescaled x")


def _loss_scale(problem, final: torch.Tensor, first_loss: float | None) -> float:
    """The smaller of the loss at the start and at all-zero parameters (the start's can be
    astronomic: ``exp(0.1 * 1000)``), as ``verdict.judge`` scales it."""
    with torch.no_grad():
        zero = float(problem.objective(torch.zeros_like(final)))
    found = [v for v in (zero, first_loss) if v is not None and math.isfinite(v) and v > 0]
    return min(found) if found else 0.0
