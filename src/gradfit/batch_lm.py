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
  beyond rounding;
(``ftol`` and ``xtol`` judge the step taken, which a trust region shrunk by a loss too curved
or not smooth for Gauss-Newton makes tiny anywhere: unless the point is at LM's own end
(the Gauss-Newton step's gain at the rounding level, or the cosine at most ``sqrt(eps)``)
or the Gauss-Newton step passes the test too, a look around decides, along the
Gauss-Newton direction and each parameter's axis: a fall of ``S`` beyond ``sqrt(eps) S``
there is ``STALLED``, failed; none keeps the claim, as at a kink-minimum)

- ``failed``: residuals or Jacobian not finite, a zero Jacobian, ``max_tries`` rejected
  trials in a row, no step lowers ``S`` although the gradient does not vanish, or ``S``
  underflows (below the smallest normal number while the residuals do not vanish);
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

from .spd import factor, moments, solve_spd  # noqa: F401  (solve_spd: many_engines)

OPTIONS = {
    "ftol": 1e-15,      # relative reduction of S below which a step ends the fit
    "xtol": 1e-15,      # relative scaled step below which a step ends the fit
    "gtol": 1e-15,      # cosine between residuals and Jacobian columns that ends the fit
    "factor": 0.3,      # first trust region radius, times |D theta0| (MINPACK's factor;
                        # 0.1 to 10 solve all 54 NIST fits, MINPACK's 100 not BoxBOD's)
    "max_tries": 100,   # rejected trials in a row before giving up
}
ACCEPT = 1e-4           # smallest gain ratio of an accepted step
NOISE_ULPS = 4.0        # a polishing step may raise S by this many roundings: a model's
                        # value takes a few operations (Misra1b: a step to 1e-3 of the
                        # gradient raised S by 1.1 times the estimate of one rounding)

CODES = ("running", "gtol", "ftol", "xtol", "max_steps", "failed", "failed", "failed",
         "gtol", "failed", "xtol", "failed", "failed", "failed")
RUNNING, GTOL, FTOL, XTOL, MAX_STEPS, NONFINITE, TRIES, ROUGH, PERFECT, ZERO = range(10)
ROUNDING = 10           # an xtol code that says "at the rounding level" (reported as xtol)
UNDERFLOW = 11          # S below the smallest normal number: no test on it can be trusted
RUNAWAY = 12            # the parameters grow without bound while S barely falls
RUNAWAY_STEPS = 50      # accepted steps between two looks at |theta| and S
RUNAWAY_GROWTH = 1.5    # ... |theta| grew by this factor while
RUNAWAY_GAIN = 1e-3     # ... S fell by less than this, relatively
STALLED = 13            # ftol/xtol by a step a shrunk trust region made tiny, where the
                        # loss still falls along the Gauss-Newton direction or an axis
PROBES = 53             # that line search: steps 1, 1/2, ..., 2^-52 of the Gauss-Newton step
AXIS_PROBES = 13        # ... and steps 4^-1, ..., 4^-13 of each parameter's scale, both ways


def message(code: int, options: dict, max_steps: int | None = None) -> str:
    """The text of an outcome code, the same for one fit and many."""
    o = {**OPTIONS, **options}
    return {
        GTOL: "the gradient vanished (largest cosine of residuals and Jacobian columns <= "
              f"gtol={o['gtol']:g})",
        FTOL: f"the residual sum of squares stopped falling (relative reduction below "
              f"ftol={o['ftol']:g})",
        XTOL: f"the parameters stopped changing (relative step below xtol={o['xtol']:g})",
        ROUNDING: "the parameters are at the rounding level of the data (no step lowers the "
                  "loss beyond rounding, or Gauss-Newton steps stopped shrinking)",
        MAX_STEPS: f"reached the step limit ({max_steps} steps)",
        NONFINITE: "the residuals or their derivatives are not finite here",
        TRIES: f"no step lowered the loss in {int(o['max_tries'])} tries",
        ROUGH: "no step lowered the loss, down to steps at the rounding level of the "
               "parameters, although the gradient does not vanish: the model may not be "
               "smooth here",
        PERFECT: "the residuals vanish: a perfect fit",
        ZERO: "the Jacobian is zero: the model does not depend on its parameters here",
        RUNAWAY: f"the parameters run off without bound (|theta| grew {RUNAWAY_GROWTH:g}-fold "
                 f"over {RUNAWAY_STEPS} steps while the loss fell by less than "
                 f"{RUNAWAY_GAIN:g} of itself): the "
                 "loss has no minimum near here, only a limit as parameters grow (as "
                 "a*exp(b*x)+c tends to a line when b -> 0); try other starting values, or a "
                 "model without that limit",
        STALLED: "LM stalled short of a minimum: its trust region shrank until its steps "
                 "gained nothing, while the loss still falls nearby (along the Gauss-Newton "
                 "direction or a parameter's axis): the loss is too curved or not smooth here "
                 "for LM (a logistic steeper than the spacing of x, or a kink of abs, max or "
                 "relu sitting on a data point); try other starting values",
        UNDERFLOW: "the residuals are too small to square in this precision (their sum of "
                   "squares underflows below the smallest normal number), so the fit cannot "
                   "be judged: expected data of a scale nearer 1; rescale y (and sigma)",
    }[code]


def runs_away(norm, ref_norm, loss, ref_loss):
    """Whether ``|theta|`` (``norm``) grew RUNAWAY_GROWTH-fold since ``ref_norm`` while the
    loss fell by less than RUNAWAY_GAIN of ``ref_loss`` (tensors or floats): LM's and
    IRLS's test, every RUNAWAY_STEPS steps."""
    return (norm >= RUNAWAY_GROWTH * ref_norm) & (loss >= (1 - RUNAWAY_GAIN) * ref_loss)


def reason(code: int) -> str:
    return CODES[code]


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


def too_small(sum_sq: torch.Tensor, nonzero: torch.Tensor, ydata: torch.Tensor) -> torch.Tensor:
    """True where a sum of squares ``sum_sq`` lies below the smallest normal number though
    the residuals do not all vanish (``nonzero``), while the data (norm ``ydata``) are so
    small that residuals of such a size still lie above their rounding level: the squares
    have lost their digits (data of scale 1e-160 square to 1e-320), and every test made on
    them with it. Residuals under the rounding of the data (an exact fit) and all-zero data
    are not judged so: their fit is as perfect as the precision can say."""
    tiny = torch.finfo(sum_sq.dtype).tiny
    eps = torch.finfo(sum_sq.dtype).eps
    return (sum_sq < tiny) & nonzero & (ydata > 0) & (eps * ydata < tiny ** 0.5)


def _underflow(M: torch.Tensor, ydata: torch.Tensor) -> torch.Tensor:
    """``too_small`` for LM: ``S``, and residuals that do not vanish (``S > 0`` or
    ``J^T r != 0``); a "perfect fit" there is an underflow, not a fit."""
    F = M.shape[-1] - 1
    S = M[:, F, F]
    low = S < torch.finfo(S.dtype).tiny
    if not bool(low.any()):         # the usual case: one look at S
        return low
    return too_small(S, (S > 0) | (M[:, :F, F] != 0).any(-1), ydata)


def _finite(M: torch.Tensor) -> torch.Tensor:
    # every entry of [J r] is squared into the diagonal of M: NaN or inf shows there
    return torch.isfinite(M.diagonal(dim1=-2, dim2=-1)).all(-1)


class BatchLM:
    """The state of B problems; ``iterate()`` makes one trial step for each one running.
    ``nfev`` counts evaluations of ``[J r]`` (each gives residuals and Jacobian)."""

    def __init__(self, jacobian: Callable, theta0: torch.Tensor, *, ydata=None,
                 options: dict | None = None, max_steps: int | None = None,
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
        self.normal = normal or (lambda t, i: moments(jacobian(t, i)))
        B, F = theta0.shape
        self.F, dtype, dev = F, theta0.dtype, theta0.device
        self.eps = torch.finfo(dtype).eps
        self.idx = torch.arange(B, device=dev)
        self.th = theta0.detach().clone()
        self.M = self.normal(self.th, self.idx)
        self.nfev = 1
        col = self.M.diagonal(dim1=-2, dim2=-1)[:, :F].clamp_min(0).sqrt()
        self.d = torch.where(col > 0, col, 1.0)
        xnorm = torch.linalg.vector_norm(self.d * self.th, dim=-1)
        self.delta = float(o["factor"]) * torch.where(xnorm > 0, xnorm, 1.0)
        self.lam = torch.zeros(B, dtype=dtype, device=dev)
        self.first = torch.ones(B, dtype=torch.bool, device=dev)
        self.tries = torch.zeros(B, dtype=torch.long, device=dev)
        self.steps = torch.zeros(B, dtype=torch.long, device=dev)
        self.last_gn = torch.full((B,), math.inf, dtype=dtype, device=dev)
        self.no_gn = torch.zeros(B, dtype=torch.bool, device=dev)
        self.yd = ydata.to(dtype) if ydata is not None else torch.zeros(B, dtype=dtype, device=dev)
        self.code = torch.where(_finite(self.M), RUNNING, NONFINITE)
        # the last look at |theta| and S (every RUNAWAY_STEPS accepted steps)
        self.ref_norm = torch.linalg.vector_norm(self.th, dim=-1)
        self.ref_S = self.M[:, F, F].clone()
        self.out = BatchLMResult(self.th.clone(), self.M[:, F, F].clone(), self.steps.clone(),
                                 self.code.clone(), self.d.clone(), self.M.clone())
        self._state = ("idx", "th", "M", "d", "delta", "lam", "first", "tries", "steps",
                       "last_gn", "no_gn", "yd", "code", "ref_norm", "ref_S")

    @property
    def running(self) -> bool:
        return self.idx.numel() > 0

    def compact(self) -> None:
        """Write back the problems that stopped and drop them from the batch."""
        done = self.code != RUNNING
        if not bool(done.any()):
            return
        # row numbers once: a boolean mask would be turned into them again by every index
        rows, keep = done.nonzero().flatten(), (~done).nonzero().flatten()
        at, o, F = self.idx[rows], self.out, self.F
        M = self.M.index_select(0, rows)
        o.theta[at], o.rss[at], o.steps[at] = self.th[rows], M[:, F, F], self.steps[rows]
        o.code[at], o.d[at], o.M[at] = self.code[rows], self.d[rows], M
        for name in self._state:
            setattr(self, name, getattr(self, name).index_select(0, keep))

    def iterate(self) -> None:
        """One trial step for every running problem (see the module's docstring)."""
        self.compact()
        if not self.running:
            return
        F, eps, M, d, th = self.F, self.eps, self.M, self.d, self.th
        S = M[:, F, F]
        col = M.diagonal(dim1=-2, dim2=-1)[:, :F].clamp_min(0).sqrt()       # |J_j|
        d = self.d = torch.maximum(d, col)
        a = M[:, :F, :F] / (d.unsqueeze(-1) * d.unsqueeze(-2))
        g = M[:, :F, F] / d
        rn = S.sqrt()
        cos = torch.where(col > 0, (g * d).abs() / (col * rn.unsqueeze(-1)).clamp_min(1e-300),
                          0.0).amax(-1)
        err = eps * (rn + 2.0 * self.yd)
        noise = 2.0 * rn * err + err * err
        xnorm = torch.linalg.vector_norm(d * th, dim=-1)
        # the Gauss-Newton step (a tiny damping where J D^-1 has lost rank)
        fac = factor(a)
        full = fac.ok
        if not bool(full.all()):
            tiny = (10.0 * F * eps) * torch.eye(F, dtype=a.dtype, device=a.device)
            fac2 = factor(a + tiny)
            y_gn = torch.where(full.unsqueeze(-1), fac.solve(-g), fac2.solve(-g))
        else:
            y_gn = fac.solve(-g)
        y_gn = torch.where(torch.isfinite(y_gn), y_gn, 0.0)
        gn_pred = -(g * y_gn).sum(-1)
        gn_norm = torch.linalg.vector_norm(y_gn, dim=-1)

        stop = torch.where(_underflow(M, self.yd), UNDERFLOW, torch.where(S == 0, PERFECT, torch.where(
            col.amax(-1) == 0, ZERO, torch.where(cos <= self.gtol, GTOL, RUNNING))))
        polish = (stop == RUNNING) & (gn_pred <= noise) & ~self.no_gn
        polished = polish & torch.isfinite(self.last_gn)
        stop = torch.where(polish & (gn_norm <= self.xtol * xnorm), XTOL, stop)
        stop = torch.where(polished & (gn_norm > 0.9 * self.last_gn) & (stop == RUNNING),
                           ROUNDING, stop)
        polish = polish & (stop == RUNNING)

        if not bool((stop == RUNNING).any()):
            self.code = stop
            return
        lam = torch.where(gn_norm <= 1.1 * self.delta, 0.0, self.lam)
        need = ((stop == RUNNING) & ~polish & (gn_norm > 1.1 * self.delta)).nonzero().flatten()
        y = y_gn.clone()
        if need.numel():
            lam_n, y_n = _lm_parameter(a[need], g[need], y_gn[need], gn_norm[need],
                                       full[need], self.delta[need], self.lam[need])
            lam = lam.index_put((need,), lam_n)
            y = y.index_put((need,), y_n)
        lam = torch.where(polish, 0.0, lam)
        ynorm = torch.linalg.vector_norm(y, dim=-1)
        pred = -(g * y).sum(-1) + lam * ynorm.square()
        jy2 = (y * (a @ y.unsqueeze(-1)).squeeze(-1)).sum(-1)

        t = th + y / d
        M_t = self.normal(t, self.idx)
        self.nfev += 1
        S_t = M_t[:, F, F]
        finite_t = _finite(M_t)
        lm = (stop == RUNNING) & ~polish
        # the trust region after an LM trial, as lmder updates it
        delta = torch.where(lm & self.first, torch.minimum(self.delta, ynorm), self.delta)
        ok = torch.isfinite(S_t) & (0.01 * S_t < S)
        actred = torch.where(ok, 1.0 - S_t / S, -1.0)
        prered = pred / S
        ratio = torch.where(prered > 0, actred / prered, 0.0)
        dirder = -(jy2 + lam * ynorm.square()) / S
        temp = torch.where(actred >= 0, 0.5, 0.5 * dirder / (dirder + 0.5 * actred))
        temp = torch.where(~ok | ~(temp >= 0.1), 0.1, temp)
        low = ratio <= 0.25
        high = ~low & ((lam == 0) | (ratio >= 0.75))
        new_delta = torch.where(low, temp * torch.minimum(delta, ynorm / 0.1),
                                torch.where(high, ynorm / 0.5, delta))
        new_lam = torch.where(low, lam / temp, torch.where(high, 0.5 * lam, lam))
        move_lm = lm & (ratio >= ACCEPT)
        move_gn = polish & finite_t & (S_t <= S + NOISE_ULPS * noise)
        # an accepted point whose Jacobian is not finite: stay, in a smaller region
        bad_move = move_lm & ~finite_t
        move_lm = move_lm & finite_t
        new_delta = torch.where(bad_move, 0.25 * new_delta, new_delta)
        move = move_lm | move_gn

        col_t = M_t.diagonal(dim1=-2, dim2=-1)[:, :F].clamp_min(0).sqrt()
        xnorm_t = torch.linalg.vector_norm(torch.maximum(d, col_t) * t, dim=-1)
        fine = (gn_pred <= 100.0 * noise) | (cos <= math.sqrt(eps))
        c_ftol = move_lm & (actred.abs() <= self.ftol) & (prered <= self.ftol) & (ratio <= 2.0)
        c_xtol = move_lm & ~c_ftol & (ynorm <= self.xtol * torch.maximum(xnorm_t, xnorm))
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
                                 ((actred.abs() <= eps) & (prered <= eps)))
        # a Gauss-Newton polish step that raised S: back to LM once, or done
        gn_back = polish & ~move_gn
        stop = torch.where(gn_back & polished, ROUNDING, stop)
        stop = torch.where(c_ftol, FTOL, torch.where(c_xtol, XTOL, stop))
        stop = torch.where(stuck, torch.where(fine, ROUNDING, ROUGH), stop)
        stop = torch.where(stalled, STALLED, stop)
        self.tries = torch.where(move, 0, self.tries + lm.long())
        stop = torch.where((stop == RUNNING) & (self.tries >= self.max_tries), TRIES, stop)

        self.th = torch.where(move.unsqueeze(-1), t, th)
        self.M = torch.where(move[:, None, None], M_t, M)
        self.steps = self.steps + move.long()
        stop = self._runaway(move, stop)
        if self.max_steps is not None:
            stop = torch.where((stop == RUNNING) & (self.steps >= self.max_steps), MAX_STEPS,
                               stop)
        stop = torch.where((stop != RUNNING) & _underflow(self.M, self.yd), UNDERFLOW, stop)
        self.delta = torch.where(lm, new_delta, self.delta)
        self.lam = torch.where(lm, new_lam, self.lam)
        self.first = self.first & ~lm
        self.last_gn = torch.where(move_gn, gn_norm, math.inf)
        self.no_gn = gn_back & ~polished
        self.code = stop

    def _descends(self, rows, th, step, S, noise, d) -> torch.Tensor:
        """Where ``rows``: whether ``S`` falls beyond ``100 noise`` and ``sqrt(eps) S`` at one
        of the points ``th + t step``, ``t = 1, 1/2, ..., 2^-(PROBES-1)`` (the Gauss-Newton
        direction), or ``th +- t s_j e_j`` along each parameter's axis, ``t = 4^-1, ...,
        4^-AXIS_PROBES`` of its scale ``s_j = max(|theta_j|, |r| / |J_j|)`` (at a kink of
        the model a Gauss-Newton step of one side points across it; a parameter not held by
        the kink may still move). Rare: a row's last look before a claim."""
        out = torch.zeros_like(rows)
        at = rows.nonzero().flatten()
        if at.numel() == 0:
            return out
        t0, idx = th[at], self.idx[at]
        rn = S[at].clamp_min(0).sqrt().unsqueeze(-1)
        scale = torch.maximum(t0.abs(), torch.where(d[at] > 0, rn / d[at], 0.0))
        scale = torch.where(scale > 0, scale, 1.0)
        moves = [0.5 ** j * step[at] for j in range(PROBES)]
        eye = torch.eye(self.F, dtype=th.dtype, device=th.device)
        moves += [sign * 0.25 ** k * scale * eye[j] for j in range(self.F) for sign in (1, -1)
                  for k in range(1, AXIS_PROBES + 1)]
        lowest = S[at].clone()
        for move in moves:
            with torch.no_grad():
                s_c = self.normal(t0 + move, idx)[:, self.F, self.F]
            self.nfev += 1
            lowest = torch.minimum(lowest, torch.where(torch.isfinite(s_c), s_c, math.inf))
        # a gain of sqrt(eps) S at least: a point a hair off a kink-minimum (a ReLU's break
        # 1e-10 from a data point) has a lower loss on the kink, but is at its minimum
        floor = torch.maximum(100.0 * noise[at], math.sqrt(self.eps) * S[at])
        out[at] = S[at] - lowest > floor
        return out

    def _runaway(self, move: torch.Tensor, stop: torch.Tensor) -> torch.Tensor:
        """Every RUNAWAY_STEPS accepted steps: stop (RUNAWAY) a problem whose ``|theta|``
        grew RUNAWAY_GROWTH-fold since the last look while ``S`` fell by less than
        RUNAWAY_GAIN of itself. A minimum is approached with ``S`` falling or ``theta``
        settling; this is a walk to infinity along a valley whose floor only approaches its
        infimum (the same verdict the step limit would give, hundreds of steps sooner)."""
        look = move & (self.steps % RUNAWAY_STEPS == 0)
        if not self.runaway or not bool(look.any()):
            return stop
        F = self.F
        norm, S = torch.linalg.vector_norm(self.th, dim=-1), self.M[:, F, F]
        away = look & runs_away(norm, self.ref_norm, S, self.ref_S)
        self.ref_norm = torch.where(look, norm, self.ref_norm)
        self.ref_S = torch.where(look, S, self.ref_S)
        return torch.where(away & (stop == RUNNING), RUNAWAY, stop)

    def result(self) -> BatchLMResult:
        self.compact()
        return self.out


def _lm_parameter(a, g, y_gn, gn_norm, full, delta, lam):
    """The damping ``lam`` (and its step ``y``) whose scaled step has length ``delta``
    within 10 percent (MINPACK's ``lmpar`` on the normal equations; ``gn_norm > delta``).
    One problem (a fit) runs the same iteration with its control in Python floats."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    if a.shape[0] == 1:
        return _lm_parameter_one(a, g, y_gn, gn_norm, full, delta, lam, eye)
    dy0 = factor(a).half(y_gn).square().sum(-1)          # y0^T A^-1 y0
    gnorm = torch.linalg.vector_norm(g, dim=-1)
    lo = torch.where(full & (dy0 > 0), (gn_norm - delta) / delta * gn_norm.square() / dy0, 0.0)
    lo = torch.where(torch.isfinite(lo), lo, 0.0)
    hi = gnorm / delta
    lam = torch.where((lo < lam) & (lam < hi), lam, torch.maximum(lo, 1e-3 * hi))
    active = torch.ones_like(full)
    y = torch.zeros_like(g)
    for _ in range(30):
        fac = factor(a + lam[:, None, None] * eye)
        y_l = fac.solve(-g)
        y = torch.where(active.unsqueeze(-1), y_l, y)
        ynorm = torch.linalg.vector_norm(y_l, dim=-1)
        dy = fac.half(y_l).square().sum(-1)
        phi = ynorm - delta
        active = active & ~((phi.abs() <= 0.1 * delta) | (hi - lo <= 1e-12 * hi))
        if not bool(active.any()):
            break
        lo = torch.where(active & (phi > 0), torch.maximum(lo, lam), lo)
        hi = torch.where(active & (phi <= 0), torch.minimum(hi, lam), hi)
        step = torch.where(dy > 0, phi / delta * ynorm.square() / dy.clamp_min(1e-300), math.inf)
        new = lam + step
        new = torch.where((lo < new) & (new < hi), new,
                          torch.where(lo > 0, (lo * hi).sqrt(), 0.5 * (lo + hi)))
        lam = torch.where(active, new, lam)
    else:
        fac = factor(a + lam[:, None, None] * eye)
        y = torch.where(active.unsqueeze(-1), fac.solve(-g), y)
    return lam, torch.where(torch.isfinite(y), y, 0.0)


def _lm_parameter_one(a, g, y_gn, gn_norm, full, delta, lam, eye):
    """``_lm_parameter`` for a batch of one: the same formulas, a few torch calls a step."""
    dy0, gnorm, gn, dl, lam = torch.stack([
        factor(a).half(y_gn).square().sum(), torch.linalg.vector_norm(g), gn_norm[0],
        delta[0], lam[0]]).tolist()
    lo = (gn - dl) / dl * gn * gn / dy0 if bool(full[0]) and dy0 > 0 else 0.0
    lo = lo if math.isfinite(lo) else 0.0
    hi = gnorm / dl
    lam = lam if lo < lam < hi else max(lo, 1e-3 * hi)
    for _ in range(30):
        fac = factor(a + lam * eye)
        y = fac.solve(-g)
        ynorm, dy = torch.stack([torch.linalg.vector_norm(y),
                                 fac.half(y).square().sum()]).tolist()
        phi = ynorm - dl
        if abs(phi) <= 0.1 * dl or hi - lo <= 1e-12 * hi:
            break
        if phi > 0:
            lo = max(lo, lam)
        else:
            hi = min(hi, lam)
        new = lam + (phi / dl * ynorm * ynorm / max(dy, 1e-300) if dy > 0 else math.inf)
        lam = new if lo < new < hi else (math.sqrt(lo * hi) if lo > 0 else 0.5 * (lo + hi))
    else:
        y = factor(a + lam * eye).solve(-g)
    return a.new_tensor([lam]), torch.where(torch.isfinite(y), y, 0.0)


def batch_lm(fn: Callable, theta0: torch.Tensor, *, ydata: torch.Tensor | None = None,
             max_steps: int = 1000, jacobian: Callable | None = None,
             normal: Callable | None = None, runaway: bool = True,
             **options) -> BatchLMResult:
    """Minimise ``|fn(theta, idx)|^2`` for each of the ``B`` rows of ``theta0`` ``(B, F)``
    to the end. ``ydata`` ``(B,)``: the norm of each problem's (weighted) data, for the
    rounding level of ``S`` (0 when not given). ``jacobian(theta, idx) -> [J r]^T``
    ``(b, F+1, n)`` (by default autograd on ``fn``); ``normal(theta, idx) -> M``
    ``(b, F+1, F+1)``, its ``moments``, where they can be had directly; ``runaway``: False
    for a model linear in its parameters (no test for parameters running off); ``options``:
    ``OPTIONS``."""
    if jacobian is None:
        def jacobian(t, i):
            r, jac = residuals_and_jacobians(fn, t, i)
            return torch.cat([jac.transpose(-1, -2), r.unsqueeze(-2)], -2)
    lm = BatchLM(jacobian, theta0, ydata=ydata, options=options, max_steps=max_steps,
                 normal=normal, runaway=runaway)
    for _ in range(max(1, max_steps) * 4 + lm.max_tries):
        lm.iterate()
        if not lm.running:
            break
    else:                                # the loop's own limit (rejections)
        lm.code = torch.where(lm.code == RUNNING, MAX_STEPS, lm.code)
    return lm.result()
