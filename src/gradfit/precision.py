"""Whether a float32 least-squares fit called converged stopped short of its minimum.

LM forms the normal equations ``J^T J``, which square the condition of ``J``: in float32
(7 digits) a fit whose scaled Jacobian has a condition beyond about 1e3 loses the digits
that point the way on. LM then finds no step that its arithmetic predicts to gain beyond
the rounding level of ``S`` and ends "at the rounding level", though the loss still falls a
long way (``a*exp(b*x)+c`` crawling towards a line: float32 stopped at ``S`` = 13,512 where
float64 went on to 23). The data and the model were fine in float32; its linear algebra was
not.

The check, at each such end: ``[J r]`` as float32 evaluated it, promoted to float64; the
Gauss-Newton step's predicted gain ``|U^T r|^2`` over the singular values of ``J D^-1``
(``D`` its column norms) above the rounding of ``J``'s float32 entries
(``eps32 max(n, F) s_max``: below it a direction is that rounding's, and a step along it a
guess); refused beyond ``SHORT`` times what float32's rounding leaves of that gain at a
true minimum, ``(e + |r| eps kappa)^2``: ``e = eps (|r| + 2|y|)`` bounds the rounding of
``r`` (``batch_lm``'s), and the rounding of ``J`` turns its column space by ``eps kappa``
(``kappa`` the condition of the kept singular values). (LM's own bar, the rounding level
of ``S``, ``2 |r| e``, let a dexp with a tiny sigma through at 16 times its minimum's
loss.) Only fits whose float32 normal equations are ill-conditioned (``tr(A) tr(A^-1) >=
eps^-1/2``, as ``many_engines.covariance`` tests, read from LM's own moments) are checked:
the others cannot have lost their way, and cost nothing more. Fits with a parameter on a
bound are not checked (``fit`` and ``fit_many`` alike).
"""
from __future__ import annotations

from typing import Callable

import torch

from .lm import scaled_svd
from .spd import solve_spd

SHORT = 100.0

MESSAGE = ("float32 cannot resolve this minimum: a Gauss-Newton step computed in float64 at "
           "this point still lowers the sum of squares by {gain:.2g} of itself, far beyond "
           "float32's rounding (the normal equations are too ill-conditioned for 7 digits); "
           "expected a fit in float64 (dtype='float64')")


def short_of_minimum(m: torch.Tensor, ydata: torch.Tensor, block: Callable
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``k`` converged float32 ends with their moments ``M = [J r]^T [J r]``
    ``(k, F+1, F+1)`` and the norms ``ydata`` ``(k,)`` of their (weighted) data:
    ``(short, gain)``, whether each stopped short of its minimum and the predicted gain
    relative to ``S``. ``block(rows)`` gives ``[J r]^T`` ``(len(rows), F+1, n)`` of the
    ill-conditioned ones, the only ones formed."""
    eps = torch.finfo(m.dtype).eps
    short = torch.zeros(m.shape[0], dtype=torch.bool, device=m.device)
    gain = torch.zeros(m.shape[0], dtype=torch.float64, device=m.device)
    hard = _ill_conditioned(m).nonzero().flatten()
    if hard.numel():
        short[hard], gain[hard] = _short(block(hard), ydata[hard], eps)
    return short, gain


def _ill_conditioned(m: torch.Tensor) -> torch.Tensor:
    """Where ``A = D^-1 J^T J D^-1`` (float32) has ``tr(A) tr(A^-1) >= eps^-1/2`` (or no
    Cholesky factor): only there can float32's normal equations have lost the way on
    (the test by which ``many_engines.covariance`` sends a fit to the SVD)."""
    F = m.shape[-1] - 1
    m = torch.where(torch.isfinite(m), m, 0.0)
    d = m.diagonal(dim1=-2, dim2=-1)[:, :F].clamp_min(0).sqrt()
    d = torch.where(d > 0, d, 1.0)
    a = m[:, :F, :F] / (d.unsqueeze(-1) * d.unsqueeze(-2))
    inv, ok = solve_spd(a, torch.eye(F, dtype=a.dtype, device=a.device).expand_as(a))
    bound = a.diagonal(dim1=-2, dim2=-1).sum(-1) * inv.diagonal(dim1=-2, dim2=-1).sum(-1)
    return ~ok | ~(bound < torch.finfo(a.dtype).eps ** -0.5)


def _short(jr: torch.Tensor, ydata: torch.Tensor, eps: float):
    jr = jr.to(torch.float64)
    F = jr.shape[-2] - 1
    J, r = jr[:, :F].transpose(-1, -2), jr[:, F]
    good = torch.isfinite(jr).flatten(1).all(-1)
    J, r = torch.where(good[:, None, None], J, 0.0), torch.where(good[:, None], r, 0.0)
    d = torch.linalg.vector_norm(J, dim=-2)
    s, _, c = scaled_svd(J, torch.where(d > 0, d, 1.0), r)
    # directions whose singular value lies under the rounding of J's float32 entries are
    # that rounding's, not the model's: no step along them can be trusted
    kept = s > eps * max(J.shape[-2:]) * s[:, :1]
    pred = torch.where(kept, c, 0.0).square().sum(-1)
    rn = torch.linalg.vector_norm(r, dim=-1)
    err = eps * (rn + 2.0 * ydata.to(torch.float64))
    # at a true minimum U^T r vanishes but for float32's rounding: of r (norm err at most)
    # and of J's column space (turned by eps times the kept condition kappa, moving |r| by
    # |r| eps kappa); LM's bar, the rounding of S (2 |r| err), is far above that where
    # |y| >> |r| (tiny sigma: a dexp 16 times above its minimum passed it)
    kappa = s[:, :1] / torch.where(kept, s, torch.inf).amin(-1, keepdim=True)
    level = (err + rn * eps * kappa.squeeze(-1)).square()
    gain = pred / rn.square().clamp_min(torch.finfo(torch.float64).tiny)
    return good & (pred > SHORT * level), gain


def message(gain: float) -> str:
    return MESSAGE.format(gain=gain)


HINT = ("; in float32 (7 digits) rounding may be what stops it: expected a fit in float64 "
        "(dtype='float64') to tell")


def float32_hint(text: str) -> str:
    """An LM end that found no step (``batch_lm``'s ``ROUGH``, ``TRIES``, ``STALLED``) of a
    float32 fit: its message says rounding may be the cause (an exponential over x in
    [1000, 1100] ends so in float32 and converges in float64)."""
    if HINT in text or not any(e in text for e in NO_STEP):
        return text
    return text + HINT


NO_STEP = ("no step lowered the loss", "LM stalled short of a minimum")   # those messages
