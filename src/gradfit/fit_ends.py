"""What the end of one fit means: the verdicts ``fit`` gives after its optimizer stops.

- ``stopped_short``: whether an exact fit with bounds stopped for a reason no bound
  explains (the active-set finish is then not run);
- ``refined_reason``: the stop reason after the active-set finish, naming the bounds;
- ``weakly_held``: a converged end whose parameters on bounds hold with a multiplier of
  about 0 and whose columns lie in the span of the free ones' is no determined optimum;
- ``float32_short``: a float32 LM end called converged that float64 would still lower;
- ``determined``: ``verdict.not_determined`` on a least-squares end (converged, or LM found
  no step), with the loss along the suspects' direction evaluated at the end's point.
"""
from __future__ import annotations

import numpy as np
import torch

from .active_set import held_up_by_a_bound
from .lm_codes import RUNAWAY, WALK, message as lm_message
from .lm import free_residuals_and_jacobian
from .verdict import (BOUNDS_PREFIX, looked_at_for_determination, lost_rank,
                      not_determined_scaled, walk_named)

FINISH_STEPS = 1000     # steps of the active set's inner fits in all (at least the limit's)
WEAK_MU = 1e-6          # a bound holding its parameter with a multiplier this small holds it
                        # weakly


def float32_short(prob, final, free, reason: str, detail: str) -> tuple[str, str]:
    """``precision.short_of_minimum`` on a float32 LM fit called converged."""
    if prob.y.dtype != torch.float32 or reason not in ("gtol", "ftol", "xtol") or not free:
        return reason, detail
    from .batch_lm import data_norm
    from .precision import message, short_of_minimum
    from .spd import moments
    names = prob.model.param_names
    idx = torch.tensor([names.index(n) for n in free], device=final.device)
    r, jac = free_residuals_and_jacobian(prob, final, idx)
    ys = prob.y if prob.sigma is None else prob.y / prob.sigma
    jr = torch.cat([jac.T, r[None]])[None]
    short, gain = short_of_minimum(moments(jr), data_norm(ys)[None], lambda rows: jr[rows])
    return ("failed", message(float(gain[0]))) if bool(short[0]) else (reason, detail)


def weakly_held(prob, final, free, weak, reason: str, detail: str) -> tuple[str, str]:
    """A converged end with parameters ``weak`` on bounds that hold them with a multiplier
    of about 0 is no determined optimum where their columns of the Jacobian lie in the span
    of the free ones' (``a*x + b*x`` with ``a`` on a bound: every ``a`` within its bounds,
    ``b`` following, fits equally well); the rank test over the free parameters alone
    cannot see it. A strongly held parameter (its multiplier positive) is determined by its
    bound, collinear or not."""
    lost = lost_rank(prob, final, tuple(free) + tuple(weak))
    if lost is None:
        return reason, detail
    named = ", ".join(weak)
    return "failed", (f"{lost}; {named} on {'its bound' if len(weak) == 1 else 'their bounds'} "
                      "with a multiplier of 0 (the loss is flat along the bound's normal): "
                      "other values within the bounds fit equally well")


def stopped_short(reason: str, detail: str, values: dict, bounds: dict) -> bool:
    """An exact fit with bounds that stopped before its end for a reason no bound explains:
    the time limit or a callback, or the step limit, a runaway or a walk with no parameter
    near a bound. The active-set method is not run then (it would only go on as far
    again)."""
    if reason in ("time_limit", "callback"):
        return True
    short = reason == "max_steps" or detail in (lm_message(RUNAWAY, {}), lm_message(WALK, {}))
    return short and not held_up_by_a_bound(values, bounds)


def refined_reason(refined, reason: str, detail: str) -> tuple[str, str]:
    """The stop reason after the active-set method: the inner fit's, naming the bounds."""
    if not refined.certified:
        why = refined.detail or (refined.inner.message if refined.inner is not None else "")
        if refined.inner is not None and refined.inner.reason == "max_steps":
            # the inner fit's own "reached the step limit (k steps)" quotes the steps its
            # budget had left (0 when an earlier inner fit used them all): not said again
            return "max_steps", (f"the finish on the bounds (active set) used its "
                                 f"{refined.steps} steps without settling")
        return "failed", BOUNDS_PREFIX + why
    if refined.inner is not None:
        reason, detail = refined.inner.reason, refined.inner.message
    elif reason not in ("gtol", "ftol", "xtol"):
        # every free parameter held: the stalled LM's words (no step lowered the loss...)
        # say nothing of this end
        reason, detail = "xtol", "every free parameter on its bound"
    if refined.at_bound:
        named = ", ".join(f"{n} at its {s} bound" for n, s in refined.at_bound.items())
        detail = f"{detail}; the optimum within the bounds has {named} (KKT conditions hold)"
    return reason, detail


def determined(prob, final, free, se, corr, reason: str, detail: str,
               absolute_sigma: bool, moved: bool = True) -> tuple[str, str]:
    """``verdict.not_determined`` on a nonlinear least-squares end, converged or one whose
    LM found no step (``looked_at_for_determination``), over the ``free`` parameters, from
    their standard errors ``se`` and correlations ``corr`` (``result.least_squares_errors``:
    finite where a covariance of parameters of 2e160 overflows); ``moved``: whether the fit
    took a step from its start."""
    n, F = prob.n, len(free)
    se = np.asarray(se, dtype=float)
    judged = moved and bool(np.isfinite(se).all())
    if not looked_at_for_determination(reason, detail, judged) or n <= F:
        return reason, detail
    names = prob.model.param_names
    idx = torch.tensor([names.index(k) for k in free], device=final.device)

    def sse(f) -> float:
        with torch.no_grad():
            at = final.index_put((idx,), torch.as_tensor(f, dtype=final.dtype,
                                                         device=final.device))
            return float(prob.residuals(at).square().sum())
    theta = final[idx].cpu().double().numpy()
    S = sse(theta)
    scale = 1.0 if absolute_sigma else S / (n - F)
    why = not_determined_scaled(free, theta, se, np.asarray(corr, dtype=float), sse, S, scale)
    why = why or walk_named(free, theta, se, detail)
    return ("failed", why) if why else (reason, detail)
