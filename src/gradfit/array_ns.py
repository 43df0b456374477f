"""The array namespace an engine's bookkeeping runs on: numpy for a few problems on the
CPU, torch otherwise. The same formulas, written once against ``Ops``; only the cost of a
call differs.

An LM iteration makes some 200 operations on arrays of ``B`` entries (``B`` problems) or
``(B, F, F)`` (``F`` parameters). For one fit (``B = 1``) each is a few numbers, where a
torch call costs about 5 us of dispatch and a numpy call about 1 us; for thousands of
problems torch's vectorised kernels (and the GPU) win. The model, its Jacobian and the
moments ``[J r]^T [J r]`` are torch's in every case: only the small state moves.

    >>> import numpy as np, torch
    >>> ops = ops_for(torch.zeros(1, 3, dtype=torch.float64))
    >>> type(ops).__name__, ops.where(np.array([True, False]), 1.0, 2.0).tolist()
    ('NumpyOps', [1.0, 2.0])
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

NUMPY_MAX_BATCH = 1024    # up to this many problems on the CPU, the state lives in numpy
                          # (bench: fit_many of 1024 Gaussians 1.4x faster so, 2048 even)


def ops_for(theta: torch.Tensor) -> "Ops":
    """``NumpyOps`` for a small batch ``(B, F)`` on the CPU, else ``TorchOps``."""
    if theta.device.type == "cpu" and theta.shape[0] <= NUMPY_MAX_BATCH:
        return NUMPY
    return TORCH


class Ops:
    """What the engines call that numpy and torch spell differently."""

    def own(self, t: torch.Tensor):
        """A torch tensor as this namespace's array (no copy where it can be avoided)."""
        raise NotImplementedError

    def torch(self, a) -> torch.Tensor:
        """This namespace's array as a torch tensor."""
        raise NotImplementedError

    def shifted(self, a, g, base=None):
        """Solves with ``a + lam I`` for many ``lam`` (``spd.Shifted``, by this namespace's
        ``factor``; ``base``: the factor of ``a`` where it is at hand)."""
        from .spd import Shifted
        return Shifted(a, g, self.factor, self.eye(a.shape[-1], a), base)

    def zeros(self, shape, like, kind=None):
        """Zeros of ``shape`` in ``like``'s floating dtype, or ``kind`` bool or int."""
        raise NotImplementedError


class TorchOps(Ops):
    where = staticmethod(torch.where)
    sqrt = staticmethod(torch.sqrt)
    isfinite = staticmethod(torch.isfinite)
    errstate = staticmethod(contextlib.nullcontext)

    @staticmethod
    def maximum(a, b):
        return a.clamp_min(b) if isinstance(b, (int, float)) else torch.maximum(a, b)

    @staticmethod
    def minimum(a, b):
        return a.clamp_max(b) if isinstance(b, (int, float)) else torch.minimum(a, b)

    @staticmethod
    def amax(a):
        return a.amax(-1)

    @staticmethod
    def own(t):
        return t

    @staticmethod
    def torch(a):
        return a

    @staticmethod
    def norm(v):
        return torch.linalg.vector_norm(v, dim=-1)

    @staticmethod
    def copy(a):
        return a.clone()

    @staticmethod
    def rows(mask):
        return mask.nonzero().flatten()

    @staticmethod
    def eye(F, like):
        return torch.eye(F, dtype=like.dtype, device=like.device)

    @staticmethod
    def zeros(shape, like, kind=None):
        dtype = {None: like.dtype, bool: torch.bool, int: torch.long}[kind]
        return torch.zeros(shape, dtype=dtype, device=like.device)

    @staticmethod
    def finfo(like):
        return torch.finfo(like.dtype)

    @staticmethod
    def factor(a):
        from .spd import factor
        return factor(a)


class NumpyOps(Ops):
    where = staticmethod(np.where)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    sqrt = staticmethod(np.sqrt)
    isfinite = staticmethod(np.isfinite)

    @staticmethod
    def errstate():
        # inf and NaN are data here, as in torch: they are masked, never warned about
        return np.errstate(all="ignore")

    @staticmethod
    def amax(a):
        return a.max(-1)

    @staticmethod
    def own(t):
        return t.detach().cpu().numpy()

    @staticmethod
    def torch(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    @staticmethod
    def norm(v):
        return np.sqrt((v * v).sum(-1))         # as np.linalg.norm, at a third of its cost

    @staticmethod
    def copy(a):
        return a.copy()

    @staticmethod
    def rows(mask):
        return np.flatnonzero(mask)

    @staticmethod
    def eye(F, like):
        return np.eye(F, dtype=like.dtype)

    @staticmethod
    def zeros(shape, like, kind=None):
        return np.zeros(shape, dtype={None: like.dtype, bool: bool, int: np.int64}[kind])

    @staticmethod
    def finfo(like):
        return _FINFO[like.dtype.char]          # Python floats, as torch's

    @staticmethod
    def factor(a):
        from .spd import NumpyCholesky
        return NumpyCholesky(a)


_FINFO = {np.dtype(t).char: torch.finfo(getattr(torch, t))
          for t in ("float16", "float32", "float64")}
TORCH, NUMPY = TorchOps(), NumpyOps()
