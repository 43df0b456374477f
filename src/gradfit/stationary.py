"""Whether a gradient method's stop is at a stationary point, or on a plateau.

gd, momentum, adam, rmsprop and L-BFGS stop by rules on the loss's change (``ftol``) or the
gradient's norm (``gtol``). Both also fire where the loss is nearly flat without being at
a minimum: ``a*exp(b*x)`` over x up to 1000 from ``b = 0.1`` drifts to ``b < 0``, where the
model is zero at every point but one and the loss hardly moves (adam stopped there "by
ftol" at 279, the minimum being 0). What tells them apart is the gradient relative to its
own scale, as LM's ``gtol`` and IRLS's Huber test measure it: the largest cosine between
the loss's residual weights ``psi(r)`` (``r`` for mse and rmse, ``clip(r, -delta,
delta)`` for huber) and a column of the Jacobian over the free parameters. Measured on
this project's examples, stops at a minimum give at most 5e-6; plateaus 2e-2 to 1, and so
does rmsprop bouncing across a huber minimum with its loss 14% above it. ``PLATEAU`` lies
between. The mae loss has no gradient at its minimum: every stop is looked around
(``falls_nearby``; L-BFGS stopped by ftol 1e-5 to 7e-4 above the exact minimum on six of six
exponential decays with outliers). Models with kinks (not ``smooth``: ReLU sums and ReLU
networks, abs, min, max) stop on kinks with one-sided slopes (the playground's relu:8 by gd
at a cosine of 0.04): ``kink_stops`` judges them, by the cosine of their generalized
gradient (one-sided slopes mixed), the Gauss-Newton direction and a look around, where a
fall of the loss beyond ``FALL`` of itself is no minimum (L-BFGS stopped by ftol on relu:3
fits of a sine with the loss 1e-6 to 4e-4 above a point 1e-5 of a parameter away, 35 of
107 claims). Networks of a smooth activation (tanh, sigmoid, softplus, gelu, silu) are
smooth: they get the tests above.

    >>> import numpy as np, gradfit
    >>> x = np.linspace(0, 1000, 50)
    >>> r = gradfit.fit("a*exp(b*x)", x, 2 * np.exp(0.003 * x), p0={"a": 1, "b": 0.1},
    ...                 optimizer="adam", steps=3000)
    >>> r.converged, r.message.startswith("the loss stopped changing, but not at a minimum")
    (False, True)
"""
from __future__ import annotations

import math
import re

import torch

from .lm_codes import UNDERFLOW, message
from .irls_check import huber_certificate
from .lm import free_residuals_and_jacobian, scaled_svd
from .verdict import underflowed  # noqa: F401  (many_engines takes it from here)

PLATEAU = 1e-3        # a largest cosine above this is not a stationary point
EXACT = 1e-14         # a final loss this small against the start's: an exact fit, a minimum
FLOOR = 1e-24         # ... where the least loss a Gauss-Newton step reaches from there is
                      # this small against it too (residuals of 1e-12 of the data's size)


def plateau_message(problem, final: torch.Tensor, free: tuple[str, ...],
                    first_loss: float | None = None, final_loss: float | None = None
                    ) -> str | None:
    """A message when the point ``final`` is not stationary in the ``free`` parameters
    (see the module's docstring), else None; None too for the mae loss, and for a loss
    fallen to ``EXACT`` times its scale (``_loss_scale``): a loss that cannot be negative,
    at zero, whose residuals left are rounding and their direction means nothing."""
    loss = problem.loss
    if loss.name not in ("mse", "rmse", "huber", "mae") or not free:
        return None
    names = problem.model.param_names
    idx = torch.tensor([names.index(k) for k in free], device=final.device)
    r, jac = free_residuals_and_jacobian(problem, final, idx)
    ys = problem.y if problem.sigma is None else problem.y / problem.sigma
    if final_loss is not None and bool(underflowed(torch.tensor([final_loss]), r[None],
                                                   ys[None])):
        return UNDERFLOW_TEXT
    if final_loss is not None and bool(exact_fit(
            torch.tensor([final_loss]), torch.tensor([_loss_scale(problem, final, first_loss)]),
            loss.name, lambda: gauss_newton_gain(r[None], jac[None], loss.delta if
                                                 loss.name == "huber" else math.inf))[0]):
        return None
    def fall(delta):                # the look around, for this one fit
        with torch.no_grad():
            end = problem.objective(final) if final_loss is None else final_loss
            return float(falls_nearby(lambda th, rows: problem.objective(th), final[None], idx,
                                      r[None], jac[None], delta,
                                      torch.as_tensor([float(end)], dtype=final.dtype))[0])
    if loss.name == "mae":          # no gradient at its minimum: a look around decides
        gain = fall(None)
        return kink_text(gain, mae=True, exact=problem.model.identifiable) \
            if gain > FALL else None
    delta = loss.delta if loss.name == "huber" else float("inf")
    _, cos = huber_certificate(r[None], jac[None], delta)
    worst = float(cos[0])
    exact = problem.model.identifiable
    if not smooth(problem.model):       # kinks: kink_stops judges it, as fit_many does
        from .kink_stops import kink_verdicts

        def jr_at(moves, rows):
            out = [free_residuals_and_jacobian(problem, final.index_put(
                (idx,), final[idx] + m), idx) for m in moves]
            return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])
        end = problem.objective(final) if final_loss is None else final_loss
        with torch.no_grad():
            return kink_verdicts(lambda th, rows: problem.objective(th), jr_at, final[None],
                                 idx, r[None], jac[None], delta,
                                 torch.as_tensor([float(end)], dtype=final.dtype,
                                                 device=final.device),
                                 cos, free, exact)[0]
    if worst <= PLATEAU:
        gain = float(gauss_newton_gain(r[None], jac[None], delta)[0])
        return valley_text(gain, exact) if gain > VALLEY else None
    with torch.no_grad():
        col = (jac * r.clamp(-delta, delta).unsqueeze(-1)).sum(0).abs() / \
            torch.linalg.vector_norm(jac, dim=0).clamp_min(1e-300)
    return plateau_text(worst, free[int(col.argmax())], exact)


UNDERFLOW_TEXT = message(UNDERFLOW, {})


def one_sided_note(problem, final: torch.Tensor, free: tuple[str, ...]) -> str | None:
    """For a converged fit with standard errors of a model with kinks (``fit`` calls it
    after its covariance, as ``fit_many`` marks its own): a note where a data point lies
    on a kink (``kink_stops.on_kinks``: a ReLU's break on the point), whose derivative
    there is one side's and whose loss is V-shaped along the break, so that the errors of
    the Jacobian at hand are one side's (3-12% off central differences on a relu:2 fit,
    itself no quadratic); the fit then gives none (``fit_many``: NaN), the note saying why.
    None for a smooth model, or where no point lies on a kink."""
    if smooth(problem.model) or not free:
        return None
    from .kink_stops import on_kinks, one_sided_text, point_name
    names = problem.model.param_names
    idx = torch.tensor([names.index(k) for k in free], device=final.device)
    r, jac = free_residuals_and_jacobian(problem, final, idx)

    def jr_at(moves, rows):
        out = [free_residuals_and_jacobian(problem, final.index_put(
            (idx,), final[idx] + m), idx) for m in moves]
        return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])
    kinks = on_kinks(jr_at, final[idx][None], r[None], jac[None])[0]
    if not bool(kinks.any()):
        return None
    return one_sided_text([point_name(problem.x, int(j)) for j in kinks.nonzero().flatten()])


KINKS = re.compile(r"\b(abs|relu|min|max)\s*\(")


SMOOTH_ACTIVATIONS = frozenset({"tanh", "sigmoid", "softplus", "gelu", "silu", "identity"})


def smooth(model) -> bool:
    """Whether the model is smooth in its parameters, so that a minimum has no gradient:
    not a ReLU sum or ReLU network nor an expression with ``abs``, ``relu``, ``min`` or
    ``max``, whose minima can sit on a kink with one-sided slopes (as mae's do). A network
    of a smooth activation (tanh, sigmoid, softplus, gelu, silu) is smooth: its stops get
    the smooth models' tests (it had been looked at as if kinked, and adam's stops on its
    flat valleys, 2e-4 to 3e-2 above a point L-BFGS reached from there, were converged)."""
    from .models import MLPModel
    if isinstance(model, MLPModel):
        return model.activation in SMOOTH_ACTIVATIONS
    if not model.identifiable:
        return False
    source = getattr(getattr(model, "expression", None), "source", None)
    return source is None or KINKS.search(source) is None


FALL = math.sqrt(torch.finfo(torch.float64).eps)   # a fall of the loss, relative, that is
                                                    # no rounding: the point is no minimum
PROBES = 53             # steps 1, 1/2, ..., 2^-52 along the (scaled) descent direction
AXIS_PROBES = 13        # ... and 4^-1, ..., 4^-13 of each parameter's scale, both ways
RANDOM = 64             # ... and this many directions at random, at 2^-7, ..., 2^-27
LOOK_VALUES = 2 ** 22   # model values times parameters evaluated at once by that look


def falls_nearby(objective, theta: torch.Tensor, at: torch.Tensor, r: torch.Tensor,
                 jac: torch.Tensor, delta: float | None, loss: torch.Tensor,
                 extra: torch.Tensor | None = None) -> torch.Tensor:
    """``(k,)`` the largest fall of the loss, relative to ``loss`` ``(k,)``, at points near
    ``theta`` ``(k, P)`` in its free parameters ``at`` (``F``): along the descent direction
    of the residual weights ``psi = clip(r, -delta, delta)`` (``sign(r)`` for mae: ``delta``
    None; ``r`` ``(k, n)``, Jacobian ``jac`` ``(k, n, F)``) in the scaled coordinates
    ``theta_j / s_j``, ``s_j = max(|theta_j|, |psi| / |J_j|)`` (``|r|`` for mae), at
    ``2^-i`` of a unit step, along each axis, ``+-4^-i s_j``, and along ``RANDOM`` fixed
    directions drawn at random. A model with kinks (ReLU sums, abs, min, max) stops on them
    with one-sided slopes, so its gradient need not vanish at a minimum; there no such point
    is lower (but for rounding), elsewhere one is. ``objective(thetas (m, P), rows (m,))``
    gives the loss of the problems ``rows`` (``0..k-1``) at ``thetas``. ``extra`` ``(m, k,
    F)``: more moves to look at (``kink_stops``: along the Gauss-Newton direction)."""
    k, F = theta.shape[0], at.numel()
    psi = r.sign() if delta is None else r.clamp(-delta, delta)
    g = (jac * psi.unsqueeze(-1)).sum(-2)                           # (k, F), a half gradient
    col = torch.linalg.vector_norm(jac, dim=-2)
    v = theta[:, at]
    rn = torch.linalg.vector_norm(r if delta is None else psi, dim=-1, keepdim=True)
    scale = torch.maximum(v.abs(), torch.where(col > 0, rn / col.clamp_min(1e-300), 0.0))
    scale = torch.where(torch.isfinite(scale) & (scale > 0), scale, 1.0)
    u = -g * scale
    u = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True).clamp_min(1e-300) * scale
    halves = 0.5 ** torch.arange(PROBES, dtype=theta.dtype, device=theta.device)
    steps = [halves[:, None, None] * u]                             # (PROBES, k, F)
    eye = torch.eye(F, dtype=theta.dtype, device=theta.device)
    quarters = 0.25 ** torch.arange(1, AXIS_PROBES + 1, dtype=theta.dtype, device=theta.device)
    for sign in (1.0, -1.0):
        axis = sign * quarters[:, None, None, None] * eye[None, :, None, :] * scale[None, None]
        steps.append(axis.reshape(-1, k, F))                        # (13 F, k, F)
    # at a kink the way down may mix parameters (a ReLU's slope and offset together):
    # directions drawn at random (the same every time), 2^-7 to 2^-27 of a unit step
    draw = torch.randn(RANDOM, F, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64).to(dtype=theta.dtype, device=theta.device)
    draw = draw / torch.linalg.vector_norm(draw, dim=-1, keepdim=True)
    lengths = 2.0 ** -torch.arange(7, 28, 4, dtype=theta.dtype, device=theta.device)
    rand = lengths[:, None, None, None] * draw[None, :, None, :] * scale[None, None]
    steps.append(rand.reshape(-1, k, F))
    if delta is None:
        steps += _along_kinks(r, jac, scale, halves)
    if extra is not None:
        steps.append(extra.to(theta.dtype))
    return fall_at(objective, theta, at, torch.cat(steps), loss, r.shape[-1])


def fall_at(objective, theta: torch.Tensor, at: torch.Tensor, moves: torch.Tensor,
            loss: torch.Tensor, n: int) -> torch.Tensor:
    """``(k,)`` the largest fall of the loss, relative to ``loss`` ``(k,)``, at the points
    ``theta + moves`` (``moves`` ``(m, k, F)`` in the free parameters ``at``; ``n`` data
    points): ``falls_nearby``'s evaluation, for any set of moves."""
    return falls_at(objective, theta, at, moves, loss, n).amax(0)


def falls_at(objective, theta: torch.Tensor, at: torch.Tensor, moves: torch.Tensor,
             loss: torch.Tensor, n: int) -> torch.Tensor:
    """``(m, k)`` the fall of the loss at each point ``theta + moves`` (``fall_at``'s), 0
    where not finite."""
    k = theta.shape[0]
    pts = theta.expand(moves.shape[0], k, -1).clone()
    pts[..., at] = pts[..., at] + moves
    rows = torch.arange(k, device=theta.device).expand(moves.shape[0], k).reshape(-1)
    pts = pts.reshape(-1, theta.shape[-1])
    # hundreds of points to look at, each over every data point: in blocks of about
    # LOOK_VALUES model values times parameters (a ReLU sum's terms are as many as its
    # units), so that memory stays bounded on a million points or a wide network
    size = max(1, LOOK_VALUES // max(1, n * theta.shape[-1]))
    vals = torch.cat([objective(pts[i:i + size], rows[i:i + size])
                      for i in range(0, pts.shape[0], size)]).reshape(-1, k)
    fall = (loss - torch.where(torch.isfinite(vals), vals, torch.inf)) / \
        loss.abs().clamp_min(1e-300)
    return torch.where(torch.isfinite(fall) & (loss > 0), fall, 0.0)


def _along_kinks(r: torch.Tensor, jac: torch.Tensor, scale: torch.Tensor,
                 halves: torch.Tensor) -> list:
    """The mae's ways down along its kinks: where the ``m`` residuals nearest zero (the set
    Z, ``m`` = 1, F/2 and F-1: a kink, a face, an edge of a vertex) vanish, the MAE is
    smooth along the surface ``r_Z = 0`` and falls along ``-P g_N``, ``g_N = J_N^T
    sign(r_N)`` projected on the null space of ``J_Z`` (in the scaled coordinates). A stop
    on one kink away from a vertex rises along the gradient, every axis and nearly every
    random direction (each crosses the kink), and falls along that one line (L-BFGS by mae
    on an exponential decay: 2.4e-4 above the minimum, which no other look found).
    ``halves`` ``(s,)``: the steps along each, as the gradient's."""
    k, n, F = jac.shape
    if F < 2:
        return []
    a = torch.where((jac != 0).any(-1), r.abs(), torch.inf)         # a point moved by theta
    order = a.argsort(-1)
    js = jac * scale.unsqueeze(-2)
    out = []
    for m in sorted({1, F // 2, F - 1} & set(range(1, min(F, n)))):   # an edge, a face...
        z = order[:, :m]
        jz = js.gather(1, z.unsqueeze(-1).expand(-1, -1, F))          # (k, m, F)
        sign = r.sign().scatter(1, z, 0.0)
        g = (js * sign.unsqueeze(-1)).sum(-2)                        # (k, F)
        with torch.no_grad():
            jzt = torch.where(torch.isfinite(jz), jz, 0.0).transpose(-1, -2)
            g = torch.where(torch.isfinite(g), g, 0.0)
            p = g - (jzt @ (torch.linalg.pinv(jzt) @ g.unsqueeze(-1))).squeeze(-1)
        u = -p / torch.linalg.vector_norm(p, dim=-1, keepdim=True).clamp_min(1e-300) * scale
        out.append(halves[:, None, None] * u)
    return out


VALLEY = 1e-5          # a Gauss-Newton gain, relative, that a stop's small cosine still
                       # leaves: a long flat valley, not a minimum


def weighted_svd(r: torch.Tensor, jac: torch.Tensor, delta: float = math.inf):
    """The SVD of the column-scaled Jacobian of the problems' residuals ``r`` ``(k, n)``
    (``lm.scaled_svd``), of IRLS's weighted problem for huber (``delta`` finite: weights
    ``sqrt(min(1, delta/|r|))`` on ``r`` and ``J``), rows with a value not finite zeroed:
    ``(good, r, d, s, vh, c)``, ``d`` the column norms (1 where a column is 0)."""
    if math.isfinite(delta):
        w = (delta / r.abs().clamp_min(1e-300)).clamp(max=1.0).sqrt()
        r, jac = r * w, jac * w.unsqueeze(-1)
    with torch.no_grad():
        good = torch.isfinite(jac).flatten(1).all(-1) & torch.isfinite(r).all(-1)
        J, res = torch.where(good[:, None, None], jac, 0.0), torch.where(good[:, None], r, 0.0)
        d = torch.linalg.vector_norm(J, dim=-2)
        d = torch.where(d > 0, d, 1.0)
        s, vh, c = scaled_svd(J, d, res)
    return good, res, d, s, vh, c


def gauss_newton_gain(r: torch.Tensor, jac: torch.Tensor,
                      delta: float = math.inf) -> torch.Tensor:
    """``(k,)`` the fall of ``S = |r|^2``, relative to it, that a Gauss-Newton step predicts
    (``|U^T r|^2 / |r|^2`` over the singular values of the column-scaled Jacobian above its
    rounding): 0 exactly where ``J^T r = 0``, and near a minimum the loss's own excess over
    it, whatever the conditioning. The cosine test is not: an L-BFGS stop on a dexp's flat
    valley had a cosine of 1e-7 with the loss 0.5% above the minimum LM reaches from there
    (Gauss-Newton gain 5e-3). For huber (``delta`` finite), the same of IRLS's weighted
    problem, weights ``w = min(1, delta/|r|)`` on ``r`` and ``J``: its gradient is the Huber
    loss's, ``sum psi(r) J``, so it too is 0 exactly at a stationary point."""
    with torch.no_grad():
        good, res, _, s, _, c = weighted_svd(r, jac, delta)
        pred = torch.where(s > 0, c, 0.0).square().sum(-1)
        rn2 = res.square().sum(-1)
        return torch.where(good & (rn2 > 0), pred / rn2.clamp_min(1e-300), 0.0)


def valley_text(gain: float, exact: bool = True) -> str:
    """``exact``: the model is identifiable, and auto fits it by an exact method (a
    flexible model's auto is L-BFGS from several starts: LM is the Gauss-Newton one)."""
    fix = "optimizer='auto' (the exact method)" if exact else \
        "optimizer='lm' (Gauss-Newton steps)"
    return (f"the loss stopped changing, but not at a minimum: a Gauss-Newton step still "
            f"predicts a fall of {gain:.2g} of it (a long, nearly flat valley the gradient "
            f"hardly sees); try {fix}, or more steps")


def kink_text(fall: float, mae: bool = False, exact: bool = False) -> str:
    """The message of a stop on kinks (of the model, or of the mae loss) that a short step
    still improves; ``exact``: optimizer='auto' would fit it exactly (IRLS, for mae with an
    identifiable model; a flexible model's auto is L-BFGS)."""
    what = "mae's kinks" if mae else "the model's kinks"
    fix = ("optimizer='auto' (IRLS, the exact method for mae)" if exact
           else "other starting values, starts=K")
    along = "its gradient, a kink or one parameter" if mae else \
        "its gradient or along one parameter"
    return (f"the loss stopped changing, but not at a minimum: a short step along {along} "
            f"still lowers it by {fall:.2g} of itself "
            f"({what} stalled the optimizer); try {fix}, or more steps")


def plateau_text(worst: float, name: str, exact: bool = True) -> str:
    """The message of a stop that is not stationary (``fit`` and ``fit_many`` alike)."""
    fix = "optimizer='auto' (the exact method)" if exact else \
        "optimizer='lm' (Gauss-Newton steps)"
    return (f"the loss stopped changing, but not at a minimum: its gradient is still "
            f"{worst:.2g} of its scale (along {name}), where a minimum has none (a plateau "
            "where the model's derivatives nearly vanish, or steps bouncing across the "
            f"minimum); try {fix}, a smaller learning rate, other starting values, or "
            "rescaled x")


def exact_fit(end: torch.Tensor, scale: torch.Tensor, loss: str, gain) -> torch.Tensor:
    """``(k,)`` True where a fit's loss ``end`` fell to ``EXACT`` of its ``scale``
    (``_loss_scale``) and, but for mae, the least loss a Gauss-Newton step predicts from
    there (``gain()``: ``gauss_newton_gain``, asked only then) is below ``FLOOR`` of it: the
    data are fitted exactly, the residuals left are the optimizer's own or rounding, and
    their direction means nothing. A loss small against the data's size alone is no exact
    fit: data with noise of 1e-9 have a minimum of about 1e-18 that adam stopped 0.8% above,
    its cosine never looked at."""
    small = torch.isfinite(scale) & (scale > 0) & (end <= EXACT * scale)
    if loss == "mae" or not bool(small.any()):
        return small
    least = end * (1 - gain().to(end.device, end.dtype))
    return small & (least <= FLOOR * scale)


ROUNDINGS = 16        # residuals of this many roundings of each data value: rounding


def rounding_loss(problem) -> float:
    """The loss of residuals of ``ROUNDINGS`` roundings of each data value (``y / sigma``):
    a loss this small is as exact as the data's precision can say."""
    with torch.no_grad():
        yw = problem.y if problem.sigma is None else problem.y / problem.sigma
        at = ROUNDINGS * torch.finfo(yw.dtype).eps * yw.abs()
        return float(problem.loss.reduce(at, problem.loss.delta))


def rounding_losses(prob, idx: torch.Tensor) -> torch.Tensor:
    """``rounding_loss`` of the problems ``idx`` of a ``ManyProblem`` ``(k,)``."""
    with torch.no_grad():
        ys = prob.y[idx] if prob.sigma is None else prob.y[idx] / prob.sigma[idx]
        return prob.reduce(ROUNDINGS * torch.finfo(ys.dtype).eps * ys.abs(), idx)


def loss_scale(zero: torch.Tensor, first: torch.Tensor, rounding: torch.Tensor) -> torch.Tensor:
    """``(k,)``: the smaller of the loss at all-zero parameters and at the start (the
    start's can be astronomic: ``exp(0.1 * 1000)``), each counted where finite and above
    ``rounding`` (``rounding_loss``): a start already at the minimum of exact data has a
    loss of rounding, which is no scale (a quadratic of y ~ 1e9 started at its exact
    parameters: its rounding, judged against itself, had failed as "not at a minimum");
    inf where neither counts."""
    found = [torch.where(torch.isfinite(s) & (s > rounding), s, torch.inf)
             for s in (zero, first)]
    return torch.minimum(*found)


def _loss_scale(problem, final: torch.Tensor, first_loss: float | None) -> float:
    """``loss_scale`` for one fit (0 where neither counts), as ``verdict.judge`` scales it."""
    with torch.no_grad():
        zero = float(problem.objective(torch.zeros_like(final)))
    first = math.inf if first_loss is None else first_loss
    found = float(loss_scale(torch.tensor([zero]), torch.tensor([first]),
                             torch.tensor([rounding_loss(problem)]))[0])
    return found if math.isfinite(found) else 0.0
