"""An optimum on a bound, certified for ``fit_many``'s least-squares fits.

``fit_many`` keeps every iterate inside its bounds by a change of variables whose derivative
vanishes on a bound (``ManyTransform``). On a bound that holds at the optimum, LM in the
internal variables then stalls (no step lowers the loss, and its cosine test cannot pass,
because the cosine of a column held by its bound does not vanish: the loss would fall beyond
the bound) or creeps towards it to the step limit. Such an end is certified here as
``active_set`` does for one fit (its step 4), at the point reached:

- the parameters within ``NEAR`` (relative, ``active_set``'s) of a bound form the active set;
- each must be held by its bound: with ``g = J^T r`` over the model's own free parameters
  and the scale ``s_j = |J_j| |r|``, the multiplier ``mu_j = g_j / s_j`` on a lower bound and
  ``-g_j / s_j`` on an upper one is ``>= -MU_TOL`` (the loss rises inwards);
- the others must be at LM's own end (``batch_lm``'s rounding test): the Gauss-Newton step
  of the inner parameters, with the active ones held, predicts a gain of at most 100 times
  the rounding level of ``S``, or their largest cosine is at most ``sqrt(eps)``.

A certified end is converged (``xtol``), with the parameters on their bounds named; any
other stalled end stays failed.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .active_set import MU_TOL, NEAR
from .batch_lm import MAX_STEPS, ROUGH, TRIES, message as lm_message


def certify_on_bounds(prob, tr, theta, reason, message, options, max_steps=None) -> None:
    """Turn the stalled LM ends of ``theta`` ``(k, P)`` that are certified optima on their
    bounds into converged ones (``reason``, ``message``: numpy arrays, changed in place).
    A stall is an end without a step (``ROUGH``, ``TRIES``) or at the step limit, which LM
    creeping towards a bound in the internal variables may reach first."""
    from .many_engines import ManyTransformFixedAt
    stalled = np.isin(message.astype(str), [lm_message(ROUGH, options),
                                           lm_message(TRIES, options),
                                           lm_message(MAX_STEPS, options, max_steps)])
    rows = np.flatnonzero(stalled)
    if tr.identity or not rows.size:
        return
    idx = torch.as_tensor(rows, device=theta.device)
    at, F = tr.free_at, len(tr.free)
    v = theta[idx][:, at]
    with torch.no_grad():
        jr = prob.jacobian(ManyTransformFixedAt(tr, theta))(v, idx)     # [J r]^T (k, F+1, n)
    J, r = jr[:, :F], jr[:, F]
    g = (J * r.unsqueeze(-2)).sum(-1)                                   # J^T r (k, F)
    rn = torch.linalg.vector_norm(r, dim=-1, keepdim=True)
    s = torch.linalg.vector_norm(J, dim=-1) * rn
    cos = torch.where(s > 0, g / s.clamp_min(1e-300), 0.0)
    lo, hi = tr.lo[idx], tr.hi[idx]
    fin_lo, fin_hi = torch.isfinite(lo), torch.isfinite(hi)
    width = torch.where(fin_lo & fin_hi, hi - lo, 0.0)
    scale = torch.stack([v.abs(), torch.where(fin_lo, lo.abs(), 0.0),
                         torch.where(fin_hi, hi.abs(), 0.0), width], -1).amax(-1)
    scale = scale.clamp_min(1e-300)
    on_lo = fin_lo & (v - lo <= NEAR * scale)
    on_hi = fin_hi & ~on_lo & (hi - v <= NEAR * scale)
    held = ((on_lo & (cos >= -MU_TOL)) | (on_hi & (-cos >= -MU_TOL)) | ~(on_lo | on_hi)).all(-1)
    inner = ~(on_lo | on_hi)
    stationary = _inner_at_end(J, r, g, cos, inner, prob.ydata[idx])
    ok = (held & stationary & (on_lo | on_hi).any(-1)).cpu().numpy()
    on_lo, on_hi = on_lo.cpu().numpy(), on_hi.cpu().numpy()
    for i, b in enumerate(rows):
        if not ok[i]:
            continue
        names = [f"{n} ({'lower' if on_lo[i, j] else 'upper'})" for j, n in enumerate(tr.free)
                 if on_lo[i, j] or on_hi[i, j]]
        reason[b] = "xtol"
        message[b] = ("an optimum on its bounds: " + ", ".join(names) + " held by their "
                      "bounds (the loss rises inwards), the others at the rounding level of "
                      "the data")


def _inner_at_end(J, r, g, cos, inner, ydata) -> torch.Tensor:
    """``(k,)`` whether the inner parameters pass ``batch_lm``'s rounding test with the
    active ones held: the Gauss-Newton gain over them is at most 100 times the rounding
    level of ``S``, or their largest cosine is at most ``sqrt(eps)``."""
    eps = torch.finfo(J.dtype).eps
    m = inner.to(J.dtype)
    Ji = J * m.unsqueeze(-1)                                   # held columns zeroed
    A = Ji @ Ji.transpose(-1, -2)
    gi = g * m
    d = A.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()
    d = torch.where(d > 0, d, 1.0)
    a = A / (d.unsqueeze(-1) * d.unsqueeze(-2)) + torch.diag_embed(1.0 - m)   # held: 1
    y = torch.linalg.lstsq(a, (-gi / d).unsqueeze(-1)).solution.squeeze(-1)
    gain = -((gi / d) * y).sum(-1)
    rn = torch.linalg.vector_norm(r, dim=-1)
    err = eps * (rn + 2.0 * ydata.to(rn.dtype))
    noise = 2.0 * rn * err + err * err
    small = torch.where(inner, cos.abs(), 0.0).amax(-1) <= math.sqrt(eps)
    return (torch.isfinite(gain) & (gain <= 100.0 * noise)) | small
