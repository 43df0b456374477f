"""The page's exact fit and what it knows about its uncertainty.

A model with a unique optimum (an expression, a polynomial) gets optimizer ``auto``: LM for
squared errors, IRLS for mae and huber, each certified by its own test. A flexible model
(``relu:K``, ``mlp``: ``Model.identifiable`` is False) has many optima and no method finds
"the" one, so it gets the core's ``auto`` for such models: the best of ``STARTS`` seeded
L-BFGS fits (``multistart``), and says so.

For a squared-error loss with a Jacobian of full rank, the uncertainty follows curve_fit's
conventions (``FitResult.stderr``, ``covariance``, ``confidence_band``):

- ``ci``: ``value +- t_{0.975, n-P} * stderr`` (Student's t, ``n`` points, ``P`` free
  parameters);
- ``chi2 = sum(((f(x_i) - y_i) / sigma_i)^2)`` (``sigma = 1`` without a sigma column),
  ``dof = n - P``, ``redchi = chi2 / dof``;
- ``band``: the 95% confidence band of the curve (one input only), by the delta method.
"""
from __future__ import annotations

import math

import numpy as np

from .. import fit
from ..errors import FitError
from ..models import make_model
from ..multistart import AUTO_STARTS
from ..stats import student_t_quantile
from . import dataview
from .runconfig import config_of, fit_kwargs
from .schemas import ExactIn
from .views import finite, span

STARTS = AUTO_STARTS
LEVEL = 0.95


def exact(req: ExactIn, check=lambda m: m, callback=None) -> dict:
    """The fit (``check`` refuses a model, ``callback`` may stop each fit: a deadline)."""
    data = dataview.of(req)
    x, y, sigma = data.part(test=False)
    model = check(make_model(req.model, data.inputs))
    flexible = not getattr(model, "identifiable", True)
    # the request's FitConfig (optimizer auto; its bounds, fixed values, absolute_sigma):
    # checked by the settings table, then fitted as gradfit.fit fits it
    kw = fit_kwargs(config_of(req, optimizer="auto"))
    r = fit(req.model, x, y, sigma=sigma, inputs=data.inputs, callback=callback, **kw)
    if flexible:        # the core's auto: the best of AUTO_STARTS seeded L-BFGS fits
        label = f"best of {STARTS} starts ({r.optimizer})"
    else:
        label = f"exact optimum ({r.optimizer})" if r.converged else f"{r.reason} ({r.optimizer})"
    d = r.to_dict(history=False)
    out = {"params": r.params, "loss": d["loss"], "optimizer": r.optimizer, "reason": r.reason,
           "message": r.message, "steps": r.steps, "converged": r.converged and not flexible,
           "starts": STARTS if flexible else 1, "label": label}
    if flexible:
        out.update(uncertainty=None, uncertainty_note="no standard errors: a flexible model has "
                   "many optima, so its parameters are not determined by the data")
    else:
        out.update(uncertainty(r, x, sigma))
    return out


def uncertainty(r, x: np.ndarray, sigma: np.ndarray | None) -> dict:
    """Standard errors, confidence intervals, chi-square and the band, where defined."""
    if r.stderr is None or r.covariance is None:
        why = ("standard errors need a squared-error loss (mse)" if r.loss_name not in ("mse", "rmse")
               else "no standard errors: " + r.message.rsplit("; ", 1)[-1])
        return {"uncertainty": None, "uncertainty_note": why}
    n, p = r.n_points, len(r.stderr)
    dof = n - p
    pred = r.predict(x)
    w = (pred - r.y) / (1.0 if sigma is None else sigma)
    chi2 = float(np.sum(w * w))
    t = student_t_quantile((1 + LEVEL) / 2, dof) if dof > 0 else math.inf
    table = {name: {"value": r.params[name], "stderr": se,
                    "ci": [r.params[name] - t * se, r.params[name] + t * se]}
             for name, se in r.stderr.items()}
    out = {"level": LEVEL, "params": table, "chi2": chi2, "dof": dof,
           "redchi": chi2 / dof if dof > 0 else None, "weighted": sigma is not None}
    if np.ndim(x) == 1 and dof > 0:
        xs = span(x, 200)
        try:
            lo, hi = r.confidence_band(xs, LEVEL)
            out["band"] = {"x": xs.tolist(), "lo": finite(lo), "hi": finite(hi)}
        except FitError:
            pass
    return {"uncertainty": _finite_tree(out), "uncertainty_note": None}


def _finite_tree(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite_tree(u) for k, u in v.items()}
    if isinstance(v, list):
        return [_finite_tree(u) for u in v]
    return v
