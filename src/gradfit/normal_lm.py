"""Levenberg–Marquardt on the normal equations, for data seen one partition at a time.

When a series is too large for one memory, the residuals ``r = (f(x, theta) - y) / sigma``
and the Jacobian ``J`` ``(N, P)`` are never held whole; what LM needs of them is small and
additive over any split of the rows into partitions ``k``:

    S = sum_k r_k^T r_k,     A = J^T J = sum_k J_k^T J_k,     g = J^T r = sum_k J_k^T r_k

(``partition_moments`` computes one partition's share, exactly: forward mode on an
expression's tree block by block, or autograd's Jacobian).
These are ``M = [J r]^T [J r] = [[A, g], [g^T, S]]``, all that an iteration of gradfit's one
Levenberg–Marquardt needs: ``normal_lm`` runs ``batch_lm`` (Moré's trust region, its math
in that module's docstring) on one problem through its ``normal=`` hook, so the steps, the
stopping rules (``gtol``, ``ftol``, ``xtol``, ``failed``, ``max_steps``) and their messages
are ``fit``'s and ``fit_many``'s. One trial point costs one pass over the partitions; the
rounding level of ``S`` comes from ``|y / sigma| = sqrt(yy)``, as ``fit``'s.

A converged fit whose scaled Jacobian ``J D^-1`` (``D`` Moré's scaling) has lost rank is
``failed``, as in ``fit``, with ``verdict.rank_message``. Its singular values are read off
``D^-1 A D^-1 = V diag(s^2) V^T``; forming ``A`` squares the condition number, so values
below ``sqrt(eps * P) * s_max`` count as zero (``fit``'s SVD of ``J`` goes down to
``eps * max(N, P)``). The covariance is ``inv(A) * S / (N - P)`` (``absolute_sigma``:
``inv(A)``), as ``curve_fit``'s ``pcov``, None where ``A`` is that ill-conditioned.

    >>> import numpy as np, torch
    >>> from gradfit.models import make_model
    >>> m = make_model("a*exp(-b*x)")
    >>> x = np.linspace(0, 3, 1000); y = 2.0 * np.exp(-0.7 * x)
    >>> parts = [(x[i:i + 100], y[i:i + 100], None) for i in range(0, 1000, 100)]
    >>> def moments(theta):
    ...     return sum_moments(partition_moments(m, *p, theta) for p in parts)
    >>> out = normal_lm(moments, np.array([1.0, 1.0]), n=1000)
    >>> out.reason in ("gtol", "xtol"), np.round(out.theta, 12).tolist()   # exact data
    (True, [2.0, 0.7])
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .batch_lm import batch_lm
from .lm_codes import OPTIONS, message, reason as code_reason
from .block_moments import block_moments, expression_block
from .lm import residuals_and_jacobian


@dataclass
class Moments:
    """One partition's (or a sum's) share: ``S``, ``A = J^T J``, ``g = J^T r``, the count
    and ``yy = |y / sigma|^2`` (for the rounding level of ``S``)."""

    S: float
    A: np.ndarray
    g: np.ndarray
    n: int
    yy: float


def partition_moments(model, x, y, sigma, theta) -> Moments:
    """``S``, ``J^T J`` and ``J^T r`` of one partition (numpy in and out, float64): by
    forward mode on a text expression's tree over blocks of points (``block_moments``: a
    fixed order, the same numbers however often a task is rerun); else by autograd over the
    whole partition."""
    xt = torch.tensor(np.asarray(x, dtype=np.float64))
    yt = torch.tensor(np.asarray(y, dtype=np.float64))
    st = None if sigma is None else torch.tensor(np.asarray(sigma, dtype=np.float64))
    th = torch.tensor(np.asarray(theta, dtype=np.float64))
    P = th.shape[0]
    n = int(yt.shape[0])
    if n == 0:
        return Moments(0.0, np.zeros((P, P)), np.zeros(P), 0, 0.0)
    ys = yt if st is None else yt / st
    block = expression_block(model)
    if block is None:
        def residuals(t):
            r = model(xt, t) - yt
            return r if st is None else r / st
        r, jac = residuals_and_jacobian(residuals, th)
        return Moments(float(r @ r), (jac.T @ jac).numpy(), (jac.T @ r).numpy(), n,
                       float(ys @ ys))
    M = block_moments(block, xt, yt, st, th).numpy()
    return Moments(float(M[P, P]), M[:P, :P].copy(), M[:P, P].copy(), n, float(ys @ ys))


def sum_moments(parts) -> Moments:
    """The sum of partitions' moments, in the order given (so the result is reproducible)."""
    out = None
    for m in parts:
        out = m if out is None else Moments(out.S + m.S, out.A + m.A, out.g + m.g,
                                            out.n + m.n, out.yy + m.yy)
    return out


@dataclass
class NormalLMResult:
    theta: np.ndarray
    S: float
    reason: str
    message: str
    steps: int              # accepted steps
    passes: int             # passes over the data (one per trial point)
    covariance: np.ndarray | None
    n: int


def _matrix(m: Moments) -> torch.Tensor:
    """``M = [[A, g], [g^T, S]]`` ``(1, P+1, P+1)``, ``batch_lm``'s normal matrix."""
    P = len(m.g)
    M = np.empty((P + 1, P + 1))
    M[:P, :P], M[:P, P], M[P, :P], M[P, P] = m.A, m.g, m.g, m.S
    return torch.from_numpy(M).unsqueeze(0)


def normal_lm(moments, theta0, *, n: int, steps: int = 1000, options: dict | None = None,
              absolute_sigma: bool = False, names=None) -> NormalLMResult:
    """LM from ``theta0`` where ``moments(theta) -> Moments`` is one pass over the data
    (see the module's docstring); ``options``: ``batch_lm.OPTIONS``; ``names``: the
    parameters' names, for the message of a lost rank."""
    o = {k: v for k, v in (options or {}).items() if k in OPTIONS}
    theta = torch.as_tensor(np.asarray(theta0, dtype=np.float64)).reshape(1, -1)
    first = moments(theta[0].numpy().copy())
    pending, passes = [first], [1]

    def normal(t: torch.Tensor, idx) -> torch.Tensor:   # one problem: t is (1, P)
        if pending:                                     # the start: the pass just made
            return _matrix(pending.pop())
        passes[0] += 1
        return _matrix(moments(t[0].numpy().copy()))

    # |y / sigma| sets the rounding level of S, as fit's (0 if the data are not finite)
    yd = math.sqrt(first.yy) if math.isfinite(first.yy) else 0.0
    out = batch_lm(None, theta, ydata=torch.tensor([yd], dtype=torch.float64),
                   max_steps=steps, normal=normal, **o)
    code = int(out.code[0])
    reason, text = code_reason(code), message(code, o, steps)
    M = out.M[0].numpy()
    P = M.shape[0] - 1
    m = Moments(float(M[P, P]), M[:P, :P].copy(), M[:P, P].copy(), first.n, first.yy)
    if reason in ("gtol", "ftol", "xtol"):
        lost = _lost_rank(m.A, out.d[0].numpy(), names or [f"p{i}" for i in range(P)])
        if lost is not None:
            reason, text = "failed", lost
    cov = _covariance(m, P, absolute_sigma) if reason != "failed" else None
    return NormalLMResult(out.theta[0].numpy().copy(), m.S, reason, text, int(out.steps[0]),
                          passes[0], cov, m.n)


def _lost_rank(A: np.ndarray, d: np.ndarray, names) -> str | None:
    """``verdict.rank_message`` where ``J D^-1`` has lost rank, judged from the eigenvalues
    ``s^2`` of ``D^-1 A D^-1`` (cut at ``sqrt(eps * P) s_max``), else None."""
    from .verdict import rank_message
    w, V = np.linalg.eigh(A / np.outer(d, d))
    order = np.argsort(w)[::-1]
    s = np.sqrt(np.clip(w[order], 0.0, None))
    cut = math.sqrt(np.finfo(float).eps * len(d)) * s[0]
    rank = int((s > cut).sum()) if s[0] > 0 else 0
    if rank == len(d):
        return None
    return rank_message(rank, tuple(names), torch.from_numpy(s),
                        torch.from_numpy(np.ascontiguousarray(V[:, order].T)))


def _covariance(m: Moments, P: int, absolute_sigma: bool) -> np.ndarray | None:
    """``inv(J^T J)``, times ``S / (N - P)`` unless ``absolute_sigma``; None when singular
    or when ``N <= P`` (as curve_fit, which then reports inf)."""
    if m.n <= P and not absolute_sigma:
        return None
    d = np.sqrt(np.clip(np.diag(m.A), 0.0, None))
    if not (d > 0).all():
        return None
    scaled = m.A / np.outer(d, d)
    if np.linalg.cond(scaled) > 1.0 / (np.finfo(float).eps * P):
        return None
    cov = np.linalg.inv(scaled) / np.outer(d, d)
    return cov if absolute_sigma else cov * (m.S / (m.n - P))
