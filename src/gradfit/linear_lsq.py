"""Exact least squares for models linear in their parameters, in chunks of rows.

For ``f = theta @ Phi + offset`` (a model's ``design``), seen directly or through a
transform that only fixes parameters, the weighted residuals are ``A theta - b`` with

    A = Phi_F^T / sigma   (n, F),    b = (y - offset - theta_fixed @ Phi_fixed) / sigma.

``A = Q R`` is found a chunk of rows at a time (TSQR: ``[R; A_k] = Q' R'``, carrying
``c = Q^T b`` along), so memory is O(chunk * F + F^2) whatever ``n`` is. With ``D`` the
column norms of ``A`` (those of ``R``), the SVD of the column-scaled ``R D^-1 = U S V^T``
gives the solution ``theta = D^-1 V S^+ U^T c`` (singular values below
``eps * max(n, F) * s_max`` dropped, as the rank test everywhere else), the residual sum
of squares ``|b|^2 - |U^T c|^2`` (computed directly from the residuals, for accuracy), and
curve_fit's covariance ``D^-1 V S^-2 V^T D^-1 * s^2`` without ever forming ``A``.
Householder QR is insensitive to column scaling, so this is as accurate as a QR of the
scaled matrix and never evaluates residuals at a guess, whose cancellation on an
ill-conditioned design (NIST's Filip) costs digits that iterating never recovers.

The design and data rows are evaluated in the problem's precision, but the factorisation
and the solve run in float64 (``WIDE``): in float32 the QR's own rounding cost far more
than the data's (a quadratic of condition 44 came out 6 standard errors from the least-
squares solution of its own float32 data, at 3 times its sum of squares; a sine-cosine
fit of condition 2.5, 2.6 standard errors). The rank is still judged at the problem's
precision (``eps`` of its dtype): columns known to float32 are not told apart in float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .batch_lm import data_norm

CHUNK = 1 << 18        # rows per chunk
EXACT_ULPS = 64        # residuals within this many roundings of the data: an exact fit
WIDE = torch.float64   # the precision of the factorisation and the solve


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in ``WIDE``, on the CPU where its device has no float64 (Apple's mps)."""
    if t.device.type == "mps":
        t = t.cpu()
    return t.to(WIDE)


@dataclass
class LinearSolution:
    """The solve's pieces, in ``WIDE`` precision; ``theta``, ``s`` and ``vh`` are read in
    the problem's dtype (``dtype``), as the rank test and the verdict take them."""

    theta_wide: torch.Tensor     # (F,) the free internal parameters
    s_wide: torch.Tensor         # singular values of R D^-1
    vh_wide: torch.Tensor        # V^T
    d: torch.Tensor              # column norms D
    r: torch.Tensor              # R (F, F)
    c: torch.Tensor              # Q^T b (F,)
    n: int
    dtype: torch.dtype = WIDE    # the problem's precision
    device: torch.device | str = "cpu"

    @property
    def theta(self) -> torch.Tensor:
        return self.theta_wide.to(self.device, self.dtype)

    @property
    def s(self) -> torch.Tensor:
        return self.s_wide.to(self.device, self.dtype)

    @property
    def vh(self) -> torch.Tensor:
        return self.vh_wide.to(self.device, self.dtype)

    @property
    def rank(self) -> int:
        """The rank at the problem's precision: singular values above
        ``eps max(n, F) s_max``, ``eps`` of the problem's dtype."""
        s = self.s_wide
        tol = torch.finfo(self.dtype).eps * max(self.n, s.shape[0]) * float(s[0])
        return int((s > tol).sum()) if float(s[0]) > 0 else 0

    def covariance(self, rss: float, absolute_sigma: bool = False):
        """curve_fit's ``pcov`` (numpy), or None at lost rank or ``n <= F``."""
        f = self.s_wide.shape[0]
        if self.n <= f or self.rank < f:
            return None
        pcov = ((self.vh_wide.transpose(0, 1) / self.s_wide.square()) @ self.vh_wide) \
            / torch.outer(self.d, self.d)
        if not absolute_sigma:
            pcov = pcov * (rss / (self.n - f))
        return pcov.cpu().numpy()

    def stderr(self, rss: float, absolute_sigma: bool = False, rnorm: float | None = None):
        """The square roots of ``covariance``'s diagonal, computed in the scaled factors
        (``|V_j S^-1| / d_j``), or None where it is: finite where the standard errors are,
        though their squares may overflow (x / sigma of scale 1e-198: the covariance is
        1e396, the standard errors 1e198; before, they came out inf). ``rnorm``, the
        residuals' norm (``data_norm``), replaces ``sqrt(rss)`` where given: residuals of
        1e-201 square to 0, which made standard errors of 2.5e-202 come out 0."""
        f = self.s_wide.shape[0]
        if self.n <= f or self.rank < f:
            return None
        se = data_norm((self.vh_wide / self.s_wide.unsqueeze(-1)).transpose(0, 1)) / self.d
        if not absolute_sigma:
            norm = math.sqrt(rss) if rnorm is None else rnorm
            se = se * (norm / math.sqrt(self.n - f))
        return se.cpu().numpy()

    def start_loss_and_gradient(self, problem, theta0: torch.Tensor) -> tuple[float, float]:
        """The loss at the start and the norm of its gradient, ``slope * |A^T (A t - b)|``
        with ``A^T (A t - b) = R^T (R t - c)``."""
        with torch.no_grad():
            loss = float(problem.objective(theta0))
            rss = float(problem.residuals(theta0).square().sum())
        t = _wide(theta0)
        g = float(data_norm(self.r.transpose(0, 1) @ (self.r @ t - self.c)))   # no overflow
        name = problem.loss.name
        slope = 2.0 / self.n if name == "mse" else (1.0 / math.sqrt(self.n * rss) if rss > 0 else 0.0)
        return loss, slope * g


def linear_system(problem):
    """``(rows, F)``: ``rows(slice)`` gives ``A`` and ``b`` there (evaluated in the
    problem's dtype, returned in ``WIDE``), or None when the problem is not linear in its
    free parameters."""
    transform = getattr(problem, "transform", None)
    base = problem if transform is None else problem.base
    if transform is not None and transform.bounds:
        return None                     # bounds make the problem nonlinear in theta
    design = getattr(base.model, "design", None)
    if design is None or base.loss.name not in ("mse", "rmse"):
        return None
    names = base.model.param_names
    free = names if transform is None else transform.free
    free_at = [names.index(n) for n in free]
    fixed = {} if transform is None else transform.fixed
    fixed_at = [names.index(n) for n in fixed]
    dtype = base.y.dtype
    fixed_values = _wide(torch.tensor([fixed[names[i]] for i in fixed_at], dtype=dtype,
                                      device=base.y.device))

    def rows(sl: slice):
        found = design(base.x[sl])
        if found is None:
            return None
        # the columns as the model computes them, in its dtype; the rest in WIDE (x / sigma
        # of float32 data may leave float32's range)
        phi, offset = found
        phi = _wide(phi.to(dtype))
        target = _wide(base.y[sl]) - (0 if offset is None else _wide(offset.to(dtype)))
        if fixed_at:
            target = target - fixed_values @ phi[fixed_at]
        a = phi[free_at].transpose(0, 1)
        if base.sigma is not None:
            sigma = _wide(base.sigma[sl])
            a, target = a / sigma.unsqueeze(-1), target / sigma
        return a, target

    return rows, len(free)


def linear_least_squares(problem, theta: torch.Tensor, chunk: int = CHUNK) -> LinearSolution | None:
    """The exact least-squares solution (see the module's docstring), or None.

    Two candidates come out of one pass: the solve for ``b`` (from zero) and ``theta`` plus
    the solve for ``b - A theta`` (from the start: better when the start is near the
    optimum, where the first loses digits to a large residual); the start is the third.
    The one whose residuals are
    the more nearly orthogonal to the columns of ``A`` (the optimality condition, LM's
    cosine test) wins."""
    system = linear_system(problem)
    if system is None:
        return None
    rows, f = system
    n = problem.n
    dtype, device = theta.dtype, theta.device
    theta = _wide(theta.detach())
    use_start = bool(torch.isfinite(theta).all()) and bool((theta != 0).any())
    r = c = None
    try:
        for start in range(0, n, chunk):
            part = rows(slice(start, start + chunk))
            if part is None:
                return None
            a, b = part
            rhs = torch.stack([b, b - a @ theta], -1) if use_start else b.unsqueeze(-1)
            if r is not None:
                a, rhs = torch.cat([r, a]), torch.cat([c, rhs])
            q, r = torch.linalg.qr(a)
            c = q.transpose(0, 1) @ rhs
    except (RuntimeError, TypeError, ValueError):
        return None                     # a model whose design cannot be read in chunks
    if r.shape[0] < f:                  # fewer rows than parameters: pad R with zeros
        r = torch.cat([r, r.new_zeros(f - r.shape[0], f)])
        c = torch.cat([c, c.new_zeros(f - c.shape[0], c.shape[1])])
    norms = data_norm(r.transpose(0, 1))       # scaled: columns of 1e-198 square to 0
    if not bool(torch.isfinite(norms).all() and torch.isfinite(c).all()):
        return None                     # the design overflows: the iterative path reports it
    d = torch.where(norms > 0, norms, torch.ones_like(norms))
    u, s, vh = torch.linalg.svd(r / d, full_matrices=False)
    tol = torch.finfo(dtype).eps * max(n, f) * s[:1]     # the rank test's, at the data's precision
    uc = (u.transpose(0, 1) @ c) / s.clamp_min(1e-300).unsqueeze(-1)
    w = torch.where((s > tol).unsqueeze(-1), uc, torch.zeros_like(c))
    steps = (vh.transpose(0, 1) @ w) / d.unsqueeze(-1)          # (F, 1 or 2)
    # the start itself too: a start that already is the optimum stays (as LM's gtol test)
    candidates = [steps[:, 0]] + ([theta + steps[:, 1], theta] if use_start else [])
    candidates = [t for t in candidates if bool(torch.isfinite(t).all())]
    # and the solve through every singular value, below the rank test's too: a quintic in
    # raw x over [1000, 1010] (condition 3e14) keeps its curvature there, which the
    # truncated solve drops (mse 0.50 where it is 6.8e-5). It wins only by a lower sum of
    # squares (``_cosines``): of columns that truly depend, it is a needless large solution
    full = (vh.transpose(0, 1) @ torch.where((s > 0).unsqueeze(-1), uc, 0.0)[:, :1]) / d.unsqueeze(-1)
    full = full[:, 0] if bool((s <= tol).any()) and bool(torch.isfinite(full).all()) else None
    if not candidates:
        return None
    thetas = torch.stack(candidates + ([full] if full is not None else []), -1)
    score, rss, rounding = _cosines(rows, n, chunk, thetas, d, extra=full is not None)
    kept = _best(score[:len(candidates)], rss[:len(candidates)])
    best = candidates[kept]
    if full is not None and rss[-1] < rss[kept] - 2 * rounding[kept] - 1e-9 * rss[kept]:
        best = full
    return LinearSolution(best, s, vh, d, r, c[:, 0], n, dtype, device)


def _best(score: torch.Tensor, rss: torch.Tensor) -> int:
    """The candidate of least score, and of those tied with it the least sum of squares:
    residuals at the rounding level all score 0, and the first of them had won over an
    exact start (Wampler1 in float32, a quadratic of y ~ 1e9 in float64: the start's sum of
    squares 0, the solve's a rounding above it, which the fit loop then called diverged,
    "beyond 10^4 times its start of 0")."""
    tied = score == score.min()
    return int(torch.where(tied, rss, torch.full_like(rss, math.inf)).argmin())


def _cosines(rows, n: int, chunk: int, thetas: torch.Tensor, d: torch.Tensor,
             extra: bool = False):
    """For each column of ``thetas`` ``(F, k)``, a score to minimise: the largest
    ``|a_j . r| / (|a_j| |r|)`` (0 at the exact optimum), 0 where ``r`` is at the rounding
    level of the terms ``|a_i| |theta| + |b_i|`` (an exact fit's residuals are rounding,
    pointing anywhere, and had lost to a start far off; with x near 1.7e15 the terms are
    10^4 where b is 10), and infinite where the sum of squares lies beyond the rounding
    of the lowest one (a least-squares solution has the least: a solve from a start 1e15
    off, cosine 0.646 at mse 0.08, had won over the exact line, cosine 0.659 at 1e-24);
    one pass over the rows for all of them. Returns the scores, the sums of squares and
    their rounding levels; ``extra``: the last column is judged apart (not in "lowest")."""
    g = torch.zeros_like(thetas)
    rss = thetas.new_zeros(thetas.shape[1])
    tsq = thetas.new_zeros(thetas.shape[1])
    for start in range(0, n, chunk):
        a, b = rows(slice(start, start + chunk))
        res = a @ thetas - b.unsqueeze(-1)
        g = g + a.transpose(0, 1) @ res
        rss = rss + res.square().sum(0)
        tsq = tsq + (a.abs() @ thetas.abs() + b.abs().unsqueeze(-1)).square().sum(0)
    cos = (g.abs() / (d.unsqueeze(-1) * rss.sqrt().clamp_min(1e-300))).amax(0)
    rounding = (EXACT_ULPS * torch.finfo(rss.dtype).eps) ** 2 * tsq
    score = torch.where((rss > 0) & (rss > rounding), cos, torch.zeros_like(cos))
    among = rss[:-1] if extra else rss
    lowest = int(among.argmin())
    # beyond the lowest one's rounding: a candidate's own, from its terms, would excuse a
    # start-based solve whose terms are 1e15 (x^5 at x = 1000) its sum of squares of 14.8
    worse = rss > rss[lowest] + 2 * rounding[lowest] + 1e-9 * rss[lowest]
    return torch.where(worse, torch.full_like(score, math.inf), score), rss, rounding
