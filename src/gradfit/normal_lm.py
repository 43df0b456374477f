"""Levenberg–Marquardt on the normal equations, for data seen one partition at a time.

When a series is too large for one memory, the residuals ``r = (f(x, theta) - y) / sigma``
and the Jacobian ``J`` ``(N, P)`` are never held whole; what LM needs of them is small and
additive over any split of the rows into partitions ``k``:

    S = sum_k r_k^T r_k,     A = J^T J = sum_k J_k^T J_k,     g = J^T r = sum_k J_k^T r_k

(``partition_moments`` computes one partition's share, exactly, with autograd's Jacobian).
One LM trial step costs one pass over the partitions. With Moré's scaling ``D = diag(d)``,
``d`` the largest column norms ``sqrt(diag A)`` seen so far, the scaled Gram matrix
``D^-1 A D^-1 = V diag(s^2) V^T`` gives the singular values ``s`` and right vectors ``V``
of ``J D^-1``, and ``s c = V^T D^-1 g`` its ``c = U^T r``; from there the step is
``lm.py``'s: ``lm_parameter`` fits the damping ``lam`` to the trust region and
``damped_step`` gives ``D delta = -V (s c / (s^2 + lam))`` and its predicted reduction.
The gain ratio ``rho`` = actual / predicted reduction accepts (``rho >= 1e-4``) and resizes
the region as MINPACK does. Forming ``A`` squares the condition number, so singular values
below ``sqrt(eps * P) * s_max`` count as zero (a lost rank), where ``lm.py``'s SVD of ``J``
goes down to ``eps``.

Stopping (converged): ``gtol`` (largest cosine of ``r`` and a column of ``J``), ``ftol``
(actual and predicted reductions below ``ftol * S``), ``xtol`` (a step below ``xtol *
|D theta|``, or, once the Gauss-Newton gain is below the rounding level of ``S``,
Gauss-Newton steps that stop shrinking). The covariance is ``inv(A) * S / (N - P)``
(``absolute_sigma``: ``inv(A)``), as ``curve_fit``'s ``pcov``.

    >>> import numpy as np, torch
    >>> from gradfit.models import make_model
    >>> m = make_model("a*exp(-b*x)")
    >>> x = np.linspace(0, 3, 1000); y = 2.0 * np.exp(-0.7 * x)
    >>> parts = [(x[i:i + 100], y[i:i + 100], None) for i in range(0, 1000, 100)]
    >>> def moments(theta):
    ...     return sum_moments(partition_moments(m, *p, theta) for p in parts)
    >>> out = normal_lm(moments, np.array([1.0, 1.0]), n=1000)
    >>> out.reason, np.round(out.theta, 12).tolist()
    ('xtol', [2.0, 0.7])
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .lm import OPTIONS, damped_step, lm_parameter, residuals_and_jacobian

ACCEPT = 1e-4
POLISH_MAX = 10


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
    """``S``, ``J^T J`` and ``J^T r`` of one partition (numpy in and out, float64)."""
    xt = torch.tensor(np.asarray(x, dtype=np.float64))
    yt = torch.tensor(np.asarray(y, dtype=np.float64))
    st = None if sigma is None else torch.tensor(np.asarray(sigma, dtype=np.float64))
    th = torch.tensor(np.asarray(theta, dtype=np.float64))
    P = th.shape[0]
    if yt.shape[0] == 0:
        return Moments(0.0, np.zeros((P, P)), np.zeros(P), 0, 0.0)

    def residuals(t):
        r = model(xt, t) - yt
        return r if st is None else r / st

    r, jac = residuals_and_jacobian(residuals, th)
    ys = yt if st is None else yt / st
    return Moments(float(r @ r), (jac.T @ jac).numpy(), (jac.T @ r).numpy(), int(yt.shape[0]),
                   float(ys @ ys))


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


def _scaled_eig(A: np.ndarray, d: np.ndarray):
    """``s``, ``V^T`` of ``J D^-1`` from ``D^-1 A D^-1`` (small singular values dropped)."""
    w, V = np.linalg.eigh(A / np.outer(d, d))
    order = np.argsort(w)[::-1]
    w, V = w[order], V[:, order]
    s = np.sqrt(np.clip(w, 0.0, None))
    cut = math.sqrt(np.finfo(float).eps * len(d)) * (s[0] if len(s) else 0.0)
    return np.where(s > cut, s, 0.0), V.T


def normal_lm(moments, theta0, *, n: int, steps: int = 1000, options: dict | None = None,
              absolute_sigma: bool = False) -> NormalLMResult:
    """LM from ``theta0`` where ``moments(theta) -> Moments`` is one pass over the data
    (see the module's docstring)."""
    o = {**OPTIONS, **(options or {})}
    ftol, xtol, gtol = float(o["ftol"]), float(o["xtol"]), float(o["gtol"])
    eps = np.finfo(float).eps
    theta = np.asarray(theta0, dtype=np.float64).copy()
    m, passes, accepted = moments(theta), 1, 0
    d, lam, delta = None, 0.0, None
    reason, message = "max_steps", f"reached the step limit ({steps} steps)"
    while accepted < steps:
        norms = np.sqrt(np.clip(np.diag(m.A), 0.0, None))
        if not (math.isfinite(m.S) and np.isfinite(m.A).all() and np.isfinite(m.g).all()):
            reason, message = "failed", "the residuals or their derivatives are not finite here"
            break
        d = np.where(norms > 0, norms, 1.0) if d is None else np.maximum(d, norms)
        if m.S == 0.0:
            reason, message = "gtol", "the residuals vanish: a perfect fit"
            break
        cos = float(np.max(np.abs(m.g) / np.maximum(norms * math.sqrt(m.S), 1e-300)))
        if cos <= gtol:
            reason, message = "gtol", f"the gradient vanished (largest cosine {cos:.2g} <= gtol)"
            break
        s, vh = _scaled_eig(m.A, d)
        if s[0] == 0.0:
            reason, message = "failed", "the Jacobian is zero: the model does not depend on " \
                                        "its parameters here"
            break
        c = np.where(s > 0, (vh @ (m.g / d)) / np.where(s > 0, s, 1.0), 0.0)
        xnorm = float(np.linalg.norm(d * theta))
        if delta is None:
            delta = float(o["factor"]) * (xnorm if xnorm > 0 else 1.0)
        err = eps * (math.sqrt(m.S) + 2.0 * math.sqrt(m.yy))
        noise = 2.0 * math.sqrt(m.S) * err + err * err
        if float(np.sum(c ** 2)) <= noise:          # Gauss-Newton gain below rounding
            theta, m, k = _polish(moments, theta, m, s, vh, c, d, noise)
            passes += k
            accepted += 1
            reason, message = "xtol", "Gauss-Newton steps stopped shrinking at the rounding " \
                                      "level of the data"
            break
        st, vt, ct = (torch.from_numpy(a) for a in (s, vh, c))
        done = False
        for _ in range(int(o["max_tries"])):
            lam = lm_parameter(s.tolist(), c.tolist(), delta, lam)
            y, pred = damped_step(st, vt, ct, lam)
            y, pred = y.numpy(), float(pred)
            trial = theta + y / d
            mt = moments(trial)
            passes += 1
            actual = m.S - mt.S if math.isfinite(mt.S) else -math.inf
            rho = actual / pred if pred > 0 else -math.inf
            ynorm = float(np.linalg.norm(y))
            if rho < 0.25:
                delta = 0.5 * min(delta, 10.0 * ynorm) if rho > 0 else 0.1 * min(delta, 10 * ynorm)
            elif rho >= 0.75 or lam == 0.0:
                delta = max(delta, 2.0 * ynorm)
            if rho >= ACCEPT:
                theta, m, accepted = trial, mt, accepted + 1
                if actual <= ftol * (m.S + actual) and pred <= ftol * (m.S + actual):
                    reason, message, done = "ftol", "the sum of squares stopped falling " \
                                                    "(ftol)", True
                elif ynorm <= xtol * xnorm:
                    reason, message, done = "xtol", "the step became negligible (xtol)", True
                break
            if pred <= noise or ynorm <= xtol * xnorm:
                reason, message, done = "xtol", "no step lowers the sum of squares beyond " \
                                                "rounding", True
                break
        else:
            reason, message, done = "failed", "no step lowers the sum of squares although the " \
                                              "gradient does not vanish", True
        if done:
            break
    cov = _covariance(m, len(theta), absolute_sigma) if reason != "failed" else None
    return NormalLMResult(theta, m.S, reason, message, accepted, passes, cov, m.n)


def _polish(moments, theta, m, s, vh, c, d, noise):
    """Gauss-Newton steps for as long as they shrink and ``S`` does not rise beyond
    rounding; returns the last point kept, its moments and the passes made."""
    prev, k = math.inf, 0
    while k < POLISH_MAX:
        y = -(vh.T @ np.where(s > 0, c / np.where(s > 0, s, 1.0), 0.0))
        ynorm = float(np.linalg.norm(y))
        if ynorm == 0.0 or ynorm >= prev:
            break
        trial = theta + y / d
        mt = moments(trial)
        k += 1
        if not math.isfinite(mt.S) or mt.S > m.S + noise:
            break
        theta, m, prev = trial, mt, ynorm
        s, vh = _scaled_eig(m.A, d)
        c = np.where(s > 0, (vh @ (m.g / d)) / np.where(s > 0, s, 1.0), 0.0)
    return theta, m, k


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
