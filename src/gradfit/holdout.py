"""A held-out test set: which points a fit does not see, chosen by a seed.

``holdout_mask(n, fraction, seed)`` marks ``round(fraction * n)`` of ``n`` points as test
points (at least one point always stays for training), uniformly at random without
replacement, from ``torch.randperm`` with a seeded generator: the same ``(n, fraction,
seed)`` always gives the same split.

    >>> m = holdout_mask(10, 0.3, seed=0)
    >>> int(m.sum()), m.dtype.name
    (3, 'bool')
    >>> bool((holdout_mask(10, 0.3, seed=0) == m).all())
    True
    >>> int(holdout_mask(1, 0.9, seed=0).sum())       # one point: it trains
    0
"""
from __future__ import annotations

import numpy as np
import torch


def holdout_mask(n: int, fraction: float, seed: int = 0) -> np.ndarray:
    """A boolean mask of length ``n``: True for the held-out (test) points."""
    k = min(int(round(fraction * n)), n - 1) if n > 0 else 0
    mask = np.zeros(n, dtype=bool)
    if k > 0:
        gen = torch.Generator().manual_seed(int(seed))
        mask[torch.randperm(n, generator=gen)[:k].numpy()] = True
    return mask


__all__ = ["holdout_mask"]
