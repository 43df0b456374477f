"""``fit``'s finish on the bounds for ``fit_many``'s LM ends (``many_engines.run_engine``).

LM in the internal variables of the bounds stalls or creeps near a bound; ``fit`` finishes
its one end by the active-set method (``active_set``) with inner fits of its own settings.
The same finish, batched, is a chain of ``many_kkt`` (polish, certify, finish, refit) and
``many_refine`` (the active set itself; wrong bounds released); here are its order, the
settings of its inner fits (``finish_config``), and ``fit``'s verdicts on what it
certifies (``weakly_held_rows``; ``free_beside_bounds``).
"""
from __future__ import annotations

import numpy as np
import torch

from .batch_lm import OPTIONS as LM_OPTIONS
from .many_engines import ManyTransformFixedAt


def finish_lm_ends(prob, tr, theta, steps, reason, message, cfg):
    """LM's ends with bounds, finished as ``fit`` finishes them (``many_kkt``,
    ``many_refine``); returns the new ``theta``, ``steps``, ``reason``, ``message`` change
    in place. A converged end that is a free optimum beside a bound (``free_beside_bounds``)
    is no parameter sitting on its bound: ``release_wrong_bounds`` leaves it."""
    from .many_kkt import (certify_on_bounds, finish_lm_on_bounds, polish_on_bounds,
                           refit_inside)
    from .many_refine import release_wrong_bounds
    o = {k: cfg["options"].get(k, LM_OPTIONS[k]) for k in LM_OPTIONS}
    theta = polish_on_bounds(prob, tr, theta, steps, reason, message, cfg)
    certify_on_bounds(prob, tr, theta, reason, message, o, cfg["steps"])
    theta = finish_lm_on_bounds(prob, tr, theta, steps, reason, message, cfg)
    theta = refit_inside(prob, tr, theta, steps, reason, message, cfg)
    rest = np.flatnonzero(~free_beside_bounds(prob, tr, theta, reason))
    return _on_rows(release_wrong_bounds, rest, prob, tr, theta, steps, reason, message,
                    finish_config(cfg))


def free_beside_bounds(prob, tr, theta, reason) -> np.ndarray:
    """``(k,)`` the converged ends with a parameter within ``active_set.NEAR`` of a bound
    but inside it (beyond ``FEAS_TOL``) where LM's rounding test passes over every free
    parameter, that one included (``many_kkt._inner_at_end``): a free optimum beside the
    bound, as ``fit``'s active set ends it (it holds the parameter on the bound, finds the
    loss falling inwards, releases it and certifies the end inside). Its gradient's cosines
    are rounding there, and can pass ``STUCK_MU`` (data of 2 with noise of 1e-9 leave the
    residuals 7 digits: a pseudo-Voigt with ``eta`` 1.1e-9 inside its bound at 0 failed,
    "eta on a bound where the loss falls inwards", where fit converged)."""
    from .active_set import FEAS_TOL
    from .many_kkt import _inner_at_end, _near, column_cosines
    out = np.zeros(theta.shape[0], dtype=bool)
    v = theta[:, tr.free_at]
    on_lo, on_hi = _near(v, tr.lo, tr.hi)
    at_lo, at_hi = _near(v, tr.lo, tr.hi, FEAS_TOL)
    beside = ((on_lo | on_hi).any(-1) & ~(at_lo | at_hi).any(-1)
              & torch.isfinite(theta).all(-1)).cpu().numpy()
    rows = np.flatnonzero(beside & np.isin(reason, ("gtol", "ftol", "xtol")))
    if not rows.size:
        return out
    idx = torch.as_tensor(rows, device=theta.device)
    F = len(tr.free)
    with torch.no_grad():
        jr = prob.jacobian(ManyTransformFixedAt(tr, theta))(v[idx], idx)
    J, r = jr[:, :F], jr[:, F]
    g, cos = column_cosines(J, r)
    every = torch.ones_like(cos, dtype=torch.bool)
    out[rows] = _inner_at_end(J, r, g, cos, every, prob.ydata[idx]).cpu().numpy()
    return out


def _on_rows(finish, rows, prob, tr, theta, steps, reason, message, cfg):
    """``finish(prob, tr, theta, steps, reason, message, cfg)`` on the rows ``rows`` alone
    (a sub-batch of them, its results put back); returns the new ``theta``."""
    from .many_problem import ManyProblem, ManyTransform
    if rows.size == theta.shape[0]:
        return finish(prob, tr, theta, steps, reason, message, cfg)
    if not rows.size:
        return theta
    sel = torch.as_tensor(rows, device=theta.device)
    sub = ManyProblem(prob.model, prob.x if prob.shared_x else prob.x[sel], prob.y[sel],
                      None if prob.sigma is None else prob.sigma[sel],
                      None if prob.mask is None else prob.mask[sel], prob.loss, prob.shared_x)
    sub_tr = ManyTransform(tr.names, tr.free, tr.lo[sel], tr.hi[sel], theta[sel])
    sub_steps, sub_reason, sub_message = steps[sel].clone(), reason[rows], message[rows]
    end = finish(sub, sub_tr, theta[sel], sub_steps, sub_reason, sub_message, cfg)
    theta = theta.clone()
    theta[sel], steps[sel] = end, sub_steps
    reason[rows], message[rows] = sub_reason, sub_message
    return theta


def finish_config(cfg: dict) -> dict:
    """The settings of the inner fits of ``fit_many``'s finishes on the bounds, as ``fit``
    runs its own (``FitRun._solve``): LM's default options (``xtol=1e-15``, not the batch's
    ``LM_XTOL``), and LM's own rank test at each converged end (``own_rank``). With the
    batch's ``xtol=1e-10`` an inner fit along a flat valley stopped, or stalled, where fit's
    went on to a certified optimum (a biexponential through 5 points: fit converged,
    fit_many failed naming c and d)."""
    return dict(cfg, options={}, own_rank=True)


def finish_by_active_set(prob, tr, theta, rows, steps, reason, message, cfg,
                         finished: set | None = None) -> torch.Tensor:
    """``fit``'s finish on the bounds (``many_refine.refine_rows``, its inner fits as
    ``fit``'s: ``finish_config``) on the ends ``rows``, and ``fit``'s verdict on a
    certified end with a bound that holds its parameter with a multiplier of about 0
    (``weakly_held_rows``). Returns the new ``theta``; ``steps``, ``reason``, ``message``
    change in place, and the rows finished join ``finished`` when given."""
    from .many_refine import refine_rows
    done: set = set()
    theta = refine_rows(prob, tr, theta, np.asarray(rows, dtype=np.int64), steps, reason,
                        message, finish_config(cfg), done)
    weakly_held_rows(prob, tr, theta, sorted(done), reason, message)
    if finished is not None:
        finished |= done
    return theta


def weakly_held_rows(prob, tr, theta, rows, reason, message) -> None:
    """``fit_ends.weakly_held`` on the converged ends ``rows`` (the active set's certified
    ones), as ``fit`` judges its own: the parameters on a bound (``FEAS_TOL``) with a
    multiplier of at most ``WEAK_MU`` whose columns lie in the span of the free ones' are
    not determined (``a*x + b*x`` with ``a`` held at 1 by a multiplier of 0: every ``a``
    fits as well). ``reason``, ``message`` change in place."""
    from .active_set import FEAS_TOL
    from .fit_ends import WEAK_MU, weakly_held
    from .many_kkt import _near, column_cosines
    from .many_refine import _alone
    rows = [b for b in rows if reason[b] in ("gtol", "ftol", "xtol")]
    if not rows:
        return
    idx = torch.as_tensor(rows, device=theta.device)
    F = len(tr.free)
    v = theta[idx][:, tr.free_at]
    on_lo, on_hi = _near(v, tr.lo[idx], tr.hi[idx], FEAS_TOL)
    with torch.no_grad():
        jr = prob.jacobian(ManyTransformFixedAt(tr, theta))(v, idx)
    _, cos = column_cosines(jr[:, :F], jr[:, F])
    weak = ((on_lo | on_hi) & (torch.where(on_lo, cos, -cos) <= WEAK_MU)).cpu().numpy()
    held = (on_lo | on_hi).cpu().numpy()
    for j in np.flatnonzero(weak.any(-1)).tolist():
        b = rows[j]
        free = tuple(n for i, n in enumerate(tr.free) if not held[j, i])
        named = tuple(n for i, n in enumerate(tr.free) if weak[j, i])
        reason[b], message[b] = weakly_held(_alone(prob, b), theta[b], free, named,
                                            str(reason[b]), str(message[b]))
