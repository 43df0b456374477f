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


def plateaus(reason, message, prob, tr, theta, first) -> None:
    """``stationary.plateau_message`` for the gradient methods' ``ftol``/``gtol`` ends: the
    largest cosine between the loss's residual weights and a Jacobian column of the free
    parameters not on a bound must be at most ``PLATEAU``, but where the loss fell to
    ``EXACT`` of the smaller of its values at all-zero parameters and at the start
    ``first`` (an exact fit, as ``stationary._loss_scale``); a model with kinks is judged by
    ``kink_stops.kink_verdicts``, as fit judges it (a row with a parameter on a bound is
    left as it is)."""
    from .irls_check import huber_certificate
    from .kink_stops import kink_verdicts
    from .many_kkt import _near
    from .stationary import (EXACT, FALL, PLATEAU, UNDERFLOW_TEXT, VALLEY, falls_nearby,
                             gauss_newton_gain, kink_text, plateau_text, smooth, underflowed,
                             valley_text)
    loss = prob.loss
    rows = np.flatnonzero(np.isin(reason, ("gtol", "ftol")))
    if loss.name not in ("mse", "rmse", "huber", "mae") or not rows.size:
        return
    mae = loss.name == "mae"
    idx = torch.as_tensor(rows, device=theta.device)
    at, F = tr.free_at, len(tr.free)
    v = theta[idx][:, at]
    from .many_engines import ManyTransformFixedAt
    fixed_at = ManyTransformFixedAt(tr, theta)
    with torch.no_grad():
        jr = prob.jacobian(fixed_at)(v, idx)      # (k, F+1, n)
        end = prob.objective(theta[idx], idx)
        zero = prob.objective(torch.zeros_like(theta[idx]), idx)
    J = jr[:, :F].transpose(-1, -2)
    held = torch.zeros(len(rows), dtype=torch.bool, device=theta.device)
    hold = torch.zeros(len(rows), F, dtype=torch.bool, device=theta.device)
    if not tr.identity:
        on_lo, on_hi = _near(v, tr.lo[idx], tr.hi[idx])
        hold = on_lo | on_hi
        J = torch.where(hold.unsqueeze(-2), 0.0, J)      # held by its bound
        held = hold.any(-1)
    delta = loss.delta if loss.name == "huber" else float("inf")
    _, cos = huber_certificate(jr[:, F], J, delta,
                               None if prob.mask is None else prob.mask[idx])
    found = [torch.where(torch.isfinite(v) & (v > 0), v, torch.inf) for v in (zero, first[idx])]
    scale = torch.minimum(*found)
    exact = torch.isfinite(scale) & (end <= EXACT * scale)
    psi = jr[:, F].clamp(-delta, delta).unsqueeze(-1)
    along = ((J * psi).sum(-2).abs() / torch.linalg.vector_norm(J, dim=-2).clamp_min(1e-300))
    ys = prob.y[idx] if prob.sigma is None else prob.y[idx] / prob.sigma[idx]
    under = underflowed(end, jr[:, F], ys if prob.mask is None else ys * prob.mask[idx])
    r = jr[:, F] if prob.mask is None else torch.where(prob.mask[idx], jr[:, F], 0.0)
    identifiable = prob.model.identifiable
    if not mae and not smooth(prob.model):
        look = (~held & ~exact & ~under).nonzero().flatten()
        if look.numel():
            sub = idx[look]

            def jr_at(moves, k):         # (rows k of sub: each once)
                moved = theta[sub[k]].clone()
                moved[:, at] = moved[:, at] + moves
                th = theta.clone()
                th[sub[k]] = moved
                with torch.no_grad():
                    out = prob.jacobian(ManyTransformFixedAt(tr, th))(moved[:, at], sub[k])
                Jk = out[:, :F].transpose(-1, -2)
                return out[:, F], torch.where(hold[look[k]].unsqueeze(-2), 0.0, Jk)
            why = kink_verdicts(lambda th, k: prob.objective(th, sub[k]), jr_at, theta[sub],
                                at, r[look], J[look], delta, end[look], cos[look], tr.free,
                                identifiable)
            for j, text in enumerate(why):
                if text is not None:
                    reason[rows[int(look[j])]], message[rows[int(look[j])]] = "failed", text
        for i in np.flatnonzero(under.cpu().numpy()):
            reason[rows[i]], message[rows[i]] = "failed", UNDERFLOW_TEXT
        return
    bad = (cos > PLATEAU) & ~exact if not mae else ~exact
    fall = torch.zeros_like(end)
    if mae:
        # mae's kinks: a gradient that does not vanish is no verdict; a lower point near by
        # is (as fit judges; a row with a parameter on a bound is left as it is)
        look = (bad & ~held).nonzero().flatten()
        if look.numel():
            with torch.no_grad():
                fall[look] = falls_nearby(lambda th, k: prob.objective(th, idx[look][k]),
                                          theta[idx[look]], at, r[look], J[look],
                                          None, end[look])
        bad = fall > FALL
    valley = torch.zeros_like(end)
    if not mae:
        # a small cosine on a long flat valley: the Gauss-Newton gain tells (as fit judges)
        look = (~bad & ~exact).nonzero().flatten()
        if look.numel():
            valley[look] = gauss_newton_gain(r[look], J[look], delta)
    flat = valley > VALLEY
    for i in np.flatnonzero(flat.cpu().numpy()):
        reason[rows[i]] = "failed"
        message[rows[i]] = valley_text(float(valley[i]), identifiable)
    for i in np.flatnonzero((bad | under).cpu().numpy()):
        reason[rows[i]] = "failed"
        message[rows[i]] = UNDERFLOW_TEXT if under[i] else \
            kink_text(float(fall[i]), mae, mae and identifiable) \
            if mae else plateau_text(float(cos[i]), tr.free[int(along[i].argmax())],
                                     identifiable)
