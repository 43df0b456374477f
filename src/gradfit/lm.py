"""Levenberg–Marquardt for least-squares losses, with exact Jacobians from autograd.

The problem: minimise ``S(theta) = sum_i r_i(theta)^2`` with ``r = (f(x, theta) - y) / sigma``
(``problem.residuals``), ``theta`` shaped ``(P,)``. At an accepted point, with ``J = dr/dtheta``
``(n, P)`` and the diagonal scaling ``D = max over the iterations so far of the column norms
of J`` (Moré 1978, MINPACK's ``lmder`` with ``mode=1``), one trial step solves

    (J^T J + lam D^2) delta = -J^T r

through the SVD of the scaled Jacobian ``J D^-1 = U diag(s) V^T``, never forming ``J^T J``:
with ``c = U^T r``,

    D delta = -V (s c / (s^2 + lam)),     predicted reduction  sum c^2 (1 - (lam / (s^2 + lam))^2).

The step is accepted when the actual reduction of ``S`` is more than 1e-4 of the predicted
one (gain ratio ``rho``); then ``lam <- lam * max(1/3, 1 - (2 rho - 1)^3)`` (Nielsen 1999).
A rejected step raises ``lam`` (times 2, 4, 8, ...) and is retried within the same
``step()``, so every recorded step of a fit is an accepted one and the loss falls strictly.
The first ``lam`` is ``lambda0 * max(s)^2``.

Stopping (all relative, so the defaults sit at machine level and the parameters reach the
precision the data allow, not only the residual sum of squares):

- ``gtol``: the largest cosine between ``r`` and a column of ``J`` is at most ``gtol``;
- ``ftol``: a step reduced ``S`` by at most ``ftol * S``, and predicted no more;
- ``xtol``: a step moved ``D theta`` by at most ``xtol * |D theta|``;
- no trial step can lower ``S`` although its size is at the rounding level of ``theta``:
  converged (``xtol``) when the Gauss–Newton step predicts a reduction below the rounding
  level of ``S``, else ``failed``.

A fit whose scaled Jacobian has lost rank at the end (some combination of parameters is not
determined by the data, e.g. ``a*b*x``) stops as ``failed``, saying which parameters, even if
the curve fits: the values are then one choice among many.

The learning rate is ignored: the step length comes from the damping. LM needs a
squared-error loss (mse, rmse); the loss it reports is the problem's objective.

    >>> import numpy as np, gradfit
    >>> x = np.linspace(0, 3, 30); y = 2.5 * np.exp(-1.3 * x) + 0.5
    >>> r = gradfit.fit("a*exp(-b*x) + c", x, y, optimizer="lm", steps=100)
    >>> r.reason in ("ftol", "xtol", "gtol"), [round(v, 10) for v in r.params.values()]
    (True, [2.5, 1.3, 0.5])
"""
from __future__ import annotations

import math
import warnings

import torch

from .errors import InputError
from .problem import Problem

OPTIONS = {
    "ftol": 1e-15,      # relative reduction of the residual sum of squares
    "xtol": 1e-15,      # relative step in the scaled parameters
    "gtol": 1e-15,      # cosine between the residuals and the Jacobian's columns
    "factor": 100.0,    # first trust region: factor * |D theta| (MINPACK's factor)
    "accel": True,      # geodesic acceleration
    "avmax": 0.75,
    "max_tries": 100,   # trial steps within one step() before giving up
}
ACCEPT = 1e-4           # smallest gain ratio of an accepted step


def jacobian_from_graph(r: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The exact Jacobian ``dr/dtheta`` ``(n, P)`` of residuals ``r`` computed from the leaf
    ``theta`` with grad enabled: reverse over reverse, one batched backward pass.

    ``g(u) = J^T u`` is linear in ``u``, so its own Jacobian in ``u`` is ``J^T``. On small
    problems this costs a few forward passes (``torch.func.jacfwd`` costs dozens)."""
    u = torch.zeros_like(r, requires_grad=True)
    (g,) = torch.autograd.grad(r, theta, u, create_graph=True, materialize_grads=True)
    eye = torch.eye(theta.shape[-1], dtype=r.dtype, device=r.device)
    (jt,) = torch.autograd.grad(g, u, eye, is_grads_batched=True, materialize_grads=True)
    return jt.transpose(-1, -2)


def residuals_and_jacobian(fn, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``fn(theta)`` and its Jacobian, exactly (``jacfwd`` where the fast path fails)."""
    t = theta.detach().requires_grad_(True)
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = fn(t)
            jac = jacobian_from_graph(r, t)
        return r.detach(), jac.detach()
    except RuntimeError:
        t = theta.detach()
        return fn(t).detach(), torch.func.jacfwd(fn)(t)


def scaled_svd(jac: torch.Tensor, d: torch.Tensor, r: torch.Tensor):
    """SVD of ``J D^-1`` ``(..., n, P)`` and ``c = U^T r``; singular values below the
    rounding level (``eps * max(n, P) * s_max``) count as zero."""
    a = jac / d.unsqueeze(-2)
    eps = torch.finfo(jac.dtype).eps
    # entries below eps^2 of the largest change no singular value beyond the SVD's own
    # rounding, and left in they slow LAPACK down a hundredfold (subnormal arithmetic)
    big = a.abs().amax((-2, -1), keepdim=True)
    a = torch.where(a.abs() > eps * eps * big, a, torch.zeros_like(a))
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    s = torch.where(s > eps * max(jac.shape[-2:]) * s[..., :1], s, torch.zeros_like(s))
    c = (u.transpose(-1, -2) @ r.unsqueeze(-1)).squeeze(-1)
    return s, vh, c, u


def damped_step(s, vh, c, lam):
    """The LM step in scaled coordinates ``y = D delta`` and the predicted reduction of the
    residual sum of squares, for damping ``lam`` (all with optional leading batch dims)."""
    s2 = s.square()
    denom = s2 + lam
    # where s = 0 (lost rank) the step has no component: 0 / lam, never 0 / 0
    w = torch.where(s > 0, s * c / denom.clamp_min(torch.finfo(s.dtype).tiny), torch.zeros_like(s))
    y = -(vh.transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1)
    keep = torch.where(s > 0, lam / denom, torch.ones_like(s))
    pred = (c.square() * (1 - keep.square())).sum(-1)
    return y, pred


def lm_parameter(s: list[float], c: list[float], delta: float, lam: float) -> float:
    """The damping ``lam >= 0`` whose step has ``|D delta| = delta`` within 10 percent, or 0
    when the Gauss-Newton step is already that short (Moré's ``lmpar``, on the SVD).

    ``|y(lam)|^2 = sum (s c / (s^2 + lam))^2`` falls with ``lam``; Newton's method on
    ``1/delta - 1/|y(lam)|``, which is nearly linear, kept inside a shrinking bracket."""
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
    for _ in range(20):
        ynorm, dy = norm(lam)
        phi = ynorm - delta
        if abs(phi) <= 0.1 * delta or hi - lo <= 1e-12 * hi:
            break
        if phi > 0:
            lo = max(lo, lam)
        else:
            hi = min(hi, lam)
        step = phi / delta * ynorm * ynorm / dy if dy > 0 else math.inf
        lam = lam + step
        if not lo < lam < hi:          # Newton left the bracket: bisect (geometrically)
            lam = math.sqrt(lo * hi) if lo > 0 else 1e-3 * hi if lam <= lo else 0.5 * (lo + hi)
    return lam


class LevenbergMarquardt:
    """The ``lm`` stepper: ``step()`` returns the loss and gradient norm at ``theta``, then
    makes one accepted LM step (retrying with a smaller trust region as needed) or sets
    ``stop``."""

    def __init__(self, problem: Problem, theta: torch.Tensor, *, options: dict):
        if not problem.loss.squared:
            raise InputError(f"optimizer 'lm' cannot minimise the {problem.loss.name} loss",
                             expected="a squared-error loss: mse or rmse",
                             given=problem.loss.name)
        self.problem, self.theta, self.stop = problem, theta, None
        self.ftol, self.xtol, self.gtol = (float(options[k]) for k in ("ftol", "xtol", "gtol"))
        self.factor, self.max_tries = float(options["factor"]), int(options["max_tries"])
        self.accel, self.avmax = bool(options["accel"]), float(options.get("avmax", 0.75))
        self.dmode = "max"
        self.eps = torch.finfo(theta.dtype).eps
        self.d = None
        self.lam = 0.0
        self.first = True
        self.nfev = self.njev = 1         # residual and Jacobian evaluations, for reports
        ys = problem.y if problem.sigma is None else problem.y / problem.sigma
        self.ynorm_data = float(torch.linalg.vector_norm(ys))
        self.last_polish = None
        self._accept(*residuals_and_jacobian(problem.residuals, theta))
        self.delta = self.factor * self.xnorm if self.xnorm > 0 else self.factor

    # -- state at an accepted point -----------------------------------------------------
    def _accept(self, r: torch.Tensor, jac: torch.Tensor) -> None:
        self.r, self.jac = r, jac
        norms = torch.linalg.vector_norm(jac, dim=-2)
        if self.d is None:
            self.d = torch.where(norms > 0, norms, torch.ones_like(norms))
        elif self.dmode == "current":
            self.d = torch.where(norms > 0, norms, self.d)
        else:
            self.d = torch.maximum(self.d, norms)
        self.s, self.vh, self.c, self.u = scaled_svd(jac, self.d, r)
        # loss and gradient of the objective (mse or rmse), cosine test, in one sync
        rl = r.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = self.problem.loss.reduce(rl, self.problem.loss.delta)
            (dl,) = torch.autograd.grad(loss, rl)
        jtr = jac.transpose(-1, -2) @ r
        rnorm = torch.linalg.vector_norm(r)
        cos = (jtr.abs() / (norms * rnorm).clamp_min(torch.finfo(r.dtype).tiny)).amax()
        stats = torch.cat([torch.stack([loss.detach(), torch.linalg.vector_norm(jac.transpose(-1, -2) @ dl),
                           rnorm.square(), cos, torch.linalg.vector_norm(self.d * self.theta.detach())]),
                           self.s, self.c]).tolist()
        self.loss, self.gnorm, self.rss, self.cos, self.xnorm = stats[:5]
        p = self.s.shape[-1]
        self.s_list, self.c_list = stats[5:5 + p], stats[5 + p:]
        # the Gauss-Newton step's predicted reduction and length, and the rounding level of
        # S: each residual carries an error of about eps * (|r| + 2 |y|)
        kept = [(si, ci) for si, ci in zip(self.s_list, self.c_list) if si > 0.0]
        self.gn_pred = sum(ci * ci for _, ci in kept)
        self.gn_norm = math.sqrt(sum((ci / si) ** 2 for si, ci in kept))
        rnorm = math.sqrt(self.rss)
        err = self.eps * (rnorm + 2.0 * self.ynorm_data)
        self.noise = 2.0 * rnorm * err + err * err

    # -- one recorded step ---------------------------------------------------------------
    def step(self) -> tuple[float, float]:
        loss, gnorm = self.loss, self.gnorm
        if self.rss == 0.0:
            self.stop = ("gtol", "the residuals vanish: a perfect fit")
        elif self.s_list[0] == 0.0:
            self.stop = ("failed", "the Jacobian is zero: the model does not depend on its "
                                   "parameters here")
        elif self.cos <= self.gtol:
            self._converged("gtol", f"the gradient vanished (cosine of residuals and Jacobian "
                                    f"{self.cos:.2g} <= gtol={self.gtol:g})")
        elif self.gn_pred <= self.noise:
            self._polish()
        else:
            self._try_steps()
        return loss, gnorm

    def _polish(self) -> None:
        """Gauss-Newton steps once their gain is below the rounding level of S.

        S can no longer tell a better point from a worse one, but the step still can: it
        keeps shrinking while it carries information and stops shrinking at the rounding
        level of the parameters. A step that raises S beyond rounding goes back to LM."""
        ynorm = self.gn_norm
        if ynorm <= self.xtol * self.xnorm:
            self._converged("xtol", "the parameters stopped changing "
                                    f"(relative step below xtol={self.xtol:g})")
            return
        if self.last_polish is not None and ynorm > 0.9 * self.last_polish:
            self._converged("xtol", "the parameters are at the rounding level: the "
                                    "Gauss-Newton steps stopped shrinking")
            return
        theta, fn = self.theta, self.problem.residuals
        y, _ = damped_step(self.s, self.vh, self.c, torch.zeros((), dtype=self.s.dtype))
        new = theta.detach() + y / self.d
        t = new.requires_grad_(True)
        with torch.enable_grad():
            r = fn(t)
        self.nfev += 1
        rss_new = float(r.detach().square().sum())
        if rss_new <= self.rss + self.noise:
            with torch.no_grad():
                theta.copy_(new.detach())
            self._accept_trial(r, t)
            self.last_polish = ynorm
        else:
            self._try_steps()

    def _try_steps(self) -> None:
        theta, fn = self.theta, self.problem.residuals
        for _ in range(self.max_tries):
            self.lam = lm_parameter(self.s_list, self.c_list, self.delta, self.lam)
            lam_t = torch.tensor(self.lam, dtype=self.s.dtype)
            y, pred = damped_step(self.s, self.vh, self.c, lam_t)
            full = y
            if self.accel:
                # geodesic acceleration (Transtrum & Sethna 2012): the second directional
                # derivative of r along v by a finite difference, and its own LM solve
                v = y / self.d
                with torch.no_grad():
                    rh = fn(theta.detach() + 0.1 * v)
                self.nfev += 1
                rvv = 20.0 * ((rh - self.r) / 0.1 - self.jac @ v)
                cv = (self.u.transpose(-1, -2) @ rvv.unsqueeze(-1)).squeeze(-1)
                a, _ = damped_step(self.s, self.vh, cv, lam_t)
                ratio_av = float(2.0 * torch.linalg.vector_norm(a) / torch.linalg.vector_norm(y))
                if not ratio_av <= self.avmax:
                    self.delta *= 0.5
                    self.lam *= 2.0
                    continue
                full = y + 0.5 * a
            new = theta.detach() + full / self.d
            t = new.requires_grad_(True)
            with torch.enable_grad():
                r = fn(t)
            self.nfev += 1
            rd = r.detach()
            rss_new, pred_v, ynorm, jy2 = torch.stack([
                rd.square().sum(), pred, torch.linalg.vector_norm(y),
                (self.s * (self.vh @ y)).square().sum()]).tolist()
            if self.first:
                self.delta = min(self.delta, ynorm)
                self.first = False
            rss = self.rss
            actred = 1.0 - rss_new / rss if math.isfinite(rss_new) and 0.01 * rss_new < rss else -1.0
            prered = pred_v / rss
            dirder = -(jy2 + self.lam * ynorm * ynorm) / rss
            ratio = actred / prered if prered > 0 else 0.0
            # the trust region, as lmder updates it
            if ratio <= 0.25:
                temp = 0.5 if actred >= 0 else 0.5 * dirder / (dirder + 0.5 * actred)
                if 0.01 * rss_new >= rss or not math.isfinite(rss_new) or temp < 0.1:
                    temp = 0.1
                self.delta = temp * min(self.delta, ynorm / 0.1)
                self.lam /= temp
            elif self.lam == 0.0 or ratio >= 0.75:
                self.delta = ynorm / 0.5
                self.lam *= 0.5
            if ratio >= ACCEPT:
                xnorm_old = self.xnorm
                with torch.no_grad():
                    theta.copy_(new.detach())
                self._accept_trial(r, t)
                if abs(actred) <= self.ftol and prered <= self.ftol and ratio <= 2.0:
                    self._converged("ftol", "the residual sum of squares stopped falling "
                                            f"(relative reduction below ftol={self.ftol:g})")
                elif ynorm <= self.xtol * max(self.xnorm, xnorm_old):
                    self._converged("xtol", "the parameters stopped changing "
                                            f"(relative step below xtol={self.xtol:g})")
                return
            # rejected: a smaller region, unless it is already at the rounding level
            if self.delta <= self.eps * self.xnorm or (abs(actred) <= self.eps and prered <= self.eps):
                self._no_progress()
                return
        self.stop = ("failed", f"no step lowered the loss in {self.max_tries} tries")

    def _accept_trial(self, r: torch.Tensor, t: torch.Tensor) -> None:
        self.njev += 1
        try:
            with torch.enable_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                jac = jacobian_from_graph(r, t)
            self._accept(r.detach(), jac.detach())
        except RuntimeError:
            self._accept(*residuals_and_jacobian(self.problem.residuals, self.theta))

    def _no_progress(self) -> None:
        # the Gauss-Newton model's best reduction, against the rounding level of S
        if self.gn_pred <= 100.0 * self.noise or self.cos <= math.sqrt(self.eps):
            self._converged("xtol", "no step can lower the loss further: the parameters are "
                                    "at the precision of the arithmetic")
        else:
            self.stop = ("failed", "no step lowered the loss although the gradient does not "
                                   f"vanish (cosine {self.cos:.2g}); the model may not be "
                                   "smooth here")

    def _converged(self, reason: str, text: str) -> None:
        """Stop as converged, unless the scaled Jacobian has lost rank."""
        lost = [i for i, si in enumerate(self.s_list) if si == 0.0]
        if not lost:
            self.stop = (reason, text)
            return
        names = self.problem.model.param_names
        # the parameters that take part in the undetermined directions
        null = self.vh[lost].abs().amax(0)
        involved = [names[i] for i in (null > 1e-3).nonzero().flatten().tolist()]
        self.stop = ("failed", f"the Jacobian lost rank ({len(lost)} of {len(names)} directions): "
                               f"the data do not determine {', '.join(involved[:10])} separately, "
                               "only combinations of them; the loss is at a minimum but these "
                               "values are one choice among many")


def lm_stepper(problem: Problem, theta: torch.Tensor, *, lr: float, steps: int, seed: int,
               options: dict) -> LevenbergMarquardt:
    """The ``OptimizerSpec.stepper`` factory for ``lm`` (``lr``, ``steps``, ``seed`` unused)."""
    return LevenbergMarquardt(problem, theta, options=options)
