"""The exact minimum of the MAE from a nearby vertex: descent along the edges of the
least-absolute-deviations polytope (the simplex method of Barrodale and Roberts, on the
model's linearisation).

A minimum of ``f(theta) = sum_i |r_i(theta)|`` for a model with P parameters is, generically,
a *vertex*: P points Z on the curve (``r_Z = 0``), the others N off it with signs ``s_N``.
There ``f`` is optimal when the multipliers

    l = -J_Z^-T J_N^T s_N        (zero lies in the subgradient: ``J_N^T s_N + J_Z^T l = 0``)

all satisfy ``|l_k| <= 1``. If ``|l_k| > 1``, moving point k off the curve with the sign of
``l_k`` while the other points of Z stay on it, ``J_Z d = sign(l_k) e_k``, lowers ``f`` at the
rate ``1 - |l_k|``. Along that edge ``f`` is convex and piecewise linear; each point of N
whose residual reaches zero at ``t_i = -r_i / (J_i d) > 0`` raises the slope by
``2 |J_i d|``. The minimum lies at the point where the slope turns non-negative (a weighted
median): that point enters Z, k leaves. For a model linear in its parameters each exchange
is exact and ``f`` falls until the vertex is certified; for a nonlinear one the new vertex is
interpolated by Newton's method from the linear prediction, and kept if ``f`` fell and the
curve moved as the linearisation predicted (``_linear_here``: else the solve may have landed
on a far vertex of another basin, an alias of a sine through the same points).

IRLS approaches the minimum fast, but on many points (tens of thousands) it cannot single
out the P points of the optimal vertex: the residuals near zero are denser than its
smoothing, and it crawls. The exchanges finish the job in a few steps of ``O(n log n)`` each.

    >>> import torch
    >>> x = torch.arange(5.0, dtype=torch.float64); y = torch.tensor([0, 1, 2, 3, 9.0]).double()
    >>> def residuals(t):                   # a*x + b, from the vertex through points 3 and 4
    ...     return t[..., :1] * x + t[..., 1:] - y
    >>> theta, certified = descend(residuals, torch.tensor([6.0, -15.0]).double(), steps=10)
    >>> [round(v, 12) + 0.0 for v in theta.tolist()], certified
    ([1.0, 0.0], True)
"""
from __future__ import annotations

import torch

from .irls_check import KINK_ULPS, no_scale, rounding_level
from .lm import residuals_and_jacobian

TIGHT = 1e-9           # |l_k| above 1 + TIGHT: not optimal; on-curve residuals below TIGHT


def _tight(t: torch.Tensor) -> float:
    """``TIGHT``, or the rounding level of a less precise dtype."""
    return max(TIGHT, 100 * torch.finfo(t.dtype).eps)


def _on_curve(r: torch.Tensor, jac: torch.Tensor, theta: torch.Tensor, ys, largest: float,
              zero_data: torch.Tensor | None = None) -> torch.Tensor:
    """Whether each residual ``r`` (with its Jacobian rows ``jac``) is zero: within
    ``_tight`` of the ``largest`` residual, or of its own rounding level (data far from zero,
    ``ys`` = ``y / sigma`` of those rows; ``irls_check.rounding_level``, ``zero_data``: of
    the whole problem, ``irls_check.no_scale``)."""
    near = _tight(r) * max(largest, 1e-300)
    if ys is None or bool((r.abs() <= near).all()):
        return r.abs() <= near
    level = rounding_level(r[None], jac[None], theta[None], ys[None], zero_data=zero_data)[0]
    return r.abs() <= torch.clamp(KINK_ULPS * level, min=near)


def descend(residuals, theta: torch.Tensor, *, steps: int, rows=None, jacobian=None, ys=None):
    """From ``theta`` near a vertex: ``(theta, certified)``, the vertex reached by at most
    ``steps`` exchanges, each lowering the MAE, and whether it is certified optimal.

    ``residuals(theta) -> (n,)``; ``jacobian(theta) -> (r, J)`` (by default autograd on
    ``residuals``); ``rows(idx)``: that function on the points ``idx`` alone (by default
    autograd on ``residuals`` indexed; a model evaluated on P points is cheaper); ``ys``
    ``(n,)``: ``y / sigma``, for the residuals' rounding levels (else on the curve means
    ``TIGHT`` of the largest residual)."""
    jacobian = jacobian or (lambda t: residuals_and_jacobian(residuals, t))
    rows = rows or (lambda idx: lambda t: residuals_and_jacobian(lambda u: residuals(u)[idx], t))

    # all-zero data: the unit scale, known from the whole problem (its rows' ys are some)
    zero = None if ys is None else no_scale(ys[None])

    def interpolate(idx, t):
        return _newton(residuals, rows(idx), idx, t, ys=None if ys is None else ys[idx],
                       zero_data=zero)
    p = theta.shape[-1]
    r = _residuals(residuals, theta)
    if r is None or r.shape[0] <= p:
        return theta, False
    r, jac = jacobian(theta)
    start = interpolate(torch.argsort(r.abs())[:p], theta)
    if start is None or not _linear_here(r, jac, theta, start, residuals, ys):
        return theta, False
    theta, best = start, _mae(residuals, start)
    for _ in range(steps):
        r, jac = jacobian(theta)
        if not (bool(torch.isfinite(jac).all()) and bool(torch.isfinite(r).all())):
            return theta, False
        edge = _edge(r, jac, p, theta, ys, zero)
        if edge is None:
            return theta, False
        if edge is True:
            return theta, True
        points, guess = edge
        trial = interpolate(points, theta + guess)
        if trial is not None and not _linear_here(r, jac, theta, trial, residuals, ys):
            trial = None
        value = _mae(residuals, trial) if trial is not None else float("inf")
        if not value < best:
            return theta, False
        theta, best = trial, value
    return theta, False


NONLINEAR = 0.5        # a vertex whose curve moved off the linear prediction by more than
                       # this much of the predicted move is not the linearisation's vertex


def _linear_here(r, jac, theta, new, residuals, ys=None) -> bool:
    """Whether the curve's move from ``theta`` (residuals ``r``, Jacobian ``jac``) to
    ``new`` is the linearisation's, to ``NONLINEAR`` of the predicted move: ``|r(new) - r -
    J (new - theta)| <= NONLINEAR |J (new - theta)|``, plus the residuals' rounding
    (``KINK_ULPS`` of their levels, ``irls_check.rounding_level``, with ``ys``; else
    ``_tight`` of them).

    The walk's steps are those of the linearised LP at ``theta``, and the interpolation
    from there a Newton solve: where the model is far from its linearisation the solve may
    land anywhere (a sine's frequency from 1.57 to 80731, the alias through the same P
    points), a vertex of another basin the walk then descends in. Exact for a model linear
    in its parameters, whose every vertex passes."""
    r_new = _residuals(residuals, new)
    if r_new is None:
        return False
    move = jac @ (new - theta)
    off = float(torch.linalg.vector_norm(r_new - r - move))
    if ys is None:
        noise = _tight(r) * float(torch.linalg.vector_norm(r) + torch.linalg.vector_norm(r_new))
    else:
        level = rounding_level(torch.stack([r, r_new]), jac.expand(2, -1, -1),
                               torch.stack([theta, new]), ys.expand(2, -1))
        noise = KINK_ULPS * float(torch.linalg.vector_norm(level, dim=-1).sum())
    return off <= NONLINEAR * float(torch.linalg.vector_norm(move)) + noise


def _edge(r: torch.Tensor, jac: torch.Tensor, p: int, theta: torch.Tensor, ys=None,
          zero_data: torch.Tensor | None = None):
    """At a vertex: True if certified, else ``(rows, step)``: the next vertex's points
    and the linear step to it; None where this is no (regular) vertex."""
    order = torch.argsort(r.abs())
    on, off = order[:p], order[p:]
    if not bool(_on_curve(r[on], jac[on], theta, None if ys is None else ys[on],
                          float(r.abs().max()), zero_data).all()):
        return None
    jz = jac[on]
    rhs = -(jac[off].transpose(0, 1) @ torch.sign(r[off]))
    lam, info = torch.linalg.solve_ex(jz.transpose(0, 1), rhs)
    if int(info) != 0 or not bool(torch.isfinite(lam).all()):
        return None
    k = int(lam.abs().argmax())
    if float(lam[k].abs()) <= 1 + _tight(r):
        return True
    e = torch.zeros(p, dtype=r.dtype, device=r.device)
    e[k] = torch.sign(lam[k])
    d = torch.linalg.solve(jz, e)
    jd = jac[off] @ d
    t = -r[off] / jd
    ahead = (t > 0) & torch.isfinite(t)
    if not bool(ahead.any()):
        return None                        # f falls without end along this edge
    t, slope_up, idx = t[ahead], 2 * jd[ahead].abs(), off[ahead]
    at = torch.argsort(t)
    slope = (1 - float(lam[k].abs())) + torch.cumsum(slope_up[at], 0)
    j = int(torch.searchsorted(slope, torch.zeros(1, dtype=slope.dtype)).clamp_max(len(at) - 1))
    rows = on.clone()
    rows[k] = idx[at[j]]
    return rows, t[at[j]] * d


def _newton(residuals, on_rows, rows: torch.Tensor, theta: torch.Tensor, steps: int = 30,
            ys=None, zero_data: torch.Tensor | None = None):
    """``theta`` with ``r_rows = 0`` (``on_rows(theta)``: those residuals and their
    Jacobian) by Newton's method from ``theta`` (P equations in P unknowns), or None where
    it does not converge (``ys``: ``y / sigma`` of the rows, as ``descend``'s)."""
    eps = torch.finfo(theta.dtype).eps
    for _ in range(steps):
        r, jac = on_rows(theta)
        step, info = torch.linalg.solve_ex(jac, -r)
        if int(info) != 0 or not bool(torch.isfinite(step).all()):
            return None
        theta = theta + step
        if float(step.norm()) <= 16 * eps * max(float(theta.norm()), 1e-300):
            return theta
    r = _residuals(residuals, theta)
    if r is None:
        return None
    r_on, jac = on_rows(theta)
    ok = bool(_on_curve(r_on, jac, theta, ys, float(r.abs().max()), zero_data).all())
    return theta if ok else None


def _residuals(residuals, theta):
    with torch.no_grad():
        r = residuals(theta)
    return r if bool(torch.isfinite(r).all()) else None


def _mae(residuals, theta) -> float:
    r = _residuals(residuals, theta)
    return float(r.abs().sum()) if r is not None else float("inf")
