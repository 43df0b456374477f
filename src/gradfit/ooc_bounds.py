"""Bounds and fixed parameters for the out-of-core fit, as ``fit`` honours them.

The out-of-core fit sees the data only through passes that return sums over the points:
``S``, ``A = J^T J`` and ``g = J^T r`` (LM), or the loss and its gradient (gd, adam). Both
carry over to ``fit``'s change of variables ``p = T(u)`` (``bounds.ParamTransform``: fixed
parameters leave the vector, bounded ones go through sin or sqrt). Each free ``p_i`` depends
on its own ``u_i`` only, so with ``D = diag(dp_free/du)``:

    J_u = J[:, free] D,    A_u = D A[free, free] D,    g_u = D g[free].

LM, as in ``fit``, then finishes with the active-set method of ``active_set.refine``: the
bounds within a hair of the point are held, the rest refitted without bounds (exact, full
precision) and each held bound certified by its KKT multiplier, the cosine
``mu_i = +-g_i / (|J_i| |r|) = +-g_i / sqrt(A_ii S)``. ``refine`` reads that cosine off a
problem's residuals; ``MomentsProblem`` gives it ``P + 1`` residuals that have the data's
``A``, ``g`` and ``S`` (``J~ = L^(1/2) V^T`` from ``A = V L V^T``, ``r~ = J~^+ g`` padded by
one residual holding the rest of ``S``), so the multipliers are those of the whole data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .active_set import InnerEnd, refine
from .bounds import ParamTransform
from .normal_lm import Moments, _covariance, normal_lm


def on_transform(moments, transform: ParamTransform):
    """``u -> Moments`` in the internal variables of ``transform``, from ``p -> Moments``."""
    free_at = [transform.names.index(n) for n in transform.free]

    def internal(u):
        ut = torch.as_tensor(np.asarray(u, dtype=np.float64))
        p, slope = torch.func.jvp(transform.external, (ut,), (torch.ones_like(ut),))
        m = moments(p.numpy())
        d = slope[free_at].numpy() if not transform.identity else np.ones(len(u))
        A = m.A[np.ix_(free_at, free_at)] * np.outer(d, d)
        return Moments(m.S, A, m.g[free_at] * d, m.n, m.yy)
    return internal


class MomentsProblem:
    """What ``active_set.multipliers`` reads of a problem, from one pass's moments."""

    def __init__(self, moments, loss):
        self.moments, self.loss = moments, loss
        self.y = torch.zeros(1, dtype=torch.float64)

    def residuals(self, theta: torch.Tensor) -> torch.Tensor:
        at = theta.detach()
        m = self.moments(at.numpy())
        w, V = np.linalg.eigh(m.A)
        root = np.sqrt(np.clip(w, 0.0, None))
        jac = torch.as_tensor(root[:, None] * V.T)                  # J~^T J~ = A
        r0 = np.where(root > 0, (V.T @ m.g) / np.where(root > 0, root, 1.0), 0.0)   # J~^T r~ = g
        rest = math.sqrt(max(m.S - float(r0 @ r0), 0.0))            # |r~|^2 = S
        r = torch.as_tensor(np.append(r0, rest))
        jac = torch.cat([jac, torch.zeros(1, jac.shape[1], dtype=jac.dtype)])
        return r + jac @ (theta - at)


@dataclass
class _Inner(InnerEnd):
    """An LM run under one transform, as much of a ``FitResult`` as ``refine`` reads."""

    S: float = 0.0
    moments: object = None


def lm_with(moments, names, p0: dict, bounds: dict, fixed: dict, *, n: int, steps: int,
            options: dict) -> _Inner:
    """LM from ``p0`` with these bounds and fixed values (``p0`` inside the bounds)."""
    tr = ParamTransform(tuple(names), bounds, fixed)
    start, _ = tr.move_inside({**p0, **tr.fixed})
    u0 = tr.internal(start).numpy()
    r = normal_lm(on_transform(moments, tr), u0, n=n, steps=steps, options=options,
                  names=tr.free)
    p = tr.external(torch.as_tensor(r.theta)).tolist()
    return _Inner(dict(zip(names, p)), r.steps, r.reason, r.message, r.S)


def bounded_lm(moments, names, start: dict, bounds: dict, fixed: dict, loss, *, n: int,
               steps: int, options: dict, absolute_sigma: bool):
    """``fit``'s LM with bounds and fixed values, out of core: the transformed run, then the
    active-set finish. Returns ``(params, S, reason, message, steps, covariance over the
    free parameters off their bounds, names of those, at_bound)``."""
    from .fit_ends import refined_reason
    first = lm_with(moments, names, start, bounds, fixed, n=n, steps=steps, options=options)
    params, reason, message, total = first.params, first.reason, first.message, first.steps
    at_bound: dict = {}
    free_bounds = {k: b for k, b in bounds.items() if k not in fixed}
    # as fit: even a failed first run (a lost rank on a bound, where the change of variables
    # flattens) ends with the active-set finish from where it stopped
    if free_bounds and first.reason != "diverged":
        def solve(p0, held, bnds):
            return lm_with(moments, names, p0, bnds, held, n=n, steps=max(steps, 1000),
                           options=options)
        refined = refine(MomentsProblem(moments, loss), tuple(names), free_bounds, fixed,
                         params, solve)
        params, at_bound, total = refined.params, refined.at_bound, total + refined.steps
        reason, message = refined_reason(refined, reason, message)
    theta = np.array([params[k] for k in names])
    m = moments(theta)
    keep = [i for i, k in enumerate(names) if k not in fixed and k not in at_bound]
    sub = Moments(m.S, m.A[np.ix_(keep, keep)], m.g[keep], m.n, m.yy)
    cov = _covariance(sub, len(keep), absolute_sigma) if reason != "failed" and keep else None
    return theta, m.S, reason, message, total, cov, [names[i] for i in keep], at_bound
