"""Levenberg–Marquardt for least-squares losses, with exact Jacobians from autograd.

The problem: minimise ``S(theta) = sum_i r_i(theta)^2`` with ``r = (f(x, theta) - y) / sigma``
(``problem.residuals``), ``theta`` shaped ``(P,)``. At an accepted point, with the Jacobian
``J = dr/dtheta`` ``(n, P)`` and Moré's scaling ``D = diag(d)``, ``d`` the largest column
norms of ``J`` seen so far (MINPACK's ``lmder``, ``mode=1``), a trial step solves

    (J^T J + lam D^2) delta = -J^T r

through the SVD of the scaled Jacobian ``J D^-1 = U diag(s) V^T`` (``J^T J`` is never
formed; singular values below ``eps * max(n, P) * s_max`` count as zero). With ``c = U^T r``:

    D delta = -V (s c / (s^2 + lam)),    predicted reduction  sum c^2 (1 - (lam / (s^2 + lam))^2).

``lam`` is chosen, as in MINPACK's ``lmpar``, so that the scaled step ``|D delta|`` fits a
trust region of radius ``Delta`` (``lam = 0``, the Gauss-Newton step, when that is shorter).
With the gain ratio ``rho`` = actual / predicted reduction, ``Delta`` grows to ``2 |D delta|``
when ``rho >= 3/4``, shrinks (by 1/2 to 1/10) when ``rho <= 1/4``, and the step is accepted
when ``rho >= 1e-4``. A rejected step is retried with the smaller region within the same
``step()``, so each recorded step of a fit is an accepted one. The first region is
``factor * |D theta0|``.

Once the Gauss-Newton step's predicted gain is below the rounding level of ``S``, ``S``
can no longer tell better from worse, but the step still can: Gauss-Newton steps are then
taken (unless ``S`` rises beyond rounding) for as long as they keep shrinking, all in one
recorded step. That takes the parameters, not only ``S``, to the rounding level of the
data. The fit stops, converged, with

- ``gtol``: the largest cosine between ``r`` and a column of ``J`` is at most ``gtol``;
- ``ftol``: a step lowered ``S`` by at most ``ftol * S`` and predicted no more;
- ``xtol``: a step moved ``D theta`` by at most ``xtol * |D theta|``, or the Gauss-Newton
  steps stopped shrinking at the rounding level, or no step can lower ``S`` and none is
  predicted to beyond rounding;

and as ``failed`` when no step lowers ``S`` although the gradient does not vanish (a model
that is not smooth), or when the scaled Jacobian has lost rank at the end: the data then
determine only combinations of some parameters (``a*b*x``), and the values reported are
one choice among many even though the curve fits.

Options (defaults in ``OPTIONS``): ``ftol``, ``xtol``, ``gtol`` as above, ``factor`` and
``max_tries`` (trials per step). The fit loop's own ``ftol`` and ``gtol`` (on the loss and
the absolute gradient) may stop it sooner; ``fit(..., ftol=0, gtol=0)`` leaves stopping to
LM. The learning rate is ignored: the trust region sets the step. LM needs a squared-error
loss (mse or rmse: the same minimiser), and reports the problem's objective as the loss.
Jacobians are exact, by autograd (``jacobian_by_rows`` up to ``ROWS_MAX`` points, else
``jacobian_from_graph``).

    >>> import numpy as np, gradfit
    >>> x = np.linspace(0, 3, 30); y = 2.5 * np.exp(-1.3 * x) + 0.5
    >>> r = gradfit.fit("a*exp(-b*x) + c", x, y, optimizer="lm", steps=100)
    >>> r.converged, [round(v, 12) for v in r.params.values()]
    (True, [2.5, 1.3, 0.5])

The linear algebra (``scaled_svd``, ``damped_step``, ``jacobian_from_graph``) takes leading
batch dimensions, ready for many fits at once; the stepper drives one fit.
"""
from __future__ import annotations

import math
import warnings

import torch

from .errors import InputError
from .linear_lsq import linear_least_squares
from .problem import Problem
from .stepper import Stepper

OPTIONS = {
    "ftol": 1e-15,      # relative reduction of S below which a step ends the fit
    "xtol": 1e-15,      # relative scaled step below which a step ends the fit
    "gtol": 1e-15,      # cosine between residuals and Jacobian columns that ends the fit
    "factor": 0.3,      # first trust region radius, times |D theta0| (MINPACK's factor;
                        # 0.1 to 10 solve all 54 NIST fits, MINPACK's 100 not BoxBOD's)
    "max_tries": 100,   # trial steps within one step() before giving up
}
ACCEPT = 1e-4           # smallest gain ratio of an accepted step
ROWS_MAX = 150          # up to this many points, Jacobians by jacobian_by_rows


def jacobian_from_graph(r: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The exact Jacobian ``dr/dtheta`` ``(..., n, P)`` of residuals ``r`` computed from the
    leaf ``theta`` with grad enabled: reverse over reverse, one batched backward pass.

    ``g(u) = J^T u`` is linear in ``u``, so its own Jacobian in ``u`` is ``J^T``. On small
    problems this costs a few forward passes, where ``torch.func.jacfwd`` costs dozens."""
    u = torch.zeros_like(r, requires_grad=True)
    (g,) = torch.autograd.grad(r, theta, u, create_graph=True, materialize_grads=True)
    eye = torch.eye(theta.shape[-1], dtype=r.dtype, device=r.device)
    eye = eye.reshape((theta.shape[-1],) + (1,) * (theta.ndim - 1) + (theta.shape[-1],))
    (jt,) = torch.autograd.grad(g, u, eye.expand((-1,) + tuple(theta.shape)),
                                is_grads_batched=True, materialize_grads=True)
    return jt.movedim(0, -1)


def jacobian_by_rows(fn, theta: torch.Tensor, n: int) -> torch.Tensor:
    """The Jacobian ``(n, P)`` of ``fn`` at ``theta`` ``(P,)`` by one batched forward and one
    backward pass: row ``i`` of ``fn`` evaluated at copy ``i`` of ``theta``.

    Models evaluate a batch of parameter sets independently (``(n, P) -> (n, n)``), so the
    gradient of the diagonal's sum with respect to copy ``i`` is row ``i`` of ``J``. The
    ``n x n`` evaluation makes this the faster way for small ``n`` (up to ~150 points)."""
    t = theta.detach().expand(n, theta.shape[-1]).clone().requires_grad_(True)
    with torch.enable_grad():
        (jac,) = torch.autograd.grad(fn(t).diagonal().sum(), t, materialize_grads=True)
    return jac


def residuals_and_jacobian(fn, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``fn(theta)`` and its exact Jacobian (``torch.func.jacfwd`` if the fast path fails)."""
    t = theta.detach().requires_grad_(True)
    try:
        with torch.enable_grad():
            r = fn(t)
        return r.detach(), _jacobian(r, t)
    except RuntimeError:
        t = theta.detach()
        return fn(t).detach(), torch.func.jacfwd(fn)(t)


def _jacobian(r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad(), warnings.catch_warnings():
        # vmap's note about ops without a batching rule: they still give the right answer
        warnings.simplefilter("ignore")
        return jacobian_from_graph(r, t).detach()


def scaled_svd(jac: torch.Tensor, d: torch.Tensor, r: torch.Tensor):
    """SVD of ``J D^-1`` ``(..., n, P)``: ``s``, ``V^T``, ``c = U^T r`` and ``U``."""
    u, s, vh = torch.linalg.svd(jac / d.unsqueeze(-2), full_matrices=False)
    eps = torch.finfo(jac.dtype).eps
    s = torch.where(s > eps * max(jac.shape[-2:]) * s[..., :1], s, torch.zeros_like(s))
    c = (u.transpose(-1, -2) @ r.unsqueeze(-1)).squeeze(-1)
    return s, vh, c, u


def damped_step(s, vh, c, lam):
    """The scaled step ``y = D delta`` for damping ``lam`` and its predicted reduction of
    ``S``, from ``scaled_svd``'s ``s``, ``vh``, ``c`` (leading batch dims allowed)."""
    denom = s.square() + lam
    # where s = 0 (lost rank) the step has no component, never 0 / 0
    w = torch.where(s > 0, s * c / denom.clamp_min(torch.finfo(s.dtype).tiny), torch.zeros_like(s))
    y = -(vh.transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1)
    keep = torch.where(s > 0, lam / denom.clamp_min(torch.finfo(s.dtype).tiny), torch.ones_like(s))
    return y, (c.square() * (1 - keep.square())).sum(-1)


def lm_parameter(s: list[float], c: list[float], delta: float, lam: float) -> float:
    """The damping ``lam >= 0`` whose scaled step has length ``delta`` within 10 percent,
    or 0 when the Gauss-Newton step is no longer than that (Moré's ``lmpar``, on the SVD).

    ``|y(lam)| = |s c / (s^2 + lam)|`` falls with ``lam``; Newton's method on
    ``1/delta - 1/|y(lam)|``, nearly linear in ``lam``, inside a shrinking bracket.
    ``lam`` is the previous value, a warm start."""
    def norm(lam):
        y2 = dy = 0.0
        for si, ci in zip(s, c):
            if si > 0.0:
                den = si * si + lam
                w = si * ci / den
                y2 += w * w
                dy += w * w / den
        return math.sqrt(y2), dy

    ynorm, dy = norm(0.0)
    if ynorm <= 1.1 * delta:
        return 0.0
    full_rank = all(si > 0.0 for si in s)
    lo = (ynorm - delta) / delta * ynorm * ynorm / dy if full_rank and dy > 0 else 0.0
    hi = math.sqrt(sum((si * ci) ** 2 for si, ci in zip(s, c))) / delta
    if not lo < lam < hi:
        lam = max(lo, 1e-3 * hi)
    for _ in range(30):
        ynorm, dy = norm(lam)
        phi = ynorm - delta
        if abs(phi) <= 0.1 * delta or hi - lo <= 1e-12 * hi:
            break
        if phi > 0:
            lo = max(lo, lam)
        else:
            hi = min(hi, lam)
        lam += phi / delta * ynorm * ynorm / dy if dy > 0 else math.inf
        if not lo < lam < hi:          # Newton left the bracket: bisect it
            lam = math.sqrt(lo * hi) if lo > 0 else 0.5 * (lo + hi)
    return lam


class LevenbergMarquardt(Stepper):
    """The ``lm`` stepper: ``step()`` returns the loss and gradient norm at ``theta``, then
    makes one accepted step (retrying in a smaller trust region as needed) or sets ``stop``.
    ``nfev`` and ``njev`` count residual and Jacobian evaluations."""

    own_stopping = True     # the fit loop leaves ftol/gtol to LM's own rules
    has_lr = False          # the trust region sets the step

    def __init__(self, problem: Problem, theta: torch.Tensor, *, options: dict):
        if not problem.loss.squared:
            raise InputError(f"optimizer 'lm' cannot minimise the {problem.loss.name} loss",
                             expected="a squared-error loss: mse or rmse",
                             given=problem.loss.name)
        self.problem, self.theta, self.stop = problem, theta, None
        self.ftol, self.xtol, self.gtol = (float(options[k]) for k in ("ftol", "xtol", "gtol"))
        self.max_tries = int(options["max_tries"])
        self.eps = torch.finfo(theta.dtype).eps
        ys = problem.y if problem.sigma is None else problem.y / problem.sigma
        self.ydata = float(torch.linalg.vector_norm(ys))
        self.d, self.lam, self.first = None, 0.0, True
        self.gnorm = math.nan
        self.theta_d = theta.detach()
        self.nfev = self.njev = 1
        self.linear = None if problem.loss.name not in ("mse", "rmse") else \
            linear_least_squares(problem, theta.detach())
        if self.linear is not None:         # one exact solve: no Jacobian, no iterations
            self.loss, self.gnorm = self.linear.start_loss_and_gradient(problem, theta.detach())
            return
        r, jac = residuals_and_jacobian(problem.residuals, theta)
        self.by_rows = problem.n <= ROWS_MAX and self._rows_agree(jac)
        self._accept(r, jac)
        self.delta = float(options["factor"]) * (self.xnorm if self.xnorm > 0 else 1.0)

    def _rows_agree(self, jac: torch.Tensor) -> bool:
        """Whether ``jacobian_by_rows`` gives this Jacobian (a model that mixes the parameter
        sets of a batch would not)."""
        try:
            rows = jacobian_by_rows(self.problem.residuals, self.theta, self.problem.n)
        except RuntimeError:
            return False
        scale = float(jac.abs().nan_to_num(0.0, 0.0, 0.0).max()) if jac.numel() else 0.0
        return bool(torch.allclose(rows, jac, rtol=1e-10, atol=1e-12 * scale, equal_nan=True))

    def _accept(self, r: torch.Tensor, jac: torch.Tensor) -> None:
        """The state at a new accepted point: scaling, SVD, loss, gradient, noise level."""
        norms = torch.linalg.vector_norm(jac, dim=-2)
        d = (torch.where(norms > 0, norms, torch.ones_like(norms)) if self.d is None
             else torch.maximum(self.d, norms))
        loss = self.problem.loss.reduce(r, self.problem.loss.delta)
        try:
            s, vh, c, _ = scaled_svd(jac, d, r)
        except RuntimeError:           # LAPACK refuses NaN and inf
            s = vh = c = None
        jtr = jac.transpose(-1, -2) @ r
        p = jac.shape[-1]
        parts = [torch.stack([loss, r.square().sum(), torch.linalg.vector_norm(d * self.theta_d)]),
                 norms, jtr] + ([s, c] if s is not None else [])
        stats = torch.cat(parts).tolist()
        self.loss, rss, self.xnorm = stats[:3]
        norms_l, jtr_l = stats[3:3 + p], stats[3 + p:3 + 2 * p]
        self.finite = s is not None and all(map(math.isfinite, stats))
        if not self.finite:
            return
        self.r, self.jac, self.d, self.s, self.vh, self.c = r, jac, d, s, vh, c
        k = s.shape[-1]                # min(n, P) singular values
        self.s_list, self.c_list = stats[3 + 2 * p:3 + 2 * p + k], stats[3 + 2 * p + k:]
        self.rss = rss
        rnorm = math.sqrt(rss)
        self.cos = max(abs(g) / max(nj * rnorm, 1e-300) for g, nj in zip(jtr_l, norms_l))
        self.gnorm = self._objective_slope(rss, r) * math.sqrt(sum(g * g for g in jtr_l))
        # the Gauss-Newton step's gain and length; the rounding level of S, each residual
        # carrying an error of about eps * (|r| + 2 |y|)
        kept = [(si, ci) for si, ci in zip(self.s_list, self.c_list) if si > 0.0]
        self.gn_pred = sum(ci * ci for _, ci in kept)
        self.gn_norm = math.sqrt(sum((ci / si) ** 2 for si, ci in kept))
        err = self.eps * (rnorm + 2.0 * self.ydata)
        self.noise = 2.0 * rnorm * err + err * err

    def _objective_slope(self, rss: float, r: torch.Tensor) -> float:
        """``|grad objective| / |J^T r|``, the objective being a function of ``S`` alone."""
        n, name = self.problem.n, self.problem.loss.name
        if name in ("mse", "rmse"):
            return 2.0 / n if name == "mse" else 1.0 / math.sqrt(n * rss) if rss > 0 else 0.0
        rl = r.detach().requires_grad_(True)       # another squared loss: ask autograd
        with torch.enable_grad():
            (dl,) = torch.autograd.grad(self.problem.loss.reduce(rl, self.problem.loss.delta), rl)
        i = int(r.abs().argmax())                  # dl = h'(S) 2 r: the slope is 2 |h'(S)|
        return abs(float(dl[i] / r[i])) if float(r[i]) != 0.0 else 0.0

    def step(self) -> tuple[float, float]:
        loss, gnorm = self.loss, self.gnorm
        if self.linear is not None:
            with torch.no_grad():
                self.theta.copy_(self.linear.theta)
            self.stop = ("xtol", "the exact least-squares solution of a model linear in its "
                                 "parameters (one solve of the column-scaled design matrix)")
        elif not self.finite:
            self.stop = ("failed", "the residuals or their derivatives are not finite here")
        elif self.rss == 0.0:
            self.stop = ("gtol", "the residuals vanish: a perfect fit")
        elif self.s_list[0] == 0.0:
            self.stop = ("failed", "the Jacobian is zero: the model does not depend on its "
                                   "parameters here")
        elif self.cos <= self.gtol:
            self._converged("gtol", "the gradient vanished (largest cosine of residuals and "
                                    f"Jacobian columns {self.cos:.2g} <= gtol={self.gtol:g})")
        elif self.gn_pred <= self.noise:
            self._polish()
        else:
            self._try_steps()
        return loss, gnorm

    def _trial(self, y: torch.Tensor):
        """Residuals at ``theta + D^-1 y`` (with their graph, when the Jacobian uses it)."""
        t = (self.theta.detach() + y / self.d).requires_grad_(not self.by_rows)
        with torch.set_grad_enabled(not self.by_rows):
            r = self.problem.residuals(t)
        self.nfev += 1
        return t, r

    def _move(self, t: torch.Tensor, r: torch.Tensor) -> bool:
        """Go to the trial point, unless its Jacobian is not finite (say an infinite slope
        of sqrt at 0): then stay, in a smaller trust region, and say so."""
        old = self.theta_d.clone(), self.loss, self.xnorm
        with torch.no_grad():
            self.theta.copy_(t.detach())
        self.njev += 1
        try:
            jac = (jacobian_by_rows(self.problem.residuals, t, self.problem.n) if self.by_rows
                   else _jacobian(r, t))
        except RuntimeError:
            r, jac = residuals_and_jacobian(self.problem.residuals, self.theta)
        self._accept(r.detach(), jac)
        if not self.finite:
            with torch.no_grad():
                self.theta.copy_(old[0])
            self.loss, self.xnorm, self.finite = old[1], old[2], True
            self.delta *= 0.25
        return self.finite

    def _try_steps(self) -> None:
        for _ in range(self.max_tries):
            self.lam = lm_parameter(self.s_list, self.c_list, self.delta, self.lam)
            y, pred = damped_step(self.s, self.vh, self.c,
                                  torch.tensor(self.lam, dtype=self.s.dtype, device=self.s.device))
            t, r = self._trial(y)
            rss_new, pred, ynorm, jy2 = torch.stack([
                r.detach().square().sum(), pred, torch.linalg.vector_norm(y),
                (self.s * (self.vh @ y)).square().sum()]).tolist()
            if self.first:
                self.delta, self.first = min(self.delta, ynorm), False
            rss, xnorm = self.rss, self.xnorm
            ok = math.isfinite(rss_new) and 0.01 * rss_new < rss
            actred = 1.0 - rss_new / rss if ok else -1.0
            prered = pred / rss
            ratio = actred / prered if prered > 0 else 0.0
            self._update_region(ratio, actred, -(jy2 + self.lam * ynorm * ynorm) / rss, ynorm, ok)
            if ratio >= ACCEPT and self._move(t, r):
                if abs(actred) <= self.ftol and prered <= self.ftol and ratio <= 2.0:
                    self._converged("ftol", "the residual sum of squares stopped falling "
                                            f"(relative reduction below ftol={self.ftol:g})")
                elif ynorm <= self.xtol * max(self.xnorm, xnorm):
                    self._converged("xtol", "the parameters stopped changing "
                                            f"(relative step below xtol={self.xtol:g})")
                return
            if self.delta <= self.eps * xnorm or (abs(actred) <= self.eps and prered <= self.eps):
                self._no_progress()
                return
        self.stop = ("failed", f"no step lowered the loss in {self.max_tries} tries")

    def _update_region(self, ratio, actred, dirder, ynorm, ok) -> None:
        """The trust region after a trial, as ``lmder`` updates it."""
        if ratio <= 0.25:
            # shrink to where a quadratic through S and its slope along the step bottoms out
            temp = 0.5 if actred >= 0 else 0.5 * dirder / (dirder + 0.5 * actred)
            if not ok or temp < 0.1:
                temp = 0.1
            self.delta = temp * min(self.delta, ynorm / 0.1)
            self.lam /= temp
        elif self.lam == 0.0 or ratio >= 0.75:
            self.delta = ynorm / 0.5
            self.lam *= 0.5

    def _polish(self) -> None:
        """Gauss-Newton steps whose gain is below the rounding level of S, all within this
        one recorded step (S may not change at all): taken while they keep shrinking, until
        the parameters reach the rounding level. A step that raises S beyond rounding goes
        back to the LM loop, as does a point where S can tell again."""
        last = None
        for _ in range(self.max_tries):
            ynorm = self.gn_norm
            if ynorm <= self.xtol * self.xnorm:
                return self._converged("xtol", "the parameters stopped changing "
                                               f"(relative step below xtol={self.xtol:g})")
            if last is not None and ynorm > 0.9 * last:
                return self._converged("xtol", "the parameters are at the rounding level of "
                                               "the data (Gauss-Newton steps stopped shrinking)")
            zero = torch.zeros((), dtype=self.s.dtype, device=self.s.device)
            t, r = self._trial(damped_step(self.s, self.vh, self.c, zero)[0])
            if not (float(r.detach().square().sum()) <= self.rss + self.noise and self._move(t, r)):
                return self._try_steps() if last is None else self._converged(
                    "xtol", "the parameters are at the rounding level of the data")
            last = ynorm
            if self.gn_pred > self.noise or self.rss == 0.0 or self.s_list[0] == 0.0:
                return                 # back to LM (or to the checks of step())
        self._converged("xtol", "the parameters are at the rounding level of the data")

    def _no_progress(self) -> None:
        if self.gn_pred <= 100.0 * self.noise or self.cos <= math.sqrt(self.eps):
            self._converged("xtol", "no step lowers the loss any more and none is predicted "
                                    "to beyond rounding: converged to the precision of the "
                                    "arithmetic")
        else:
            self.stop = ("failed", "no step lowered the loss, down to steps at the rounding "
                                   "level of the parameters, although the gradient does not "
                                   f"vanish (cosine {self.cos:.2g}): the model may not be "
                                   "smooth here")

    def _converged(self, reason: str, text: str) -> None:
        """Stop as converged, unless the scaled Jacobian has lost rank."""
        kept = self.s > 0
        rank, p = int(kept.sum()), self.theta.shape[-1]
        if rank == p:
            self.stop = (reason, text)
            return
        # parameters with a component outside the row space of the Jacobian
        vk = self.vh[kept]
        outside = (1 - vk.square().sum(0)).clamp_min(0).sqrt()
        names = self.problem.model.param_names
        involved = [names[i] for i in (outside > 1e-3).nonzero().flatten().tolist()]
        shown = ", ".join(involved[:10]) + (", ..." if len(involved) > 10 else "")
        self.stop = ("failed", f"the Jacobian lost rank ({rank} of {p}): the data determine "
                               f"only combinations of {shown}, not each one; the loss is at "
                               "a minimum but these values are one choice among many")


def lm_stepper(problem: Problem, theta: torch.Tensor, *, lr: float, steps: int, seed: int,
               options: dict) -> LevenbergMarquardt:
    """The ``OptimizerSpec.stepper`` factory for ``lm`` (``lr``, ``steps``, ``seed`` unused)."""
    return LevenbergMarquardt(problem, theta, options=options)
