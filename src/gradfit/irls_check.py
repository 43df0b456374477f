"""First-order optimality tests of a Huber or MAE fit: what lets IRLS say "the minimum".

Both take the residuals ``r`` ``(k, n)`` and their Jacobian ``J`` ``(k, n, F)`` of ``k``
fits (``valid`` ``(k, n)``: the real points of ragged problems) and return whether each is
certified and a measure of how far it is from it (0 at an exact optimum). ``level``
``(k, n)`` (``rounding_level``) is each residual's own rounding level: a residual within
``KINK_ULPS`` of it is zero (an exact fit has no sign to test), and a gradient is not asked
to vanish below what those roundings leave of it.

- huber: the loss is smooth; its gradient ``J^T psi(r)`` (``psi(r) = clip(r, -delta,
  delta)``) must vanish. The measure is the largest cosine between ``psi`` and a column of
  ``J`` (the gradient relative to its scale, independent of the units of y and of each
  parameter, as LM's gtol); certified when it is at most ``GTOL`` (plus, with ``level``,
  the cosine the residuals' rounding alone can give: ``sum_i |J_ij| (HUBER_ULPS level_i
  + |r_i - psi_i|)`` over the quadratic points, relative to the same scale; the second
  term is what setting a residual at its rounding to zero took away: 5e-14, beside one
  residual of 2e-9 at a minimum, is a cosine of 2e-5).
- mae: the loss has kinks where ``r_i = 0`` (the set Z); zero must lie in its
  subgradient, ``J_N^T sign(r_N) + J_Z^T l = 0`` for some ``|l_i| <= 1``. The box-bounded
  least-squares problem for ``l`` is solved exactly (``box_least_squares``, the active-set
  method of Stark and Parker), and the measure is the largest entry of the remainder, each
  column relative to ``sum_i |J_ij|`` (the largest its entry could be); certified when it
  is at most ``GTOL``.

``certify`` (what IRLS asks) runs either test on an orthonormal basis of the Jacobian's
columns (``orthonormal``), so that nearly dependent columns hide no direction of descent.
A first-order test certifies a minimum of the loss near the point: the minimum for a model
linear in its parameters (the MAE and the Huber loss are convex there), a local one for
others (``minimum_text``).

    >>> import torch
    >>> x = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]); y = torch.tensor([0.0, 1.0, 2.0, 3.0, 9.0])
    >>> J = torch.stack([x, torch.ones_like(x)], -1)[None]       # a*x + b
    >>> ok, how_far = mae_certificate((1.0 * x - y)[None], J)    # a=1, b=0: the LAD line
    >>> bool(ok[0])
    True
    >>> ok, how_far = mae_certificate((1.5 * x - y)[None], J)    # a=1.5, b=0: not it
    >>> bool(ok[0]), round(float(how_far[0]), 3)
    (False, 0.2)
"""
from __future__ import annotations

import torch

GTOL = 1e-6           # the largest relative gradient (or subgradient gap) called optimal
ZERO = 1e-8           # without rounding levels: residuals below this times the largest are
                      # at a kink of the MAE
KINK_ULPS = 16        # residuals within this many of their rounding levels are zero
HUBER_ULPS = 4        # a Huber gradient within this many of its roundings' sum is zero
PINV_RTOL = 1e-10     # box_least_squares: singular values below this (relative) are zero


def rounding_level(r: torch.Tensor, jac: torch.Tensor, theta: torch.Tensor,
                   ys: torch.Tensor, valid: torch.Tensor | None = None,
                   zero_data: torch.Tensor | None = None) -> torch.Tensor:
    """Each residual's rounding level ``(k, n)`` (``r`` ``(k, n)``, ``jac`` ``(k, n, F)``,
    ``theta`` ``(k, F)``, ``ys = y / sigma`` ``(k, n)``; ``valid``: the real points)::

        eps max(|y_i| + |f_i| + max(sum_j |J_ij theta_j|, |D theta| sum_j |J_ij| / d_j),
                mean_k |r_k|)

    (all over ``sigma_i``; ``d_j`` the norm of column j of J, ``D = diag(d)``). ``f - y`` is
    computed to about ``eps (|f| + |y|)``; parameters stored to ``eps`` of themselves move
    the curve by up to ``eps sum_j |J_ij theta_j|`` (terms that cancel, as a polynomial's at
    x ~ 1e6, count at their own size); and a solve for them (a vertex's interpolation, by
    the column-scaled SVD) is exact only to ``eps |D theta|`` in the scaled parameters, which
    leaves a parameter that should be 0 at ``1e-17`` (an intercept through the origin). No
    solve places a residual closer to zero than this. And a residual below ``eps`` of the
    typical one changes no computed loss (a line through y = 0 with a slope of 1e-75). Not
    the largest ``|y|``: a large common offset does not make the small residuals of the
    others uncertain.

    Data that are all zero (``zero_data`` ``(k, 1)``: by default, where every real ``ys``
    is 0) have no scale of their own: as ``verdict.judge`` does, they are given the unit
    scale, and a level of at least ``eps`` (their exact fit ``f = 0`` is approached by
    steps that each shrink the curve by ``eps``, and stop where its squares underflow,
    at 1e-170: every tolerance relative to the data, 0, had called that fit failed).
    Callers that pass some rows of a problem pass ``zero_data`` of the whole problem: a
    vertex's P points all at y = 0 say nothing of the data's scale."""
    eps = torch.finfo(r.dtype).eps
    if valid is not None:
        jac = torch.where(valid.unsqueeze(-1), jac, 0.0)
    terms = (jac * theta.unsqueeze(-2)).abs().sum(-1)
    d = torch.linalg.vector_norm(jac, dim=-2)                                   # (k, F)
    dt = (d * theta).abs()
    top = dt.amax(-1, keepdim=True).clamp_min(torch.finfo(r.dtype).tiny)      # (no overflow
    scaled = top * torch.linalg.vector_norm(dt / top, dim=-1, keepdim=True)    # at 1e300)
    solve = scaled * (jac.abs() / d.clamp_min(1e-300).unsqueeze(-2)).sum(-1)
    a = r.abs() if valid is None else torch.where(valid, r.abs(), 0.0)
    typical = a.sum(-1, keepdim=True) / (a.shape[-1] if valid is None else
                                         valid.sum(-1, keepdim=True).clamp_min(1))
    level = eps * torch.maximum(ys.abs() + (r + ys).abs() + torch.maximum(terms, solve),
                                typical)
    if zero_data is None:
        zero_data = no_scale(ys, valid)
    level = torch.where(zero_data, level.clamp_min(eps), level)
    return torch.where(torch.isfinite(level), level, 0.0)


def no_scale(ys: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``(k, 1)``: whether each problem's data ``ys`` ``(k, n)`` (``y / sigma``; ``valid``:
    its real points) are all zero, so that ``rounding_level`` gives them the unit scale."""
    if ys.shape[-1] == 0:
        return torch.zeros(ys.shape[:-1] + (1,), dtype=torch.bool, device=ys.device)
    a = ys.abs() if valid is None else torch.where(valid, ys.abs(), 0.0)
    return (a == 0).all(-1, keepdim=True)


def _rounded(r: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
    """``r`` with the residuals at their rounding level (``KINK_ULPS`` of ``level``) set to
    zero: an exact fit has no sign to test."""
    if level is None:
        return r
    return torch.where(r.abs() <= KINK_ULPS * level, 0.0, r)


def huber_certificate(r: torch.Tensor, jac: torch.Tensor, delta: float,
                      valid: torch.Tensor | None = None,
                      level: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ok, cosine)``, each ``(k,)``: whether the Huber loss's gradient vanishes."""
    psi = _rounded(r, level).clamp(-delta, delta)
    if valid is not None:
        psi = torch.where(valid, psi, 0.0)
        jac = torch.where(valid.unsqueeze(-1), jac, 0.0)
    g = (jac * psi.unsqueeze(-1)).sum(-2).abs()
    scale = torch.linalg.vector_norm(jac, dim=-2) * torch.linalg.vector_norm(psi, dim=-1,
                                                                             keepdim=True)
    cos = torch.where(scale > 0, g / scale.clamp_min(1e-300), torch.where(g > 0, 1.0, 0.0))
    tol = torch.full_like(cos, GTOL)
    if level is not None:
        # the gradient's own rounding: psi_i is known to level_i where it is r_i, and a
        # residual set to zero at its rounding was up to KINK_ULPS of it (r_i - psi_i)
        quad = r.abs() < delta + KINK_ULPS * level
        err = HUBER_ULPS * level + (r - psi).abs()
        if valid is not None:
            quad = quad & valid
        noise = (jac.abs() * torch.where(quad, err, 0.0).unsqueeze(-1)).sum(-2)
        tol = tol + torch.where(scale > 0, noise / scale.clamp_min(1e-300), 0.0)
    worst = cos.amax(-1)
    ok = torch.isfinite(worst) & (cos <= tol).all(-1)
    return ok, torch.where(torch.isfinite(worst), worst, torch.inf)


def mae_certificate(r: torch.Tensor, jac: torch.Tensor, valid: torch.Tensor | None = None,
                    level: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ok, gap)``, each ``(k,)``: whether zero lies in the MAE's subgradient.

    The kinks Z are the residuals within ``KINK_ULPS`` of their rounding ``level`` (without
    one: at most ``ZERO`` times the largest residual)."""
    if valid is None:
        valid = torch.ones_like(r, dtype=torch.bool)
    jac = torch.where(valid.unsqueeze(-1), jac, 0.0)
    a = torch.where(valid, r.abs(), 0.0)
    if level is None:
        kink = valid & (a <= ZERO * a.amax(-1, keepdim=True))
    else:
        kink = valid & (a <= KINK_ULPS * level)
    fixed = torch.where(valid & ~kink, torch.sign(r), 0.0)            # (k, n)
    d = jac.abs().sum(-2).clamp_min(1e-300)                           # (k, F)
    b = -((jac * fixed.unsqueeze(-1)).sum(-2) / d)                    # (k, F)
    # the kinks' columns alone (kinks first, padded with zero columns)
    m = max(int(kink.sum(-1).max()), 1) if kink.numel() else 1
    order = torch.argsort((~kink).to(torch.int8), dim=-1, stable=True)[..., :m]
    cols = kink.gather(-1, order)                                     # (k, m)
    jz = jac.gather(-2, order.unsqueeze(-1).expand(*order.shape, jac.shape[-1]))
    jz = jz * cols.unsqueeze(-1) / d.unsqueeze(-2)                    # (k, m, F), scaled
    # a Jacobian or residual that overflowed (float32) certifies nothing: zeroed here so
    # that the solve below runs, and its gap made infinite at the end
    finite = torch.isfinite(jz).flatten(-2).all(-1) & torch.isfinite(b).all(-1)
    jz = torch.where(finite[..., None, None], jz, 0.0)
    b = torch.where(finite[..., None], b, 0.0)
    lam = box_least_squares(jz.transpose(-1, -2), b, cols)
    gap = ((jz * lam.unsqueeze(-1)).sum(-2) - b).abs().amax(-1)
    gap = torch.where(torch.isfinite(gap) & finite, gap, torch.inf)
    return gap <= GTOL, gap


def box_least_squares(a: torch.Tensor, b: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``l`` ``(k, m)`` in ``[-1, 1]^m`` minimising ``|a l - b|`` for each of ``k`` rows
    (``a`` ``(k, F, m)``, ``b`` ``(k, F)``; columns outside ``cols`` ``(k, m)`` held at 0):
    the bounded-variable least squares of Stark and Parker (1995), exact in finitely many
    steps.

    From every column free: the least-squares step on the free columns (the least change,
    ``l + pinv(a_F) (b - a l)``) is taken if it stays in the box; else taken as far as the
    first bound, whose column is held there. With the free columns at their least squares,
    a held column whose gradient ``a_j^T (b - a l)`` points into the box is freed (the
    largest first); none: the minimum.

        >>> a = torch.tensor([[[1.0, 1.0]]], dtype=torch.float64)      # l1 + l2 = 3
        >>> box_least_squares(a, torch.tensor([[3.0]], dtype=torch.float64),
        ...                   torch.tensor([[True, True]])).tolist()
        [[1.0, 1.0]]
    """
    given, dtype = b.dtype, torch.float64 if a.device.type != "mps" else a.dtype
    a, b = a.to(dtype), b.to(dtype)
    k, _, m = a.shape
    a = a * cols.unsqueeze(-2)
    lam = torch.zeros(k, m, dtype=dtype, device=a.device)
    free = cols.clone()
    held = torch.zeros_like(cols)                 # at +1 or -1 (the sign of lam)
    open_ = torch.ones(k, dtype=torch.bool, device=a.device)
    eps = torch.finfo(dtype).eps
    # a gradient this small is rounding (each column's own: their scales may differ)
    size = torch.linalg.vector_norm(a, dim=-2)                        # (k, m)
    tol = 64 * eps * size * (torch.linalg.vector_norm(b, dim=-1, keepdim=True)
                             + size.sum(-1, keepdim=True)) + 1e-300
    for _ in range(4 * (m + a.shape[1]) + 20):
        at = open_.nonzero().flatten()
        if at.numel() == 0:
            break
        aa, ba, la, fa, ha = a[at], b[at], lam[at], free[at], held[at]
        res = ba - (aa @ la.unsqueeze(-1)).squeeze(-1)
        af = aa * fa.unsqueeze(-2)
        # (a singular value below PINV_RTOL of the largest is dropped: a repeated point's
        # columns agree only to rounding, and its reciprocal would amplify that rounding)
        z = la + (torch.linalg.pinv(af, rtol=PINV_RTOL) @ res.unsqueeze(-1)).squeeze(-1) * fa
        out = fa & (z.abs() > 1)
        inside = ~out.any(-1)
        # outside: as far as the first bound, which holds its column there
        step = z - la
        room = torch.where(step > 0, 1 - la, -1 - la)
        ratio = torch.where(out, room / torch.where(out, step, 1.0), torch.inf)
        alpha = ratio.amin(-1).clamp(0, 1)
        first = torch.nn.functional.one_hot(ratio.argmin(-1), m).bool() & out
        moved = torch.where(inside.unsqueeze(-1), z, la + alpha.unsqueeze(-1) * step)
        hit = ~inside.unsqueeze(-1) & fa & (first | (moved.abs() >= 1))
        moved = torch.where(hit, torch.sign(moved).where(moved != 0, torch.sign(step)), moved)
        fa, ha = fa & ~hit, ha | hit
        # inside: free the held column whose gradient points into the box the most
        grad = (aa.transpose(-1, -2) @ (ba - (aa @ moved.unsqueeze(-1)).squeeze(-1)
                                        ).unsqueeze(-1)).squeeze(-1)
        inward = torch.where(ha, -torch.sign(moved) * grad, -torch.inf)
        release = inside & (inward > tol[at]).any(-1)
        j = torch.where(inward > tol[at], inward, -torch.inf).argmax(-1)
        freed = torch.nn.functional.one_hot(j, m).bool() & release.unsqueeze(-1)
        fa, ha = fa | freed, ha & ~freed
        lam[at], free[at], held[at] = moved, fa, ha
        open_[at] = ~inside | release
    return lam.to(given)


def certify(loss, r: torch.Tensor, jac: torch.Tensor, valid: torch.Tensor | None = None,
            level: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The test of ``loss`` (a ``Loss``: huber or mae), ``(ok, measure)``, on an orthonormal
    basis of the Jacobian's columns (``orthonormal``): the gradient along every direction
    the curve can move in, not only along each parameter."""
    finite = torch.isfinite(jac).flatten(-2).all(-1) & torch.isfinite(r).all(-1)
    q = orthonormal(torch.where(finite[..., None, None], jac, 0.0), valid)
    if loss.name == "huber":
        ok, measure = huber_certificate(r, q, loss.delta, valid, level)
    else:
        ok, measure = mae_certificate(r, q, valid, level)
    return ok & finite, torch.where(finite, measure, torch.inf)


def orthonormal(jac: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """An orthonormal basis ``(k, n, F)`` of the columns of ``jac`` ``(k, n, F)`` (the left
    singular vectors of its column-scaled form; a direction of a lost rank, a singular value
    below ``n eps`` of the largest, is a zero column).

    Both tests measure the gradient per column, relative to the column's scale. Where the
    columns are nearly dependent (a quadratic in x ~ 1e6: x^2, x and 1 agree to 1e-8), a
    direction that combines them moves the curve little and the parameters much: along it
    the gradient hides below each column's scale (a mae fit 9 % above its minimum had a
    relative gap of 4e-5 per column, 0.23 along that direction). An orthonormal basis has
    no such direction: its gradient is the loss's rate of change per unit of curve moved."""
    if valid is not None:
        jac = torch.where(valid.unsqueeze(-1), jac, 0.0)
    d = torch.linalg.vector_norm(jac, dim=-2, keepdim=True)
    u, sv, _ = torch.linalg.svd(jac / d.clamp_min(torch.finfo(jac.dtype).tiny),
                                full_matrices=False)
    rank = sv > sv[..., :1] * jac.shape[-2] * torch.finfo(jac.dtype).eps
    return u * rank.unsqueeze(-2)


def minimum_text(loss_name: str, linear: bool, how: str) -> str:
    """What a certified stop is, ``how`` it was reached: the exact minimum for a model
    linear in its parameters (the loss is convex there); for others a local minimum, as a
    first-order test certifies no more."""
    if linear:
        return f"the exact minimum: {how}"
    name = "MAE" if loss_name == "mae" else "Huber loss"
    return (f"a local minimum: {how}; the {name} of a model not linear in its parameters "
            "may have other minima (starts=K tries more)")


def uncertified_text(loss_name: str, measure: float) -> str:
    """The message of an IRLS fit that stopped where the test does not certify it."""
    if loss_name == "huber":
        found = f"the gradient of the Huber loss is not zero there (largest cosine {measure:.3g})"
    elif measure == float("inf"):
        found = "its Jacobian or residuals are not finite there (they overflowed)"
    else:
        found = f"zero is not in the MAE's subgradient there (gap {measure:.3g})"
    return (f"IRLS stopped at a point it cannot certify as the minimum: {found}, beyond "
            f"{GTOL:g}; try other starting values (p0) or starts=K")
