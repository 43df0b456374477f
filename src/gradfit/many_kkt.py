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
from .batch_lm import (MAX_STEPS, OPTIONS, ROUGH, RUNAWAY, STALLED, TRIES, WALK,
                       message as lm_message)


def certify_on_bounds(prob, tr, theta, reason, message, options, max_steps=None) -> None:
    """Turn the stalled LM ends of ``theta`` ``(k, P)`` that are certified optima on their
    bounds into converged ones (``reason``, ``message``: numpy arrays, changed in place).
    A stall is an end without a step (``ROUGH``, ``TRIES``, ``STALLED``) or at the step
    limit, which LM creeping towards a bound in the internal variables may reach first."""
    from .many_engines import ManyTransformFixedAt
    stalled = np.isin(message.astype(str), [lm_message(ROUGH, options),
                                           lm_message(TRIES, options),
                                           lm_message(STALLED, options),
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
    g, cos = column_cosines(J, r)
    on_lo, on_hi = _near(v, tr.lo[idx], tr.hi[idx])
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


def polish_on_bounds(prob, tr, theta, steps, reason, message, cfg) -> torch.Tensor:
    """Finish the LM ends of ``theta`` ``(k, P)`` that put a free parameter on a bound as
    ``active_set`` finishes one fit (its steps 1, 2 and 4): the parameters within ``NEAR``
    of a bound are held on it exactly, the others refitted by LM from the point reached
    (in the internal variables of their own bounds, none of which is then active), and the
    end kept where that fit converged, no inner parameter came onto a bound, and every held
    parameter is held by its bound (multiplier ``>= -MU_TOL``, as ``certify_on_bounds``).
    A converged end that this one round does not settle (an inner parameter reaching a
    bound, a held one the loss pulls inwards) goes on by ``fit``'s active-set method
    (``many_refine.refine_rows``), as ``fit`` would finish it: a biexponential through 5
    points with ``b`` on its bound had stayed a flat valley's end (failed, c and d not
    determined) where fit's unbounded inner fit crossed ``c``'s bound and certified the
    optimum with ``c`` held there. The inner fits run as ``fit``'s (``finish_config``).

    Why: on an active bound the change of variables has a vanishing derivative, and LM in
    the internal variables creeps there, its steps shrinking by a constant factor; its
    ``ftol``/``xtol`` rules then fire while the other parameters still lag by about
    ``1e-7`` relative (``fit``'s active set gives the exact optimum). Returns the new
    ``theta``; ``steps`` ``(k,)``, ``reason``, ``message`` change in place."""
    from .many_engines import ManyTransformFixedAt, _lm
    from .many_lm_finish import finish_by_active_set, finish_config
    from .many_problem import ManyProblem, ManyTransform
    if tr.identity:
        return theta
    o = {k: cfg["options"].get(k, OPTIONS[k]) for k in OPTIONS}
    inner_cfg = finish_config(cfg)
    converged = np.isin(reason, ("gtol", "ftol", "xtol"))
    ends = converged | np.isin(
        message.astype(str), [lm_message(c, o, cfg["steps"])
                              for c in (ROUGH, TRIES, STALLED, MAX_STEPS, RUNAWAY, WALK)])
    at, F = tr.free_at, len(tr.free)
    v = theta[:, at]
    on_lo, on_hi = _near(v, tr.lo, tr.hi)
    held = (on_lo | on_hi).cpu().numpy() & ends[:, None] & np.isfinite(
        theta.detach().cpu().numpy()).all(-1)[:, None]
    rows = np.flatnonzero(held.any(-1))
    if not rows.size:
        return theta
    theta = theta.clone()
    side = on_lo.cpu().numpy()
    unsettled: list[int] = []
    patterns = {}
    for b in rows:
        patterns.setdefault(held[b].tobytes(), []).append(b)
    for key, group in patterns.items():
        mask = np.frombuffer(key, dtype=bool).copy()
        inner = [j for j in range(F) if not mask[j]]
        sel = torch.as_tensor(group, device=theta.device)
        start = theta[sel].clone()
        lo, hi = tr.lo[sel], tr.hi[sel]
        hold = torch.as_tensor(mask, device=theta.device).expand(len(group), F)
        lows = torch.as_tensor(side[group], device=theta.device)
        start[:, at] = torch.where(hold, torch.where(lows, lo, hi), start[:, at])
        sub = ManyProblem(prob.model, prob.x if prob.shared_x else prob.x[sel], prob.y[sel],
                          None if prob.sigma is None else prob.sigma[sel],
                          None if prob.mask is None else prob.mask[sel], prob.loss,
                          prob.shared_x)
        idx = torch.arange(len(group), device=theta.device)
        if inner:
            tr2 = ManyTransform(tr.names, [tr.free[j] for j in inner], lo[:, inner],
                                hi[:, inner], start)
            u, st, why, msg, _, _ = _lm(sub, tr2, tr2.internal(start), None,
                                        dict(inner_cfg, steps=min(cfg["steps"], POLISH_STEPS)))
            with torch.no_grad():
                end = tr2.external(u, idx)
            i_lo, i_hi = _near(end[:, tr2.free_at], tr2.lo, tr2.hi)
            good = np.isin(why, ("gtol", "ftol", "xtol")) & ~(i_lo | i_hi).any(-1).cpu().numpy()
        else:
            end, st = start, torch.zeros(len(group), dtype=steps.dtype, device=steps.device)
            good = np.ones(len(group), dtype=bool)
            msg = np.array(["every free parameter on its bound"] * len(group), dtype=object)
        with torch.no_grad():
            jr = sub.jacobian(ManyTransformFixedAt(tr, end))(end[:, at], idx)
            before = prob.residuals(theta[sel], sel).square().sum(-1)
        J, r = jr[:, :F], jr[:, F]
        _, cos = column_cosines(J, r)
        mu = torch.where(lows, cos, -cos)
        ok = (torch.where(hold, mu >= -MU_TOL, True).all(-1)
              & no_higher(r.square().sum(-1), before, sub.ydata)).cpu().numpy() & good
        unsettled += [group[i] for i in np.flatnonzero(~ok) if converged[group[i]]]
        for i in np.flatnonzero(ok):
            b = group[i]
            theta[b] = end[i]
            steps[b] += st[i].to(steps.dtype)
            names = [f"{tr.free[j]} at its {'lower' if side[b, j] else 'upper'} bound"
                     for j in range(F) if mask[j]]
            reason[b] = why[i] if inner else "xtol"
            message[b] = (f"{msg[i]}; the optimum within the bounds has "
                          f"{', '.join(names)} (KKT conditions hold)")
    # (the stalled ends go on by certify_on_bounds, then finish_lm_on_bounds)
    return finish_by_active_set(prob, tr, theta, unsettled, steps, reason, message, cfg)


def refit_inside(prob, tr, theta, steps, reason, message, cfg) -> torch.Tensor:
    """Refit the converged LM ends with bounds as ``active_set`` does (its step 2): the
    free parameters not on a bound by LM *without* their bounds, from the point reached,
    those on a bound held there. The change of variables keeps a parameter's digits only
    relative to its box: ``a = lo - 1 + sqrt(u^2 + 1)`` resolves ``a ~ 2e-5`` above
    ``lo = -4511`` to ``1e-12``, and LM's relative step in ``u`` stops with ``a`` 3e-3 off
    its optimum (``a*x^b`` at x ~ 1e-6). The refit is kept where it converged, stayed
    within the bounds and did not raise the loss beyond rounding; its reason and message
    are then the fit's (with the bounds that hold named, as before). The refit runs as
    ``fit``'s inner fit (``finish_config``), and where ``fit``'s active set would go on,
    so does this one (``many_refine.refine_rows``): a refit that left the box (a bound
    crossed), and one that lost rank by LM's own test, which fails where that finish does
    not certify an optimum, as in ``fit`` (``a*exp(-k*x)`` on data of 0 with ``k``
    bounded: ``a`` -> 1e-64 and ``k`` undetermined had been converged). Returns the new
    ``theta``."""
    from .many_engines import _lm
    from .many_lm_finish import finish_by_active_set, finish_config
    from .many_problem import ManyProblem, ManyTransform
    from .verdict import BOUNDS_PREFIX
    at = tr.free_at
    bounded = (torch.isfinite(tr.lo) | torch.isfinite(tr.hi)).any(-1).cpu().numpy()
    v = theta[:, at]
    on_lo, on_hi = _near(v, tr.lo, tr.hi)
    held = (on_lo | on_hi).cpu().numpy()
    rows = np.flatnonzero(bounded & np.isin(reason, ("gtol", "ftol", "xtol")) & ~held.all(-1)
                          & np.isfinite(theta.detach().cpu().numpy()).all(-1))
    if not rows.size:
        return theta
    theta = theta.clone()
    inner_cfg = finish_config(cfg)
    lost: dict[int, str] = {}            # the rows whose refit lost rank: LM's words
    crossed: list[int] = []
    patterns = {}
    for b in rows:
        patterns.setdefault(held[b].tobytes(), []).append(b)
    for key, group in patterns.items():
        inner = np.flatnonzero(~np.frombuffer(key, dtype=bool))
        sel = torch.as_tensor(group, device=theta.device)
        sub = ManyProblem(prob.model, prob.x if prob.shared_x else prob.x[sel], prob.y[sel],
                          None if prob.sigma is None else prob.sigma[sel],
                          None if prob.mask is None else prob.mask[sel], prob.loss,
                          prob.shared_x)
        start = theta[sel]
        free = torch.full((len(group), len(inner)), math.inf, dtype=theta.dtype,
                          device=theta.device)
        tr2 = ManyTransform(tr.names, [tr.free[j] for j in inner], -free, free, start)
        u, st, why, msg, _, _ = _lm(sub, tr2, tr2.internal(start), None,
                                    dict(inner_cfg, steps=min(cfg["steps"], POLISH_STEPS)))
        idx = torch.arange(len(group), device=theta.device)
        with torch.no_grad():
            end = tr2.external(u, idx)
            before = prob.residuals(start, sel).square().sum(-1)
            after = sub.residuals(end, idx).square().sum(-1)
        lo, hi = tr.lo[sel], tr.hi[sel]
        inside = ((end[:, at] >= lo) & (end[:, at] <= hi)).all(-1).cpu().numpy()
        conv = np.isin(why, ("gtol", "ftol", "xtol"))
        ok = inside & no_higher(after, before, sub.ydata).cpu().numpy() & conv
        for i in np.flatnonzero(~ok):
            if conv[i] and not inside[i]:
                crossed.append(group[i])
            elif str(msg[i]).startswith(RANK_LOST):
                lost[group[i]] = str(msg[i])
        for i in np.flatnonzero(ok):
            b = group[i]
            theta[b] = end[i]
            steps[b] += st[i].to(steps.dtype)
            tail = message[b].split("; the optimum within the bounds has ", 1)
            reason[b] = why[i]
            message[b] = msg[i] + ("; the optimum within the bounds has " + tail[1]
                                   if len(tail) == 2 else "")
    done: set = set()
    theta = finish_by_active_set(prob, tr, theta, sorted(crossed + list(lost)), steps, reason,
                                 message, cfg, done)
    for b, text in lost.items():
        if b not in done:            # fit's words: its finish found no certified optimum
            reason[b], message[b] = "failed", BOUNDS_PREFIX + text
    return theta


#: the start of a lost rank's message (``verdict.rank_message``)
RANK_LOST = "the Jacobian lost rank"


def column_cosines(J: torch.Tensor, r: torch.Tensor):
    """``g = J^T r`` ``(k, F)`` (half the gradient of the sum of squares) and each column's
    cosine with the residuals, ``g_j / (|J_j| |r|)`` (0 for a zero column), of ``J``
    ``(k, F, n)`` (rows of ``J^T``) and ``r`` ``(k, n)``: the sign of a bound's multiplier."""
    g = (J * r.unsqueeze(-2)).sum(-1)
    s = torch.linalg.vector_norm(J, dim=-1) * torch.linalg.vector_norm(r, dim=-1, keepdim=True)
    return g, torch.where(s > 0, g / s.clamp_min(1e-300), 0.0)


def _near(v, lo, hi, tol: float = NEAR):
    """``(k, F)`` masks: within ``tol`` (relative; ``active_set``'s ``NEAR``) of the lower
    bound, and of the upper one (not also the lower)."""
    fin_lo, fin_hi = torch.isfinite(lo), torch.isfinite(hi)
    width = torch.where(fin_lo & fin_hi, hi - lo, 0.0)
    scale = torch.stack([v.abs(), torch.where(fin_lo, lo.abs(), 0.0),
                         torch.where(fin_hi, hi.abs(), 0.0), width], -1).amax(-1)
    scale = scale.clamp_min(1e-300)
    on_lo = fin_lo & (v - lo <= tol * scale)
    return on_lo, fin_hi & ~on_lo & (hi - v <= tol * scale)


def no_higher(after, before, ydata) -> torch.Tensor:
    """``(k,)`` whether sums of squares ``after`` are no higher than ``before`` beyond
    their rounding (``batch_lm``'s level of ``S``, ``NOISE_ULPS`` of it; ``ydata`` the
    norm of the data ``y / sigma``): data with noise of 1e-9 on values of 2 leave ``S``
    only 7 good digits, and two ends that are the same optimum to rounding differ in the
    8th (a relative 1e-12 had refused the better one)."""
    from .batch_lm import NOISE_ULPS
    eps = torch.finfo(before.dtype).eps
    rn = before.clamp_min(0).sqrt()
    err = eps * (rn + 2.0 * ydata.to(rn.dtype))
    noise = 2.0 * rn * err + err * err
    return after <= before * (1 + 1e-12) + NOISE_ULPS * noise


#: steps of the polish on the bounds and of the refit inside them: each goes on from an
#: end LM reached, and ends in a few steps where it is kept (12 of a plate's 13 refits took
#: at most 5); one that crawls (a flat 4PL well: 1000 steps, seconds, then discarded) keeps
#: the batch's end, which the finish on the bounds takes up where it is not an optimum
POLISH_STEPS = 100


def finish_robust_on_bounds(prob, tr, theta, steps, reason, message, cfg) -> torch.Tensor:
    """Finish the IRLS ends (mae, huber) of ``theta`` ``(k, P)`` that lie on a bound as
    ``fit`` finishes them: by ``fit`` on that problem alone, from the point reached, whose
    ``active_set`` holds the bound and certifies the end by the mae subgradient's or
    huber's multipliers. Batched IRLS stalls there as LM does (the change of variables has
    a vanishing derivative on the bound) and its first-order test then fails; the rows are
    few. So are those at the step limit or failed with a parameter near a bound (``fit``'s
    active set runs there too: ``active_set.held_up_by_a_bound``), which IRLS creeping
    towards the bound reaches first (huber's ``a*x^b`` ended uncertified 1e-7 below its
    bound on ``a``, where ``fit`` certified the optimum on it); failed ones anywhere, as
    ``fit`` finishes every failed end with bounds. The first ``many_refine.REFINE_MAX``
    such rows are finished (``many_robust_finish``, batched); the others keep their
    verdict. Returns the new ``theta``;
    ``steps``, ``reason``, ``message`` change in place."""
    from .many_engines import _on_a_bound
    if tr.identity:
        return theta
    near = _on_a_bound(tr, theta)
    runaway = (lm_message(RUNAWAY, {}), lm_message(WALK, {}))
    for b in np.flatnonzero(np.isin(reason, ("max_steps", "failed")) & ~near).tolist():
        # as fit (``fit_ends.stopped_short``): a failed end is finished wherever it lies (an
        # mae fit failed 1.5% off a one-sided bound near 0, where fit certified the LP's
        # optimum on it), one at the step limit or running off only near a bound
        short = reason[b] == "max_steps" or message[b] in runaway
        near[b] = _held_up(tr, theta, b) if short else True
    rows = np.flatnonzero(near & np.isfinite(
        theta.detach().cpu().numpy()).all(-1) & (reason != "diverged"))
    # fit's active set goes on from the batch's end, as from fit's own IRLS end, its inner
    # IRLS fits batched (each row had been a fit of its own: seconds for a plate's flat
    # wells, and only its converged ends were kept)
    from .many_robust_finish import finish_robust_rows
    return finish_robust_rows(prob, tr, theta, rows, steps, reason, message, cfg)


def finish_lm_on_bounds(prob, tr, theta, steps, reason, message, cfg) -> torch.Tensor:
    """Finish the LM ends with bounds that stalled or reached the step limit, and that
    neither ``polish_on_bounds`` nor ``certify_on_bounds`` made an optimum, as ``fit``
    finishes them: by its active-set method (``active_set.refinement``) from the point LM
    reached, within fit's budget, the inner fits of all these rows batched
    (``many_refine``). LM in the internal variables creeps towards a bound that holds at
    the optimum, its steps shrinking by a constant factor, and may reach the step limit
    with the parameter still ``1e-6`` (relative) off it, the others far from their optimum:
    ``NEAR`` does not see the bound, and without ``active_set``'s step 3 (the unbounded fit
    leaving the box) nothing finished it. Returns the new ``theta``; ``steps``, ``reason``,
    ``message`` change in place."""
    o = {k: cfg["options"].get(k, OPTIONS[k]) for k in OPTIONS}
    bounded = (torch.isfinite(tr.lo) | torch.isfinite(tr.hi)).any(-1).cpu().numpy()
    stalled = np.isin(message.astype(str), [lm_message(c, o, cfg["steps"])
                                            for c in (ROUGH, TRIES, STALLED, MAX_STEPS,
                                                      RUNAWAY, WALK)])
    rows = np.flatnonzero(bounded & stalled & ~np.isin(reason, ("gtol", "ftol", "xtol")))
    # at the step limit or running off, as fit does: only where a parameter may be
    # creeping to a bound (K of V*x/(K+x) running to its upper bound 1e6 was a runaway
    # in fit_many, and in fit an optimum with K on the bound)
    short = tuple(lm_message(c, o, cfg["steps"]) for c in (MAX_STEPS, RUNAWAY, WALK))
    rows = np.array([b for b in rows.tolist() if message[b] not in short
                     or _held_up(tr, theta, b)], dtype=np.int64)
    from .many_lm_finish import finish_by_active_set
    return finish_by_active_set(prob, tr, theta, rows, steps, reason, message, cfg)


def _held_up(tr, theta, b: int) -> bool:
    """``active_set.held_up_by_a_bound`` for problem ``b``."""
    from .active_set import held_up_by_a_bound
    v = theta[b, tr.free_at].tolist()
    lo, hi = tr.lo[b].tolist(), tr.hi[b].tolist()
    return held_up_by_a_bound(dict(enumerate(v)),
                              {i: (lo[i], hi[i]) for i in range(len(v))
                               if math.isfinite(lo[i]) or math.isfinite(hi[i])})
