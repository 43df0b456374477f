"""Whether a gradient method's ``ftol``/``gtol`` stop on a model with kinks is a minimum.

A ReLU sum, a ReLU network, or an expression with ``abs``, ``min``, ``max`` can stop on a
kink: a unit's break on a data point, where the model's derivative is one-sided. The
gradient autograd gives there is one side's (``relu'(0) = 0``), so a minimum's gradient
need not vanish and the smooth models' cosine test alone cannot judge it. Here, for every
such stop (``fit`` and ``fit_many`` alike, one batched function):

- **the generalized cosine**: the cosine of the residual weights ``psi(r)`` with the
  Jacobian's columns, minimised over the convex hull of the derivatives met within
  ``SPREAD`` of the point (Clarke's generalized gradient, sampled as gradient sampling
  samples it: at ``2 PAIRS`` fixed directions, each both ways, so that a break on a data
  point is crossed both ways). At a kink-minimum 0 lies in that hull; where the smallest
  element still has a cosine above ``PLATEAU``, every gradient near the point falls along
  one direction: no minimum, ``failed``. So a converged claim has a (generalized) cosine
  of at most ``PLATEAU`` for every model, as the README states;
- **the Gauss-Newton direction**: a stop whose own cosine is at most ``PLATEAU`` is looked
  at along it (``t = 1, 1/2, ..., 2^-52`` of the step): a fall of the loss beyond ``FALL``
  of itself, where the loss also falls at ``t/2`` and ``t/4`` (a descent from the point,
  not a jump across a kink into another basin), is no minimum, ``failed``. Within one activation pattern a ReLU sum is linear
  in its parameters, so there the Gauss-Newton step is the pattern's exact least-squares
  step: ``relu:1`` on a line (every unit active: ``a*x + b``) stopped by adam with its
  loss 2e-4 above the least-squares minimum had been called converged (its cosine was
  below ``PLATEAU``, and a model with kinks was never looked at then). Only along it: the
  longer looks below, across kinks, find other basins from a pattern's own minimum;
- **a look around** (``stationary.falls_nearby``: along the gradient, the Gauss-Newton
  direction, each parameter's axis and random directions) for a stop on a kink (its own
  cosine above ``PLATEAU``, its generalized one not): a fall beyond ``FALL``, ``failed``;
- **a dead network**: a ReLU model whose every unit is inactive at every data point (its
  Jacobian has no column but the constant's) is a constant: its gradient vanishes on a flat
  region, so every test passes, but it fits nothing of the data's shape (adam with lr=10 on
  ``mlp:4``: the loss of a constant fit). ``failed``, saying so.
"""
from __future__ import annotations

import math

import numpy as np
import torch

SPREAD = 1e-6        # the neighbourhood sampled for the generalized gradient, relative to
                     # each parameter's scale (falls_nearby's): a break this near a data point
                     # is on it (the look around then judges the point)
PAIRS = 8            # directions drawn (fixed), each taken both ways
JUMP = 1e-5          # a row whose share of the cosine moves by this one way only along a
                     # pair +-u within SPREAD: a kink's (a smooth row's moves cancel)
KINK_ROWS = 64       # at most this many kink rows per fit enter the hull (the largest jumps)
QP_STEPS = 1500      # accelerated projected-gradient steps of the smallest-element problem
QP_CHECK = 50        # ... looked at every this many: stopped where every fit is decided
BLOCK = 2 ** 24      # values of the sampled Jacobians held at once (generalized_cosine)
ROW_JUMP = 1e-3      # a Jacobian row (over the column norms) moving by this one way only
                     # along a pair +-u within SPREAD: a data point on a kink (on_kinks)


def kink_verdicts(objective, jr_at, theta: torch.Tensor, at: torch.Tensor, r: torch.Tensor,
                  J: torch.Tensor, delta: float, end: torch.Tensor, cos: torch.Tensor,
                  free, identifiable: bool) -> list:
    """The message of each of ``k`` stops that is no minimum (see the module's docstring),
    else None. ``theta`` ``(k, P)`` the model's parameters, ``at`` ``(F,)`` the free ones';
    ``r`` ``(k, n)`` the residuals and ``J`` ``(k, n, F)`` their Jacobian (masked, a held
    parameter's column zero), ``end`` ``(k,)`` the loss, ``cos`` ``(k,)`` the largest cosine
    (``huber_certificate``'s) at ``theta``; ``objective(thetas (m, P), rows (m,))`` the
    loss of the stops ``rows`` (``0..k-1``) at ``thetas``, ``jr_at(moves (m, F), rows
    (m,))`` their residuals and Jacobian at ``theta[rows]`` moved by ``moves`` in the free
    parameters (as ``r`` and ``J``)."""
    from .stationary import FALL, PLATEAU, PROBES, falls_at, falls_nearby
    k, n, F = J.shape
    out: list = [None] * k
    if k == 0:
        return out
    dead = torch.zeros(k, dtype=torch.bool, device=J.device)
    if not identifiable and F >= 2:
        live = (J != 0).any(-2).sum(-1)
        dead = live <= 1
    gen = cos.clone()
    along = torch.zeros(k, dtype=torch.long, device=J.device)
    high = ((cos > PLATEAU) & ~dead).nonzero().flatten()
    if high.numel():
        c, g = generalized_cosine(lambda mv, rows: jr_at(mv, high[rows]), theta[high][:, at],
                                  r[high], J[high], delta)
        gen[high], along[high] = c, g.abs().argmax(-1)
    fall = torch.zeros_like(end)
    halves = 0.5 ** torch.arange(PROBES, dtype=theta.dtype, device=theta.device)
    # a stationary point of the autograd derivatives (the cosine at most PLATEAU): along
    # the Gauss-Newton direction, t = 1, 1/2, ..., 2^-52 of its step (within one activation
    # pattern the loss is quadratic along it, and falls from t -> 0 unless the point is the
    # pattern's minimum: a look farther off would find other basins, no verdict on this one)
    flat = ((cos <= PLATEAU) & ~dead).nonzero().flatten()
    if flat.numel():
        step = gauss_newton_step(r[flat], J[flat], delta)
        with torch.no_grad():
            falls = falls_at(lambda th, rows: objective(th, flat[rows]), theta[flat], at,
                             halves[:, None, None] * step, end[flat], n)     # (PROBES, k)
        # a fall counts where the loss also falls at the next two halvings of the step:
        # a descent from the point, not a jump across a kink into another basin
        near = torch.cat([falls[1:], torch.zeros_like(falls[:1])])
        nearer = torch.cat([falls[2:], torch.zeros_like(falls[:2])])
        fall[flat] = torch.where((near > 0) & (nearer > 0), falls, 0.0).amax(0)
    # on a kink (a one-sided gradient, 0 in its generalized one): the look around too
    look = ((cos > PLATEAU) & (gen <= PLATEAU) & ~dead).nonzero().flatten()
    if look.numel():
        step = gauss_newton_step(r[look], J[look], delta)
        with torch.no_grad():
            fall[look] = falls_nearby(lambda th, rows: objective(th, look[rows]), theta[look],
                                      at, r[look], J[look], delta, end[look],
                                      extra=halves[:, None, None] * step)
    # a fall beyond rounding: sqrt(eps) of the loss in the fit's own precision (float32's
    # loss is rounded to 6e-8 of itself: FALL, float64's, would read noise as a fall)
    limit = max(FALL, math.sqrt(torch.finfo(theta.dtype).eps))
    for i in range(k):
        if bool(dead[i]):
            out[i] = dead_text(float(end[i]))
        elif float(gen[i]) > PLATEAU:
            out[i] = kink_gradient_text(float(gen[i]), free[int(along[i])], identifiable)
        elif float(fall[i]) > limit:
            out[i] = kink_fall_text(float(fall[i]), identifiable)
    return out


def generalized_cosine(jr_at, v: torch.Tensor, r: torch.Tensor, J: torch.Tensor,
                       delta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(k,)`` the largest cosine of the smallest element ``g`` of the sampled generalized
    gradient (see the module's docstring), and ``g`` ``(k, F)`` itself, in cosine units:
    ``sum_i lambda_i psi_i J_i`` over the rows ``i`` of the residuals, each row a convex
    combination of its derivatives at the point and at the ``2 PAIRS`` points ``v +- SPREAD
    s u_p`` (``s`` each parameter's scale, ``u_p`` fixed unit directions), column ``j``
    divided by ``|J_j| |psi|``. Rows whose share moves by under ``JUMP`` one way only
    (``share(v+) + share(v-) - 2 share(v)``) are smooth there: their derivative at the
    point stands. ``jr_at(moves (m, F), rows (m,))``: residuals
    ``(m, n)`` and Jacobian ``(m, n, F)`` at ``v[rows] + moves``. Over blocks of fits of
    about ``BLOCK`` values each (the samples of a block are held at once)."""
    k, n, F = J.shape
    size = max(1, BLOCK // max(1, n * F * (2 * PAIRS + 1)))
    parts = [_generalized(lambda mv, rows, s=s: jr_at(mv, rows + s), v[s:s + size],
                          r[s:s + size], J[s:s + size], delta) for s in range(0, k, size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _samples(jr_at, v: torch.Tensor, r: torch.Tensor, J: torch.Tensor, delta: float):
    """The residuals and Jacobians ``(k, n)``, ``(k, n, F)`` at the ``2 PAIRS`` sampled
    points ``v + SPREAD s u_p`` and then ``v - SPREAD s u_p`` (where not finite there: the
    point's own); ``s`` each parameter's scale, ``falls_nearby``'s ``max(|v|, |psi| /
    |J_j|)``."""
    k, n, F = J.shape
    psi = r.clamp(-delta, delta)
    pn = torch.linalg.vector_norm(psi, dim=-1)
    col = torch.linalg.vector_norm(J, dim=-2)
    scale = torch.maximum(v.abs(), torch.where(col > 0, pn[:, None] / col.clamp_min(1e-300),
                                               0.0))
    scale = torch.where(torch.isfinite(scale) & (scale > 0), scale, 1.0)
    draw = torch.randn(PAIRS, F, generator=torch.Generator().manual_seed(1),
                       dtype=torch.float64).to(dtype=J.dtype, device=J.device)
    draw = draw / torch.linalg.vector_norm(draw, dim=-1, keepdim=True)
    rows = torch.arange(k, device=J.device)
    out = []
    with torch.no_grad():
        for u in torch.cat([draw, -draw]):
            rs, Js = jr_at(SPREAD * scale * u, rows)
            ok = torch.isfinite(rs).all(-1) & torch.isfinite(Js).flatten(1).all(-1)
            out.append((torch.where(ok[:, None], rs, r), torch.where(ok[:, None, None], Js, J)))
    return out


def _generalized(jr_at, v, r, J, delta):
    k, n, F = J.shape
    dtype = J.dtype
    psi = r.clamp(-delta, delta)
    pn = torch.linalg.vector_norm(psi, dim=-1).clamp_min(1e-300)         # (k,)
    col = torch.linalg.vector_norm(J, dim=-2)                            # (k, F)
    base = J * psi.unsqueeze(-1)                                         # (k, n, F)
    samples, norms = [], [col]
    for rs, Js in _samples(jr_at, v, r, J, delta):
        samples.append(Js * rs.clamp(-delta, delta).unsqueeze(-1))
        norms.append(torch.linalg.vector_norm(Js, dim=-2))
    # a column with no derivative at the point (a dead unit) that one nearby has: its norm
    D = torch.stack(norms).amax(0)
    D = torch.where(col > 0, col, torch.where(D > 0, D, 1.0))
    # a row on a kink: its share moves one way only (across the kink) along a pair +-u,
    # where a smooth row's moves cancel to second order
    jump = torch.zeros(k, n, dtype=dtype, device=J.device)
    for p in range(PAIRS):
        bent = samples[p] + samples[p + PAIRS] - 2 * base
        jump = torch.maximum(jump, torch.linalg.vector_norm(bent / D.unsqueeze(-2), dim=-1)
                             / pn[:, None])
    a = base.sum(-2) / D                                                 # (k, F)
    R = int(min(KINK_ROWS, n, int((jump > JUMP).sum(-1).max()))) if k else 0
    if R == 0:
        g = a / pn[:, None]
        return g.abs().amax(-1), g
    top, at = jump.topk(R, dim=-1)                                       # (k, R)
    real = (top > JUMP).to(dtype)                                        # padding rows: 0
    pick = at.unsqueeze(-1).expand(-1, -1, F)
    E = torch.stack([base.gather(1, pick)] + [s.gather(1, pick) for s in samples], 2)
    E = E / D[:, None, None, :] * real[:, :, None, None]                 # (k, R, S+1, F)
    a = (a - E[:, :, 0].sum(1)) / pn[:, None]
    E = E / pn[:, None, None, None]
    g = _smallest(a, E)
    return g.abs().amax(-1), g


def on_kinks(jr_at, v: torch.Tensor, r: torch.Tensor, J: torch.Tensor) -> torch.Tensor:
    """``(k, n)`` the data points on a kink of the model: their Jacobian row (over the
    column norms) moves by over ``ROW_JUMP`` one way only along a pair ``+-SPREAD s u_p``
    (the second difference ``J(v+) + J(v-) - 2 J(v)``: a smooth row's is of second order, a
    row whose point a ReLU's break crosses moves on one side alone): the derivative there
    is one side's, and the loss V-shaped, not quadratic, along the break. In blocks, as
    ``generalized_cosine``."""
    k, n, F = J.shape
    size = max(1, BLOCK // max(1, n * F * 2))
    out = []
    for s in range(0, k, size):
        Jb = J[s:s + size]
        Js = [q[1] for q in _samples(lambda mv, rows, s=s: jr_at(mv, rows + s),
                                      v[s:s + size], r[s:s + size], Jb, math.inf)]
        d = torch.stack([torch.linalg.vector_norm(q, dim=-2) for q in [Jb] + Js]).amax(0)
        d = torch.where(d > 0, d, 1.0).unsqueeze(-2)
        jump = torch.zeros(Jb.shape[:2], dtype=J.dtype, device=J.device)
        for p in range(PAIRS):          # one way only along +-u: across a kink
            bent = (Js[p] + Js[p + PAIRS] - 2 * Jb) / d
            jump = torch.maximum(jump, torch.linalg.vector_norm(bent, dim=-1))
        out.append(jump > ROW_JUMP)
    return torch.cat(out) if out else torch.zeros(0, n, dtype=torch.bool, device=J.device)


def one_sided_text(points: list) -> str:
    """The note of a fit with data points on its kinks (``points``: their descriptions):
    its standard errors are left out, as a careful user would want them."""
    where = ", ".join(points[:3]) + (f" and {len(points) - 3} more" if len(points) > 3 else "")
    plural = "s" if len(points) > 1 else ""
    return (f"no standard errors: a kink of the model lies on the data point{plural} {where}, "
            "where its derivative is one-sided and the loss V-shaped, not quadratic (the "
            "Jacobian's errors would be those of one side)")


def _smallest(a: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """``g = a + sum_{r,s} lam_rs E_rs`` of least norm, ``lam_r`` on the simplex for each
    ``r`` (FISTA with restarts, from the point's own derivatives ``lam_r0 = 1``); of the
    iterates, the one of least largest entry. ``a`` ``(k, F)``, ``E`` ``(k, R, S, F)``."""
    k, R, S, F = E.shape
    flat = E.reshape(k, R * S, F)
    L = torch.linalg.matrix_norm(flat, ord=2).square().clamp_min(1e-300)   # (k,)
    lam = torch.zeros(k, R, S, dtype=E.dtype, device=E.device)
    lam[..., 0] = 1.0
    y, t = lam.clone(), 1.0

    def value(w):
        return a + torch.einsum("krs,krsf->kf", w, E)
    best = value(lam)
    best_inf = best.abs().amax(-1)
    prev = best.square().sum(-1)
    mark = prev
    for step in range(1, QP_STEPS + 1):
        g = value(y)
        grad = torch.einsum("kf,krsf->krs", g, E)
        nxt = _simplex(y - grad / L[:, None, None])
        gn = value(nxt)
        f = gn.square().sum(-1)
        inf = gn.abs().amax(-1)
        better = inf < best_inf
        best = torch.where(better[:, None], gn, best)
        best_inf = torch.where(better, inf, best_inf)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        restart = f > prev                       # momentum undone where the value rose
        y = torch.where(restart[:, None, None], nxt,
                        nxt + (t - 1) / t_next * (nxt - lam))
        t = 1.0 if bool(restart.all()) else t_next
        lam, prev = nxt, f
        if step % QP_CHECK == 0:
            # done where decided (well below PLATEAU) or no longer moving
            from .stationary import PLATEAU
            done = (best_inf <= PLATEAU / 4) | (mark - f <= 1e-6 * mark)
            if bool(done.all()):
                break
            mark = f
    return best


def _simplex(w: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of each ``w[..., :]`` on the probability simplex."""
    u, _ = w.sort(-1, descending=True)
    css = u.cumsum(-1) - 1
    ind = torch.arange(1, w.shape[-1] + 1, dtype=w.dtype, device=w.device)
    cond = u - css / ind > 0
    rho = (cond * ind).argmax(-1, keepdim=True)
    tau = css.gather(-1, rho) / (rho + 1).to(w.dtype)
    return (w - tau).clamp_min(0)


def gauss_newton_step(r: torch.Tensor, J: torch.Tensor, delta: float = math.inf
                      ) -> torch.Tensor:
    """``(k, F)`` the Gauss-Newton step ``-J^+ r`` in the parameters (of IRLS's weighted
    problem for huber, as ``stationary.gauss_newton_gain``), by the SVD of the column-scaled
    ``J D^-1`` with singular values below its rounding left out; 0 where not finite."""
    from .stationary import weighted_svd
    with torch.no_grad():
        good, _, d, s, vh, c = weighted_svd(r, J, delta)
        w = torch.where(s > 0, c / s.clamp_min(torch.finfo(s.dtype).tiny), 0.0)
        step = -(vh.transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1) / d
        return torch.where(good[:, None] & torch.isfinite(step), step, 0.0)


def kink_gradient_text(worst: float, name: str, identifiable: bool) -> str:
    """A kinked model's stop whose generalized gradient does not vanish."""
    fix = ("optimizer='auto' (the exact method)" if identifiable else
           "optimizer='lm', other starting values (starts=K)")
    return (f"the loss stopped changing, but not at a minimum: its gradient is still "
            f"{worst:.2g} of its scale (along {name}) on every side of the model's kinks "
            "near this point, where a minimum's has a zero (steps bouncing across a kink, "
            f"or a plateau); try {fix}, a smaller learning rate, or more steps")


def kink_fall_text(fall: float, identifiable: bool) -> str:
    """A kinked model's stop that a short step still improves (``stationary.kink_text``'s
    words, the Gauss-Newton direction among the looks)."""
    fix = ("optimizer='auto' (the exact method)" if identifiable else
           "optimizer='lm' (Gauss-Newton steps), other starting values (starts=K)")
    return (f"the loss stopped changing, but not at a minimum: a short step along its "
            f"gradient, the Gauss-Newton direction or one parameter still lowers it by "
            f"{fall:.2g} of itself (a nearly flat valley, or the model's kinks stalled the "
            f"optimizer); try {fix}, or more steps")


def dead_text(loss: float) -> str:
    """A ReLU model whose units are all inactive at every data point."""
    return (f"a dead network: every ReLU unit is inactive at every data point, so the model "
            f"is a constant (loss {loss:.6g}, a constant fit's) and its gradient vanishes on "
            "a flat region: no fit of the data's shape; try a smaller learning rate (large "
            "steps kill units), other starting values (starts=K), or optimizer='auto'")


def point_name(x: torch.Tensor, j: int) -> str:
    """Data point ``j`` of inputs ``x`` ``(n,)`` or ``(n, d)``, as a message names it."""
    if x.ndim == 1:
        return f"x = {float(x[j]):.6g}"
    return f"{j} (x = ({', '.join(f'{float(v):.4g}' for v in x[j])}))"


def one_sided_rows(prob, tr, theta: torch.Tensor, cov: torch.Tensor, reason, message,
                   held: torch.Tensor) -> torch.Tensor:
    """``fit_many``'s ``stationary.one_sided_note``: the converged fits of a model with kinks
    whose covariance is finite get none (NaN), and the note in their message, where a data
    point lies on a kink (``on_kinks``); ``held`` ``(k, F)``: parameters held on a bound
    (their columns left out). Returns ``cov`` (a copy where changed); ``message`` changes in
    place."""
    from .many_engines import ManyTransformFixedAt
    from .stationary import smooth
    if smooth(prob.model):
        return cov
    has = torch.isfinite(cov).flatten(1).all(-1).cpu().numpy() & \
        np.isin(reason, ("gtol", "ftol", "xtol"))
    rows = np.flatnonzero(has)
    if not rows.size:
        return cov
    idx = torch.as_tensor(rows, device=theta.device)
    at, F = tr.free_at, len(tr.free)
    hold = held[idx]

    def jr(th, rows_, keep):        # residuals and Jacobian at th of the problems rows_
        with torch.no_grad():
            out = prob.jacobian(ManyTransformFixedAt(tr, th))(th[rows_][:, at], rows_)
        return out[:, F], torch.where(keep.unsqueeze(-2), 0.0, out[:, :F].transpose(-1, -2))
    r0, J0 = jr(theta, idx, hold)

    def jr_at(moves, k):
        th = theta.clone()
        th[idx[k][:, None], at] = th[idx[k][:, None], at] + moves
        return jr(th, idx[k], hold[k])
    kinks = on_kinks(jr_at, theta[idx][:, at], r0, J0).cpu().numpy()
    bad = np.flatnonzero(kinks.any(-1))
    if not bad.size:
        return cov
    cov = cov.clone()
    cov[idx[torch.as_tensor(bad, device=idx.device)]] = torch.nan
    for j in bad.tolist():
        i = int(rows[j])
        x = prob.x if prob.shared_x else prob.x[i]
        named = [point_name(x, int(p)) for p in np.flatnonzero(kinks[j])]
        message[i] = f"{message[i]}; {one_sided_text(named)}"
    return cov
