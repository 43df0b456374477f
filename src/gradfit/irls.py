"""The minimum of the MAE and Huber losses: iteratively reweighted least squares (exact for
models linear in their parameters, where both losses are convex; a local one otherwise).

Gradient descent on the MAE only circles its minimum (its gradient does not shrink there).
IRLS reaches it. Each step majorises the loss at the current residuals ``r_k`` by a weighted
sum of squares and minimises that by Gauss-Newton steps (exact at once for linear models):

- mae:   ``|r| <= r^2 / (2 |r_k|) + |r_k| / 2``          weights ``w = 1 / max(|r_k|, eps)``
- huber: ``h(r) <= w r^2 / 2 + const``                  weights ``w = min(1, delta / |r_k|)``

so the loss never rises (a majorise-minimise method). The minimum-MAE fit of a model with P
parameters passes through P of the points (a vertex of the linear programme, for models
linear in their parameters); once the weights have singled them out, a *vertex step* solves
``r_i = 0`` on those P points and is kept when it lowers the MAE. For models linear in their
parameters the result is the linear-programming optimum. Where the edge walk from there
(``mae_vertex``) certifies no vertex, the minimum may lie between vertices (a nonlinear
model's curve through fewer than P points): ``mae_edge`` solves for it by Newton's method.
Near a minimum IRLS converges linearly, at a rate that can be close to 1; an mae step that
gains little is stretched along its line while the MAE keeps falling.

    >>> import gradfit
    >>> d = gradfit.lesson_data()
    >>> r = gradfit.fit("a*x^2 + b*x + c", d.x, d.y, loss="mae", optimizer="irls")
    >>> [round(v, 3) for v in r.params.values()], round(r.loss, 4)
    ([2.614, 1.337, 0.564], 0.9859)
"""
from __future__ import annotations

import math

import torch

from .batch_lm import RUNAWAY, RUNAWAY_STEPS as LOOK_STEPS, runs_away
from .batch_lm import message as lm_message
from .lm import problem_residuals_and_jacobian, residuals_and_jacobian, scaled_svd
from .losses import LOSSES, check_method
from .stepper import Stepper
from .irls_check import (HUBER_ULPS, KINK_ULPS, ZERO, certify, minimum_text, no_scale,
                         rounding_level, uncertified_text)
from .mae_edge import edge_minimum
from .mae_vertex import descend

EXCHANGES = 200         # edges of the MAE's polytope walked from a vertex, at most
STRETCH_BELOW = 1e-3    # an mae step that gains less than this goes on along its line
STRETCHES = 12          # ... up to 2^STRETCHES times as far
VERTEX_HALVINGS = 4      # a vertex's Newton step halved more often: no vertex near
VERTEX_ULPS = 4          # interpolated residuals this many of their roundings: exact
SHORT_STEP = 2.0 ** -8   # a Gauss-Newton step halved below this ends the solve
STALL = 1e-6             # the loss fell by less than this over LOOK_STEPS steps: stalled
STALLED = (f"the loss fell by less than {STALL:g} of itself over {LOOK_STEPS} steps "
           "(stalled)")
GAIN_FLOOR = 1e-15       # a Gauss-Newton step gaining less (relatively) ends the solve
EDGE_RETRY = 16         # checks with the same refused points before an edge is tried again

OPTIONS = {
    "ftol": 1e-14,        # stop when a step lowers the loss by less than this, relatively
    "inner_steps": 50,    # Gauss-Newton steps per weighted least-squares solve
}


class _Weighted:
    """A problem's residuals times ``sqrt(w)``: what LM minimises inside one IRLS step."""

    loss = LOSSES["mse"]

    def __init__(self, problem, root_w: torch.Tensor, rows: torch.Tensor | None = None):
        self.base, self.root_w, self.rows = problem, root_w, rows
        self.y = problem.y if rows is None else problem.y[rows]
        base_sigma = problem.sigma if problem.sigma is not None else torch.ones_like(problem.y)
        sigma = base_sigma if rows is None else base_sigma[rows]
        self.sigma = sigma / root_w

    def residuals(self, theta):
        r = self.base.residuals(theta)
        if self.rows is not None:
            r = r[..., self.rows]
        return r * self.root_w

    def jacobian(self, theta):
        """The weighted residuals and their exact Jacobian (``lm``'s fastest exact way)."""
        base = self.base if self.rows is None else self.base.rows(self.rows)
        r, jac = problem_residuals_and_jacobian(base, theta)
        return r * self.root_w, jac * self.root_w.unsqueeze(-1)

    @property
    def n(self):
        return self.y.shape[0]


def _gauss_newton(residuals, theta0: torch.Tensor, steps: int, halvings: int = 33,
                  jacobian=None, floor: float = 0.0) -> torch.Tensor:
    """Minimise ``sum residuals(theta)^2`` by Gauss-Newton steps with step halving (the
    least-squares solve of ``J delta = -r`` by SVD, at most ``halvings`` halvings a step);
    exact in one step for linear models. It stops when a step stops lowering the sum, or
    is at the rounding level of the parameters, or the sum is at most ``floor``.
    ``jacobian(theta) -> (r, J)``: by default autograd on ``residuals``."""
    jacobian = jacobian or (lambda t: residuals_and_jacobian(residuals, t))
    theta = theta0.detach().clone()
    r = residuals(theta).detach()
    ss = float(r.square().sum())
    eps = torch.finfo(theta.dtype).eps
    for _ in range(steps):
        if ss <= floor:
            break
        _, jac = jacobian(theta)
        if not bool(torch.isfinite(jac).all() & torch.isfinite(r).all()):
            break                                   # no step from here (batch_irls too)
        d = torch.linalg.vector_norm(jac, dim=-2).clamp_min(torch.finfo(jac.dtype).tiny)
        sv, vh, c = scaled_svd(jac, d, r)          # (guards against subnormal slowness)
        delta = -(vh.transpose(-1, -2) @ torch.where(sv > 0, c / sv.clamp_min(1e-300), 0.0)) / d
        if not bool(torch.isfinite(delta).all()):
            break
        # a step at the rounding level of the parameters: nothing left to gain
        if float(torch.linalg.vector_norm(delta)) <= 4 * eps * float(torch.linalg.vector_norm(theta)):
            break
        # ... or a predicted gain (|U^T r|^2 over the kept singular values) below the
        # smallest that counts: halving such a step (33 times) would only confirm it
        if float(torch.where(sv > 0, c, 0.0).square().sum()) <= GAIN_FLOOR * ss:
            break
        t = 1.0
        for _ in range(halvings + 1):
            trial = theta + t * delta
            with torch.no_grad():
                r_new = residuals(trial)
            ss_new = float(r_new.square().sum())
            if ss_new <= ss:
                break
            t *= 0.5
        else:
            break
        # a step halved to SHORT_STEP or less: Gauss-Newton models this weighted problem
        # poorly here (a long curved valley); the next reweighting changes it anyway
        done = ss - ss_new <= GAIN_FLOOR * ss or t < SHORT_STEP
        theta, r, ss = trial, r_new, ss_new
        if done:
            break
    return theta


class IRLS(Stepper):
    """The ``irls`` stepper (mae, huber); see the module's docstring."""

    own_stopping = True     # the fit loop leaves ftol/gtol to IRLS's own rule
    has_lr = False

    def __init__(self, problem, theta: torch.Tensor, *, options: dict):
        check_method("irls", problem.loss)
        self.problem, self.theta = problem, theta
        self.ftol, self.inner = float(options["ftol"]), int(options["inner_steps"])
        self.eps = self.eps_min = None
        self._refused = None        # the points of the last vertex that was not certified
        self._waited = 0            # checks since, with the same points
        self._taken = 0             # steps that moved, and the last look at |theta|, loss
        self._ref = None

    def _loss_and_grad(self, theta: torch.Tensor) -> tuple[float, float]:
        t = theta.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            loss = self.problem.objective(t)
            (g,) = torch.autograd.grad(loss, t)
        # squared as it is (not grad_norm): a gradient past 1e154 at the start (exp(700) of
        # a*exp(b*x) over x to 1000) is a model overflowing there, and its advice says so
        return loss.item(), torch.linalg.vector_norm(g).item()

    def _jacobian(self, theta: torch.Tensor):
        return problem_residuals_and_jacobian(self.problem, theta)

    def _objective(self, theta: torch.Tensor) -> float:
        with torch.no_grad():
            value = self.problem.objective(theta).item()
        return value if math.isfinite(value) else math.inf

    def _weights(self, r: torch.Tensor) -> torch.Tensor:
        a = r.abs()
        if self.problem.loss.name == "huber":
            return torch.clamp(self.problem.loss.delta / a.clamp_min(1e-300), max=1.0)
        if self.eps is None:        # start smooth: a floor at the typical residual
            scale = float(a.median()) or float(a.max()) or 1.0
            self.eps, self.eps_min, self.eps_start = scale, 1e-12 * scale, scale
        return 1.0 / a.clamp_min(self.eps)

    def step(self) -> tuple[float, float]:
        """One recorded step: re-weight and solve until the loss falls (sharpening the
        smoothing of the MAE as needed), or stop at the minimum."""
        loss, gnorm = self._loss_and_grad(self.theta)
        mae = self.problem.loss.name == "mae"
        why = f"the loss stopped falling (relative change at most ftol={self.ftol:g})"
        while True:
            with torch.no_grad():
                r = self.problem.residuals(self.theta.detach())
            weighted = _Weighted(self.problem, self._weights(r).sqrt())
            candidate = _gauss_newton(weighted.residuals, self.theta, self.inner,
                                      jacobian=weighted.jacobian)
            new = self._objective(candidate)
            gain = (loss - new) / abs(loss) if loss else 0.0
            sharpen = mae and self.eps > self.eps_min
            if gain > self.ftol:
                if mae and gain < STRETCH_BELOW and not _bounded(self.problem):
                    candidate, new = self._stretch(candidate, new)
                self._move(candidate)
                look = self._look(new)
                if look == "away":
                    self.stop = ("failed", lm_message(RUNAWAY, {}))
                    return loss, gnorm
                if sharpen and gain < 1e-3:
                    self.eps = max(self.eps * 0.1, self.eps_min)
                if mae and self.eps < 1e-4 * self.eps_start and self._certified_vertex():
                    # the certificate of the point IRLS ends at, whichever way it got there
                    self.stop = self._certified(("ftol", minimum_text(
                        "mae", self._linear, "zero lies in the MAE's subgradient there "
                        "(certified)")))
                    return loss, gnorm
                if look != "stalled" or sharpen:
                    return loss, gnorm
                why = STALLED               # on to the end, as if the loss had stopped
                break
            if sharpen:
                self.eps = max(self.eps * 0.1, self.eps_min)     # sharpen the smoothing
                continue
            if new < loss:
                self._move(candidate)
            break
        if mae:
            self._polish(min(new, loss))
            _, certified = self.descend(self.theta.detach())  # on along the edges, if lower
            if not certified:
                self._edge()                      # or a minimum between vertices
            self.stop = ("ftol", why + ": " + minimum_text(
                "mae", self._linear, "zero lies in the MAE's subgradient there (certified)"))
        else:
            self.stop = self._huber_newton()
        self.stop = self._certified(self.stop)
        return loss, gnorm

    def _look(self, loss: float) -> str | None:
        """Every LOOK_STEPS steps that moved (now at ``loss``): "away" where the parameters
        run off (``batch_lm.runs_away``), "stalled" where the loss fell by less than
        STALL of itself since the last look (a crawl towards a limit, e.g. a peak's width
        shrinking to 0 on an outlier: IRLS's gains stay above ftol for ever), else None."""
        self._taken += 1
        norm = float(torch.linalg.vector_norm(self.theta.detach()))
        if self._ref is None:
            self._ref = (norm, loss)
            return None
        if self._taken % LOOK_STEPS:
            return None
        ref_norm, ref_loss = self._ref
        self._ref = (norm, loss)
        if bool(runs_away(norm, ref_norm, loss, ref_loss)):
            return "away"
        return "stalled" if loss >= (1 - STALL) * ref_loss else None

    def _stretch(self, candidate: torch.Tensor, value: float) -> tuple[torch.Tensor, float]:
        """The best of ``theta + a (candidate - theta)``, ``a = 1, 2, 4, ..., 2^STRETCHES``,
        and its loss.

        Near a minimum IRLS converges linearly, at a rate that can be close to 1 (0.97 a
        step for a Gaussian by mae, hundreds of steps), its steps lined up: going on along
        the last step, as far as the MAE keeps falling, gains those steps at once. Not
        within bounds: along a direction the data do not determine, the stretched steps
        would carry a parameter onto its bound, where it would count as held."""
        base = self.theta.detach()
        step = candidate - base
        best, out = value, candidate
        for k in range(1, STRETCHES + 1):
            trial = base + (2.0 ** k) * step
            v = self._objective(trial)
            if not v < best:
                break
            best, out = v, trial
        return out, best

    @property
    def _linear(self) -> bool:
        """Whether the model is linear in its parameters: the loss is convex, a certified
        point is its minimum (else a local one)."""
        return bool(getattr(self.problem.model, "linear_in_params", False))

    def _level(self, theta: torch.Tensor, r: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
        """``irls_check.rounding_level`` of the residuals ``r`` ``(n,)`` at ``theta``."""
        return rounding_level(r[None], jac[None], theta[None], _ys(self.problem)[None])[0]

    def _certified(self, stop: tuple[str, str]) -> tuple[str, str]:
        """``stop`` if a first-order test (``irls_check``) certifies the point, else
        "failed" saying how far from optimal it is."""
        prob = self.problem
        if prob.loss.name == "mae":
            ys = _ys(prob)[None]
            self._move(onto_kinks(lambda u: tuple(v[None] for v in self._jacobian(u[0])),
                                  lambda u: u.new_tensor([self._objective(u[0])]),
                                  self.theta.detach()[None], ys)[0])
        theta = self.theta.detach()
        r, jac = self._jacobian(theta)
        ok, gap = certify(prob.loss, r[None], jac[None],
                          level=self._level(theta, r, jac)[None])
        if bool(ok[0]):
            return stop
        return "failed", uncertified_text(self.problem.loss.name, float(gap[0]))

    def _huber_newton(self, iterations: int = 60) -> tuple[str, str]:
        """Newton steps on the Huber loss, to the parameters' rounding level.

        With the quadratic rows ``Q`` (``|r| <= delta``) and the linear ones ``L`` (signs
        ``s``) held, the loss is ``sum_Q r^2/2 + delta sum_L s r`` (+ const), of gradient
        ``g = J^T psi`` (``psi = clip(r, -delta, delta)``) and Hessian ``J_Q^T J_Q + sum_i
        psi_i d2 r_i``. The step solves ``H d = -g`` with that whole Hessian (the second
        term by ``residual_curvature``) where it is positive definite, else with
        Gauss-Newton's ``J_Q^T J_Q`` alone: exact for a linear model once the partition is
        right, but for a nonlinear one whose residuals curve it (a Gaussian's width and
        centre, residuals 1e-3) Gauss-Newton's step overshoots along a direction ``J``
        barely sees, and the halved steps stop at the rounding level of the loss short of
        the minimum (a cosine 1.8e-5, where Newton's one step leaves 3e-12). Steps are kept
        while they lower the loss, or raise it by no more than its rounding level
        (``huber_slack``: far from zero, the loss cannot tell the last steps apart), halved
        otherwise, and stop once they stop shrinking."""
        delta, last = self.problem.loss.delta, None
        best = self._objective(self.theta)
        r, jac = self._jacobian(self.theta.detach())
        slack = float(huber_slack(r[None], self._level(self.theta.detach(), r, jac)[None],
                                  delta)[0])
        curved = not (self._linear and not _bounded(self.problem))
        for _ in range(iterations):
            r, jac = self._jacobian(self.theta.detach())
            quad = r.abs() <= delta
            g = jac[quad].transpose(0, 1) @ r[quad] + delta * (
                jac[~quad].transpose(0, 1) @ torch.sign(r[~quad]))
            jq = jac[quad]
            d = torch.linalg.vector_norm(jq, dim=0)
            d = torch.where(d > 0, d, torch.ones_like(d))
            h = (jq / d).transpose(0, 1) @ (jq / d)
            if not bool(torch.isfinite(h).all() & torch.isfinite(g / d).all()):
                break                       # the Jacobian overflowed: no step (batch_irls)
            step = None
            if curved:
                c = residual_curvature(lambda u: self._jacobian(u[0])[1][None],
                                       self.theta.detach()[None], r.clamp(-delta, delta)[None],
                                       d[None])[0]
                chol, info = torch.linalg.cholesky_ex(h + c)
                if int(info) == 0 and bool(torch.isfinite(chol).all()):
                    step = -torch.cholesky_solve((g / d).unsqueeze(-1), chol)[:, 0] / d
                    step = step if bool(torch.isfinite(step).all()) else None
            if step is None:
                step = -gauss_newton_solve(h[None], (g / d)[None])[0] / d
            size = float(torch.linalg.vector_norm(step))
            scale = float(torch.linalg.vector_norm(self.theta.detach()))
            if not math.isfinite(size) or size <= 4 * torch.finfo(step.dtype).eps * max(scale, 1e-300):
                break
            if last is not None and size > 0.9 * last and size <= 1e-10 * max(scale, 1e-300):
                break                   # no longer shrinking, at the rounding level
            t = 1.0
            while t > 1e-6:      # the loss may not tell steps at its rounding level apart
                trial = self.theta.detach() + t * step
                value = self._objective(trial)
                if value <= best * (1 + 16 * torch.finfo(step.dtype).eps) + slack:
                    break
                t *= 0.5
            else:
                break
            self._move(trial)
            best, last = min(best, value), size
        return ("xtol", minimum_text("huber", self._linear, "Newton steps on the Huber loss "
                                     "reached the rounding level of the parameters"))

    def _certified_vertex(self) -> bool:
        """Move to the vertex through the P points nearest the curve if it is optimal; else
        walk the MAE's edges from it (``mae_vertex.descend``), moving if the MAE fell; else
        look for a minimum between vertices (``_edge``; again after ``EDGE_RETRY``, 2
        ``EDGE_RETRY``, 4 ``EDGE_RETRY``, ... checks while the nearest points stay those
        refused). Says whether the point reached is certified optimal.

        At a vertex (``r_i = 0`` for ``i`` in Z, P points) the MAE is minimal when zero lies
        in its subgradient: ``J_Z^T l = -J_N^T sign(r_N)`` has a solution with all
        ``|l_i| <= 1`` (exact for models linear in their parameters, local otherwise)."""
        with torch.no_grad():
            r = self.problem.residuals(self.theta.detach())
        rows = self._nearest(r)
        if rows is None:
            return False
        # a minimum between vertices is looked for once the smoothing is at its floor
        # (IRLS crawls there, if anywhere): at a refusal, then now and then (edge_retry)
        sharp = self.eps <= self.eps_min
        if rows == self._refused:        # these points gave no certified vertex before
            self._waited += 1
            return sharp and edge_retry(self._waited) and self._edge()
        vertex = self._vertex(r)
        if self._certify(vertex):
            self._move(vertex)
            return True
        _, certified = self.descend(vertex if vertex is not None else self.theta.detach(),
                                    certified_only=True)
        if not certified:
            self._refused, self._waited = rows, 0
            return sharp and self._edge()
        return certified

    def _edge(self) -> bool:
        """Move to a certified minimum between vertices (``mae_edge``) if there is one
        near; says whether there was. Not within bounds: in the internal variables a bound
        is a stationary point of the transform (its Jacobian column vanishes there), which
        Newton's method finds and the certificate cannot tell from a minimum."""
        prob = self.problem
        if _bounded(prob):
            return False
        found, certified = edge_minimum(prob.residuals, self.theta.detach(),
                                        jacobian=self._jacobian, ys=_ys(prob))
        if certified:
            self._move(found)
        return certified

    def descend(self, start: torch.Tensor, certified_only: bool = False
                ) -> tuple[torch.Tensor, bool]:
        """``mae_vertex.descend`` from ``start``; moves there if the MAE is not higher (and,
        with ``certified_only``, the vertex reached is certified: mid-run, an uncertified
        vertex would leave IRLS at a kink it can no longer smooth its way out of). Returns
        the vertex reached and whether IRLS moved there and it is certified."""
        prob = self.problem
        walked, certified = descend(
            prob.residuals, start, steps=EXCHANGES, jacobian=self._jacobian,
            rows=lambda idx: lambda t: problem_residuals_and_jacobian(prob.rows(idx), t),
            ys=_ys(prob))
        moved = (certified or not certified_only) and \
            self._objective(walked) <= self._objective(self.theta) * (1 + 1e-12)
        if moved:
            self._move(walked)
        # certified where IRLS now is: a certified vertex with a higher MAE than here (a
        # walk from a vertex that was not, into another basin) says nothing of this point
        return walked, certified and moved

    def _certify(self, vertex: torch.Tensor | None) -> bool:
        """Whether ``vertex`` interpolates P points, zero lies in the subgradient there,
        and the loss is not higher than here."""
        if vertex is None:
            return False
        rv, jac = self._jacobian(vertex)
        p = vertex.shape[0]
        order = torch.argsort(rv.abs())
        active, rest = order[:p], order[p:]
        # on the curve: to 1e-9 of the largest residual, or to their own rounding level
        near = torch.maximum(KINK_ULPS * self._level(vertex, rv, jac),
                             1e-9 * rv.abs().max().clamp_min(1e-300))
        if bool((rv.abs()[active] > near[active]).any()):
            return False
        rhs = -(jac[rest].transpose(0, 1) @ torch.sign(rv[rest]))
        try:
            lam = torch.linalg.solve(jac[active].transpose(0, 1), rhs)
        except RuntimeError:
            return False
        if not bool(torch.isfinite(lam).all()) or float(lam.abs().max()) > 1 + 1e-9:
            return False
        return self._objective(vertex) <= self._objective(self.theta) * (1 + 1e-12)

    def _nearest(self, r: torch.Tensor) -> frozenset | None:
        """The P points nearest the curve, or None when there are fewer."""
        p = self.theta.shape[0]
        return None if p > self.problem.n else frozenset(torch.argsort(r.abs())[:p].tolist())

    def _polish(self, best: float) -> None:
        with torch.no_grad():
            r = self.problem.residuals(self.theta.detach())
        vertex = self._vertex(r)
        if vertex is not None and self._objective(vertex) < best:
            self._move(vertex)

    def _vertex(self, r: torch.Tensor) -> torch.Tensor | None:
        """Interpolate the P points with the smallest residuals (a vertex of the LP)."""
        p = self.theta.shape[0]
        if p > self.problem.n:
            return None
        rows = torch.argsort(r.abs())[:p]
        sub = _Weighted(self.problem, torch.ones(p, dtype=r.dtype, device=r.device), rows)
        theta = self.theta.detach()
        rr, jac = sub.jacobian(theta)
        ys = _ys(self.problem)
        level = rounding_level(rr[None], jac[None], theta[None], ys[rows][None],
                               zero_data=no_scale(ys[None]))
        # P equations in P unknowns: Newton's method, which either converges fast or finds
        # no vertex near here; a step that needs many halvings means the latter
        return _gauss_newton(sub.residuals, self.theta, self.inner, halvings=VERTEX_HALVINGS,
                             jacobian=sub.jacobian, floor=float(vertex_floor(level)[0]))

    def _move(self, new: torch.Tensor) -> None:
        with torch.no_grad():
            self.theta.copy_(new)


def gauss_newton_solve(h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``h^+ g`` ``(k, F)`` for ``h`` ``(k, F, F)`` (symmetric, perhaps singular) and ``g``
    ``(k, F)``: the Gauss-Newton step of ``_huber_newton`` and ``batch_irls.huber_newton``,
    by one solver for both. Near a lost rank the solvers differ by orders of magnitude
    (a flat 4PL well, two columns at a cosine of 1 - 3e-10: the pseudo-inverse's step was
    7e6, LAPACK's rank-revealing QR's 7e7), and the line search then takes one and not the
    other: ``fit`` and ``fit_many`` ended apart. LAPACK's ``gelsy`` where it runs (CPU), the
    pseudo-inverse elsewhere (CUDA's ``lstsq`` needs full rank)."""
    if h.device.type == "cpu":
        return torch.linalg.lstsq(h, g.unsqueeze(-1)).solution[..., 0]
    return (torch.linalg.pinv(h) @ g.unsqueeze(-1))[..., 0]


def edge_retry(waited):
    """Whether a check ``waited`` (an int or a tensor of them) after a refusal tries an
    edge again: at EDGE_RETRY, 2 EDGE_RETRY, 4 EDGE_RETRY, ... (a crawl that lasts gets
    fewer tries)."""
    return (waited >= EDGE_RETRY) & (waited % EDGE_RETRY == 0) & \
        ((waited // EDGE_RETRY) & (waited // EDGE_RETRY - 1) == 0)


def vertex_floor(level: torch.Tensor) -> torch.Tensor:
    """The sum of squares ``(k,)`` at which an interpolation of P points is exact (their
    rounding levels ``level`` ``(k, P)``, ``irls_check.rounding_level``): ``P (VERTEX_ULPS
    min level)^2``, below which no residual is more than ``VERTEX_ULPS sqrt(P)`` (at most
    ``KINK_ULPS``, for P up to 16) of its own level from zero."""
    p = level.shape[-1]
    return p * (VERTEX_ULPS * level.amin(-1)) ** 2


def onto_kinks(jacobian, objective, u: torch.Tensor, ys: torch.Tensor,
               valid: torch.Tensor | None = None, steps: int = 3) -> torch.Tensor:
    """``u`` ``(k, F)`` moved onto the MAE's kinks it is next to: the residuals below
    ``ZERO`` times the largest, some of them above their rounding level, set to zero by
    least-change Newton steps ``-pinv(J_Z) r_Z``; kept where they bring those residuals
    closer to zero and the MAE is not higher.

    IRLS's smoothing leaves the residuals of a vertex at ``1e-10`` of the typical one, and
    a vertex's interpolation through the P nearest points may miss some (a degenerate
    vertex: more than P points on the curve, some of them repeated; a Jacobian of lost
    rank); the certificate sees a kink only at a residual's own rounding level
    (``irls_check``), and certifies the point moved to. ``jacobian(u) -> (r (k, n), J (k,
    n, F))``, ``objective(u) -> (k,)``, ``ys``: ``y / sigma`` ``(k, n)``, ``valid``: the
    real points."""
    F = u.shape[-1]
    best = objective(u)
    for _ in range(steps):
        r, jac = jacobian(u)
        a = r.abs() if valid is None else torch.where(valid, r.abs(), torch.inf)
        top = torch.where(torch.isfinite(a), a, 0.0).amax(-1, keepdim=True)
        level = rounding_level(r, jac, u, ys, valid)
        exact = KINK_ULPS * level
        near = a <= torch.maximum(ZERO * top, exact)
        # a point the certificate already takes stays: the least change onto every near
        # kink moves a vertex, whose other residuals are only small, off it
        need = (near & (a > exact)).any(-1) & ~certify(LOSSES["mae"], r, jac, valid, level)[0]
        if not bool(need.any()):
            break
        m = int(near.sum(-1).max())
        rows = torch.argsort(a, dim=-1)[:, :m]
        on = near.gather(-1, rows)
        jz = jac.gather(-2, rows.unsqueeze(-1).expand(-1, -1, F)) * on.unsqueeze(-1)
        rz = r.gather(-1, rows) * on
        trial = u - (torch.linalg.pinv(jz) @ rz.unsqueeze(-1)).squeeze(-1)
        value = objective(trial)
        r_t = jacobian(trial)[0].gather(-1, rows)
        closer = torch.where(on, r_t.abs(), 0.0).amax(-1) < torch.where(on, rz.abs(), 0.0).amax(-1)
        take = need & torch.isfinite(trial).all(-1) & closer & (value <= best * (1 + 1e-12))
        if not bool(take.any()):
            break
        u = torch.where(take.unsqueeze(-1), trial, u)
        best = torch.where(take, value, best)
    return u


def residual_curvature(jacobian, u: torch.Tensor, psi: torch.Tensor, d: torch.Tensor
                       ) -> torch.Tensor:
    """``sum_i psi_i d2 r_i`` ``(k, F, F)``, the part of a loss's Hessian that Gauss-Newton
    leaves out, in the variables scaled by ``d`` ``(k, F)`` (``D^-1 C D^-1``), at ``u``
    ``(k, F)`` with the weights ``psi`` ``(k, n)`` held (0 off the real points):
    central differences of the exact Jacobian (``jacobian(u) -> J (k, n, F)``), each
    parameter stepped by ``eps^(1/3)`` of its scale ``max(|u_j|, |psi| / d_j)`` (the step
    that moves the curve by ``|psi|``). Zero for a model linear in its parameters."""
    k, F = u.shape
    eps = torch.finfo(u.dtype).eps
    h = eps ** (1.0 / 3.0) * torch.maximum(
        u.abs(), torch.linalg.vector_norm(psi, dim=-1, keepdim=True) / d.clamp_min(1e-300))
    h = torch.where(torch.isfinite(h) & (h > 0), h, eps ** (1.0 / 3.0))
    c = torch.zeros(k, F, F, dtype=u.dtype, device=u.device)
    for j in range(F):
        e = torch.zeros_like(u)
        e[:, j] = h[:, j]
        with torch.no_grad():
            diff = jacobian(u + e) - jacobian(u - e)
        c[:, :, j] = (diff * psi.unsqueeze(-1)).sum(-2) / (2.0 * h[:, j:j + 1])
    c = 0.5 * (c + c.transpose(-1, -2))
    return c / (d.unsqueeze(-1) * d.unsqueeze(-2))


def huber_slack(r: torch.Tensor, level: torch.Tensor, delta: float,
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """The Huber loss's rounding level ``(k,)`` at residuals ``r`` ``(k, n)`` of rounding
    levels ``level`` (``irls_check.rounding_level``; ``valid``: the real points):
    ``HUBER_ULPS mean_i |psi(r_i)| level_i``, what the residuals' roundings change of
    ``mean_i h(r_i)``."""
    each = r.clamp(-delta, delta).abs() * level
    if valid is None:
        return HUBER_ULPS * each.mean(-1)
    return HUBER_ULPS * torch.where(valid, each, 0.0).sum(-1) / valid.sum(-1).clamp_min(1)


def _ys(problem) -> torch.Tensor:
    """``y / sigma`` ``(n,)``: the data's part of the residuals' rounding level."""
    return problem.y if problem.sigma is None else problem.y / problem.sigma


def _bounded(problem) -> bool:
    transform = getattr(problem, "transform", None)
    return transform is not None and bool(transform.bounds)


def irls_stepper(problem, theta, *, lr: float, steps: int, seed: int, options: dict) -> IRLS:
    return IRLS(problem, theta, options=options)
