"""Small symmetric positive definite systems over a batch: what one LM iteration solves.

For a batch of ``k`` matrices ``A`` ``(k, F, F)`` (``F`` the free parameters, small), the
Cholesky factor ``A = L L^T`` gives ``A^-1 b`` (two triangular solves) and ``L^-1 b`` (one),
whose squared norm is ``b^T A^-1 b``. Two ways to the same numbers:

- ``Unrolled``: the factorisation written out entry by entry over the batch (about ``F^3/6``
  vector operations), for many problems of few parameters: one vector operation over
  thousands of problems costs less than a LAPACK call per matrix;
- ``Lapack``: ``torch.linalg.cholesky_ex`` and triangular solves, for a few problems (one fit)
  or many parameters: a handful of calls, whatever ``F``.

``ok`` is False where ``A`` is not positive definite (or not finite); the solutions there are
0, never NaN.

    >>> import torch
    >>> a = torch.tensor([[[4.0, 2.0], [2.0, 3.0]]], dtype=torch.float64)
    >>> y, ok = solve_spd(a, torch.tensor([[2.0, 1.0]], dtype=torch.float64))
    >>> y.tolist(), ok.tolist()
    ([[0.5, 0.0]], [True])
"""
from __future__ import annotations

import numpy as np
import torch

UNROLL_MIN_BATCH = 16     # from this many problems on, the written-out factorisation
UNROLL_MAX_F = 8          # ... for up to this many parameters


def moments(jrt: torch.Tensor) -> torch.Tensor:
    """``M = [J r]^T [J r]`` ``(b, F+1, F+1)``: ``J^T J``, ``J^T r`` and ``S = r^T r`` from
    one batched product; everything an LM iteration needs of the block ``[J r]^T``
    ``(b, F+1, n)``. Small batches by elementwise products (a batched matrix product
    starts threads whose wait costs more than the work on a busy machine)."""
    if jrt.numel() * jrt.shape[-2] <= 2 ** 16:
        return (jrt.unsqueeze(-2) * jrt.unsqueeze(-3)).sum(-1)
    return jrt @ jrt.transpose(-1, -2)


def factor(a: torch.Tensor):
    """The Cholesky factor of each ``a`` ``(k, F, F)``, as the faster of the two forms."""
    k, F = a.shape[0], a.shape[-1]
    return Unrolled(a) if k >= UNROLL_MIN_BATCH and F <= UNROLL_MAX_F else Lapack(a)


class Lapack:
    def __init__(self, a: torch.Tensor):
        # the callers' matrices are finite; where one is not positive definite the
        # solutions are garbage, and the callers mask them by ``ok``
        self.chol, info = torch.linalg.cholesky_ex(a)
        self.ok = info == 0

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """``A^-1 b`` for ``b`` ``(k, F)`` or ``(k, F, m)``."""
        rhs = b.unsqueeze(-1) if b.ndim == 2 else b
        y = torch.cholesky_solve(rhs, self.chol)
        return y.squeeze(-1) if b.ndim == 2 else y

    def half(self, b: torch.Tensor) -> torch.Tensor:
        """``L^-1 b`` for ``b`` ``(k, F)``."""
        return torch.linalg.solve_triangular(self.chol, b.unsqueeze(-1), upper=False).squeeze(-1)


class Unrolled:
    def __init__(self, a: torch.Tensor):
        F = a.shape[-1]
        L = [[None] * F for _ in range(F)]
        ok = torch.ones(a.shape[0], dtype=torch.bool, device=a.device)
        for j in range(F):
            s = a[:, j, j]
            for k in range(j):
                s = s - L[j][k] * L[j][k]
            ok = ok & (s > 0)
            L[j][j] = torch.where(s > 0, s, 1.0).sqrt()
            for i in range(j + 1, F):
                t = a[:, i, j]
                for k in range(j):
                    t = t - L[i][k] * L[j][k]
                L[i][j] = t / L[j][j]
        self.L, self.F, self.ok = L, F, ok

    def _lower(self, b: torch.Tensor) -> list:
        L = self.L
        if b.ndim == 3:
            L = [[v if v is None else v.unsqueeze(-1) for v in row] for row in L]
        z = [None] * self.F
        for i in range(self.F):                     # L z = b
            t = b[:, i]
            for k in range(i):
                t = t - L[i][k] * z[k]
            z[i] = t / L[i][i]
        return z, L

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        z, L = self._lower(b)
        y = [None] * self.F
        for i in reversed(range(self.F)):           # L^T y = z
            t = z[i]
            for k in range(i + 1, self.F):
                t = t - L[k][i] * y[k]
            y[i] = t / L[i][i]
        return torch.stack(y, 1)

    def half(self, b: torch.Tensor) -> torch.Tensor:
        return torch.stack(self._lower(b)[0], 1)


class NumpyCholesky:
    """``Lapack``'s interface on numpy arrays (a few problems: ``array_ns.NumpyOps``). A
    matrix that is not positive definite (or not finite) gets ``ok`` False and the identity
    as its factor, so that its solutions are finite garbage the callers mask."""

    def __init__(self, a):
        try:
            self.chol = np.linalg.cholesky(a)
            self.ok = np.ones(a.shape[0], dtype=bool)
        except np.linalg.LinAlgError:           # one of them is not: each on its own
            self.chol = np.empty_like(a)
            self.ok = np.zeros(a.shape[0], dtype=bool)
            for k in range(a.shape[0]):
                try:
                    self.chol[k] = np.linalg.cholesky(a[k])
                    self.ok[k] = True
                except np.linalg.LinAlgError:
                    self.chol[k] = np.eye(a.shape[-1], dtype=a.dtype)
        bad = ~np.isfinite(self.chol).all((-1, -2))     # NaN passes LAPACK's test
        if bad.any():
            self.ok = self.ok & ~bad
            self.chol[bad] = np.eye(a.shape[-1], dtype=a.dtype)

    def solve(self, b):
        rhs = b[..., None] if b.ndim == 2 else b
        z = np.linalg.solve(self.chol, rhs)
        y = np.linalg.solve(self.chol.swapaxes(-1, -2), z)
        return y[..., 0] if b.ndim == 2 else y

    def half(self, b):
        return np.linalg.solve(self.chol, b[..., None])[..., 0]


class Shifted:
    """Solves with ``A + lam I`` for the ``lam`` an LM step's damping tries (``(k, F, F)``
    matrices ``A``, right-hand sides ``-g`` ``(k, F)``), by a Cholesky factorisation for each
    ``lam`` (``factor``: ``spd.factor`` on torch tensors, ``NumpyCholesky`` on numpy arrays).
    ``at(lam)`` gives ``y = -(A + lam I)^-1 g``, ``|y|`` and ``y^T (A + lam I)^-1 y``;
    ``quad(y)`` gives ``y^T A^-1 y`` (by ``base``, ``A``'s own factor, where given)."""

    def __init__(self, a, g, factor, eye, base=None):
        self.a, self.g, self.factor, self.eye = a, g, factor, eye
        self.base = base            # A's own factor, where the caller has it

    def quad(self, y):
        h = (self.base or self.factor(self.a)).half(y)
        return (h * h).sum(-1)

    def at(self, lam):
        fac = self.factor(self.a + lam[:, None, None] * self.eye)
        y = fac.solve(-self.g)
        h = fac.half(y)
        return y, ((y * y).sum(-1)) ** 0.5, (h * h).sum(-1)


def solve_spd(a: torch.Tensor, b: torch.Tensor):
    """``a y = b`` for ``a`` ``(k, F, F)`` and ``b`` ``(k, F)`` or ``(k, F, m)``; ``ok``."""
    f = factor(a)
    y = f.solve(b)
    ok = f.ok & torch.isfinite(y).flatten(1).all(-1)
    keep = ok.reshape((-1,) + (1,) * (b.ndim - 1))
    return torch.where(keep, y, 0.0), ok
