"""A learning-rate sweep as one batched run: one problem of ``batch_gd`` per rate.

The sweep fits the same model to the same data at rates ``lr_1 .. lr_B``. Run one at a
time, that is B fit loops; here it is one loop over a batch ``theta`` ``(B, P)``: every
step evaluates all B parameter sets in one call of the (batch-first) model, takes one
backward pass of ``sum_b L_b`` (the runs are independent, so it gives every ``g_b``) and
updates row ``b`` with its own rate ``lr_b``. Each run keeps ``fit``'s stopping rules and
leaves the batch when it stops; each comes back as the ``FitResult`` that
``fit(model, x, y, lr=lr_b, ...)`` gives, loss curve, trajectory and gradient norms
included, equal to it to rounding (a run that diverged is ``fit``'s own: run again alone,
for the point where its divergence showed, which ends its history).

    >>> from gradfit.data import lesson_data
    >>> d = lesson_data()
    >>> runs = sweep_fits("a*x^2 + b*x + c", d.x, d.y, [0.001, 0.05, 0.4], steps=30)
    >>> [r.reason for r in runs], len(runs[0].history)
    (['max_steps', 'max_steps', 'diverged'], 31)

Batched: gd, momentum, adam, adamw, rmsprop, with their options and schedules. A sweep with
bounds, fixed values, mini-batches (sgd), L-BFGS, a time limit or a callback returns None
here; the caller then runs ``fit`` per rate.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from .batch_gd import batch_gd
from .fit import _config, fit
from .fit_prepare import DTYPE, prepare
from .many_problem import ManyProblem, ManyTransform
from .models import start_values
from .optimizers import batched_optimizers, get_optimizer, resolve_options
from .result import REASONS, FitResult, goodness, least_squares_covariance
from .verdict import judge

_FIT_ARGS = {"sigma", "loss", "delta", "p0", "seed", "ftol", "gtol", "schedule", "divergence",
             "dtype", "device", "inputs", "absolute_sigma", "bounds", "fixed"}


def sweep_fits(model, x, y, lrs: Sequence[float], *, optimizer: str = "gd", steps: int = 100,
               **fit_kwargs) -> list[FitResult] | None:
    """``[fit(model, x, y, optimizer=optimizer, lr=lr, steps=steps, **fit_kwargs) for lr in
    lrs]``, as one batched run; None when the sweep needs the one-fit loop (see above)."""
    options = {k: v for k, v in fit_kwargs.items() if k not in _FIT_ARGS}
    if optimizer not in batched_optimizers("gradient") or fit_kwargs.get("bounds") or fit_kwargs.get("fixed") \
            or set(options) - set(get_optimizer(optimizer).options):
        return None
    kw = {k: v for k, v in fit_kwargs.items() if k in _FIT_ARGS}
    t0 = time.perf_counter()
    sigma, seed = kw.get("sigma"), kw.get("seed", 0)
    cfg = _config(model, kw.get("loss", "mse"), optimizer, float(lrs[0]), steps, kw.get("p0"),
                  seed, kw.get("ftol"), kw.get("gtol"), None, kw.get("schedule", "constant"),
                  kw.get("delta", 1.0), kw.get("divergence", 1e4), kw.get("dtype", "float64"),
                  kw.get("device", "cpu"), options, absolute_sigma=kw.get("absolute_sigma", False))
    prob = prepare(model, x, y, sigma, loss=cfg.loss, delta=cfg.delta, dtype=DTYPE[cfg.dtype],
                   device=cfg.device, inputs=kw.get("inputs"))
    m, names = prob.model, prob.model.param_names
    if not names:
        return None                     # fit's own message for a model without parameters
    start = start_values(m, cfg.p0_dict, prob.x, seed)
    B, P, dt, dev = len(lrs), len(names), prob.y.dtype, prob.y.device
    many = ManyProblem(m, prob.x, prob.y.expand(B, -1),
                       None if prob.sigma is None else prob.sigma.expand(B, -1), None,
                       prob.loss, shared_x=True)
    inf = torch.full((B, P), float("inf"), dtype=dt, device=dev)
    tr = ManyTransform(names, names, -inf, inf, torch.zeros((B, P), dtype=dt, device=dev))
    u0 = torch.tensor([start[n] for n in names], dtype=dt, device=dev).expand(B, P).clone()
    engine = dict(method=optimizer, options=resolve_options(get_optimizer(optimizer), options),
                  steps=steps, ftol=cfg.ftol, gtol=cfg.gtol, divergence=cfg.divergence,
                  schedule=cfg.schedule)
    trace: dict = {}
    u, done, reasons, messages = batch_gd(many, tr, u0, torch.tensor(lrs, dtype=dt, device=dev),
                                          engine, trace)
    wall = (time.perf_counter() - t0) / B
    # a diverged run is run again alone: the batch keeps no record of the point where
    # the divergence showed, which ends fit's history and trajectory (it stopped early, so
    # the rerun is short)
    return [_result(prob, cfg, names, start, float(lrs[b]), u[b], int(done[b]), reasons[b],
                    messages[b], {k: v[:, b] for k, v in trace.items()}, wall)
            if reasons[b] != "diverged" else
            fit(model, x, y, optimizer=optimizer, lr=float(lrs[b]), steps=steps, **fit_kwargs)
            for b in range(B)]


def _result(prob, cfg, names, start, lr, final, steps, reason, detail, trace, wall) -> FitResult:
    """Run ``b`` as ``fit``'s ``FitRun._finish`` reports a fit without bounds."""
    losses = trace["loss"][:steps].tolist()
    points = trace["point"][:steps]
    with torch.no_grad():
        final_loss = prob.objective(final).item()
    trajectory = torch.cat([points, final[None]]).cpu().numpy()
    stderr = cov = None
    reason, detail = judge(prob, final, names, reason, detail, losses[0] if losses else None,
                           final_loss, None)
    if prob.loss.squared and reason != "diverged":
        cov = least_squares_covariance(prob.residuals, final, absolute_sigma=cfg.absolute_sigma)
        if cov is not None:
            stderr = dict(zip(names, np.sqrt(np.clip(np.diag(cov), 0, None)).tolist()))
    with torch.no_grad():
        r2, rmse = goodness(prob.predict(final), prob.y)
    return FitResult(
        params=dict(zip(names, final.tolist())), loss=final_loss, loss_name=prob.loss.name,
        model=prob.model.spec, optimizer=cfg.optimizer, lr=lr, steps=steps,
        converged=REASONS[reason][0], reason=reason, message=detail,
        history=np.array(losses + [final_loss]), trajectory=trajectory,
        grad_norms=trace["gnorm"][:steps].cpu().numpy(), wall_time=wall, n_points=prob.n,
        stderr=stderr, covariance=cov, r2=r2, rmse=rmse, start=start, model_object=prob.model,
        x=prob.x.cpu().numpy(), y=prob.y.cpu().numpy(),
        sigma=None if prob.sigma is None else prob.sigma.cpu().numpy(),
        at_bound=(), bounds={}, fixed={}, jacobian=prob.model.jacobian_kind)


__all__ = ["sweep_fits"]
