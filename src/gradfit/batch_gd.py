"""Gradient methods over B problems at once, each with its own learning rate and stopping.

Every problem follows ``fit``'s loop exactly: step ``k`` evaluates the loss ``L_b`` and its
gradient ``g_b`` at ``theta_b`` (one backward pass of ``sum_b L_b`` gives every ``g_b``:
the problems are independent), then updates ``theta_b`` with the learning rate
``lr_b * s_k`` (``s_k`` the schedule's factor, read from ``torch.optim.lr_scheduler`` on a
stand-in optimizer, with the momenta a one-cycle schedule sets: ``ScheduleSteps``), by the
method's update rule (``OptimizerSpec.rule``, which ``fit`` runs on its one problem, so
that a problem here takes the steps ``fit`` takes, bit for bit):

- gd:        ``theta -= lr g``   (``accumulate_grad``: ``g`` the sum of every gradient so far)
- momentum:  ``b = mu b + g`` (``b = g`` at first), ``theta -= lr (g + mu b if nesterov else b)``
- adam:      ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
             ``theta -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + 1e-8)``
             (``g += wd theta`` first; adamw: ``theta *= 1 - lr wd`` instead)
- rmsprop:   ``v = 0.99 v + 0.01 g^2``, ``q = g / (sqrt(v) + 1e-8)``,
             ``theta -= lr q`` (with momentum ``b = mu b + q``, ``theta -= lr b``)

as ``torch.optim`` computes them. A problem stops by ``gtol`` (gradient norm), ``ftol``
(relative change of its loss), divergence (a non-finite loss or gradient, or the loss above
``divergence`` times its start: the result is then the last point whose loss was finite)
or the step limit, and leaves the batch.

``trace`` (a dict, optional) receives what ``fit`` records of each step: ``loss`` and
``gnorm`` ``(steps, B)`` and ``point`` ``(steps, B, P)`` (the model's parameters the step
started from), NaN where a problem recorded no step (it had stopped, or diverged there).
A learning-rate sweep is one such run, one problem per rate (``lr_batch``).
"""
from __future__ import annotations

import math

import torch

from .fit import DEFAULT_FTOL, DEFAULT_GTOL
from .many_parallel import check_stop
from .optimizers import ScheduleSteps, get_optimizer


def batch_gd(prob, tr, u0, rates, cfg, trace: dict | None = None):
    """Fit the rows of ``u0`` ``(k, F)``; returns ``u``, steps, reasons, messages."""
    method, o, steps = cfg["method"], dict(cfg["options"]), cfg["steps"]
    ftol = cfg["ftol"] if cfg["ftol"] is not None else DEFAULT_FTOL
    gtol = cfg["gtol"] if cfg["gtol"] is not None else DEFAULT_GTOL
    factor = cfg["divergence"]
    rule = get_optimizer(method).rule
    plan = ScheduleSteps(method, o, cfg["schedule"], steps)
    B, F = u0.shape
    dev, dtype = u0.device, u0.dtype
    out_u = u0.detach().clone()
    out_last = out_u.clone()                   # the start of each problem's last step
    out_steps = torch.zeros(B, dtype=torch.long, device=dev)
    reason, message = ["max_steps"] * B, [f"reached the step limit ({steps} steps)"] * B

    idx = torch.arange(B, device=dev)
    u = u0.detach().clone()
    last = u.clone()                           # the start of the last recorded step
    lr0 = rates.to(dtype)
    floor = rounding_floor(prob, idx)
    first = torch.full((B,), math.nan, dtype=dtype, device=dev)
    prev = torch.full((B,), math.nan, dtype=dtype, device=dev)
    state = [torch.zeros_like(u) for _ in range(2)]    # momentum / first and second moments
    if trace is not None:
        P = tr.external(u[:1], idx[:1]).shape[-1]
        trace.update(loss=torch.full((steps, B), math.nan, dtype=dtype, device=dev),
                     gnorm=torch.full((steps, B), math.nan, dtype=dtype, device=dev),
                     point=torch.full((steps, B, P), math.nan, dtype=dtype, device=dev))
    for k in range(steps):
        check_stop()
        if idx.numel() == 0:
            break
        t = u.requires_grad_(True)
        with torch.enable_grad():
            loss = prob.objective(tr.external(t, idx), idx)
            (g,) = torch.autograd.grad(loss.sum(), t)
        u, loss = u.detach(), loss.detach()
        if method == "gd" and o.get("accumulate_grad"):
            state[0] = state[0] + g
            g = state[0]
        gnorm = torch.linalg.vector_norm(g, dim=-1)
        if k == 0:
            first = loss.clone()
        finite = torch.isfinite(loss)
        scale, mom, betas = plan.current()
        plan.step()
        lr = (lr0 * scale).unsqueeze(-1)
        new = rule(u, g, lr, state, k, o, mom, betas)
        u_next = torch.where(finite.unsqueeze(-1), new, u)

        bad = ~finite | ~torch.isfinite(gnorm) | (
            (loss > factor * first.clamp_min(1e-300)) & (loss > floor[idx]))
        stop_g = ~bad & (gnorm <= gtol)
        stop_f = ~bad & ~stop_g & torch.isfinite(prev) & (
            (prev - loss).abs() <= ftol * prev.abs().clamp_min(1e-300))
        recorded = (~bad).long()
        if trace is not None:
            keep = ~bad
            trace["loss"][k, idx[keep]] = loss[keep]
            trace["gnorm"][k, idx[keep]] = gnorm[keep]
            with torch.no_grad():
                trace["point"][k, idx[keep]] = tr.external(u, idx)[keep]
        done = bad | stop_g | stop_f
        if done.any():
            for i in done.nonzero().flatten().tolist():
                b = int(idx[i])
                if bool(bad[i]):
                    reason[b] = "diverged"
                    message[b] = _diverged(k, float(loss[i]), float(gnorm[i]), float(first[i]),
                                           factor, float(prev[i]), float(lr0[i]))
                    out_u[b] = last[i] if k > 0 else u[i]
                elif bool(stop_g[i]):
                    reason[b] = "gtol"
                    message[b] = (f"the gradient norm {float(gnorm[i]):.3g} fell below "
                                  f"gtol={gtol:g}")
                    out_u[b], out_last[b] = u_next[i], u[i]
                else:
                    reason[b] = "ftol"
                    message[b] = ("the loss stopped changing (relative change at most "
                                  f"ftol={ftol:g})")
                    out_u[b], out_last[b] = u_next[i], u[i]
                out_steps[b] = k + int(recorded[i])
        last = u
        u, prev = u_next, loss
        if done.any():
            keep = ~done
            idx, u, last, lr0, first, prev = (v[keep] for v in (idx, u, last, lr0, first, prev))
            state = [s[keep] for s in state]
    if idx.numel():                            # the step limit
        out_u[idx], out_steps[idx], out_last[idx] = u, steps, last
    _final_check(prob, tr, out_u, out_last, reason, message, u0, factor)
    return out_u, out_steps, reason, message


def _diverged(k, loss, gnorm, first, factor, prev, lr) -> str:
    if not math.isfinite(loss):
        what = f"the loss became {loss}"
    elif not math.isfinite(gnorm):
        what = f"the gradient became {gnorm}"
    else:
        what = f"the loss {loss:.6g} grew beyond {factor:g} times its start {first:.6g}"
    last = f"last finite loss {prev:.6g} at step {k - 1}" if k > 0 else "no finite loss"
    return f"diverged at step {k}: {what} ({last}); try a smaller learning rate, e.g. lr={lr / 10:g}"


def rounding_floor(prob, idx: torch.Tensor) -> torch.Tensor:
    """``(k,)``: ``fit._rounding_loss`` of each problem (``stationary.rounding_losses``, at
    least 1e-12): a loss below it grew from an exact start by rounding, no divergence."""
    from .stationary import rounding_losses
    return rounding_losses(prob, idx).clamp_min(1e-12)


def _final_check(prob, tr, u, last, reason, message, u0, factor) -> None:
    """As ``fit``: a final point whose loss is not finite or has grown beyond ``divergence``
    times the start is a divergence, and the result is the start of the last step."""
    idx = torch.arange(u.shape[0], device=u.device)
    with torch.no_grad():
        loss = prob.objective(tr.external(u, idx), idx)
        start = prob.objective(tr.external(u0, idx), idx)
    bad = ~torch.isfinite(loss) | ~torch.isfinite(u).all(-1) | (
        (loss > factor * start.clamp_min(1e-300)) & (loss > rounding_floor(prob, idx)))
    for b in bad.nonzero().flatten().tolist():
        if reason[b] != "diverged":
            u[b] = last[b]
            reason[b] = "diverged"
            message[b] = ("diverged: the loss or a parameter became non-finite after the last "
                          "step; try a smaller learning rate")
