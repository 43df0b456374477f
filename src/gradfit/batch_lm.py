"""Levenberg–Marquardt, the one implementation: B >= 1 independent least-squares problems
at once (``fit`` runs it with B = 1, one record per accepted step; ``fit_many`` with B = N).

Problem ``b`` minimises ``S_b(theta_b) = sum_i r_bi(theta_b)^2``, ``theta_b`` shaped ``(F,)``.
``jacobian(theta, idx)`` gives the block ``[J r]^T`` ``(k, F+1, n)`` of the problems ``idx``
at their ``theta`` ``(k, F)`` (padded points of a ragged batch give zeros). An iteration
needs only ``M = [J r]^T [J r]``: ``J^T J``, ``J^T r`` and ``S``. With Moré's scaling
``D = diag(d)``, ``d`` the largest column norms of ``J`` seen so far (MINPACK's ``lmder``,
``mode=1``), the scaled quantities are

    A = D^-1 J^T J D^-1,   g = D^-1 J^T r,   y = D delta,

and a trial step solves ``(A + lam I) y = -g`` by a Cholesky factorisation (``spd``), with
predicted reduction ``pred = -g.y + lam |y|^2`` (never negative). ``lam`` is chosen as in
MINPACK's ``lmpar``: 0 (the Gauss-Newton step) when ``|y(0)| <= 1.1 Delta``, else the root
of ``|y(lam)| = Delta`` within 10 percent, by Newton's method on ``1/Delta - 1/|y(lam)|``
(``d|y|/dlam = -y^T (A + lam I)^-1 y / |y|``) inside the bracket
``[(|y0| - Delta) |y0| / (Delta y0^T A^-1 y0), |g| / Delta]``, warm-started from the last
``lam``. With the gain ratio ``rho`` = actual / predicted reduction, the trust region
``Delta`` grows to ``2 |y|`` when ``rho >= 3/4`` (or ``lam = 0``), shrinks by 1/2 to 1/10
(where a quadratic through ``S`` and its slope along the step bottoms out) when
``rho <= 1/4``, and the step is accepted when ``rho >= 1e-4``. The first region is
``factor * |D theta0|``, cut to the first step's length. Moré's trust region beats
Nielsen's damping rule on the NIST suite (BoxBOD and MGH10 from their first starts).

Once the Gauss-Newton step's predicted gain is below the rounding level of ``S``
(``noise = 2 |r| e + e^2``, ``e = eps (|r| + 2 |y_data|)``), ``S`` can no longer tell better
from worse, but the step still can: Gauss-Newton steps are then taken (unless ``S`` rises
beyond ``4 noise``, a few roundings of each value) while they keep shrinking, which takes the parameters, not only ``S``, to
the rounding level of the data. Each problem stops (``CODES``) with

- ``gtol``: the largest cosine between ``r`` and a column of ``J`` is at most ``gtol``
  (or ``S = 0``, a perfect fit);
- ``ftol``: an accepted step lowered ``S`` by at most ``ftol * S`` and predicted no more;
- ``xtol``: an accepted step had ``|y| <= xtol |D theta|``; or the Gauss-Newton steps
  stopped shrinking at the rounding level; or no step lowers ``S`` and none is predicted to
  beyond rounding (by Gauss-Newton, or by the loss's own Hessian: ``ROUGH`` below);
(``ftol`` and ``xtol`` judge the step taken, which a trust region shrunk by a loss too curved
or not smooth for Gauss-Newton makes tiny anywhere: unless the point is at LM's own end
(the Gauss-Newton step's gain at the rounding level, or the cosine at most ``sqrt(eps)``)
or the Gauss-Newton step passes the test too, a look around decides, along the
Gauss-Newton direction and each parameter's axis: a fall of ``S`` beyond ``sqrt(eps) S``
there is ``STALLED``, failed; none keeps the claim, as at a kink-minimum)

- ``failed``: residuals or Jacobian not finite, a zero Jacobian, ``max_tries`` rejected
  trials in a row, no step lowers ``S`` although the gradient does not vanish (``ROUGH``:
  unless the loss's own Hessian, by differences of ``J^T r``, puts the point at the rounding
  level of a minimum, ``lm_curvature.settled``: then it is ``xtol``), or ``S`` underflows (below
  the smallest normal number while the residuals do not vanish);
- ``max_steps`` accepted steps.

A problem that stops leaves the batch, so it costs no more work, and one problem's failure
(non-finite values, a singular system) only rejects that problem's step. Whether a
converged fit's parameters are determined (the rank of ``J D^-1``) is judged afterwards
(``verdict.lost_rank``), the same way for one fit and many.

    >>> import torch
    >>> x = torch.linspace(0, 3, 30, dtype=torch.float64)
    >>> truth = torch.tensor([[2.5, 1.3], [1.0, 0.5]], dtype=torch.float64)
    >>> y = truth[:, :1] * torch.exp(-truth[:, 1:] * x)
    >>> fn = lambda th, idx: th[:, :1] * torch.exp(-th[:, 1:] * x) - y[idx]
    >>> out = batch_lm(fn, torch.ones(2, 2, dtype=torch.float64))
    >>> [CODES[c] for c in out.code.tolist()]
    ['gtol', 'gtol']
    >>> torch.allclose(out.theta, truth, rtol=1e-12)
    True
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple

import torch

from .array_ns import NUMPY, TORCH, ops_for
from .lm_curvature import CRAWL, CRAWL_GAIN, choose_model, settled
from .many_parallel import check_stop
from .spd import factor, moments, solve_spd  # noqa: F401  (solve_spd: many_engines)
from .lm_codes import (  # noqa: F401  (importers of the codes from here: irls, many_kkt, ...)
    CODES, FTOL, GTOL, MAX_STEPS, NONFINITE, OPTIONS, PERFECT, ROUGH, ROUNDING, RUNAWAY,
    RUNAWAY_GAIN, RUNAWAY_GROWTH, RUNAWAY_STEPS, RUNNING, STALLED, TRIES, UNDERFLOW, WALK,
    WALK_GAIN, WALK_MOVE, WALK_STEPS, XTOL, ZERO, message, reason, runs_away)

ACCEPT = 1e-4           # smallest gain ratio of an accepted step
NOISE_ULPS = 4.0        # a polishing step may raise S by this many roundings: a model's
                        # value takes a few operations (Misra1b: a step to 1e-3 of the
                        # gradient raised S by 1.1 times the estimate of one rounding)

PROBES = 53             # that line search: steps 1, 1/2, ..., 2^-52 of the Gauss-Newton step
AXIS_PROBES = 13        # ... and steps 4^-1, ..., 4^-13 of each parameter's scale, both ways


class BatchLMResult(NamedTuple):
    theta: torch.Tensor     # (B, F) the last accepted point
    rss: torch.Tensor       # (B,) S there
    steps: torch.Tensor     # (B,) accepted steps
    code: torch.Tensor      # (B,) outcome code
    d: torch.Tensor         # (B, F) Moré's column scaling at the end
    M: torch.Tensor         # (B, F+1, F+1) [J r]^T [J r] at theta


def residuals_and_jacobians(fn: Callable, theta: torch.Tensor, idx: torch.Tensor):
    """``r = fn(theta, idx)`` ``(b, n)`` and ``J`` ``(b, n, F)`` in one double-backward pass
    (``lm.jacobian_from_graph``: row ``b`` of ``J`` depends on ``theta[b]`` alone)."""
    from .lm import jacobian_from_graph
    t = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        r = fn(t, idx)
        if not r.requires_grad:      # the residuals do not depend on theta
            return r.detach(), torch.zeros(r.shape + t.shape[-1:], dtype=r.dtype,
                                           device=r.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jac = jacobian_from_graph(r, t)
    return r.detach(), jac.detach()


def data_norm(y: torch.Tensor) -> torch.Tensor:
    """``|y|`` over the last axis without squaring to 0 or inf (data of scale 1e-300)."""
    top = y.abs().amax(-1, keepdim=True)
    top = torch.where(top > 0, top, 1.0)
    return top.squeeze(-1) * torch.linalg.vector_norm(y / top, dim=-1)


def too_small(sum_sq, nonzero, ydata, xp=TORCH):
    """True where a sum of squares ``sum_sq`` lies below the smallest normal number though
    the residuals do not all vanish (``nonzero``), while the data (norm ``ydata``) are so
    small that residuals of such a size still lie above their rounding level: the squares
    have lost their digits (data of scale 1e-160 square to 1e-320), and every test made on
    them with it. Residuals under the rounding of the data (an exact fit) and all-zero data
    are not judged so: their fit is as perfect as the precision can say."""
    tiny, eps = xp.finfo(sum_sq).tiny, xp.finfo(sum_sq).eps
    return (sum_sq < tiny) & nonzero & (ydata > 0) & (eps * ydata < tiny ** 0.5)


def _underflow(M, ydata, xp=TORCH):
    """``too_small`` for LM: ``S``, and residuals that do not vanish (``S > 0`` or
    ``J^T r != 0``); a "perfect fit" there is an underflow, not a fit."""
    F = M.shape[-1] - 1
    S = M[:, F, F]
    low = S < xp.finfo(S).tiny
    if not bool(low.any()):         # the usual case: one look at S
        return low
    return too_small(S, (S > 0) | (M[:, :F, F] != 0).any(-1), ydata, xp)


def _finite(M, xp=TORCH):
    # every entry of [J r] is squared into the diagonal of M: NaN or inf shows there
    return xp.isfinite(M.diagonal(0, -2, -1)).all(-1)


class BatchLM:
    """The state of B problems; ``iterate()`` makes one trial step for each one running.
    ``nfev`` counts evaluations of ``[J r]`` (each gives residuals and Jacobian). The state
    lives in ``ops`` (``array_ns``: numpy arrays for a few problems on the CPU, where a call
    costs a fifth of torch's; a large batch moves there when its running tail is that
    small); ``jacobian`` and ``normal`` take and give torch tensors, and
    so does ``result()``."""

    def __init__(self, jacobian: Callable, theta0: torch.Tensor, *, ydata=None,
                 options: dict | None = None,
                 max_steps: int | torch.Tensor | None = None,
                 normal: Callable | None = None, runaway: bool = True):
        o = {**OPTIONS, **(options or {})}
        # a model linear in its parameters has its minimum at a finite point (or a flat
        # valley LM does not walk along): a long march there is no runaway
        self.runaway = runaway
        self.ftol, self.xtol, self.gtol = (float(o[k]) for k in ("ftol", "xtol", "gtol"))
        self.max_tries, self.max_steps = int(o["max_tries"]), max_steps
        self.jacobian = jacobian
        # M = [J r]^T [J r] at (theta, idx): directly where it can be had without forming
        # the block (ManyProblem.normal: over cache-sized blocks of problems)
        self._normal = normal or (lambda t, i: moments(jacobian(t, i)))
        xp = self.ops = ops_for(theta0)
        B, F = theta0.shape
        self.F = F
        self.th = xp.copy(xp.own(theta0.detach()))
        self.eps = xp.finfo(self.th).eps
        self.idx = xp.own(torch.arange(B, device=theta0.device))
        self.M = self.normal(self.th, self.idx)
        self.nfev = 1
        with xp.errstate():
            col = xp.sqrt(xp.maximum(self.M.diagonal(0, -2, -1)[:, :F], 0.0))
            self.d = xp.where(col > 0, col, 1.0)
            xnorm = xp.norm(self.d * self.th)
            self.delta = float(o["factor"]) * xp.where(xnorm > 0, xnorm, 1.0)
            self.ref_norm = xp.norm(self.th)
        self.lam = xp.zeros(B, self.th)
        self.first = xp.zeros(B, self.th, bool) | True
        self.tries = xp.zeros(B, self.th, int)
        self.steps = xp.zeros(B, self.th, int)
        self.last_gn = xp.zeros(B, self.th) + math.inf
        self.no_gn = xp.zeros(B, self.th, bool)
        # the augmented model: the second-order term s2 (unscaled), whether measured
        # (have), whether it predicted the last step better (aug); the crawl's count, the
        # accepted steps at the last measurement (mark) and before the next (gap)
        self.s2 = xp.zeros((B, F, F), self.th)
        self.have = xp.zeros(B, self.th, bool)
        self.aug = xp.zeros(B, self.th, bool)
        self.crawl = xp.zeros(B, self.th, int)
        self.mark = xp.zeros(B, self.th, int)
        self.gap = xp.zeros(B, self.th, int) + CRAWL
        self.yd = xp.own(ydata.to(theta0.dtype)) if ydata is not None else xp.zeros(B, self.th)
        self.code = xp.where(_finite(self.M, xp), RUNNING, NONFINITE)
        # the last look at |theta| (ref_norm, above) and S (every RUNAWAY_STEPS accepted steps)
        self.ref_S = xp.copy(self.M[:, F, F])
        # the last look at theta and S of the walk test (every WALK_STEPS accepted steps)
        self.walk_th, self.walk_S = xp.copy(self.th), xp.copy(self.M[:, F, F])
        self.out = BatchLMResult(xp.copy(self.th), xp.copy(self.M[:, F, F]),
                                 xp.copy(self.steps), xp.copy(self.code), xp.copy(self.d),
                                 xp.copy(self.M))
        self._state = ("idx", "th", "M", "d", "delta", "lam", "first", "tries", "steps",
                       "last_gn", "no_gn", "yd", "code", "ref_norm", "ref_S", "s2", "have",
                       "aug", "crawl", "mark", "gap", "walk_th", "walk_S")
        if isinstance(max_steps, torch.Tensor):     # a limit of each problem's own
            self.max_steps = xp.own(max_steps.to(device=theta0.device))
            self._state += ("max_steps",)

    def normal(self, th, idx):
        """``M`` at the points ``th`` of the problems ``idx`` (arrays of ``ops``)."""
        xp = self.ops
        return xp.own(self._normal(xp.torch(th), xp.torch(idx)))

    def point(self, b: int = 0) -> torch.Tensor:
        """Running problem ``b``'s point ``(F,)`` as a torch tensor."""
        return self.ops.torch(self.th[b])

    @property
    def running(self) -> bool:
        return self.idx.shape[0] > 0

    def compact(self) -> None:
        """Write back the problems that stopped and drop them from the batch."""
        done = self.code != RUNNING
        if not bool(done.any()):
            return
        # row numbers once: a boolean mask would be turned into them again by every index
        xp = self.ops
        rows, keep = xp.rows(done), xp.rows(~done)
        at, o, F = self.idx[rows], self.out, self.F
        M = self.M[rows]
        o.theta[at], o.rss[at], o.steps[at] = self.th[rows], M[:, F, F], self.steps[rows]
        o.code[at], o.d[at], o.M[at] = self.code[rows], self.d[rows], M
        for name in self._state:
            setattr(self, name, getattr(self, name)[keep])
        if self.ops is TORCH and ops_for(self.th) is NUMPY:
            # the batch's tail (the last few hundred problems): numpy's calls cost less
            self.ops = NUMPY
            for name in self._state:
                setattr(self, name, NUMPY.own(getattr(self, name)))
            self.out = BatchLMResult(*(NUMPY.own(v) for v in self.out))

    def iterate(self) -> None:
        """One trial step for every running problem (see the module's docstring)."""
        self.compact()
        if not self.running:
            return
        with self.ops.errstate():
            self._iterate()

    def _iterate(self) -> None:
        xp = self.ops
        F, eps, M, d, th = self.F, self.eps, self.M, self.d, self.th
        S = M[:, F, F]
        col = xp.sqrt(xp.maximum(M.diagonal(0, -2, -1)[:, :F], 0.0))       # |J_j|
        d = self.d = xp.maximum(d, col)
        a = M[:, :F, :F] / (d[:, :, None] * d[:, None, :])
        g = M[:, :F, F] / d
        rn = xp.sqrt(S)
        cos = xp.amax(xp.where(col > 0, abs(g * d) / xp.maximum(col * rn[:, None], 1e-300),
                               0.0))
        err = eps * (rn + 2.0 * self.yd)
        noise = 2.0 * rn * err + err * err
        xnorm = xp.norm(d * th)
        # the Gauss-Newton step (a tiny damping where J D^-1 has lost rank)
        fac = xp.factor(a)
        full = fac.ok
        if not bool(full.all()):
            tiny = (10.0 * F * eps) * xp.eye(F, a)
            fac2 = xp.factor(a + tiny)
            y_gn = xp.where(full[:, None], fac.solve(-g), fac2.solve(-g))
        else:
            y_gn = fac.solve(-g)
        y_gn = xp.where(xp.isfinite(y_gn), y_gn, 0.0)
        gn_pred = -(g * y_gn).sum(-1)
        gn_norm = xp.norm(y_gn)

        stop = xp.where(_underflow(M, self.yd, xp), UNDERFLOW, xp.where(S == 0, PERFECT, xp.where(
            xp.amax(col) == 0, ZERO, xp.where(cos <= self.gtol, GTOL, RUNNING))))
        polish = (stop == RUNNING) & (gn_pred <= noise) & ~self.no_gn
        polished = polish & xp.isfinite(self.last_gn)
        stop = xp.where(polish & (gn_norm <= self.xtol * xnorm), XTOL, stop)
        stop = xp.where(polished & (gn_norm > 0.9 * self.last_gn) & (stop == RUNNING),
                        ROUNDING, stop)
        polish = polish & (stop == RUNNING)

        if not bool((stop == RUNNING).any()):
            self.code = stop
            return
        # the model of an LM trial: J^T J, or J^T J + s2 where that predicted better
        aug = self.aug
        a_aug = a + self.s2 / (d[:, :, None] * d[:, None, :]) if bool(self.have.any()) else a
        if bool(aug.any()):
            fac_m = xp.factor(xp.where(aug[:, None, None], a_aug, a))
            aug = aug & fac_m.ok                # not positive definite: Gauss-Newton's
            y_m = xp.where(aug[:, None], fac_m.solve(-g), y_gn)
            y_m = xp.where(xp.isfinite(y_m), y_m, 0.0)
            a_m, full_m, m_norm = xp.where(aug[:, None, None], a_aug, a), full | aug, xp.norm(y_m)
        else:
            a_m, y_m, full_m, m_norm = a, y_gn, full, gn_norm
        lam = xp.where(m_norm <= 1.1 * self.delta, 0.0, self.lam)
        need = xp.rows((stop == RUNNING) & ~polish & (m_norm > 1.1 * self.delta))
        y = xp.where(polish[:, None], y_gn, y_m)
        if need.shape[0]:
            every = need.shape[0] == a.shape[0] and not bool(aug.any())  # A's factor at hand
            lam_n, y_n = _lm_parameter(a_m[need], g[need], y_m[need], m_norm[need],
                                       full_m[need], self.delta[need], self.lam[need], xp,
                                       fac if every else None)
            lam[need] = lam_n
            y[need] = y_n
        lam = xp.where(polish, 0.0, lam)
        ynorm = xp.norm(y)
        pred = -(g * y).sum(-1) + lam * ynorm * ynorm
        jy2 = (y * (a_m @ y[:, :, None])[:, :, 0]).sum(-1)

        t = th + y / d
        M_t = self.normal(t, self.idx)
        self.nfev += 1
        S_t = M_t[:, F, F]
        finite_t = _finite(M_t, xp)
        lm = (stop == RUNNING) & ~polish
        # the trust region after an LM trial, as lmder updates it
        delta = xp.where(lm & self.first, xp.minimum(self.delta, ynorm), self.delta)
        ok = xp.isfinite(S_t) & (0.01 * S_t < S)
        actred = xp.where(ok, 1.0 - S_t / S, -1.0)
        prered = pred / S
        ratio = xp.where(prered > 0, actred / prered, 0.0)
        dirder = -(jy2 + lam * ynorm * ynorm) / S
        temp = xp.where(actred >= 0, 0.5, 0.5 * dirder / (dirder + 0.5 * actred))
        temp = xp.where(~ok | ~(temp >= 0.1), 0.1, temp)
        low = ratio <= 0.25
        high = ~low & ((lam == 0) | (ratio >= 0.75))
        new_delta = xp.where(low, temp * xp.minimum(delta, ynorm / 0.1),
                             xp.where(high, ynorm / 0.5, delta))
        new_lam = xp.where(low, lam / temp, xp.where(high, 0.5 * lam, lam))
        move_lm = lm & (ratio >= ACCEPT)
        move_gn = polish & finite_t & (S_t <= S + NOISE_ULPS * noise)
        # an accepted point whose Jacobian is not finite: stay, in a smaller region
        bad_move = move_lm & ~finite_t
        move_lm = move_lm & finite_t
        new_delta = xp.where(bad_move, 0.25 * new_delta, new_delta)
        move = move_lm | move_gn

        col_t = xp.sqrt(xp.maximum(M_t.diagonal(0, -2, -1)[:, :F], 0.0))
        xnorm_t = xp.norm(xp.maximum(d, col_t) * t)
        fine = (gn_pred <= 100.0 * noise) | (cos <= math.sqrt(eps))
        c_ftol = move_lm & (abs(actred) <= self.ftol) & (prered <= self.ftol) & (ratio <= 2.0)
        c_xtol = move_lm & ~c_ftol & (ynorm <= self.xtol * xp.maximum(xnorm_t, xnorm))
        # MINPACK's tests judge the step taken, which a trust region shrunk by a model too
        # curved for Gauss-Newton (a logistic steeper than the spacing of x) makes tiny while
        # the full Gauss-Newton step still predicts a large gain. Unless the Gauss-Newton
        # step passes the test too, a look along it and along each axis decides: the loss
        # falls there (STALLED: no minimum here), or not (a minimum on a kink)
        suspect = (c_ftol & ~(fine | (gn_pred <= self.ftol * S))) | \
            (c_xtol & ~(fine | (gn_norm <= self.xtol * xnorm)))
        stalled = self._descends(suspect, th, y_gn / d, S, noise, d)
        c_ftol, c_xtol = c_ftol & ~stalled, c_xtol & ~stalled
        stuck = lm & ~move_lm & ((new_delta <= eps * xnorm) |
                                 ((abs(actred) <= eps) & (prered <= eps)))
        # a Gauss-Newton polish step that raised S: back to LM once, or done
        gn_back = polish & ~move_gn
        stop = xp.where(gn_back & polished, ROUNDING, stop)
        stop = xp.where(c_ftol, FTOL, xp.where(c_xtol, XTOL, stop))
        # no step found while the Gauss-Newton model still predicts a gain: rough, unless the
        # loss's own curvature (which J^T J leaves out: large residuals curve it) puts the
        # point at the rounding level of a minimum
        rough = stuck & ~fine
        if bool(rough.any()):
            rough = rough & ~settled(self, rough, th, g, S, noise, d)
        stop = xp.where(stuck, xp.where(rough, ROUGH, ROUNDING), stop)
        stop = xp.where(stalled, STALLED, stop)
        self.tries = xp.where(move, 0, self.tries + lm)
        stop = xp.where((stop == RUNNING) & (self.tries >= self.max_tries), TRIES, stop)

        self.th = xp.where(move[:, None], t, th)
        self.M = xp.where(move[:, None, None], M_t, M)
        self.steps = self.steps + move
        stop = self._runaway(move, stop)
        stop = self._walk(move, stop)
        if self.max_steps is not None:
            stop = xp.where((stop == RUNNING) & (self.steps >= self.max_steps), MAX_STEPS,
                            stop)
        stop = xp.where((stop != RUNNING) & _underflow(self.M, self.yd, xp), UNDERFLOW, stop)
        self.delta = xp.where(lm, new_delta, self.delta)
        self.lam = xp.where(lm, new_lam, self.lam)
        self.first = self.first & ~lm
        self.last_gn = xp.where(move_gn, gn_norm, math.inf)
        self.no_gn = gn_back & ~polished
        self.code = stop
        choose_model(self, lm & ok & finite_t, y, g, a, a_aug, S - S_t,
                     move_lm & (actred <= CRAWL_GAIN), stop == RUNNING)

    def _descends(self, rows, th, step, S, noise, d):
        """Where ``rows``: whether ``S`` falls beyond ``100 noise`` and ``sqrt(eps) S`` at one
        of the points ``th + t step``, ``t = 1, 1/2, ..., 2^-(PROBES-1)`` (the Gauss-Newton
        direction), or ``th +- t s_j e_j`` along each parameter's axis, ``t = 4^-1, ...,
        4^-AXIS_PROBES`` of its scale ``s_j = max(|theta_j|, |r| / |J_j|)`` (at a kink of
        the model a Gauss-Newton step of one side points across it; a parameter not held by
        the kink may still move). Rare: a row's last look before a claim."""
        xp = self.ops
        out = rows & False
        at = xp.rows(rows)
        if at.shape[0] == 0:
            return out
        t0, idx = th[at], self.idx[at]
        rn = xp.sqrt(xp.maximum(S[at], 0.0))[:, None]
        scale = xp.maximum(abs(t0), xp.where(d[at] > 0, rn / d[at], 0.0))
        scale = xp.where(scale > 0, scale, 1.0)
        moves = [0.5 ** j * step[at] for j in range(PROBES)]
        eye = xp.eye(self.F, th)
        moves += [sign * 0.25 ** k * scale * eye[j] for j in range(self.F) for sign in (1, -1)
                  for k in range(1, AXIS_PROBES + 1)]
        lowest = xp.copy(S[at])
        for move in moves:
            with torch.no_grad():
                s_c = self.normal(t0 + move, idx)[:, self.F, self.F]
            self.nfev += 1
            lowest = xp.minimum(lowest, xp.where(xp.isfinite(s_c), s_c, math.inf))
        # a gain of sqrt(eps) S at least: a point a hair off a kink-minimum (a ReLU's break
        # 1e-10 from a data point) has a lower loss on the kink, but is at its minimum
        floor = xp.maximum(100.0 * noise[at], math.sqrt(self.eps) * S[at])
        out[at] = S[at] - lowest > floor
        return out

    def _runaway(self, move, stop):
        """Every RUNAWAY_STEPS accepted steps: stop (RUNAWAY) a problem whose ``|theta|``
        grew RUNAWAY_GROWTH-fold since the last look while ``S`` fell by less than
        RUNAWAY_GAIN of itself. A minimum is approached with ``S`` falling or ``theta``
        settling; this is a walk to infinity along a valley whose floor only approaches its
        infimum (the same verdict the step limit would give, hundreds of steps sooner)."""
        look = move & (self.steps % RUNAWAY_STEPS == 0)
        if not self.runaway or not bool(look.any()):
            return stop
        F, xp = self.F, self.ops
        norm, S = xp.norm(self.th), self.M[:, F, F]
        away = look & runs_away(norm, self.ref_norm, S, self.ref_S)
        self.ref_norm = xp.where(look, norm, self.ref_norm)
        self.ref_S = xp.where(look, S, self.ref_S)
        return xp.where(away & (stop == RUNNING), RUNAWAY, stop)

    def _walk(self, move, stop):
        """Every WALK_STEPS accepted steps: stop (WALK) a problem some parameter of which
        moved by WALK_MOVE of its scale since the last look while ``S`` fell by less than
        WALK_GAIN of itself. The scale of ``theta_j`` is the larger of ``|theta_j|`` (both
        looks) and ``|r| / |J_j|``, the change that would move the residuals by their own
        size: near a minimum, however ill-conditioned, a parameter still moving by that much
        lowers ``S`` by far more (a change of ``S`` by ``1e-8 S`` moves a parameter by about
        ``1e-4 sqrt(n)`` of its standard error). What is left is a valley too flat for the
        data to place the fit in (a 4PL curve's top and ec50 sliding together past the last
        dose), or a slow walk to infinity that the runaway test's growth of ``|theta|``
        misses; the step limit would give no better verdict, hundreds of steps later."""
        look = move & (self.steps % WALK_STEPS == 0)
        if not self.runaway or not bool(look.any()):
            return stop
        F, xp = self.F, self.ops
        th, S = self.th, self.M[:, F, F]
        col = xp.sqrt(xp.maximum(self.M.diagonal(0, -2, -1)[:, :F], 0.0))
        scale = xp.maximum(xp.maximum(abs(th), abs(self.walk_th)),
                           xp.where(col > 0, xp.sqrt(S)[:, None] / xp.maximum(col, 1e-300),
                                    0.0))
        moved = xp.amax(xp.where(scale > 0, abs(th - self.walk_th) / xp.maximum(scale, 1e-300),
                                 0.0)) >= WALK_MOVE
        walk = look & moved & (S >= (1 - WALK_GAIN) * self.walk_S)
        self.walk_th = xp.where(look[:, None], th, self.walk_th)
        self.walk_S = xp.where(look, S, self.walk_S)
        return xp.where(walk & (stop == RUNNING), WALK, stop)

    def result(self) -> BatchLMResult:
        self.compact()
        return BatchLMResult(*(self.ops.torch(v) for v in self.out))


def _lm_parameter(a, g, y_gn, gn_norm, full, delta, lam, xp=TORCH, fac=None):
    """The damping ``lam`` (and its step ``y``) whose scaled step has length ``delta``
    within 10 percent (MINPACK's ``lmpar`` on the normal equations; ``gn_norm > delta``;
    ``fac``: ``a``'s Cholesky factor, where at hand)."""
    shifted = xp.shifted(a, g, fac)
    dy0 = shifted.quad(y_gn)                            # y0^T A^-1 y0
    gnorm = xp.norm(g)
    lo = xp.where(full & (dy0 > 0), (gn_norm - delta) / delta * gn_norm * gn_norm / dy0, 0.0)
    lo = xp.where(xp.isfinite(lo), lo, 0.0)
    hi = gnorm / delta
    lam = xp.where((lo < lam) & (lam < hi), lam, xp.maximum(lo, 1e-3 * hi))
    active = full | True
    y = xp.zeros(g.shape, g)
    for _ in range(30):
        y_l, ynorm, dy = shifted.at(lam)
        y = xp.where(active[:, None], y_l, y)
        phi = ynorm - delta
        active = active & ~((abs(phi) <= 0.1 * delta) | (hi - lo <= 1e-12 * hi))
        if not bool(active.any()):
            break
        lo = xp.where(active & (phi > 0), xp.maximum(lo, lam), lo)
        hi = xp.where(active & (phi <= 0), xp.minimum(hi, lam), hi)
        step = xp.where(dy > 0, phi / delta * ynorm * ynorm / xp.maximum(dy, 1e-300), math.inf)
        new = lam + step
        new = xp.where((lo < new) & (new < hi), new,
                       xp.where(lo > 0, xp.sqrt(lo * hi), 0.5 * (lo + hi)))
        lam = xp.where(active, new, lam)
    else:
        y = xp.where(active[:, None], shifted.at(lam)[0], y)
    return lam, xp.where(xp.isfinite(y), y, 0.0)


def batch_lm(fn: Callable, theta0: torch.Tensor, *, ydata: torch.Tensor | None = None,
             max_steps: int | torch.Tensor = 1000, jacobian: Callable | None = None,
             normal: Callable | None = None, runaway: bool = True,
             **options) -> BatchLMResult:
    """Minimise ``|fn(theta, idx)|^2`` for each of the ``B`` rows of ``theta0`` ``(B, F)``
    to the end. ``ydata`` ``(B,)``: the norm of each problem's (weighted) data, for the
    rounding level of ``S`` (0 when not given). ``jacobian(theta, idx) -> [J r]^T``
    ``(b, F+1, n)`` (by default autograd on ``fn``); ``normal(theta, idx) -> M``
    ``(b, F+1, F+1)``, its ``moments``, where they can be had directly; ``runaway``: False
    for a model linear in its parameters (no test for parameters running off); ``options``:
    ``OPTIONS``; ``max_steps``: one limit, or each problem's ``(B,)``."""
    if jacobian is None:
        def jacobian(t, i):
            r, jac = residuals_and_jacobians(fn, t, i)
            return torch.cat([jac.transpose(-1, -2), r.unsqueeze(-2)], -2)
    lm = BatchLM(jacobian, theta0, ydata=ydata, options=options, max_steps=max_steps,
                 normal=normal, runaway=runaway)
    top = int(max_steps.max()) if isinstance(max_steps, torch.Tensor) else max_steps
    for _ in range(max(1, top) * 4 + lm.max_tries):
        check_stop()
        lm.iterate()
        if not lm.running:
            break
    else:                                # the loop's own limit (rejections)
        lm.code = lm.ops.where(lm.code == RUNNING, MAX_STEPS, lm.code)
    return lm.result()
