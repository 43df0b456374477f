"""Iteratively reweighted least squares (mae, huber) over B problems at once.

Each problem follows ``irls.py`` step for step (its docstring has the math): at the
residuals ``r_k`` the loss is majorised by a weighted sum of squares, with weights
``w = min(1, delta / |r_k|)`` (huber) or ``w = 1 / max(|r_k|, eps)`` (mae, the floor
``eps`` starting at the median ``|r|`` and sharpened tenfold while the gain is small);
the weighted problem is solved by Gauss-Newton steps with step halving (the scaled SVD of
``lm.scaled_svd``, batched), and the step is kept when it lowers the loss by more than
``ftol``. For mae a *vertex step* interpolates the P points nearest the curve, and is
kept when zero lies in the subgradient there (``J_Z^T l = -J_N^T sign(r_N)``, all
``|l_i| <= 1``): the minimum (a local one for a model not linear in its parameters);
where it is not, the MAE's edges are walked from it (``mae_vertex``, one problem at a
time), and where no vertex is certified a minimum between vertices is solved for
(``mae_edge``, one problem at a time); mae steps that gain little are stretched along
their line (``irls.IRLS._stretch``). Before the first-order test (``irls_check``) a row is
moved onto the kinks it is next to (``irls.onto_kinks``). Problems that stop leave the
batch.
"""
from __future__ import annotations

import math

import torch

from .irls import (EXCHANGES, GAIN_FLOOR, LOOK_STEPS, OPTIONS, SHORT_STEP, STALL, STALLED,
                   STRETCH_BELOW, STRETCHES, VERTEX_HALVINGS, edge_retry,
                   gauss_newton_solve, huber_slack, onto_kinks, residual_curvature, vertex_floor)
from .batch_lm import RUNAWAY, runs_away
from .batch_lm import message as lm_message
from .irls_check import KINK_ULPS, certify, minimum_text, rounding_level, uncertified_text
from .lm import scaled_svd
from .mae_edge import edge_minimum
from .mae_vertex import descend
from .many_parallel import check_stop


class _Batch:
    """The problems ``idx`` of a ``ManyProblem`` seen through a transform."""

    def __init__(self, prob, tr):
        self.prob, self.tr, self.jac = prob, tr, prob.jacobian(tr)

    def residuals(self, u, idx):
        with torch.no_grad():
            return self.prob.residuals(self.tr.external(u, idx), idx)

    def objective(self, u, idx):
        with torch.no_grad():
            v = self.prob.objective(self.tr.external(u, idx), idx)
        return torch.where(torch.isfinite(v), v, math.inf)

    def valid(self, idx):
        return (torch.ones_like(self.prob.y[idx], dtype=torch.bool) if self.prob.mask is None
                else self.prob.mask[idx])


class _Row:
    """One problem of a batch as ``irls.IRLS`` sees its problem: the residuals of its real
    points and their exact Jacobian, at parameters ``u`` ``(F,)``."""

    def __init__(self, batch: _Batch, i: int, dev):
        self.batch, self.i = batch, torch.tensor([i], device=dev)
        self.valid = batch.valid(self.i)[0]

    def residuals(self, u):
        return self.batch.residuals(u[None], self.i)[0][self.valid]

    def jacobian(self, u):
        block = self.batch.jac(u[None], self.i)[0]
        return block[-1][self.valid], block[:-1].transpose(0, 1)[self.valid]

    def rows(self, idx):
        def on_rows(u):
            r, jac = self.jacobian(u)
            return r[idx], jac[idx]
        return on_rows

    def objective(self, u) -> float:
        return float(self.batch.objective(u[None], self.i)[0])

    def smooth(self, u):
        """``residuals`` with autograd's graph (for second derivatives)."""
        b = self.batch
        return b.prob.residuals(b.tr.external(u[None], self.i), self.i)[0][self.valid]

    def ys(self) -> torch.Tensor:
        """``y / sigma`` of this problem's real points (``_ys``)."""
        return _ys(self.batch, self.i)[0][self.valid]


def _descend(batch: _Batch, u, idx, vertex, ok, certified_only: bool = False, edges=None):
    """``irls.IRLS.descend`` for each row not certified at its vertex: walk the MAE's
    edges from it (``mae_vertex.descend``), one problem at a time; a row moves where its
    MAE is not higher (and, ``certified_only``, the vertex reached is certified). A row
    still not certified (of ``edges``, by default all) looks for a minimum between vertices
    (``_edges``). Returns ``u`` and the rows now certified."""
    u, ok = u.clone(), ok.clone()
    for k in (~ok).nonzero().flatten().tolist():
        row = _Row(batch, int(idx[k]), u.device)
        walked, certified = descend(row.residuals, vertex[k], steps=EXCHANGES,
                                    jacobian=row.jacobian, rows=row.rows, ys=row.ys())
        moved = (certified or not certified_only) and \
            row.objective(walked) <= row.objective(u[k]) * (1 + 1e-12)
        if moved:
            u[k] = walked
        ok[k] = certified and moved     # a certified vertex above this row's MAE: not it
    todo = ~ok & ~batch.tr.bounded[idx]          # (irls.IRLS._edge: not within bounds)
    todo = todo if edges is None else todo & edges
    if bool(todo.any()):
        u[todo], ok[todo] = _edges(batch, u[todo], idx[todo])
    return u, ok


def _edges(batch: _Batch, u, idx):
    """``irls.IRLS._edge`` for each row: a certified minimum between vertices
    (``mae_edge``) from ``u``, one problem at a time. Returns ``u`` (moved where one was
    found) and the rows certified."""
    u = u.clone()
    ok = torch.zeros(u.shape[0], dtype=torch.bool, device=u.device)
    for k in range(u.shape[0]):
        row = _Row(batch, int(idx[k]), u.device)
        found, ok[k] = edge_minimum(row.smooth, u[k], jacobian=row.jacobian, ys=row.ys())
        if ok[k]:
            u[k] = found
    return u, ok


def gauss_newton(batch: _Batch, u0, idx, root_w, steps: int, halvings: int = 33,
                 floor=None):
    """``irls._gauss_newton`` for every row: minimise ``|sqrt(w) r(u)|^2`` by Gauss-Newton
    steps with at most ``halvings`` step halvings, from ``u0`` ``(k, F)``; a row stops when
    its step stops lowering the sum or is at the rounding level of its parameters, or its
    sum is at most ``floor`` ``(k,)``."""
    u = u0.clone()
    r = batch.residuals(u, idx) * root_w
    ss = r.square().sum(-1)
    running = torch.ones(u.shape[0], dtype=torch.bool, device=u.device)
    if floor is not None:
        running &= ss > floor
    F = u.shape[-1]
    for _ in range(steps):
        check_stop()
        at = running.nonzero().flatten()
        if at.numel() == 0:
            break
        ua, ia, wa, ra, sa = u[at], idx[at], root_w[at], r[at], ss[at]
        block = batch.jac(ua, ia) * wa.unsqueeze(-2)
        jac = block[:, :F].transpose(-1, -2)
        # a row whose Jacobian or residuals are not finite takes no step (irls too)
        good = torch.isfinite(jac).flatten(1).all(-1) & torch.isfinite(ra).all(-1)
        jac = torch.where(good[:, None, None], jac, 0.0)
        d = torch.linalg.vector_norm(jac, dim=-2).clamp_min(torch.finfo(jac.dtype).tiny)
        sv, vh, c = scaled_svd(jac, d, torch.where(good[:, None], ra, 0.0))
        w = torch.where(sv > 0, c / sv.clamp_min(1e-300), 0.0)
        delta = -(vh.transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1) / d
        eps = torch.finfo(delta.dtype).eps
        good &= torch.isfinite(delta).all(-1)
        good &= delta.square().sum(-1).sqrt() > 4 * eps * ua.square().sum(-1).sqrt()
        good &= torch.where(sv > 0, c, 0.0).square().sum(-1) > GAIN_FLOOR * sa
        t = torch.ones_like(sa)
        shortest = 0.5 ** halvings
        found = torch.zeros_like(good)
        trial, r_new, ss_new = ua.clone(), ra.clone(), sa.clone()
        while True:
            open_ = ~found & good & (t >= shortest)
            if not open_.any():
                break
            cand = ua + t.unsqueeze(-1) * delta
            rc = batch.residuals(cand, ia) * wa
            sc = rc.square().sum(-1)
            hit = open_ & (sc <= sa)
            trial = torch.where(hit.unsqueeze(-1), cand, trial)
            r_new = torch.where(hit.unsqueeze(-1), rc, r_new)
            ss_new = torch.where(hit, sc, ss_new)
            found = found | hit
            t = torch.where(open_ & ~hit, t * 0.5, t)
        found &= good
        done = sa - ss_new <= GAIN_FLOOR * sa
        u[at] = torch.where(found.unsqueeze(-1), trial, ua)
        r[at] = torch.where(found.unsqueeze(-1), r_new, ra)
        ss[at] = torch.where(found, ss_new, sa)
        running[at] = found & ~done & (t >= SHORT_STEP)    # (irls._gauss_newton)
        if floor is not None:
            running[at] &= ss[at] > floor[at]
    return u


def _look(u, loss, idx, take, taken, ref_norm, ref_loss):
    """``irls.IRLS._look`` for the rows ``idx[take]`` (which moved to ``u[idx]``, at
    ``loss``): updates the counts and references in place; returns two masks over ``idx``,
    the rows that run away and those stalled."""
    at = idx[take]
    taken[at] += 1
    norm, value = torch.linalg.vector_norm(u[at], dim=-1), loss[take]
    first = torch.isnan(ref_norm[at])
    look = ~first & (taken[at] % LOOK_STEPS == 0)
    away = look & runs_away(norm, ref_norm[at], value, ref_loss[at])
    stalled = look & ~away & (value >= (1 - STALL) * ref_loss[at])
    new = first | look
    ref_norm[at[new]], ref_loss[at[new]] = norm[new], value[new]
    out_away, out_stalled = torch.zeros_like(take), torch.zeros_like(take)
    out_away[take], out_stalled[take] = away, stalled
    return out_away, out_stalled


def _stretch(batch: _Batch, base, cand, value, idx, rows):
    """``irls.IRLS._stretch`` for the ``rows`` (a mask): the best of ``base + a (cand -
    base)``, ``a = 1, 2, 4, ...``, while the MAE keeps falling. Returns ``cand`` and its
    objective, updated on those rows."""
    if not bool(rows.any()):
        return cand, value
    cand, value = cand.clone(), value.clone()
    at = rows.nonzero().flatten()
    b, step = base[at], cand[at] - base[at]
    for k in range(1, STRETCHES + 1):
        trial = b + (2.0 ** k) * step
        v = batch.objective(trial, idx[at])
        better = v < value[at]
        if not bool(better.any()):
            break
        at, b, step = at[better], b[better], step[better]
        cand[at], value[at] = trial[better], v[better]
    return cand, value


def _onto_kinks(batch, u, idx, F):
    """``irls.onto_kinks`` for every row (mae): ``u`` moved onto the kinks it is next to."""
    if idx.numel() == 0:
        return u

    def jacobian(v):
        block = batch.jac(v, idx)
        return block[:, F], block[:, :F].transpose(-1, -2)
    return onto_kinks(jacobian, lambda v: batch.objective(v, idx), u, _ys(batch, idx),
                      batch.valid(idx))


def _first_order(batch, u, idx, F):
    """``irls_check.certify`` for every row: whether the stop point is certified optimal."""
    block, valid = batch.jac(u, idx), batch.valid(idx)
    r, jac = block[:, F], block[:, :F].transpose(-1, -2)
    return certify(batch.prob.loss, r, jac, valid, _level(batch, u, idx, r, jac))


def _ys(batch, idx) -> torch.Tensor:
    """``y / sigma`` of each problem ``idx`` ``(k, n)`` (0 off its real points): the data's
    part of the residuals' rounding level."""
    prob = batch.prob
    ys = prob.y[idx] if prob.sigma is None else prob.y[idx] / prob.sigma[idx]
    return torch.where(batch.valid(idx), ys, 0.0)


def _level(batch, u, idx, r, jac) -> torch.Tensor:
    """``irls_check.rounding_level`` of the residuals ``r`` ``(k, n)`` at ``u``."""
    return rounding_level(r, jac, u, _ys(batch, idx), batch.valid(idx))


def _nearest(batch, r, idx, F):
    """The ``F`` points with the smallest ``|r|`` (real points only), as weights 0/1."""
    a = torch.where(batch.valid(idx), r.abs(), math.inf)
    rows = torch.argsort(a, dim=-1)[:, :F]
    return torch.zeros_like(r).scatter(-1, rows, 1.0)


def _vertex(batch, u, idx, inner):
    """``irls.IRLS._vertex``: interpolate the F points nearest the curve."""
    F = u.shape[-1]
    block = batch.jac(u, idx)
    r, jac = block[:, F], block[:, :F].transpose(-1, -2)
    near = _nearest(batch, r, idx, F)
    rows = torch.argsort(-near, dim=-1, stable=True)[:, :F]
    floor = vertex_floor(_level(batch, u, idx, r, jac).gather(-1, rows))
    return gauss_newton(batch, u, idx, near, inner, halvings=VERTEX_HALVINGS, floor=floor)


def _nearest_rows(batch, u, idx, F):
    """The sorted indices ``(k, F)`` of the F points nearest the curve."""
    a = torch.where(batch.valid(idx), batch.residuals(u, idx).abs(), math.inf)
    return torch.sort(torch.argsort(a, dim=-1)[:, :F], dim=-1).values


def _certified(batch, u, idx, inner):
    """``irls.IRLS._certified_vertex`` for every row: the vertex and whether it is the
    certified minimum (not worse than ``u``)."""
    F = u.shape[-1]
    vertex = _vertex(batch, u, idx, inner)
    block = batch.jac(vertex, idx)
    jac, rv = block[:, :F].transpose(-1, -2), block[:, F]
    valid = batch.valid(idx)
    a = torch.where(valid, rv.abs(), math.inf)
    order = torch.argsort(a, dim=-1)
    active = order[:, :F]
    rest = valid.clone().scatter(-1, active, False)
    biggest = torch.where(valid, rv.abs(), 0.0).amax(-1)
    # on the curve: to 1e-9 of the largest residual, or to their own rounding level
    near = torch.maximum(KINK_ULPS * _level(batch, vertex, idx, rv, jac),
                         1e-9 * biggest.clamp_min(1e-300).unsqueeze(-1))
    ok = (a.gather(-1, active) <= near.gather(-1, active)).all(-1)
    rhs = -(jac.transpose(-1, -2) @ (torch.sign(rv) * rest).unsqueeze(-1)).squeeze(-1)
    ja = jac.gather(-2, active.unsqueeze(-1).expand(-1, -1, F))
    lam, info = torch.linalg.solve_ex(ja.transpose(-1, -2), rhs)
    ok &= (info == 0) & torch.isfinite(lam).all(-1) & (lam.abs().amax(-1) <= 1 + 1e-9)
    ok &= batch.objective(vertex, idx) <= batch.objective(u, idx) * (1 + 1e-12)
    return vertex, ok


def batch_irls(prob, tr, u0, cfg):
    """Fit the rows of ``u0`` ``(k, F)``; returns ``u``, steps, reasons, messages."""
    o = {**OPTIONS, **cfg["options"]}
    ftol, inner = float(o["ftol"]), int(o["inner_steps"])
    batch = _Batch(prob, tr)
    mae = prob.loss.name == "mae"
    B, F = u0.shape
    linear = bool(getattr(prob.model, "linear_in_params", False))
    u = u0.detach().clone()
    dev, dtype = u.device, u.dtype
    # the step limit: one for all, or each row's own (the inner fits of fit's finish on
    # the bounds, each within what its row's budget has left: many_robust_finish)
    limit = torch.as_tensor(cfg["steps"], dtype=torch.long, device=dev).expand(B)
    max_steps = int(limit.max()) if B else 0
    eps = torch.full((B,), math.nan, dtype=dtype, device=dev)
    eps_min, eps_start = eps.clone(), eps.clone()
    steps = torch.zeros(B, dtype=torch.long, device=dev)
    reason = ["max_steps"] * B
    message = [f"reached the step limit ({n} steps)" for n in limit.tolist()]
    active = torch.ones(B, dtype=torch.bool, device=dev)
    # per problem, the points of the last vertex that was not certified (irls.py's rule:
    # the same points are not tried again)
    refused = torch.full((B, F), -1, dtype=torch.long, device=dev)
    waited = torch.zeros(B, dtype=torch.long, device=dev)     # checks since, same points
    # steps that moved, and the last look at |u| and the loss (irls.IRLS._look)
    taken = torch.zeros(B, dtype=torch.long, device=dev)
    ref_norm = torch.full((B,), math.nan, dtype=dtype, device=dev)
    ref_loss = ref_norm.clone()
    for _ in range(max_steps):
        check_stop()
        active &= steps < limit
        idx = active.nonzero().flatten()
        if idx.numel() == 0:
            break
        loss = batch.objective(u[idx], idx)
        bad = ~torch.isfinite(loss)
        for b in idx[bad].tolist():
            reason[b], message[b] = "diverged", "the loss is not finite here"
        active[idx[bad]] = False
        idx, loss = idx[~bad], loss[~bad]
        steps[idx] += 1
        pending = torch.ones_like(idx, dtype=torch.bool)
        while pending.any():
            p = pending.nonzero().flatten()
            ip, lp = idx[p], loss[p]
            r = batch.residuals(u[ip], ip)
            w = _weights(prob, batch, r, ip, eps, eps_min, eps_start)
            cand = gauss_newton(batch, u[ip], ip, w.sqrt(), inner)
            new = batch.objective(cand, ip)
            gain = torch.where(lp != 0, (lp - new) / lp.abs(), 0.0)
            sharpen = (eps[ip] > eps_min[ip]) if mae else torch.zeros_like(pending[p])
            take = gain > ftol
            if mae:                 # (irls.IRLS._stretch: not within bounds)
                slow = take & (gain < STRETCH_BELOW) & ~tr.bounded[ip]
                cand, new = _stretch(batch, u[ip], cand, new, ip, slow)
            u[ip[take]] = cand[take]
            away, stalled = _look(u, new, ip, take, taken, ref_norm, ref_loss)
            for b in ip[away].tolist():
                reason[b], message[b] = "failed", lm_message(RUNAWAY, {})
            active[ip[away]] = False
            gone = ~active[ip]
            take &= ~gone
            stalled &= ~sharpen
            soft = take & sharpen & (gain < 1e-3)
            eps[ip[soft]] = torch.maximum(eps[ip[soft]] * 0.1, eps_min[ip[soft]])
            if mae:
                check = take & (eps[ip] < 1e-4 * eps_start[ip])
                if check.any():
                    ic = ip[check]
                    near = _nearest_rows(batch, u[ic], ic, F)
                    fresh = (near != refused[ic]).any(-1)
                    # the same refused points: only a minimum between vertices is tried,
                    # now and then (irls.edge_retry), once the smoothing is at its floor
                    sharp = eps[ic] <= eps_min[ic]
                    waited[ic[~fresh]] += 1
                    retry = ic[~fresh & sharp & edge_retry(waited[ic])
                               & ~tr.bounded[ic]]
                    ic, near, sharp = ic[fresh], near[fresh], sharp[fresh]
                    vertex, ok = _certified(batch, u[ic], ic, inner)
                    u[ic[ok]] = vertex[ok]
                    u[ic], ok = _descend(batch, u[ic], ic, vertex, ok, certified_only=True,
                                         edges=sharp)
                    refused[ic[~ok]], waited[ic[~ok]] = near[~ok], 0
                    if retry.numel():
                        u[retry], ok_retry = _edges(batch, u[retry], retry)
                        ic, ok = torch.cat([ic, retry]), torch.cat([ok, ok_retry])
                    # the certificate of the point each row ends at (irls.IRLS.step)
                    done = ic[ok]
                    u[done] = _onto_kinks(batch, u[done], done, F)
                    good, gap = _first_order(batch, u[done], done, F)
                    for b, g, m in zip(done.tolist(), good.tolist(), gap.tolist()):
                        reason[b] = "ftol" if g else "failed"
                        message[b] = (minimum_text("mae", linear, "zero lies in the MAE's "
                                                   "subgradient there (certified)") if g else
                                      uncertified_text(prob.loss.name, m))
                    active[done] = False
            again = ~take & sharpen & ~gone
            eps[ip[again]] = torch.maximum(eps[ip[again]] * 0.1, eps_min[ip[again]])
            end = (~take & ~sharpen & ~gone) | (stalled & active[ip])   # (irls.IRLS.step)
            if end.any():
                ie = ip[end]
                better = new[end] < lp[end]
                u[ie[better]] = cand[end][better]
                if mae:
                    best = torch.minimum(new[end], lp[end])
                    vertex = _vertex(batch, u[ie], ie, inner)
                    gain_v = batch.objective(vertex, ie) < best
                    u[ie[gain_v]] = vertex[gain_v]
                    none = torch.zeros(len(ie), dtype=torch.bool, device=dev)
                    u[ie], _ = _descend(batch, u[ie], ie, u[ie], none)    # on, if lower
                    u[ie] = _onto_kinks(batch, u[ie], ie, F)
                else:
                    u[ie] = huber_newton(batch, u[ie], ie, prob.loss.delta, F,
                                         curved=not linear or bool(tr.bounded[ie].any()))
                ok, gap = _first_order(batch, u[ie], ie, F)
                stopped = (f"the loss stopped falling (relative change at most ftol={ftol:g})",
                           STALLED)
                for b, good, g, st in zip(ie.tolist(), ok.tolist(), gap.tolist(),
                                          stalled[end].tolist()):
                    reason[b] = ("ftol" if mae else "xtol") if good else "failed"
                    message[b] = (uncertified_text(prob.loss.name, g) if not good else
                                  stopped[st] + ": " + minimum_text(
                                      "mae", linear, "zero lies in the MAE's subgradient "
                                      "there (certified)") if mae else
                                  minimum_text("huber", linear, "Newton steps on the Huber "
                                               "loss reached the rounding level of the "
                                               "parameters"))
                active[ie] = False
            pending[p] = again
    return u, steps, reason, message


def huber_newton(batch, u0, idx, delta: float, F: int, iterations: int = 60,
                 curved: bool = True):
    """``irls.IRLS._huber_newton`` for every row: Newton steps on the Huber loss with the
    partition held, ``(J_Q^T J_Q) d = -(J_Q^T r_Q + delta J_L^T s_L)``, kept while they lower
    the loss or raise it by no more than its rounding level (halved otherwise), until they
    stop shrinking at the rounding level; with the whole Hessian, ``+ sum_i psi_i d2 r_i``
    (``irls.residual_curvature``), where it is positive definite and the model is not
    linear in ``u`` (``curved``)."""
    u = u0.clone()
    best = batch.objective(u, idx)
    last = torch.full_like(best, math.nan)
    running = torch.ones_like(best, dtype=torch.bool)
    eps = torch.finfo(u.dtype).eps
    # a step may raise the loss by its rounding level (irls.IRLS._huber_newton), taken at
    # the start: the residuals' rounding changes little over the steps
    if idx.numel():
        block = batch.jac(u, idx)
        r0, jac0 = block[:, F], block[:, :F].transpose(-1, -2)
        slack_all = huber_slack(r0, _level(batch, u, idx, r0, jac0), delta, batch.valid(idx))
    for _ in range(iterations):
        at = running.nonzero().flatten()
        if at.numel() == 0:
            break
        ua, ia = u[at], idx[at]
        r = batch.residuals(ua, ia)
        valid = batch.valid(ia)
        jac = batch.jac(ua, ia)[:, :F].transpose(-1, -2)              # (k, n, F)
        quad = (r.abs() <= delta) & valid
        lin = ~quad & valid
        slack = slack_all[at]
        weight = torch.where(quad, r, 0.0) + delta * torch.where(lin, torch.sign(r), 0.0)
        g = (jac * weight.unsqueeze(-1)).sum(-2)
        jq = jac * quad.unsqueeze(-1)
        d = torch.linalg.vector_norm(jq, dim=-2)
        d = torch.where(d > 0, d, torch.ones_like(d))
        h = (jq / d.unsqueeze(-2)).transpose(-1, -2) @ (jq / d.unsqueeze(-2))
        # a row whose Jacobian overflowed gets no step (a NaN one: done), as in irls
        good = torch.isfinite(h).flatten(1).all(-1) & torch.isfinite(g / d).all(-1)
        h = torch.where(good[:, None, None], h, 0.0)
        gd = torch.where(good[:, None], g / d, 0.0)
        step = -gauss_newton_solve(h, gd) / d
        if curved:          # the whole Hessian where positive definite (irls)
            c = residual_curvature(lambda v: batch.jac(v, ia)[:, :F].transpose(-1, -2), ua,
                                   torch.where(valid, r.clamp(-delta, delta), 0.0), d)
            c = torch.where(good[:, None, None] & torch.isfinite(c).flatten(1).all(-1)[
                :, None, None], c, 0.0)
            chol, info = torch.linalg.cholesky_ex(h + c)
            newton = -torch.cholesky_solve(gd.unsqueeze(-1), chol).squeeze(-1) / d
            use = good & (info == 0) & torch.isfinite(newton).all(-1)
            step = torch.where(use[:, None], newton, step)
        step = torch.where(good[:, None], step, math.nan)
        size = torch.linalg.vector_norm(step, dim=-1)
        scale = torch.linalg.vector_norm(ua, dim=-1).clamp_min(1e-300)
        done = ~torch.isfinite(size) | (size <= 4 * eps * scale) | (
            torch.isfinite(last[at]) & (size > 0.9 * last[at]) & (size <= 1e-10 * scale))
        t = torch.ones_like(size)
        moved = torch.zeros_like(done)
        value = best[at].clone()
        while True:
            trying = ~done & ~moved & (t > 1e-6)
            if not trying.any():
                break
            trial = ua + t.unsqueeze(-1) * step
            v = batch.objective(trial, ia)
            ok = trying & (v <= best[at] * (1 + 16 * eps) + slack)
            ua = torch.where(ok.unsqueeze(-1), trial, ua)
            value = torch.where(ok, v, value)
            moved |= ok
            t = torch.where(trying & ~ok, t * 0.5, t)
        u[at], best[at] = ua, torch.minimum(best[at], value)
        last[at] = torch.where(moved, size, last[at])
        running[at] = moved & ~done
    return u


def _weights(prob, batch, r, idx, eps, eps_min, eps_start):
    a = r.abs()
    if prob.loss.name == "huber":
        return torch.clamp(prob.loss.delta / a.clamp_min(1e-300), max=1.0)
    new = torch.isnan(eps[idx])
    if new.any():                 # start smooth: a floor at the typical residual
        valid = batch.valid(idx[new])
        an = torch.where(valid, a[new], math.inf)
        n = valid.sum(-1)
        med = torch.sort(an, dim=-1).values.gather(-1, ((n - 1) // 2).unsqueeze(-1))[:, 0]
        top = torch.where(valid, a[new], 0.0).amax(-1)
        scale = torch.where(med != 0, med, torch.where(top != 0, top, 1.0))
        eps[idx[new]], eps_min[idx[new]], eps_start[idx[new]] = scale, 1e-12 * scale, scale
    return 1.0 / a.clamp_min(eps[idx].unsqueeze(-1))
