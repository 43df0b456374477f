"""The exact minimum of the MAE where it is not a vertex: Newton's method on an edge.

For a model linear in its parameters the MAE's minimum is a vertex (P points on the curve).
For a nonlinear one it need not be: the curve may pass through only ``m < P`` points Z and
sit, along the remaining ``P - m`` directions, at the bottom of a smooth valley (a Gaussian
through 3 of its 25 points, its width set by curvature, not by a fourth point). There IRLS
converges only linearly, at a rate near 1 (its majoriser's curvature dwarfs the model's),
and the vertex steps (``mae_vertex``) find no certified vertex. With the signs ``s_N`` of the
other points held, the MAE there is the smooth problem

    minimise  phi(theta) = sum_N s_i r_i(theta)   subject to   r_Z(theta) = 0,

whose Lagrange-Newton (SQP) step solves

    [ H    J_Z^T ] [ d ]     [ -J_N^T s_N ]
    [ J_Z    0   ] [ l ]  =  [ -r_Z       ],     H = Hessian of  sum_N s_i r_i + sum_Z l_i r_i

(``l`` the multipliers of the last step; the first from the least-squares ``J_Z^T l =
-J_N^T s_N``). It converges quadratically once Z is right. Z starts as the ``P - 1``
points nearest the curve, or those already on it, and changes as an active set does. A
result counts only where the first-order test certifies it (``irls_check``: zero in the
subgradient, every ``|l_i| <= 1``), the Hessian curves up along the edge (the
second-order test, which tells a minimum from a saddle) and its MAE is not above the
start's. The steps are not required to lower the MAE on the way (the L1 merit function
rejects good Newton steps near the solution, the Maratos effect): only the end point is
judged, by those tests.

    >>> import torch
    >>> y = torch.tensor([0.0, 0.5], dtype=torch.float64)
    >>> def residuals(t):                   # (t - 1)^2 + 1 above both points: no kink
    ...     return (t[0] - 1) ** 2 + 1 - y
    >>> theta, certified = edge_minimum(residuals, torch.tensor([1.3], dtype=torch.float64))
    >>> round(float(theta[0]), 12), certified
    (1.0, True)
"""
from __future__ import annotations

import math

import torch
from torch.autograd.functional import hessian as _hessian

from .irls_check import KINK_ULPS, certify, rounding_level
from .losses import LOSSES
from .lm import residuals_and_jacobian

ON_CURVE = 1e-6      # residuals below this times the largest count as on the curve
STEPS = 60            # Newton steps and changes of Z, in all, from one start
HALVINGS = 10         # of a step that leads where the residuals are not finite


def edge_minimum(residuals, theta: torch.Tensor, *, jacobian=None, ys: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, bool]:
    """From ``theta`` near the minimum: ``(theta, certified)``, a certified minimum of
    ``sum |residuals|`` on an edge (or a vertex) of the MAE, or ``theta`` and False.

    ``residuals(theta) -> (n,)`` must be twice differentiable by autograd; ``jacobian(theta)
    -> (r, J)`` (by default autograd); ``ys``: ``y / sigma`` ``(n,)``, for the certificate's
    rounding levels (``irls_check.rounding_level``)."""
    jacobian = jacobian or (lambda t: residuals_and_jacobian(residuals, t))
    theta = theta.detach()
    p = theta.shape[-1]
    try:
        r, _ = jacobian(theta)
    except RuntimeError:
        return theta, False
    if not bool(torch.isfinite(r).all()) or r.shape[0] <= p:
        return theta, False
    start = _mae(r)
    order = torch.argsort(r.abs()).tolist()
    tried = set()
    # Z from the P - 1 points nearest the curve, and from those on it already (the active
    # set adds and drops points from there)
    tiny = int((r.abs() <= ON_CURVE * float(r.abs().max())).sum())
    for m in dict.fromkeys((p - 1, min(tiny, p - 1))):
        found = _active_set(residuals, jacobian, theta, order[:m], torch.sign(r), p, tried)
        if found is None:
            continue
        found, on = found
        if ys is not None:
            found = _onto(jacobian, found, on, ys)
        rf, jac = jacobian(found)
        if not _mae(rf) <= start * (1 + 1e-12):
            continue
        level = None if ys is None else rounding_level(rf[None], jac[None], found[None],
                                                       ys[None])
        ok, _ = certify(LOSSES["mae"], rf[None], jac[None], level=level)
        if bool(ok[0]):
            return found, True
    return theta, False


def _active_set(residuals, jacobian, theta, on: list, signs, p: int, tried: set):
    """Lagrange-Newton steps on ``min sum_N s_i r_i`` s.t. ``r_Z = 0`` (Z = ``on``), changing
    Z as an active-set method does: a point of N whose residual changes sign along the step
    joins Z where it reaches zero; at a stationary point a point of Z whose multiplier has
    ``|l_k| > 1`` leaves it, its residual taking the sign of ``l_k`` (the MAE falls at the
    rate ``|l_k| - 1`` that way). A step is halved only where the residuals are not finite.
    Returns the point where no multiplier exceeds 1 and its Z, or None (no convergence, a
    singular system, a Z seen before at a stationary point)."""
    eps = torch.finfo(theta.dtype).eps
    tight = max(1e-9, 100 * eps)
    on, signs = list(on), signs.clone()
    lam, last = None, float("inf")
    r, jac = jacobian(theta)

    def leave(k: int) -> None:
        i = on[k]
        small = float(r[i].abs()) <= tight * max(float(r.abs().max()), 1e-300)
        signs[i] = torch.sign(lam[k]) if small else torch.sign(r[i])
        del on[k]

    for _ in range(STEPS):
        if not (bool(torch.isfinite(jac).all()) and bool(torch.isfinite(r).all())):
            return None
        m = len(on)
        off = torch.ones_like(r, dtype=torch.bool)
        off[on] = False
        g = jac[off].transpose(0, 1) @ signs[off]
        jz = jac[on]
        if lam is None or lam.numel() != m:
            lam = torch.linalg.lstsq(jz.transpose(0, 1), -g[:, None]).solution[:, 0] if m \
                else g.new_zeros(0)
        weights = torch.where(off, signs, 0.0)
        weights[on] = lam
        try:
            h = _hessian(lambda t: (weights * residuals(t)).sum(), theta)
        except RuntimeError:
            return None
        kkt = theta.new_zeros(p + m, p + m)
        kkt[:p, :p], kkt[:p, p:], kkt[p:, :p] = h, jz.transpose(0, 1), jz
        sol, info = torch.linalg.solve_ex(kkt, torch.cat([-g, -r[on]]))
        if int(info) != 0 or not bool(torch.isfinite(sol).all()):
            return None
        d, lam = sol[:p], sol[p:]
        t = 1.0
        for _ in range(HALVINGS + 1):
            trial = theta + t * d
            r_t, jac_t = jacobian(trial)
            if math.isfinite(_mae(r_t)):
                break
            t *= 0.5
        else:
            return None
        # the first point of N whose residual changed sign on the way joins Z where the
        # secant through its two values reaches zero
        cross = off & (signs * r > 0) & (signs * r_t < 0)
        joins = None
        if m < p and bool(cross.any()):
            at = torch.where(cross, r / (r - r_t), math.inf)
            joins = int(at.argmin())
            t *= float(at[joins])
            trial = theta + t * d
            r_t, jac_t = jacobian(trial)
            if not math.isfinite(_mae(r_t)):
                return None
        theta, r, jac = trial, r_t, jac_t
        if joins is not None:
            on.append(joins)
            lam, last = None, float("inf")
            continue
        size, norm = float(d.norm()) * t, max(float(theta.norm()), 1e-300)
        # at the rounding level of the parameters, or no longer shrinking close to it
        if size <= 16 * eps * norm or (size > 0.9 * last and size <= 1e-8 * norm):
            if m == 0 or float(lam.abs().max()) <= 1 + tight:
                return (theta, on) if _curves_up(h, jz) else None
            key = frozenset(on)
            if key in tried:
                return None
            tried.add(key)
            leave(int(lam.abs().argmax()))
            lam, last = None, float("inf")
            continue
        last = size
    return None


def _onto(jacobian, theta: torch.Tensor, on: list, ys: torch.Tensor, steps: int = 3
          ) -> torch.Tensor:
    """``theta`` moved onto ``r_Z = 0`` (Z = ``on``) by least-change Newton steps
    ``-pinv(J_Z) r_Z``, while some ``r_Z`` is above its rounding level (``KINK_ULPS`` of
    ``irls_check.rounding_level``; ``ys = y / sigma``) and they shrink it: the active set
    stops where its steps stop shrinking (1e-8 of the parameters, with a singular
    Hessian), which can leave ``r_Z`` far above its rounding level, where the certificate
    sees no kink."""
    if not on:
        return theta
    r, jac = jacobian(theta)
    for _ in range(steps):
        level = rounding_level(r[None], jac[None], theta[None], ys[None])[0]
        if not bool((r[on].abs() > KINK_ULPS * level[on]).any()):
            break
        now = float(r[on].abs().max())
        trial = theta - torch.linalg.pinv(jac[on]) @ r[on]
        r_t, jac_t = jacobian(trial)
        if not (bool(torch.isfinite(r_t).all()) and float(r_t[on].abs().max()) < now):
            break
        theta, r, jac = trial, r_t, jac_t
    return theta


def _curves_up(h: torch.Tensor, jz: torch.Tensor) -> bool:
    """Whether the Hessian ``h`` is positive semidefinite on the directions that keep
    ``r_Z = 0`` (the null space of ``J_Z``): a minimum along the edge, not a maximum or a
    saddle, which the first-order test cannot tell apart."""
    p, m = h.shape[0], jz.shape[0]
    if m >= p:
        return True
    null = torch.linalg.svd(jz, full_matrices=True)[2][m:].transpose(0, 1) if m else \
        torch.eye(p, dtype=h.dtype, device=h.device)
    eig = torch.linalg.eigvalsh(null.transpose(0, 1) @ h @ null)
    size = max(float(h.abs().max()), 1e-300)
    return float(eig.min()) >= -1e-8 * size


def _mae(r: torch.Tensor) -> float:
    value = float(r.abs().sum())
    return value if value == value else float("inf")
