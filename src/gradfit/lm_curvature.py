"""The loss's own curvature, which Gauss-Newton's ``J^T J`` leaves out, by differences of the
exact gradient: whether LM, stuck where Gauss-Newton still predicts a gain, sits at a
minimum anyway (``settled``, ``batch_lm``'s ``ROUGH`` test), and the second-order term of a
large-residual problem that LM crawls on (``second_order``, ``choose_model``)."""
from __future__ import annotations

import torch

CRAWL = 10              # accepted LM steps in a row, each lowering S by at most CRAWL_GAIN
CRAWL_GAIN = 1e-3       # of itself (a crawl along a flat valley, or Gauss-Newton's linear
                        # convergence at a rate near 1 where residuals are large): the loss's
                        # second-order term is measured (``second_order``) and the model
                        # that predicts the actual reductions better is used (``choose_model``)


def settled(lm, rows, th, g, S, noise, d):
    """Where ``rows`` (stuck, with a Gauss-Newton gain beyond ``100 noise``): whether the
    point is a minimum to the rounding level of ``S`` by the loss's own Hessian (``lm``:
    the ``BatchLM``, whose rows ``rows`` are).

    Gauss-Newton's ``A = J^T J`` leaves out ``sum_i r_i d2 r_i``, which large residuals
    make dominant in a direction ``J`` barely sees: ``g^T A^-1 g`` then predicts a gain
    no step can have (a double exponential at chi2/N = 53: 1e-9 predicted, 5e-13 there).
    The Hessian ``H`` of ``S/2`` (in Moré's scaled variables ``u = D theta``) by central
    differences of the exact gradient ``J^T r``, at steps ``CURVE_STEP`` and a quarter of
    it of each variable's scale ``max(|u_j|, |r|)``: settled where both are positive
    definite, agree (``H``'s entries within a tenth of ``sqrt(H_ii H_jj)`` plus their
    rounding, the Newton gains ``g^T H^-1 g`` within a factor 2), those gains are at most
    ``100 noise``, and the Newton step does not lower ``S`` beyond that. At a kink the
    gradient jumps, so its differences grow as the step shrinks (fourfold here): no two
    steps agree, and the point stays rough."""
    xp = lm.ops
    out = rows & False
    at = xp.rows(rows)
    if at.shape[0] == 0:
        return out
    F = lm.F
    t0, idx, d0, g0 = th[at], lm.idx[at], d[at], g[at]
    rn = xp.sqrt(xp.maximum(S[at], 0.0))
    err = lm.eps * (rn + 2.0 * lm.yd[at])        # the residuals' rounding
    scale = xp.maximum(abs(d0 * t0), rn[:, None])
    scale = xp.where(scale > 0, scale, 1.0)
    hessians, gains, ok = [], [], xp.isfinite(g0).all(-1)
    first = lm.eps ** (1.0 / 3.0)
    for frac in (first, first / 4):
        h = frac * scale                            # (k, F), in u
        H = _hessian(lm, t0, idx, d0, h)
        fin = xp.isfinite(H).all(-1).all(-1)
        H = xp.where(fin[:, None, None], H, 0.0)
        fac = xp.factor(H)
        n = fac.solve(-g0)
        gain = -(g0 * n).sum(-1)
        ok = ok & fin & fac.ok & xp.isfinite(gain) & (gain >= 0)
        hessians.append((H, h))
        gains.append((gain, n))
    (H1, h1), (H2, h2) = hessians
    diag = abs(H1.diagonal(0, -2, -1))
    size = xp.sqrt(diag[:, :, None] * diag[:, None, :])
    fuzz = 4.0 * err[:, None, None] * (1.0 / h2[:, None, :] + 1.0 / h2[:, :, None])
    ok = ok & (abs(H1 - H2) <= 0.1 * size + fuzz).all(-1).all(-1)
    (G1, n1), (G2, n2) = gains
    floor = 100.0 * noise[at]
    ok = ok & (G1 <= floor) & (G2 <= floor) & (G1 <= 2.0 * G2 + noise[at]) & \
        (G2 <= 2.0 * G1 + noise[at])
    if bool(ok.any()):          # the Newton step itself: no gain beyond that either
        with torch.no_grad():
            s_n = lm.normal(t0 + xp.where(ok[:, None], n2, 0.0) / d0, idx)[:, F, F]
        lm.nfev += 1
        ok = ok & ~(S[at] - s_n > floor)
    out[at] = ok
    return out


def _hessian(lm, t0, idx, d0, h):
    """The Hessian of ``S/2`` in Moré's scaled variables ``u = D theta`` at the points
    ``t0`` ``(k, F)`` of the problems ``idx``, by central differences of the exact gradient
    ``D^-1 J^T r`` at steps ``h`` ``(k, F)`` of ``u``: ``2F`` evaluations of ``M``."""
    xp, F = lm.ops, lm.F
    eye = xp.eye(F, t0)
    H = xp.zeros((t0.shape[0], F, F), t0)
    for j in range(F):
        dt = (h[:, j] / d0[:, j])[:, None] * eye[j]
        with torch.no_grad():
            gp = lm.normal(t0 + dt, idx)[:, :F, F] / d0
            gm = lm.normal(t0 - dt, idx)[:, :F, F] / d0
        lm.nfev += 2
        H[:, :, j] = (gp - gm) / (2.0 * h[:, j:j + 1])
    return 0.5 * (H + H.swapaxes(-1, -2))


def second_order(lm, rows, th, M, d):
    """``sum_i r_i d2 r_i`` (the part of the loss's Hessian ``J^T J`` leaves out) at the
    points ``th`` of the rows ``rows``, unscaled ``(k, F, F)``: the full Hessian of ``S/2``
    by ``_hessian`` (steps of ``eps^(1/3)`` of each variable's scale ``max(|u_j|, |r|)``)
    less ``J^T J`` from ``M``. A large-residual problem's Gauss-Newton model misses it, and
    LM then converges linearly at a rate near 1 (a flat dose-response well: 1000 steps)."""
    xp, F = lm.ops, lm.F
    t0, idx, d0 = th[rows], lm.idx[rows], d[rows]
    rn = xp.sqrt(xp.maximum(M[rows][:, F, F], 0.0))
    scale = xp.maximum(abs(d0 * t0), rn[:, None])
    scale = xp.where(scale > 0, scale, 1.0)
    H = _hessian(lm, t0, idx, d0, lm.eps ** (1.0 / 3.0) * scale)
    raw = H * (d0[:, :, None] * d0[:, None, :]) - M[rows][:, :F, :F]
    return xp.where(xp.isfinite(raw).all(-1).all(-1)[:, None, None], raw, 0.0)


def choose_model(lm, judged, y, g, a, a_aug, actual, slow, running):
    """After an LM trial of the ``BatchLM`` ``lm``: where ``s2`` is known, use next the
    model (``J^T J`` or ``J^T J + s2``) whose predicted reduction along the step ``y`` was
    nearer the ``actual`` one (NL2SOL's choice); count the ``slow`` steps of a crawl
    (``CRAWL``), and where it is long, the problem still ``running`` and ``s2`` not
    measured within ``gap`` accepted steps (``CRAWL``, doubled at each measurement: a crawl
    the augmented model does not end, as a walk to infinity, costs ``2F`` evaluations a
    ``log2`` of its steps), measure it at the current point and try the augmented model
    next."""
    xp = lm.ops
    if bool(lm.have.any()):
        gy = 2.0 * (g * y).sum(-1)
        p_gn = -(gy + (y * (a @ y[:, :, None])[:, :, 0]).sum(-1))
        p_aug = -(gy + (y * (a_aug @ y[:, :, None])[:, :, 0]).sum(-1))
        better = abs(actual - p_aug) < abs(actual - p_gn)
        lm.aug = xp.where(judged & lm.have, better, lm.aug)
    lm.crawl = xp.where(judged, (lm.crawl + 1) * slow, lm.crawl)
    if not bool((lm.crawl >= CRAWL).any()):
        return
    due = xp.rows(running & (lm.crawl >= CRAWL) &
                  (lm.steps >= lm.mark + lm.gap))
    if due.shape[0]:
        lm.s2[due] = second_order(lm, due, lm.th, lm.M, lm.d)
        lm.have[due] = True
        lm.aug[due] = True
        lm.mark[due] = lm.steps[due]
        lm.crawl[due] = 0
        lm.gap[due] = 2 * lm.gap[due]   # a crawl that goes on: measured ever less often
