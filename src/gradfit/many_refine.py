"""``fit``'s finish on the bounds (``active_set``) for many least-squares problems at once.

LM in the internal variables of the bounds may stall near a bound or creep towards it to the
step limit (a flat well of a 4PL plate: the data cannot place ``ec50`` or ``hill``, and one
runs to its bound). ``fit`` finishes such an end by the active-set method from the point LM
reached; ``fit_many`` finishes the same rows the same way, from the same point, with the
same budget (``fit_ends.FINISH_STEPS`` steps for all the inner fits of a problem). Each problem's
method runs as ``active_set.refinement``, a generator that asks for its inner fits; the
inner fits asked for at the same time, with the same parameters held and the same bounds,
run as one batched LM (``batch_lm``), each row within its own budget. So sixteen flat wells
cost about what one does, where they were finished one ``fit`` after another (LM from the
start again, then the active set), each LM step paying its own Python overhead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .active_set import InnerEnd, inner_share, multipliers, refinement
from .bounds import inside
from .lm_codes import MAX_STEPS, OPTIONS, message as lm_message
from .errors import FitError, InputError
from .problem import Problem


#: rows finished per call (each costs a few single-problem evaluations of its own: the
#: multipliers; beyond these the batch's verdict stands, as it did for rows beyond
#: ``many_kkt.ALONE_MAX`` when each row was a ``fit`` of its own)
REFINE_MAX = 4096


Inner = InnerEnd      # one inner fit's end


@dataclass
class _Row:
    gen: object
    left: int
    request: tuple | None = None
    refined: object = None


def refine_rows(prob, tr, theta, rows, steps, reason, message, cfg,
                finished: set | None = None) -> torch.Tensor:
    """Finish the LM ends ``theta[rows]`` by ``fit``'s active-set method, batched. A row
    whose finish is certified and does not raise its loss takes the finish's parameters,
    steps (LM's and the finish's, as ``fit`` counts them), reason and message; the others
    keep the batch's verdict. Returns the new ``theta``; ``steps``, ``reason``, ``message``
    change in place, and the rows finished join ``finished`` when given."""
    from .fit_ends import FINISH_STEPS, refined_reason
    rows = rows[:REFINE_MAX]
    if not len(rows):
        return theta
    names = tuple(prob.model.param_names)
    free = [names[j] for j in tr.free_at.tolist()]
    budget = max(int(cfg["steps"]), FINISH_STEPS)
    jobs: dict[int, _Row] = {}
    for b in map(int, rows):
        values = dict(zip(names, theta[b].tolist()))
        lo, hi = tr.lo[b].tolist(), tr.hi[b].tolist()
        bounds = {n: (lo[i], hi[i]) for i, n in enumerate(free)
                  if math.isfinite(lo[i]) or math.isfinite(hi[i])}
        fixed = {n: values[n] for n in names if n not in free}
        one = _alone(prob, b)

        def at(x, active, one=one, fixed=fixed):
            return multipliers(one, names, x, active, fixed)
        jobs[b] = _Row(refinement(names, bounds, fixed, values, at), budget)
    for b, job in jobs.items():
        _advance(job, None)
    while any(job.request is not None for job in jobs.values()):
        groups: dict[tuple, list[int]] = {}
        for b, job in jobs.items():
            if job.request is not None:
                p0, held, inner_bounds = job.request
                groups.setdefault((tuple(sorted(held)), tuple(sorted(inner_bounds))),
                                  []).append(b)
        for (held, bounded), group in groups.items():
            for b, inner in _solve(prob, names, held, bounded, group, jobs, cfg).items():
                jobs[b].left -= inner.steps
                _advance(jobs[b], inner)
    theta = theta.clone()
    for b, job in jobs.items():
        refined = job.refined
        if refined is None or not refined.certified:
            continue
        if refined.inner is not None and not refined.inner.converged:
            continue
        end = torch.tensor([refined.params[n] for n in names], dtype=theta.dtype,
                           device=theta.device)
        sel = torch.tensor([b], device=theta.device)
        with torch.no_grad():
            before = float(prob.objective(theta[sel], sel)[0])
            after = float(prob.objective(end[None], sel)[0])
        if not after <= before * (1 + 1e-12) + 1e-300:
            continue
        theta[b] = end
        steps[b] += refined.steps
        reason[b], message[b] = refined_reason(refined, str(reason[b]), str(message[b]))
        if finished is not None:
            finished.add(b)
    return theta


def release_wrong_bounds(prob, tr, theta, steps, reason, message, cfg) -> torch.Tensor:
    """The converged LM ends with a parameter on a bound (within ``active_set.NEAR``) that
    does not hold it (its multiplier below ``-STUCK_MU``: the loss falls inwards) are no
    optimum within the bounds: LM in the internal variables, whose derivative vanishes on
    a bound, sat there (a start on the bound, or a return to it) and its tests passed. They
    are finished by fit's active set (which releases such a parameter); one whose finish is
    not certified is failed, naming the parameter. (A double exponential with ``c`` on its
    lower bound, the loss falling as it moves inside, had been ``xtol`` with "KKT
    conditions hold" naming the others, and a standard error for ``c``.) Returns the new
    ``theta``; ``steps``, ``reason``, ``message`` change in place."""
    from .active_set import STUCK_MU
    from .irls_check import rounding_level
    from .many_engines import ManyTransformFixedAt
    from .many_kkt import _near, column_cosines
    if tr.identity or not prob.loss.squared:
        return theta
    at, F = tr.free_at, len(tr.free)
    v = theta[:, at]
    on_lo, on_hi = _near(v, tr.lo, tr.hi)
    look = (torch.as_tensor(np.isin(reason, ("gtol", "ftol", "xtol")), device=theta.device)
            & (on_lo | on_hi).any(-1) & torch.isfinite(theta).all(-1)).nonzero().flatten()
    if not look.numel():
        return theta
    with torch.no_grad():
        jr = prob.jacobian(ManyTransformFixedAt(tr, theta))(v[look], look)
    J, r = jr[:, :F], jr[:, F]
    _, cos = column_cosines(J, r)
    wrong = (on_lo[look] & (cos < -STUCK_MU)) | (on_hi[look] & (cos > STUCK_MU))
    # an exact fit (every residual within its rounding level) has nothing to lower: the
    # signs of J^T r are rounding noise there (as active_set.multipliers)
    y = prob.y[look] if prob.sigma is None else prob.y[look] / prob.sigma[look]
    valid = None if prob.mask is None else prob.mask[look]
    level = rounding_level(r, J.transpose(-1, -2), v[look], y, valid)
    exact = ((r.abs() <= 16 * level) | (False if valid is None else ~valid)).all(-1)
    wrong &= ~exact.unsqueeze(-1)
    rows = look[wrong.any(-1)].cpu().numpy()
    if not rows.size:
        return theta
    wrong = wrong[wrong.any(-1)].cpu().numpy()
    done: set = set()
    theta = refine_rows(prob, tr, theta, rows, steps, reason, message, cfg, done)
    for i, b in enumerate(rows.tolist()):
        if b in done:
            continue
        names = ", ".join(n for j, n in enumerate(tr.free) if wrong[i, j])
        reason[b] = "failed"
        message[b] = (f"no certified optimum within the bounds: {names} on a bound where the "
                      "loss falls inwards (LM stopped there: the change of variables has no "
                      "slope on a bound), and the finish on the bounds did not settle")
    return theta


def _advance(job: _Row, inner) -> None:
    """Send ``inner`` to the row's generator: its next request, or its end."""
    try:
        job.request = next(job.gen) if inner is None else job.gen.send(inner)
    except StopIteration as end:
        job.request, job.refined = None, end.value


def _alone(prob, b: int) -> Problem:
    """Problem ``b`` of ``prob`` as one ``Problem`` (its own points, no padding)."""
    keep = slice(None) if prob.mask is None else prob.mask[b]
    x = prob.x if prob.shared_x else prob.x[b]
    return Problem(prob.model, x[keep], prob.y[b][keep],
                   None if prob.sigma is None else prob.sigma[b][keep], prob.loss)


def inner_batch(prob, names, held, bounded, group, jobs):
    """The inner fits of the rows ``group`` (the same names held, the same names
    bounded) as one ``ManyProblem`` and ``ManyTransform``: ``(sub, tr, start, left)``,
    ``left`` the steps each row may take (``active_set.inner_share``); LM's and IRLS's
    batched finishes alike."""
    from .many_problem import ManyProblem, ManyTransform
    dev, dtype = prob.y.device, prob.y.dtype
    inner_free = [n for n in names if n not in held]
    # a start on a bound of its own moves inside, as fit's inner fit moves it (on the
    # transform's scale a point on a bound has a zero derivative: the fit would stop there)
    rows = []
    for b in group:
        p0, _, inner_bounds = jobs[b].request
        rows.append([p0[n] if n not in inner_bounds or inside(p0[n], *inner_bounds[n]) is None
                     else inside(p0[n], *inner_bounds[n])[0] for n in names])
    start = torch.tensor(rows, dtype=dtype, device=dev)
    lo = torch.full((len(group), len(inner_free)), -math.inf, dtype=dtype, device=dev)
    hi = -lo
    for i, b in enumerate(group):
        for j, n in enumerate(inner_free):
            if n in bounded:
                lo[i, j], hi[i, j] = jobs[b].request[2][n]
    left = torch.tensor([inner_share(jobs[b].left, bool(bounded)) for b in group], device=dev)
    sel = torch.as_tensor(group, device=dev)
    sub = ManyProblem(prob.model, prob.x if prob.shared_x else prob.x[sel], prob.y[sel],
                      None if prob.sigma is None else prob.sigma[sel],
                      None if prob.mask is None else prob.mask[sel], prob.loss, prob.shared_x)
    tr = ManyTransform(names, inner_free, lo, hi, start)
    return sub, tr, start, left


def _solve(prob, names, held, bounded, group, jobs, cfg) -> dict[int, Inner]:
    """The inner fits of the rows ``group`` (the same names held, the same names bounded)
    as one batched LM, each within the steps its row has left."""
    from .many_engines import _lm
    sub, tr, start, left = inner_batch(prob, names, held, bounded, group, jobs)
    dev = prob.y.device
    o = {k: cfg["options"].get(k, OPTIONS[k]) for k in OPTIONS}
    try:
        u, st, why, msg, _, _ = _lm(sub, tr, tr.internal(start), None, dict(cfg, steps=left))
        with torch.no_grad():
            end = tr.external(u, torch.arange(len(group), device=dev))
    except (InputError, FitError, RuntimeError, ValueError) as e:    # the batch's verdict
        return {b: Inner(dict(jobs[b].request[0]), 0, "failed", str(e)) for b in group}
    out = {}
    for i, b in enumerate(group):
        text = str(msg[i])
        if why[i] == "max_steps":
            text = lm_message(MAX_STEPS, o, int(left[i]))
        out[b] = Inner(dict(zip(names, end[i].tolist())), int(st[i]), str(why[i]), text)
    return out
