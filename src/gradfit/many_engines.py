"""The batched engines behind ``fit_many``, one name each, and the covariance of each fit.

``run_engine(problem, transform, u0, rates, cfg)`` fits the rows of ``u0`` ``(k, F)``
(internal values) and gives the model's parameters ``(k, P)``, steps, reasons, messages
and, for squared losses, the covariance ``(k, F, F)`` of the free parameters as
``curve_fit``'s ``pcov`` (``result.least_squares_covariance``, batched):

    pcov = V diag(1 / s^2) V^T * S / (n - F),   J = U diag(s) V^T   (S/(n-F) -> 1 if
    absolute_sigma), NaN where n <= F or J has lost rank (s_min <= eps max(n, F) s_max).
"""
from __future__ import annotations

import numpy as np
import torch

from .batch_lm import OPTIONS as LM_OPTIONS, PERFECT, UNDERFLOW, batch_lm, message, too_small
from .batch_lm import reason as code_reason
from .many_stops import plateaus, worse_than_start
from .optimizers import OPTIMIZERS
from .spd import moments, solve_spd



def _irls(prob, tr, u0, rates, cfg):
    from .batch_irls import batch_irls
    return (*batch_irls(prob, tr, u0, cfg), None, None)


def _gradient(prob, tr, u0, rates, cfg):
    from .batch_gd import batch_gd
    return (*batch_gd(prob, tr, u0, rates, cfg), None, None)


def run_engine(prob, tr, u0, rates, cfg, absolute_sigma=False):
    method = cfg["method"]
    engine = ENGINES[OPTIMIZERS[method].batched]       # the registry names the engine
    idx = torch.arange(u0.shape[0], device=u0.device)
    gradient = OPTIMIZERS[method].batched == "gradient"
    with torch.no_grad():
        start = tr.external(u0, idx)
        # the loss at the start: a scale of an exact fit's (gradient methods' plateau test)
        first = prob.objective(start, idx) if gradient else None
    # d: Moré's scaling at the end, M: [J r]^T [J r] at u (LM's; None from the others)
    u, steps, reason, message, d, M = engine(prob, tr, u0, rates, cfg)
    with torch.no_grad():
        theta = tr.external(u, idx)
    cov = None
    if method == "lm" and not tr.identity:        # a stall on a bound may be an optimum
        reason, message = np.asarray(reason), np.asarray(message, dtype=object)
        from .many_lm_finish import finish_lm_ends
        finished = finish_lm_ends(prob, tr, theta, steps, reason, message, cfg)
        if finished is not theta:
            theta = finished
            u = tr.internal(theta)
    if method == "irls" and not tr.identity:     # a robust fit on a bound: as fit ends it
        from .many_kkt import finish_robust_on_bounds
        reason, message = np.asarray(reason, dtype="U16"), np.asarray(message, dtype=object)
        finished = finish_robust_on_bounds(prob, tr, theta, steps, reason, message, cfg)
        if finished is not theta:
            theta = finished
            u = tr.internal(theta)
    lost = np.zeros(0, dtype=np.int64)     # the rows that lost rank: no covariance
    # the parameters each end holds on a bound (fit's at_bound), before any verdict: the
    # rank is judged over the others, as fit judges it (a parameter 1e-8 inside its bound
    # after adam had been held by the NEAR of the exact methods: no lost rank, where fit,
    # holding only those within 1e-9, found one)
    held = held_by_bounds(prob, tr, theta, np.asarray(reason), gradient)
    if method != "lm":                 # LM's rank comes with its covariance below
        reason, message = np.asarray(reason, dtype="U16"), np.asarray(message, dtype=object)
        if gradient:                   # as fit's verdict.judge: worse than the start
            worse_than_start(reason, message, prob, tr, theta, first)
        lost = _lost_rank(reason, message, prob, tr, theta, held)
        if gradient:
            plateaus(reason, message, prob, tr, theta, first)
    if prob.loss.squared:
        reason, message = np.asarray(reason), np.asarray(message, dtype=object)
        _too_large(reason, message, prob)
        ok = torch.as_tensor(reason != "diverged", device=u.device)
        cov, rank, se, corr = covariance(prob, tr, theta, ok, absolute_sigma,
                                         *((d, M) if tr.identity else (None, None)), held=held)
        if method == "lm":       # the rank over every free parameter fell: which ones?
            rank = rank.cpu().numpy()
            lost = _lost_rank(reason, message, prob, tr, theta, held,
                              rank < len(tr.free) - held.sum(-1).cpu().numpy(),
                              *((rank, d) if tr.identity else (None, None)))
        if lost.size:
            # as fit, which gives no standard errors where the rank is lost: the SVD's rank
            # test on the column norms had called a*b*exp(-k*x) full rank (errors of 0.17%
            # on a and b, their correlation +1) where LM's own scaling and the rank test
            # here see the lost rank; every parameter's, not only the undetermined ones'
            # (fit gives none: the pseudo-inverse's errors of the others hold only for the
            # one choice among many the values are)
            cov, se = cov.clone(), se.clone()
            cov[torch.as_tensor(lost, device=cov.device)] = torch.nan
            se[torch.as_tensor(lost, device=cov.device)] = torch.nan
        _not_determined(reason, message, prob, tr, theta, (se, corr), absolute_sigma, held,
                        np.asarray(steps) > 0)
        from .kink_stops import one_sided_rows        # a data point on a kink: no errors
        cov = one_sided_rows(prob, tr, theta, cov, reason, message, held)
        se = torch.where(torch.isnan(cov).all(-1).all(-1, keepdim=True), torch.nan, se)
        cov = (cov, se)
        if method == "lm" and theta.dtype == torch.float32:
            _float32_short(reason, message, prob, tr, theta, M if tr.identity else None)
    if method == "lm":
        _far_starts(reason, message, prob, theta, steps)
    if theta.dtype == torch.float32:
        from .precision import float32_hint
        for i in np.flatnonzero(np.asarray(reason) == "failed").tolist():
            message[i] = float32_hint(message[i])
    return theta, steps, reason, message, cov, held


def _far_starts(reason, message, prob, theta, steps) -> None:
    """An LM end that took no step from its start says whether the start is far off in
    scale (``fit_advice.far_start_text``), as fit says it; ``message`` changes in place."""
    from .batch_lm import ROUGH, message as lm_message
    from .fit_advice import far_start_text, sizes
    rough = lm_message(ROUGH, {})
    rows = [i for i in np.flatnonzero((np.asarray(reason) == "failed")
                                      & (steps.cpu().numpy() == 0)).tolist()
            if str(message[i]).startswith(rough)]
    if not rows:
        return
    idx = torch.as_tensor(rows, device=theta.device)
    with torch.no_grad():
        f = prob.predict(theta[idx], idx)
    y = prob.y[idx]
    if prob.mask is not None:
        f, y = torch.where(prob.mask[idx], f, 0.0), torch.where(prob.mask[idx], y, 0.0)
    for j, i in enumerate(rows):
        message[i] = str(message[i]) + far_start_text(*sizes(f[j], y[j]))


def held_by_bounds(prob, tr, theta, reason, gradient: bool) -> torch.Tensor:
    """``(k, F)``: the free parameters each fit ends holding on a bound, as ``fit`` names
    them (``at_bound``): within ``active_set.NEAR`` of it where an exact method converged
    and the loss rises outwards there (its multiplier holds it: ``active_set.MU_TOL``, as
    fit's active set releases a parameter whose loss falls inwards), else within 1e-9;
    their standard errors are those of the fit with them held there. (A bound 1e-7
    standard errors below a free optimum had held it: standard errors 22% low.)"""
    k, F = theta.shape[0], len(tr.free)
    if tr.identity:
        return torch.zeros(k, F, dtype=torch.bool, device=theta.device)
    from .active_set import FEAS_TOL, MU_TOL
    from .many_kkt import _near, column_cosines
    v = theta[:, tr.free_at]
    exact = torch.as_tensor(np.isin(reason, ("gtol", "ftol", "xtol")) & (not gradient),
                            device=theta.device)
    on_lo, on_hi = _near(v, tr.lo, tr.hi)
    near = on_lo | on_hi
    look = (exact[:, None] & near).any(-1).nonzero().flatten()
    if look.numel() and prob.loss.squared:
        with torch.no_grad():
            jr = prob.jacobian(ManyTransformFixedAt(tr, theta))(v[look], look)
        J, r = jr[:, :F], jr[:, F]
        _, cos = column_cosines(J, r)
        # held: the loss rises outwards beyond MU_TOL, or it is flat and the parameter is
        # on the bound itself (FEAS_TOL); flat a little inside it is a free optimum there
        on_lo_exact, on_hi_exact = _near(v[look], tr.lo[look], tr.hi[look], FEAS_TOL)
        holds = (on_lo[look] & ((cos > MU_TOL) | ((cos >= -MU_TOL) & on_lo_exact))) | \
            (on_hi[look] & ((-cos > MU_TOL) | ((-cos >= -MU_TOL) & on_hi_exact)))
        near = near.clone()
        near[look] = holds
    tight = torch.stack(_near(v, tr.lo, tr.hi, 1e-9)).any(0)
    return torch.where(exact[:, None], near, tight)


def _too_large(reason, message, prob) -> None:
    """A failed or diverged squared-loss fit whose data alone overflow the loss (``|y /
    sigma|`` past about 1e154 in float64) says so, with the rescaling to try, as ``fit``
    does (it had said only "the residuals or their derivatives are not finite here")."""
    from .verdict import too_large_text
    bad = np.flatnonzero(np.isin(reason, ("failed", "diverged")))
    if not bad.size:
        return
    rows = torch.as_tensor(bad, device=prob.y.device)
    ys = prob.y[rows] if prob.sigma is None else prob.y[rows] / prob.sigma[rows]
    ys = ys.abs() if prob.mask is None else torch.where(prob.mask[rows], ys.abs(), 0.0)
    with torch.no_grad():
        over = ~torch.isfinite(ys.square().sum(-1)) & torch.isfinite(ys).all(-1)
    top = ys.amax(-1)
    for i in np.flatnonzero(over.cpu().numpy()).tolist():
        message[bad[i]] = too_large_text(float(top[i]), prob.y.dtype, prob.sigma is not None,
                                         model_finite=False)


def _float32_short(reason, message, prob, tr, theta, m=None) -> None:
    """``precision.short_of_minimum`` on the float32 LM fits called converged (none with a
    parameter on a bound), as ``fit`` checks them; ``reason``, ``message`` change in
    place. ``m``: LM's moments at ``theta`` where it has them (no Jacobian formed then,
    but for the ill-conditioned fits)."""
    from .precision import message as short_message, short_of_minimum
    look = np.isin(reason, ("gtol", "ftol", "xtol")) & ~_on_a_bound(tr, theta)
    rows = np.flatnonzero(look)
    if not rows.size:
        return
    idx = torch.as_tensor(rows, device=theta.device)
    jacobian = prob.jacobian(ManyTransformFixedAt(tr, theta))

    def block(at):
        with torch.no_grad():
            return jacobian(theta[idx[at]][:, tr.free_at], idx[at])
    mr = m[idx] if m is not None else moments(block(torch.arange(idx.numel(),
                                                                 device=idx.device)))
    short, gain = short_of_minimum(mr, prob.ydata[idx], block)
    for j in np.flatnonzero(short.cpu().numpy()).tolist():
        reason[rows[j]] = "failed"
        message[rows[j]] = short_message(float(gain[j]))


def _on_a_bound(tr, theta) -> np.ndarray:
    """``(k,)`` whether a free parameter lies on a bound (``active_set.NEAR``): its covariance
    is then not that of the fit with it held there, and ``not_determined`` does not apply."""
    from .active_set import NEAR
    if tr.identity:
        return np.zeros(theta.shape[0], dtype=bool)
    v = theta[:, tr.free_at]
    lo, hi = tr.lo, tr.hi
    scale = torch.maximum(v.abs(), torch.where(torch.isfinite(lo), lo.abs(), 0.0))
    scale = torch.maximum(scale, torch.where(torch.isfinite(hi), hi.abs(), 0.0)).clamp_min(1e-300)
    near = (torch.isfinite(lo) & (v - lo <= NEAR * scale)) | \
        (torch.isfinite(hi) & (hi - v <= NEAR * scale))
    return near.any(-1).cpu().numpy()


def _not_determined(reason, message, prob, tr, theta, errors, absolute_sigma, held,
                    moved) -> None:
    """``verdict.not_determined`` on the converged fits among its suspects (rare: each
    costs two evaluations of its residuals), over the free parameters each fit does not
    hold on a bound (``held`` ``(k, F)``), as ``fit`` judges its free ones: a 4PL well
    with ``hill`` on its bound and ``top`` +/- 2e9, ``ec50`` +/- 2e8 running off together
    was called an optimum, the rows on a bound having been left out. ``errors``: the
    standard errors ``(k, F)`` and correlations ``(k, F, F)`` (``covariance``'s), asked in
    units of each standard error (``verdict.not_determined_scaled``): a covariance that
    overflows (a parameter of 2e160, +/- 1e157) had made every such fit a suspect, and
    ``failed``. Ends where LM found no step are judged too, where they ``moved`` from
    their start (``verdict.looked_at_for_determination``)."""
    from .verdict import (looked_at_for_determination, not_determined_scaled,
                          undetermined_suspects, walk_named)
    at = tr.free_at
    free_theta = theta[:, at].detach().cpu().double().numpy()
    se, corr = (e.detach().cpu().double().numpy() for e in errors)
    hold = held.cpu().numpy()
    n = prob.count.cpu().numpy()
    F = (~hold).sum(-1)
    unit = np.where(np.isfinite(se) & (se > 0), se, 1.0)
    look = undetermined_suspects(free_theta / unit, np.where(
        hold[:, :, None] | hold[:, None, :], np.nan, corr * (se / unit)[:, :, None] *
        (se / unit)[:, None, :])) & (n > F)
    for i in np.flatnonzero(look):          # the suspects only: a word of Python each
        if not looked_at_for_determination(str(reason[i]), str(message[i]),
                                           bool(moved[i] and np.isfinite(se[i]).all())):
            continue
        idx = torch.tensor([i], device=theta.device)
        keep = np.flatnonzero(~hold[i])
        cols = at[torch.as_tensor(keep, device=at.device)]

        def sse(f, i=i, idx=idx, cols=cols) -> float:
            full = theta[i].clone()
            full[cols] = torch.as_tensor(f, dtype=theta.dtype, device=theta.device)
            with torch.no_grad():
                return float(prob.residuals(full[None], idx).square().sum())
        S = sse(free_theta[i, keep])
        scale = 1.0 if absolute_sigma else S / (n[i] - F[i])
        names = [tr.free[j] for j in keep]
        why = not_determined_scaled(names, free_theta[i, keep], se[i, keep],
                                    corr[i][np.ix_(keep, keep)], sse, S, scale) or \
            walk_named(names, free_theta[i, keep], se[i, keep], str(message[i]))
        if why:
            reason[i], message[i] = "failed", why


def _lost_rank(reason, message, prob, tr, theta, held, suspect=None, ranks=None,
               scales=None) -> np.ndarray:
    """``verdict.lost_rank`` for every end that neither failed nor diverged (of the rows
    ``suspect``, when given), as ``fit`` judges every end (a ``max_steps`` end that lost
    rank had kept its reason, and its pseudo-inverse standard errors): the column-scaled
    Jacobian of the model over the free
    parameters not held on a bound (``held`` ``(k, F)``, ``held_by_bounds``: those are
    determined by it) must keep its
    rank, else the fit failed (``a*b*x``), its message naming the parameters not determined
    (not one held by its bound, whose column in the internal variables vanishes).
    ``ranks``: LM's rank of ``J D^-1`` with Moré's scaling ``D`` (the largest column norms
    met), which decides where nothing is bounded or fixed, as fit's LM decides by its own:
    a Gaussian moved 4500 widths off the data has columns of 1e-123 that the current
    column norms would scale back up to full rank. ``scales``: that ``D`` ``(k, F)``; where
    LM's rank decides, the message names the parameters by the SVD of ``J D^-1``, as fit's
    (``a*exp(-k*x)`` on data of 0: "k", where the column norms' SVD said "a, k").
    Returns the rows that lost rank."""
    from .many_kkt import RANK_LOST
    from .verdict import BOUNDS_PREFIX, far_inputs, rank_message, scaled_singular
    # and the finish's own lost rank (refit_inside's), which fit's verdict words anew where
    # the columns at the end say it too (``verdict.judge``)
    conv = ~np.isin(reason, ("diverged", "failed")) | np.char.startswith(
        np.asarray(message, dtype=str), BOUNDS_PREFIX + RANK_LOST)
    rows = np.flatnonzero(conv if suspect is None else conv & suspect)
    lost: list[int] = []
    if not rows.size or not prob.model.identifiable:
        # a flexible model (ReLU sums) has no unique optimum: fit does not ask
        return np.asarray(lost, dtype=np.int64)
    idx = torch.as_tensor(rows, device=theta.device)
    at, F = tr.free_at, len(tr.free)
    v = theta[idx][:, at]
    with torch.no_grad():
        J = prob.jacobian(ManyTransformFixedAt(tr, theta))(v, idx)[:, :F]      # (k, F, n)
    held = held[idx].cpu().numpy()
    finite = torch.isfinite(J).flatten(1).all(-1).cpu().numpy()
    n = prob.count[idx].cpu().numpy()
    patterns = {}
    for i in np.flatnonzero(finite):
        patterns.setdefault(held[i].tobytes(), []).append(i)
    eps = torch.finfo(J.dtype).eps
    for key, group in patterns.items():
        keep = np.flatnonzero(~np.frombuffer(key, dtype=bool))
        if not keep.size:
            continue
        g = torch.as_tensor(group, device=J.device)
        s, vh = scaled_singular(J[g][:, keep].transpose(-1, -2))
        for j, i in enumerate(group):
            limit = eps * max(float(n[i]), keep.size) * s[j, 0]
            rank = int((s[j] > limit).sum())
            sj, vj = s[j], vh[j]
            if ranks is not None and int(ranks[rows[i]]) < rank:
                # LM's own rank (Moré's scaling) decides, as fit's: so does its SVD
                rank = int(ranks[rows[i]])
                if scales is not None:
                    _, sj, vj = torch.linalg.svd(J[i].transpose(-1, -2) / scales[rows[i]],
                                                 full_matrices=False)
            if s[j, 0] == 0 or rank < keep.size:
                reason[rows[i]] = "failed"
                x = prob.x if prob.shared_x else prob.x[rows[i]]
                if prob.mask is not None:
                    x = x[prob.mask[rows[i]]]
                message[rows[i]] = rank_message(rank, [tr.free[c] for c in keep], sj, vj,
                                                far_inputs(prob, x))
                lost.append(int(rows[i]))
    return np.asarray(lost, dtype=np.int64)


LINEAR_TEXT = ("the exact least-squares solution of a model linear in its parameters (one "
               "solve of the column-scaled design matrix)")       # fit's words (lm.py)


def _linear_solution(prob, tr, k: int, dtype, device):
    """For a model linear in its parameters (no bounds, no fixed values): each row's exact
    least-squares solution ``(k, F)``, and where it was found (finite design and data), as
    ``fit`` solves it (``linear_lsq``): by the SVD of the column-scaled design ``J D^-1``,
    never through ``J^T J``, whose condition is the square, and against the residuals at
    zero parameters (the model's offset less the data), not at a guess, whose cancellation
    on an ill-conditioned design (a quartic over x in [1000, 1010]) cost digits that no
    iteration recovers. It is the answer, as in ``fit``: LM from there crept (a cubic
    through two clusters of x, 1000 steps) or stopped ROUGH a hair above the minimum."""
    from .batch_lm import data_norm
    from .lm import scaled_svd
    F = len(tr.free)
    u0 = torch.zeros(k, F, dtype=dtype, device=device)
    with torch.no_grad():
        jr = prob.jacobian(tr)(u0, torch.arange(k, device=device))
    good = torch.isfinite(jr).flatten(1).all(-1)
    jr = torch.where(good[:, None, None], jr, 0.0)
    J, r = jr[:, :F].transpose(-1, -2), jr[:, F]
    # the column norms without squaring (a column of 1e-200 squares to 0, one of 1e160 to
    # inf: the solve had given a = 9e-199 for 2e200, and -0.0 for 2e-160)
    d = data_norm(jr[:, :F])
    d = torch.where(d > 0, d, 1.0)
    s, vh, c = scaled_svd(J, d, r)
    w = torch.where(s > 0, c / s.clamp_min(torch.finfo(s.dtype).tiny), 0.0)
    theta = -(vh.transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1) / d
    good &= torch.isfinite(theta).all(-1)
    return theta, good, d


def _lm(prob, tr, u0, rates, cfg):
    o = {k: cfg["options"].get(k, LM_OPTIONS[k]) for k in LM_OPTIONS}
    linear = tr.identity and prob.model.linear_in_params and prob.loss.name in ("mse", "rmse")
    if linear:
        solved, good, scale = _linear_solution(prob, tr, u0.shape[0], u0.dtype, u0.device)
        u0 = torch.where(good.unsqueeze(-1), solved, u0)
        if bool(good.all()):           # one solve each: the answers, as fit's
            k, F = u0.shape
            with torch.no_grad():
                M = prob.normal(tr)(u0, torch.arange(k, device=u0.device))
            reason, msg = _solved(prob, tr, u0, M, o, cfg["steps"])
            return (u0, torch.ones(k, dtype=torch.long, device=u0.device), reason, msg,
                    scale, M)
    res = batch_lm(None, u0, ydata=prob.ydata, max_steps=cfg["steps"],
                   jacobian=prob.jacobian(tr), normal=prob.normal(tr),
                   runaway=not prob.model.linear_in_params, **o)
    code = _perfect_or_underflow(prob, tr, res.theta, res.code)
    codes = code.cpu().numpy()
    table = {c: (code_reason(c), message(c, o, cfg["steps"])) for c in set(codes.tolist())}
    reason = np.array([table[c][0] for c in codes.tolist()], dtype="U16")
    msg = np.array([table[c][1] for c in codes.tolist()], dtype=object)
    steps = res.steps
    if cfg.get("own_rank"):     # as fit's LM judges its inner fits: J D^-1, Moré's D
        own_rank(prob, tr, res.theta, res.d, reason, msg)
    if linear:                  # the rows solved: their solve is their answer
        theta = torch.where(good.unsqueeze(-1), u0, res.theta)
        at = good.cpu().numpy()
        steps = torch.where(good, 1, steps)
        with torch.no_grad():
            M = torch.where(good[:, None, None], prob.normal(tr)(
                theta, torch.arange(theta.shape[0], device=theta.device)), res.M)
        reason[at], msg[at] = (v[at] for v in _solved(prob, tr, theta, M, o, cfg["steps"]))
        return theta, steps, reason, msg, torch.where(good[:, None], scale, res.d), M
    return res.theta, steps, reason, msg, res.d, res.M


def own_rank(prob, tr, u, d, reason, message) -> None:
    """LM's own rank test at its converged ends, as ``fit``'s LM makes it
    (``LevenbergMarquardt._check_rank``): the SVD of ``J_u D^-1`` in LM's own variables
    ``u`` ``(k, F)`` with Moré's scaling ``d`` (the largest column norms met), singular
    values below ``eps max(n, F) s_max`` counted 0; a converged end that lost rank fails,
    naming the parameters. The column norms at the end cannot see it: ``a*exp(-k*x)`` on
    data of 0 runs ``a`` to 1e-64, and ``k``'s column, as small, scales back to 1.
    ``reason``, ``message`` change in place."""
    from .verdict import far_inputs, rank_message
    conv = np.isin(reason, ("gtol", "ftol", "xtol"))
    if not conv.any() or not prob.model.identifiable:
        return
    rows = torch.as_tensor(np.flatnonzero(conv), device=u.device)
    F = u.shape[-1]
    with torch.no_grad():
        J = prob.jacobian(tr)(u[rows], rows)[:, :F]                   # (k, F, n)
    finite = torch.isfinite(J).flatten(1).all(-1)
    js = torch.where(finite[:, None, None], J, 0.0).transpose(-1, -2) / d[rows].unsqueeze(-2)
    _, s, vh = torch.linalg.svd(js, full_matrices=False)
    n = prob.count[rows].clamp(min=F).to(s.dtype)
    kept = (s > torch.finfo(s.dtype).eps * n.unsqueeze(-1) * s[:, :1]) & (s[:, :1] > 0)
    lost = (finite & (kept.sum(-1) < F)).cpu().numpy()
    for j in np.flatnonzero(lost).tolist():
        b = int(rows[j])
        x = prob.x if prob.shared_x else prob.x[b]
        if prob.mask is not None:
            x = x[prob.mask[b]]
        reason[b] = "failed"
        message[b] = rank_message(int(kept[j].sum()), list(tr.free), s[j], vh[j],
                                  far_inputs(prob, x))


def _solved(prob, tr, theta, M, o, steps):
    """Reasons and messages of linear solutions ``theta`` with moments ``M``
    ``(k, F+1, F+1)``: the solution (``xtol``, as ``fit`` says it), unless the residuals or
    their squares are not finite (NONFINITE) or underflow (UNDERFLOW; where ``S = 0``, by
    the residuals themselves), as LM's own tests would end it."""
    from .batch_lm import NONFINITE, XTOL, _underflow
    F = M.shape[-1] - 1
    # the residuals' sum of squares: J is finite where solved (a linear model's is the same
    # everywhere), and J^T J overflowing (columns of 1e160) is no fault of the fit's
    codes = torch.where(~torch.isfinite(M[:, F, F]), NONFINITE, torch.where(
        _underflow(M, prob.ydata), UNDERFLOW, torch.where(M[:, F, F] == 0, PERFECT, XTOL)))
    codes = _perfect_or_underflow(prob, tr, theta, codes)
    codes = torch.where(codes == PERFECT, XTOL, codes).cpu().numpy()
    reason = np.array([code_reason(c) for c in codes.tolist()], dtype="U16")
    msg = np.array([LINEAR_TEXT if c == XTOL else message(c, o, steps)
                    for c in codes.tolist()], dtype=object)
    return reason, msg


def _perfect_or_underflow(prob, tr, theta, code):
    """LM's PERFECT ends (``S = 0``) whose residuals do not vanish: their squares, and
    ``J^T r``, underflowed (``batch_lm.too_small``; y / sigma of scale 1e-200), which LM's
    own test, on ``M`` alone, cannot tell from a perfect fit (``fit`` looks at ``r``)."""
    rows = (code == PERFECT).nonzero().flatten()
    if rows.numel() == 0:
        return code
    with torch.no_grad():
        r = prob.residuals(tr.external(theta[rows], rows), rows)
    under = too_small(r.square().sum(-1), (r != 0).any(-1), prob.ydata[rows])
    return code.index_put((rows[under],), torch.tensor(UNDERFLOW, device=code.device))


ENGINES = {"lm": _lm, "irls": _irls, "gradient": _gradient}   # OptimizerSpec.batched -> engine


def covariance(prob, tr, theta, ok, absolute_sigma=False, d=None, m=None, held=None):
    """``(pcov, rank, stderr, correlation)`` of the free parameters at ``theta`` ``(k, P)``:
    pcov ``(k, F, F)`` (NaN where undefined or not ``ok``; inf where a value overflows),
    the rank of the column-scaled Jacobian ``J D^-1`` (``D`` Moré's scaling ``d`` when
    given, else the column norms), the standard errors ``(k, F)`` and correlations, by
    ``result.scaled_errors`` from ``inv = (D^-1 J^T J D^-1)^-1``: ``pcov = D^-1 inv D^-1``,
    the same matrix as from ``J``'s own SVD. ``m``: ``M = [J r]^T [J r]`` at ``theta``
    where the engine has it (LM without bounds or fixed values); then ``J`` itself is
    formed only for the fits that need the SVD: those ill-conditioned, and those whose
    ``M`` over- or underflows (a column of 1e160 or 1e-160 squares to inf or to no
    digits: a parameter of 2e160 had failed for its covariance's overflow).
    ``held`` ``(k, F)``: parameters held on a bound, as ``fit`` holds them: the others'
    pcov is that of the fit without them (``(J_S^T J_S)^-1``, ``n - |S|`` degrees of
    freedom), theirs 0 (rows and columns), and the rank is over the others."""
    from .batch_lm import data_norm
    from .result import scaled_errors
    k = theta.shape[0]
    idx = torch.arange(k, device=theta.device)
    at = tr.free_at
    F = len(tr.free)
    jacobian = prob.jacobian(ManyTransformFixedAt(tr, theta))
    n = prob.count
    jr = None
    if m is None:
        jr = jacobian(theta[:, at], idx)
        m = moments(jr)
    if held is None:
        held = torch.zeros(k, F, dtype=torch.bool, device=theta.device)
    F_eff = F - held.sum(-1)
    fits = ok & (n >= F_eff)      # rank is judged from n = F points on; S / (n - F): n > F
    # M's own digits: a squared column norm below tiny / eps has lost digits to underflow
    # (its squares under the smallest normal number), one not finite overflowed: such fits'
    # errors come from the SVD of J itself, never from J^T J
    diag, fi = m.diagonal(dim1=-2, dim2=-1), torch.finfo(m.dtype)
    normal = torch.isfinite(diag).all(-1) & (diag[:, F] >= fi.tiny) & \
        ((diag[:, :F] >= fi.tiny / fi.eps) | held).all(-1)
    m = torch.where((fits & normal)[:, None, None], m, 0.0)
    given = d is not None
    if d is None:
        d = m.diagonal(dim1=-2, dim2=-1)[:, :F].clamp_min(0).sqrt()
    d = torch.where(d > 0, d, 1.0)
    dd = d.unsqueeze(-1) * d.unsqueeze(-2)
    a = m[:, :F, :F] / dd
    eye = torch.eye(F, dtype=a.dtype, device=a.device).expand_as(a)
    cross = held.unsqueeze(-1) | held.unsqueeze(-2)
    a = torch.where(cross, eye, a)          # a held parameter's row and column: the identity
    inv, ok_inv = solve_spd(a, eye)
    # tr(A) tr(A^-1) >= cond(A): below 1/sqrt(eps) (7e7 in float64, 3e3 in float32) the
    # scaled Jacobian is far from a lost rank and the inverse is accurate; the others go
    # through the SVD, as curve_fit does (forming A squares J's condition: in float32 a
    # Jacobian of two equal columns gives A a smallest eigenvalue of eps, not 0, and 1e8
    # would call it of full rank)
    bound = a.diagonal(dim1=-2, dim2=-1).sum(-1) * inv.diagonal(dim1=-2, dim2=-1).sum(-1)
    easy = normal & ok_inv & (bound < torch.finfo(a.dtype).eps ** -0.5)
    rank = F_eff.clone()        # (a copy: .to() of the same dtype is F_eff itself, and the
                                # rank written below had overwritten it: rank == F_eff always)
    root = m[:, F, F].clamp_min(0).sqrt()
    good = fits & normal
    hard = (fits & ~easy).nonzero().flatten()
    if hard.numel():
        jh = jr[hard] if jr is not None else jacobian(theta[hard][:, at], hard)
        finite = torch.isfinite(jh).flatten(1).all(-1)
        jh = torch.where(finite[:, None, None], jh, 0.0)
        dh = torch.where(normal[hard].unsqueeze(-1), d[hard], data_norm(jh[:, :F]))
        dh = torch.where(dh > 0, dh, 1.0)
        s, vh, kept = _scaled_rank(jh, dh, held[hard], n[hard])
        rank[hard] = kept.sum(-1)
        if given:
            # the rank by the engine's own scaling (LM's: Moré's D), as fit's LM judges it:
            # where J^T J underflowed, LM saw a column of 0 and never moved that parameter
            odd = (~normal[hard]).nonzero().flatten()
            if odd.numel():
                rank[hard[odd]] = torch.minimum(rank[hard[odd]], _scaled_rank(
                    jh[odd], d[hard[odd]], held[hard[odd]], n[hard[odd]])[2].sum(-1))
        w = torch.where(kept, 1.0 / s.clamp_min(torch.finfo(s.dtype).tiny).square(), 0.0)
        inv[hard] = (vh.transpose(-1, -2) * w.unsqueeze(-2)) @ vh
        d[hard] = dh
        root[hard] = data_norm(jh[:, F])
        good[hard] = finite
    rank = torch.where(good, rank, 0)
    inv = torch.where(cross, 0.0, inv)
    root = torch.ones_like(root) if absolute_sigma else \
        root / (n - F_eff).clamp_min(1).to(root.dtype).sqrt()
    pcov, se, corr = scaled_errors(inv, d, root)
    keep = good & (rank == F_eff) & ((n > F_eff) | absolute_sigma)
    nan = torch.tensor(torch.nan, dtype=pcov.dtype, device=pcov.device)
    return (torch.where(keep[:, None, None], pcov, nan), rank,
            torch.where(keep[:, None], se, nan), torch.where(keep[:, None, None], corr, nan))


def _scaled_rank(jr, d, held, n):
    """``(s, V^T, kept)``: the SVD of the column-scaled ``J D^-1`` of ``[J r]^T`` ``jr``
    ``(k, F+1, n)`` (held columns zeroed) and its singular values above ``eps max(n, F)
    s_max``."""
    F = d.shape[-1]
    js = jr[:, :F].transpose(-1, -2) / d.unsqueeze(-2)
    js = torch.where(held.unsqueeze(-2), 0.0, js)
    _, s, vh = torch.linalg.svd(js, full_matrices=False)
    eps = torch.finfo(js.dtype).eps
    return s, vh, s > eps * torch.clamp(n, min=F).unsqueeze(-1) * s[:, :1]


class ManyTransformFixedAt:
    """The identity on the free parameters, the others held at ``theta``: a transform for
    the Jacobian with respect to the model's own free parameters (``at``: those of them
    at these places in the parameter vector only)."""

    def __init__(self, tr, theta, at=None):
        self.theta, self.free_at = theta, tr.free_at if at is None else at
        self.identity = at is None and len(tr.free) == len(tr.names)

    def external(self, f, idx):
        if self.identity:
            return f
        full = self.theta[idx].clone()
        full[:, self.free_at] = f
        return full

    def slope(self, f, idx):
        return torch.ones_like(f)
