"""The batched engines behind ``fit_many``, one name each, and the covariance of each fit.

``run_engine(problem, transform, u0, rates, cfg)`` fits the rows of ``u0`` ``(k, F)``
(internal values) and gives the model's parameters ``(k, P)``, steps, reasons, messages
and, for squared losses, the covariance ``(k, F, F)`` of the free parameters as
``curve_fit``'s ``pcov`` (``result.least_squares_covariance``, batched):

    pcov = V diag(1 / s^2) V^T * S / (n - F),   J = U diag(s) V^T   (S/(n-F) -> 1 if
    absolute_sigma), NaN where n <= F or J has lost rank (s_min <= eps max(n, F) s_max).
"""
from __future__ import annotations

import torch

from .batch_lm import CODES, MAX_STEPS, MESSAGES, batch_lm, residuals_and_jacobians
from .lm import OPTIONS as LM_OPTIONS

_GD = ("gd", "momentum", "adam", "adamw", "rmsprop")


def run_engine(prob, tr, u0, rates, cfg, absolute_sigma=False):
    method = cfg["method"]
    if method == "lm":
        u, steps, reason, message = _lm(prob, tr, u0, cfg)
    elif method == "irls":
        from .batch_irls import batch_irls
        u, steps, reason, message = batch_irls(prob, tr, u0, cfg)
    else:
        from .batch_gd import batch_gd
        u, steps, reason, message = batch_gd(prob, tr, u0, rates, cfg)
    idx = torch.arange(u.shape[0], device=u.device)
    with torch.no_grad():
        theta = tr.external(u, idx)
    cov = None
    if prob.loss.squared:
        ok = torch.tensor([r != "diverged" for r in reason], device=u.device)
        cov = covariance(prob, tr, theta, ok, absolute_sigma)
    return theta, steps, reason, message, cov


def _lm(prob, tr, u0, cfg):
    o = {k: float(cfg["options"].get(k, LM_OPTIONS[k])) for k in ("ftol", "xtol", "gtol")}
    max_tries = int(cfg["options"].get("max_tries", LM_OPTIONS["max_tries"]))

    def fn(u, idx):
        return prob.residuals(tr.external(u, idx), idx)
    res = batch_lm(fn, u0, ydata=prob.ydata, max_steps=cfg["steps"], max_tries=max_tries, **o)
    codes, rank = res.code.tolist(), res.rank.tolist()
    F = u0.shape[-1]
    reason, message = [], []
    for c, k in zip(codes, rank):
        why = CODES[c]
        text = MESSAGES[c] if c != MAX_STEPS else f"reached the step limit ({cfg['steps']} steps)"
        if why in ("gtol", "ftol", "xtol") and k < F:
            why, text = "failed", (f"the Jacobian lost rank ({k} of {F}): the data determine "
                                   "only combinations of the parameters, not each one; the "
                                   "loss is at a minimum but these values are one choice "
                                   "among many")
        reason.append(why)
        message.append(text)
    return res.theta, res.steps, reason, message


def covariance(prob, tr, theta, ok, absolute_sigma=False):
    """``(k, F, F)`` pcov of the free parameters at ``theta`` ``(k, P)`` (NaN where
    undefined or not ``ok``)."""
    k = theta.shape[0]
    idx = torch.arange(k, device=theta.device)
    at = tr.free_at

    def fn(f, i):
        full = theta[i].clone()
        full[:, at] = f
        return prob.residuals(full, i)
    r, jac = residuals_and_jacobians(fn, theta[:, at], idx)
    n = prob.count
    F = jac.shape[-1]
    good = ok & torch.isfinite(jac).flatten(1).all(-1) & torch.isfinite(r).all(-1) & (n > F)
    jac = torch.where(good[:, None, None], jac, 0.0)
    _, s, vh = torch.linalg.svd(jac, full_matrices=False)
    eps = torch.finfo(jac.dtype).eps
    full_rank = s[:, -1] > eps * torch.clamp(n, min=F) * s[:, 0]
    inv = torch.where(s > 0, 1.0 / s.clamp_min(torch.finfo(s.dtype).tiny).square(), 0.0)
    pcov = (vh.transpose(-1, -2) * inv.unsqueeze(-2)) @ vh
    if not absolute_sigma:
        pcov = pcov * (r.square().sum(-1) / (n - F).clamp_min(1))[:, None, None]
    keep = good & full_rank
    return torch.where(keep[:, None, None], pcov, torch.nan)
