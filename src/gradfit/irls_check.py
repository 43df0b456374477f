"""First-order optimality tests of a Huber or MAE fit: what lets IRLS say "the minimum".

Both take the residuals ``r`` ``(k, n)`` and their Jacobian ``J`` ``(k, n, F)`` of ``k``
fits (``valid`` ``(k, n)``: the real points of ragged problems) and return whether each is
certified and a measure of how far it is from it (0 at an exact optimum).

- huber: the loss is smooth; its gradient ``J^T psi(r)`` (``psi(r) = clip(r, -delta,
  delta)``) must vanish. The measure is the largest cosine between ``psi`` and a column of
  ``J`` (the gradient relative to its scale, independent of the units of y and of each
  parameter, as LM's gtol); certified when it is at most ``GTOL``.
- mae: the loss has kinks where ``r_i = 0`` (the set Z); zero must lie in its
  subgradient, ``J_N^T sign(r_N) + J_Z^T l = 0`` for some ``|l_i| <= 1``. The box-bounded
  least-squares problem for ``l`` is solved (the minimum-norm solution, clipped, then
  projected gradient steps), and the measure is the largest entry of the remainder, each
  column relative to ``sum_i |J_ij|`` (the largest its entry could be); certified when it
  is at most ``GTOL``.

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
ZERO = 1e-8           # residuals below this times the largest are at a kink of the MAE
ROUNDING = 1e-10      # residuals below this times the data's scale are zero (an exact fit)


def _rounded(r: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """``r`` with the residuals at the rounding level of the data (``scale`` ``(k,)``,
    the largest ``|y / sigma|``) set to zero: an exact fit has no sign to test."""
    if scale is None:
        return r
    return torch.where(r.abs() <= ROUNDING * scale.unsqueeze(-1), 0.0, r)


def huber_certificate(r: torch.Tensor, jac: torch.Tensor, delta: float,
                      valid: torch.Tensor | None = None,
                      scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ok, cosine)``, each ``(k,)``: whether the Huber loss's gradient vanishes."""
    psi = _rounded(r, scale).clamp(-delta, delta)
    if valid is not None:
        psi = torch.where(valid, psi, 0.0)
        jac = torch.where(valid.unsqueeze(-1), jac, 0.0)
    g = (jac * psi.unsqueeze(-1)).sum(-2).abs()
    scale = torch.linalg.vector_norm(jac, dim=-2) * torch.linalg.vector_norm(psi, dim=-1,
                                                                             keepdim=True)
    cos = torch.where(scale > 0, g / scale.clamp_min(1e-300), torch.where(g > 0, 1.0, 0.0))
    worst = cos.amax(-1)
    ok = torch.isfinite(worst) & (worst <= GTOL)
    return ok, torch.where(torch.isfinite(worst), worst, torch.inf)


def mae_certificate(r: torch.Tensor, jac: torch.Tensor, valid: torch.Tensor | None = None,
                    scale: torch.Tensor | None = None,
                    iterations: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ok, gap)``, each ``(k,)``: whether zero lies in the MAE's subgradient."""
    r = _rounded(r, scale)
    if valid is None:
        valid = torch.ones_like(r, dtype=torch.bool)
    jac = torch.where(valid.unsqueeze(-1), jac, 0.0)
    a = torch.where(valid, r.abs(), 0.0)
    kink = valid & (a <= ZERO * a.amax(-1, keepdim=True))
    fixed = torch.where(valid & ~kink, torch.sign(r), 0.0)            # (k, n)
    d = jac.abs().sum(-2).clamp_min(1e-300)                           # (k, F)
    jz = jac * kink.unsqueeze(-1) / d.unsqueeze(-2)                   # scaled, kinks only
    b = -((jac * fixed.unsqueeze(-1)).sum(-2) / d)                    # (k, F)
    # a Jacobian or residual that overflowed (float32) certifies nothing: zeroed here so
    # that the SVD below runs, and its gap made infinite at the end
    finite = torch.isfinite(jz).flatten(-2).all(-1) & torch.isfinite(b).all(-1)
    jz = torch.where(finite[..., None, None], jz, 0.0)
    b = torch.where(finite[..., None], b, 0.0)
    # min || J_Z^T l - b || over |l| <= 1: the minimum-norm solution clipped, then projected
    # gradient steps (step 1 / ||J_Z||^2)
    lam = (torch.linalg.pinv(jz.transpose(-1, -2)) @ b.unsqueeze(-1)).squeeze(-1)
    lam = torch.where(kink, lam.nan_to_num(0.0).clamp(-1, 1), 0.0)
    lip = torch.linalg.matrix_norm(jz, ord=2).square().clamp_min(1e-300)
    for _ in range(iterations):
        rem = (jz * lam.unsqueeze(-1)).sum(-2) - b
        if bool((rem.abs().amax(-1) <= GTOL).all()):
            break
        step = (jz @ rem.unsqueeze(-1)).squeeze(-1) / lip.unsqueeze(-1)
        lam = torch.where(kink, (lam - step).clamp(-1, 1), 0.0)
    gap = ((jz * lam.unsqueeze(-1)).sum(-2) - b).abs().amax(-1)
    gap = torch.where(torch.isfinite(gap) & finite, gap, torch.inf)
    return gap <= GTOL, gap


def certify(loss, r: torch.Tensor, jac: torch.Tensor, valid: torch.Tensor | None = None,
            scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The test of ``loss`` (a ``Loss``: huber or mae), ``(ok, measure)``."""
    if loss.name == "huber":
        return huber_certificate(r, jac, loss.delta, valid, scale)
    return mae_certificate(r, jac, valid, scale)


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
