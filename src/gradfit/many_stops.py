"""``fit_many``'s verdicts on the gradient methods' ends, as ``fit`` judges them.

- ``worse_than_start``: an end whose loss is above the start's (``verdict.judge``'s "the fit
  ended worse than it started"); ``fit_many`` had called such an ftol stop converged (adam
  with lr=10 on relu:3 killed every unit: 12.76 from 10.66), where ``fit`` failed it;
- ``plateaus``: ``stationary.plateau_message`` for the ``ftol``/``gtol`` ends (and
  ``kink_stops`` for a model with kinks).
"""
from __future__ import annotations

import numpy as np
import torch


def worse_than_start(reason, message, prob, tr, theta, first) -> None:
    """Every end but a divergence whose loss is above its start's ``first`` ``(k,)`` beyond
    ``1e-9`` of it (and, for an identifiable model, ``1e-12`` of the loss of a zero
    prediction: rounding), as ``verdict.judge``: failed, saying so; ``reason`` and
    ``message`` change in place."""
    rows = np.flatnonzero(np.asarray(reason) != "diverged")
    if not rows.size:
        return
    idx = torch.as_tensor(rows, device=theta.device)
    with torch.no_grad():
        end = prob.objective(theta[idx], idx)
        start = first[idx]
        noise = torch.zeros_like(end)
        if prob.model.identifiable:
            zero = _zero_prediction_loss(prob, idx)
            noise = 1e-12 * torch.where(torch.isfinite(zero), zero.abs(), 0.0)
    worse = torch.isfinite(start) & (end > start * (1 + 1e-9) + noise)
    for j in np.flatnonzero(worse.cpu().numpy()).tolist():
        i = rows[j]
        reason[i] = "failed"
        message[i] = (f"the fit ended worse than it started (loss {float(end[j]):.6g} > "
                      f"{float(start[j]):.6g} at the start)")


def _zero_prediction_loss(prob, idx) -> torch.Tensor:
    """``(k,)`` the loss of predicting 0 at every point of the problems ``idx`` (as
    ``verdict._zero_prediction_loss``), over each one's own points."""
    r = -prob.y[idx] if prob.sigma is None else -prob.y[idx] / prob.sigma[idx]
    return prob.reduce(r, idx)


#: a gradient method's end within this (relative) of a bound holds its parameter there, as
#: ``fit`` holds it (``near_bounds(values, bounds, 1e-9)`` after a gradient method)
AT_BOUND = 1e-9


def plateaus(reason, message, prob, tr, theta, first) -> None:
    """``stationary.plateau_message`` for the gradient methods' ``ftol``/``gtol`` ends, as
    ``fit`` judges them: over the free parameters each end does not hold on a bound
    (``AT_BOUND``), the rows grouped by the parameters held, each group judged by
    ``_judge`` over its own free ones. (Rows with a parameter on a bound had been left as
    they were: a kinked fit on a bound, 2e-4 above a point a short step away, converged.)"""
    from .many_kkt import _near
    rows = np.flatnonzero(np.isin(reason, ("gtol", "ftol")))
    if prob.loss.name not in ("mse", "rmse", "huber", "mae") or not rows.size:
        return
    hold = np.zeros((rows.size, len(tr.free)), dtype=bool)
    if not tr.identity:
        idx = torch.as_tensor(rows, device=theta.device)
        near = _near(theta[idx][:, tr.free_at], tr.lo[idx], tr.hi[idx], AT_BOUND)
        hold = (near[0] | near[1]).cpu().numpy()
    groups: dict[bytes, list] = {}
    for j, key in enumerate(hold):
        groups.setdefault(key.tobytes(), []).append(int(rows[j]))
    for key, group in groups.items():
        keep = np.flatnonzero(~np.frombuffer(key, dtype=bool))
        if keep.size:                   # every free parameter held: nothing to judge
            _judge(reason, message, prob, tr, theta, first, np.asarray(group), keep)


def _judge(reason, message, prob, tr, theta, first, rows, keep) -> None:
    """The test of ``plateaus`` on the ends ``rows`` over the free parameters ``keep``
    (indices into ``tr.free``; the others held where they are): the largest cosine between
    the loss's residual weights and a Jacobian column must be at most ``PLATEAU``, but where
    the fit is exact (``stationary.exact_fit``, its scale the smaller of the loss at all-zero
    parameters and at the start ``first``, as ``stationary._loss_scale``); a model with kinks
    is judged by ``kink_stops.kink_verdicts``, mae's ends by a look around."""
    from .irls_check import huber_certificate
    from .many_engines import ManyTransformFixedAt
    from .stationary import (UNDERFLOW_TEXT, exact_fit, gauss_newton_gain,
                              loss_scale, rounding_losses, smooth, underflowed)
    loss = prob.loss
    idx = torch.as_tensor(rows, device=theta.device)
    at = tr.free_at[torch.as_tensor(keep, device=tr.free_at.device)]
    free = tuple(tr.free[j] for j in keep)
    v = theta[idx][:, at]
    with torch.no_grad():
        jr = prob.jacobian(ManyTransformFixedAt(tr, theta, at))(v, idx)      # (k, F+1, n)
        end = prob.objective(theta[idx], idx)
        zero = prob.objective(torch.zeros_like(theta[idx]), idx)
    F = len(free)
    J = jr[:, :F].transpose(-1, -2)
    delta = loss.delta if loss.name == "huber" else float("inf")
    _, cos = huber_certificate(jr[:, F], J, delta,
                               None if prob.mask is None else prob.mask[idx])
    rounding = rounding_losses(prob, idx)
    r_end = jr[:, F] if prob.mask is None else torch.where(prob.mask[idx], jr[:, F], 0.0)
    exact = exact_fit(end, loss_scale(zero, first[idx], rounding), loss.name,
                      lambda: gauss_newton_gain(r_end, J, delta))
    ys = prob.y[idx] if prob.sigma is None else prob.y[idx] / prob.sigma[idx]
    under = underflowed(end, jr[:, F], ys if prob.mask is None else ys * prob.mask[idx])
    r = jr[:, F] if prob.mask is None else torch.where(prob.mask[idx], jr[:, F], 0.0)
    ctx = (prob, tr, theta, idx, at, free, r, J, delta, end, cos)
    if loss.name != "mae" and not smooth(prob.model):
        why = _kinked(ctx, (~exact & ~under).nonzero().flatten())
    elif loss.name == "mae":
        why = _mae(ctx, (~exact).nonzero().flatten())
    else:
        why = _smooth(ctx, exact)
    for i in np.flatnonzero(under.cpu().numpy()):
        why[i] = UNDERFLOW_TEXT
    for i, text in enumerate(why):
        if text is not None:
            reason[rows[i]], message[rows[i]] = "failed", text


def _kinked(ctx, look) -> list:
    """``kink_stops.kink_verdicts`` on the ends ``look`` (positions in ``ctx``'s rows)."""
    from .kink_stops import kink_verdicts
    from .many_engines import ManyTransformFixedAt
    prob, tr, theta, idx, at, free, r, J, delta, end, cos = ctx
    why: list = [None] * len(idx)
    if not look.numel():
        return why
    sub = idx[look]

    def jr_at(moves, k):         # (rows k of sub: each once)
        moved = theta[sub[k]].clone()
        moved[:, at] = moved[:, at] + moves
        th = theta.clone()
        th[sub[k]] = moved
        with torch.no_grad():
            out = prob.jacobian(ManyTransformFixedAt(tr, th, at))(moved[:, at], sub[k])
        return out[:, len(free)], out[:, :len(free)].transpose(-1, -2)
    said = kink_verdicts(lambda th, k: prob.objective(th, sub[k]), jr_at, theta[sub], at,
                         r[look], J[look], delta, end[look], cos[look], free,
                         prob.model.identifiable)
    for j, text in zip(look.tolist(), said):
        why[j] = text
    return why


def _mae(ctx, look) -> list:
    """mae's kinks: a gradient that does not vanish is no verdict; a lower point near by
    (``falls_nearby``) is, as fit judges."""
    from .stationary import FALL, falls_nearby, kink_text
    prob, tr, theta, idx, at, free, r, J, delta, end, cos = ctx
    why: list = [None] * len(idx)
    if not look.numel():
        return why
    with torch.no_grad():
        fall = falls_nearby(lambda th, k: prob.objective(th, idx[look][k]), theta[idx[look]],
                            at, r[look], J[look], None, end[look])
    exact = prob.model.identifiable
    for j, f in zip(look.tolist(), fall.tolist()):
        if f > FALL:
            why[j] = kink_text(f, True, exact)
    return why


def _smooth(ctx, exact) -> list:
    """A smooth model's end: its largest cosine above ``PLATEAU`` is a plateau; a small one
    on a long flat valley is told by the Gauss-Newton gain (as fit judges)."""
    from .stationary import PLATEAU, VALLEY, gauss_newton_gain, plateau_text, valley_text
    prob, tr, theta, idx, at, free, r, J, delta, end, cos = ctx
    identifiable = prob.model.identifiable
    bad = (cos > PLATEAU) & ~exact
    valley = torch.zeros_like(end)
    look = (~bad & ~exact).nonzero().flatten()
    if look.numel():
        valley[look] = gauss_newton_gain(r[look], J[look], delta)
    psi = r.clamp(-delta, delta).unsqueeze(-1)
    along = (J * psi).sum(-2).abs() / torch.linalg.vector_norm(J, dim=-2).clamp_min(1e-300)
    why: list = [None] * len(idx)
    for i in np.flatnonzero((valley > VALLEY).cpu().numpy()):
        why[i] = valley_text(float(valley[i]), identifiable)
    for i in np.flatnonzero(bad.cpu().numpy()):
        why[i] = plateau_text(float(cos[i]), free[int(along[i].argmax())], identifiable)
    return why
