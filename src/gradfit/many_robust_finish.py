"""``fit``'s finish on the bounds (``active_set``) for many robust fits (mae, huber) at once.

A robust fit with bounds ends, in ``fit``, by the active-set method from the point IRLS
reached: parameters near a bound held on it, the others refitted by IRLS, crossings and
multipliers checked. ``fit_many``'s batched IRLS stalls where ``fit`` would go on there (on
a bound the change of variables has no slope) and leaves the same rows failed or at the
step limit; they are finished here the way ``fit`` finishes them, from the same point,
with the same budget (``fit_ends.FINISH_STEPS`` steps for all the inner fits of a row),
and the end says what ``fit``'s says (``fit_ends.refined_reason``, ``weakly_held``).

Each row's method runs as ``active_set.refinement``, a generator asking for its inner
fits; those asked for at the same time, with the same parameters held and the same bounds,
run as one batched IRLS (``batch_irls``), each row within its own budget. Sixteen flat
wells of a plate then cost about what one does, where each had been a ``fit`` of its own,
paying Python's overhead on every IRLS step of every inner fit (``many_refine`` does the
same for least squares, by batched LM).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .active_set import multipliers, refinement
from .errors import FitError, InputError
from .many_refine import REFINE_MAX, Inner, _advance, _alone, _Row, inner_batch


def finish_robust_rows(prob, tr, theta, rows, steps, reason, message, cfg) -> torch.Tensor:
    """Finish the IRLS ends ``theta[rows]`` by ``fit``'s active-set method, batched. A
    row whose finish does not raise its loss takes the finish's parameters, steps,
    reason and message, converged or not (``fit``'s verdict from that point: a refined end
    that the batch's end, higher, could not match had kept the batch's words); the others
    keep the batch's verdict. Returns the new ``theta``; ``steps``, ``reason``, ``message``
    change in place."""
    from .fit_ends import FINISH_STEPS
    rows = np.asarray(rows, dtype=np.int64)[:REFINE_MAX]
    if not rows.size:
        return theta
    names = tuple(prob.model.param_names)
    free = [names[j] for j in tr.free_at.tolist()]
    budget = max(int(cfg["steps"]), FINISH_STEPS)
    jobs: dict[int, _Row] = {}
    for b in rows.tolist():
        values = dict(zip(names, theta[b].tolist()))
        lo, hi = tr.lo[b].tolist(), tr.hi[b].tolist()
        bounds = {n: (lo[i], hi[i]) for i, n in enumerate(free)
                  if math.isfinite(lo[i]) or math.isfinite(hi[i])}
        fixed = {n: values[n] for n in names if n not in free}
        one = _alone(prob, b)

        def at(x, active, one=one, fixed=fixed):
            return multipliers(one, names, x, active, fixed)
        jobs[b] = _Row(refinement(names, bounds, fixed, values, at), budget)
    for job in jobs.values():
        _advance(job, None)
    while any(job.request is not None for job in jobs.values()):
        groups: dict[tuple, list[int]] = {}
        for b, job in jobs.items():
            if job.request is not None:
                _, held, inner_bounds = job.request
                groups.setdefault((tuple(sorted(held)), tuple(sorted(inner_bounds))),
                                  []).append(b)
        for (held, bounded), group in groups.items():
            for b, inner in _solve(prob, names, held, bounded, group, jobs, cfg).items():
                jobs[b].left -= inner.steps
                _advance(jobs[b], inner)
    theta = theta.clone()
    for b, job in jobs.items():
        if job.refined is not None:
            _take(prob, theta, b, job.refined, names, free, steps, reason, message)
    return theta


def _take(prob, theta, b: int, refined, names, free, steps, reason, message) -> None:
    """Row ``b`` takes the finish ``refined`` where its loss is not higher than the
    batch's end, with ``fit``'s verdict there: ``refined_reason``, ``verdict.judge``, then
    ``weakly_held`` for a converged end whose bounds hold with a multiplier of about 0
    (``free``: the names not fixed)."""
    from .fit_ends import WEAK_MU, refined_reason, weakly_held
    from .result import REASONS
    from .verdict import judge
    end = torch.tensor([refined.params[n] for n in names], dtype=theta.dtype,
                       device=theta.device)
    sel = torch.tensor([b], device=theta.device)
    with torch.no_grad():
        before = float(prob.objective(theta[sel], sel)[0])
        after = float(prob.objective(end[None], sel)[0])
    if not after <= before * (1 + 1e-12) + 1e-300:
        return
    one = _alone(prob, b)
    why, text = refined_reason(refined, str(reason[b]), str(message[b]))
    held = set(refined.at_bound) | {n for n in names if n not in free}
    inner = tuple(n for n in names if n not in held)
    # fit's checks of every end, failed or not (a lost rank is named over a refined end
    # that IRLS could not certify, as fit names it)
    why, text = judge(one, end, inner, why, text, None, after)
    weak = tuple(n for n, mu in refined.multipliers.items() if mu <= WEAK_MU)
    if weak and REASONS[why][0]:
        why, text = weakly_held(one, end, inner, weak, why, text)
    theta[b] = end
    steps[b] += refined.steps
    reason[b], message[b] = why, text


def _solve(prob, names, held, bounded, group, jobs, cfg) -> dict[int, Inner]:
    """The inner fits of the rows ``group`` (the same names held, the same names bounded)
    as one batched IRLS, each within the steps its row has left (``active_set.inner_share``)
    and with IRLS's own options, as ``fit``'s inner fits take them."""
    from .batch_irls import batch_irls
    sub, tr, start, left = inner_batch(prob, names, held, bounded, group, jobs)
    dev = prob.y.device
    try:
        u, st, why, msg = batch_irls(sub, tr, tr.internal(start), dict(cfg, steps=left,
                                                                      options={}))
        with torch.no_grad():
            end = tr.external(u, torch.arange(len(group), device=dev))
    except (InputError, FitError, RuntimeError, ValueError) as e:    # the batch's verdict
        return {b: Inner(dict(jobs[b].request[0]), 0, "failed", str(e)) for b in group}
    return {b: Inner(dict(zip(names, end[i].tolist())), int(st[i]), str(why[i]), str(msg[i]))
            for i, b in enumerate(group)}
