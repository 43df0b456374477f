"""Levenberg-Marquardt over B independent least-squares problems at once.

Problem ``b`` minimises ``S_b(theta_b) = sum_i r_bi(theta_b)^2`` with ``theta_b`` shaped
``(F,)``; ``fn(theta, idx)`` gives the residuals ``(b, n)`` of the problems ``idx`` at their
``theta`` ``(b, F)`` (padded points of a ragged batch give ``r = 0``, so they add nothing).
Every quantity below is per problem; one tensor program steps all the problems still running.

At an accepted point, with ``J = dr/dtheta`` ``(n, F)`` (exact, from autograd, for the whole
batch in one pass) and Moré's scaling ``D = diag(d)``, ``d`` the largest column norms of
``J`` seen so far (as ``lm.py`` and MINPACK), the scaled quantities are

    A = D^-1 J^T J D^-1,   g = D^-1 J^T r,

and a trial step solves ``(A + lam I) y = -g`` by a batched Cholesky factorisation
(``F x F``, ``F`` small: cheaper than B SVDs, and accurate, since the fixed point
``g = 0`` does not depend on how exactly the step is solved), ``delta = D^-1 y``. Its
predicted reduction is ``pred = -2 g^T y - y^T A y = y^T A y + 2 lam |y|^2`` (a sum
of squares, never negative) and the gain ratio ``rho = (S - S_trial) / pred``. The damping
follows Nielsen (1999): a step with ``rho >= 1e-4`` is accepted and
``lam <- lam * max(1/3, 1 - (2 rho - 1)^3)``; a rejected one multiplies ``lam`` by
``nu`` and doubles ``nu``. ``lam`` starts at ``1e-3`` (the scaled ``A`` has a unit diagonal).

Stopping, per problem, as ``lm.py`` (defaults in ``lm.OPTIONS``):

- ``gtol``: the largest cosine between ``r`` and a column of ``J`` is at most ``gtol``
  (or ``S = 0``, a perfect fit);
- ``ftol``: an accepted step lowered ``S`` by at most ``ftol * S`` and predicted no more;
- ``xtol``: an accepted step had ``|y| <= xtol |D theta|``. Once the Gauss-Newton step's
  predicted gain is below the rounding level of ``S`` (``noise = 2 |r| e + e^2``,
  ``e = eps (|r| + 2 |y|)``), ``S`` can no longer tell better from worse: Gauss-Newton
  steps are then taken while they keep shrinking (and ``S`` does not rise beyond
  rounding), which brings the parameters, not only ``S``, to the rounding level;
- ``failed``: residuals or Jacobian not finite at the start, ``max_tries`` rejected trials
  in a row, or no step lowers ``S`` although the gradient does not vanish.

A problem that stops leaves the active set (the batch is compacted), so it costs no more
work, and a failure of one problem (non-finite values, a singular system) only rejects
that problem's step. Each iteration needs only ``M = [J r]^T [J r]`` of the ``(n, F+1)``
block (one batched product). The result carries ``D``, on which a lost rank is judged at
the end (``many_engines.covariance``: singular values of ``J D^-1`` below
``eps * max(n, F) * s_max``, as ``lm.py``).

    >>> import torch
    >>> x = torch.linspace(0, 3, 30, dtype=torch.float64)
    >>> truth = torch.tensor([[2.5, 1.3], [1.0, 0.5]], dtype=torch.float64)
    >>> y = truth[:, :1] * torch.exp(-truth[:, 1:] * x)
    >>> fn = lambda th, idx: th[:, :1] * torch.exp(-th[:, 1:] * x) - y[idx]
    >>> out = batch_lm(fn, torch.ones(2, 2, dtype=torch.float64))
    >>> [CODES[c] in ("gtol", "ftol", "xtol") for c in out.code.tolist()]
    [True, True]
    >>> torch.allclose(out.theta, truth, rtol=1e-12)
    True
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple

import torch

from .lm import OPTIONS, jacobian_from_graph

# outcome codes -> reason names of result.REASONS ("perfect" and "rank" are gtol / failed)
CODES = ("running", "gtol", "ftol", "xtol", "max_steps", "failed", "failed", "failed", "gtol")
RUNNING, GTOL, FTOL, XTOL, MAX_STEPS, NONFINITE, TRIES, ROUGH, PERFECT = range(9)
MESSAGES = {
    GTOL: "the gradient vanished (largest cosine of residuals and Jacobian columns <= gtol)",
    FTOL: "the residual sum of squares stopped falling (relative reduction below ftol)",
    XTOL: "the parameters stopped changing (relative step below xtol, or at the rounding "
          "level of the data)",
    MAX_STEPS: "reached the step limit",
    NONFINITE: "the residuals or their derivatives are not finite at the start",
    TRIES: "no step lowered the loss in max_tries tries in a row",
    ROUGH: "no step lowered the loss, down to steps at the rounding level of the "
           "parameters, although the gradient does not vanish: the model may not be smooth",
    PERFECT: "the residuals vanish: a perfect fit",
}
ACCEPT = 1e-4
LAM0 = 1e-3              # the first damping (the scaled J^T J has a unit diagonal)


class BatchLMResult(NamedTuple):
    theta: torch.Tensor     # (B, F) the last accepted point
    rss: torch.Tensor       # (B,) S there
    steps: torch.Tensor     # (B,) accepted steps
    code: torch.Tensor      # (B,) outcome code (CODES)
    d: torch.Tensor         # (B, F) Moré's column scaling at the end


def residuals_and_jacobians(fn: Callable, theta: torch.Tensor, idx: torch.Tensor):
    """``r = fn(theta, idx)`` ``(b, n)`` and ``J`` ``(b, n, F)`` in one double-backward pass
    (``lm.jacobian_from_graph``: row ``b`` of ``J`` depends on ``theta[b]`` alone)."""
    t = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        r = fn(t, idx)
        if not r.requires_grad:      # the residuals do not depend on theta
            return r.detach(), torch.zeros(r.shape + t.shape[-1:], dtype=r.dtype,
                                           device=r.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jac = jacobian_from_graph(r, t)
    return r.detach(), jac.detach()


def moments(jrt: torch.Tensor) -> torch.Tensor:
    """``M = [J r]^T [J r]`` ``(b, F+1, F+1)``: ``J^T J``, ``J^T r`` and ``S = r^T r`` from
    one batched product; everything an LM iteration needs of the block ``[J r]^T``
    ``(b, F+1, n)``. Small batches by elementwise products (a batched matrix product
    starts threads whose wait costs more than the work on a busy machine)."""
    if jrt.numel() * jrt.shape[-2] <= 2 ** 16:
        return (jrt.unsqueeze(-2) * jrt.unsqueeze(-3)).sum(-1)
    return jrt @ jrt.transpose(-1, -2)


def solve_spd(a: torch.Tensor, b: torch.Tensor):
    """``a y = b`` for a batch of small symmetric positive definite ``a`` ``(k, F, F)`` and
    ``b`` ``(k, F)`` or ``(k, F, m)``, by a Cholesky factorisation written out over the batch
    (a few vector operations per entry: for small ``F`` far cheaper than a LAPACK call per
    matrix); ``ok`` False where ``a`` is not positive definite (or not finite)."""
    F = a.shape[-1]
    if F > 8:
        chol, info = torch.linalg.cholesky_ex(a)
        ok = (info == 0) & torch.isfinite(chol).flatten(1).all(-1)
        eye = torch.eye(F, dtype=a.dtype, device=a.device)
        chol = torch.where(ok[:, None, None], chol, eye)
        rhs = b.unsqueeze(-1) if b.ndim == 2 else b
        y = torch.cholesky_solve(rhs, chol)
        y = y.squeeze(-1) if b.ndim == 2 else y
    else:
        y, ok = _cholesky_solve_small(a, b)
    ok = ok & torch.isfinite(y).flatten(1).all(-1)
    keep = ok.reshape((-1,) + (1,) * (b.ndim - 1))
    return torch.where(keep, y, 0.0), ok


def _cholesky_solve_small(a, b):
    F = a.shape[-1]
    wide = b.ndim == 3
    L = [[None] * F for _ in range(F)]
    ok = torch.ones(a.shape[0], dtype=torch.bool, device=a.device)
    for j in range(F):
        s = a[:, j, j]
        for k in range(j):
            s = s - L[j][k] * L[j][k]
        ok = ok & (s > 0)
        L[j][j] = torch.where(s > 0, s, 1.0).sqrt()
        for i in range(j + 1, F):
            t = a[:, i, j]
            for k in range(j):
                t = t - L[i][k] * L[j][k]
            L[i][j] = t / L[j][j]
    if wide:
        L = [[v if v is None else v.unsqueeze(-1) for v in row] for row in L]
    z = [None] * F
    for i in range(F):                     # L z = b
        t = b[:, i]
        for k in range(i):
            t = t - L[i][k] * z[k]
        z[i] = t / L[i][i]
    y = [None] * F
    for i in reversed(range(F)):           # L^T y = z
        t = z[i]
        for k in range(i + 1, F):
            t = t - L[k][i] * y[k]
        y[i] = t / L[i][i]
    return torch.stack(y, 1), ok


def batch_lm(fn: Callable, theta0: torch.Tensor, *, ydata: torch.Tensor | None = None,
             max_steps: int = 1000, ftol: float = OPTIONS["ftol"], xtol: float = OPTIONS["xtol"],
             gtol: float = OPTIONS["gtol"], max_tries: int = OPTIONS["max_tries"],
             jacobian: Callable | None = None, normal: Callable | None = None) -> BatchLMResult:
    """Minimise ``|fn(theta, idx)|^2`` for each of the ``B`` rows of ``theta0`` ``(B, F)``.

    ``ydata`` ``(B,)``: the norm of each problem's (weighted) data, for the rounding level
    of ``S`` (0 when not given). ``jacobian(theta, idx) -> [J r]^T`` ``(b, F+1, n)``: the
    Jacobian with the residuals as a last column, transposed (by default autograd on
    ``fn``); ``normal(theta, idx) -> M`` ``(b, F+1, F+1)``: its ``moments`` directly,
    where they can be had without forming the block (``ManyProblem.normal``). See the
    module's docstring for the method."""
    if jacobian is None:
        def jacobian(t, i):
            r, jac = residuals_and_jacobians(fn, t, i)
            return torch.cat([jac.transpose(-1, -2), r.unsqueeze(-2)], -2)
    if normal is None:
        def normal(t, i):
            return moments(jacobian(t, i))
    B, F = theta0.shape
    dtype, dev = theta0.dtype, theta0.device
    eps = torch.finfo(dtype).eps
    idx = torch.arange(B, device=dev)
    th = theta0.detach().clone()
    M = normal(th, idx)
    out_theta = th.clone()
    out_rss = M[:, F, F].clone()
    out_steps = torch.zeros(B, dtype=torch.long, device=dev)
    out_code = torch.zeros(B, dtype=torch.long, device=dev)
    out_d = torch.ones(B, F, dtype=dtype, device=dev)
    yd = (ydata.to(dtype) if ydata is not None else torch.zeros(B, dtype=dtype, device=dev))

    norms = M.diagonal(dim1=-2, dim2=-1)[:, :F].clamp_min(0).sqrt()
    d = torch.where(norms > 0, norms, 1.0)
    lam = torch.full((B,), LAM0, dtype=dtype, device=dev)
    nu = torch.full((B,), 2.0, dtype=dtype, device=dev)
    tries = torch.zeros(B, dtype=torch.long, device=dev)
    steps = torch.zeros(B, dtype=torch.long, device=dev)
    last_y = torch.full((B,), math.inf, dtype=dtype, device=dev)   # polishing: last GN step
    code = torch.where(torch.isfinite(M.diagonal(dim1=-2, dim2=-1)).all(-1), RUNNING, NONFINITE)
    eye = torch.eye(F, dtype=dtype, device=dev)

    for _ in range(max(1, max_steps) * 4 + max_tries):
        if code.any():                    # write back and drop the problems that stopped
            done = code != RUNNING
            at = idx[done]
            out_theta[at], out_rss[at], out_steps[at], out_code[at] = (
                th[done], M[done, F, F], steps[done], code[done])
            out_d[at] = d[done]
            keep = ~done
            idx, th, M, d, lam, nu, tries, steps, last_y, yd, code = (
                v[keep] for v in (idx, th, M, d, lam, nu, tries, steps, last_y, yd, code))
        if idx.numel() == 0:
            break
        S = M[:, F, F]
        col = M.diagonal(dim1=-2, dim2=-1)[:, :F].clamp_min(0).sqrt()     # |J_j|
        d = torch.maximum(d, col)
        a = M[:, :F, :F] / (d.unsqueeze(-1) * d.unsqueeze(-2))
        g = M[:, :F, F] / d
        rn = S.sqrt()
        cos = torch.where(col > 0, g.abs() * d / (col * rn.unsqueeze(-1)).clamp_min(1e-300), 0.0)
        cos = cos.amax(-1)
        err = eps * (rn + 2.0 * yd)
        noise = 2.0 * rn * err + err * err
        y_lm, ok_lm = solve_spd(a + lam[:, None, None] * eye, -g)
        pred_lm = -(g * y_lm).sum(-1) + lam * y_lm.square().sum(-1)
        # the Gauss-Newton step, where its gain (never below the damped one's) may be at
        # the rounding level of S: elsewhere it cannot matter (pred_gn > 100 noise)
        y_gn, ok_gn, pred_gn = y_lm, torch.zeros_like(ok_lm), torch.full_like(S, math.inf)
        near = (ok_lm & (pred_lm <= 100.0 * noise)).nonzero().flatten()
        if near.numel():
            y_s, ok_s = solve_spd(a[near], -g[near])
            y_gn = y_lm.index_put((near,), y_s)
            ok_gn = ok_gn.index_put((near,), ok_s)
            pred_gn = pred_gn.index_put((near,), torch.where(ok_s, -(g[near] * y_s).sum(-1),
                                                             math.inf))
        polish = pred_gn <= noise
        y = torch.where(polish.unsqueeze(-1), y_gn, y_lm)
        ok = torch.where(polish, ok_gn, ok_lm)
        lam_used = torch.where(polish, 0.0, lam)
        ynorm2 = y.square().sum(-1)
        ynorm = ynorm2.sqrt()
        xnorm = torch.linalg.vector_norm(d * th, dim=-1)

        t = th + y / d
        M_t = normal(t, idx)
        S_t = M_t[:, F, F]
        # every entry of [J r] is squared into the diagonal of M: NaN or inf shows there
        finite = ok & torch.isfinite(M_t.diagonal(dim1=-2, dim2=-1)).all(-1)
        # (A + lam I) y = -g, so -2 g.y - y.A.y = -g.y + lam |y|^2: both terms >= 0
        pred = -(g * y).sum(-1) + lam_used * ynorm2
        actred = S - S_t
        rho = torch.where(pred > 0, actred / pred, 0.0)
        move_lm = finite & ~polish & (rho >= ACCEPT)
        move_gn = finite & polish & (S_t <= S + noise)
        move = move_lm | move_gn

        # stopping before the step: gradient, perfect fit
        stop_g = (S == 0) | (cos <= gtol)
        # converged after an accepted step
        small = ynorm <= xtol * xnorm
        c_ftol = move_lm & (actred.abs() <= ftol * S) & (pred <= ftol * S) & (rho <= 2.0)
        c_xtol = (move_lm & small) | (move_gn & (small | (ynorm > 0.9 * last_y)))
        c_xtol |= polish & ~move_gn          # S rose beyond rounding: at the rounding level
        # no progress: a rejected LM step already at the rounding level of the parameters
        stuck = ~polish & ~move_lm & (ynorm <= eps * xnorm)
        fine = (pred_gn <= 100.0 * noise) | (cos <= math.sqrt(eps))
        tries = torch.where(move, 0, tries + 1)

        move = move & ~stop_g
        th = torch.where(move.unsqueeze(-1), t, th)
        M = torch.where(move[:, None, None], M_t, M)
        steps = steps + move.long()
        shrink = torch.clamp(1.0 - (2.0 * rho - 1.0) ** 3, min=1.0 / 3.0)
        lam = torch.where(move_lm, lam * shrink, torch.where(polish, lam, lam * nu))
        nu = torch.where(move_lm, 2.0, torch.where(polish, nu, nu * 2.0))
        last_y = torch.where(move_gn, ynorm, torch.where(polish, last_y, math.inf))

        new = torch.full_like(code, RUNNING)
        new = torch.where(steps >= max_steps, MAX_STEPS, new)
        new = torch.where(stuck, torch.where(fine, XTOL, ROUGH), new)
        new = torch.where((tries >= max_tries) | ~torch.isfinite(lam), TRIES, new)
        new = torch.where(c_xtol, XTOL, new)
        new = torch.where(c_ftol, FTOL, new)
        new = torch.where(stop_g, torch.where(S == 0, PERFECT, GTOL), new)
        code = new
    else:                                # the loop's own limit (rejections): write back
        out_theta[idx], out_rss[idx], out_steps[idx], out_d[idx] = th, M[:, F, F], steps, d
        out_code[idx] = torch.where(code == RUNNING, MAX_STEPS, code)
    return BatchLMResult(out_theta, out_rss, out_steps, out_code, out_d)
